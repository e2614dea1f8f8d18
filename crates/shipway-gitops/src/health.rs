//! An Application's health: the worst health of its resources in gitops-engine's order
//! (Healthy < Suspended < Progressing < Missing < Degraded < Unknown, `IsWorse`). Hooks and
//! `Skip`ped resources do not count; a desired resource that is not live is `Missing`; kinds
//! without a health rule do not count, as in Argo CD.

use shipway_model::Object;
use shipway_model::health::{HealthStatus, health};

use crate::plan::{is_hook, is_skipped};

/// The app's health and a message: the first resource at the worst status, as
/// `Kind ns/name: message` (Argo leaves the app's message empty; Shipway says which resource).
pub fn app_health<'a>(
    resources: impl IntoIterator<Item = (Option<&'a Object>, Option<&'a Object>)>,
) -> (HealthStatus, String) {
    let mut worst = (HealthStatus::Healthy, String::new());
    for (target, live) in resources {
        if target.is_some_and(is_skipped)
            || live.is_some_and(is_hook)
            || target.is_some_and(is_hook)
        {
            continue;
        }
        let (status, message, key) = match (live, target) {
            (Some(l), _) => match health(l) {
                Some(h) => (h.status, h.message, l.key()),
                None => continue,
            },
            (None, Some(t)) => (HealthStatus::Missing, String::new(), t.key()),
            (None, None) => continue,
        };
        if worst.0.is_worse(status) {
            let what = format!("{} {}/{}", key.kind, key.namespace, key.name);
            let message = if message.is_empty() {
                format!("{what}: {status}")
            } else {
                format!("{what}: {message}")
            };
            worst = (status, message);
        }
    }
    worst
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: serde_json::Value) -> Object {
        serde_json::from_value(v).unwrap()
    }

    fn deployment(name: &str, replicas: i64, ready: i64, hook: bool) -> Object {
        let mut o = obj(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": "default", "generation": 1},
            "spec": {"replicas": replicas},
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                "readyReplicas": ready, "availableReplicas": ready},
        }));
        if hook {
            o.metadata
                .annotations
                .insert("argocd.argoproj.io/hook".into(), "PostSync".into());
        }
        o
    }

    #[test]
    fn the_worst_resource_wins_in_argos_order_and_hooks_do_not_count() {
        let healthy = deployment("a", 1, 1, false);
        let progressing = deployment("b", 2, 1, false);
        let failing_hook = deployment("h", 2, 0, true);
        let cm = obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default"}}));
        let (s, _) = app_health([(Some(&healthy), Some(&healthy)), (Some(&cm), Some(&cm))]);
        assert_eq!(s, HealthStatus::Healthy);
        let (s, m) = app_health([
            (Some(&healthy), Some(&healthy)),
            (Some(&progressing), Some(&progressing)),
            (Some(&failing_hook), Some(&failing_hook)),
        ]);
        assert_eq!(s, HealthStatus::Progressing);
        assert!(m.starts_with("Deployment default/b: "), "{m}");
        // Missing is worse than Progressing, better than Degraded.
        let (s, m) = app_health([
            (Some(&progressing), Some(&progressing)),
            (Some(&healthy), None),
        ]);
        assert_eq!(
            (s, m.as_str()),
            (HealthStatus::Missing, "Deployment default/a: Missing")
        );
        assert!(HealthStatus::Missing.is_worse(HealthStatus::Degraded));
        assert!(HealthStatus::Suspended.is_worse(HealthStatus::Progressing));
        assert!(!HealthStatus::Unknown.is_worse(HealthStatus::Degraded));
    }
}
