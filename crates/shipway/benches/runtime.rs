//! The local runtime's numbers, on a real `shipway up`: time from applying a 10-replica Deployment
//! to all replicas Ready, pods started per second when scaling to 100, and the server's RSS with
//! 100 running pods.

use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{BIN, Up, rss_mib, start};

fn deployment(replicas: u32) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "bench", "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "bench"}},
            "template": {"metadata": {"labels": {"app": "bench"}}, "spec": {
                "terminationGracePeriodSeconds": 1,
                "containers": [{"name": "main", "image": "sleeper:v1"}],
            }},
        },
    })
}

fn ready(up: &Up, http: &reqwest::blocking::Client) -> i64 {
    http.get(format!("{}/api/v1/resources/deploy/bench", up.server))
        .bearer_auth(&up.token)
        .send()
        .ok()
        .and_then(|r| r.json::<serde_json::Value>().ok())
        .and_then(|d| d["status"]["readyReplicas"].as_i64())
        .unwrap_or(0)
}

fn apply_and_wait(up: &Up, http: &reqwest::blocking::Client, replicas: u32) -> Duration {
    let start = Instant::now();
    let resp = http
        .post(format!("{}/api/v1/apply", up.server))
        .bearer_auth(&up.token)
        .json(&deployment(replicas))
        .send()
        .expect("apply");
    assert!(
        resp.status().is_success(),
        "{}",
        resp.text().unwrap_or_default()
    );
    while ready(up, http) < i64::from(replicas) {
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "replicas never became ready"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    start.elapsed()
}

fn main() {
    let data = tempfile::tempdir().expect("tempdir");
    let app = tempfile::tempdir().expect("tempdir");
    let out = Command::new(BIN)
        .args(["image", "import", "sleeper:v1"])
        .arg(app.path())
        .args(["--entrypoint", "sleep", "3600"])
        .env("SHIPWAY_DATA", data.path())
        .output()
        .expect("image import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up = start(data.path());
    let http = reqwest::blocking::Client::new();

    let ten = apply_and_wait(&up, &http, 10);
    println!(
        "apply of a 10-replica Deployment to all Ready: {:.0} ms",
        ten.as_secs_f64() * 1e3
    );
    let hundred = apply_and_wait(&up, &http, 100);
    println!(
        "scale 10 → 100 replicas: {:.2} s, {:.0} pods started/s",
        hundred.as_secs_f64(),
        90.0 / hundred.as_secs_f64()
    );
    std::thread::sleep(Duration::from_secs(2));
    println!(
        "RSS of `shipway up` with 100 running pods: {:.1} MiB",
        rss_mib(up.child.id())
    );
}
