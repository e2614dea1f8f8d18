//! Argo Rollouts' `prometheus` metric provider against a real Prometheus (the Debian package)
//! scraping a real `shipway up`'s `/metrics` while the demo app serves traffic through the proxy.
//! `cargo xtask test --require-prometheus` (CI) fails instead of skipping when there is none.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// The `prometheus` server binary, or None (the test is skipped) unless CI requires it.
fn prometheus() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|d| d.join("prometheus"))
            .find(|p| p.is_file())
    });
    if found.is_none() && std::env::var_os("SHIPWAY_REQUIRE_PROMETHEUS").is_some() {
        panic!("--require-prometheus: no `prometheus` on the PATH (apt-get install prometheus)");
    }
    found
}

/// The demo app binary; these tests need it, so failing to build it fails them.
fn demo_app() -> PathBuf {
    shipway_testkit::demo_app().expect("building shipway-demo-app failed")
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus server scraping `target` every second with the bearer token in `token_file`;
/// stopped on drop.
struct Prometheus {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    fn start(bin: &Path, target: &str, token_file: &Path) -> Prometheus {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "global: {{scrape_interval: 1s, evaluation_interval: 1s}}\n\
             scrape_configs:\n\
             - job_name: shipway\n\
             \x20 authorization: {{type: Bearer, credentials_file: {}}}\n\
             \x20 static_configs: [{{targets: ['{target}']}}]\n",
            token_file.display()
        );
        std::fs::write(dir.path().join("prometheus.yml"), config).unwrap();
        let port = free_port();
        let child = Command::new(bin)
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// An instant query's result vector, empty while Prometheus is not up yet.
    fn query(&self, q: &str) -> Vec<f64> {
        let client = reqwest::blocking::Client::new();
        let Ok(resp) = client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", q)])
            .send()
        else {
            return Vec::new();
        };
        let body: Value = resp.json().unwrap_or_default();
        body["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s["value"][1].as_str()?.parse().ok())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The seeds' check as an Argo user writes it for a mesh, on the proxy's series: the share of
/// non-5xx responses of one backend over the last minute.
fn success_rate(service: &str, backend: &str) -> String {
    format!(
        "sum(rate(shipway_proxy_requests_total{{service=\"{service}\",backend=\"{backend}\",code_class!=\"5xx\"}}[1m])) / \
         sum(rate(shipway_proxy_requests_total{{service=\"{service}\",backend=\"{backend}\"}}[1m]))"
    )
}

fn analysis_run(name: &str, backend: &str, address: &str) -> String {
    format!(
        r#"apiVersion: argoproj.io/v1alpha1
kind: AnalysisRun
metadata: {{name: {name}}}
spec:
  args: [{{name: backend, value: {backend}}}]
  metrics:
  - name: success-rate
    interval: 2s
    count: 3
    successCondition: result[0] >= 0.95
    failureLimit: 0
    provider:
      prometheus:
        address: {address}
        query: |
          {query}
"#,
        query = success_rate("default/web", "{{args.backend}}")
    )
}

#[test]
fn a_real_prometheus_passes_good_canaries_and_aborts_bad_ones() {
    let Some(bin) = prometheus() else {
        eprintln!("skipped: no prometheus on the PATH");
        return;
    };
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("README"), "demo\n").unwrap();
    let out = up.cli(
        data.path(),
        &[
            "image",
            "import",
            "demo:v1",
            &src.path().display().to_string(),
            "--entrypoint",
            &demo_app().display().to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let listen = format!("127.0.0.1:{}", free_port());
    let manifests = format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: stable}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: web, track: stable}}}}
  template:
    metadata: {{labels: {{app: web, track: stable}}}}
    spec:
      containers:
      - {{name: web, image: "demo:v1", ports: [{{containerPort: 8080}}], env: [{{name: VERSION, value: v1}}],
          readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: canary}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web, track: canary}}}}
  template:
    metadata: {{labels: {{app: web, track: canary}}}}
    spec:
      containers:
      - {{name: web, image: "demo:v1", ports: [{{containerPort: 8080}}],
          env: [{{name: VERSION, value: v2}}, {{name: ERROR_RATE, value: "0.3"}}],
          readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, annotations: {{shipway.dev/listen: "{listen}"}}}}
spec:
  selector: {{app: web}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
---
apiVersion: shipway.dev/v1alpha1
kind: TrafficPolicy
metadata: {{name: web}}
spec:
  backends:
  - {{name: stable, selector: {{matchLabels: {{track: stable}}}}, weight: 50}}
  - {{name: canary, selector: {{matchLabels: {{track: canary}}}}, weight: 50}}
"#
    );
    let out = up.cli_with_stdin(data.path(), &["apply", "-f", "-"], &manifests);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for(60, "both backends ready", || {
        let out = up.cli(data.path(), &["get", "trafficpolicies"]);
        text(&out.stdout).contains("stable 50% (2 ready), canary 50% (1 ready)")
    });

    // Continuous traffic through the proxy for the whole test.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load = {
        let (stop, ok, failed, url) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            format!("http://{listen}/"),
        );
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send() {
                    Ok(r) if r.status().is_success() => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };

    let prom = Prometheus::start(
        &bin,
        up.server.trim_start_matches("http://"),
        &data.path().join("admin.token"),
    );
    // A rate needs two scrapes of both backends inside its window.
    wait_for(60, "Prometheus to see both backends' traffic", || {
        let stable = prom.query(&success_rate("default/web", "stable"));
        let canary = prom.query(&success_rate("default/web", "canary"));
        stable.len() == 1 && canary.len() == 1
    });

    let out = up.cli_with_stdin(
        data.path(),
        &["apply", "-f", "-"],
        &format!(
            "{}---\n{}",
            analysis_run("stable-check", "stable", &prom.url),
            analysis_run("canary-check", "canary", &prom.url)
        ),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let run = |name: &str| -> Value {
        let out = up.cli(data.path(), &["get", "analysisrun", name, "-o", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    let mut stable = Value::Null;
    let mut canary = Value::Null;
    wait_for(60, "both analysis runs to finish", || {
        stable = run("stable-check");
        canary = run("canary-check");
        let done = |r: &Value| {
            matches!(
                r["status"]["phase"].as_str(),
                Some("Successful" | "Failed" | "Error" | "Inconclusive")
            )
        };
        done(&stable) && done(&canary)
    });
    assert_eq!(stable["status"]["phase"], "Successful", "{stable:#}");
    assert_eq!(
        stable["status"]["metricResults"][0]["count"], 3,
        "{stable:#}"
    );
    assert_eq!(canary["status"]["phase"], "Failed", "{canary:#}");
    assert_eq!(
        canary["status"]["message"],
        "Metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0)",
        "{canary:#}"
    );
    // The value Prometheus computed, as Argo records a vector: about 0.7 for a 30 % error rate.
    let value = canary["status"]["metricResults"][0]["measurements"][0]["value"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let rate: f64 = value
        .trim_matches(|c| c == '[' || c == ']')
        .parse()
        .unwrap_or_else(|_| panic!("measurement value {value:?}"));
    assert!((0.5..0.9).contains(&rate), "{value}");
    eprintln!("prometheus provider: stable Successful, canary Failed at {value}");

    // The same check as a Rollout's analysis step: a good canary completes, a bad one is
    // aborted back to stable.
    let shop_listen = format!("127.0.0.1:{}", free_port());
    let shop = |version: &str, error_rate: &str| {
        format!(
            r#"apiVersion: v1
kind: Service
metadata: {{name: shop, annotations: {{shipway.dev/listen: "{shop_listen}"}}}}
spec:
  selector: {{app: shop}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: v1
kind: Service
metadata: {{name: shop-canary}}
spec:
  selector: {{app: shop}}
  ports: [{{name: http, port: 80, targetPort: http}}]
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {{name: success-rate}}
spec:
  args: [{{name: service-name}}]
  metrics:
  - name: success-rate
    initialDelay: 5s
    interval: 3s
    count: 3
    successCondition: result[0] >= 0.95
    failureLimit: 0
    provider:
      prometheus:
        address: {address}
        query: |
          {query}
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {{name: shop}}
spec:
  replicas: 2
  selector: {{matchLabels: {{app: shop}}}}
  template:
    metadata: {{labels: {{app: shop}}}}
    spec:
      containers:
      - {{name: shop, image: "demo:v1", ports: [{{name: http, containerPort: 8080}}],
          env: [{{name: VERSION, value: {version}}}, {{name: ERROR_RATE, value: "{error_rate}"}}],
          readinessProbe: {{httpGet: {{path: /healthz, port: 8080}}, periodSeconds: 1}}}}
  strategy:
    canary:
      stableService: shop
      canaryService: shop-canary
      trafficRouting: {{nginx: {{stableIngress: shop}}}}
      abortScaleDownDelaySeconds: 0
      steps:
      - setWeight: 50
      - analysis:
          templates: [{{templateName: success-rate}}]
          args: [{{name: service-name, value: default/shop}}]
"#,
            address = prom.url,
            query = success_rate("{{args.service-name}}", "canary"),
        )
    };
    let apply = |yaml: String| {
        let out = up.cli_with_stdin(data.path(), &["apply", "-f", "-"], &yaml);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    };
    let status = |timeout: &str| {
        up.cli(
            data.path(),
            &["rollout", "status", "shop", "--timeout", timeout],
        )
    };
    apply(shop("v1", "0"));
    let out = status("60s");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let shop_load = {
        let (stop, url) = (stop.clone(), format!("http://{shop_listen}/"));
        std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            while !stop.load(Ordering::Relaxed) {
                let _ = client.get(&url).send();
                std::thread::sleep(Duration::from_millis(10));
            }
        })
    };
    apply(shop("v2", "0"));
    let out = status("120s");
    assert_eq!(
        out.status.code(),
        Some(0),
        "the good canary passes its analysis: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    apply(shop("v3", "0.3"));
    let out = status("120s");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains(
            "RolloutAborted: Rollout aborted update to revision 3: Metric \"success-rate\" assessed Failed due to failed (1) > failureLimit (0)"
        ),
        "{}",
        text(&out.stderr)
    );
    let got = up.cli(data.path(), &["rollout", "get", "shop", "-o", "json"]);
    let ro: Value = serde_json::from_slice(&got.stdout).unwrap();
    assert_eq!(
        ro["status"]["canary"]["weights"]["canary"]["weight"], 0,
        "{ro:#}"
    );
    assert_eq!(
        ro["status"]["canary"]["currentStepAnalysisRunStatus"]["status"], "Failed",
        "{ro:#}"
    );
    // One run per canary: the good one measured three times above 0.95, the bad one failed.
    let runs = up.cli(data.path(), &["get", "analysisruns", "-o", "json"]);
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    let mut phases: Vec<(String, Vec<f64>)> = runs["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["metadata"]["name"].as_str().unwrap().starts_with("shop-"))
        .map(|r| {
            let values = r["status"]["metricResults"][0]["measurements"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["value"].as_str()?.trim_matches(['[', ']']).parse().ok())
                .collect();
            (r["status"]["phase"].as_str().unwrap().to_string(), values)
        })
        .collect();
    phases.sort_by(|a, b| b.0.cmp(&a.0));
    assert_eq!(phases.len(), 2, "{runs:#}");
    assert_eq!(phases[0].0, "Successful");
    assert!(
        phases[0].1.len() == 3 && phases[0].1.iter().all(|v| *v >= 0.95),
        "{phases:?}"
    );
    assert_eq!(phases[1].0, "Failed");
    assert!(phases[1].1.iter().any(|v| *v < 0.95), "{phases:?}");
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    shop_load.join().unwrap();
    eprintln!(
        "prometheus provider: web {} answered, {} failed (the canary backend's injected errors)",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}
