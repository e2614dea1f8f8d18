//! Desired against live, per resource. Live objects in Shipway are whole objects written by a
//! sync through admission, plus what the server and controllers add (uid, resourceVersion,
//! generation, timestamps, status, a Deployment's revision annotation), so the comparison is of
//! `normalise(admit(desired))` with `normalise(live)`, after `ignoreDifferences` removed the
//! fields it names from both sides.

use serde_json::{Map, Value};
use shipway_model::crd::CustomKind;
use shipway_model::types::ResourceIgnoreDifferences;
use shipway_model::{Key, Object};
use similar::TextDiff;

use crate::glob;
use crate::tracking::{TRACKING_ANNOTATION, is_tracked_by};

/// `Synced` or `OutOfSync`, Argo's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncStatus {
    Synced,
    OutOfSync,
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Synced => "Synced",
            SyncStatus::OutOfSync => "OutOfSync",
        }
    }
}

/// One resource of the comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct ResourceDiff {
    pub key: Key,
    pub status: SyncStatus,
    /// Live, tracked by the app, no longer desired.
    pub requires_pruning: bool,
    /// The desired object after admission (what a sync applies); `None` when not desired.
    pub target: Option<Object>,
    pub live: Option<Object>,
    /// `===== group/Kind ns/name ======` then a unified diff of live against desired (empty
    /// when synced).
    pub diff: String,
    /// Why the desired object would be refused by admission, if it would.
    pub invalid: Option<String>,
}

/// Annotations the server or a controller writes on live objects; never a difference.
const SERVER_ANNOTATIONS: &[&str] = &[
    TRACKING_ANNOTATION,
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
];

/// Metadata the server sets.
const SERVER_METADATA: &[&str] = &[
    "uid",
    "resourceVersion",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// Compares `desired` with `live` for the app `app`: one entry per desired object (matched to the
/// live one with the same key), then one per live object tracked by `app` that is not desired
/// (`requires_pruning`), in that order. Live objects neither desired nor tracked are not the app's.
pub fn diff(
    app: &str,
    desired: &[Object],
    live: &[Object],
    ignore: &[ResourceIgnoreDifferences],
    custom: &[CustomKind],
) -> Vec<ResourceDiff> {
    let mut out = Vec::new();
    for d in desired {
        let key = d.key();
        let l = live.iter().find(|l| l.key() == key);
        let (target, invalid) = match shipway_model::admit(d.clone(), custom) {
            Ok(t) => (t, None),
            Err(e) => (d.clone(), Some(e.to_string())),
        };
        out.push(compare(key, Some(target), l.cloned(), ignore, invalid));
    }
    for l in live {
        let key = l.key();
        if is_tracked_by(app, l)
            && !crate::plan::is_hook(l)
            && !desired.iter().any(|d| d.key() == key)
        {
            let mut r = compare(key, None, Some(l.clone()), ignore, None);
            r.requires_pruning = true;
            out.push(r);
        }
    }
    out
}

fn compare(
    key: Key,
    target: Option<Object>,
    live: Option<Object>,
    ignore: &[ResourceIgnoreDifferences],
    invalid: Option<String>,
) -> ResourceDiff {
    let rules: Vec<&ResourceIgnoreDifferences> =
        ignore.iter().filter(|r| rule_applies(r, &key)).collect();
    let norm = |o: &Option<Object>| {
        o.as_ref().map(|o| {
            let mut v = normalise(o);
            for r in &rules {
                for p in &r.json_pointers {
                    remove_pointer(&mut v, p);
                }
                for e in &r.jq_path_expressions {
                    // A malformed expression is reported by `spec::check`; it deletes nothing.
                    if let Ok(out) = crate::jq::delete(&v, e) {
                        v = out;
                    }
                }
            }
            v
        })
    };
    let (t, l) = (norm(&target), norm(&live));
    let status = if t.is_some() && t == l && invalid.is_none() {
        SyncStatus::Synced
    } else {
        SyncStatus::OutOfSync
    };
    let diff = if t == l {
        String::new()
    } else {
        unified(&key, l.as_ref(), t.as_ref())
    };
    ResourceDiff {
        key,
        status,
        requires_pruning: false,
        target,
        live,
        diff,
        invalid,
    }
}

/// Whether an `ignoreDifferences` entry is about `key`: group and kind as globs (a missing
/// group is the core group), name and namespace exact when given, as Argo matches them.
pub fn rule_applies(r: &ResourceIgnoreDifferences, key: &Key) -> bool {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("");
    glob::matches(group, &key.group)
        && glob::matches(kind, &key.kind)
        && r.name
            .as_deref()
            .is_none_or(|n| n.is_empty() || n == key.name)
        && r.namespace
            .as_deref()
            .is_none_or(|n| n.is_empty() || n == key.namespace)
}

/// The object as compared: no status, no server metadata or annotations, no nulls, and empty
/// labels/annotations maps dropped.
pub fn normalise(obj: &Object) -> Value {
    let mut v = obj.to_json();
    let m = v.as_object_mut().expect("an object is a mapping");
    m.remove("status");
    if let Some(Value::Object(meta)) = m.get_mut("metadata") {
        for f in SERVER_METADATA {
            meta.remove(*f);
        }
        if let Some(Value::Object(a)) = meta.get_mut("annotations") {
            for k in SERVER_ANNOTATIONS {
                a.remove(*k);
            }
        }
        for f in ["annotations", "labels"] {
            if meta
                .get(f)
                .is_some_and(|a| a.as_object().is_some_and(Map::is_empty))
            {
                meta.remove(f);
            }
        }
    }
    drop_nulls(&mut v);
    v
}

fn drop_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, v| !v.is_null());
            m.values_mut().for_each(drop_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

/// Removes the node an RFC 6901 pointer names, if it exists.
fn remove_pointer(v: &mut Value, pointer: &str) {
    let Some((parent, last)) = pointer.rsplit_once('/') else {
        return;
    };
    let last = last.replace("~1", "/").replace("~0", "~");
    match v.pointer_mut(parent) {
        Some(Value::Object(m)) => {
            m.remove(&last);
        }
        Some(Value::Array(a)) => {
            if let Ok(i) = last.parse::<usize>()
                && i < a.len()
            {
                a.remove(i);
            }
        }
        _ => {}
    }
}

/// `argocd app diff`'s header, then a unified diff of the YAML of live (`-`) against desired
/// (`+`).
fn unified(key: &Key, live: Option<&Value>, target: Option<&Value>) -> String {
    let yaml = |v: Option<&Value>| v.map(shipway_kustomize::emit::to_yaml).unwrap_or_default();
    let (l, t) = (yaml(live), yaml(target));
    let header = format!(
        "===== {}/{} {}/{} ======\n",
        key.group, key.kind, key.namespace, key.name
    );
    let body = TextDiff::from_lines(&l, &t)
        .unified_diff()
        .context_radius(3)
        .header("live", "desired")
        .to_string();
    header + &body
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Object {
        serde_json::from_value(v).unwrap()
    }

    fn deployment(image: &str, replicas: i64) -> Object {
        obj(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "web", "image": image}]},
                },
            },
        }))
    }

    /// `desired` as a sync stores it: admitted, tracked, then touched by the server.
    fn stored(desired: &Object) -> Object {
        let mut l = shipway_model::admit(desired.clone(), &[]).unwrap();
        l = crate::tracking::with_tracking_id("app", l);
        l.metadata.uid = Some("u-1".into());
        l.metadata.resource_version = Some("42".into());
        l.metadata.generation = 3;
        l.metadata.creation_timestamp = Some("2026-01-01T00:00:00Z".into());
        l.metadata
            .annotations
            .insert("deployment.kubernetes.io/revision".into(), "2".into());
        l.body.insert("status".into(), json!({"replicas": 2}));
        l
    }

    #[test]
    fn server_metadata_status_and_defaults_are_not_differences() {
        let d = deployment("web:1", 2);
        let r = diff("app", std::slice::from_ref(&d), &[stored(&d)], &[], &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, SyncStatus::Synced, "{}", r[0].diff);
        assert_eq!(r[0].diff, "");
    }

    #[test]
    fn a_secrets_string_data_matches_its_stored_data() {
        let s = obj(json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "namespace": "default"}, "stringData": {"a": "b"}}));
        let r = diff("app", std::slice::from_ref(&s), &[stored(&s)], &[], &[]);
        assert_eq!(r[0].status, SyncStatus::Synced, "{}", r[0].diff);
    }

    #[test]
    fn a_changed_field_is_out_of_sync_with_argos_header_and_a_unified_diff() {
        let live = stored(&deployment("web:1", 2));
        let r = diff("app", &[deployment("web:2", 2)], &[live], &[], &[]);
        assert_eq!(r[0].status, SyncStatus::OutOfSync);
        let text = &r[0].diff;
        assert!(
            text.starts_with("===== apps/Deployment default/web ======\n--- live\n+++ desired\n"),
            "{text}"
        );
        assert!(text.contains("\n-      - image: web:1\n"), "{text}");
        assert!(text.contains("\n+      - image: web:2\n"), "{text}");
    }

    #[test]
    fn missing_live_is_out_of_sync_and_untracked_extra_live_is_not_the_apps() {
        let d = deployment("web:1", 2);
        let mut other = stored(&deployment("x:1", 1));
        other.metadata.name = "other".into();
        other.metadata.annotations.remove(TRACKING_ANNOTATION);
        let r = diff("app", &[d], &[other], &[], &[]);
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, SyncStatus::OutOfSync);
        assert!(r[0].live.is_none());
        assert!(r[0].diff.contains("+kind: Deployment"), "{}", r[0].diff);
    }

    #[test]
    fn tracked_live_no_longer_desired_requires_pruning() {
        let mut gone = stored(&deployment("x:1", 1));
        gone.metadata.name = "gone".into();
        gone = crate::tracking::with_tracking_id("app", gone);
        let r = diff("app", &[], &[gone.clone()], &[], &[]);
        assert_eq!(r.len(), 1);
        assert!(r[0].requires_pruning);
        assert_eq!(r[0].status, SyncStatus::OutOfSync);
        // Another app's object is not ours to prune.
        assert!(diff("other", &[], &[gone], &[], &[]).is_empty());
    }

    #[test]
    fn ignore_differences_table() {
        let live = stored(&deployment("web:1", 5));
        let rule = |v: Value| -> ResourceIgnoreDifferences { serde_json::from_value(v).unwrap() };
        for (r, want) in [
            (
                rule(
                    json!({"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/replicas"]}),
                ),
                SyncStatus::Synced,
            ),
            (
                rule(json!({"group": "*", "kind": "*", "jsonPointers": ["/spec/replicas"]})),
                SyncStatus::Synced,
            ),
            (
                rule(
                    json!({"group": "apps", "kind": "Deployment", "name": "web", "namespace": "default", "jsonPointers": ["/spec/replicas"]}),
                ),
                SyncStatus::Synced,
            ),
            (
                rule(
                    json!({"group": "apps", "kind": "Deployment", "name": "other", "jsonPointers": ["/spec/replicas"]}),
                ),
                SyncStatus::OutOfSync,
            ),
            (
                rule(
                    json!({"group": "apps", "kind": "Deployment", "namespace": "prod", "jsonPointers": ["/spec/replicas"]}),
                ),
                SyncStatus::OutOfSync,
            ),
            (
                rule(json!({"kind": "Deployment", "jsonPointers": ["/spec/replicas"]})),
                SyncStatus::OutOfSync,
            ),
            (
                rule(
                    json!({"group": "apps", "kind": "Deployment", "jsonPointers": ["/spec/template"]}),
                ),
                SyncStatus::OutOfSync,
            ),
            (
                rule(
                    json!({"group": "apps", "kind": "Deployment", "jqPathExpressions": [".spec.replicas"]}),
                ),
                SyncStatus::Synced,
            ),
            (
                rule(
                    json!({"group": "apps", "kind": "Deployment", "jqPathExpressions": [".spec.template"]}),
                ),
                SyncStatus::OutOfSync,
            ),
            (
                rule(json!({"group": "apps", "kind": "Deployment", "jqPathExpressions": [".[[["]})),
                SyncStatus::OutOfSync,
            ),
        ] {
            let got = diff(
                "app",
                &[deployment("web:1", 2)],
                std::slice::from_ref(&live),
                std::slice::from_ref(&r),
                &[],
            );
            assert_eq!(got[0].status, want, "{r:?}\n{}", got[0].diff);
        }
    }

    #[test]
    fn pointers_with_escapes_and_indexes() {
        let mut v = json!({"metadata": {"annotations": {"a/b": "1", "c": "2"}}, "l": [1, 2, 3]});
        remove_pointer(&mut v, "/metadata/annotations/a~1b");
        remove_pointer(&mut v, "/l/1");
        remove_pointer(&mut v, "/nothing/here");
        assert_eq!(
            v,
            json!({"metadata": {"annotations": {"c": "2"}}, "l": [1, 3]})
        );
    }

    #[test]
    fn a_desired_object_admission_refuses_is_out_of_sync_and_says_why() {
        let bad = obj(json!({"apiVersion": "v1", "kind": "Nonsense",
            "metadata": {"name": "x", "namespace": "default"}}));
        let r = diff(
            "app",
            std::slice::from_ref(&bad),
            std::slice::from_ref(&bad),
            &[],
            &[],
        );
        assert_eq!(r[0].status, SyncStatus::OutOfSync);
        assert!(
            r[0].invalid
                .as_deref()
                .is_some_and(|e| e.contains("Nonsense")),
            "{:?}",
            r[0].invalid
        );
    }
}
