//! The runtime's test harness, shared by the test files: a store, the image `sh:v1` (its process is
//! `/bin/sh -c`, so a container's `args` is its script), the local runtime on the shared cache, and
//! a stop that leaves no process behind.

use std::time::Duration;

use serde_json::Value;
use shipway_model::Object;
use shipway_runtime::images::ImageStore;
use shipway_runtime::{KubeletConfig, LocalRuntime};
use shipway_store::{ListQuery, Store};
use tokio_util::sync::CancellationToken;

pub struct Env {
    pub store: Store,
    pub data: tempfile::TempDir,
    shutdown: CancellationToken,
    runtime: Option<LocalRuntime>,
}

impl Env {
    pub async fn start() -> Env {
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
    pub async fn apply(&self, v: Value) -> Object {
        let obj: Object = serde_json::from_value(v).unwrap();
        self.store.apply(obj, "test").await.unwrap().0
    }
    /// Polls until `f` holds, failing with `what` after `secs`.
    pub async fn until<F, Fut>(&self, secs: u64, what: &str, f: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        shipway_testkit::eventually(Duration::from_secs(secs), what, f).await
    }
    pub async fn stop(mut self) {
        // Delete every workload so no process outlives the test, then stop the controllers.
        for d in self
            .store
            .list(&ListQuery::kind("apps", "Deployment"))
            .await
            .unwrap()
            .items
        {
            let _ = self.store.delete(&d.key(), "test").await;
        }
        for p in self
            .store
            .list(&ListQuery::kind("", "Pod"))
            .await
            .unwrap()
            .items
            .into_iter()
            .filter(|p| p.metadata.owner_references.is_empty())
        {
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
