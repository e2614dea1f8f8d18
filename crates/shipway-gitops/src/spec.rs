//! What an Application asks for that Shipway refuses, does not implement, or its AppProject
//! forbids, as Argo CD conditions: refusals and project violations are `InvalidSpecError`s
//! worded as Argo words them; every field Shipway accepts but does not act on is named in an
//! `UnsupportedFieldWarning`, so nothing is silently ignored.

use serde_json::{Map, Value};
use shipway_model::types::{
    AppProjectSpec, ApplicationCondition, ApplicationSource, ApplicationSpec, GroupKind,
    IN_CLUSTER_NAME, IN_CLUSTER_SERVER,
};

use crate::condition::{INVALID_SPEC_ERROR, UNSUPPORTED_WARNING};
use crate::glob;

/// A project as the checks need it: its name and spec.
#[derive(Clone, Copy, Debug)]
pub struct Project<'a> {
    pub name: &'a str,
    pub spec: &'a AppProjectSpec,
}

/// The sync options Shipway acts on (either value).
const IMPLEMENTED_SYNC_OPTIONS: &[&str] = &["PruneLast", "ApplyOutOfSyncOnly", "CreateNamespace"];

/// The conditions of `app` against `project` (`None`: the project was not found; the `default`
/// project then allows everything, as Argo's built-in default does).
pub fn check(app: &ApplicationSpec, project: Option<Project<'_>>) -> Vec<ApplicationCondition> {
    let mut out = Vec::new();
    let err = |out: &mut Vec<ApplicationCondition>, m: String| {
        out.push(ApplicationCondition::new(INVALID_SPEC_ERROR, m))
    };
    unimplemented(&mut out, "spec", &app.rest, &[]);

    let sources: Vec<(String, &ApplicationSource)> = if app.sources.is_empty() {
        app.source
            .iter()
            .map(|s| ("spec.source".to_string(), s))
            .collect()
    } else {
        if app.source.is_some() {
            warn(
                &mut out,
                "spec.source is ignored: spec.sources is given (as Argo CD does)".into(),
            );
        }
        app.sources
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("spec.sources[{i}]"), s))
            .collect()
    };
    if sources.is_empty() {
        err(
            &mut out,
            "spec.source or spec.sources must be specified".into(),
        );
    }
    for (at, s) in &sources {
        source(&mut out, at, s);
    }

    match &app.destination {
        None => err(&mut out, "Destination server missing from app spec".into()),
        Some(d) => {
            unimplemented(&mut out, "spec.destination", &d.rest, &[]);
            let server = d.server.as_deref().filter(|s| !s.is_empty());
            let name = d.name.as_deref().filter(|s| !s.is_empty());
            match (server, name) {
                (Some(s), Some(n)) => err(
                    &mut out,
                    format!(
                        "application destination can't have both name and server defined: {n} {s}"
                    ),
                ),
                (Some(s), None) if s.trim_end_matches('/') != IN_CLUSTER_SERVER => err(
                    &mut out,
                    format!(
                        "unable to find destination server: there are no clusters with this URL: {s}"
                    ),
                ),
                (None, Some(n)) if n != IN_CLUSTER_NAME => err(
                    &mut out,
                    format!(
                        "unable to find destination server: there are no clusters with this name: {n}"
                    ),
                ),
                (None, None) => err(&mut out, "Destination server missing from app spec".into()),
                _ => {}
            }
        }
    }

    if let Some(p) = &app.sync_policy {
        unimplemented(&mut out, "spec.syncPolicy", &p.rest, &[]);
        if let Some(a) = &p.automated {
            unimplemented(&mut out, "spec.syncPolicy.automated", &a.rest, &[]);
        }
        if let Some(r) = &p.retry {
            unimplemented(&mut out, "spec.syncPolicy.retry", &r.rest, &[]);
        }
        for o in &p.sync_options {
            let name = o.split_once('=').map_or(o.as_str(), |(k, _)| k);
            if !IMPLEMENTED_SYNC_OPTIONS.contains(&name) {
                warn(
                    &mut out,
                    format!(
                        "spec.syncPolicy.syncOptions: {o} is not implemented by Shipway and is ignored"
                    ),
                );
            }
        }
    }
    for (i, r) in app.ignore_differences.iter().enumerate() {
        let at = format!("spec.ignoreDifferences[{i}]");
        unimplemented(&mut out, &at, &r.rest, &[]);
        for (j, e) in r.jq_path_expressions.iter().enumerate() {
            if let Err(why) = crate::jq::check(e) {
                err(&mut out, format!("{at}.jqPathExpressions[{j}]: {why}"));
            }
        }
        if !r.managed_fields_managers.is_empty() {
            warn(
                &mut out,
                format!(
                    "{at}.managedFieldsManagers is not implemented by Shipway (it has no managed fields) and is ignored"
                ),
            );
        }
    }

    let project_name = app.project();
    match project {
        None if project_name != "default" => err(
            &mut out,
            format!("Application referencing project {project_name} which does not exist"),
        ),
        None => {}
        Some(p) => {
            for (_, s) in &sources {
                let url = s.repo_url.as_deref().unwrap_or("");
                if !repo_permitted(p.spec, url) {
                    err(
                        &mut out,
                        format!(
                            "application repo {url} is not permitted in project '{}'",
                            p.name
                        ),
                    );
                }
            }
            if let Some(d) = &app.destination {
                let ns = d.namespace.as_deref().unwrap_or("");
                if !destination_permitted(p.spec, ns) {
                    let server = d.server.as_deref().unwrap_or(IN_CLUSTER_SERVER);
                    err(
                        &mut out,
                        format!(
                            "application destination server '{server}' and namespace '{ns}' do not match any of the allowed destinations in project '{}'",
                            p.name
                        ),
                    );
                }
            }
        }
    }
    out
}

fn source(out: &mut Vec<ApplicationCondition>, at: &str, s: &ApplicationSource) {
    let err = |out: &mut Vec<ApplicationCondition>, m: String| {
        out.push(ApplicationCondition::new(INVALID_SPEC_ERROR, m))
    };
    if s.helm.is_some() {
        err(out, format!("Helm is not supported: {at}.helm"));
    }
    if s.chart.is_some() {
        err(out, format!("Helm is not supported: {at}.chart"));
    }
    if s.plugin.is_some() {
        err(
            out,
            format!("Config management plugins are not supported: {at}.plugin"),
        );
    }
    // `name` only labels a source; `ref` names one for Helm value files.
    unimplemented(out, at, &s.rest, &["name"]);
    if let Some(k) = &s.kustomize {
        unimplemented(out, &format!("{at}.kustomize"), &k.rest, &["components"]);
    }
    if let Some(d) = &s.directory {
        if d.jsonnet.is_some() {
            err(
                out,
                format!("Jsonnet is not supported: {at}.directory.jsonnet"),
            );
        }
        unimplemented(out, &format!("{at}.directory"), &d.rest, &[]);
    }
}

fn warn(out: &mut Vec<ApplicationCondition>, m: String) {
    out.push(ApplicationCondition::new(UNSUPPORTED_WARNING, m));
}

/// A warning for each field of `rest` (what no typed field took) but those in `allowed`.
fn unimplemented(
    out: &mut Vec<ApplicationCondition>,
    at: &str,
    rest: &Map<String, Value>,
    allowed: &[&str],
) {
    for k in rest.keys().filter(|k| !allowed.contains(&k.as_str())) {
        warn(
            out,
            format!("{at}.{k} is not implemented by Shipway and is ignored"),
        );
    }
}

/// The warnings of an AppProject: the fields Shipway does not enforce.
pub fn project_warnings(name: &str, p: &AppProjectSpec) -> Vec<ApplicationCondition> {
    let mut out = Vec::new();
    unimplemented(
        &mut out,
        &format!("AppProject {name}: spec"),
        &p.rest,
        &["description"],
    );
    for (field, list) in [
        ("clusterResourceWhitelist", &p.cluster_resource_whitelist),
        ("clusterResourceBlacklist", &p.cluster_resource_blacklist),
        (
            "namespaceResourceWhitelist",
            &p.namespace_resource_whitelist,
        ),
        (
            "namespaceResourceBlacklist",
            &p.namespace_resource_blacklist,
        ),
    ] {
        for (i, gk) in list.iter().enumerate() {
            let at = format!("AppProject {name}: spec.{field}[{i}]");
            unimplemented(&mut out, &at, &gk.rest, &["name"]);
        }
    }
    for (i, d) in p.destinations.iter().enumerate() {
        unimplemented(
            &mut out,
            &format!("AppProject {name}: spec.destinations[{i}]"),
            &d.rest,
            &[],
        );
    }
    out
}

/// Argo's `NormalizeGitURL` as far as matching needs: case and a `.git` or `/` ending ignored.
fn normalize_repo(url: &str) -> String {
    let u = url.trim().to_ascii_lowercase();
    let u = u.trim_end_matches('/');
    u.strip_suffix(".git").unwrap_or(u).to_string()
}

/// `sourceRepos`: a match of a pattern and of no `!pattern`.
pub fn repo_permitted(p: &AppProjectSpec, url: &str) -> bool {
    let url = normalize_repo(url);
    let (deny, allow): (Vec<&String>, Vec<&String>) =
        p.source_repos.iter().partition(|r| r.starts_with('!'));
    let m = |pat: &str| pat == "*" || glob::matches(&normalize_repo(pat), &url);
    allow.iter().any(|r| m(r)) && !deny.iter().any(|r| m(&r[1..]))
}

/// `destinations`: an entry whose server (or name) matches the in-cluster one and whose
/// namespace matches `namespace`; an entry whose server or namespace starts with `!` denies.
pub fn destination_permitted(p: &AppProjectSpec, namespace: &str) -> bool {
    let entry_matches = |server: &str, name: &str, ns: &str| {
        let server_ok = !server.is_empty() && glob::matches(server, IN_CLUSTER_SERVER);
        let name_ok = !name.is_empty() && glob::matches(name, IN_CLUSTER_NAME);
        (server_ok || name_ok) && glob::matches(ns, namespace)
    };
    let mut allowed = false;
    for d in &p.destinations {
        let server = d.server.as_deref().unwrap_or("");
        let name = d.name.as_deref().unwrap_or("");
        let ns = d.namespace.as_deref().unwrap_or("");
        if let Some(ns) = ns.strip_prefix('!') {
            if glob::matches(ns, namespace) {
                return false;
            }
        } else if let Some(s) = server.strip_prefix('!') {
            if glob::matches(s, IN_CLUSTER_SERVER) {
                return false;
            }
        } else if entry_matches(server, name, ns) {
            allowed = true;
        }
    }
    allowed
}

/// Whether an entry matches: group and kind as globs, and `name` (newer Argo CD) as a glob
/// when given.
fn in_list(list: &[GroupKind], group: &str, kind: &str, name: &str) -> bool {
    list.iter().any(|gk| {
        let name_ok = match gk.rest.get("name").and_then(Value::as_str) {
            None | Some("") => true,
            Some(pattern) => glob::matches(pattern, name),
        };
        glob::matches(&gk.group, group) && glob::matches(&gk.kind, kind) && name_ok
    })
}

/// Whether the project lets an Application manage a resource of this group, kind and name: a
/// cluster-scoped kind must be in `clusterResourceWhitelist` (empty allows none) and not in
/// the blacklist; a namespaced one in `namespaceResourceWhitelist` when that is given, and not
/// in `namespaceResourceBlacklist`. `None` (the default project, not stored) allows everything.
pub fn resource_permitted(
    project: Option<Project<'_>>,
    group: &str,
    kind: &str,
    name: &str,
    namespaced: bool,
) -> Result<(), String> {
    let Some(p) = project else { return Ok(()) };
    let s = p.spec;
    let ok = if namespaced {
        (s.namespace_resource_whitelist.is_empty()
            || in_list(&s.namespace_resource_whitelist, group, kind, name))
            && !in_list(&s.namespace_resource_blacklist, group, kind, name)
    } else {
        in_list(&s.cluster_resource_whitelist, group, kind, name)
            && !in_list(&s.cluster_resource_blacklist, group, kind, name)
    };
    if ok {
        Ok(())
    } else {
        Err(format!(
            "resource {group}:{kind} is not permitted in project {}",
            p.name
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(v: serde_json::Value) -> Vec<String> {
        let app: ApplicationSpec = serde_json::from_value(v).unwrap();
        check(&app, None)
            .into_iter()
            .filter(|c| c.is_error())
            .map(|c| c.message)
            .collect()
    }

    #[test]
    fn destinations_sources_and_jq_table() {
        let src = json!({"repoURL": "file:///r", "path": "."});
        for (v, want) in [
            (
                json!({"source": src, "destination": {"server": "https://kubernetes.default.svc", "namespace": "a"}}),
                vec![],
            ),
            (
                json!({"source": src, "destination": {"name": "in-cluster"}}),
                vec![],
            ),
            (
                json!({"source": src}),
                vec!["Destination server missing from app spec"],
            ),
            (
                json!({"source": src, "destination": {"namespace": "a"}}),
                vec!["Destination server missing from app spec"],
            ),
            (
                json!({"source": src, "destination": {"server": "https://k8s.example.com"}}),
                vec![
                    "unable to find destination server: there are no clusters with this URL: https://k8s.example.com",
                ],
            ),
            (
                json!({"source": src, "destination": {"name": "prod"}}),
                vec![
                    "unable to find destination server: there are no clusters with this name: prod",
                ],
            ),
            (
                json!({"source": src, "destination": {"name": "in-cluster", "server": "https://kubernetes.default.svc"}}),
                vec![
                    "application destination can't have both name and server defined: in-cluster https://kubernetes.default.svc",
                ],
            ),
            (
                json!({"destination": {"name": "in-cluster"}}),
                vec!["spec.source or spec.sources must be specified"],
            ),
            (
                json!({"sources": [src, {"repoURL": "r", "chart": "redis"}], "destination": {"name": "in-cluster"}}),
                vec!["Helm is not supported: spec.sources[1].chart"],
            ),
            (
                json!({"source": src, "destination": {"name": "in-cluster"},
                    "ignoreDifferences": [{"kind": "ConfigMap", "jqPathExpressions": [".data", ".[[["]}]}),
                vec![
                    "spec.ignoreDifferences[0].jqPathExpressions[1]: \".[[[\" is not a jq expression",
                ],
            ),
        ] {
            assert_eq!(errors(v.clone()), want, "{v}");
        }
    }

    #[test]
    fn source_repos_globs_and_negation() {
        let p: AppProjectSpec = serde_json::from_value(json!({
            "sourceRepos": ["https://github.com/argoproj/*", "!https://github.com/argoproj/secret*"],
            "destinations": [{"server": "*", "namespace": "team-*"}, {"server": "*", "namespace": "!team-admin"}],
        }))
        .unwrap();
        assert!(repo_permitted(
            &p,
            "https://github.com/argoproj/argocd-example-apps.git"
        ));
        assert!(repo_permitted(&p, "HTTPS://github.com/argoproj/Guestbook/"));
        assert!(!repo_permitted(
            &p,
            "https://github.com/argoproj/secret-things"
        ));
        assert!(!repo_permitted(&p, "https://gitlab.com/argoproj/x"));
        assert!(destination_permitted(&p, "team-web"));
        assert!(!destination_permitted(&p, "team-admin"));
        assert!(!destination_permitted(&p, "default"));
    }
}
