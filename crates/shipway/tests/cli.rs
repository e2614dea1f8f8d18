//! The `shipway` binary end to end: real `shipway up` processes, the CLI as users run it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

mod common;
use common::*;

#[test]
fn a_second_up_on_the_same_data_dir_refuses_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let _first = Up::start(dir.path());
    let out = Command::new(BIN)
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("another `shipway up`") && err.contains("already using the data directory"),
        "{err}"
    );
}

#[test]
fn the_admin_token_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let _up = Up::start(dir.path());
    let mode = std::fs::metadata(dir.path().join("admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// Every directory under `root` that is not 0700 and every file that is not 0600 (or 0700 when
/// `executable` allows it), as `mode path` lines. Symbolic links are skipped: a container root is
/// links into its image, and a link's own mode means nothing.
fn not_private(root: &Path, executable: &dyn Fn(&Path) -> bool) -> Vec<String> {
    use std::os::unix::fs::PermissionsExt;
    let mut wrong = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o7777;
        let ok = if meta.file_type().is_symlink() {
            true
        } else if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(entry.unwrap().path());
            }
            mode == 0o700
        } else {
            mode == 0o600 || (mode == 0o700 && executable(&path))
        };
        if !ok {
            wrong.push(format!("{mode:04o} {}", path.display()));
        }
    }
    wrong
}

/// Under umask 022 everything in the data directory is still its owner's only: Secret values in
/// the store, its WAL and in volumes, tokens, logs, images. A data directory others could read
/// is fixed at start, with a warning.
#[test]
fn the_data_directory_is_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("VERSION"), "v1\n").unwrap();
    std::fs::write(app.path().join("run.sh"), "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(
        app.path().join("run.sh"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let out = Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" \"$@\"", BIN])
        .args(["image", "import", "shell:v1"])
        .arg(app.path())
        .args(["--entrypoint", "/bin/sh", "-c"])
        .env("SHIPWAY_DATA", &data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let up = Up::start_after("umask 022", &data);
    assert!(
        up.log().contains("was mode 0755") && up.log().contains("changed it to 0700"),
        "{}",
        up.log()
    );
    let manifests = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\nstringData:\n  password: hunter2\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  colour: blue\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 1\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      terminationGracePeriodSeconds: 1\n      volumes:\n      - name: creds\n        secret: {secretName: creds}\n      - name: settings\n        configMap: {name: settings}\n      containers:\n      - name: main\n        image: shell:v1\n        args: [\"echo password $(cat creds/password) colour $(cat settings/colour); exec ./run.sh\"]\n        volumeMounts:\n        - {name: creds, mountPath: creds}\n        - {name: settings, mountPath: settings}\n";
    let out = up.cli_with_stdin(&data, &["apply", "-f", "-"], manifests);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for(60, "the pod's log line", || {
        text(&up.cli(&data, &["logs", "deploy/web"]).stdout)
            .contains("password hunter2 colour blue")
    });
    for expected in ["shipway.db-wal", "admin.token", "pods", "images"] {
        assert!(data.join(expected).exists(), "{expected}");
    }
    let mode = std::fs::metadata(&data).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700);
    // Image files keep their owner's execute bit: `run.sh` must still run.
    let wrong = not_private(&data, &|p| p.ends_with("run.sh"));
    assert!(wrong.is_empty(), "not private:\n{}", wrong.join("\n"));
}

/// `shipway up` raises its soft open-files limit to the hard one, so connections and pods are
/// not cut off by a shell's default of 1024 (here 256).
#[test]
fn up_raises_the_open_files_limit_to_the_hard_one() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start_after("ulimit -Sn 256", data.path());
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", up.child.id())).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    // "Max open files  SOFT  HARD  files"
    let (soft, hard) = (fields[3], fields[4]);
    assert_ne!(soft, "256", "{line}");
    assert_eq!(soft, hard, "{line}");
}

#[test]
fn apply_get_describe_delete_events_as_a_user_would() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let manifests = tempfile::tempdir().unwrap();
    std::fs::create_dir(manifests.path().join("nested")).unwrap();
    std::fs::write(
        manifests.path().join("app.yaml"),
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\n  labels: {app: web}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers: [{name: web, image: \"web:v1\"}]\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n",
    )
    .unwrap();
    std::fs::write(
        manifests.path().join("nested/cm.json"),
        r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"settings","namespace":"prod"},"data":{"a":"1"}}"#,
    )
    .unwrap();
    std::fs::write(manifests.path().join("notes.txt"), "not a manifest").unwrap();
    let dir = manifests.path().to_str().unwrap();

    let out = up.cli(data.path(), &["apply", "-f", dir]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "deployment.apps/web created\nservice/web created\nconfigmap/settings created\n"
    );

    let out = up.cli(data.path(), &["apply", "-f", dir, "--dry-run"]);
    assert_eq!(
        text(&out.stdout),
        "deployment.apps/web unchanged (dry run)\nservice/web unchanged (dry run)\nconfigmap/settings unchanged (dry run)\n"
    );

    let out = up.cli(data.path(), &["get", "deploy"]);
    let table = text(&out.stdout);
    assert!(
        table.starts_with("NAME   READY   UP-TO-DATE   AVAILABLE   AGE\nweb    0/2     "),
        "{table}"
    );

    let out = up.cli(data.path(), &["get", "cm", "-A", "-o", "name"]);
    assert_eq!(text(&out.stdout), "configmap/settings\n");
    let out = up.cli(data.path(), &["get", "cm"]);
    assert_eq!(
        text(&out.stderr),
        "No resources found in default namespace.\n"
    );
    let out = up.cli(
        data.path(),
        &["get", "configmap/settings", "-n", "prod", "-o", "yaml"],
    );
    let yaml = text(&out.stdout);
    // As `kubectl get -o yaml` prints it: keys sorted.
    assert!(
        yaml.starts_with("apiVersion: v1\ndata:\n  a: \"1\"\nkind: ConfigMap\nmetadata:\n"),
        "{yaml}"
    );
    assert!(
        yaml.contains("  name: settings\n  namespace: prod\n"),
        "{yaml}"
    );

    let out = up.cli(data.path(), &["get", "svc", "web", "-o", "json"]);
    let svc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(svc["metadata"]["generation"], 1);

    let out = up.cli(data.path(), &["describe", "deploy/web"]);
    let described = text(&out.stdout);
    assert!(
        described.contains("Name:              web\nNamespace:         default\n"),
        "{described}"
    );
    assert!(
        described.contains("Labels:            app=web"),
        "{described}"
    );
    assert!(described.contains("Spec:\n  replicas: 2\n"), "{described}");
    // The age is seconds on a loaded machine, not always 0s.
    assert!(
        described.lines().any(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words.len() == 4
                && words[0]
                    .strip_suffix('s')
                    .is_some_and(|n| n.parse::<u32>().is_ok())
                && words[1..] == ["admin", "create", "created"]
        }),
        "{described}"
    );

    let out = up.cli(data.path(), &["delete", "deploy", "web"]);
    assert_eq!(text(&out.stdout), "deployment.apps \"web\" deleted\n");
    let out = up.cli(data.path(), &["get", "deploy", "web"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Deployment.apps/default/web not found"),
        "{}",
        text(&out.stderr)
    );
    let out = up.cli(
        data.path(),
        &["delete", "deploy", "web", "--ignore-not-found"],
    );
    assert_eq!(out.status.code(), Some(0));

    let out = up.cli(data.path(), &["events", "--for", "deploy/web"]);
    let events = text(&out.stdout);
    // What the user did; the controllers' status updates are listed too, under their own names.
    let actions: Vec<&str> = events
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(1) == Some("admin"))
        .map(|l| l.split_whitespace().nth(2).unwrap())
        .collect();
    assert_eq!(actions, ["create", "delete"], "{events}");
    assert!(events.contains("controller:deployment"), "{events}");

    let out = up.cli_with_stdin(
        data.path(),
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n",
    );
    assert_eq!(text(&out.stdout), "namespace/prod created\n");
    let out = up.cli(data.path(), &["get", "ns", "prod", "-o", "json"]);
    let ns: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        ns["metadata"].get("namespace").is_none(),
        "cluster-scoped objects have no namespace"
    );
}

#[test]
fn invalid_manifests_fail_with_positions_before_anything_is_applied() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let manifests = tempfile::tempdir().unwrap();
    let good = manifests.path().join("a-good.yaml");
    std::fs::write(
        &good,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: fine\n",
    )
    .unwrap();
    let bad = manifests.path().join("b-bad.yaml");
    std::fs::write(&bad, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels:\n    tier: 3\n---\nkind: [\n").unwrap();
    let out = up.cli(
        data.path(),
        &["apply", "-f", manifests.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(err.contains("nothing was applied"), "{err}");
    assert!(
        err.contains(&format!("{}:6:11:", bad.display())),
        "wrong-typed label at its position: {err}"
    );
    // The unclosed flow sequence on line 8 is found where the input ends.
    assert!(
        err.contains(&format!("{}:9:1: invalid YAML", bad.display())),
        "malformed YAML with its position: {err}"
    );
    let out = up.cli(data.path(), &["get", "cm", "fine"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the valid file was not applied either"
    );

    let out = up.cli(data.path(), &["get", "nonsense/x/y"]);
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(BIN).args(["get"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "clap usage errors exit 2");
}

#[test]
fn apply_of_a_directory_stays_in_it_and_files_are_read_up_to_a_limit() {
    use std::os::unix::fs::symlink;
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("manifests");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let cm = |name: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n");
    std::fs::write(dir.join("a.yaml"), cm("inside")).unwrap();
    std::fs::write(outside.join("c.yaml"), cm("outside")).unwrap();
    // A cycle, and a link out of the tree: neither is followed.
    symlink(&dir, dir.join("loop")).unwrap();
    symlink(&outside, dir.join("out")).unwrap();
    let out = up.cli(data.path(), &["apply", "-f", dir.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "warning: {}: a link to a directory is not followed",
            dir.join("out").display()
        )),
        "{err}"
    );
    assert_eq!(
        up.cli(data.path(), &["get", "cm", "inside"]).status.code(),
        Some(0)
    );
    assert_eq!(
        up.cli(data.path(), &["get", "cm", "outside"]).status.code(),
        Some(1)
    );

    // One byte over the limit is refused, naming the file and the limit, before it is parsed.
    let big = tmp.path().join("big.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(16 * 3 * 1024 * 1024 + 1)
        .unwrap();
    for file in [big.to_str().unwrap(), "/dev/zero"] {
        let out = up.cli(data.path(), &["apply", "-f", file]);
        assert_eq!(out.status.code(), Some(2), "{file}");
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!(
                "{file}: larger than the limit of 50331648 bytes (48 MiB) for one file"
            )),
            "{err}"
        );
    }
}

#[test]
fn unreachable_server_and_missing_token_say_what_to_do() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args([
            "get",
            "deploy",
            "--server",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--data",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Is `shipway up` running?"),
        "{}",
        text(&out.stderr)
    );
    // Without a token the CLI says so before sending anything.
    let out = Command::new(BIN)
        .args(["get", "deploy", "--server", "http://127.0.0.1:9", "--data"])
        .arg(data.path())
        .env_remove("SHIPWAY_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("no token at ")
            && text(&out.stderr)
                .contains("the first `shipway up` with this data directory writes it"),
        "{}",
        text(&out.stderr)
    );

    let up = Up::start(data.path());
    let elsewhere = tempfile::tempdir().unwrap();
    let out = up.cli(elsewhere.path(), &["get", "deploy"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("--token"),
        "{}",
        text(&out.stderr)
    );
}

/// Every write the server acknowledged is there after `kill -9` and a restart.
#[test]
fn acknowledged_applies_survive_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let server = up.server.clone();
    let token = std::fs::read_to_string(data.path().join("admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let acked = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (server, token, acked, stop) = (server.clone(), token.clone(), acked.clone(), stop.clone());
            std::thread::spawn(move || {
                let http = reqwest::blocking::Client::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let name = format!("cm-{w}-{i}");
                    let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"i": i.to_string()}});
                    match http.post(format!("{server}/api/v1/apply")).bearer_auth(&token).json(&body).send() {
                        Ok(r) if r.status().as_u16() == 201 => acked.lock().unwrap().push(name),
                        _ => break, // the server is gone
                    }
                }
            })
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked.lock().unwrap().len() < 200 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    up.kill9(); // in the middle of the stream of applies
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.len() >= 200,
        "only {} applies before the deadline",
        acked.len()
    );

    let up = Up::start(data.path());
    let out = up.cli(data.path(), &["get", "cm", "-o", "name"]);
    let stored: std::collections::HashSet<String> = text(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("configmap/").to_string())
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|n| !stored.contains(*n)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged writes lost: {lost:?}",
        lost.len(),
        acked.len()
    );
    eprintln!(
        "{} acknowledged applies, {} stored after kill -9",
        acked.len(),
        stored.len()
    );
}

fn pod_pids(data: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    for pod in std::fs::read_dir(data.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
    {
        for f in std::fs::read_dir(pod.path().join("pids"))
            .into_iter()
            .flatten()
            .flatten()
        {
            if let Ok(p) = std::fs::read_to_string(f.path())
                .unwrap_or_default()
                .trim()
                .parse()
            {
                pids.push(p);
            }
        }
    }
    pids.sort();
    pids
}

fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.contains(") Z "))
}

fn ready_replicas(up: &Up, data: &Path, name: &str) -> i64 {
    let out = up.cli(data, &["get", "deploy", name, "-o", "json"]);
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|d| d["status"]["readyReplicas"].as_i64())
        .unwrap_or(0)
}

/// `shipway up` killed with SIGKILL leaves pod processes running; the next start stops them (no
/// orphan survives) and the Deployment converges again. A graceful stop takes its processes down.
#[test]
fn pods_run_as_processes_and_none_is_orphaned_by_sigkill() {
    let data = tempfile::tempdir().unwrap();
    let app = tempfile::tempdir().unwrap();
    std::fs::write(app.path().join("VERSION"), "v1\n").unwrap();
    let out = Command::new(BIN)
        .args(["image", "import", "shell:v1"])
        .arg(app.path())
        .args(["--entrypoint", "/bin/sh", "-c"])
        .env("SHIPWAY_DATA", data.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("shell:v1 imported (sha256:"),
        "{}",
        text(&out.stdout)
    );
    let out = Command::new(BIN)
        .args(["image", "list"])
        .env("SHIPWAY_DATA", data.path())
        .output()
        .unwrap();
    assert!(
        text(&out.stdout).contains("shell:v1"),
        "{}",
        text(&out.stdout)
    );

    let up = Up::start(data.path());
    let deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      terminationGracePeriodSeconds: 2\n      containers:\n      - name: main\n        image: shell:v1\n        args: [\"echo hello from $HOSTNAME version $(cat VERSION); exec sleep 600\"]\n";
    let out = up.cli_with_stdin(data.path(), &["apply", "-f", "-"], deploy);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for(60, "2 ready replicas", || {
        ready_replicas(&up, data.path(), "web") == 2
    });
    wait_for(10, "the log line", || {
        text(&up.cli(data.path(), &["logs", "deploy/web"]).stdout).contains("version v1")
    });
    let out = up.cli(data.path(), &["logs", "deploy/web", "--tail", "1"]);
    assert!(
        text(&out.stdout).starts_with("hello from web-"),
        "{}",
        text(&out.stdout)
    );
    let first = pod_pids(data.path());
    assert_eq!(first.len(), 2);

    up.kill9();
    assert!(
        first.iter().all(|p| alive(*p)),
        "pod processes outlive a SIGKILLed server (separate process groups)"
    );

    let up = Up::start(data.path());
    wait_for(30, "the previous run's processes to be stopped", || {
        first.iter().all(|p| !alive(*p))
    });
    wait_for(60, "the Deployment to converge again", || {
        let pids = pod_pids(data.path());
        ready_replicas(&up, data.path(), "web") == 2
            && pids.len() == 2
            && pids.iter().all(|p| alive(*p) && !first.contains(p))
    });
    let second = pod_pids(data.path());

    // A graceful stop (SIGTERM) stops the pods' processes too.
    let mut up = up;
    Command::new("kill")
        .args(["-TERM", &up.child.id().to_string()])
        .status()
        .unwrap();
    let status = up.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(
        second.iter().all(|p| !alive(*p)),
        "no process outlives a graceful stop"
    );
}

/// `logs -f` streams a container's output and ends with the container; `--previous` shows the
/// instance before a restart.
#[test]
fn logs_follow_a_container_to_its_end_and_show_the_previous_instance() {
    let data = tempfile::tempdir().unwrap();
    import_shell_image(data.path());
    let up = Up::start(data.path());
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ticker\nspec:\n  containers:\n  - name: main\n    image: shell:v1\n    args: [\"for i in 1 2 3; do echo tick $i; sleep 0.3; done; exit 1\"]\n";
    let out = up.cli_with_stdin(data.path(), &["apply", "-f", "-"], pod);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for(20, "the container to start", || {
        let out = up.cli(data.path(), &["get", "pod", "ticker", "-o", "json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout).is_ok_and(|p| {
            p["status"]["containerStatuses"][0]["state"]
                .get("running")
                .is_some()
        })
    });
    let started = Instant::now();
    let out = up.cli(data.path(), &["logs", "ticker", "-f"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).ends_with("tick 3\n"),
        "{}",
        text(&out.stdout)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "follow ended when the container did"
    );
    wait_for(20, "a restart", || {
        let out = up.cli(data.path(), &["get", "pod", "ticker", "-o", "json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|p| p["status"]["containerStatuses"][0]["restartCount"].as_i64() >= Some(1))
    });
    let out = up.cli(data.path(), &["logs", "ticker", "--previous"]);
    assert_eq!(text(&out.stdout), "tick 1\ntick 2\ntick 3\n");
    let out = up.cli(data.path(), &["logs", "ticker", "-c", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("choose one of [main]"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn describe_svc_shows_its_traffic_policy() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let out = up.cli_with_stdin(
        data.path(),
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: web}\n  ports:\n  - {name: http, port: 80}\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = up.cli(data.path(), &["describe", "svc", "web"]);
    let described = text(&out.stdout);
    assert!(
        described.contains("Traffic Policy:  <none> (round robin over ready endpoints)\nEvents:"),
        "{described}"
    );
    let out = up.cli_with_stdin(
        data.path(),
        &["apply", "-f", "-"],
        "apiVersion: shipway.dev/v1alpha1\nkind: TrafficPolicy\nmetadata:\n  name: web\nspec:\n  backends:\n  - {name: stable, selector: {matchLabels: {track: stable}}, weight: 80}\n  - {name: canary, selector: {matchLabels: {track: canary}}, weight: 20}\n",
    );
    assert_eq!(
        text(&out.stdout),
        "trafficpolicy.shipway.dev/web created\n",
        "{}",
        text(&out.stderr)
    );
    let out = up.cli(data.path(), &["describe", "svc", "web"]);
    let described = text(&out.stdout);
    assert!(
        described.contains("Traffic Policy:\n  backends:\n  - name: stable\n"),
        "{described}"
    );
    assert!(described.contains("    weight: 20\n"), "{described}");
    // The proxy's status: no pod is ready, so neither backend selects one.
    let mut described = String::new();
    wait_for(10, "the policy's status in describe", || {
        described = text(&up.cli(data.path(), &["describe", "svc", "web"]).stdout);
        described.contains("  Ready endpoints:  stable 0, canary 0\n")
    });
    assert!(
        described.contains("  Warning:  NoReadyEndpoints: no backend selects a ready endpoint of Service web: its requests get 503\n"),
        "{described}"
    );
    let out = up.cli(data.path(), &["get", "trafficpolicies"]);
    let rows: Vec<String> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(rows[0], "NAME READY BACKENDS AGE", "{rows:?}");
    assert!(
        rows[1].starts_with("web False stable 80% (0 ready), canary 20% (0 ready) "),
        "{rows:?}"
    );
}

/// `shipway up --database postgres://...` keeps its state in PostgreSQL: a fresh data directory
/// (no SQLite file) sees what an earlier server stored.
#[test]
fn up_on_postgresql_keeps_state_in_the_database() {
    let Some(admin) = std::env::var("SHIPWAY_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        println!("SKIPPED (set SHIPWAY_TEST_POSTGRES_URL; `cargo xtask test` does)");
        return;
    };
    let name = format!("shipway_cli_{}", std::process::id());
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    // One statement per call: DROP/CREATE DATABASE cannot share a transaction.
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let (base, _) = admin.split_once('?').unwrap_or((&admin, ""));
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|s| base[s..].find('/').map(|i| s + i))
        .unwrap_or(base.len());
    let url = format!("{}/{name}", &base[..authority_end]);

    let first = tempfile::tempdir().unwrap();
    let up = Up::start_with(first.path(), &["--database", &url]);
    let out = up.cli_with_stdin(
        first.path(),
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: kept\ndata:\n  a: b\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    up.kill9();
    assert!(
        !first.path().join("shipway.db").exists(),
        "no SQLite file when PostgreSQL holds the state"
    );

    let second = tempfile::tempdir().unwrap();
    let up = Up::start_with(second.path(), &["--database", &url]);
    let out = up.cli(second.path(), &["get", "cm", "kept", "-o", "json"]);
    let cm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cm["data"]["a"], "b");
    // One server per database: a third, on a data directory of its own, would run every Pod again.
    let third = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["up", "--listen", "127.0.0.1:0", "--data"])
        .arg(third.path())
        .args(["--database", &url])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "another Shipway server is already using PostgreSQL database \"{name}\""
        )) && err.contains("--database"),
        "{err}"
    );
    drop(up);
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
}

/// `--proxy-access-log` prints a line per request through the proxy, even when SHIPWAY_LOG keeps
/// the rest of the server quiet.
#[test]
fn up_with_proxy_access_log_prints_every_request() {
    use std::io::Read;
    let data = tempfile::tempdir().unwrap();
    let up = Up::start_with_env(
        data.path(),
        &[
            "--proxy-access-log",
            "--proxy-upstream-timeout",
            "5s",
            "--proxy-connect-timeout",
            "500ms",
            "--proxy-header-timeout",
            "2s",
            "--proxy-workers",
            "1",
        ],
        &[("SHIPWAY_LOG", "warn")],
    );
    // No pod matches: the proxy answers 503 itself, which is logged like any request.
    let out = up.cli_with_stdin(
        data.path(),
        &["apply", "-f", "-"],
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector: {app: nobody}\n  ports:\n  - {name: http, port: 80}\n",
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let mut address = String::new();
    wait_for(20, "the Service's proxy address", || {
        let out = up.cli(data.path(), &["get", "svc", "web", "-o", "json"]);
        let svc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        address = svc["status"]["address"].as_str().unwrap_or_default().into();
        !address.is_empty()
    });
    let mut response = String::new();
    wait_for(20, "an answer from the proxy", || {
        let Ok(mut conn) = std::net::TcpStream::connect(&address) else {
            return false;
        };
        response.clear();
        conn.write_all(b"GET /through-the-proxy HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
            .and_then(|()| conn.read_to_string(&mut response))
            .is_ok()
            && !response.is_empty()
    });
    assert!(response.starts_with("HTTP/1.1 503"), "{response}");
    wait_for(10, "the access log line", || {
        up.log().contains("GET /through-the-proxy")
    });
    let log = up.log();
    let line = log
        .lines()
        .find(|l| l.contains("GET /through-the-proxy"))
        .unwrap();
    assert!(
        line.contains("shipway_proxy::access")
            && line.contains("default/web")
            && line.contains(" 503 "),
        "{line}"
    );
    // Written to a pipe, not a terminal: plain text, no colour codes.
    assert!(!log.contains('\x1b'), "{line:?}");
}

/// Bad proxy flags are usage errors (exit 2) that name the flag and the expected form, before
/// anything touches the data directory.
#[test]
fn up_refuses_bad_proxy_flags_and_names_them() {
    let data = tempfile::tempdir().unwrap();
    for (flag, value, says) in [
        (
            "--proxy-header-timeout",
            "10x",
            "expected a duration such as 500ms, 10s, 2m",
        ),
        (
            "--proxy-upstream-timeout",
            "0s",
            "must be greater than zero",
        ),
        (
            "--proxy-connect-timeout",
            "-1s",
            "must be greater than zero",
        ),
        ("--proxy-header-timeout", "10", "10 needs a unit"),
        ("--proxy-workers", "100000", "from 0 (one per core) to 1024"),
    ] {
        let out = Command::new(BIN)
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--proxy-access-log",
                "--data",
            ])
            .arg(data.path())
            .args([flag, value])
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {err}");
        assert!(
            err.contains(flag) && err.contains(says),
            "{flag} {value}: {err}"
        );
    }
    assert!(
        !data.path().join("shipway.lock").exists(),
        "refused before the data directory was used"
    );
}

/// Secrets as Kubernetes serves them: `stringData` is stored as base64 `data` and never given
/// back as sent; `describe` shows keys and sizes, never values; bad base64 is refused at apply.
#[test]
fn secrets_are_stored_as_base64_data_and_described_without_values() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let manifests = tempfile::tempdir().unwrap();
    let file = manifests.path().join("secret.yaml");
    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: hunter22\ndata:\n  user: YWRtaW4=\n",
    )
    .unwrap();
    let out = up.cli(data.path(), &["apply", "-f", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = up.cli(data.path(), &["get", "secret", "db", "-o", "json"]);
    let secret: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        secret["data"],
        serde_json::json!({"user": "YWRtaW4=", "password": "aHVudGVyMjI="})
    );
    assert_eq!(secret["type"], "Opaque");
    assert!(secret.get("stringData").is_none(), "{secret}");

    let out = up.cli(data.path(), &["describe", "secret", "db"]);
    let described = text(&out.stdout);
    assert!(
        described.contains("Data\n====\npassword:  8 bytes\nuser:      5 bytes\n"),
        "{described}"
    );
    assert!(
        !described.contains("hunter22") && !described.contains("aHVudGVyMjI="),
        "{described}"
    );

    std::fs::write(
        &file,
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: bad\ndata:\n  password: not*base64\n",
    )
    .unwrap();
    let out = up.cli(data.path(), &["apply", "-f", file.to_str().unwrap()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("data[password]: Invalid value: illegal base64 data at input byte 3"),
        "{err}"
    );
    assert!(!err.contains("not*base64"), "{err}");
}

/// A mistyped type is an error, as kubectl's "the server doesn't have a resource type", not an
/// empty list.
#[test]
fn get_of_an_unknown_type_fails_and_names_the_nearest_one() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let out = up.cli(data.path(), &["get", "deploymnt"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(
            "the server doesn't have a resource type \"deploymnt\" (did you mean \"deployments\"?)"
        ),
        "{err}"
    );
    assert!(!err.contains("No resources found"), "{err}");
}

/// The `ListenerReady` condition of Service `name`, once its status has one.
fn listener_condition(up: &Up, data: &Path, name: &str) -> serde_json::Value {
    let mut condition = serde_json::Value::Null;
    wait_for(20, "a ListenerReady condition", || {
        let out = up.cli(data, &["get", "svc", name, "-o", "json"]);
        let svc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        condition = svc["status"]["conditions"][0].clone();
        !condition.is_null()
    });
    condition
}

#[test]
fn a_service_address_is_exclusive_to_one_server_and_loopback_unless_allowed() {
    let listen = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap();
    let svc = |name: &str, listen: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  annotations: {{shipway.dev/listen: \"{listen}\"}}\nspec:\n  selector: {{app: web}}\n  ports:\n  - {{name: http, port: 80}}\n"
        )
    };
    let (first_data, second_data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = Up::start(first_data.path());
    let out = first.cli_with_stdin(
        first_data.path(),
        &["apply", "-f", "-"],
        &svc("web", &listen.to_string()),
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ready = listener_condition(&first, first_data.path(), "web");
    assert_eq!(ready["status"], "True", "{ready}");

    // A second `shipway up` on this machine cannot take it.
    let second = Up::start(second_data.path());
    let manifests = format!(
        "{}---\n{}",
        svc("web", &listen.to_string()),
        svc("public", "0.0.0.0:0")
    );
    let out = second.cli_with_stdin(second_data.path(), &["apply", "-f", "-"], &manifests);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let refused = listener_condition(&second, second_data.path(), "web");
    assert_eq!(refused["reason"], "BindFailed", "{refused}");
    let message = refused["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with(&format!(
            "cannot listen on {listen}: Address already in use"
        )),
        "{message}"
    );
    let public = listener_condition(&second, second_data.path(), "public");
    assert_eq!(public["reason"], "PublicAddressRefused", "{public}");
    assert!(
        public["message"]
            .as_str()
            .unwrap_or_default()
            .contains("--proxy-allow-public"),
        "{public}"
    );
    // The first still answers there (503: the Service has no pods), with its own proxy's body.
    let mut conn = std::net::TcpStream::connect(listen).unwrap();
    conn.write_all(b"GET / HTTP/1.1\r\nHost: web\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut conn, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("service default/web"), "{answer}");
}

/// kubectl habits: `--server host:port` without a scheme, a clear word when there is no token
/// before anything is sent, and `version` failing when the server cannot be reached.
#[test]
fn server_without_scheme_missing_token_and_unreachable_version() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let bare = up.server.trim_start_matches("http://").to_string();
    let out = Command::new(BIN)
        .args(["--server", &bare, "--data"])
        .arg(data.path())
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Server Version: "),
        "{}",
        text(&out.stdout)
    );

    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .args(["--server", &up.server, "--data"])
        .arg(empty.path())
        .args(["get", "pods"])
        .env_remove("SHIPWAY_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(&format!(
            "no token at {}",
            empty.path().join("admin.token").display()
        )),
        "{err}"
    );

    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let out = Command::new(BIN)
        .args(["--server", &dead_addr.to_string(), "--data"])
        .arg(data.path())
        .arg("version")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("Client Version: "));
    assert!(
        text(&out.stderr).contains(&format!("cannot reach Shipway at http://{dead_addr}")),
        "{}",
        text(&out.stderr)
    );
}

/// Help shows what a command uses and never the values of the environment it reads (a token or
/// a server address set in the shell would otherwise be printed to whoever reads the help).
#[test]
fn help_shows_only_the_flags_a_command_uses_and_no_environment_values() {
    let help = |args: &[&str]| {
        let out = Command::new(BIN)
            .args(args)
            .env("SHIPWAY_SERVER", "http://server-from-env:1")
            .env("SHIPWAY_TOKEN", "token-from-env")
            .env("SHIPWAY_DATA", "/data-from-env")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        text(&out.stdout)
    };
    for args in [
        &["get", "--help"][..],
        &["up", "--help"],
        &["run", "--help"],
    ] {
        let h = help(args);
        assert!(
            !h.contains("-from-env"),
            "{args:?} echoes the environment:\n{h}"
        );
    }
    let get = help(&["get", "--help"]);
    assert!(get.contains("--server") && get.contains("--token"), "{get}");
    for local in [
        &["run", "--help"][..],
        &["render", "--help"],
        &["image", "import", "--help"],
    ] {
        let h = help(local);
        assert!(
            !h.contains("--server") && !h.contains("--token"),
            "{local:?} shows server flags it never uses:\n{h}"
        );
    }
    // The hidden copies still parse where a script puts them.
    let out = Command::new(BIN)
        .args(["--server", "127.0.0.1:9", "render", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// kubectl's habits: several types at once, `all`, label columns, and `api-resources` listing
/// the kinds CRDs add.
#[test]
fn several_types_all_label_columns_and_api_resources() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let manifests = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  labels: {app: web, tier: front}\nspec:\n  ports:\n  - port: 80\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  labels: {app: web}\ndata: {a: \"1\"}\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: widgets.example.com\nspec:\n  group: example.com\n  names: {kind: Widget, plural: widgets, singular: widget, shortNames: [wd]}\n  scope: Namespaced\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n";
    let out = up.cli_with_stdin(data.path(), &["apply", "-f", "-"], manifests);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let out = up.cli(data.path(), &["get", "svc,cm", "-o", "name"]);
    assert_eq!(
        text(&out.stdout),
        "service/web\nconfigmap/settings\n",
        "{}",
        text(&out.stderr)
    );
    let out = up.cli(data.path(), &["get", "svc,configmaps"]);
    let table = text(&out.stdout);
    assert!(table.starts_with("NAME          TYPE"), "{table}");
    assert!(
        table.contains("\n\nNAME                 DATA   AGE\nconfigmap/settings   1 "),
        "{table}"
    );
    let out = up.cli(data.path(), &["get", "all", "-o", "name"]);
    assert_eq!(text(&out.stdout), "service/web\n", "{}", text(&out.stderr));

    let out = up.cli(data.path(), &["get", "svc", "-L", "tier", "--show-labels"]);
    let lines: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(header[header.len() - 2..], ["TIER", "LABELS"], "{lines:?}");
    assert!(
        lines[1].ends_with("   front   app=web,tier=front"),
        "{lines:?}"
    );

    let out = up.cli(data.path(), &["api-resources"]);
    let resources = text(&out.stdout);
    let widget = resources
        .lines()
        .find(|l| l.starts_with("widgets "))
        .unwrap_or_else(|| panic!("{resources}"));
    assert_eq!(
        widget.split_whitespace().collect::<Vec<_>>(),
        ["widgets", "wd", "example.com/v1", "true", "Widget"]
    );
    assert!(resources.starts_with("NAME "), "{resources}");
    assert!(
        resources.lines().nth(1).unwrap().starts_with("configmaps "),
        "the core group comes first:\n{resources}"
    );
    let out = up.cli(
        data.path(),
        &["api-resources", "--namespaced=false", "-o", "name"],
    );
    let names = text(&out.stdout);
    assert!(
        names.contains("namespaces\n") && !names.contains("pods\n"),
        "{names}"
    );
    assert!(
        names.contains("customresourcedefinitions.apiextensions.k8s.io\n"),
        "{names}"
    );

    // Watching several types is refused as kubectl does.
    let out = up.cli(data.path(), &["get", "svc,cm", "-w"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// `logs job/NAME` reads the Job's pod; `logs deploy/NAME` says which of its pods it chose.
#[test]
fn logs_of_a_workload_find_its_pods_and_say_which() {
    let data = tempfile::tempdir().unwrap();
    import_shell_image(data.path());
    let up = Up::start(data.path());
    let manifests = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: once\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: shell:v1\n        args: [\"echo job output\"]\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - name: main\n        image: shell:v1\n        args: [\"echo serving; sleep 60\"]\n";
    let out = up.cli_with_stdin(data.path(), &["apply", "-f", "-"], manifests);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    wait_for(30, "the job to complete", || {
        let out = up.cli(data.path(), &["get", "job", "once", "-o", "json"]);
        serde_json::from_slice::<serde_json::Value>(&out.stdout)
            .is_ok_and(|j| j["status"]["succeeded"].as_i64() == Some(1))
    });
    let out = up.cli(data.path(), &["logs", "job/once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "job output\n");
    assert_eq!(text(&out.stderr), "", "one pod: nothing to say");

    wait_for(30, "both pods to run and print", || {
        ready_replicas(&up, data.path(), "web") == 2
    });
    let mut out = up.cli(data.path(), &["logs", "deploy/web"]);
    wait_for(10, "the chosen pod to print", || {
        out = up.cli(data.path(), &["logs", "deploy/web"]);
        text(&out.stdout) == "serving\n"
    });
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    let chosen = stderr
        .strip_prefix("Found 2 pods, using pod/")
        .and_then(|s| s.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{stderr:?}"));
    assert!(chosen.starts_with("web-"), "{stderr}");
    let direct = up.cli(data.path(), &["logs", chosen]);
    assert_eq!(text(&direct.stdout), text(&out.stdout), "the pod it named");
}

/// `apply -k DIR` applies what `render DIR` prints; a directory without a kustomization is
/// refused as kubectl refuses it.
#[test]
fn apply_k_renders_the_kustomization_and_applies_it() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(
        tree.path().join("kustomization.yaml"),
        "namePrefix: dev-\nresources: [svc.yaml]\nconfigMapGenerator:\n- name: settings\n  literals: [mode=fast]\n",
    )
    .unwrap();
    std::fs::write(
        tree.path().join("svc.yaml"),
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  ports:\n  - port: 80\n",
    )
    .unwrap();
    let dir = tree.path().to_str().unwrap();
    let rendered = Command::new(BIN).args(["render", dir]).output().unwrap();
    let cm_name = text(&rendered.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("  name: dev-settings-")
                .map(|h| format!("dev-settings-{h}"))
        })
        .unwrap_or_else(|| panic!("{}", text(&rendered.stdout)));
    let out = up.cli(data.path(), &["apply", "-k", dir]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        format!("configmap/{cm_name} created\nservice/dev-web created\n")
    );
    let out = up.cli(data.path(), &["get", "cm", &cm_name, "-o", "json"]);
    let cm: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cm["data"]["mode"], "fast");

    let plain = tempfile::tempdir().unwrap();
    let out = up.cli(
        data.path(),
        &["apply", "-k", plain.path().to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unable to find one of 'kustomization.yaml'"),
        "{}",
        text(&out.stderr)
    );
    let out = up.cli(data.path(), &["apply", "-k", dir, "-f", dir]);
    assert_eq!(out.status.code(), Some(2), "-k and -f together");
}

/// The README's shell examples work as written: each `sh` block (but those marked
/// `<!-- readme-test: skip ... -->`) runs in order in one directory against a fresh server, with
/// `shipway` being this build.
#[test]
fn the_readme_examples_work_as_written() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .unwrap();
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    let mut skip = false;
    while let Some(line) = lines.next() {
        if line.starts_with("<!-- readme-test: skip") {
            skip = true;
        } else if line == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
            if !skip {
                blocks.push(block.join("\n"));
            }
            skip = false;
        }
    }
    assert!(
        blocks.len() >= 2,
        "the quick start's blocks are found: {blocks:?}"
    );

    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let work = tempfile::tempdir().unwrap();
    let mut printed = String::new();
    for block in &blocks {
        let script = format!("shipway() {{ \"$SHIPWAY_BIN\" \"$@\"; }}\n{block}\n");
        let out = Command::new("bash")
            .args(["-e", "-o", "pipefail", "-c", &script])
            .current_dir(work.path())
            .env("SHIPWAY_BIN", BIN)
            .env("SHIPWAY_SERVER", &up.server)
            .env("SHIPWAY_DATA", data.path())
            .env_remove("SHIPWAY_TOKEN")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "this README block failed ({}):\n{block}\n--- stdout\n{}--- stderr\n{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        printed.push_str(&text(&out.stdout));
    }
    assert!(
        printed.contains("deployment.apps/web created\n"),
        "{printed}"
    );
    // The canary example went through its timed pause to Healthy on the new image.
    let paused = printed.find("Paused - CanaryPauseStep\n");
    let healthy_after = paused.and_then(|at| printed[at..].find("\nHealthy\n"));
    assert!(healthy_after.is_some(), "{printed}");
    assert!(printed.contains("hello:v2 (stable)"), "{printed}");
    // The pipeline example's push ran its workflow, and `logs --follow` ended with the run.
    assert!(printed.contains("[test] testing "), "{printed}");
    assert!(printed.contains("[test] job success\n"), "{printed}");
    assert!(
        printed.lines().any(|l| l.starts_with("ci-ci-1 ")
            && l.contains(" success ")
            && l.contains(" ci-pusher ")),
        "{printed}"
    );
    // `logs` may read the pod before its first line is written; then the line comes later.
    let find = |out: &str| {
        out.lines()
            .find(|l| l.starts_with("hello from hello-"))
            .map(str::to_string)
    };
    let mut hello = find(&printed);
    wait_for(10, "the hello pod's greeting", || {
        if hello.is_none() {
            hello = find(&text(
                &up.cli(data.path(), &["logs", "deploy/hello"]).stdout,
            ));
        }
        hello.is_some()
    });
    let hello = hello.unwrap();
    let port = hello.rsplit(' ').next().unwrap();
    assert!(
        port.parse::<u16>().is_ok_and(|p| p != 8080),
        "a host port: {hello}"
    );
}

/// `get` reads a list larger than one page (500, kubectl's chunk size) whole.
#[test]
fn get_reads_every_page_of_a_long_list() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let manifests: String = (0..520)
        .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\n---\n"))
        .collect();
    let out = up.cli_with_stdin(data.path(), &["apply", "-f", "-"], &manifests);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = up.cli(data.path(), &["get", "cm", "-o", "name"]);
    let names: Vec<String> = text(&out.stdout).lines().map(String::from).collect();
    assert_eq!(names.len(), 520);
    assert_eq!(names.first().map(String::as_str), Some("configmap/cm-000"));
    assert_eq!(names.last().map(String::as_str), Some("configmap/cm-519"));
}

/// `shipway token`: an admin issues tokens per role, each role may do what it names and no
/// more, and a revoked token is refused at once.
#[test]
fn tokens_are_issued_per_role_listed_without_secrets_and_revoked() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let as_token = |token: &str, args: &[&str]| {
        let mut all = vec!["--token", token];
        all.extend_from_slice(args);
        up.cli(data.path(), &all)
    };
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {a: b}\n";

    let out = up.cli(
        data.path(),
        &["token", "create", "ci", "--role", "deployer"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let ci = text(&out.stdout).trim().to_string();
    assert!(
        ci.starts_with("shipway_") && !ci.contains(char::is_whitespace),
        "stdout is the secret alone: {ci:?}"
    );
    assert!(
        text(&out.stderr).contains("only time"),
        "{}",
        text(&out.stderr)
    );
    let out = up.cli(data.path(), &["token", "create", "reader"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let reader = text(&out.stdout).trim().to_string();

    let out = up.cli(data.path(), &["token", "list"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let list = text(&out.stdout);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    for row in [
        ["NAME", "USER", "ROLE", "EXPIRES"],
        ["admin", "admin", "admin", "never"],
        ["ci", "ci", "deployer", "never"],
        ["reader", "reader", "viewer", "never"],
    ] {
        assert!(rows.contains(&row.to_vec()), "{list}");
    }
    assert!(!list.contains(&ci) && !list.contains(&reader), "{list}");

    // The deployer applies; the viewer reads but may not write; neither manages tokens.
    let out = up.cli_with_stdin(data.path(), &["--token", &ci, "apply", "-f", "-"], manifest);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = as_token(&reader, &["get", "configmap", "settings"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = up.cli_with_stdin(
        data.path(),
        &["--token", &reader, "apply", "-f", "-"],
        manifest,
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Forbidden"),
        "{}",
        text(&out.stderr)
    );
    for token in [&ci, &reader] {
        let out = as_token(token, &["token", "list"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("Forbidden"),
            "{}",
            text(&out.stderr)
        );
    }

    // Refusals say why: a second token of one name, an unknown role, the admin token.
    let out = up.cli(data.path(), &["token", "create", "ci"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );
    // Invalid input exits 2, as an invalid manifest does.
    let out = up.cli(data.path(), &["token", "create", "x", "--role", "root"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("role"), "{}", text(&out.stderr));
    let out = up.cli(data.path(), &["token", "delete", "admin"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("cannot be deleted"),
        "{}",
        text(&out.stderr)
    );
    let out = up.cli(data.path(), &["token", "delete", "a/b"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not found"),
        "{}",
        text(&out.stderr)
    );

    let out = up.cli(data.path(), &["token", "delete", "ci"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "token \"ci\" deleted");
    let out = as_token(&ci, &["get", "configmap", "settings"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("Unauthorized"),
        "{}",
        text(&out.stderr)
    );
    let out = as_token(&reader, &["get", "configmap", "settings"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}

/// `shipway user` and `token create --user`: a token writes as its user, with the user's role,
/// until it expires, is revoked, or its user is deleted; who issued what is in the audit trail.
#[test]
fn users_own_tokens_that_write_as_them_until_they_expire() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let ok = |out: &Output| {
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    let out = up.cli(data.path(), &["token", "create", "--user", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("shipway user add NAME --role ROLE"),
        "{}",
        text(&out.stderr)
    );
    let added = ok(&up.cli(data.path(), &["user", "add", "alice", "--role", "deployer"]));
    assert_eq!(added, "user \"alice\" added with role deployer\n");
    let out = up.cli(data.path(), &["user", "add", "mallory", "--role", "root"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let alice = ok(&up.cli(
        data.path(),
        &["token", "create", "--user", "alice", "--expires", "1h"],
    ))
    .trim()
    .to_string();
    assert!(alice.starts_with("shipway_"), "{alice:?}");
    let list = ok(&up.cli(data.path(), &["token", "list"]));
    let row = list
        .lines()
        .find(|l| l.starts_with("alice-1 "))
        .unwrap_or_else(|| panic!("{list}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[..3], ["alice-1", "alice", "deployer"], "{list}");
    assert!(cells[3].ends_with('Z'), "an RFC 3339 expiry: {list}");
    let users = ok(&up.cli(data.path(), &["user", "list"]));
    let rows: Vec<Vec<&str>> = users
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAME", "ROLE", "TOKENS"],
            vec!["admin", "admin", "1"],
            vec!["alice", "deployer", "1"]
        ]
    );

    // What alice writes is hers in the audit trail.
    let manifest = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: by-alice}\ndata: {a: b}\n";
    ok(&up.cli_with_stdin(
        data.path(),
        &["--token", &alice, "apply", "-f", "-"],
        manifest,
    ));
    let events = ok(&up.cli(
        data.path(),
        &["events", "--for", "configmap/by-alice", "-o", "json"],
    ));
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let actors: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert_eq!(actors, ["alice"], "{events:#}");
    let events = ok(&up.cli(data.path(), &["events", "-o", "json"]));
    let events: serde_json::Value = serde_json::from_str(&events).unwrap();
    let issued = events
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "TokenIssued")
        .unwrap_or_else(|| panic!("{events:#}"));
    assert_eq!(issued["actor"], "admin", "{issued:#}");
    assert_eq!(issued["key"]["name"], "alice", "{issued:#}");

    // A short-lived token works, then stops working on its own.
    let brief = ok(&up.cli(
        data.path(),
        &[
            "token",
            "create",
            "brief",
            "--user",
            "alice",
            "--expires",
            "2s",
        ],
    ))
    .trim()
    .to_string();
    ok(&up.cli(
        data.path(),
        &["--token", &brief, "get", "configmap", "by-alice"],
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let out = up.cli(
            data.path(),
            &["--token", &brief, "get", "configmap", "by-alice"],
        );
        if out.status.code() == Some(1) {
            assert!(
                text(&out.stderr).contains("Unauthorized"),
                "{}",
                text(&out.stderr)
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the token never expired"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let list = ok(&up.cli(data.path(), &["token", "list"]));
    assert!(
        list.lines()
            .any(|l| l.starts_with("brief ") && l.ends_with("(expired)")),
        "{list}"
    );

    // Deleting the user revokes its tokens at once.
    let deleted = ok(&up.cli(data.path(), &["user", "delete", "alice"]));
    assert_eq!(deleted, "user \"alice\" deleted, 2 token(s) revoked\n");
    let out = up.cli(
        data.path(),
        &["--token", &alice, "get", "configmap", "by-alice"],
    );
    assert_eq!(out.status.code(), Some(1));
    let out = up.cli(data.path(), &["user", "delete", "admin"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
}

/// `shipway repo`: a hosted repository is created with its clone URL printed, an external one
/// is added with its Secret, both are listed and shown, a bad URL is refused, and delete removes
/// the object.
#[test]
fn repo_create_add_list_get_delete() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let out = up.cli(data.path(), &["repo", "create", "apps"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let url = format!("{}/git/apps.git", up.server);
    assert_eq!(text(&out.stdout), format!("{url}\n"));
    let out = up.cli(
        data.path(),
        &[
            "repo",
            "add",
            "upstream",
            "--url",
            "https://github.com/argoproj/argocd-example-apps.git",
            "--secret",
            "creds",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = up.cli(data.path(), &["repo", "add", "bad", "--url", "ftp://x"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("spec.url"),
        "{}",
        text(&out.stderr)
    );

    // The hosted repository's status says its URL once its bare repository exists.
    wait_for(10, "the hosted repository's status", || {
        let out = up.cli(data.path(), &["repo", "get", "apps", "-o", "json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["status"]["url"] == serde_json::json!(url)
    });
    assert!(data.path().join("git/apps.git/HEAD").is_file());
    let out = up.cli(data.path(), &["repo", "list"]);
    let list = text(&out.stdout);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec!["NAME", "TYPE", "URL"],
            vec!["apps", "hosted", url.as_str()],
            vec![
                "upstream",
                "external",
                "https://github.com/argoproj/argocd-example-apps.git"
            ],
        ],
        "{list}"
    );
    let out = up.cli(data.path(), &["repo", "get", "upstream"]);
    assert!(
        text(&out.stdout).contains("secretRef:\n    name: creds"),
        "{}",
        text(&out.stdout)
    );
    let out = up.cli(data.path(), &["repo", "delete", "upstream"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = up.cli(data.path(), &["repo", "get", "upstream"]);
    assert_eq!(out.status.code(), Some(1));
}

/// `shipway app`'s verbs as objects: create from flags (and refusing a different spec without
/// --upsert), list, a sync request as the `operation` field `argocd app sync` writes (one at a
/// time), refresh as Argo's annotation, rollback refused under auto-sync, delete with and
/// without the resources finalizer.
#[test]
fn app_verbs_write_what_argocd_writes() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let app_json = |name: &str| -> serde_json::Value {
        let out = up.cli(data.path(), &["app", "get", name, "-o", "json"]);
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let create = [
        "app",
        "create",
        "guestbook",
        "--repo",
        "http://127.0.0.1:7070/git/apps.git",
        "--path",
        "guestbook",
        "--dest-namespace",
        "web",
    ];
    let out = up.cli(data.path(), &create);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "application 'guestbook' created\n");
    let v = app_json("guestbook");
    assert_eq!(v["metadata"]["namespace"], "argocd");
    assert_eq!(
        v["spec"],
        serde_json::json!({
            "project": "default",
            "source": {"repoURL": "http://127.0.0.1:7070/git/apps.git", "path": "guestbook", "targetRevision": "HEAD"},
            "destination": {"server": "https://kubernetes.default.svc", "namespace": "web"},
        })
    );
    // The same again is fine; another spec needs --upsert.
    assert_eq!(up.cli(data.path(), &create).status.code(), Some(0));
    let mut changed = create.to_vec();
    changed.extend(["--sync-policy", "automated", "--self-heal"]);
    let out = up.cli(data.path(), &changed);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("use upsert flag to force update"),
        "{}",
        text(&out.stderr)
    );
    let out = up.cli(
        data.path(),
        &[
            "app",
            "create",
            "x",
            "--repo",
            "r",
            "--path",
            "p",
            "--self-heal",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let out = up.cli(data.path(), &["app", "list"]);
    let rows: Vec<Vec<String>> = text(&out.stdout)
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect();
    assert_eq!(
        rows[0][..6],
        [
            "NAME",
            "CLUSTER",
            "NAMESPACE",
            "PROJECT",
            "STATUS",
            "HEALTH"
        ]
    );
    assert_eq!(rows[1][0], "argocd/guestbook");
    assert_eq!(rows[1][6], "Manual");

    // A sync request is the operation field, with who asked; a second one waits its turn.
    let out = up.cli(
        data.path(),
        &[
            "app",
            "sync",
            "guestbook",
            "--prune",
            "--revision",
            "main",
            "--resource",
            "apps:Deployment:guestbook-ui",
            "--async",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        app_json("guestbook")["operation"],
        serde_json::json!({
            "sync": {"revision": "main", "prune": true, "resources": [{"group": "apps", "kind": "Deployment", "name": "guestbook-ui"}]},
            "initiatedBy": {"username": "shipway-cli"},
        })
    );
    let out = up.cli(data.path(), &["app", "sync", "guestbook", "--async"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("another operation is already in progress"));
    let out = up.cli(
        data.path(),
        &["app", "sync", "guestbook", "--resource", "Deployment/web"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));

    let out = up.cli(data.path(), &["app", "refresh", "guestbook"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        app_json("guestbook")["metadata"]["annotations"]["argocd.argoproj.io/refresh"],
        "normal"
    );

    let mut auto = create.to_vec();
    auto[2] = "auto";
    auto.extend(["--sync-policy", "automated"]);
    assert_eq!(up.cli(data.path(), &auto).status.code(), Some(0));
    let out = up.cli(data.path(), &["app", "rollback", "auto", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("rollback cannot be initiated when auto-sync is enabled"),
        "{}",
        text(&out.stderr)
    );
    let out = up.cli(data.path(), &["app", "history", "auto"]);
    let header: Vec<String> = text(&out.stdout)
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(header, ["ID", "DATE", "REVISION"]);

    let out = up.cli(data.path(), &["app", "get", "nope"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("application \"nope\" not found in namespace \"argocd\""));

    // Without cascade the Application goes at once; with it, Argo's resources finalizer makes
    // the controller delete its resources first (the gitops tests show what goes and stays).
    let out = up.cli(data.path(), &["app", "delete", "auto", "--cascade=false"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let out = up.cli(data.path(), &["app", "get", "auto"]);
    assert_eq!(out.status.code(), Some(1));
    let out = up.cli(data.path(), &["app", "delete", "guestbook"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("its resources go with it"));
    // Its repository does not exist, so it has no resources: the controller lets it go.
    wait_for(30, "the cascading delete to finish", || {
        let out = up.cli(data.path(), &["app", "get", "guestbook"]);
        out.status.code() == Some(1) && text(&out.stderr).contains("not found")
    });
}

/// The GitOps loop as a user drives it: push the guestbook to a hosted repository, create the
/// Application, `app sync` (waits, prints the result), a new commit synced, `app history`, and
/// `app rollback` to the first deployment restoring its image.
#[test]
fn app_sync_history_and_rollback_through_a_hosted_repository() {
    let data = tempfile::tempdir().unwrap();
    let up = Up::start(data.path());
    let src = tempfile::tempdir().unwrap();
    for tag in ["v5", "v6"] {
        let image = format!("gcr.io/google-samples/gb-frontend:{tag}");
        let out = up.cli(
            data.path(),
            &[
                "image",
                "import",
                &image,
                src.path().to_str().unwrap(),
                "--entrypoint",
                "/bin/sh",
                "-c",
                "exec sleep 600",
            ],
        );
        assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    }
    let out = up.cli(data.path(), &["repo", "create", "apps"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let url = text(&out.stdout).trim().to_string();
    let out = up.cli(
        data.path(),
        &["token", "create", "pusher", "--role", "deployer"],
    );
    let token = text(&out.stdout).trim().to_string();

    let work = tempfile::tempdir().unwrap();
    let guestbook = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/corpus/argo/example-apps/guestbook");
    let guestbook = std::env::var("SHIPWAY_CORPUS")
        .map(|c| Path::new(&c).join("argo/example-apps/guestbook"))
        .unwrap_or(guestbook);
    std::fs::create_dir(work.path().join("guestbook")).unwrap();
    for f in ["guestbook-ui-deployment.yaml", "guestbook-ui-svc.yaml"] {
        std::fs::copy(guestbook.join(f), work.path().join("guestbook").join(f)).unwrap();
    }
    let git = |args: &[&str]| git_in(work.path(), Some(&token), args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "guestbook v5"]);
    git(&["push", "-q", &url, "main"]);
    let first = git(&["rev-parse", "HEAD"]);

    let out = up.cli(
        data.path(),
        &[
            "app",
            "create",
            "guestbook",
            "--repo",
            &url,
            "--path",
            "guestbook",
            "--dest-namespace",
            "default",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let image = || {
        let out = up.cli(
            data.path(),
            &["get", "deploy", "guestbook-ui", "-o", "json"],
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let sync = |args: &[&str]| {
        let mut all = vec!["app", "sync", "guestbook", "--timeout", "90s"];
        all.extend(args);
        let out = up.cli(data.path(), &all);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}\n{}",
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    };
    let printed = sync(&[]);
    assert!(
        printed.contains("Phase:              Succeeded"),
        "{printed}"
    );
    assert!(
        printed.contains("successfully synced (all tasks run)"),
        "{printed}"
    );
    assert_eq!(image(), "gcr.io/google-samples/gb-frontend:v5");
    let out = up.cli(
        data.path(),
        &["app", "wait", "guestbook", "--timeout", "90s"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("Health Status:      Healthy"),
        "{}",
        text(&out.stdout)
    );
    // Rendered from a copy of the repository fetched with the CLI's token: what is live.
    let out = up.cli(data.path(), &["app", "manifests", "guestbook"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let manifests = text(&out.stdout);
    assert!(
        manifests.contains("kind: Deployment")
            && manifests.contains("kind: Service")
            && manifests.contains("image: gcr.io/google-samples/gb-frontend:v5"),
        "{manifests}"
    );
    let out = up.cli(data.path(), &["app", "diff", "guestbook"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "synced: no diff\n{}",
        text(&out.stdout)
    );
    assert_eq!(text(&out.stdout), "");

    let path = work.path().join("guestbook/guestbook-ui-deployment.yaml");
    let manifest = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, manifest.replace("gb-frontend:v5", "gb-frontend:v6")).unwrap();
    git(&["commit", "-qam", "guestbook v6"]);
    git(&["push", "-q", &url, "main"]);
    let second = git(&["rev-parse", "HEAD"]);
    let out = up.cli(
        data.path(),
        &["app", "diff", "guestbook", "--revision", "main"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let diff = text(&out.stdout);
    assert!(
        diff.contains("===== apps/Deployment default/guestbook-ui ======")
            && diff.contains("-      - image: gcr.io/google-samples/gb-frontend:v5")
            && diff.contains("+      - image: gcr.io/google-samples/gb-frontend:v6"),
        "{diff}"
    );
    assert!(!diff.contains("Service"), "only what differs: {diff}");
    // The push reaches the controller at once; the sync is the user's, at the new head.
    let printed = sync(&[]);
    assert!(
        printed.contains(&format!("Sync Revision:      {second}")),
        "{printed}"
    );
    assert_eq!(image(), "gcr.io/google-samples/gb-frontend:v6");

    let out = up.cli(data.path(), &["app", "history", "guestbook"]);
    let history = text(&out.stdout);
    let rows: Vec<Vec<&str>> = history
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{history}");
    assert!(
        history.contains(&first[..7]) && history.contains(&second[..7]),
        "{history}"
    );
    let first_id = rows
        .iter()
        .find(|r| r.last().is_some_and(|rev| rev.contains(&first[..7])))
        .map(|r| r[0].to_string())
        .unwrap();

    let out = up.cli(
        data.path(),
        &[
            "app",
            "rollback",
            "guestbook",
            &first_id,
            "--timeout",
            "90s",
        ],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(image(), "gcr.io/google-samples/gb-frontend:v5");
    // Git still says v6: after a rollback the app is OutOfSync, as in Argo CD.
    let out = up.cli(data.path(), &["app", "get", "guestbook", "--refresh"]);
    assert!(
        text(&out.stdout).contains("Sync Status:        OutOfSync"),
        "{}",
        text(&out.stdout)
    );
}

/// `shipway up` SIGKILLed in the middle of a sync (its PreSync hook running): after the restart
/// the operation completes, never left Running.
#[test]
fn a_sync_interrupted_by_sigkill_completes_after_restart() {
    let data = tempfile::tempdir().unwrap();
    import_shell_image(data.path());
    let repo = tempfile::tempdir().unwrap();
    std::fs::create_dir(repo.path().join("app")).unwrap();
    std::fs::write(
        repo.path().join("app/hook.yaml"),
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations:\n    argocd.argoproj.io/hook: PreSync\nspec:\n  backoffLimit: 2\n  template:\n    spec:\n      restartPolicy: Never\n      containers:\n      - name: main\n        image: shell:v1\n        args: [\"sleep 4\"]\n",
    )
    .unwrap();
    std::fs::write(
        repo.path().join("app/config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  mode: on\n",
    )
    .unwrap();
    let git = |args: &[&str]| git_in(repo.path(), None, args);
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-qm", "app"]);

    let up = Up::start(data.path());
    let url = format!("file://{}", repo.path().display());
    let out = up.cli(
        data.path(),
        &[
            "app",
            "create",
            "migrating",
            "--repo",
            &url,
            "--path",
            "app",
            "--sync-policy",
            "automated",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let app = |up: &Up| -> serde_json::Value {
        let out = up.cli(data.path(), &["app", "get", "migrating", "-o", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    };
    // Kill it while the hook runs: the operation is Running and nothing of the Sync phase is there.
    wait_for(60, "the PreSync hook to run", || {
        let v = app(&up);
        let jobs = up.cli(data.path(), &["get", "jobs", "-o", "name"]);
        v["status"]["operationState"]["phase"] == "Running"
            && text(&jobs.stdout).contains("migrate")
    });
    let out = up.cli(data.path(), &["get", "configmap", "settings"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the Sync phase waits for the hook"
    );
    up.kill9();

    let up = Up::start(data.path());
    wait_for(90, "the interrupted operation to end", || {
        app(&up)["status"]["operationState"]["phase"] != "Running"
    });
    let v = app(&up);
    let op = &v["status"]["operationState"];
    assert_eq!(op["phase"], "Succeeded", "{op:#}");
    assert_eq!(op["message"], "successfully synced (all tasks run)");
    let out = up.cli(data.path(), &["get", "configmap", "settings"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
}
