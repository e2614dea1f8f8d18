//! `shipway rollout` against a real `shipway up`: the verbs of `kubectl argo rollouts` drive the
//! Rollout controller through the fields the plugin writes, and `get`, `status` and `list` read
//! back what the controller reports.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

/// The demo app binary; these tests need it, so failing to build it fails them.
fn demo_app() -> PathBuf {
    shipway_testkit::demo_app().expect("building shipway-demo-app failed")
}

fn ok(out: Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// The Services first: a Rollout naming a Service that does not exist yet is Degraded
/// (InvalidSpec) until it does, as in Argo, and `status` would stop there.
const ROLLOUT: &str = r#"apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-canary}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: demo:v1
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {httpGet: {path: /healthz, port: 8080}, periodSeconds: 1}
  strategy:
    canary:
      stableService: web
      canaryService: web-canary
      trafficRouting: {nginx: {stableIngress: web}}
      abortScaleDownDelaySeconds: 0
      steps:
      - setWeight: 50
      - pause: {}
      - setWeight: 80
"#;

struct Session<'a> {
    up: &'a Up,
    data: &'a Path,
}

/// Imports the demo app as `demo:v1`, `demo:v2` and `demo:v3`.
fn import_demo(s: &Session<'_>) {
    let src = tempfile::tempdir().unwrap();
    std::fs::write(src.path().join("README"), "demo\n").unwrap();
    let app = demo_app().display().to_string();
    for tag in ["demo:v1", "demo:v2", "demo:v3"] {
        ok(s.run(&[
            "image",
            "import",
            tag,
            &src.path().display().to_string(),
            "--entrypoint",
            &app,
        ]));
    }
}

impl Session<'_> {
    fn run(&self, args: &[&str]) -> Output {
        self.up.cli(self.data, args)
    }

    fn rollout(&self) -> Value {
        serde_json::from_str(&ok(self.run(&["rollout", "get", "web", "-o", "json"]))).unwrap()
    }

    fn wait_get(&self, what: &str, wanted: &[&str]) -> String {
        let mut shown = String::new();
        wait_for(60, what, || {
            shown = text(&self.run(&["rollout", "get", "web"]).stdout);
            wanted.iter().all(|w| shown.contains(w))
        });
        shown
    }
}

#[test]
fn rollout_verbs_drive_a_canary_as_kubectl_argo_rollouts_does() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let s = Session {
        up: &up,
        data: data.path(),
    };
    import_demo(&s);
    ok(up.cli_with_stdin(data.path(), &["apply", "-f", "-"], ROLLOUT));

    // The first version goes straight to Healthy; `status` waits for it.
    let out = ok(s.run(&["rollout", "status", "web", "--timeout", "60s"]));
    assert_eq!(out.lines().last(), Some("Healthy"), "{out}");

    // A new image starts the steps and stops at the pause.
    assert_eq!(
        ok(s.run(&["rollout", "set", "image", "web", "web=demo:v2"])),
        "rollout \"web\" image updated\n"
    );
    let shown = s.wait_get(
        "the canary paused at its pause step",
        &[
            "Status:         ॥ Paused",
            "Message:        CanaryPauseStep",
        ],
    );
    assert!(shown.contains("  Step:         1/3\n"), "{shown}");
    assert!(shown.contains("  SetWeight:    50\n"), "{shown}");
    assert!(shown.contains("demo:v2 (canary)"), "{shown}");
    assert!(shown.contains("demo:v1 (stable)"), "{shown}");
    assert!(shown.contains("# revision:2"), "{shown}");
    assert_eq!(
        ok(s.run(&["rollout", "status", "web", "--watch=false"])),
        "Paused - CanaryPauseStep\n"
    );
    let list = ok(s.run(&["rollout", "list"]));
    let row: Vec<&str> = list.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..5], ["web", "Canary", "Paused", "1/3", "50"], "{list}");

    // promote: the pause ends, the last step runs and the rollout completes.
    assert_eq!(
        ok(s.run(&["rollout", "promote", "web"])),
        "rollout 'web' promoted\n"
    );
    let out = ok(s.run(&["rollout", "status", "web", "--timeout", "60s"]));
    assert_eq!(out.lines().last(), Some("Healthy"), "{out}");
    let ro = s.rollout();
    assert_eq!(ro["status"]["stableRS"], ro["status"]["currentPodHash"]);

    // abort: back to stable, Degraded, and `status` exits 1 with the message.
    ok(s.run(&["rollout", "set", "image", "web", "*=demo:v3"]));
    s.wait_get(
        "the second canary paused",
        &["॥ Paused", "demo:v3 (canary)"],
    );
    assert_eq!(
        ok(s.run(&["rollout", "abort", "web"])),
        "rollout 'web' aborted\n"
    );
    let out = s.run(&["rollout", "status", "web", "--timeout", "30s"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr)
            .contains("The rollout is in a degraded state with message: RolloutAborted: Rollout aborted update to revision 3"),
        "{}",
        text(&out.stderr)
    );
    let ro = s.rollout();
    assert_eq!(ro["status"]["abort"], true);
    assert_eq!(
        ro["status"]["canary"]["weights"]["canary"]["weight"], 0,
        "{ro:#}"
    );

    // retry: the steps start again; promote --full skips them all.
    assert_eq!(
        ok(s.run(&["rollout", "retry", "web"])),
        "rollout 'web' retried\n"
    );
    s.wait_get(
        "the retried canary paused",
        &["॥ Paused", "  SetWeight:    50"],
    );
    assert_eq!(
        ok(s.run(&["rollout", "promote", "web", "--full"])),
        "rollout 'web' fully promoted\n"
    );
    let out = ok(s.run(&["rollout", "status", "web", "--timeout", "60s"]));
    assert_eq!(out.lines().last(), Some("Healthy"), "{out}");
    assert_eq!(
        s.rollout()["spec"]["template"]["spec"]["containers"][0]["image"],
        "demo:v3"
    );

    // undo: the template of the revision before goes back in, without the hash label.
    assert_eq!(
        ok(s.run(&["rollout", "undo", "web"])),
        "rollout 'web' undo\n"
    );
    let ro = s.rollout();
    let template = &ro["spec"]["template"];
    assert_eq!(template["spec"]["containers"][0]["image"], "demo:v2");
    assert!(
        template["metadata"]["labels"]
            .get("rollouts-pod-template-hash")
            .is_none(),
        "{template:#}"
    );
    let out = s.run(&["rollout", "undo", "web", "--to-revision", "99"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("unable to find specified revision 99 in history"),
        "{}",
        text(&out.stderr)
    );

    // pause and resume are spec.paused.
    assert_eq!(
        ok(s.run(&["rollout", "pause", "web"])),
        "rollout 'web' paused\n"
    );
    assert_eq!(s.rollout()["spec"]["paused"], true);
    assert_eq!(
        ok(s.run(&["rollout", "resume", "web"])),
        "rollout 'web' resumed\n"
    );
    assert_eq!(s.rollout()["spec"]["paused"], false);

    // Who did it is in the audit trail, as for every write.
    let events = ok(s.run(&["events", "--for", "rollout/web"]));
    let by_admin = |action: &str| {
        events.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.get(1) == Some(&"admin") && cols.get(2) == Some(&action)
        })
    };
    assert!(by_admin("update-status"), "abort, retry, promote: {events}");
    assert!(by_admin("update"), "set image, undo, pause: {events}");

    // Bad input: an unknown Rollout and a malformed image argument.
    let out = s.run(&["rollout", "abort", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("rollout \"nope\" not found in namespace \"default\""),
        "{}",
        text(&out.stderr)
    );
    let out = s.run(&["rollout", "set", "image", "web", "demo:v4"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// Requests to `url` every 10 ms until stopped: the instants of failures and the count of
/// answers per version.
struct Load {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    failures: Arc<std::sync::Mutex<Vec<Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(url: String) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let failures = Arc::new(std::sync::Mutex::new(Vec::new()));
        let thread = {
            let (stop, ok, failures) = (stop.clone(), ok.clone(), failures.clone());
            std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(Duration::from_secs(5))
                    .build()
                    .unwrap();
                while !stop.load(Ordering::Relaxed) {
                    match client.get(&url).send() {
                        Ok(r) if r.status().is_success() => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        _ => failures.lock().unwrap().push(Instant::now()),
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            })
        };
        Load {
            stop,
            ok,
            failures,
            thread: Some(thread),
        }
    }

    fn ok(&self) -> usize {
        self.ok.load(Ordering::Relaxed)
    }

    fn failures_since(&self, t: Instant) -> usize {
        self.failures
            .lock()
            .unwrap()
            .iter()
            .filter(|f| **f >= t)
            .count()
    }

    fn stop(mut self) -> (usize, usize) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap();
        (self.ok(), self.failures.lock().unwrap().len())
    }
}

/// `shipway up` SIGKILLed while a canary is paused at 40 %: after the restart the Rollout is at
/// the same step with the same weights, the policy routes as before, no request fails once the
/// service answers again, and promote carries the rollout on to the end.
#[test]
fn a_rollout_killed_mid_canary_resumes_at_the_same_step_and_weights() {
    let data = tempfile::tempdir().unwrap();
    let listen = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let manifests = ROLLOUT
        .replacen(
            "metadata: {name: web}\nspec:\n  selector",
            &format!("metadata: {{name: web, annotations: {{shipway.dev/listen: \"{listen}\"}}}}\nspec:\n  selector"),
            1,
        )
        .replace("      - setWeight: 50\n", "      - setWeight: 40\n");
    assert!(manifests.contains(&listen) && manifests.contains("setWeight: 40"));
    let snapshot = |s: &Session<'_>| -> (Value, Value) {
        let ro = s.rollout();
        let policy: Value =
            serde_json::from_str(&ok(s.run(&["get", "trafficpolicy", "web", "-o", "json"])))
                .unwrap();
        let st = &ro["status"];
        (
            serde_json::json!({
                "phase": st["phase"], "currentStepIndex": st["currentStepIndex"],
                "weights": st["canary"]["weights"], "stableRS": st["stableRS"],
                "currentPodHash": st["currentPodHash"], "pauseConditions": st["pauseConditions"].as_array().map(|a| a.len()),
            }),
            policy["spec"].clone(),
        )
    };

    let up = Up::start(data.path());
    let (before, policy_before, load) = {
        let s = Session {
            up: &up,
            data: data.path(),
        };
        import_demo(&s);
        ok(up.cli_with_stdin(data.path(), &["apply", "-f", "-"], &manifests));
        ok(s.run(&["rollout", "status", "web", "--timeout", "60s"]));
        let load = Load::start(format!("http://{listen}/"));
        ok(s.run(&["rollout", "set", "image", "web", "web=demo:v2"]));
        s.wait_get(
            "the canary paused at 40 %",
            &["॥ Paused", "  ActualWeight: 40", "demo:v2 (canary)"],
        );
        let (before, policy_before) = snapshot(&s);
        (before, policy_before, load)
    };
    assert_eq!(before["weights"]["canary"]["weight"], 40, "{before:#}");
    up.kill9();

    let up = Up::start(data.path());
    let s = Session {
        up: &up,
        data: data.path(),
    };
    // Once the proxy answers again, every request succeeds.
    let restarted = Instant::now();
    let answered = load.ok();
    wait_for(60, "the service to answer after the restart", || {
        load.ok() > answered + 20
    });
    let serving = Instant::now();
    // The controller has looked at the Rollout again and changed nothing: same step, weights,
    // hashes and policy.
    wait_for(60, "the restarted pods to be available", || {
        s.rollout()["status"]["availableReplicas"].as_i64() == Some(3)
    });
    std::thread::sleep(Duration::from_secs(2));
    let (after, policy_after) = snapshot(&s);
    assert_eq!(after, before);
    assert_eq!(policy_after, policy_before);
    assert_eq!(
        load.failures_since(serving),
        0,
        "requests failed after the restart served again"
    );

    ok(s.run(&["rollout", "promote", "web"]));
    let out = ok(s.run(&["rollout", "status", "web", "--timeout", "60s"]));
    assert_eq!(out.lines().last(), Some("Healthy"), "{out}");
    let after_promote = load.failures_since(serving);
    let (answered, failed) = load.stop();
    assert_eq!(
        after_promote, 0,
        "requests failed while the resumed rollout finished"
    );
    eprintln!(
        "killed mid-canary: {answered} requests answered, {failed} failed, all while the server was down ({:.1} s from restart to serving)",
        (serving - restarted).as_secs_f64()
    );
}
