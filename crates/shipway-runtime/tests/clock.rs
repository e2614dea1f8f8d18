//! The workload controllers on paused time: their deadlines come from the `Clock` (tokio's time),
//! so ten minutes of a controller's life pass in milliseconds of the test's. Only the controllers
//! under test run (no kubelet): pods are created but never become ready.

use std::time::Duration;

use serde_json::{Value, json};
use shipway_controller::{Clock, Reflector};
use shipway_model::{Key, Object};
use shipway_runtime::controller::Controller;
use shipway_runtime::deployment::DeploymentController;
use shipway_runtime::job::JobController;
use shipway_runtime::replicaset::ReplicaSetController;
use shipway_store::Store;
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
