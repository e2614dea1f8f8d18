//! End to end with the real local runtime (pods are demo-app processes), the real proxy and
//! discovery, the AnalysisRun controller with the `shipway` provider and the Rollout
//! controller, under continuous load through the Service's address:
//!
//! - a canary 20/40/60/80 with a pause at each weight: the measured share of the new version
//!   at each pause is within ±3 points of the weight, and no request fails over the whole
//!   rollout;
//! - a canary whose pods answer 30 % errors (`ERROR_RATE=0.3`) is aborted by a background
//!   analysis on the proxy's own error rate; the time from the failing measurement to the last
//!   answer from the bad canary is printed and must stay within 2 s.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};
use shipway_controller::{Clock, Reflector};
use shipway_model::types::rollout::RolloutStatus;
use shipway_model::{Key, Object};
use shipway_rollout::analysis::controller::AnalysisController;
use shipway_rollout::analysis::provider::Providers;
use shipway_rollout::rollout::controller::RolloutController;
use shipway_store::Store;

/// The demo app binary next to this test's target directory, built if missing.
fn demo_app() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let app = dir.join("shipway-demo-app");
    if !app.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-p", "shipway-demo-app"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        build.status().ok()?;
    }
    app.exists().then_some(app)
}

fn free_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

fn rollout_key() -> Key {
    Key::new("argoproj.io", "Rollout", "default", "web")
}

async fn rollout_status(store: &Store) -> RolloutStatus {
    let o = store.get(&rollout_key()).await.unwrap().unwrap();
    o.status_as().unwrap()
}

async fn until(
    store: &Store,
    what: &str,
    limit: Duration,
    f: impl Fn(&RolloutStatus) -> bool,
) -> RolloutStatus {
    let start = Instant::now();
    loop {
        let s = rollout_status(store).await;
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

/// What the load has seen: answers per version, failures, the last answer from each version.
#[derive(Default)]
struct Seen {
    versions: Mutex<std::collections::HashMap<String, usize>>,
    last: Mutex<std::collections::HashMap<String, SystemTime>>,
    failures: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Seen {
    fn take(&self) -> std::collections::HashMap<String, usize> {
        std::mem::take(&mut *self.versions.lock().unwrap())
    }
}

fn version_of(body: &str) -> String {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["version"].as_str().map(String::from))
        .unwrap_or_else(|| body.trim().to_string())
}

async fn patch_status(store: &Store, f: impl Fn(&mut serde_json::Map<String, Value>)) {
    loop {
        let mut o = store.get(&rollout_key()).await.unwrap().unwrap();
        f(o.body
            .entry("status")
            .or_insert(json!({}))
            .as_object_mut()
            .unwrap());
        match store.update_status(o, "user:admin").await {
            Ok(_) => return,
            Err(shipway_store::StoreError::Conflict { .. }) => continue,
            Err(e) => panic!("{e}"),
        }
    }
}

/// The platform's pieces a Rollout needs, started on a fresh data directory with the demo
/// app imported as `demo:v1`, the Services `web` and `web-canary` (each on its own loopback
/// address) and the `error-rate` AnalysisTemplate.
struct Stack {
    store: Store,
    stop: tokio_util::sync::CancellationToken,
    listen: std::net::SocketAddr,
    preview: std::net::SocketAddr,
    runtime: shipway_runtime::LocalRuntime,
    discovery: tokio::task::JoinHandle<()>,
    proxy: tokio::task::JoinHandle<()>,
    _data: tempfile::TempDir,
}

impl Stack {
    async fn start(app: &std::path::Path) -> Stack {
        let data = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&data.path().join("shipway.db"))
            .await
            .unwrap();
        let src = data.path().join("demo-src");
        std::fs::create_dir_all(&src).unwrap();
        std::fs::write(src.join("README"), "demo\n").unwrap();
        shipway_runtime::images::ImageStore::new(data.path())
            .import("demo:v1", &src, &[app.display().to_string()], &[])
            .unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let (cache, _feed) = Reflector::spawn(store.clone(), stop.clone());
        let runtime = shipway_runtime::LocalRuntime::start(
            store.clone(),
            cache.clone(),
            shipway_runtime::KubeletConfig::new(data.path()),
            stop.clone(),
        );
        let metrics = shipway_proxy::ProxyMetrics::new();
        let (tables, discovery) = shipway_proxy::discovery::spawn_with(
            store.clone(),
            cache.clone(),
            Some(metrics.clone()),
            shipway_proxy::discovery::Options::default(),
            stop.clone(),
        );
        let proxy = shipway_proxy::Proxy::start(
            tables,
            metrics.clone(),
            shipway_proxy::ProxyConfig::default(),
            stop.clone(),
        );
        let clock = Clock::new();
        tokio::spawn(
            AnalysisController::new(
                store.clone(),
                cache.clone(),
                clock,
                Providers::new(clock, Some(metrics.clone())),
            )
            .run(stop.clone()),
        );
        tokio::spawn(RolloutController::new(store.clone(), cache.clone(), clock).run(stop.clone()));

        let apply = |v: Value| {
            let store = store.clone();
            async move {
                let obj: Object = serde_json::from_value(v).unwrap();
                store.apply(obj, "test").await.unwrap();
            }
        };
        let listen = free_addr();
        let preview = free_addr();
        for (name, addr) in [("web", listen), ("web-canary", preview)] {
            apply(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "default", "annotations": {"shipway.dev/listen": addr.to_string()}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}}))
        .await;
        }
        apply(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "error-rate", "namespace": "default"},
        "spec": {"metrics": [{"name": "error-rate", "interval": "1s", "failureLimit": 0,
            // Until the canary's pods are ready it has no traffic: too few requests is
            // Inconclusive, which must not end the run.
            "inconclusiveLimit": 120,
            "successCondition": "result < 0.05",
            "provider": {"shipway": {"service": "web", "backend": "canary", "metric": "error-rate",
                "window": "5s", "minRequests": 20}}}]}}),
        )
        .await;
        Stack {
            store,
            stop,
            listen,
            preview,
            runtime,
            discovery,
            proxy,
            _data: data,
        }
    }

    async fn apply(&self, v: Value) {
        let obj: Object = serde_json::from_value(v).unwrap();
        self.store.apply(obj, "test").await.unwrap();
    }

    async fn stop(self) {
        self.stop.cancel();
        let _ = tokio::join!(self.runtime.join(), self.discovery, self.proxy);
    }
}

/// The demo app as a Rollout with `strategy`, answering `version` (and failing `error_rate`).
fn rollout(version: &str, error_rate: &str, strategy: Value) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [{"name": "web", "image": "demo:v1",
                    "env": [{"name": "VERSION", "value": version}, {"name": "ERROR_RATE", "value": error_rate}],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}}]}}}})
}

/// Requests in a loop from 6 tasks until `done`; what they see goes to `seen`.
struct Load {
    seen: Arc<Seen>,
    done: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    async fn start(listen: std::net::SocketAddr) -> Load {
        // Continuous load through the Service's address.
        let url = format!("http://{listen}/");
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(&url).send().await
                && r.status() == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "nothing answered through the proxy"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let seen = Arc::new(Seen::default());
        let done = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..6 {
            let (client, url, seen, done) =
                (client.clone(), url.clone(), seen.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(r) => {
                            let status = r.status();
                            let body = r.text().await.unwrap_or_default();
                            let v = version_of(&body);
                            seen.last
                                .lock()
                                .unwrap()
                                .insert(v.clone(), SystemTime::now());
                            if status != 200 {
                                seen.failures.fetch_add(1, Ordering::Relaxed);
                                seen.errors.lock().unwrap().push(format!("{status} {body}"));
                            } else {
                                *seen.versions.lock().unwrap().entry(v).or_default() += 1;
                            }
                        }
                        Err(e) => {
                            seen.failures.fetch_add(1, Ordering::Relaxed);
                            seen.errors.lock().unwrap().push(e.to_string());
                        }
                    }
                }
            }));
        }

        Load { seen, done, tasks }
    }

    async fn stop(self) {
        self.done.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_moves_the_measured_share_and_a_failing_canary_is_rolled_back_within_2s() {
    let Some(app) = demo_app() else {
        eprintln!("skipped: shipway-demo-app could not be built");
        return;
    };
    let stack = Stack::start(&app).await;
    let store = stack.store.clone();
    let canary = |steps: Value, analysis: Value| {
        let mut canary = json!({"stableService": "web", "canaryService": "web-canary",
            "trafficRouting": {"nginx": {"stableIngress": "web"}},
            "scaleDownDelaySeconds": 3, "abortScaleDownDelaySeconds": 3,
            "steps": steps});
        if !analysis.is_null() {
            canary["analysis"] = analysis;
        }
        json!({"canary": canary})
    };
    let steps = json!([{"setWeight": 20}, {"pause": {}}, {"setWeight": 40}, {"pause": {}},
        {"setWeight": 60}, {"pause": {}}, {"setWeight": 80}, {"pause": {}}]);
    stack
        .apply(rollout("v1", "0", canary(steps.clone(), Value::Null)))
        .await;
    until(&store, "v1 healthy", Duration::from_secs(90), |s| {
        s.phase.as_deref() == Some("Healthy")
    })
    .await;
    let load = Load::start(stack.listen).await;
    let seen = load.seen.clone();

    // The canary: the measured share at each pause.
    stack
        .apply(rollout("v2", "0", canary(steps.clone(), Value::Null)))
        .await;
    for (i, weight) in [20.0, 40.0, 60.0, 80.0].into_iter().enumerate() {
        let pause = (2 * i + 1) as i64;
        until(
            &store,
            &format!("paused at {weight}%"),
            Duration::from_secs(90),
            |s| s.current_step_index == Some(pause) && !s.pause_conditions.is_empty(),
        )
        .await;
        // Let tables settle, then measure.
        tokio::time::sleep(Duration::from_millis(500)).await;
        seen.take();
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let total: usize = seen.versions.lock().unwrap().values().sum();
            if total >= 2000 || start.elapsed() > Duration::from_secs(30) {
                break;
            }
        }
        let counts = seen.take();
        let total: usize = counts.values().sum();
        let share = *counts.get("v2").unwrap_or(&0) as f64 * 100.0 / total as f64;
        println!("weight {weight}%: measured {share:.1}% of {total} requests ({counts:?})");
        assert!(total >= 500, "too little load measured: {counts:?}");
        assert!(
            (share - weight).abs() <= 3.0,
            "weight {weight}%: measured {share:.1}% ({counts:?})"
        );
        // Promote.
        patch_status(&store, |s| {
            s.insert("pauseConditions".into(), Value::Null);
        })
        .await;
    }
    let s = until(&store, "v2 healthy", Duration::from_secs(90), |s| {
        s.phase.as_deref() == Some("Healthy")
    })
    .await;
    assert_eq!(s.stable_rs, s.current_pod_hash);
    // The old pods go after the scale-down delay; the load keeps running over it.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let failures = seen.failures.load(Ordering::Relaxed);
    assert_eq!(
        failures,
        0,
        "failed requests during the canary: {:?}",
        seen.errors.lock().unwrap()
    );

    // A bad canary, judged by the proxy's own error rate.
    let bg = json!({"templates": [{"templateName": "error-rate"}]});
    stack
        .apply(rollout(
            "v3",
            "0.3",
            canary(json!([{"setWeight": 20}, {"pause": {}}]), bg),
        ))
        .await;
    let s = until(&store, "aborted", Duration::from_secs(120), |s| s.aborted()).await;
    println!("aborted: {:?}", s.message);
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
    let msg = s.message.clone().unwrap_or_default();
    assert!(
        msg.starts_with("RolloutAborted: Rollout aborted update to revision 3: Metric \"error-rate\" assessed Failed"),
        "{msg}"
    );
    // The failing measurement's time, from the run.
    let run_name = s
        .canary()
        .current_background_analysis_run_status
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap();
    let run = store
        .get(&Key::new(
            "argoproj.io",
            "AnalysisRun",
            "default",
            &run_name,
        ))
        .await
        .unwrap()
        .unwrap();
    let failed_at = run.body["status"]["metricResults"][0]["measurements"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|m| m["phase"] == "Failed")
        .and_then(|m| m["finishedAt"].as_str())
        .map(String::from)
        .unwrap();
    let failed_at =
        time::OffsetDateTime::parse(&failed_at, &time::format_description::well_known::Rfc3339)
            .unwrap();
    // Keep the load on for a moment so a late canary answer would be seen.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let last_v3 = seen
        .last
        .lock()
        .unwrap()
        .get("v3")
        .copied()
        .expect("v3 answered");
    let last_v3 = time::OffsetDateTime::from(last_v3);
    let rollback = (last_v3 - failed_at).as_seconds_f64();
    println!(
        "failing measurement → 100 % stable: {:.3} s (last v3 answer after the failing measurement)",
        rollback
    );
    assert!(rollback <= 2.0, "rollback took {rollback:.3} s");

    load.stop().await;
    stack.stop().await;
}

/// Blue-green under load: the preview Service answers the new version while the active one
/// answers the old; the promote switches the active selector in one write; a later update
/// that is aborted never takes the active Service's traffic. No request fails throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_switch_and_an_abort_fail_no_request() {
    let Some(app) = demo_app() else {
        eprintln!("skipped: shipway-demo-app could not be built");
        return;
    };
    let stack = Stack::start(&app).await;
    let store = stack.store.clone();
    let bg = json!({"blueGreen": {"activeService": "web", "previewService": "web-canary",
        "autoPromotionEnabled": false, "scaleDownDelaySeconds": 3, "abortScaleDownDelaySeconds": 3}});
    stack.apply(rollout("v1", "0", bg.clone())).await;
    until(&store, "v1 healthy", Duration::from_secs(90), |s| {
        s.phase.as_deref() == Some("Healthy")
    })
    .await;
    let load = Load::start(stack.listen).await;
    let seen = load.seen.clone();
    let client = reqwest::Client::new();
    let preview_version = || {
        let (client, url) = (client.clone(), format!("http://{}/", stack.preview));
        async move {
            let r = client.get(&url).send().await.ok()?;
            Some(version_of(&r.text().await.ok()?))
        }
    };

    stack.apply(rollout("v2", "0", bg.clone())).await;
    until(&store, "v2 previewed", Duration::from_secs(90), |s| {
        !s.pause_conditions.is_empty()
    })
    .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while preview_version().await.as_deref() != Some("v2") {
        assert!(
            Instant::now() < deadline,
            "the preview Service never answered v2"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    seen.take();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = seen.take();
    assert!(
        before.keys().all(|v| v == "v1") && !before.is_empty(),
        "{before:?}"
    );
    patch_status(&store, |s| {
        s.insert("pauseConditions".into(), Value::Null);
    })
    .await;
    until(&store, "v2 active", Duration::from_secs(60), |s| {
        s.phase.as_deref() == Some("Healthy")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    seen.take();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = seen.take();
    assert!(
        after.keys().all(|v| v == "v2") && !after.is_empty(),
        "{after:?}"
    );

    // An update aborted before promotion never reaches the active Service.
    stack.apply(rollout("v3", "0", bg.clone())).await;
    until(&store, "v3 previewed", Duration::from_secs(90), |s| {
        !s.pause_conditions.is_empty()
    })
    .await;
    patch_status(&store, |s| {
        s.insert("abort".into(), json!(true));
    })
    .await;
    until(&store, "aborted", Duration::from_secs(10), |s| {
        s.phase.as_deref() == Some("Degraded")
    })
    .await;
    // Past the abort's scale-down delay.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let last = seen.take();
    assert!(!last.contains_key("v3"), "{last:?}");
    let failures = seen.failures.load(Ordering::Relaxed);
    assert_eq!(
        failures,
        0,
        "failed requests: {:?}",
        seen.errors.lock().unwrap()
    );
    println!("blue-green: switch and abort under load, 0 failed requests");
    load.stop().await;
    stack.stop().await;
}
