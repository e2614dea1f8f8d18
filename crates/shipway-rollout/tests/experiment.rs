//! The Experiment controller (and with it the Rollout controller's canary `experiment` step) on
//! a SQLite store, the shared cache and the runner, on paused time: a timed Experiment runs,
//! succeeds and is scaled down after the delay; a failed analysis fails it; `terminate` stops
//! it; invalid specs apply nothing; the step advances on success, aborts the Rollout on
//! failure, and an abort or a new revision terminates its Experiment; and the statuses compare
//! field by field with Argo's snapshots.
//!
//! No kubelet runs here: a small loop plays the ReplicaSet controller's part and reports every
//! ReplicaSet's replicas as available (the end-to-end test runs the real runtime); the test
//! writes AnalysisRun phases as the analysis controller would.

use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::{Clock, Reflector};
use shipway_model::types::rollout::RolloutStatus;
use shipway_model::{Key, Object};
use shipway_rollout::experiment::ExperimentStatus;
use shipway_rollout::experiment::controller::ExperimentController;
use shipway_rollout::rollout::controller::RolloutController;
use shipway_store::{EventQuery, ListQuery, Store};
use tokio_util::sync::CancellationToken;

struct Env {
    store: Store,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Env {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("shipway.db"))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let (cache, _feed) = Reflector::spawn(store.clone(), shutdown.clone());
    let clock = Clock::new();
    tokio::spawn(
        ExperimentController::new(store.clone(), cache.clone(), clock).run(shutdown.clone()),
    );
    tokio::spawn(RolloutController::new(store.clone(), cache, clock).run(shutdown.clone()));
    tokio::spawn(replica_sets_become_available(
        store.clone(),
        shutdown.clone(),
    ));
    Env {
        store,
        shutdown,
        _dir: dir,
    }
}

/// Stands in for the ReplicaSet controller and kubelet: each ReplicaSet's pods are all there
/// and available.
async fn replica_sets_become_available(store: Store, shutdown: CancellationToken) {
    while !shutdown.is_cancelled() {
        let list = store
            .list(&ListQuery {
                group: Some("apps".into()),
                kind: Some("ReplicaSet".into()),
                ..Default::default()
            })
            .await;
        if let Ok(list) = list {
            for mut rs in list.items {
                let n = rs.spec().and_then(|s| s["replicas"].as_i64()).unwrap_or(0);
                let want = json!({"replicas": n, "readyReplicas": n, "availableReplicas": n,
                    "observedGeneration": rs.metadata.generation});
                if rs.status() != Some(&want) {
                    rs.body.insert("status".into(), want);
                    let _ = store.update_status(rs, "test:replicaset").await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn obj(v: Value) -> Object {
    serde_json::from_value(v).unwrap()
}

fn key(kind: &str, name: &str) -> Key {
    let group = match kind {
        "Rollout" | "AnalysisRun" | "AnalysisTemplate" | "Experiment" => "argoproj.io",
        "ReplicaSet" => "apps",
        _ => "",
    };
    Key::new(group, kind, "default", name)
}

fn template(name: &str, image: &str, port: bool) -> Value {
    let mut c = json!({"name": "web", "image": image});
    if port {
        c["ports"] = json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]);
    }
    json!({"name": name, "selector": {"matchLabels": {"app": name}},
        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [c]}}})
}

fn experiment(name: &str, spec: Value) -> Object {
    obj(
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Experiment",
        "metadata": {"name": name, "namespace": "default"}, "spec": spec}),
    )
}

async fn analysis_template(e: &Env, name: &str) {
    e.store
        .create(
            obj(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"args": [{"name": "hash", "value": "none"}],
                    "metrics": [{"name": "check",
                    "provider": {"web": {"url": "http://127.0.0.1:9/{{args.hash}}"}}}]}}),
            ),
            "test",
        )
        .await
        .unwrap();
}

async fn get(e: &Env, kind: &str, name: &str) -> Option<Object> {
    e.store.get(&key(kind, name)).await.unwrap()
}

/// Waits (virtual time, 100 ms steps) until the Experiment satisfies `f`.
async fn until_ex(
    e: &Env,
    name: &str,
    limit: Duration,
    f: impl Fn(&ExperimentStatus) -> bool,
) -> ExperimentStatus {
    let start = tokio::time::Instant::now();
    loop {
        let s: ExperimentStatus = get(e, "Experiment", name)
            .await
            .map(|o| o.status_as().unwrap())
            .unwrap_or_default();
        if f(&s) {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "{name}: not reached in {limit:?}: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn until_ro(
    e: &Env,
    what: &str,
    limit: Duration,
    f: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    let start = tokio::time::Instant::now();
    loop {
        let s: RolloutStatus = get(e, "Rollout", "web")
            .await
            .map(|o| o.status_as().unwrap())
            .unwrap_or_default();
        if f(&s) {
            return s;
        }
        assert!(
            start.elapsed() < limit,
            "{what}: not reached in {limit:?}: {s:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn replicas(e: &Env, rs: &str) -> i64 {
    let o = get(e, "ReplicaSet", rs).await.expect(rs);
    o.spec().unwrap()["replicas"].as_i64().unwrap()
}

async fn set_run_phase(e: &Env, name: &str, phase: &str, message: &str) {
    let mut run = get(e, "AnalysisRun", name).await.expect(name);
    run.body
        .insert("status".into(), json!({"phase": phase, "message": message}));
    e.store
        .update_status(run, "controller:analysis")
        .await
        .unwrap();
}

async fn events(e: &Env, kind: &str, name: &str) -> Vec<(String, String)> {
    e.store
        .events(&EventQuery::for_key(&key(kind, name), 0))
        .await
        .unwrap()
        .into_iter()
        .map(|ev| (ev.action, ev.message))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_timed_experiment_succeeds_and_its_replica_sets_scale_down_after_the_delay() {
    let e = env().await;
    e.store
        .create(
            experiment(
                "exp",
                json!({"duration": "30s", "scaleDownDelaySeconds": 10,
                "templates": [template("baseline", "web:1", true), template("canary", "web:2", false)]}),
            ),
            "test",
        )
        .await
        .unwrap();
    let s = until_ex(&e, "exp", Duration::from_secs(10), |s| s.phase == "Running").await;
    assert!(s.available_at.is_some());
    let rs = get(&e, "ReplicaSet", "exp-baseline").await.unwrap();
    assert_eq!(
        rs.metadata.annotations["experiment.argoproj.io/name"],
        "exp"
    );
    assert_eq!(
        rs.metadata.annotations["experiment.argoproj.io/template-name"],
        "baseline"
    );
    assert_eq!(rs.metadata.owner_references[0].kind, "Experiment");
    let hash = rs.metadata.labels["rollouts-pod-template-hash"].clone();
    assert_eq!(
        rs.spec().unwrap()["selector"]["matchLabels"]["rollouts-pod-template-hash"],
        json!(hash)
    );
    assert_eq!(replicas(&e, "exp-canary").await, 1);
    let c = &s
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(c.status, "True");
    // Still running before the duration is over.
    tokio::time::sleep(Duration::from_secs(20)).await;
    let s = until_ex(&e, "exp", Duration::from_secs(1), |_| true).await;
    assert_eq!(s.phase, "Running");
    let s = until_ex(&e, "exp", Duration::from_secs(15), |s| {
        s.phase == "Successful"
    })
    .await;
    let c = s
        .conditions
        .iter()
        .find(|c| c.type_ == "Progressing")
        .unwrap();
    assert_eq!(
        (c.status.as_str(), c.reason.as_deref(), c.message.as_deref()),
        (
            "False",
            Some("ExperimentCompleted"),
            Some("Experiment \"exp\" has successfully ran and completed.")
        )
    );
    assert!(s.template_statuses.iter().all(|t| t.status == "Successful"));
    // The pods stay for the delay, then go.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(replicas(&e, "exp-baseline").await, 1);
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(replicas(&e, "exp-baseline").await, 0);
    assert_eq!(replicas(&e, "exp-canary").await, 0);
    let ev = events(&e, "Experiment", "exp").await;
    assert!(
        ev.iter().any(|(r, m)| r == "ExperimentSuccessful"
            && m == "Experiment transitioned from Running -> Successful"),
        "{ev:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_analysis_fails_the_experiment_and_a_template_service_is_made() {
    let e = env().await;
    analysis_template(&e, "check").await;
    let mut canary = template("canary", "web:2", true);
    canary["service"] = json!({});
    e.store
        .create(
            experiment(
                "exp",
                json!({"scaleDownDelaySeconds": 0,
                "templates": [template("baseline", "web:1", true), canary],
                "analyses": [{"name": "check", "templateName": "check",
                    "args": [{"name": "hash", "value": "{{templates.canary.podTemplateHash}}"}]}]}),
            ),
            "test",
        )
        .await
        .unwrap();
    let s = until_ex(&e, "exp", Duration::from_secs(10), |s| {
        s.analysis_runs
            .first()
            .is_some_and(|r| !r.analysis_run.is_empty())
    })
    .await;
    assert_eq!(s.analysis_runs[0].analysis_run, "exp-check");
    let run = get(&e, "AnalysisRun", "exp-check").await.unwrap();
    assert_eq!(run.metadata.owner_references[0].name, "exp");
    // The argument resolved to the canary ReplicaSet's hash.
    let hash = get(&e, "ReplicaSet", "exp-canary")
        .await
        .unwrap()
        .metadata
        .labels["rollouts-pod-template-hash"]
        .clone();
    assert_eq!(run.spec().unwrap()["args"][0]["value"], json!(hash));
    // The template's Service: named after its ReplicaSet, selecting its pods.
    let svc = get(&e, "Service", "exp-canary")
        .await
        .expect("template Service");
    assert_eq!(
        svc.spec().unwrap()["selector"]["rollouts-pod-template-hash"],
        json!(hash)
    );
    assert_eq!(svc.spec().unwrap()["ports"][0]["port"], 8080);
    let ts = s
        .template_statuses
        .iter()
        .find(|t| t.name == "canary")
        .unwrap();
    assert_eq!(ts.service_name, "exp-canary");
    set_run_phase(&e, "exp-check", "Running", "").await;
    until_ex(&e, "exp", Duration::from_secs(5), |s| {
        s.analysis_runs[0].phase == "Running"
    })
    .await;
    let message = "Metric \"check\" assessed Failed due to failed (1) > failureLimit (0)";
    set_run_phase(&e, "exp-check", "Failed", message).await;
    let s = until_ex(&e, "exp", Duration::from_secs(5), |s| s.phase == "Failed").await;
    assert_eq!(s.message, message);
    assert_eq!(s.analysis_runs[0].phase, "Failed");
    // Done: scaled down (no delay), the Service gone once no pod is left.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(replicas(&e, "exp-canary").await, 0);
    assert_eq!(replicas(&e, "exp-baseline").await, 0);
    assert!(get(&e, "Service", "exp-canary").await.is_none());
}

#[tokio::test(start_paused = true)]
async fn terminate_stops_a_running_experiment_and_its_runs() {
    let e = env().await;
    analysis_template(&e, "check").await;
    e.store
        .create(
            experiment(
                "exp",
                json!({"scaleDownDelaySeconds": 0,
                "templates": [template("baseline", "web:1", false)],
                "analyses": [{"name": "check", "templateName": "check",
                    "args": [{"name": "hash", "value": "x"}]}]}),
            ),
            "test",
        )
        .await
        .unwrap();
    until_ex(&e, "exp", Duration::from_secs(10), |s| {
        s.analysis_runs
            .first()
            .is_some_and(|r| !r.analysis_run.is_empty())
    })
    .await;
    set_run_phase(&e, "exp-check", "Running", "").await;
    // Without a duration or required analyses it runs on.
    tokio::time::sleep(Duration::from_secs(120)).await;
    let s = until_ex(&e, "exp", Duration::from_secs(1), |_| true).await;
    assert_eq!(s.phase, "Running");
    let mut o = get(&e, "Experiment", "exp").await.unwrap();
    o.body["spec"]["terminate"] = json!(true);
    e.store.update(o, "user:admin").await.unwrap();
    let s = until_ex(&e, "exp", Duration::from_secs(5), |s| {
        s.phase == "Successful"
    })
    .await;
    assert!(s.template_statuses.iter().all(|t| t.status == "Successful"));
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(replicas(&e, "exp-baseline").await, 0);
    let run = get(&e, "AnalysisRun", "exp-check").await.unwrap();
    assert_eq!(run.spec().unwrap()["terminate"], true);
}

#[tokio::test(start_paused = true)]
async fn invalid_experiments_are_errors_with_argos_wording_and_apply_nothing() {
    let e = env().await;
    let cases = [
        (
            "dup",
            json!({"templates": [template("a", "web:1", false), template("a", "web:2", false)]}),
            "Experiment dup has repeated template name 'a' in templates",
        ),
        (
            "missing",
            json!({"templates": [template("a", "web:1", false)],
                "analyses": [{"name": "check", "templateName": "nowhere"}]}),
            "AnalysisTemplate verification failed for analysis 'check': analysistemplate.argoproj.io \"nowhere\" not found",
        ),
        (
            "labels",
            json!({"templates": [{"name": "a", "selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]}}}]}),
            "The Experiment \"labels\" is invalid: spec.templates[0].template.metadata.labels: Invalid value: {\"app\":\"b\"}: `selector` does not match template `labels`",
        ),
    ];
    for (name, spec, _) in &cases {
        e.store
            .create(experiment(name, spec.clone()), "test")
            .await
            .unwrap();
    }
    for (name, _, message) in &cases {
        let s = until_ex(&e, name, Duration::from_secs(10), |s| s.phase == "Error").await;
        assert_eq!(&s.message, message, "{name}");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sets = e
        .store
        .list(&ListQuery {
            group: Some("apps".into()),
            kind: Some("ReplicaSet".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(sets.items.is_empty(), "{:?}", sets.items);
    let dup: ExperimentStatus = get(&e, "Experiment", "dup")
        .await
        .unwrap()
        .status_as()
        .unwrap();
    let c = dup
        .conditions
        .iter()
        .find(|c| c.type_ == "InvalidSpec")
        .unwrap();
    assert_eq!(c.reason.as_deref(), Some("InvalidSpec"));
}

fn rollout(image: &str, steps: Value) -> Object {
    obj(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": {"steps": steps}},
        },
    }))
}

async fn set_image(e: &Env, image: &str) {
    let mut o = get(e, "Rollout", "web").await.unwrap();
    o.body["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    e.store.update(o, "user:admin").await.unwrap();
}

fn experiment_steps(analyses: Value) -> Value {
    json!([
        {"setWeight": 25},
        {"experiment": {"duration": "20s", "templates": [
            {"name": "baseline", "specRef": "stable", "replicas": 1},
            {"name": "canary", "specRef": "canary", "replicas": 1,
             "metadata": {"labels": {"role": "experiment"}}}],
            "analyses": analyses}},
    ])
}

#[tokio::test(start_paused = true)]
async fn the_experiment_step_runs_its_experiment_then_the_rollout_completes() {
    let e = env().await;
    e.store
        .create(rollout("web:1", experiment_steps(json!([]))), "test")
        .await
        .unwrap();
    let s = until_ro(&e, "healthy", Duration::from_secs(30), |s| {
        s.phase.as_deref() == Some("Healthy")
    })
    .await;
    let stable = s.stable_rs.unwrap();
    set_image(&e, "web:2").await;
    let s = until_ro(&e, "experiment", Duration::from_secs(30), |s| {
        s.canary().current_experiment.is_some()
    })
    .await;
    let hash = s.current_pod_hash.clone().unwrap();
    let name = s.canary().current_experiment.clone().unwrap();
    assert_eq!(name, format!("web-{hash}-2-1"));
    assert_eq!(s.current_step_index, Some(1));
    let ex = get(&e, "Experiment", &name).await.unwrap();
    assert_eq!(ex.metadata.owner_references[0].kind, "Rollout");
    assert_eq!(ex.metadata.labels["rollouts-pod-template-hash"], hash);
    assert_eq!(ex.metadata.annotations["rollout.argoproj.io/revision"], "2");
    let spec = ex.spec().unwrap();
    assert_eq!(spec["duration"], "20s");
    assert_eq!(
        spec["templates"][0]["template"]["spec"]["containers"][0]["image"], "web:1",
        "baseline runs the stable template"
    );
    assert_eq!(
        spec["templates"][1]["template"]["spec"]["containers"][0]["image"],
        "web:2"
    );
    assert_eq!(
        spec["templates"][1]["template"]["metadata"]["labels"]["role"],
        "experiment"
    );
    assert_eq!(
        spec["templates"][1]["selector"]["matchLabels"]["role"],
        "experiment"
    );
    let _ = stable;
    // The step waits while the experiment runs.
    until_ex(&e, &name, Duration::from_secs(10), |s| s.phase == "Running").await;
    tokio::time::sleep(Duration::from_secs(10)).await;
    let s = until_ro(&e, "still", Duration::from_secs(1), |_| true).await;
    assert_eq!(s.current_step_index, Some(1));
    let s = until_ro(&e, "completed", Duration::from_secs(60), |s| {
        s.phase.as_deref() == Some("Healthy") && s.stable_rs.as_deref() == Some(hash.as_str())
    })
    .await;
    assert_eq!(s.canary().current_experiment, None);
    let ex: ExperimentStatus = get(&e, "Experiment", &name)
        .await
        .unwrap()
        .status_as()
        .unwrap();
    assert_eq!(ex.phase, "Successful");
    let ev = events(&e, "Rollout", "web").await;
    assert!(
        ev.iter()
            .any(|(r, m)| r == "ExperimentCreated" && m == &format!("Created Experiment '{name}'")),
        "{ev:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_experiment_aborts_the_rollout_and_a_new_revision_terminates_one() {
    let e = env().await;
    analysis_template(&e, "check").await;
    let analyses = json!([{"name": "check", "templateName": "check",
        "args": [{"name": "hash", "value": "{{templates.canary.podTemplateHash}}"}]}]);
    let mut steps = experiment_steps(analyses);
    steps[1]["experiment"]
        .as_object_mut()
        .unwrap()
        .remove("duration");
    e.store
        .create(rollout("web:1", steps), "test")
        .await
        .unwrap();
    until_ro(&e, "healthy", Duration::from_secs(30), |s| {
        s.phase.as_deref() == Some("Healthy")
    })
    .await;
    set_image(&e, "web:2").await;
    let s = until_ro(&e, "experiment", Duration::from_secs(30), |s| {
        s.canary().current_experiment.is_some()
    })
    .await;
    let first = s.canary().current_experiment.clone().unwrap();
    // A new revision while it runs: the experiment is terminated, a new one made.
    until_ex(&e, &first, Duration::from_secs(10), |s| {
        s.phase == "Running"
    })
    .await;
    set_image(&e, "web:3").await;
    let s = until_ro(&e, "second experiment", Duration::from_secs(30), |s| {
        s.canary()
            .current_experiment
            .as_ref()
            .is_some_and(|n| n != &first)
    })
    .await;
    let second = s.canary().current_experiment.clone().unwrap();
    let old = get(&e, "Experiment", &first).await.unwrap();
    assert_eq!(old.spec().unwrap()["terminate"], true);
    until_ex(&e, &first, Duration::from_secs(10), |s| {
        s.phase == "Successful"
    })
    .await;
    // The second one's analysis fails: the Rollout aborts with Argo's message.
    let run = until_ex(&e, &second, Duration::from_secs(10), |s| {
        s.analysis_runs
            .first()
            .is_some_and(|r| !r.analysis_run.is_empty())
    })
    .await
    .analysis_runs[0]
        .analysis_run
        .clone();
    let message = "Metric \"check\" assessed Failed due to failed (1) > failureLimit (0)";
    set_run_phase(&e, &run, "Failed", message).await;
    let s = until_ro(&e, "aborted", Duration::from_secs(10), |s| s.aborted()).await;
    assert_eq!(
        s.message.as_deref(),
        Some(
            format!(
                "RolloutAborted: Rollout aborted update to revision 3: Experiment analysis phase is error/failed: {message}"
            )
            .as_str()
        )
    );
    assert_eq!(s.canary().current_experiment, None);
}

fn corpus_status(dir: &str, file: &str) -> Option<Value> {
    let root = match std::env::var_os("SHIPWAY_CORPUS") {
        Some(r) => std::path::PathBuf::from(r),
        None => std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus"),
    };
    let path = root
        .join("argo/rollouts-status-snapshots")
        .join(dir)
        .join(file);
    let text = std::fs::read_to_string(&path).ok()?;
    let docs = shipway_model::load::parse_documents(&path.display().to_string(), &text).ok()?;
    Some(docs[0].value.clone())
}

/// Argo's experiment-step snapshot: a Rollout at an experiment step with one template
/// (`specRef: canary`) and one analysis, the Experiment Running. The same scenario here,
/// compared field by field where it matches (timestamps, uids, hashes aside).
#[tokio::test(start_paused = true)]
async fn the_experiment_step_status_compares_with_argos_snapshot() {
    let (Some(want_ro), Some(want_ex)) = (
        corpus_status("experiment-step", "canary-demo.yaml"),
        corpus_status("experiment-step", "canary-exp.yaml"),
    ) else {
        println!("SKIPPED: no status snapshots in the corpus");
        return;
    };
    let e = env().await;
    analysis_template(&e, "stress-test").await;
    // The snapshot's Rollout spec, as Argo's test data has it, on Shipway's names.
    let mut ro = rollout(
        "web:1",
        want_ro["spec"]["strategy"]["canary"]["steps"].clone(),
    );
    ro.body["spec"]["replicas"] = want_ro["spec"]["replicas"].clone();
    e.store.create(ro, "test").await.unwrap();
    until_ro(&e, "healthy", Duration::from_secs(30), |s| {
        s.phase.as_deref() == Some("Healthy")
    })
    .await;
    set_image(&e, "web:2").await;
    let s = until_ro(&e, "experiment", Duration::from_secs(30), |s| {
        s.canary().current_experiment.is_some()
    })
    .await;
    let name = s.canary().current_experiment.clone().unwrap();
    let ex = until_ex(&e, &name, Duration::from_secs(10), |s| {
        s.phase == "Running" && s.analysis_runs.iter().all(|r| !r.analysis_run.is_empty())
    })
    .await;
    for (r, _) in ex.analysis_runs.iter().zip(0..) {
        set_run_phase(&e, &r.analysis_run, "Running", "").await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ro = get(&e, "Rollout", "web").await.unwrap();
    let got_ro = ro.status().unwrap().clone();
    let got_ex = get(&e, "Experiment", &name)
        .await
        .unwrap()
        .status()
        .unwrap()
        .clone();
    let w = &want_ro["status"];
    // Rollout: the step index and a current experiment named as Argo names it.
    assert_eq!(got_ro["currentStepIndex"], w["currentStepIndex"]);
    let hash = got_ro["currentPodHash"].as_str().unwrap();
    assert_eq!(
        w["canary"]["currentExperiment"],
        json!(format!(
            "canary-demo-{}-2-0",
            w["currentPodHash"].as_str().unwrap()
        ))
    );
    assert_eq!(
        got_ro["canary"]["currentExperiment"],
        json!(format!("web-{hash}-2-0"))
    );
    assert_eq!(got_ro["replicas"], w["replicas"]);
    assert_eq!(got_ro["availableReplicas"], w["availableReplicas"]);
    compare_experiment(&got_ex, &want_ex["status"]);
    // The run is the Experiment's `<experiment>-<analysis>`, as in the snapshot.
    let want_run = want_ex["status"]["analysisRuns"][0]["analysisRun"]
        .as_str()
        .unwrap();
    assert_eq!(
        want_run,
        format!(
            "{}-stress-test",
            want_ex["metadata"]["name"].as_str().unwrap()
        )
    );
    assert_eq!(
        got_ex["analysisRuns"][0]["analysisRun"],
        json!(format!("{name}-stress-test"))
    );
}

/// Argo's experiment-analysis snapshot: an Experiment with a baseline (stable) and canary
/// template, no analyses, Running.
#[tokio::test(start_paused = true)]
async fn the_experiment_analysis_status_compares_with_argos_snapshot() {
    let (Some(want_ro), Some(want_ex)) = (
        corpus_status("experiment-analysis", "rollout-experiment-analysis.yaml"),
        corpus_status("experiment-analysis", "experiment.yaml"),
    ) else {
        println!("SKIPPED: no status snapshots in the corpus");
        return;
    };
    let e = env().await;
    let mut ro = rollout(
        "web:1",
        want_ro["spec"]["strategy"]["canary"]["steps"].clone(),
    );
    ro.body["spec"]["replicas"] = want_ro["spec"]["replicas"].clone();
    e.store.create(ro, "test").await.unwrap();
    until_ro(&e, "healthy", Duration::from_secs(30), |s| {
        s.phase.as_deref() == Some("Healthy")
    })
    .await;
    set_image(&e, "web:2").await;
    let s = until_ro(&e, "experiment", Duration::from_secs(30), |s| {
        s.canary().current_experiment.is_some()
    })
    .await;
    let name = s.canary().current_experiment.clone().unwrap();
    until_ex(&e, &name, Duration::from_secs(10), |s| s.phase == "Running").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got_ro = get(&e, "Rollout", "web")
        .await
        .unwrap()
        .status()
        .unwrap()
        .clone();
    let got_ex = get(&e, "Experiment", &name)
        .await
        .unwrap()
        .status()
        .unwrap()
        .clone();
    let w = &want_ro["status"];
    assert_eq!(got_ro["currentStepIndex"], w["currentStepIndex"]);
    assert!(got_ro["canary"]["currentExperiment"].is_string());
    assert_eq!(got_ro["updatedReplicas"], w["updatedReplicas"]);
    compare_experiment(&got_ex, &want_ex["status"]);
    // Each template ran its pod template: baseline the stable one, canary the new one.
    let spec = get(&e, "Experiment", &name)
        .await
        .unwrap()
        .spec()
        .unwrap()
        .clone();
    let images: Vec<&str> = spec["templates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            t["template"]["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(images, ["web:1", "web:2"]);
}

/// Field by field: phase, the Progressing condition, each template's name, status and
/// counts, each analysis' name and phase.
fn compare_experiment(got: &Value, want: &Value) {
    assert_eq!(got["phase"], want["phase"], "phase: {got:#}");
    assert!(got["availableAt"].is_string());
    let cond = |v: &Value| {
        v["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Progressing")
            .cloned()
            .unwrap()
    };
    let (g, w) = (cond(got), cond(want));
    assert_eq!((&g["status"], &g["reason"]), (&w["status"], &w["reason"]));
    assert!(
        g["message"].as_str().unwrap().ends_with(" is running.")
            && w["message"].as_str().unwrap().ends_with(" is running.")
    );
    let templates = |v: &Value| -> Vec<Value> {
        v["templateStatuses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                json!([
                    t["name"],
                    t["status"],
                    t["replicas"],
                    t["updatedReplicas"],
                    t["readyReplicas"],
                    t["availableReplicas"]
                ])
            })
            .collect()
    };
    assert_eq!(templates(got), templates(want));
    let runs = |v: &Value| -> Vec<Value> {
        v["analysisRuns"]
            .as_array()
            .map(|a| a.iter().map(|r| json!([r["name"], r["phase"]])).collect())
            .unwrap_or_default()
    };
    assert_eq!(runs(got), runs(want));
}

#[tokio::test(start_paused = true)]
async fn aborting_the_rollout_terminates_its_running_experiment() {
    let e = env().await;
    e.store
        .create(rollout("web:1", experiment_steps(json!([]))), "test")
        .await
        .unwrap();
    until_ro(&e, "healthy", Duration::from_secs(30), |s| {
        s.phase.as_deref() == Some("Healthy")
    })
    .await;
    set_image(&e, "web:2").await;
    let s = until_ro(&e, "experiment", Duration::from_secs(30), |s| {
        s.canary().current_experiment.is_some()
    })
    .await;
    let name = s.canary().current_experiment.clone().unwrap();
    until_ex(&e, &name, Duration::from_secs(10), |s| s.phase == "Running").await;
    // `kubectl argo rollouts abort`: status.abort.
    loop {
        let mut o = get(&e, "Rollout", "web").await.unwrap();
        o.body["status"]["abort"] = json!(true);
        match e.store.update_status(o, "user:admin").await {
            Ok(_) => break,
            Err(shipway_store::StoreError::Conflict { .. }) => continue,
            Err(err) => panic!("{err}"),
        }
    }
    let s = until_ro(&e, "aborted", Duration::from_secs(10), |s| {
        s.aborted() && s.canary().current_experiment.is_none()
    })
    .await;
    assert_eq!(s.current_step_index, Some(0));
    let start = tokio::time::Instant::now();
    while get(&e, "Experiment", &name).await.unwrap().spec().unwrap()["terminate"] != true {
        assert!(start.elapsed() < Duration::from_secs(10), "not terminated");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ex = until_ex(&e, &name, Duration::from_secs(10), |s| {
        s.phase == "Successful"
    })
    .await;
    assert!(
        ex.template_statuses
            .iter()
            .all(|t| t.status == "Successful")
    );
}
