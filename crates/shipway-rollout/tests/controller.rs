//! The AnalysisRun controller on the store, the shared cache and the runner, with the `web`
//! provider against a local HTTP server: runs end Successful, Failed (Argo's message), by
//! `terminate`, or in Error for an argument without a value.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Json;
use axum::routing::get;
use serde_json::{Value, json};
use shipway_controller::{Clock, Reflector};
use shipway_model::types::AnalysisRunStatus;
use shipway_model::{Key, Object};
use shipway_rollout::analysis::controller::AnalysisController;
use shipway_rollout::analysis::provider::Providers;
use shipway_store::Store;
use tokio_util::sync::CancellationToken;

struct Env {
    store: Store,
    base: String,
    hits: Arc<AtomicUsize>,
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
    let controller = AnalysisController::new(
        store.clone(),
        cache.clone(),
        clock,
        Providers::new(clock, None),
    );
    tokio::spawn(controller.run(shutdown.clone()));
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = hits.clone();
    let app = axum::Router::new().route(
        "/rate",
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move { Json(json!({"rate": 0.99, "n": n})) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Env {
        store,
        base,
        hits,
        shutdown,
        _dir: dir,
    }
}

fn analysis_run(name: &str, spec: Value) -> Object {
    serde_json::from_value(json!({
        "apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisRun",
        "metadata": {"name": name, "namespace": "default"},
        "spec": spec,
    }))
    .unwrap()
}

fn key(name: &str) -> Key {
    Key::new("argoproj.io", "AnalysisRun", "default", name)
}

/// Waits (real time: the measurements are real HTTP requests) for the run's status to satisfy
/// `f`.
async fn until(
    store: &Store,
    name: &str,
    limit: Duration,
    f: impl Fn(&AnalysisRunStatus) -> bool,
) -> AnalysisRunStatus {
    let start = Instant::now();
    loop {
        let obj = store.get(&key(name)).await.unwrap().unwrap();
        let status: AnalysisRunStatus = obj.status_as().unwrap();
        if f(&status) {
            return status;
        }
        assert!(
            start.elapsed() < limit,
            "{name}: not reached in {limit:?}: {status:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn three_measurements_a_second_apart_end_successful() {
    let e = env().await;
    let spec = json!({"metrics": [{"name": "rate", "count": 3, "interval": "1s",
        "successCondition": "result >= 0.95",
        "provider": {"web": {"url": format!("{}/rate", e.base), "jsonPath": "{$.rate}"}}}]});
    let start = Instant::now();
    e.store
        .create(analysis_run("ok", spec), "test")
        .await
        .unwrap();
    let s = until(&e.store, "ok", Duration::from_secs(20), |s| {
        s.phase == "Successful"
    })
    .await;
    let took = start.elapsed();
    let r = &s.metric_results[0];
    assert_eq!((r.count, r.successful, r.measurements.len()), (3, 3, 3));
    assert!(r.measurements.iter().all(|m| m.value == "0.99"));
    assert_eq!(e.hits.load(Ordering::SeqCst), 3);
    // Two intervals of at least 1 s between three measurements, though timestamps are whole
    // seconds.
    assert!(took >= Duration::from_secs(2), "{took:?}");
    let summary = s.run_summary.unwrap();
    assert_eq!((summary.count, summary.successful), (1, 1));
    assert!(s.started_at.is_some() && s.completed_at.is_some());
    println!("count 3, interval 1s: Successful after {took:?}");
}

#[tokio::test]
async fn a_failing_condition_ends_failed_with_argos_message() {
    let e = env().await;
    let spec = json!({"metrics": [{"name": "rate", "count": 3, "interval": "1s",
        "successCondition": "result >= 0.999",
        "provider": {"web": {"url": format!("{}/rate", e.base), "jsonPath": "{$.rate}"}}}]});
    e.store
        .create(analysis_run("bad", spec), "test")
        .await
        .unwrap();
    let s = until(&e.store, "bad", Duration::from_secs(20), |s| {
        s.phase == "Failed"
    })
    .await;
    assert_eq!(
        s.message,
        "Metric \"rate\" assessed Failed due to failed (1) > failureLimit (0)"
    );
    // Failing ends the run at once: no further measurement.
    assert_eq!(s.metric_results[0].measurements.len(), 1);
    let events: Vec<(String, String)> = e
        .store
        .events(&shipway_store::EventQuery {
            kind: Some("AnalysisRun".into()),
            name: Some("bad".into()),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_iter()
        .filter(|ev| ev.actor == "controller:analysis" && !ev.action.starts_with("update"))
        .map(|ev| (ev.action, ev.message))
        .collect();
    assert_eq!(
        events,
        vec![
            (
                "MetricFailed".to_string(),
                "Metric 'rate' Completed. Result: Failed".to_string()
            ),
            (
                "AnalysisRunFailed".to_string(),
                "Analysis Completed. Result: Failed".to_string()
            ),
        ]
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(e.hits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn terminate_ends_an_open_ended_run() {
    let e = env().await;
    let spec = json!({"metrics": [{"name": "rate", "interval": "1s",
        "successCondition": "result >= 0.95",
        "provider": {"web": {"url": format!("{}/rate", e.base), "jsonPath": "{$.rate}"}}}]});
    e.store
        .create(analysis_run("open", spec), "test")
        .await
        .unwrap();
    until(&e.store, "open", Duration::from_secs(20), |s| {
        s.phase == "Running" && s.metric_results.first().is_some_and(|r| r.count >= 2)
    })
    .await;
    let mut obj = e.store.get(&key("open")).await.unwrap().unwrap();
    obj.body
        .get_mut("spec")
        .unwrap()
        .as_object_mut()
        .unwrap()
        .insert("terminate".into(), json!(true));
    e.store.update(obj, "test").await.unwrap();
    let s = until(&e.store, "open", Duration::from_secs(20), |s| {
        s.phase == "Successful"
    })
    .await;
    assert_eq!(s.message, "Run Terminated");
    let hits = e.hits.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        e.hits.load(Ordering::SeqCst),
        hits,
        "measured after terminate"
    );
}

#[tokio::test]
async fn an_argument_without_a_value_is_the_runs_error() {
    let e = env().await;
    let spec = json!({"args": [{"name": "host"}], "metrics": [{"name": "rate",
        "provider": {"web": {"url": "http://{{args.host}}/rate"}}}]});
    e.store
        .create(analysis_run("noarg", spec), "test")
        .await
        .unwrap();
    let s = until(&e.store, "noarg", Duration::from_secs(20), |s| {
        s.phase == "Error"
    })
    .await;
    assert_eq!(
        s.message,
        "Unable to resolve metric arguments: argument \"host\" was not supplied"
    );
    assert_eq!(e.hits.load(Ordering::SeqCst), 0);
}

/// On paused time (the controller's Clock and its requeues follow tokio's clock): the `shipway`
/// provider every 10 s reads the proxy's counters three times and passes; a backend with too
/// little traffic makes the run Inconclusive, never Successful.
#[tokio::test(start_paused = true)]
async fn the_shipway_provider_on_paused_time_passes_and_too_little_traffic_is_inconclusive() {
    let wall = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("shipway.db"))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let (cache, _feed) = Reflector::spawn(store.clone(), shutdown.clone());
    let proxy = shipway_proxy::metrics::ProxyMetrics::new();
    for _ in 0..50 {
        proxy.record("default/web", "canary", 200, Duration::from_millis(5));
    }
    for _ in 0..3 {
        proxy.record("default/web", "stable", 200, Duration::from_millis(5));
    }
    let clock = Clock::new();
    let controller = AnalysisController::new(
        store.clone(),
        cache,
        clock,
        Providers::new(clock, Some(proxy)),
    );
    tokio::spawn(controller.run(shutdown.clone()));
    let spec = |backend: &str| {
        json!({"metrics": [{"name": "success", "count": 3, "interval": "10s",
            "successCondition": "result >= 0.95",
            "provider": {"shipway": {"service": "web", "backend": backend, "metric": "success-rate"}}}]})
    };
    store
        .create(analysis_run("canary", spec("canary")), "test")
        .await
        .unwrap();
    store
        .create(analysis_run("quiet", spec("stable")), "test")
        .await
        .unwrap();
    let s = until(&store, "canary", Duration::from_secs(20), |s| {
        s.phase == "Successful"
    })
    .await;
    let finished: Vec<time::OffsetDateTime> = s.metric_results[0]
        .measurements
        .iter()
        .map(|m| {
            time::OffsetDateTime::parse(
                m.finished_at.as_deref().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        })
        .collect();
    assert_eq!(finished.len(), 3);
    for pair in finished.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= time::Duration::seconds(10) && gap < time::Duration::milliseconds(10_500),
            "measurements {gap} apart, not the 10 s interval"
        );
    }
    assert!(
        s.metric_results[0]
            .measurements
            .iter()
            .all(|m| m.value == "1")
    );
    let s = until(&store, "quiet", Duration::from_secs(20), |s| {
        !s.phase.is_empty() && s.phase != "Running"
    })
    .await;
    assert_eq!(s.phase, "Inconclusive");
    assert_eq!(
        s.message,
        "Metric \"success\" assessed Inconclusive due to inconclusive (1) > inconclusiveLimit (0): \"Error Message: 3 requests to backend \"stable\" of service \"web\" in the last 30s, fewer than minRequests (20)\""
    );
    assert!(
        wall.elapsed() < Duration::from_secs(10),
        "{:?}",
        wall.elapsed()
    );
    shutdown.cancel();
}
