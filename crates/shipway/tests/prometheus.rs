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

/// The demo app binary in this test's target directory, built if missing.
fn demo_app() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let app = dir.join("shipway-demo-app");
    if !app.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "shipway-demo-app"])
            .status()
            .unwrap();
        assert!(status.success(), "building shipway-demo-app failed");
    }
    app
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
fn success_rate(backend: &str) -> String {
    format!(
        "sum(rate(shipway_proxy_requests_total{{service=\"default/web\",backend=\"{backend}\",code_class!=\"5xx\"}}[1m])) / \
         sum(rate(shipway_proxy_requests_total{{service=\"default/web\",backend=\"{backend}\"}}[1m]))"
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
        query = success_rate("{{args.backend}}")
    )
}

#[test]
fn the_prometheus_provider_passes_a_good_backend_and_fails_one_with_errors() {
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
        let stable = prom.query(&success_rate("stable"));
        let canary = prom.query(&success_rate("canary"));
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
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();

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
    eprintln!(
        "prometheus provider: stable Successful, canary Failed at {value}; {} requests answered, {} failed (the canary's injected errors)",
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed)
    );
}
