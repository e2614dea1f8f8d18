//! The local kubelet: runs each Pod as a group of processes (init containers first), probes them,
//! restarts them with kubelet's backoff, and reports status as kubelet does.
//!
//! The reconciler only starts and stops pod workers; a [`PodWorker`] owns one pod's processes for
//! their whole life and writes the pod's status. Pods carry a finalizer so the object outlives its
//! processes: deletion stops them first (grace period, then SIGKILL), then releases the object.
//!
//! Newcomers: this file reconciles; `worker.rs` runs a pod's containers, `sandbox.rs` prepares what
//! they run in, `env.rs` their environment, `probe.rs` their probes (a pure state machine) and
//! `status.rs` what the pod's status and events say.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shipway_controller::Cache;
use shipway_model::Object;
use shipway_store::{Store, StoreError};
use tokio::sync::watch;

use crate::controller::{Action, ReconcileError, Reconciler};
use crate::images::ImageStore;
use crate::workload;
use worker::PodWorker;

mod env;
mod probe;
mod sandbox;
mod status;
mod worker;

/// Keeps a Pod object until its processes are gone.
pub const FINALIZER: &str = "shipway.dev/local-runtime";
const ACTOR: &str = "kubelet";

/// Tunables; tests shrink the backoff so crash loops show in seconds, not minutes.
#[derive(Clone, Debug)]
pub struct KubeletConfig {
    pub data_dir: PathBuf,
    /// First restart delay after the first immediate restart; doubles each crash.
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// A container that ran this long resets its backoff.
    pub backoff_reset: Duration,
}

impl KubeletConfig {
    pub fn new(data_dir: &Path) -> KubeletConfig {
        KubeletConfig {
            data_dir: data_dir.to_path_buf(),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            backoff_reset: Duration::from_secs(600),
        }
    }
}

struct WorkerHandle {
    stop: watch::Sender<Option<Duration>>,
    done: watch::Receiver<bool>,
    grace: Duration,
}

pub struct Kubelet {
    store: Store,
    /// The process's shared view of the store: ConfigMaps and Secrets are read here.
    cache: Cache,
    config: Arc<KubeletConfig>,
    images: ImageStore,
    workers: Mutex<HashMap<String, WorkerHandle>>,
    /// Set on shutdown so no new worker starts while the others stop.
    stopping: std::sync::atomic::AtomicBool,
}

impl Kubelet {
    pub fn new(store: Store, cache: Cache, config: KubeletConfig) -> Kubelet {
        let images = ImageStore::new(&config.data_dir);
        Kubelet {
            store,
            cache,
            config: Arc::new(config),
            images,
            workers: Mutex::default(),
            stopping: Default::default(),
        }
    }

    /// The directory holding one pod's sandbox, volumes, logs and process records.
    pub fn pod_dir(data_dir: &Path, pod: &Object) -> PathBuf {
        data_dir
            .join("pods")
            .join(pod.metadata.uid.as_deref().unwrap_or("unknown"))
    }

    /// The directory a container runs in (its image's files and its volume mounts).
    pub fn container_root(data_dir: &Path, pod: &Object, container: &str) -> PathBuf {
        Self::pod_dir(data_dir, pod)
            .join("containers")
            .join(container)
            .join("root")
    }

    /// The log file of a container instance (`restart` counts from 0).
    pub fn log_path(data_dir: &Path, pod: &Object, container: &str, restart: i64) -> PathBuf {
        Self::pod_dir(data_dir, pod)
            .join("logs")
            .join(container)
            .join(format!("{restart}.log"))
    }

    async fn remove_finalizer(&self, pod: &Object) -> Result<(), ReconcileError> {
        let mut pod = pod.clone();
        pod.metadata.finalizers.retain(|f| f != FINALIZER);
        match self.store.update(pod.clone(), ACTOR).await {
            Ok(_) | Err(StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let _ = std::fs::remove_dir_all(Self::pod_dir(&self.config.data_dir, &pod));
        Ok(())
    }
}

impl Reconciler for Kubelet {
    fn kind(&self) -> (&'static str, &'static str) {
        ("", "Pod")
    }

    async fn reconcile(&self, pod: Arc<Object>) -> Result<Action, ReconcileError> {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if workload::is_terminating(&pod) {
            if !pod.metadata.finalizers.iter().any(|f| f == FINALIZER) {
                return Ok(Action::AwaitChange);
            }
            let grace = Duration::from_secs(
                workload::spec_i64(&pod, "/terminationGracePeriodSeconds", 30).max(0) as u64,
            );
            let done = {
                let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
                match workers.get(&uid) {
                    Some(w) => {
                        let _ = w.stop.send(Some(grace));
                        *w.done.borrow()
                    }
                    None => true,
                }
            };
            if !done {
                return Ok(Action::Requeue(Duration::from_millis(100)));
            }
            self.workers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&uid);
            self.remove_finalizer(&pod).await?;
            return Ok(Action::AwaitChange);
        }
        if self.stopping.load(std::sync::atomic::Ordering::SeqCst) {
            return Ok(Action::AwaitChange);
        }
        if !pod.metadata.finalizers.iter().any(|f| f == FINALIZER) {
            let mut with = (*pod).clone();
            with.metadata.finalizers.push(FINALIZER.to_string());
            self.store.update(with, ACTOR).await?;
            return Ok(Action::AwaitChange);
        }
        let mut workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
        if !workers.contains_key(&uid) {
            let (stop_tx, stop_rx) = watch::channel(None);
            let (done_tx, done_rx) = watch::channel(false);
            let worker = PodWorker {
                store: self.store.clone(),
                cache: self.cache.clone(),
                config: self.config.clone(),
                images: self.images.clone(),
                key: pod.key(),
                pod: (*pod).clone(),
                state: Arc::default(),
                changed: Arc::default(),
            };
            tokio::spawn(async move {
                worker.run(stop_rx).await;
                let _ = done_tx.send(true);
            });
            let grace = Duration::from_secs(
                workload::spec_i64(&pod, "/terminationGracePeriodSeconds", 30).max(0) as u64,
            );
            workers.insert(
                uid,
                WorkerHandle {
                    stop: stop_tx,
                    done: done_rx,
                    grace,
                },
            );
        }
        Ok(Action::AwaitChange)
    }

    /// `shipway up` is stopping: stop every pod's processes (each with its grace period) so none
    /// is left running unsupervised. The Pod objects stay; the next start runs them again.
    async fn shutdown(&self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let handles: Vec<watch::Receiver<bool>> = {
            let workers = self.workers.lock().unwrap_or_else(|p| p.into_inner());
            workers
                .values()
                .map(|w| {
                    let _ = w.stop.send(Some(w.grace));
                    w.done.clone()
                })
                .collect()
        };
        for mut done in handles {
            let _ = done.wait_for(|d| *d).await;
        }
    }
}
