//! End to end with the real local runtime (pods are demo-app processes), the real proxy and
//! discovery, the AnalysisRun controller with the `shipway` provider and the Rollout
//! controller, under continuous load through the Service's address:
//!
//! - a canary 20/40/60/80 with a pause at each weight: the measured share of the new version
//!   at each pause is within ±3 points of the weight, and no request fails over the whole
//!   rollout;
//! - a canary whose pods answer 30 % errors (`ERROR_RATE=0.3`) is aborted by a background
//!   analysis on the proxy's own error rate, and one whose pods answer in 700 ms
//!   (`LATENCY_MS=700`) by one on its p95 latency; the time from the failing measurement to
//!   100 % stable is printed twice, from the proxy's own counter of the canary backend (the
//!   instant after which it stops growing) and from the client (the last answer from the bad
//!   version), and both must stay within 2 s;
//! - a canary with no traffic: its step analysis ends Inconclusive, the rollout pauses
//!   (`InconclusiveAnalysisRun`) and the CLI's promote patch moves it on;
//! - a manual abort of a healthy canary under load fails no request.
//!
//! The tests take the machine's two cores; they run one at a time ([`SERIAL`]) so one's load
//! does not skew another's measured shares and times.

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

/// One test at a time: each runs five pods, a proxy and a load of its own.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
/// address) and the AnalysisTemplates `error-rate` (the canary's 5xx share, inconclusive until
/// it has traffic), `latency-p95` (the canary's p95 below 0.5 s, likewise) and `min-traffic`
/// (the canary's error rate over at least 20 requests, inconclusive at once without them).
struct Stack {
    store: Store,
    stop: tokio_util::sync::CancellationToken,
    listen: std::net::SocketAddr,
    preview: std::net::SocketAddr,
    metrics: Arc<shipway_proxy::ProxyMetrics>,
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
        apply(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "latency-p95", "namespace": "default"},
        "spec": {"metrics": [{"name": "latency-p95", "interval": "1s", "failureLimit": 0,
            "inconclusiveLimit": 120,
            "successCondition": "result < 0.5",
            "provider": {"shipway": {"service": "web", "backend": "canary", "metric": "latency-p95",
                "window": "5s", "minRequests": 10}}}]}}),
        )
        .await;
        apply(
            json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "min-traffic", "namespace": "default"},
        // inconclusiveLimit 0 (Argo's default): the first measurement short of minRequests
        // ends the run Inconclusive.
        "spec": {"metrics": [{"name": "min-traffic", "interval": "1s",
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
            metrics,
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
    rollout_env(version, &[("ERROR_RATE", error_rate)], strategy)
}

/// The demo app as a Rollout with `strategy`, answering `version`, with `env` (`ERROR_RATE`,
/// `LATENCY_MS`).
fn rollout_env(version: &str, env: &[(&str, &str)], strategy: Value) -> Value {
    let mut vars = vec![json!({"name": "VERSION", "value": version})];
    vars.extend(env.iter().map(|(k, v)| json!({"name": k, "value": v})));
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "web"}},
            "strategy": strategy,
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [{"name": "web", "image": "demo:v1",
                    "env": vars,
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": "http"}, "periodSeconds": 1}}]}}}})
}

/// A canary through the proxy (`web` stable, `web-canary` canary) with `steps` and, unless
/// null, `analysis` as its background analysis.
fn canary_strategy(steps: Value, analysis: Value) -> Value {
    let mut canary = json!({"stableService": "web", "canaryService": "web-canary",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "scaleDownDelaySeconds": 3, "abortScaleDownDelaySeconds": 3,
        "steps": steps});
    if !analysis.is_null() {
        canary["analysis"] = analysis;
    }
    json!({"canary": canary})
}

/// The v1 Rollout under `strategy` on a fresh stack, Healthy.
async fn healthy_stack(app: &std::path::Path, strategy: Value) -> Stack {
    let stack = Stack::start(app).await;
    stack.apply(rollout("v1", "0", strategy)).await;
    until(&stack.store, "v1 healthy", Duration::from_secs(90), |s| {
        s.phase.as_deref() == Some("Healthy")
    })
    .await;
    stack
}

/// Follows the proxy's own counter of responses from the canary backend of the Service `web`
/// and keeps the wall-clock instant it last grew, sampled every 5 ms.
struct LastCounted {
    last: Arc<Mutex<Option<SystemTime>>>,
    task: tokio::task::JoinHandle<()>,
}

impl LastCounted {
    fn start(metrics: Arc<shipway_proxy::ProxyMetrics>) -> LastCounted {
        let last = Arc::new(Mutex::new(None));
        let task = tokio::spawn({
            let last = last.clone();
            async move {
                let mut counted = metrics.requests_total("default/web", "canary");
                loop {
                    let n = metrics.requests_total("default/web", "canary");
                    if n > counted {
                        counted = n;
                        *last.lock().unwrap() = Some(SystemTime::now());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        });
        LastCounted { last, task }
    }

    fn stop(self) -> Option<SystemTime> {
        self.task.abort();
        *self.last.lock().unwrap()
    }
}

/// Seconds from `from` to `to`.
fn since(from: time::OffsetDateTime, to: SystemTime) -> f64 {
    (time::OffsetDateTime::from(to) - from).as_seconds_f64()
}

/// Updates the healthy Rollout to `version` with `env`, a canary at 20 % with the background
/// analysis `template` (whose one metric has the same name), under the running load; waits for
/// the abort and checks its wording; returns the time from the failing measurement's
/// `finishedAt` to 100 % stable as `(proxy, client)`: the instant after which the proxy's counter
/// of the canary backend stops growing, and the last answer the load had from `version`.
async fn a_bad_canary_is_aborted(
    stack: &Stack,
    seen: &Seen,
    version: &str,
    env: &[(&str, &str)],
    template: &str,
) -> (f64, f64) {
    let store = &stack.store;
    let counted = LastCounted::start(stack.metrics.clone());
    let bg = json!({"templates": [{"templateName": template}]});
    stack
        .apply(rollout_env(
            version,
            env,
            canary_strategy(json!([{"setWeight": 20}, {"pause": {}}]), bg),
        ))
        .await;
    let s = until(store, "aborted", Duration::from_secs(120), |s| s.aborted()).await;
    println!("{version} {env:?} aborted: {:?}", s.message);
    assert_eq!(s.phase.as_deref(), Some("Degraded"));
    let msg = s.message.clone().unwrap_or_default();
    assert!(
        msg.starts_with("RolloutAborted: Rollout aborted update to revision ")
            && msg.contains(&format!(": Metric \"{template}\" assessed Failed")),
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
    let last_client = seen
        .last
        .lock()
        .unwrap()
        .get(version)
        .copied()
        .unwrap_or_else(|| panic!("{version} answered"));
    let last_proxy = counted
        .stop()
        .expect("the proxy counted responses from the canary");
    let (proxy, client) = (since(failed_at, last_proxy), since(failed_at, last_client));
    println!(
        "{version} {env:?}: failing measurement → 100 % stable: {proxy:.3} s by the proxy's counter of the canary backend, {client:.3} s by the client (last {version} answer)"
    );
    assert!(
        proxy <= 2.0,
        "{version}: the proxy served the canary {proxy:.3} s after the failing measurement"
    );
    assert!(
        client <= 2.0,
        "{version}: the client had a canary answer {client:.3} s after the failing measurement"
    );
    (proxy, client)
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
    let Some(app) = shipway_testkit::demo_app() else {
        eprintln!("skipped: shipway-demo-app could not be built");
        return;
    };
    let _serial = SERIAL.lock().await;
    let stack = Stack::start(&app).await;
    let store = stack.store.clone();
    let canary = canary_strategy;
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
    a_bad_canary_is_aborted(&stack, &seen, "v3", &[("ERROR_RATE", "0.3")], "error-rate").await;

    load.stop().await;
    stack.stop().await;
}

/// Blue-green under load: the preview Service answers the new version while the active one
/// answers the old; the promote switches the active selector in one write; a later update
/// that is aborted never takes the active Service's traffic. No request fails throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blue_green_switch_and_an_abort_fail_no_request() {
    let Some(app) = shipway_testkit::demo_app() else {
        eprintln!("skipped: shipway-demo-app could not be built");
        return;
    };
    let _serial = SERIAL.lock().await;
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

/// A canary whose pods answer in 700 ms fails a p95 latency check (`result < 0.5`) and is
/// aborted as the erroring one is, within 2 s by the proxy's counters and by the client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_canary_fails_its_latency_check_and_is_rolled_back_within_2s() {
    let Some(app) = shipway_testkit::demo_app() else {
        eprintln!("skipped: shipway-demo-app could not be built");
        return;
    };
    let _serial = SERIAL.lock().await;
    let steps = json!([{"setWeight": 20}, {"pause": {}}]);
    let stack = healthy_stack(&app, canary_strategy(steps, Value::Null)).await;
    let load = Load::start(stack.listen).await;
    let seen = load.seen.clone();
    a_bad_canary_is_aborted(&stack, &seen, "v2", &[("LATENCY_MS", "700")], "latency-p95").await;
    println!(
        "slow canary: {} failed requests",
        seen.failures.load(Ordering::Relaxed)
    );
    load.stop().await;
    stack.stop().await;
}

/// Without traffic the canary's step analysis cannot measure: the run ends Inconclusive, the
/// rollout pauses on it as Argo's does, and the promote the CLI sends (pauseConditions null,
/// controllerPause false, the next step) moves it on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_traffic_is_inconclusive_and_pauses_until_promoted() {
    let Some(app) = shipway_testkit::demo_app() else {
        eprintln!("skipped: shipway-demo-app could not be built");
        return;
    };
    let _serial = SERIAL.lock().await;
    let steps = json!([{"setWeight": 20},
        {"analysis": {"templates": [{"templateName": "min-traffic"}]}},
        {"setWeight": 60}, {"pause": {}}]);
    let stack = healthy_stack(&app, canary_strategy(steps.clone(), Value::Null)).await;
    let store = stack.store.clone();
    // No load: nothing reaches the canary.
    stack
        .apply(rollout("v2", "0", canary_strategy(steps, Value::Null)))
        .await;
    let s = until(&store, "inconclusive", Duration::from_secs(90), |s| {
        s.pause_conditions
            .iter()
            .any(|c| c.reason == "InconclusiveAnalysisRun")
    })
    .await;
    let run = s.canary().current_step_analysis_run_status.clone().unwrap();
    println!(
        "inconclusive: phase {:?}, message {:?}, run {} {} {:?}",
        s.phase, s.message, run.name, run.status, run.message
    );
    assert_eq!(s.phase.as_deref(), Some("Paused"));
    assert_eq!(s.message.as_deref(), Some("InconclusiveAnalysisRun"));
    assert!(s.controller_pause);
    assert_eq!(s.current_step_index, Some(1));
    assert_eq!(run.status, "Inconclusive");
    // It stays paused: Inconclusive is neither a pass nor an abort.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let s = rollout_status(&store).await;
    assert_eq!(
        (s.phase.as_deref(), s.current_step_index, s.aborted()),
        (Some("Paused"), Some(1), false)
    );

    // The CLI's promote of an inconclusive step analysis.
    patch_status(&store, |st| {
        let mut status = Value::Object(std::mem::take(st));
        shipway_model::patch::merge_patch(
            &mut status,
            &json!({"pauseConditions": null, "controllerPause": false, "currentStepIndex": 2}),
        );
        if let Value::Object(m) = status {
            *st = m;
        }
    })
    .await;
    let s = until(&store, "paused at 60 %", Duration::from_secs(90), |s| {
        s.current_step_index == Some(3) && !s.pause_conditions.is_empty()
    })
    .await;
    let weight = s.canary().weights.as_ref().map(|w| w.canary.weight);
    println!(
        "promoted: step {:?}, weight {weight:?}, phase {:?} {:?}",
        s.current_step_index, s.phase, s.message
    );
    assert_eq!(weight, Some(60));
    assert_eq!(s.pause_conditions[0].reason, "CanaryPauseStep");
    assert!(!s.aborted());
    stack.stop().await;
}

/// A healthy canary aborted by hand under load: traffic goes back to stable, the canary's pods
/// go after the abort's scale-down delay, and no request fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_abort_of_a_healthy_canary_fails_no_request() {
    let Some(app) = shipway_testkit::demo_app() else {
        eprintln!("skipped: shipway-demo-app could not be built");
        return;
    };
    let _serial = SERIAL.lock().await;
    let steps = json!([{"setWeight": 40}, {"pause": {}}]);
    let stack = healthy_stack(&app, canary_strategy(steps.clone(), Value::Null)).await;
    let store = stack.store.clone();
    let load = Load::start(stack.listen).await;
    let seen = load.seen.clone();
    stack
        .apply(rollout("v2", "0", canary_strategy(steps, Value::Null)))
        .await;
    until(&store, "paused at 40 %", Duration::from_secs(90), |s| {
        s.current_step_index == Some(1) && !s.pause_conditions.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = seen.take();
    assert!(before.get("v2").copied().unwrap_or(0) > 0, "{before:?}");
    patch_status(&store, |s| {
        s.insert("abort".into(), json!(true));
    })
    .await;
    let s = until(&store, "aborted", Duration::from_secs(10), |s| {
        s.phase.as_deref() == Some("Degraded")
    })
    .await;
    println!("manual abort: {:?}", s.message);
    assert!(s.aborted());
    // Past the abort's scale-down delay (3 s) and the pods' termination.
    tokio::time::sleep(Duration::from_secs(6)).await;
    seen.take();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = seen.take();
    assert!(
        after.keys().all(|v| v == "v1") && !after.is_empty(),
        "{after:?}"
    );
    let failures = seen.failures.load(Ordering::Relaxed);
    println!("manual abort under load: {failures} failed requests (before the abort {before:?})");
    assert_eq!(
        failures,
        0,
        "failed requests: {:?}",
        seen.errors.lock().unwrap()
    );
    load.stop().await;
    stack.stop().await;
}
