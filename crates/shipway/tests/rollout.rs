//! `shipway rollout` against a real `shipway up`: the verbs of `kubectl argo rollouts` drive the
//! Rollout controller through the fields the plugin writes, and `get`, `status` and `list` read
//! back what the controller reports.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

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
