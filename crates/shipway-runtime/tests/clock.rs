//! The workload controllers on paused time: their deadlines come from the `Clock` (tokio's time),
//! so ten minutes of a controller's life pass in milliseconds of the test's. Only the controllers
//! under test run (no kubelet): pods are created but never become ready. The kubectl-style events
//! the controllers record are read back through `Store::events`.

use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::{Clock, Reflector};
use shipway_model::{Key, Object};
use shipway_runtime::controller::Controller;
use shipway_runtime::deployment::DeploymentController;
use shipway_runtime::job::JobController;
use shipway_runtime::replicaset::ReplicaSetController;
use shipway_store::{EventQuery, ListQuery, Store};
use tokio_util::sync::CancellationToken;

struct Env {
    store: Store,
    _dir: tempfile::TempDir,
    shutdown: CancellationToken,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("shipway.db"))
        .await
        .unwrap();
    Env {
        store,
        _dir: dir,
        shutdown: CancellationToken::new(),
    }
}

/// Waits, in steps of one virtual second, until `f` holds for the stored object; returns how
/// much virtual time that took.
async fn until(store: &Store, key: &Key, limit: Duration, f: impl Fn(&Object) -> bool) -> Duration {
    let start = tokio::time::Instant::now();
    loop {
        if let Some(o) = store.get(key).await.unwrap()
            && f(&o)
        {
            return start.elapsed();
        }
        if start.elapsed() >= limit {
            let now = store.get(key).await.unwrap();
            panic!("{key}: not reached in {limit:?}: {now:#?}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

fn condition<'a>(o: &'a Object, kind: &str) -> Option<&'a Value> {
    o.status()?
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

#[tokio::test(start_paused = true)]
async fn a_progress_deadline_of_600_seconds_passes_on_paused_time() {
    let wall = std::time::Instant::now();
    let e = env().await;
    let (cache, _feed) = Reflector::spawn(e.store.clone(), e.shutdown.clone());
    let clock = Clock::new();
    tokio::spawn(
        Controller::new(
            cache.clone(),
            DeploymentController {
                store: e.store.clone(),
                cache: cache.clone(),
                clock,
            },
        )
        .run(e.shutdown.clone()),
    );
    tokio::spawn(
        Controller::new(
            cache.clone(),
            ReplicaSetController {
                store: e.store.clone(),
                cache: cache.clone(),
                clock,
            },
        )
        .run(e.shutdown.clone()),
    );
    let d: Object = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 1, "progressDeadlineSeconds": 600,
                 "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}},
    }))
    .unwrap();
    e.store.apply(d, "test").await.unwrap();
    let key = Key::new("apps", "Deployment", "default", "web");
    let progressing = until(&e.store, &key, Duration::from_secs(30), |o| {
        condition(o, "Progressing").is_some_and(|c| c["reason"] == "ReplicaSetUpdated")
    })
    .await;
    let exceeded = until(&e.store, &key, Duration::from_secs(700), |o| {
        condition(o, "Progressing").is_some_and(|c| c["reason"] == "ProgressDeadlineExceeded")
    })
    .await;
    let c = condition(&e.store.get(&key).await.unwrap().unwrap(), "Progressing")
        .cloned()
        .unwrap();
    assert_eq!(c["status"], "False");
    assert!(
        c["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("has timed out progressing."),
        "{c}"
    );
    // Not before the deadline, and soon after it (the controller requeues for the deadline).
    let total = progressing + exceeded;
    assert!(
        (Duration::from_secs(600)..Duration::from_secs(615)).contains(&total),
        "deadline seen after {total:?} of virtual time"
    );
    // And it stays failed while nothing moves (it used to flip back to progressing).
    tokio::time::sleep(Duration::from_secs(120)).await;
    let later = e.store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        condition(&later, "Progressing").map(|c| c["reason"].clone()),
        Some(json!("ProgressDeadlineExceeded"))
    );
    println!(
        "a 600 s progress deadline passed after {total:?} of virtual time in {:?} of wall time",
        wall.elapsed()
    );
    e.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn an_active_deadline_of_600_seconds_fails_the_job_on_paused_time() {
    let e = env().await;
    let (cache, _feed) = Reflector::spawn(e.store.clone(), e.shutdown.clone());
    tokio::spawn(
        Controller::new(
            cache.clone(),
            JobController {
                store: e.store.clone(),
                cache: cache.clone(),
                clock: Clock::new(),
                backoff_base: Duration::from_secs(10),
            },
        )
        .run(e.shutdown.clone()),
    );
    let job: Object = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "migrate", "namespace": "default"},
        "spec": {"activeDeadlineSeconds": 600,
                 "template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "m", "image": "m:v1"}]}}},
    }))
    .unwrap();
    e.store.apply(job, "test").await.unwrap();
    let key = Key::new("batch", "Job", "default", "migrate");
    let took = until(&e.store, &key, Duration::from_secs(700), |o| {
        condition(o, "Failed").is_some_and(|c| c["status"] == "True")
    })
    .await;
    let job = e.store.get(&key).await.unwrap().unwrap();
    let failed = condition(&job, "Failed").unwrap();
    assert_eq!(failed["reason"], "DeadlineExceeded", "{failed}");
    assert!(
        (Duration::from_secs(599)..Duration::from_secs(610)).contains(&took),
        "failed after {took:?} of virtual time"
    );
    e.shutdown.cancel();
}

/// The events about `key` that are not writes, as `(reason, message)`.
async fn events(store: &Store, key: &Key) -> Vec<(String, String)> {
    const WRITES: [&str; 5] = ["create", "update", "update-status", "delete", "finalize"];
    store
        .events(&EventQuery::for_key(key, 0))
        .await
        .unwrap()
        .into_iter()
        .filter(|e| !WRITES.contains(&e.action.as_str()))
        .map(|e| (e.action, e.message))
        .collect()
}

/// Waits, in steps of one virtual second, until `key` has `n` events; returns them.
async fn until_events(store: &Store, key: &Key, n: usize) -> Vec<(String, String)> {
    for _ in 0..60 {
        let got = events(store, key).await;
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!(
        "{key}: fewer than {n} events: {:?}",
        events(store, key).await
    );
}

async fn names(store: &Store, group: &str, kind: &str) -> Vec<String> {
    let list = store.list(&ListQuery::kind(group, kind)).await.unwrap();
    list.items.into_iter().map(|o| o.metadata.name).collect()
}

#[tokio::test(start_paused = true)]
async fn deployments_and_replica_sets_say_what_they_scaled_as_kubectl_events() {
    let e = env().await;
    let (cache, _feed) = Reflector::spawn(e.store.clone(), e.shutdown.clone());
    tokio::spawn(
        Controller::new(
            cache.clone(),
            DeploymentController {
                store: e.store.clone(),
                cache: cache.clone(),
                clock: Clock::new(),
            },
        )
        .run(e.shutdown.clone()),
    );
    tokio::spawn(
        Controller::new(
            cache.clone(),
            ReplicaSetController {
                store: e.store.clone(),
                cache: cache.clone(),
                clock: Clock::new(),
            },
        )
        .run(e.shutdown.clone()),
    );
    let deployment = |replicas: i64| -> Object {
        serde_json::from_value(json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "web:v1"}]}}},
        }))
        .unwrap()
    };
    e.store.apply(deployment(2), "test").await.unwrap();
    let d = Key::new("apps", "Deployment", "default", "web");
    let got = until_events(&e.store, &d, 1).await;
    let rs = names(&e.store, "apps", "ReplicaSet").await;
    assert_eq!(rs.len(), 1, "{rs:?}");
    let rs = rs[0].clone();
    assert_eq!(
        got,
        [(
            "ScalingReplicaSet".into(),
            format!("Scaled up replica set {rs} to 2")
        )]
    );
    let rs_key = Key::new("apps", "ReplicaSet", "default", &rs);
    let created = until_events(&e.store, &rs_key, 2).await;
    let mut pods = names(&e.store, "", "Pod").await;
    pods.sort();
    let mut said: Vec<(String, String)> = pods
        .iter()
        .map(|p| ("SuccessfulCreate".into(), format!("Created pod: {p}")))
        .collect();
    let mut sorted = created.clone();
    sorted.sort();
    assert_eq!(sorted, said);

    e.store.apply(deployment(1), "test").await.unwrap();
    let got = until_events(&e.store, &d, 2).await;
    assert_eq!(
        got[1],
        (
            "ScalingReplicaSet".into(),
            format!("Scaled down replica set {rs} to 1")
        )
    );
    let got = until_events(&e.store, &rs_key, 3).await;
    let left = names(&e.store, "", "Pod").await;
    let gone: Vec<&String> = pods.iter().filter(|p| !left.contains(p)).collect();
    assert_eq!(gone.len(), 1, "{pods:?} then {left:?}");
    said.push((
        "SuccessfulDelete".into(),
        format!("Deleted pod: {}", gone[0]),
    ));
    assert_eq!(got[2], said[2]);
    e.shutdown.cancel();
}

#[tokio::test(start_paused = true)]
async fn jobs_say_what_they_created_and_how_they_finished_as_kubectl_events() {
    let e = env().await;
    let (cache, _feed) = Reflector::spawn(e.store.clone(), e.shutdown.clone());
    tokio::spawn(
        Controller::new(
            cache.clone(),
            JobController {
                store: e.store.clone(),
                cache: cache.clone(),
                clock: Clock::new(),
                backoff_base: Duration::from_secs(10),
            },
        )
        .run(e.shutdown.clone()),
    );
    let job = |name: &str| -> Object {
        serde_json::from_value(json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"backoffLimit": 0,
                     "template": {"spec": {"restartPolicy": "Never",
                                           "containers": [{"name": "m", "image": "m:v1"}]}}},
        }))
        .unwrap()
    };
    // No kubelet runs here: the test says how each pod ended, as the kubelet would.
    for (name, phase, reason, message) in [
        ("ok", "Succeeded", "Completed", "Job completed"),
        (
            "bad",
            "Failed",
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ),
    ] {
        e.store.apply(job(name), "test").await.unwrap();
        let key = Key::new("batch", "Job", "default", name);
        let created = until_events(&e.store, &key, 1).await;
        let pods: Vec<Object> = e
            .store
            .list(&ListQuery::kind("", "Pod"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.labels.get("job-name").map(String::as_str) == Some(name))
            .collect();
        assert_eq!(pods.len(), 1);
        assert_eq!(
            created,
            [(
                "SuccessfulCreate".into(),
                format!("Created pod: {}", pods[0].metadata.name)
            )]
        );
        let mut pod = pods[0].clone();
        pod.body.insert("status".into(), json!({"phase": phase}));
        e.store.update_status(pod, "test").await.unwrap();
        let got = until_events(&e.store, &key, 2).await;
        assert_eq!(got[1..], [(reason.into(), message.into())]);
    }
    e.shutdown.cancel();
}
