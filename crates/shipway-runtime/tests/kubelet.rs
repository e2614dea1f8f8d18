//! The kubelet with real processes over a real SQLite store: what reaches a container (bytes of
//! Secrets and ConfigMaps), what its probes record, and the states and events kubectl would show.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use shipway_model::{Key, Object};
use shipway_runtime::images::ImageStore;
use shipway_runtime::kubelet::Kubelet;
use shipway_runtime::{KubeletConfig, LocalRuntime};
use shipway_store::{ListQuery, Store};
use tokio_util::sync::CancellationToken;

struct Env {
    store: Store,
    data: tempfile::TempDir,
    shutdown: CancellationToken,
    runtime: Option<LocalRuntime>,
}

impl Env {
    async fn start() -> Env {
        let data = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&data.path().join("shipway.db"))
            .await
            .unwrap();
        // An image whose default process is the shell: each test says what to run.
        let app = data.path().join("app-src");
        std::fs::create_dir_all(&app).unwrap();
        std::fs::write(app.join("README"), "test image\n").unwrap();
        ImageStore::new(data.path())
            .import("sh:v1", &app, &["/bin/sh".into(), "-c".into()], &[])
            .unwrap();
        let mut config = KubeletConfig::new(data.path());
        config.backoff_base = Duration::from_millis(300);
        config.backoff_max = Duration::from_secs(2);
        let shutdown = CancellationToken::new();
        let (cache, _feed) = shipway_controller::Reflector::spawn(store.clone(), shutdown.clone());
        let runtime = LocalRuntime::start(store.clone(), cache, config, shutdown.clone());
        Env {
            store,
            data,
            shutdown,
            runtime: Some(runtime),
        }
    }

    async fn apply(&self, v: Value) -> Object {
        let obj: Object = serde_json::from_value(v).unwrap();
        self.store.apply(obj, "test").await.unwrap().0
    }

    async fn pod(&self, name: &str) -> Option<Object> {
        self.store
            .get(&Key::new("", "Pod", "default", name))
            .await
            .unwrap()
    }

    /// Polls until `f` holds, failing with `what` after `secs`.
    async fn until<F, Fut>(&self, secs: u64, what: &str, mut f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + Duration::from_secs(secs);
        while !f().await {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        // Delete every pod so no process outlives the test, then stop the controllers.
        let pods = self.store.list(&ListQuery::kind("", "Pod")).await.unwrap();
        for p in pods.items {
            let _ = self.store.delete(&p.key(), "test").await;
        }
        let store = self.store.clone();
        self.until(30, "pods to be gone", || {
            let store = store.clone();
            async move {
                store
                    .list(&ListQuery::kind("", "Pod"))
                    .await
                    .unwrap()
                    .items
                    .is_empty()
            }
        })
        .await;
        self.shutdown.cancel();
        self.runtime.take().unwrap().join().await;
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
