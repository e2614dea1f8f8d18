//! The typed views lose nothing: every Pod, Deployment, ReplicaSet, Job, Service, Endpoints and
//! TrafficPolicy, AnalysisTemplate and AnalysisRun in the Argo corpus (`shared/corpus/argo`), and every pod template of its
//! Rollouts, reads into its view and writes back to the same JSON; and fields no view names, put
//! anywhere in a Deployment, come back as they went in.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use shipway_model::Object;
use shipway_model::types::{
    AnalysisRunSpec, AnalysisRunStatus, AnalysisTemplateSpec, AppProjectSpec, ApplicationSpec,
    ApplicationStatus, DeploymentSpec, DeploymentStatus, Endpoints, JobSpec, JobStatus, Operation,
    PodSpec, PodStatus, PodTemplateSpec, ReplicaSetSpec, ReplicaSetStatus, RolloutSpec,
    RolloutStatus, ServiceSpec, TrafficPolicySpec,
};

fn corpus() -> Option<PathBuf> {
    // `cargo xtask test` sets SHIPWAY_CORPUS to the corpus it found (and requires it in CI).
    if let Some(root) = std::env::var_os("SHIPWAY_CORPUS") {
        return Some(PathBuf::from(root).join("argo"));
    }
    let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/argo");
    beside.is_dir().then_some(beside)
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(p);
        }
    }
}

/// `value` read as `T` and written back, or why not.
fn round_trip<T: DeserializeOwned + Serialize>(value: &Value) -> Result<(), String> {
    let typed: T =
        serde_json::from_value(value.clone()).map_err(|e| format!("does not read: {e}"))?;
    let back = serde_json::to_value(&typed).unwrap();
    match first_difference(value, &back, String::new()) {
        None => Ok(()),
        Some(at) => Err(format!("written back differently at {at}")),
    }
}

/// The path of the first place `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, v) in x {
                match y.get(k) {
                    None => return Some(format!("{at}.{k} (dropped: {v})")),
                    Some(w) => {
                        if let Some(d) = first_difference(v, w, format!("{at}.{k}")) {
                            return Some(d);
                        }
                    }
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{at}.{k} (added: {})", y[k]))
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (v, w))| first_difference(v, w, format!("{at}[{i}]"))),
        _ => (a != b).then(|| format!("{at} ({a} became {b})")),
    }
}

/// The views of `obj` to check, as (field, result).
fn check(obj: &Object) -> Vec<(&'static str, Result<(), String>)> {
    let field = |name: &str| obj.body.get(name).filter(|v| !v.is_null());
    let mut out = Vec::new();
    let mut one = |name: &'static str, f: fn(&Value) -> Result<(), String>, v: Option<&Value>| {
        if let Some(v) = v {
            out.push((name, f(v)));
        }
    };
    match (obj.group(), obj.kind.as_str()) {
        ("", "Pod") => {
            one("spec", round_trip::<PodSpec>, field("spec"));
            one("status", round_trip::<PodStatus>, field("status"));
        }
        ("apps", "Deployment") => {
            one("spec", round_trip::<DeploymentSpec>, field("spec"));
            one("status", round_trip::<DeploymentStatus>, field("status"));
        }
        ("apps", "ReplicaSet") => {
            one("spec", round_trip::<ReplicaSetSpec>, field("spec"));
            one("status", round_trip::<ReplicaSetStatus>, field("status"));
        }
        ("batch", "Job") => {
            one("spec", round_trip::<JobSpec>, field("spec"));
            one("status", round_trip::<JobStatus>, field("status"));
        }
        ("", "Service") => one("spec", round_trip::<ServiceSpec>, field("spec")),
        ("", "Endpoints") => one(
            "body",
            round_trip::<Endpoints>,
            Some(&Value::Object(obj.body.clone())),
        ),
        ("shipway.dev", "TrafficPolicy") => {
            one("spec", round_trip::<TrafficPolicySpec>, field("spec"))
        }
        ("argoproj.io", "Application") => {
            one("spec", round_trip::<ApplicationSpec>, field("spec"));
            one("status", round_trip::<ApplicationStatus>, field("status"));
            one("operation", round_trip::<Operation>, field("operation"));
        }
        ("argoproj.io", "AnalysisTemplate" | "ClusterAnalysisTemplate") => {
            one("spec", round_trip::<AnalysisTemplateSpec>, field("spec"))
        }
        ("argoproj.io", "AnalysisRun") => {
            one("spec", round_trip::<AnalysisRunSpec>, field("spec"));
            one("status", round_trip::<AnalysisRunStatus>, field("status"));
        }
        ("argoproj.io", "AppProject") => one("spec", round_trip::<AppProjectSpec>, field("spec")),
        ("argoproj.io", "Rollout") => {
            one(
                "spec.template",
                round_trip::<PodTemplateSpec>,
                field("spec").and_then(|s| s.get("template")),
            );
            one("spec", round_trip::<RolloutSpec>, field("spec"));
            one("status", round_trip::<RolloutStatus>, field("status"));
        }
        _ => {}
    }
    out
}

/// Fixtures no typed view can read, and why. This list only shrinks.
fn known_failure(file: &Path, field: &str) -> bool {
    // Argo CD's health fixture writes `conditions: {}`, which Argo's own Go type refuses too.
    file.ends_with("Rollout/testdata/degraded_statusPhaseMessage.yaml") && field == "status"
}

#[test]
fn typed_views_round_trip_the_corpus() {
    let Some(root) = corpus() else {
        println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
        return;
    };
    let mut files = Vec::new();
    yaml_files(&root, &mut files);
    let (mut checked, mut failures) = (0, Vec::new());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        // Templates (Helm, kustomize fragments) are not all objects: those do not load.
        let Ok(docs) = shipway_model::load_str(&file.display().to_string(), &text) else {
            continue;
        };
        for doc in docs {
            for (field, result) in check(&doc.object) {
                checked += 1;
                if let Err(e) = result
                    && !known_failure(&file, field)
                {
                    failures.push(format!(
                        "{} {} {field}: {e}",
                        file.display(),
                        doc.object.key()
                    ));
                }
            }
        }
    }
    println!("{checked} views checked, {} failed", failures.len());
    assert!(
        checked > 100,
        "only {checked} views found under {}",
        root.display()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// JSON values of every kind, nested a little.
fn json_value() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        "[a-z%0-9 ]{0,8}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            proptest::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest::proptest! {
    #[test]
    fn unknown_fields_anywhere_in_a_deployment_round_trip(
        // Names that are not fields of any view (those have their own types).
        extra in proptest::collection::vec(("x[A-Z][a-z]{0,6}", json_value()), 1..6),
        at in proptest::collection::vec(0usize..7, 1..6),
    ) {
        let mut spec = serde_json::json!({
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 0}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "web", "image": "web:1",
                    "ports": [{"containerPort": 8080}],
                    "env": [{"name": "A", "value": "1"}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": 8080}},
                }]},
            },
        });
        let places = [
            "", "/selector", "/strategy", "/strategy/rollingUpdate", "/template/metadata",
            "/template/spec/containers/0", "/template/spec/containers/0/ports/0",
        ];
        for ((name, value), i) in extra.into_iter().zip(at) {
            spec.pointer_mut(places[i]).unwrap().as_object_mut().unwrap().insert(name, value);
        }
        proptest::prop_assert_eq!(round_trip::<DeploymentSpec>(&spec), Ok(()));
    }
}

/// Every Application and AppProject of Argo CD's docs and example apps reads and writes back
/// unchanged (spec, status, operation), and there are some to read.
#[test]
fn applications_and_projects_round_trip() {
    let Some(root) = corpus() else {
        println!("SKIPPED: no corpus (set SHIPWAY_CORPUS)");
        return;
    };
    let mut files = Vec::new();
    yaml_files(&root.join("applications"), &mut files);
    yaml_files(&root.join("example-apps"), &mut files);
    let (mut apps, mut projects, mut failures) = (0, 0, Vec::new());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let Ok(docs) = shipway_model::load_str(&file.display().to_string(), &text) else {
            continue;
        };
        for doc in docs {
            match (doc.object.group(), doc.object.kind.as_str()) {
                ("argoproj.io", "Application") => apps += 1,
                ("argoproj.io", "AppProject") => projects += 1,
                _ => continue,
            }
            for (field, result) in check(&doc.object) {
                if let Err(e) = result {
                    failures.push(format!("{} {field}: {e}", file.display()));
                }
            }
        }
    }
    assert!(
        apps >= 1 && projects >= 1,
        "{apps} Applications, {projects} AppProjects"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
