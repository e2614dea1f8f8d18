//! Progressive delivery's numbers on a real `shipway up` with demo-app pods (issue 14):
//!
//! - breach → 100 % stable: a canary answering only errors, judged by the built-in `shipway`
//!   provider, aborted 20 times; each sample runs from the failing measurement's `finishedAt` to
//!   the last error a client saw (every error comes from the canary), p50/p99;
//! - weight change: a canary held at one replica (setCanaryScale) goes from 0 % to 100 % on
//!   `promote`; each sample runs from the promote's answer to the policy carrying the weight and
//!   to the first answer from the new version, p50/p99 over 20 promotions;
//! - 200 Rollouts of one replica each: time to all Healthy, and the RSS of the server alone and
//!   with its pods' processes, beside Argo Rollouts' reported 11–14 GB at 11,000–13,000
//!   Rollouts (argoproj/argo-rollouts#2855).

use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde_json::{Value, json};

mod common;
use common::{BIN, Up, rss_mib, start};

const SAMPLES: usize = 20;
const ROLLOUTS: usize = 200;
const BREACH_BUDGET: Duration = Duration::from_secs(2);

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

struct Api<'a> {
    up: &'a Up,
    http: reqwest::blocking::Client,
}

impl Api<'_> {
    fn apply(&self, obj: Value) {
        let resp = self
            .http
            .post(format!("{}/api/v1/apply", self.up.server))
            .bearer_auth(&self.up.token)
            .json(&obj)
            .send()
            .expect("apply");
        assert!(
            resp.status().is_success(),
            "{}",
            resp.text().unwrap_or_default()
        );
    }

    fn get(&self, path: &str) -> Value {
        self.http
            .get(format!("{}/api/v1/resources/{path}", self.up.server))
            .bearer_auth(&self.up.token)
            .send()
            .ok()
            .and_then(|r| r.json().ok())
            .unwrap_or_default()
    }

    fn patch_status(&self, path: &str, patch: Value) {
        let resp = self
            .http
            .patch(format!(
                "{}/api/v1/resources/{path}?subresource=status",
                self.up.server
            ))
            .bearer_auth(&self.up.token)
            .json(&patch)
            .send()
            .expect("patch");
        assert!(
            resp.status().is_success(),
            "{}",
            resp.text().unwrap_or_default()
        );
    }

    /// Polls `path` every 5 ms until `done`, giving up after 120 s.
    fn wait(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let start = Instant::now();
        loop {
            let o = self.get(path);
            if done(&o) {
                return o;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "gave up waiting for {what}: {:#}",
                o["status"]
            );
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

fn healthy(ro: &Value) -> bool {
    let st = &ro["status"];
    st["phase"] == "Healthy"
        && st["observedGeneration"]
            .as_str()
            .and_then(|g| g.parse::<i64>().ok())
            == ro["metadata"]["generation"].as_i64()
        && st["stableRS"] == st["currentPodHash"]
}

fn services(name: &str) -> [Value; 2] {
    let svc = |n: String, listen: Option<String>| {
        let mut meta = json!({"name": n, "namespace": "default"});
        if let Some(l) = listen {
            meta["annotations"] = json!({"shipway.dev/listen": l});
        }
        json!({"apiVersion": "v1", "kind": "Service", "metadata": meta,
            "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    };
    [
        svc(name.to_string(), Some(free_addr())),
        svc(format!("{name}-canary"), None),
    ]
}

fn rollout(name: &str, replicas: u32, version: &str, error_rate: &str, canary: Value) -> Value {
    json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {
                "terminationGracePeriodSeconds": 2,
                "containers": [{"name": "app", "image": "demo:v1",
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "env": [{"name": "VERSION", "value": version}, {"name": "ERROR_RATE", "value": error_rate}],
                    "readinessProbe": {"httpGet": {"path": "/healthz", "port": 8080}, "periodSeconds": 1}}]}},
            "strategy": {"canary": canary}}})
}

/// Clients requesting `url` until stopped, recording when each answer came and what it said.
struct Load {
    stop: Arc<AtomicBool>,
    answers: Arc<Mutex<Vec<(SystemTime, u16, String)>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: String, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let threads = (0..clients)
            .map(|_| {
                let (stop, answers, url) = (stop.clone(), answers.clone(), url.clone());
                std::thread::spawn(move || {
                    let client = reqwest::blocking::Client::new();
                    while !stop.load(Ordering::Relaxed) {
                        if let Ok(r) = client.get(&url).send() {
                            let code = r.status().as_u16();
                            let body = r.text().unwrap_or_default();
                            answers
                                .lock()
                                .expect("lock")
                                .push((SystemTime::now(), code, body));
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Load {
            stop,
            answers,
            threads,
        }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn parse_time(s: &str) -> SystemTime {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339 time");
    SystemTime::UNIX_EPOCH + Duration::from_nanos(t.unix_timestamp_nanos() as u64)
}

/// Signed milliseconds from `a` to `b`.
fn millis(a: SystemTime, b: SystemTime) -> f64 {
    match b.duration_since(a) {
        Ok(d) => d.as_secs_f64() * 1e3,
        Err(e) => -e.duration().as_secs_f64() * 1e3,
    }
}

fn percentiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1];
    (at(0.5), at(0.99), v[v.len() - 1])
}

fn breach(api: &Api<'_>) -> Vec<f64> {
    for s in services("web") {
        api.apply(s);
    }
    api.apply(
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "AnalysisTemplate",
        "metadata": {"name": "errors", "namespace": "default"},
        "spec": {"metrics": [{"name": "error-rate", "interval": "1s", "failureLimit": 0,
            "inconclusiveLimit": 1000, "successCondition": "result < 0.05",
            "provider": {"shipway": {"service": "web", "backend": "canary", "metric": "error-rate",
                "window": "2s", "minRequests": 10}}}]}}),
    );
    let canary = json!({"stableService": "web", "canaryService": "web-canary",
        "trafficRouting": {"nginx": {"stableIngress": "web"}},
        "steps": [{"setWeight": 50}, {"analysis": {"templates": [{"templateName": "errors"}]}}]});
    api.apply(rollout("web", 2, "good", "0", canary.clone()));
    api.wait("rollouts/web", "the first version", healthy);
    let listen = api.get("services/web")["status"]["address"]
        .as_str()
        .expect("listen address")
        .to_string();
    let load = Load::start(format!("http://{listen}/"), 2);
    let mut samples = Vec::new();
    for i in 0..SAMPLES {
        api.apply(rollout("web", 2, &format!("bad-{i}"), "1", canary.clone()));
        let ro = api.wait("rollouts/web", "the abort", |o| {
            o["status"]["abort"] == true && o["status"]["phase"] == "Degraded"
        });
        let hash = ro["status"]["currentPodHash"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let runs = api.get("analysisruns");
        let failed_at = runs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["metadata"]["labels"]["rollouts-pod-template-hash"] == hash.as_str()
                    && r["status"]["phase"] == "Failed"
            })
            .flat_map(|r| {
                r["status"]["metricResults"][0]["measurements"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter(|m| m["phase"] == "Failed")
            .filter_map(|m| m["finishedAt"].as_str().map(parse_time))
            .min()
            .expect("the failing measurement of this abort");
        // Let any answer still in flight land before reading the clients' record.
        std::thread::sleep(Duration::from_millis(1500));
        let last_error = load
            .answers
            .lock()
            .expect("lock")
            .iter()
            .filter(|(_, code, _)| *code >= 500)
            .map(|(t, _, _)| *t)
            .max()
            .expect("the canary answered errors");
        samples.push(millis(failed_at, last_error));
        api.apply(rollout("web", 2, "good", "0", canary.clone()));
        api.wait("rollouts/web", "the rollback to stable", healthy);
    }
    load.stop();
    samples
}

fn weight_change(api: &Api<'_>) -> (Vec<f64>, Vec<f64>) {
    for s in services("wc") {
        api.apply(s);
    }
    let canary = json!({"stableService": "wc", "canaryService": "wc-canary",
        "trafficRouting": {"nginx": {"stableIngress": "wc"}},
        "steps": [{"setCanaryScale": {"replicas": 1}}, {"pause": {}}, {"setWeight": 100}, {"pause": {}}]});
    api.apply(rollout("wc", 2, "w-0", "0", canary.clone()));
    api.wait("rollouts/wc", "the first version", healthy);
    let listen = api.get("services/wc")["status"]["address"]
        .as_str()
        .expect("listen address")
        .to_string();
    let load = Load::start(format!("http://{listen}/"), 2);
    let (mut policy, mut served) = (Vec::new(), Vec::new());
    for i in 1..=SAMPLES {
        let version = format!("w-{i}");
        api.apply(rollout("wc", 2, &version, "0", canary.clone()));
        let ro = api.wait("rollouts/wc", "the canary paused at 0 %", |o| {
            let st = &o["status"];
            st["currentStepIndex"] == 1
                && st["pauseConditions"]
                    .as_array()
                    .is_some_and(|a| !a.is_empty())
        });
        // Its one pod available, so the promote measures the weight change, not a pod start.
        let hash = ro["status"]["currentPodHash"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        api.wait(
            &format!("replicasets/wc-{hash}"),
            "the canary's pod",
            |rs| rs["status"]["availableReplicas"].as_i64() == Some(1),
        );
        api.patch_status("rollouts/wc", json!({"status": {"pauseConditions": null}}));
        let promoted = SystemTime::now();
        let started = Instant::now();
        api.wait("trafficpolicies/wc", "the policy at 100 %", |p| {
            p["spec"]["backends"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|b| b["name"] == "canary" && b["weight"] == 100)
        });
        policy.push(started.elapsed().as_secs_f64() * 1e3);
        let first = loop {
            let seen = load
                .answers
                .lock()
                .expect("lock")
                .iter()
                .filter(|(t, code, body)| {
                    *code == 200 && body.contains(version.as_str()) && *t >= promoted
                })
                .map(|(t, _, _)| *t)
                .min();
            if let Some(t) = seen {
                break t;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the new version never answered"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        served.push(millis(promoted, first));
        api.patch_status("rollouts/wc", json!({"status": {"promoteFull": true}}));
        api.wait("rollouts/wc", "the full promotion", healthy);
    }
    load.stop();
    (policy, served)
}

/// The resident set of `pid` and of every process below it, in MiB.
fn tree_rss_mib(pid: u32) -> f64 {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(p) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        // The command may hold spaces and parentheses: the fields follow the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse().ok());
        if let Some(ppid) = ppid {
            parents.push((p, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    tree.iter()
        .map(|p| rss_mib(*p))
        .filter(|r| r.is_finite())
        .sum()
}

fn many(api: &Api<'_>, up: &Up) -> (Duration, f64, f64) {
    let started = Instant::now();
    for i in 0..ROLLOUTS {
        api.apply(rollout(&format!("r-{i}"), 1, "v1", "0", json!({})));
    }
    loop {
        let list = api.get("rollouts");
        let healthy = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| {
                r["metadata"]["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("r-"))
                    && healthy(r)
            })
            .count();
        if healthy == ROLLOUTS {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "{healthy} of {ROLLOUTS} Healthy after 10 minutes"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let took = started.elapsed();
    // Settled: the figures after the controllers have quietened down.
    std::thread::sleep(Duration::from_secs(5));
    (took, rss_mib(up.child.id()), tree_rss_mib(up.child.id()))
}

fn main() {
    let data = tempfile::tempdir().expect("tempdir");
    let src = tempfile::tempdir().expect("tempdir");
    std::fs::write(src.path().join("README"), "demo\n").expect("write");
    let out = Command::new(BIN)
        .args(["image", "import", "demo:v1"])
        .arg(src.path())
        .arg("--entrypoint")
        .arg(shipway_testkit::demo_app().expect("the demo app builds"))
        .env("SHIPWAY_DATA", data.path())
        .output()
        .expect("image import");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let up = start(data.path());
    let api = Api {
        up: &up,
        http: reqwest::blocking::Client::new(),
    };

    let (p50, p99, max) = percentiles(breach(&api));
    println!(
        "rollout breach → 100% stable ({SAMPLES} aborts, failing measurement to the last canary error a client saw): p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms (budget ≤ {} ms: {})",
        BREACH_BUDGET.as_millis(),
        if p99 <= BREACH_BUDGET.as_secs_f64() * 1e3 {
            "met"
        } else {
            "MISSED"
        }
    );
    let (policy, served) = weight_change(&api);
    let (pp50, pp99, _) = percentiles(policy);
    let (sp50, sp99, _) = percentiles(served);
    println!(
        "rollout weight change 0 → 100% ({SAMPLES} promotions): policy written p50 {pp50:.0} ms, p99 {pp99:.0} ms; first answer from the new version p50 {sp50:.0} ms, p99 {sp99:.0} ms"
    );
    let (took, server, with_pods) = many(&api, &up);
    println!(
        "rollout {ROLLOUTS} Rollouts × 1 replica: all Healthy in {:.1} s; RSS server {server:.0} MiB ({:.2} MiB per Rollout), with its {ROLLOUTS}+ pod processes {with_pods:.0} MiB ({:.2} MiB per Rollout); Argo Rollouts reported (argoproj/argo-rollouts#2855): 11–14 GB for the controller alone at 11,000–13,000 Rollouts (~1 MiB per Rollout)",
        took.as_secs_f64(),
        server / ROLLOUTS as f64,
        with_pods / ROLLOUTS as f64
    );
}
