//! The kubelet with real processes over a real SQLite store: what reaches a container (bytes of
//! Secrets and ConfigMaps), what its probes record, and the states and events kubectl would show.

mod common;

use common::Env;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipway_model::{Key, Object};
use shipway_runtime::images::ImageStore;
use shipway_runtime::kubelet::Kubelet;
use shipway_store::{AuditEvent, EventQuery, ListQuery};

impl Env {
    async fn pod(&self, name: &str) -> Option<Object> {
        self.store
            .get(&Key::new("", "Pod", "default", name))
            .await
            .unwrap()
    }

    /// The kubelet's events about pod `name` (reason, message), oldest first.
    async fn events(&self, name: &str) -> Vec<(String, String)> {
        let key = Key::new("", "Pod", "default", name);
        let events: Vec<AuditEvent> = self
            .store
            .events(&EventQuery::for_key(&key, 0))
            .await
            .unwrap();
        events
            .into_iter()
            .filter(|e| e.actor == "kubelet")
            .map(|e| (e.action, e.message))
            .collect()
    }

    /// Waits up to `secs` for an event of pod `name` with `reason` whose message contains `text`;
    /// returns its message.
    async fn event(&self, secs: u64, name: &str, reason: &str, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let events = self.events(name).await;
            if let Some((_, m)) = events.iter().find(|(r, m)| r == reason && m.contains(text)) {
                return m.clone();
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for a {reason} event {text:?} of pod {name}; events: {events:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Every version of pod `name` the store has kept, oldest first: a watch from version 0
    /// replays each change in order.
    async fn history(&self, name: &str) -> Vec<Object> {
        use futures_util::StreamExt;
        let upto = self.pod(name).await.unwrap().resource_version().unwrap();
        let mut changes = self
            .store
            .watch(ListQuery::kind("", "Pod").in_namespace("default"), 0);
        let mut out = Vec::new();
        while let Some(change) = changes.next().await {
            let change = change.unwrap();
            let version = change.resource_version();
            if change.object.metadata.name == name {
                out.push(change.object);
            }
            if version >= upto {
                break;
            }
        }
        out
    }
}

fn container_status(pod: &Object) -> Value {
    pod.status()
        .and_then(|s| s.pointer("/containerStatuses/0"))
        .cloned()
        .unwrap_or(Value::Null)
}

fn pod(name: &str, spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"}, "spec": spec})
}

/// Bytes that are not UTF-8 (0xff, a NUL, a lone continuation byte): base64 `/wD+gA==`.
const BINARY: [u8; 4] = [0xff, 0x00, 0xfe, 0x80];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_secret_data_and_binary_data_reach_volumes_byte_for_byte() {
    let env = Env::start().await;
    env.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "default"},
        "data": {"blob": "/wD+gA==", "text": "czNjcjN0"}}))
        .await;
    env.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "assets", "namespace": "default"},
        "data": {"plain": "hello"}, "binaryData": {"logo.bin": "/wD+gA=="}}))
        .await;
    env.apply(pod("bytes", json!({
        "volumes": [{"name": "sec", "secret": {"secretName": "keys"}}, {"name": "cfg", "configMap": {"name": "assets"}}],
        "containers": [{"name": "main", "image": "sh:v1",
            // The container itself copies what it sees, so the test reads through its mounts.
            "args": ["cat sec/blob > out.sec; cat cfg/logo.bin > out.cfg; touch copied; exec sleep 600"],
            "volumeMounts": [{"name": "sec", "mountPath": "/sec"}, {"name": "cfg", "mountPath": "/cfg"}]}],
    })))
    .await;
    env.until(20, "the container to copy its volumes", || async {
        env.pod("bytes").await.is_some_and(|p| {
            Kubelet::container_root(env.data.path(), &p, "main")
                .join("copied")
                .exists()
        })
    })
    .await;
    let p = env.pod("bytes").await.unwrap();
    let root = Kubelet::container_root(env.data.path(), &p, "main");
    assert_eq!(std::fs::read(root.join("out.sec")).unwrap(), BINARY);
    assert_eq!(std::fs::read(root.join("out.cfg")).unwrap(), BINARY);
    assert_eq!(std::fs::read(root.join("sec/text")).unwrap(), b"s3cr3t");
    assert_eq!(std::fs::read(root.join("cfg/plain")).unwrap(), b"hello");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_value_that_is_not_utf8_in_an_env_var_is_a_config_error_not_an_empty_value() {
    let env = Env::start().await;
    env.apply(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys", "namespace": "default"},
        "data": {"blob": "/wD+gA=="}}))
        .await;
    env.apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "assets", "namespace": "default"},
        "binaryData": {"logo.bin": "/wD+gA=="}}))
        .await;
    env.apply(pod("keyref", json!({"containers": [{"name": "main", "image": "sh:v1", "args": ["exec sleep 600"],
        "env": [{"name": "BLOB", "valueFrom": {"secretKeyRef": {"name": "keys", "key": "blob"}}}]}]})))
        .await;
    env.apply(pod(
        "envfrom",
        json!({"containers": [{"name": "main", "image": "sh:v1", "args": ["exec sleep 600"],
        "envFrom": [{"configMapRef": {"name": "assets"}}]}]}),
    ))
    .await;
    for (name, message) in [
        (
            "keyref",
            "env BLOB: couldn't use key blob in Secret keys: the value is not valid UTF-8 (invalid byte at offset 0); \
             environment variables hold text, mount the Secret as a volume to read binary data",
        ),
        (
            "envfrom",
            "couldn't use key logo.bin in ConfigMap assets: the value is not valid UTF-8 (invalid byte at offset 0); \
             environment variables hold text, mount the ConfigMap as a volume to read binary data",
        ),
    ] {
        env.until(20, &format!("{name} to explain itself"), || async {
            env.pod(name).await.is_some_and(|p| {
                let waiting = &container_status(&p)["state"]["waiting"];
                waiting["reason"] == "CreateContainerConfigError" && waiting["message"] == message
            })
        })
        .await;
    }
    env.stop().await;
}

/// The loopback port pod `p` was given for its container port `name`.
fn host_port(p: &Object, name: &str) -> u16 {
    let mappings = &p.status().unwrap()["portMappings"];
    mappings
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .and_then(|m| m["hostPort"].as_u64())
        .unwrap_or_else(|| panic!("no port {name} in {mappings}")) as u16
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_gates_and_liveness_restarts() {
    let env = Env::start().await;
    let flags = tempfile::tempdir().unwrap();
    let ready = flags.path().join("ready");
    let alive = flags.path().join("alive");
    std::fs::write(&alive, "").unwrap();
    env.apply(pod("probed", json!({"terminationGracePeriodSeconds": 2, "containers": [{
        "name": "main", "image": "sh:v1", "args": ["exec sleep 600"],
        "env": [{"name": "READY_FILE", "value": ready.to_str().unwrap()}],
        // Exec probes get the container's environment.
        "readinessProbe": {"exec": {"command": ["sh", "-c", "test -f \"$READY_FILE\" || { echo no $READY_FILE; exit 1; }"]}, "periodSeconds": 1},
        "livenessProbe": {"exec": {"command": ["test", "-f", alive.to_str().unwrap()]}, "periodSeconds": 1, "failureThreshold": 2},
    }]})))
    .await;
    // Evidence that the readiness probe ran and failed its threshold (three times), in kubelet's
    // words with the command's output; only then is "not ready" worth asserting.
    let failed = format!("Readiness probe failed: no {}", ready.display());
    env.until(20, "three readiness failures", || async {
        env.events("probed")
            .await
            .iter()
            .filter(|(r, m)| r == "Unhealthy" && *m == failed)
            .count()
            >= 3
    })
    .await;
    let p = env.pod("probed").await.unwrap();
    let cs = container_status(&p);
    assert!(cs["state"].get("running").is_some(), "{cs}");
    assert_eq!(
        cs["ready"], false,
        "not ready while the readiness probe fails: {cs}"
    );
    assert!(
        p.status().unwrap()["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "False"),
        "{p:?}"
    );
    std::fs::write(&ready, "").unwrap();
    env.until(10, "ready", || async {
        env.pod("probed")
            .await
            .is_some_and(|p| container_status(&p)["ready"] == true)
    })
    .await;

    std::fs::remove_file(&alive).unwrap();
    env.event(
        20,
        "probed",
        "Killing",
        "Container main failed liveness probe, will be restarted",
    )
    .await;
    let liveness = env
        .event(5, "probed", "Unhealthy", "Liveness probe failed: ")
        .await;
    assert_eq!(
        liveness,
        format!(
            "Liveness probe failed: command \"test -f {}\" exited with exit status: 1",
            alive.display()
        )
    );
    std::fs::write(&alive, "").unwrap();
    env.until(20, "a liveness restart", || async {
        env.pod("probed")
            .await
            .is_some_and(|p| container_status(&p)["restartCount"].as_i64().unwrap_or(0) >= 1)
    })
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_and_tcp_probes_use_the_ports_the_pod_was_given() {
    let env = Env::start().await;
    // Each serves HTTP on its first port ($PORT) after two seconds; "admin" is never served.
    let ports =
        json!([{"name": "web", "containerPort": 8000}, {"name": "admin", "containerPort": 8001}]);
    for (name, probe) in [
        (
            "http",
            json!({"httpGet": {"path": "/", "port": "web"}, "periodSeconds": 1}),
        ),
        (
            "tcp",
            json!({"tcpSocket": {"port": 8000}, "periodSeconds": 1}),
        ),
        (
            "wrong",
            json!({"tcpSocket": {"port": 8001}, "periodSeconds": 1}),
        ),
        (
            "unnamed",
            json!({"httpGet": {"path": "/", "port": "metrics"}, "periodSeconds": 1}),
        ),
    ] {
        env.apply(pod(name, json!({"terminationGracePeriodSeconds": 2, "containers": [{"name": "main", "image": "sh:v1",
            "args": ["sleep 2; exec python3 -m http.server --bind 127.0.0.1 $PORT"],
            "ports": ports, "readinessProbe": probe}]})))
        .await;
    }
    let mut given = std::collections::HashMap::new();
    for name in ["http", "tcp", "wrong"] {
        env.until(20, "port mappings", || async {
            env.pod(name).await.is_some_and(|p| {
                p.status()
                    .is_some_and(|s| s["portMappings"].as_array().is_some_and(|m| m.len() == 2))
            })
        })
        .await;
        let p = env.pod(name).await.unwrap();
        given.insert(name, (host_port(&p, "web"), host_port(&p, "admin")));
    }
    // Before the app listens, the probes fail on the ports the pod was given.
    let (web, _) = given["http"];
    env.event(20, "http", "Unhealthy", &format!(
        "Readiness probe failed: Get \"http://127.0.0.1:{web}/\": dial tcp 127.0.0.1:{web}: connect: connection refused"
    ))
    .await;
    let (web, _) = given["tcp"];
    env.event(
        20,
        "tcp",
        "Unhealthy",
        &format!("Readiness probe failed: dial tcp 127.0.0.1:{web}: connect: connection refused"),
    )
    .await;
    for name in ["http", "tcp"] {
        env.until(30, &format!("{name} probe to pass"), || async {
            env.pod(name)
                .await
                .is_some_and(|p| container_status(&p)["ready"] == true)
        })
        .await;
    }
    // The probe on a port nobody serves fails every time, while the pod's web port answers.
    let (web, admin) = given["wrong"];
    let refused =
        format!("Readiness probe failed: dial tcp 127.0.0.1:{admin}: connect: connection refused");
    env.until(30, "three failures of the wrong port", || async {
        env.events("wrong")
            .await
            .iter()
            .filter(|(_, m)| *m == refused)
            .count()
            >= 3
    })
    .await;
    env.until(10, "the wrong pod's app to listen", || async {
        tokio::net::TcpStream::connect(("127.0.0.1", web))
            .await
            .is_ok()
    })
    .await;
    env.event(
        20,
        "unnamed",
        "Unhealthy",
        "Readiness probe failed: port \"metrics\" not found in container main",
    )
    .await;
    for name in ["wrong", "unnamed"] {
        // Every status the pod ever had, not a sample: never ready.
        let history = env.history(name).await;
        assert!(history.len() >= 3, "{name}: {history:?}");
        for p in &history {
            let cs = container_status(p);
            assert_ne!(cs["ready"], true, "{name} was ready once: {cs}");
        }
        assert!(
            container_status(history.last().unwrap())["state"]
                .get("running")
                .is_some()
        );
    }
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_image_is_err_image_pull_then_image_pull_back_off_until_it_is_imported() {
    let env = Env::start().await;
    env.apply(pod(
        "web",
        json!({"terminationGracePeriodSeconds": 2, "containers": [{"name": "web", "image": "web:v1", "args": ["exec sleep 600"]}]}),
    ))
    .await;
    let missing = "image \"web:v1\" not found in the local image store; import it with `shipway image import web:v1 DIR --entrypoint CMD`";
    let waiting = |reason: &'static str, message: String| {
        let env = &env;
        async move {
            env.until(20, reason, || async {
                env.pod("web").await.is_some_and(|p| {
                    let w = &container_status(&p)["state"]["waiting"];
                    w["reason"] == reason && w["message"] == message.as_str()
                })
            })
            .await
        }
    };
    waiting("ErrImagePull", missing.to_string()).await;
    env.event(
        5,
        "web",
        "Failed",
        &format!("Failed to pull image \"web:v1\": {missing}"),
    )
    .await;
    env.event(5, "web", "Failed", "Error: ErrImagePull").await;
    waiting(
        "ImagePullBackOff",
        format!("Back-off pulling image \"web:v1\": {missing}"),
    )
    .await;
    env.event(5, "web", "BackOff", "Back-off pulling image \"web:v1\"")
        .await;
    env.event(5, "web", "Failed", "Error: ImagePullBackOff")
        .await;
    assert_eq!(
        env.pod("web").await.unwrap().status().unwrap()["reason"],
        "ImagePullBackOff"
    );

    // Doing what the message says starts the container.
    let src = env.data.path().join("web-src");
    std::fs::create_dir_all(&src).unwrap();
    ImageStore::new(env.data.path())
        .import("web:v1", &src, &["/bin/sh".into(), "-c".into()], &[])
        .unwrap();
    env.event(30, "web", "Started", "Started container web")
        .await;
    let lifecycle: Vec<(String, String)> = env
        .events("web")
        .await
        .into_iter()
        .filter(|(r, _)| ["Pulled", "Created", "Started"].contains(&r.as_str()))
        .collect();
    assert_eq!(
        lifecycle,
        [
            (
                "Pulled",
                "Container image \"web:v1\" already present on machine"
            ),
            ("Created", "Created container web"),
            ("Started", "Started container web"),
        ]
        .map(|(r, m)| (r.to_string(), m.to_string()))
    );
    env.until(10, "running", || async {
        env.pod("web").await.is_some_and(|p| {
            container_status(&p)["state"].get("running").is_some()
                && p.status().unwrap().get("reason").is_none()
        })
    })
    .await;
    let key = env.pod("web").await.unwrap().key();
    env.store.delete(&key, "test").await.unwrap();
    env.event(10, "web", "Killing", "Stopping container web")
        .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crash_loop_backs_off_with_kubelets_words_and_events() {
    let env = Env::start().await;
    env.apply(pod(
        "crash",
        json!({"containers": [{"name": "main", "image": "sh:v1", "args": ["echo dying; exit 3"]}]}),
    ))
    .await;
    let uid = {
        env.until(10, "the pod", || async { env.pod("crash").await.is_some() })
            .await;
        env.pod("crash").await.unwrap().metadata.uid.unwrap()
    };
    let pod_ref = format!("crash_default({uid})");
    env.event(
        20,
        "crash",
        "BackOff",
        &format!("Back-off restarting failed container main in pod {pod_ref}"),
    )
    .await;
    env.until(20, "CrashLoopBackOff", || async {
        env.pod("crash").await.is_some_and(|p| {
            let w = &container_status(&p)["state"]["waiting"];
            w["reason"] == "CrashLoopBackOff"
                && w["message"].as_str().is_some_and(|m| {
                    m.starts_with("back-off ")
                        && m.ends_with(&format!(" restarting failed container=main pod={pod_ref}"))
                })
        })
    })
    .await;
    let started = env
        .events("crash")
        .await
        .iter()
        .filter(|(r, m)| r == "Started" && m == "Started container main")
        .count();
    assert!(started >= 2, "one Started event per run: {started}");
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configuration_error_is_a_failed_event() {
    let env = Env::start().await;
    env.apply(pod(
        "nokey",
        json!({"containers": [{"name": "main", "image": "sh:v1", "args": ["exec sleep 600"],
            "env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "absent"}}}]}]}),
    ))
    .await;
    env.event(
        20,
        "nokey",
        "Failed",
        "Error: env X: ConfigMap \"settings\" not found",
    )
    .await;
    env.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configmap_and_secret_volumes_follow_their_objects_while_the_pod_runs() {
    let env = Env::start().await;
    let cm = |data: Value| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "default"}, "data": data});
    let secret = |data: Value| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "creds", "namespace": "default"}, "data": data});
    env.apply(cm(json!({"greeting": "hello", "old": "x"})))
        .await;
    env.apply(secret(json!({"token": "djE="}))).await;
    env.apply(pod("live", json!({"terminationGracePeriodSeconds": 2,
        "volumes": [{"name": "cfg", "configMap": {"name": "settings"}}, {"name": "sec", "secret": {"secretName": "creds", "items": [{"key": "token", "path": "token"}]}}],
        "containers": [{"name": "main", "image": "sh:v1", "args": ["exec sleep 600"],
            "volumeMounts": [{"name": "cfg", "mountPath": "/cfg"}, {"name": "sec", "mountPath": "/sec"}]}],
    })))
    .await;
    env.until(20, "running", || async {
        env.pod("live")
            .await
            .is_some_and(|p| container_status(&p)["state"].get("running").is_some())
    })
    .await;
    let root = Kubelet::container_root(env.data.path(), &env.pod("live").await.unwrap(), "main");
    let read = |rel: &str| std::fs::read(root.join(rel)).ok();
    assert_eq!(read("cfg/greeting").as_deref(), Some(&b"hello"[..]));
    assert_eq!(read("sec/token").as_deref(), Some(&b"v1"[..]));

    env.apply(cm(json!({"greeting": "bonjour"}))).await;
    env.apply(secret(json!({"token": "djI="}))).await;
    env.until(10, "the volumes to follow", || async {
        read("cfg/greeting").as_deref() == Some(&b"bonjour"[..])
            && read("cfg/old").is_none()
            && read("sec/token").as_deref() == Some(&b"v2"[..])
    })
    .await;
    // A key that `items` names goes away: the file stays as it was, and the event says why.
    env.apply(secret(json!({"other": "eA=="}))).await;
    env.event(10, "live", "FailedMount",
        "MountVolume.SetUp failed for volume \"sec\" : volume sec: Secret default/creds has no key \"token\"")
        .await;
    assert_eq!(read("sec/token").as_deref(), Some(&b"v2"[..]));
    let cs = container_status(&env.pod("live").await.unwrap());
    assert_eq!(cs["restartCount"], 0, "config changes do not restart: {cs}");
    env.stop().await;
}
