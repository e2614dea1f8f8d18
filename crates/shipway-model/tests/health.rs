//! Argo CD's health rules, checked against the inputs and expectations of Argo's own tests
//! (`shared/corpus/argo/argocd-health`): gitops-engine's testdata for the core kinds, whose
//! expected codes are those of its `health_test.go`, and Argo CD's `health_test.yaml` files for
//! the Argo kinds, which give the message too.

use std::path::{Path, PathBuf};

use serde_json::Value;
use shipway_model::health::{Health, HealthStatus, health};
use shipway_model::{Object, load_str};

fn corpus() -> Option<PathBuf> {
    // `cargo xtask test` sets SHIPWAY_CORPUS to the corpus it found (and requires it in CI).
    if let Some(root) = std::env::var_os("SHIPWAY_CORPUS") {
        return Some(PathBuf::from(root).join("argo/argocd-health"));
    }
    let beside =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/argo/argocd-health");
    beside.is_dir().then_some(beside)
}

fn object(path: &Path) -> Object {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut docs = load_str(&path.display().to_string(), &text)
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    assert_eq!(docs.len(), 1, "{}: one object expected", path.display());
    docs.remove(0).object
}

/// gitops-engine's `pkg/health/health_test.go`: file → expected code (`None`: no health rule).
/// Its two Application inputs have no `metadata`, which Shipway's loader refuses; the rule they
/// test (an Application has no built-in health) is checked in `applications_have_no_health`.
const CORE: &[(&str, Option<HealthStatus>)] = {
    use HealthStatus::*;
    &[
        ("utils-kube-testdata-nginx.yaml", Some(Healthy)),
        ("deployment-progressing.yaml", Some(Progressing)),
        ("deployment-suspended.yaml", Some(Suspended)),
        ("deployment-degraded.yaml", Some(Degraded)),
        ("statefulset.yaml", Some(Healthy)),
        ("daemonset-ondelete.yaml", Some(Healthy)),
        ("pvc-bound.yaml", Some(Healthy)),
        ("pvc-pending.yaml", Some(Progressing)),
        ("svc-clusterip.yaml", Some(Healthy)),
        ("svc-loadbalancer.yaml", Some(Healthy)),
        ("svc-loadbalancer-unassigned.yaml", Some(Progressing)),
        ("svc-loadbalancer-nonemptylist.yaml", Some(Healthy)),
        ("ingress.yaml", Some(Healthy)),
        ("ingress-unassigned.yaml", Some(Progressing)),
        ("ingress-nonemptylist.yaml", Some(Healthy)),
        ("knative-service.yaml", None),
        ("job-running.yaml", Some(Progressing)),
        ("job-failed.yaml", Some(Degraded)),
        ("job-succeeded.yaml", Some(Healthy)),
        ("job-suspended.yaml", Some(Suspended)),
        ("hpa-v2-healthy.yaml", Some(Healthy)),
        ("hpa-v2-degraded.yaml", Some(Degraded)),
        ("hpa-v2-progressing.yaml", Some(Progressing)),
        ("hpa-v1-degraded.yaml", Some(Degraded)),
        ("hpa-v1-healthy.yaml", Some(Healthy)),
        ("hpa-v1-healthy-toofew.yaml", Some(Healthy)),
        ("hpa-v1-progressing.yaml", Some(Progressing)),
        (
            "hpa-v1-progressing-with-no-annotations.yaml",
            Some(Progressing),
        ),
        ("pod-pending.yaml", Some(Progressing)),
        ("pod-running-not-ready.yaml", Some(Progressing)),
        ("pod-crashloop.yaml", Some(Degraded)),
        ("pod-imagepullbackoff.yaml", Some(Degraded)),
        ("pod-error.yaml", Some(Degraded)),
        ("pod-running-restart-always.yaml", Some(Healthy)),
        ("pod-running-restart-never.yaml", Some(Progressing)),
        ("pod-running-restart-onfailure.yaml", Some(Progressing)),
        ("pod-failed.yaml", Some(Degraded)),
        ("pod-succeeded.yaml", Some(Healthy)),
        ("pod-deletion.yaml", Some(Progressing)),
        ("apiservice-v1-true.yaml", Some(Healthy)),
        ("apiservice-v1-false.yaml", Some(Progressing)),
        ("apiservice-v1beta1-true.yaml", Some(Healthy)),
        ("apiservice-v1beta1-false.yaml", Some(Progressing)),
    ]
};

#[test]
fn core_kinds_are_assessed_as_gitops_engine_does() {
    let Some(root) = corpus() else {
        println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
        return;
    };
    let dir = root.join("gitops-engine-health");
    let mut wrong = Vec::new();
    for (file, want) in CORE {
        let got = health(&object(&dir.join(file)));
        if got.as_ref().map(|h| h.status) != *want {
            wrong.push(format!("{file}: want {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // One input repeats a key (`spec.updateStrategy`, twice `OnDelete`); Go's YAML decoder keeps
    // the last, Shipway refuses the file as `kubectl apply` does under its default strict field
    // validation, so its health is never asked.
    let file = dir.join("statefulset-ondelete.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let errors = load_str("statefulset-ondelete.yaml", &text).unwrap_err();
    assert_eq!(
        errors.iter().map(ToString::to_string).collect::<Vec<_>>(),
        [
            "statefulset-ondelete.yaml:94:3: spec: duplicate key \"updateStrategy\" (first at line 30, column 3)"
        ]
    );
}

/// A few messages of the core rules, which users read in `shipway get` and the dashboard.
#[test]
fn core_messages_are_argos() {
    let Some(root) = corpus() else {
        println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
        return;
    };
    let dir = root.join("gitops-engine-health");
    let message = |file: &str| health(&object(&dir.join(file))).unwrap().message;
    assert_eq!(
        message("deployment-degraded.yaml"),
        "Deployment \"guestbook-ui\" exceeded its progress deadline"
    );
    assert_eq!(message("pod-deletion.yaml"), "Pending deletion");
    assert!(
        message("pod-imagepullbackoff.yaml").contains("Back-off pulling image"),
        "{}",
        message("pod-imagepullbackoff.yaml")
    );
}

#[test]
fn argo_kinds_are_assessed_as_argo_cd_does() {
    let Some(root) = corpus() else {
        println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
        return;
    };
    let mut checked = 0;
    let mut wrong = Vec::new();
    for kind in ["Rollout", "AnalysisRun", "Experiment", "ApplicationSet"] {
        let dir = root.join("resource_customizations/argoproj.io").join(kind);
        let spec = object_tests(&dir.join("health_test.yaml"));
        for (input, want) in spec {
            let got = health(&object(&dir.join(&input)));
            checked += 1;
            if got.as_ref() != Some(&want) {
                wrong.push(format!("{kind} {input}: want {want:?}, got {got:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert_eq!(
        checked,
        24 + 11 + 6 + 5,
        "every case of the four files is checked"
    );
}

/// The cases of an Argo CD `health_test.yaml`: input file and expected assessment.
fn object_tests(path: &Path) -> Vec<(String, Health)> {
    let text = std::fs::read_to_string(path).unwrap();
    // The file is not an object (no apiVersion/kind): read it through the JSON form of YAML.
    let docs = shipway_model::parse_documents(&path.display().to_string(), &text)
        .unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
    let tests = docs[0].value["tests"].as_array().unwrap().clone();
    tests
        .iter()
        .map(|t| {
            let h = &t["healthStatus"];
            let status: HealthStatus =
                serde_json::from_value(h["status"].clone()).unwrap_or_else(|e| panic!("{t}: {e}"));
            let message = h.get("message").and_then(Value::as_str).unwrap_or("");
            (
                t["inputPath"].as_str().unwrap().to_string(),
                Health {
                    status,
                    message: message.to_string(),
                },
            )
        })
        .collect()
}

#[test]
fn worse_follows_argos_order() {
    use HealthStatus::*;
    assert!(Healthy.is_worse(Degraded));
    assert!(Progressing.is_worse(Missing));
    assert!(!Degraded.is_worse(Progressing));
    assert!(Degraded.is_worse(Unknown));
    assert!(!Healthy.is_worse(Healthy));
}

#[test]
fn applications_have_no_health() {
    let app: Object = serde_json::from_value(serde_json::json!({
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Application",
        "metadata": {"name": "guestbook", "namespace": "argocd"},
        "status": {"health": {"status": "Degraded"}},
    }))
    .unwrap();
    assert_eq!(health(&app), None);
}
