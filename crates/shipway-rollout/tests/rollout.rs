//! The Rollout controller on a SQLite store, the shared cache and the runner, on paused time:
//! steps advance, `pause {}` waits for the promote the CLI writes, `pause {duration}` resumes
//! by itself, abort / retry / promote --full follow Argo, a failed analysis aborts with its
//! metric's message, an inconclusive one pauses, invalid specs apply nothing.
//!
//! No kubelet runs here: a small loop plays the ReplicaSet controller's part and reports every
//! ReplicaSet's replicas as available (the end-to-end test runs the real runtime); the test
//! writes AnalysisRun phases as the analysis controller would.

use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::{Clock, Reflector};
use shipway_model::types::rollout::RolloutStatus;
use shipway_model::{Key, Object};
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
    let controller = RolloutController::new(store.clone(), cache, Clock::new());
    tokio::spawn(controller.run(shutdown.clone()));
    tokio::spawn(replica_sets_become_available(
        store.clone(),
        shutdown.clone(),
    ));
    for svc in ["web", "web-canary"] {
        store
            .create(
                obj(json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": svc, "namespace": "default"},
                    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})),
                "test",
            )
            .await
            .unwrap();
    }
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

fn rollout(image: &str, canary: Value) -> Object {
    obj(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 5,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": image}]}},
            "strategy": {"canary": canary},
        },
    }))
}

fn routed(steps: Value) -> Value {
    json!({"stableService": "web", "canaryService": "web-canary",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "abortScaleDownDelaySeconds": 30, "scaleDownDelaySeconds": 5,
        "steps": steps})
}

fn key(kind: &str, name: &str) -> Key {
    let group = match kind {
        "Rollout" | "AnalysisRun" | "AnalysisTemplate" => "argoproj.io",
        "ReplicaSet" => "apps",
        "TrafficPolicy" => "shipway.dev",
        _ => "",
    };
    Key::new(group, kind, "default", name)
}

fn status(o: &Object) -> RolloutStatus {
    o.status_as().unwrap()
}

/// Waits (virtual time, 100 ms steps) until the Rollout satisfies `f`.
async fn until(
    store: &Store,
    what: &str,
    limit: Duration,
    f: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    let start = tokio::time::Instant::now();
    loop {
        let o = store.get(&key("Rollout", "web")).await.unwrap().unwrap();
        let s = status(&o);
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

fn phase(s: &RolloutStatus) -> (&str, &str) {
    (
        s.phase.as_deref().unwrap_or_default(),
        s.message.as_deref().unwrap_or_default(),
    )
}

async fn canary_weight(store: &Store) -> i64 {
    let p = store
        .get(&key("TrafficPolicy", "web"))
        .await
        .unwrap()
        .expect("the stable Service's TrafficPolicy");
    let b = &p.spec().unwrap()["backends"];
    assert_eq!(b[0]["name"], "stable");
    assert_eq!(b[1]["name"], "canary");
    b[1]["weight"].as_i64().unwrap()
}

async fn replicas(store: &Store, rs: &str) -> i64 {
    let o = store.get(&key("ReplicaSet", rs)).await.unwrap().unwrap();
    o.spec().unwrap()["replicas"].as_i64().unwrap()
}

/// Read-modify-write of the status, as `kubectl argo rollouts` patches it.
async fn patch_status(store: &Store, f: impl Fn(&mut serde_json::Map<String, Value>)) {
    loop {
        let mut o = store.get(&key("Rollout", "web")).await.unwrap().unwrap();
        let s = o
            .body
            .entry("status")
            .or_insert(json!({}))
            .as_object_mut()
            .unwrap();
        f(s);
        match store.update_status(o, "user:admin").await {
            Ok(_) => return,
            Err(shipway_store::StoreError::Conflict { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

async fn set_image(store: &Store, image: &str) {
    let mut o = store.get(&key("Rollout", "web")).await.unwrap().unwrap();
    o.body["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image);
    store.update(o, "user:admin").await.unwrap();
}

/// A first deploy, Healthy; returns its hash.
async fn deployed(e: &Env, canary: Value) -> String {
    e.store
        .create(rollout("web:1", canary), "test")
        .await
        .unwrap();
    let s = until(&e.store, "healthy", Duration::from_secs(30), |s| {
        phase(s) == ("Healthy", "")
    })
    .await;
    s.stable_rs.unwrap()
}

#[tokio::test(start_paused = true)]
async fn steps_advance_pauses_wait_for_promote_or_their_duration_and_the_rollout_completes() {
    let e = env().await;
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 40},
        {"pause": {"duration": "10s"}}, {"setWeight": 80}]);
    let stable = deployed(&e, routed(steps)).await;
    assert_eq!(canary_weight(&e.store).await, 0);
    set_image(&e.store, "web:2").await;
    let s = until(&e.store, "paused at step 1", Duration::from_secs(30), |s| {
        s.current_step_index == Some(1) && !s.pause_conditions.is_empty()
    })
    .await;
    let canary = s.current_pod_hash.clone().unwrap();
    assert_ne!(canary, stable);
    assert_eq!(phase(&s), ("Paused", "CanaryPauseStep"));
    assert!(s.controller_pause);
    assert_eq!(canary_weight(&e.store).await, 20);
    assert_eq!(replicas(&e.store, &format!("web-{canary}")).await, 1);
    assert_eq!(replicas(&e.store, &format!("web-{stable}")).await, 5);
    let w = s.canary().weights.clone().unwrap();
    assert_eq!((w.canary.weight, w.stable.weight), (20, 80));
    // The canary Service selects the canary's pods; the stable one keeps selecting both (the
    // policy splits it).
    let svc = |name: &'static str| {
        let store = e.store.clone();
        async move {
            store
                .get(&key("Service", name))
                .await
                .unwrap()
                .unwrap()
                .spec()
                .unwrap()["selector"]
                .clone()
        }
    };
    assert_eq!(
        svc("web-canary").await,
        json!({"app": "web", "rollouts-pod-template-hash": canary})
    );
    assert_eq!(svc("web").await, json!({"app": "web"}));
    // A pause without a duration waits, however long.
    tokio::time::sleep(Duration::from_secs(3600)).await;
    let o = e.store.get(&key("Rollout", "web")).await.unwrap().unwrap();
    assert_eq!(status(&o).current_step_index, Some(1));
    // Promote: the pause conditions cleared.
    patch_status(&e.store, |s| {
        s.insert("pauseConditions".into(), Value::Null);
    })
    .await;
    let s = until(&e.store, "the timed pause", Duration::from_secs(30), |s| {
        s.current_step_index == Some(3)
    })
    .await;
    assert_eq!(phase(&s).1, "CanaryPauseStep");
    assert_eq!(canary_weight(&e.store).await, 40);
    let started = tokio::time::Instant::now();
    let s = until(&e.store, "completed", Duration::from_secs(60), |s| {
        phase(s) == ("Healthy", "")
    })
    .await;
    assert!(
        started.elapsed() >= Duration::from_secs(9),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(s.stable_rs.as_deref(), Some(canary.as_str()));
    assert_eq!(s.current_step_index, Some(5));
    assert_eq!(canary_weight(&e.store).await, 0);
    // The old stable ReplicaSet goes after its scale-down delay.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(replicas(&e.store, &format!("web-{stable}")).await, 0);
    let events: Vec<String> = e
        .store
        .events(&EventQuery {
            kind: Some("Rollout".into()),
            name: Some("web".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|ev| ev.actor == "controller:rollouts")
        .map(|ev| format!("{}: {}", ev.action, ev.message))
        .collect();
    assert!(
        events.contains(&"RolloutStepCompleted: Rollout step 2/5 completed (pause)".to_string()),
        "{events:#?}"
    );
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("RolloutCompleted: Rollout completed update to revision 2"))
    );
}

#[tokio::test(start_paused = true)]
async fn abort_is_immediate_for_traffic_the_canary_goes_after_the_delay_and_retry_restarts() {
    let e = env().await;
    deployed(&e, routed(json!([{"setWeight": 40}, {"pause": {}}]))).await;
    set_image(&e.store, "web:2").await;
    let s = until(&e.store, "paused", Duration::from_secs(30), |s| {
        !s.pause_conditions.is_empty()
    })
    .await;
    let canary = format!("web-{}", s.current_pod_hash.unwrap());
    assert_eq!(canary_weight(&e.store).await, 40);
    patch_status(&e.store, |s| {
        s.insert("abort".into(), json!(true));
    })
    .await;
    let s = until(&e.store, "aborted", Duration::from_secs(5), |s| {
        phase(s).0 == "Degraded"
    })
    .await;
    assert_eq!(
        phase(&s).1,
        "RolloutAborted: Rollout aborted update to revision 2"
    );
    assert_eq!(canary_weight(&e.store).await, 0);
    assert_eq!(replicas(&e.store, &canary).await, 2);
    assert!(s.aborted_at.is_some());
    tokio::time::sleep(Duration::from_secs(31)).await;
    assert_eq!(replicas(&e.store, &canary).await, 0);
    // Retry.
    patch_status(&e.store, |s| {
        s.insert("abort".into(), json!(false));
    })
    .await;
    let s = until(&e.store, "retried", Duration::from_secs(30), |s| {
        !s.pause_conditions.is_empty()
    })
    .await;
    assert_eq!(s.current_step_index, Some(1));
    assert!(s.aborted_at.is_none());
    assert_eq!(canary_weight(&e.store).await, 40);
    assert_eq!(replicas(&e.store, &canary).await, 2);
}

#[tokio::test(start_paused = true)]
async fn promote_full_skips_every_remaining_step() {
    let e = env().await;
    deployed(
        &e,
        routed(json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 50}, {"pause": {}}])),
    )
    .await;
    set_image(&e.store, "web:2").await;
    until(&e.store, "paused", Duration::from_secs(30), |s| {
        !s.pause_conditions.is_empty()
    })
    .await;
    patch_status(&e.store, |s| {
        s.insert("promoteFull".into(), json!(true));
    })
    .await;
    let s = until(&e.store, "promoted", Duration::from_secs(30), |s| {
        phase(s) == ("Healthy", "")
    })
    .await;
    assert_eq!(s.current_step_index, Some(4));
    assert!(!s.promote_full);
    assert_eq!(s.stable_rs, s.current_pod_hash);
}

async fn template(e: &Env, name: &str, condition: &str) {
    e.store
        .create(
            obj(
                json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"args": [{"name": "hash"}],
                    "metrics": [{"name": "success-rate", "successCondition": condition,
                    "provider": {"web": {"url": "http://127.0.0.1:9/{{args.hash}}"}}}]}}),
            ),
            "test",
        )
        .await
        .unwrap();
}

async fn set_run_phase(e: &Env, name: &str, phase: &str, message: &str) {
    let mut run = e
        .store
        .get(&key("AnalysisRun", name))
        .await
        .unwrap()
        .unwrap();
    run.body
        .insert("status".into(), json!({"phase": phase, "message": message}));
    e.store
        .update_status(run, "controller:analysis")
        .await
        .unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_failed_analysis_step_aborts_with_the_metrics_message() {
    let e = env().await;
    template(&e, "rate", "result >= 0.95").await;
    let steps = json!([{"setWeight": 20}, {"analysis": {"templates": [{"templateName": "rate"}],
        "args": [{"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]}}, {"setWeight": 60}]);
    deployed(&e, routed(steps)).await;
    set_image(&e.store, "web:2").await;
    let s = until(&e.store, "analysing", Duration::from_secs(30), |s| {
        s.canary().current_step_analysis_run_status.is_some()
    })
    .await;
    let hash = s.current_pod_hash.clone().unwrap();
    let run = s
        .canary()
        .current_step_analysis_run_status
        .clone()
        .unwrap()
        .name;
    // Argo's name: rollout, hash, revision, step.
    assert_eq!(run, format!("web-{hash}-2-1"));
    let created = e
        .store
        .get(&key("AnalysisRun", &run))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(created.spec().unwrap()["args"][0]["value"], json!(hash));
    assert_eq!(created.metadata.labels["rollout-type"], "Step");
    assert_eq!(created.metadata.labels["step-index"], "1");
    assert_eq!(canary_weight(&e.store).await, 20);
    let message = "Metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0)";
    set_run_phase(&e, &run, "Failed", message).await;
    let s = until(&e.store, "aborted", Duration::from_secs(5), |s| s.aborted()).await;
    assert_eq!(
        phase(&s),
        (
            "Degraded",
            format!("RolloutAborted: Rollout aborted update to revision 2: {message}").as_str()
        )
    );
    assert_eq!(canary_weight(&e.store).await, 0);
    let run_status = s.canary().current_step_analysis_run_status.clone().unwrap();
    assert_eq!(run_status.status, "Failed");
    let events = e
        .store
        .events(&EventQuery {
            kind: Some("Rollout".into()),
            name: Some("web".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert!(events.iter().any(|ev| ev.action == "RolloutAborted"
        && ev.message == format!("Rollout aborted update to revision 2: {message}")));
}

#[tokio::test(start_paused = true)]
async fn an_inconclusive_analysis_pauses_the_rollout() {
    let e = env().await;
    template(&e, "rate", "result >= 0.95").await;
    let steps = json!([{"analysis": {"templates": [{"templateName": "rate"}],
        "args": [{"name": "hash", "value": "x"}]}}, {"setWeight": 60}]);
    deployed(&e, routed(steps)).await;
    set_image(&e.store, "web:2").await;
    let s = until(&e.store, "analysing", Duration::from_secs(30), |s| {
        s.canary().current_step_analysis_run_status.is_some()
    })
    .await;
    let run = s
        .canary()
        .current_step_analysis_run_status
        .clone()
        .unwrap()
        .name;
    set_run_phase(&e, &run, "Inconclusive", "").await;
    let s = until(&e.store, "paused", Duration::from_secs(5), |s| {
        !s.pause_conditions.is_empty()
    })
    .await;
    assert_eq!(phase(&s), ("Paused", "InconclusiveAnalysisRun"));
    assert!(s.controller_pause);
    // Promote moves past it.
    patch_status(&e.store, |s| {
        s.insert("pauseConditions".into(), Value::Null);
    })
    .await;
    until(&e.store, "healthy", Duration::from_secs(30), |s| {
        phase(s) == ("Healthy", "")
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn invalid_specs_are_degraded_with_argos_message_and_nothing_is_applied() {
    let e = env().await;
    template(&e, "bad-expr", "result >= ").await;
    let cases = [
        (
            json!({"stableService": "web", "canaryService": "web"}),
            "InvalidSpec: The Rollout \"web\" is invalid: spec.strategy.stableService: Invalid value: \"web\": This rollout uses the same service for the stable and canary services, but two different services are required.".to_string(),
        ),
        (
            json!({"steps": [{"analysis": {"templates": [{"templateName": "missing"}]}}]}),
            "InvalidSpec: The Rollout \"web\" is invalid: spec.strategy.canary.steps[0].analysis.templates: Invalid value: \"missing\": AnalysisTemplate 'missing' not found".to_string(),
        ),
        (
            json!({"canaryService": "nope"}),
            "InvalidSpec: The Rollout \"web\" is invalid: spec.strategy.canary.canaryService: Invalid value: \"nope\": service \"nope\" not found".to_string(),
        ),
    ];
    for (canary, want) in cases {
        e.store
            .create(rollout("web:1", canary), "test")
            .await
            .unwrap();
        let s = until(&e.store, &want, Duration::from_secs(10), |s| {
            s.phase.as_deref() == Some("Degraded")
        })
        .await;
        assert_eq!(phase(&s).1, want);
        let c = s
            .conditions
            .iter()
            .find(|c| c.type_ == "InvalidSpec")
            .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_deref()),
            ("True", Some("InvalidSpec"))
        );
        let sets = e
            .store
            .list(&ListQuery {
                group: Some("apps".into()),
                kind: Some("ReplicaSet".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(sets.items.is_empty(), "nothing applied");
        e.store
            .delete(&key("Rollout", "web"), "test")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    // A condition that does not parse is caught before any run is made.
    let bad = json!({"steps": [{"analysis": {"templates": [{"templateName": "bad-expr"}],
        "args": [{"name": "hash", "value": "x"}]}}]});
    e.store.create(rollout("web:1", bad), "test").await.unwrap();
    let s = until(&e.store, "bad expression", Duration::from_secs(10), |s| {
        s.phase.as_deref() == Some("Degraded")
    })
    .await;
    let m = phase(&s).1;
    assert!(
        m.starts_with("InvalidSpec: The Rollout \"web\" is invalid: spec.strategy.canary.steps[0].analysis.templates: Invalid value: \"templateNames: [bad-expr]\": metrics[0]: "),
        "{m}"
    );
    // Both strategies.
    e.store
        .delete(&key("Rollout", "web"), "test")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut both = rollout("web:1", json!({}));
    both.body["spec"]["strategy"]["blueGreen"] =
        json!({"activeService": "web", "previewService": "web-canary"});
    e.store.create(both, "test").await.unwrap();
    let s = until(&e.store, "both strategies", Duration::from_secs(10), |s| {
        s.phase.as_deref() == Some("Degraded")
    })
    .await;
    assert_eq!(
        phase(&s).1,
        "InvalidSpec: The Rollout \"web\" is invalid: spec.strategy.strategy: Invalid value: \"blueGreen: true canary: true\": Multiple Strategies can not be listed"
    );
}

/// The corpus' `rollout-aborted` snapshot (a background analysis failed during `setWeight: 10,
/// pause {}`, one replica) replayed: our status has every field Argo's has, with the same
/// values where they do not depend on hashes, names and times. Argo's newer `phase` and
/// `message` and the Paused/Completed conditions are extra; that old snapshot's Progressing
/// message lacks the `Rollout aborted update to revision N: ` prefix Argo adds since.
#[tokio::test(start_paused = true)]
async fn an_aborted_status_compares_field_by_field_with_argos_snapshot() {
    let corpus = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/argo/rollouts-status-snapshots/rollout-aborted/rollout.yaml");
    let Ok(text) = std::fs::read_to_string(&corpus) else {
        println!("SKIPPED: no corpus at {}", corpus.display());
        return;
    };
    let snapshot = shipway_model::load_str("rollout.yaml", &text).unwrap()[0]
        .object
        .clone();
    let want = snapshot.status().unwrap().clone();
    let e = env().await;
    e.store
        .create(
            obj(json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
                "metadata": {"name": "web-background", "namespace": "default"},
                "spec": {"metrics": [{"name": "web", "provider": {"web": {"url": "http://127.0.0.1:9/"}}}]}})),
            "test",
        )
        .await
        .unwrap();
    let mut ro = rollout(
        "web:1",
        json!({"analysis": {"templates": [{"templateName": "web-background"}]},
            "steps": [{"setWeight": 10}, {"pause": {}}]}),
    );
    ro.body["spec"]["replicas"] = json!(1);
    e.store.create(ro, "test").await.unwrap();
    until(&e.store, "healthy", Duration::from_secs(30), |s| {
        phase(s) == ("Healthy", "")
    })
    .await;
    set_image(&e.store, "web:2").await;
    let s = until(&e.store, "background run", Duration::from_secs(30), |s| {
        s.canary().current_background_analysis_run_status.is_some()
    })
    .await;
    let run = s
        .canary()
        .current_background_analysis_run_status
        .clone()
        .unwrap()
        .name;
    let message = "metric \"web\" assessed Failed due to failed (1) > failureLimit (0)";
    set_run_phase(&e, &run, "Failed", message).await;
    until(&e.store, "aborted", Duration::from_secs(10), |s| {
        s.aborted()
    })
    .await;
    // Let the counts settle.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let o = e.store.get(&key("Rollout", "web")).await.unwrap().unwrap();
    let got = o.status().unwrap().clone();
    let varying = [
        "abortedAt",
        "currentPodHash",
        "currentStepHash",
        "observedGeneration",
        "stableRS",
        "selector",
    ];
    for (k, v) in want.as_object().unwrap() {
        let ours = got
            .get(k)
            .unwrap_or_else(|| panic!("status.{k} missing: {got:#}"));
        if varying.contains(&k.as_str()) {
            continue;
        }
        match k.as_str() {
            "canary" => {
                let (w, o) = (
                    &v["currentBackgroundAnalysisRunStatus"],
                    &ours["currentBackgroundAnalysisRunStatus"],
                );
                assert_eq!(w["status"], o["status"]);
                assert_eq!(w["message"], o["message"]);
            }
            "conditions" => {
                for c in v.as_array().unwrap() {
                    let mine = ours
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|m| m["type"] == c["type"])
                        .unwrap_or_else(|| panic!("no {} condition: {ours:#}", c["type"]));
                    assert_eq!(
                        (&mine["status"], &mine["reason"]),
                        (&c["status"], &c["reason"])
                    );
                    let m = mine["message"].as_str().unwrap();
                    let w = c["message"].as_str().unwrap();
                    assert!(m.ends_with(w), "{m:?} vs Argo's {w:?}");
                }
            }
            _ => assert_eq!(ours, v, "status.{k}"),
        }
    }
    assert_eq!(got["selector"], "app=web");
    assert_eq!(
        got["observedGeneration"],
        json!(o.metadata.generation.to_string())
    );
}

fn blue_green(image: &str) -> Object {
    let mut ro = rollout(image, json!({}));
    let strategy = &mut ro.body["spec"]["strategy"];
    *strategy = json!({"blueGreen": {"activeService": "web", "previewService": "web-canary",
        "autoPromotionEnabled": false, "scaleDownDelaySeconds": 5}});
    ro
}

async fn selector_hash(store: &Store, service: &str) -> Option<String> {
    let svc = store.get(&key("Service", service)).await.unwrap().unwrap();
    svc.spec().unwrap()["selector"]["rollouts-pod-template-hash"]
        .as_str()
        .map(String::from)
}

#[tokio::test(start_paused = true)]
async fn blue_green_previews_then_switches_the_active_service_on_promote() {
    let e = env().await;
    e.store.create(blue_green("web:1"), "test").await.unwrap();
    let s = until(&e.store, "healthy", Duration::from_secs(30), |s| {
        phase(s) == ("Healthy", "")
    })
    .await;
    let blue = s.current_pod_hash.clone().unwrap();
    assert_eq!(
        selector_hash(&e.store, "web").await.as_deref(),
        Some(blue.as_str())
    );
    let mut o = e.store.get(&key("Rollout", "web")).await.unwrap().unwrap();
    o.body["spec"]["template"]["spec"]["containers"][0]["image"] = json!("web:2");
    e.store.update(o, "user:admin").await.unwrap();
    let s = until(&e.store, "paused", Duration::from_secs(30), |s| {
        !s.pause_conditions.is_empty()
    })
    .await;
    let green = s.current_pod_hash.clone().unwrap();
    assert_eq!(phase(&s), ("Paused", "BlueGreenPause"));
    assert_eq!(
        selector_hash(&e.store, "web").await.as_deref(),
        Some(blue.as_str())
    );
    assert_eq!(
        selector_hash(&e.store, "web-canary").await.as_deref(),
        Some(green.as_str())
    );
    let bg = s.blue_green.clone().unwrap();
    assert_eq!(bg.active_selector.as_deref(), Some(blue.as_str()));
    assert_eq!(bg.preview_selector.as_deref(), Some(green.as_str()));
    patch_status(&e.store, |s| {
        s.insert("pauseConditions".into(), Value::Null);
    })
    .await;
    let s = until(&e.store, "promoted", Duration::from_secs(30), |s| {
        s.blue_green
            .as_ref()
            .and_then(|b| b.active_selector.clone())
            == s.current_pod_hash
    })
    .await;
    assert_eq!(s.stable_rs.as_deref(), Some(green.as_str()));
    assert_eq!(
        selector_hash(&e.store, "web").await.as_deref(),
        Some(green.as_str())
    );
    assert_eq!(replicas(&e.store, &format!("web-{blue}")).await, 5);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(replicas(&e.store, &format!("web-{blue}")).await, 0);
    let s = until(&e.store, "healthy again", Duration::from_secs(30), |s| {
        phase(s) == ("Healthy", "")
    })
    .await;
    assert_eq!(s.current_step_index, None);
}

/// `kubectl argo rollouts restart` writes `spec.restartAt`: the pods created before it are
/// deleted (one at a time, each while everything is available), then `status.restartedAt`
/// says it is done.
#[tokio::test(start_paused = true)]
async fn restart_at_replaces_the_older_pods_and_records_it() {
    let e = env().await;
    let hash = deployed(&e, json!({})).await;
    let rs = e
        .store
        .get(&key("ReplicaSet", &format!("web-{hash}")))
        .await
        .unwrap()
        .unwrap();
    // Two pods of the ReplicaSet (no kubelet runs here; these stand for its pods).
    for i in 0..2 {
        e.store
            .create(
                obj(json!({"apiVersion": "v1", "kind": "Pod",
                    "metadata": {"name": format!("web-{hash}-{i}"), "namespace": "default",
                        "labels": {"app": "web", "rollouts-pod-template-hash": hash},
                        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                            "name": rs.metadata.name, "uid": rs.metadata.uid, "controller": true}]},
                    "spec": {"containers": [{"name": "web", "image": "web:1"}]}})),
                "test",
            )
            .await
            .unwrap();
    }
    let at = shipway_controller::clock::format_timestamp(
        time::OffsetDateTime::now_utc() + time::Duration::seconds(2),
    );
    let mut o = e.store.get(&key("Rollout", "web")).await.unwrap().unwrap();
    o.body["spec"]["restartAt"] = json!(at);
    e.store.update(o, "user:admin").await.unwrap();
    let s = until(&e.store, "restarted", Duration::from_secs(60), |s| {
        s.restarted_at.as_deref() == Some(at.as_str())
    })
    .await;
    assert_eq!(phase(&s), ("Healthy", ""));
    for i in 0..2 {
        let pod = Key::new("", "Pod", "default", &format!("web-{hash}-{i}"));
        assert!(
            e.store.get(&pod).await.unwrap().is_none(),
            "{pod} still there"
        );
    }
}

/// `kubectl argo rollouts undo` writes an older ReplicaSet's template (without its hash label)
/// back into the Rollout: back to the stable one, the steps are skipped (a fast rollback).
#[tokio::test(start_paused = true)]
async fn undo_to_the_stable_template_is_a_fast_rollback() {
    let e = env().await;
    let stable = deployed(&e, routed(json!([{"setWeight": 20}, {"pause": {}}]))).await;
    set_image(&e.store, "web:2").await;
    let s = until(&e.store, "paused", Duration::from_secs(30), |s| {
        !s.pause_conditions.is_empty()
    })
    .await;
    let canary = s.current_pod_hash.unwrap();
    // What undo does: the ReplicaSet's template, in its own key order, without the hash label.
    let rs = e
        .store
        .get(&key("ReplicaSet", &format!("web-{stable}")))
        .await
        .unwrap()
        .unwrap();
    let mut template = rs.spec().unwrap()["template"].clone();
    template["metadata"]["labels"]
        .as_object_mut()
        .unwrap()
        .remove("rollouts-pod-template-hash");
    let mut o = e.store.get(&key("Rollout", "web")).await.unwrap().unwrap();
    o.body["spec"]["template"] = template;
    e.store.update(o, "user:admin").await.unwrap();
    let s = until(&e.store, "rolled back", Duration::from_secs(30), |s| {
        phase(s) == ("Healthy", "")
    })
    .await;
    assert_eq!(s.current_pod_hash.as_deref(), Some(stable.as_str()));
    assert_eq!(s.stable_rs.as_deref(), Some(stable.as_str()));
    assert_eq!(s.current_step_index, Some(2));
    assert_eq!(canary_weight(&e.store).await, 0);
    // The canary goes after the scale-down delay; no third ReplicaSet was made.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(replicas(&e.store, &format!("web-{canary}")).await, 0);
    let sets = e
        .store
        .list(&ListQuery {
            group: Some("apps".into()),
            kind: Some("ReplicaSet".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(sets.items.len(), 2);
    let revision = |rs: &Object| rs.metadata.annotations["rollout.argoproj.io/revision"].clone();
    let back = sets
        .items
        .iter()
        .find(|rs| rs.metadata.name == format!("web-{stable}"))
        .unwrap();
    assert_eq!(revision(back), "3");
}

/// A CodeDeploy preset named in the annotation runs as its steps: 10 % for five minutes, then
/// all of it.
#[tokio::test(start_paused = true)]
async fn a_codedeploy_preset_runs_as_its_steps() {
    let e = env().await;
    let mut ro = rollout("web:1", routed(Value::Null));
    ro.metadata.annotations.insert(
        "rollouts.shipway.dev/steps-preset".into(),
        "Canary10Percent5Minutes".into(),
    );
    e.store.create(ro, "test").await.unwrap();
    until(&e.store, "healthy", Duration::from_secs(30), |s| {
        phase(s) == ("Healthy", "")
    })
    .await;
    set_image(&e.store, "web:2").await;
    let s = until(&e.store, "paused at 10 %", Duration::from_secs(30), |s| {
        s.current_step_index == Some(1) && !s.pause_conditions.is_empty()
    })
    .await;
    assert_eq!(phase(&s), ("Paused", "CanaryPauseStep"));
    assert_eq!(canary_weight(&e.store).await, 10);
    tokio::time::sleep(Duration::from_secs(4 * 60)).await;
    let o = e.store.get(&key("Rollout", "web")).await.unwrap().unwrap();
    assert_eq!(
        status(&o).current_step_index,
        Some(1),
        "still within the five minutes"
    );
    until(
        &e.store,
        "the preset's end",
        Duration::from_secs(120),
        |s| phase(s) == ("Healthy", "") && s.stable_rs == s.current_pod_hash,
    )
    .await;
}
