//! Render, spec checks and plans over Argo CD's own example apps and docs
//! (`shared/corpus/argo`), read from disk through `DiskFs`; the kustomize overrides are also
//! checked against `kubectl kustomize` on the edited kustomization when kubectl is on PATH.

use std::path::{Path, PathBuf};

use serde_json::json;
use shipway_fs::DiskFs;
use shipway_gitops::plan::{Action, Phase, SyncOptions, plan};
use shipway_gitops::render::{RenderError, render};
use shipway_gitops::spec::{self, Project};
use shipway_model::Object;
use shipway_model::types::{AppProjectSpec, ApplicationSource, ApplicationSpec};

fn corpus() -> Option<PathBuf> {
    if let Some(root) = std::env::var_os("SHIPWAY_CORPUS") {
        return Some(PathBuf::from(root).join("argo"));
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/argo");
    beside.is_dir().then_some(beside)
}

macro_rules! corpus_or_skip {
    () => {
        match corpus() {
            Some(c) => c,
            None => {
                println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
                return;
            }
        }
    };
}

fn source(v: serde_json::Value) -> ApplicationSource {
    serde_json::from_value(v).unwrap()
}

fn render_path(root: &Path, path: &str, ns: &str) -> Result<Vec<Object>, RenderError> {
    let s = source(json!({"repoURL": "file:///repo", "path": path}));
    Ok(render(&DiskFs, root, &s, ns)?
        .into_iter()
        .map(|r| r.object)
        .collect())
}

fn keys(objs: &[Object]) -> Vec<String> {
    objs.iter().map(|o| o.key().to_string()).collect()
}

#[test]
fn guestbook_renders_as_a_directory_into_the_destination_namespace() {
    let root = corpus_or_skip!().join("example-apps");
    let objs = render_path(&root, "guestbook", "prod").unwrap();
    assert_eq!(
        keys(&objs),
        [
            "Deployment.apps/prod/guestbook-ui",
            "Service/prod/guestbook-ui"
        ]
    );
}

#[test]
fn kustomize_guestbook_and_pre_post_sync_render_with_their_prefixes() {
    let root = corpus_or_skip!().join("example-apps");
    let objs = render_path(&root, "kustomize-guestbook", "default").unwrap();
    assert_eq!(
        keys(&objs),
        [
            "Service/default/kustomize-guestbook-ui",
            "Deployment.apps/default/kustomize-guestbook-ui"
        ]
    );
    let objs = render_path(&root, "pre-post-sync", "default").unwrap();
    let names: Vec<&str> = objs.iter().map(|o| o.metadata.name.as_str()).collect();
    assert!(names.contains(&"pre-post-sync-before"), "{names:?}");
    assert!(names.contains(&"pre-post-sync-after"), "{names:?}");
}

#[test]
fn sock_shop_renders() {
    let root = corpus_or_skip!().join("example-apps");
    let objs = render_path(&root, "sock-shop", "sock-shop").unwrap();
    assert!(objs.len() > 20, "{}", objs.len());
    assert!(
        objs.iter()
            .all(|o| o.metadata.namespace.is_some() || o.kind == "Namespace")
    );
}

/// The whole pipeline on sock-shop: once stored as a sync stores it, every resource is
/// `Synced` and the plan (prune on) has nothing to prune; times are printed, not asserted.
#[test]
fn sock_shop_once_synced_is_synced() {
    let root = corpus_or_skip!().join("example-apps");
    let t0 = std::time::Instant::now();
    let objs = render_path(&root, "sock-shop", "sock-shop").unwrap();
    let rendered = t0.elapsed();
    let live: Vec<Object> = objs
        .iter()
        .map(|o| {
            let mut l = shipway_model::admit(o.clone(), &[]).unwrap();
            l = shipway_gitops::tracking::with_tracking_id("app", l);
            l.metadata.resource_version = Some("7".into());
            l.metadata.uid = Some(format!("uid-{}", l.metadata.name));
            l.body
                .insert("status".into(), json!({"observedGeneration": 1}));
            l
        })
        .collect();
    let t1 = std::time::Instant::now();
    let d = shipway_gitops::diff("app", &objs, &live, &[], &[]);
    let diffed = t1.elapsed();
    let out_of_sync: Vec<&str> = d
        .iter()
        .filter(|r| r.status != shipway_gitops::SyncStatus::Synced)
        .map(|r| r.diff.as_str())
        .collect();
    assert!(out_of_sync.is_empty(), "{}", out_of_sync.join("\n"));
    let mut o = opts();
    o.prune = true;
    let t2 = std::time::Instant::now();
    let p = plan(&objs, &live, &o).unwrap();
    let planned = t2.elapsed();
    assert_eq!(p.tasks().count(), objs.len());
    assert!(
        p.tasks()
            .all(|(_, _, t)| t.action == Action::Apply && !t.out_of_sync)
    );
    println!(
        "sock-shop: {} objects; render {rendered:?}, diff {diffed:?}, plan {planned:?}",
        objs.len()
    );
}

#[test]
fn helm_jsonnet_and_bad_paths_are_refused_by_name() {
    let root = corpus_or_skip!().join("example-apps");
    let e = render_path(&root, "helm-guestbook", "default").unwrap_err();
    assert!(matches!(e, RenderError::Unsupported(_)), "{e}");
    assert!(e.to_string().starts_with("Helm is not supported"), "{e}");
    assert_eq!(e.condition_type(), "InvalidSpecError");
    let e = render_path(&root, "jsonnet-guestbook", "default").unwrap_err();
    assert_eq!(
        e.to_string(),
        "Jsonnet is not supported: guestbook-ui.jsonnet"
    );
    let e = render_path(&root, "no-such-app", "default").unwrap_err();
    assert_eq!(e.to_string(), "no-such-app: app path does not exist");
    assert_eq!(e.condition_type(), "ComparisonError");
    let e = render_path(&root, "../../argo", "default").unwrap_err();
    assert_eq!(e.to_string(), "../../argo: app path outside root");
    let e = render_path(&root, "/etc", "default").unwrap_err();
    assert_eq!(e.to_string(), "/etc: app path is absolute");
    let helm = source(json!({"repoURL": "x", "path": "guestbook", "helm": {"releaseName": "g"}}));
    let e = render(&DiskFs, &root, &helm, "default").unwrap_err();
    assert_eq!(e.to_string(), "Helm is not supported: spec.source.helm");
}

#[test]
fn hooks_named_by_generate_name_render_without_a_name() {
    let root = corpus_or_skip!().join("example-apps");
    let objs = render_path(&root, "sync-waves", "default").unwrap();
    let hook = &objs[0];
    assert_eq!(hook.kind, "Job");
    assert_eq!(hook.metadata.name, "");
    assert_eq!(
        hook.metadata.generate_name.as_deref(),
        Some("upgrade-sql-schema")
    );
}

#[test]
fn a_non_hook_named_by_generate_name_is_refused_with_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  generateName: cm-\n",
    )
    .unwrap();
    let e = render_path(dir.path(), ".", "default").unwrap_err();
    assert_eq!(e.condition_type(), "ComparisonError");
    let e = e.to_string();
    assert!(
        e.contains("cm.yaml:6: ConfigMap with metadata.generateName \"cm-\" is not a hook"),
        "{e}"
    );
    // A kustomization still needs names, as kustomize does.
    std::fs::write(
        dir.path().join("kustomization.yaml"),
        "resources: [cm.yaml]\n",
    )
    .unwrap();
    let e = render_path(dir.path(), ".", "default")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("missing metadata.name in ConfigMap object"),
        "{e}"
    );
}

fn order(p: &shipway_gitops::Plan) -> Vec<String> {
    p.tasks()
        .map(|(phase, wave, t)| format!("{} {wave} {} {}", phase.as_str(), t.key.kind, t.key.name))
        .collect()
}

fn opts() -> SyncOptions {
    SyncOptions {
        app: "app".into(),
        revision: "9e7a1c2f3b4d5e6f708192a3b4c5d6e7f8091a2b".into(),
        started_at: 1764747000,
        ..SyncOptions::default()
    }
}

#[test]
fn sync_waves_plan_in_argos_order() {
    let root = corpus_or_skip!().join("example-apps");
    let objs = render_path(&root, "sync-waves", "default").unwrap();
    let p = plan(&objs, &[], &opts()).unwrap();
    assert_eq!(
        order(&p),
        [
            // gitops-engine's name: generateName + sha[..7] + phase + start (Unix seconds).
            "PreSync 0 Job upgrade-sql-schema9e7a1c2-presync-1764747000",
            "Sync 0 Service backend",
            "Sync 0 ReplicaSet backend",
            "Sync 1 Job maint-page-up",
            "Sync 2 Service frontend",
            "Sync 2 ReplicaSet frontend",
            "Sync 3 Job maint-page-down",
        ]
    );
    assert_eq!(
        p.phases.iter().map(|p| p.phase).collect::<Vec<_>>(),
        [Phase::PreSync, Phase::Sync]
    );
}

#[test]
fn pre_post_sync_plan_runs_the_hooks_around_the_sync() {
    let root = corpus_or_skip!().join("example-apps");
    let objs = render_path(&root, "pre-post-sync", "default").unwrap();
    let p = plan(&objs, &[], &opts()).unwrap();
    assert_eq!(
        order(&p),
        [
            "PreSync 0 Job pre-post-sync-before",
            "Sync 0 Service pre-post-sync-kustomize-guestbook-ui",
            "Sync 0 Deployment pre-post-sync-kustomize-guestbook-ui",
            "PostSync 0 Job pre-post-sync-after",
        ]
    );
    let (_, _, pre) = p.tasks().next().unwrap();
    assert_eq!(
        pre.action,
        Action::Hook {
            delete_policies: vec![shipway_gitops::plan::DeletePolicy::HookSucceeded]
        }
    );
}

#[test]
fn helm_hooks_map_to_argo_phases_and_weights_to_waves() {
    let root = corpus_or_skip!().join("example-apps");
    let objs = render_path(&root, "helm-hooks", "default").unwrap();
    let p = plan(&objs, &[], &opts()).unwrap();
    assert_eq!(
        order(&p),
        [
            "PreSync -2 Job upgrade-sql-schema9e7a1c2-presync-1764747000",
            "PreSync -1 Job maint-page-up",
            "Sync 0 ReplicaSet frontend",
            "Sync 2 Service frontend",
            "PostSync 0 Job maint-page-down",
        ]
    );
}

fn kustomize_overrides() -> ApplicationSource {
    source(json!({
        "repoURL": "x", "path": "kustomize-guestbook",
        "kustomize": {
            "namePrefix": "prod-", "nameSuffix": "-v2", "namespace": "shop",
            "images": ["gcr.io/google-samples/gb-frontend:v6", "other=registry.local:5000/other@sha256:abc"],
            "commonLabels": {"team": "web"}, "commonAnnotations": {"owner": "ops"},
            "replicas": [{"name": "guestbook-ui", "count": 3}],
            "patches": [{"target": {"kind": "Service"}, "patch": "- op: add\n  path: /spec/sessionAffinity\n  value: ClientIP"}],
        },
    }))
}

#[test]
fn kustomize_overrides_apply_as_kustomize_edit_does() {
    let root = corpus_or_skip!().join("example-apps");
    let objs: Vec<Object> = render(&DiskFs, &root, &kustomize_overrides(), "default")
        .unwrap()
        .into_iter()
        .map(|r| r.object)
        .collect();
    // `kustomize edit set nameprefix` replaces the kustomization's own `kustomize-` prefix.
    assert_eq!(
        keys(&objs),
        [
            "Service/shop/prod-guestbook-ui-v2",
            "Deployment.apps/shop/prod-guestbook-ui-v2"
        ]
    );
    let d = &objs[1];
    assert_eq!(d.field("spec.replicas"), Some(&json!(3)));
    assert_eq!(
        d.field("spec.template.spec.containers").unwrap()[0]["image"],
        json!("gcr.io/google-samples/gb-frontend:v6")
    );
    assert_eq!(
        d.metadata.labels.get("team").map(String::as_str),
        Some("web")
    );
    assert_eq!(
        d.metadata.annotations.get("owner").map(String::as_str),
        Some("ops")
    );
    assert_eq!(
        objs[0].field("spec.sessionAffinity"),
        Some(&json!("ClientIP"))
    );
}

/// The edited kustomization, written beside a copy of the tree, built by `kubectl kustomize`,
/// prints what Shipway renders from the overlay.
#[test]
fn kustomize_overrides_equal_kubectl_kustomize_of_the_edited_kustomization() {
    let root = corpus_or_skip!().join("example-apps");
    if std::process::Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
        .is_err()
    {
        println!("SKIPPED: no kubectl on PATH");
        return;
    }
    let src = kustomize_overrides();
    let k = src.kustomize.as_ref().unwrap();
    let dir = root.join("kustomize-guestbook");
    let edited =
        shipway_gitops::render::edited_kustomization(&DiskFs, &dir.join("kustomization.yaml"), k)
            .unwrap();
    let copy = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, copy.path().join(p.file_name().unwrap())).unwrap();
    }
    std::fs::write(copy.path().join("kustomization.yaml"), &edited).unwrap();
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(copy.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs = String::from_utf8(out.stdout).unwrap();
    let ours: Vec<String> = render(&DiskFs, &root, &src, "")
        .unwrap()
        .iter()
        .map(|r| shipway_kustomize::emit::to_yaml(&r.object.to_json()))
        .collect();
    assert_eq!(
        ours.join("---\n"),
        theirs,
        "edited kustomization:\n{edited}"
    );
}

#[test]
fn directory_include_exclude_and_recurse() {
    let dir = tempfile::tempdir().unwrap();
    let cm = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    std::fs::create_dir_all(dir.path().join("app/sub")).unwrap();
    std::fs::write(dir.path().join("app/a.yaml"), cm("a")).unwrap();
    std::fs::write(dir.path().join("app/b.yml"), cm("b")).unwrap();
    std::fs::write(
        dir.path().join("app/c.json"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("app/README.md"), "not yaml").unwrap();
    std::fs::write(dir.path().join("app/sub/d.yaml"), cm("d")).unwrap();
    let names = |d: serde_json::Value| -> Vec<String> {
        let s = source(json!({"repoURL": "x", "path": "app", "directory": d}));
        render(&DiskFs, dir.path(), &s, "ns")
            .unwrap()
            .into_iter()
            .map(|r| r.object.metadata.name)
            .collect()
    };
    assert_eq!(names(json!({})), ["a", "b", "c"]);
    assert_eq!(names(json!({"recurse": true})), ["a", "b", "c", "d"]);
    assert_eq!(
        names(json!({"recurse": true, "include": "*.yaml"})),
        ["a", "d"]
    );
    assert_eq!(
        names(json!({"recurse": true, "exclude": "{b.yml,sub/*}"})),
        ["a", "c"]
    );
    assert_eq!(
        names(json!({"recurse": true, "include": "{a.yaml,sub/d.yaml}", "exclude": "a.yaml"})),
        ["d"]
    );
    // A broken manifest keeps its file and line.
    std::fs::write(
        dir.path().join("app/e.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: [x\n",
    )
    .unwrap();
    let s = source(json!({"repoURL": "x", "path": "app"}));
    let e = render(&DiskFs, dir.path(), &s, "ns")
        .unwrap_err()
        .to_string();
    assert!(e.contains("app/e.yaml:5:1: invalid YAML"), "{e}");
}

fn load_all(path: &Path) -> Vec<Object> {
    let text = std::fs::read_to_string(path).unwrap();
    shipway_model::load_str(&path.display().to_string(), &text)
        .unwrap()
        .into_iter()
        .map(|l| l.object)
        .collect()
}

fn messages(c: &[shipway_model::types::ApplicationCondition], type_: &str) -> Vec<String> {
    c.iter()
        .filter(|c| c.type_ == type_)
        .map(|c| c.message.clone())
        .collect()
}

#[test]
fn the_docs_application_lists_what_shipway_refuses_and_does_not_implement() {
    let root = corpus_or_skip!().join("applications");
    let mut apps = 0;
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        for o in load_all(&p) {
            if o.kind == "Application" {
                apps += 1;
                let spec: ApplicationSpec = o.spec_as().unwrap();
                let c = spec::check(&spec, None);
                println!("{}: {c:#?}", p.display());
                let errors = messages(&c, "InvalidSpecError");
                for want in [
                    "Helm is not supported: spec.source.helm",
                    "Helm is not supported: spec.source.chart",
                    "Config management plugins are not supported: spec.source.plugin",
                    "Jsonnet is not supported: spec.source.directory.jsonnet",
                ] {
                    // `sources` is given too, so `source` is ignored, as Argo does...
                    assert!(!errors.iter().any(|e| e == want), "{want} in {errors:?}");
                }
                assert!(
                    !errors.iter().any(|e| e.contains("jqPathExpressions")),
                    "{errors:?}"
                );
                let warnings = messages(&c, "UnsupportedFieldWarning");
                for want in [
                    "spec.source is ignored: spec.sources is given (as Argo CD does)",
                    "spec.info is not implemented by Shipway and is ignored",
                    "spec.sourceHydrator is not implemented by Shipway and is ignored",
                    "spec.sources[0].ref is not implemented by Shipway and is ignored",
                    "spec.syncPolicy.managedNamespaceMetadata is not implemented by Shipway and is ignored",
                    "spec.syncPolicy.syncOptions: Validate=false is not implemented by Shipway and is ignored",
                    "spec.syncPolicy.syncOptions: Replace=true is not implemented by Shipway and is ignored",
                    "spec.ignoreDifferences[2].managedFieldsManagers is not implemented by Shipway (it has no managed fields) and is ignored",
                ] {
                    assert!(
                        warnings.iter().any(|w| w == want),
                        "{want:?} not in {warnings:#?}"
                    );
                }
                assert!(
                    !warnings
                        .iter()
                        .any(|w| w.contains("CreateNamespace") || w.contains("PruneLast")),
                    "{warnings:#?}"
                );
                // ...and with only `source`, its Helm, plugin and Jsonnet fields are refused by name.
                let mut single = spec.clone();
                single.sources.clear();
                let c = spec::check(&single, None);
                let errors = messages(&c, "InvalidSpecError");
                for want in [
                    "Helm is not supported: spec.source.helm",
                    "Helm is not supported: spec.source.chart",
                    "Config management plugins are not supported: spec.source.plugin",
                    "Jsonnet is not supported: spec.source.directory.jsonnet",
                ] {
                    assert!(errors.iter().any(|e| e == want), "{want} not in {errors:?}");
                }
                let warnings = messages(&c, "UnsupportedFieldWarning");
                for want in [
                    "spec.source.kustomize.version is not implemented by Shipway and is ignored",
                    "spec.source.kustomize.commonAnnotationsEnvsubst is not implemented by Shipway and is ignored",
                ] {
                    assert!(
                        warnings.iter().any(|w| w == want),
                        "{want:?} not in {warnings:#?}"
                    );
                }
            }
        }
    }
    assert!(apps >= 1);
}

#[test]
fn the_docs_project_restricts_sources_destinations_and_resources() {
    let root = corpus_or_skip!().join("applications");
    let p = load_all(&root.join("docs__operator-manual__project.yaml"))
        .into_iter()
        .find(|o| o.kind == "AppProject")
        .unwrap();
    let ps: AppProjectSpec = p.spec_as().unwrap();
    let warnings: Vec<String> = spec::project_warnings("my-project", &ps)
        .into_iter()
        .map(|c| c.message)
        .collect();
    for want in [
        "AppProject my-project: spec.roles is not implemented by Shipway and is ignored",
        "AppProject my-project: spec.syncWindows is not implemented by Shipway and is ignored",
        "AppProject my-project: spec.orphanedResources is not implemented by Shipway and is ignored",
    ] {
        assert!(
            warnings.iter().any(|w| w == want),
            "{want:?} not in {warnings:#?}"
        );
    }
    let project = Some(Project {
        name: "my-project",
        spec: &ps,
    });
    let app = |ns: &str| -> ApplicationSpec {
        serde_json::from_value(json!({
            "project": "my-project",
            "source": {"repoURL": "https://github.com/argoproj/argocd-example-apps.git", "path": "guestbook"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": ns},
        }))
        .unwrap()
    };
    assert!(messages(&spec::check(&app("guestbook"), project), "InvalidSpecError").is_empty());
    assert!(
        messages(
            &spec::check(&app("guestbook-prod"), project),
            "InvalidSpecError"
        )
        .is_empty()
    );
    assert_eq!(
        messages(
            &spec::check(&app("kube-system"), project),
            "InvalidSpecError"
        ),
        [
            "application destination server 'https://kubernetes.default.svc' and namespace 'kube-system' do not match any of the allowed destinations in project 'my-project'"
        ]
    );
    assert_eq!(
        messages(&spec::check(&app("guestbook"), None), "InvalidSpecError"),
        ["Application referencing project my-project which does not exist"]
    );
    // Resources: Namespace is whitelisted cluster-wide; namespaced only Deployments and
    // StatefulSets, and the blacklist wins.
    assert!(
        !warnings.iter().any(|w| w.contains(".name")),
        "{warnings:#?}"
    );
    assert!(spec::resource_permitted(project, "", "Namespace", "shop", false).is_ok());
    // The blacklist entry names `kube-*` namespaces only.
    assert!(spec::resource_permitted(project, "", "Namespace", "kube-public", false).is_err());
    assert_eq!(
        spec::resource_permitted(
            project,
            "rbac.authorization.k8s.io",
            "ClusterRole",
            "admin",
            false
        ),
        Err(
            "resource rbac.authorization.k8s.io:ClusterRole is not permitted in project my-project"
                .into()
        )
    );
    assert!(spec::resource_permitted(project, "apps", "Deployment", "web", true).is_ok());
    assert!(spec::resource_permitted(project, "", "ConfigMap", "c", true).is_err());
    assert!(spec::resource_permitted(None, "", "ConfigMap", "c", true).is_ok());
}
