//! Shipway's local runtime: Kubernetes workloads as supervised local processes, no cluster needed.
//!
//! Newcomers: start with [`controller::Controller`] (each controller on `shipway-controller`'s runner
//! and the shared cache), then [`deployment`] → [`replicaset`] → [`kubelet`] (Deployments make ReplicaSets, which
//! make Pods, which the kubelet runs as processes). [`images`] is the local OCI image store.
//! [`job`] runs Jobs, [`service`] publishes each Service's endpoints, [`gc`] deletes orphans.
//! [`LocalRuntime::start`] wires them into `shipway up`.
//!
//! *Architecture Invariant*: controllers talk to each other only through objects in the store.

pub mod admission;
pub mod confine;
pub mod controller;
pub mod deployment;
pub mod gc;
pub mod images;
pub mod job;
pub mod kubelet;
pub mod private;
pub mod process;
pub mod replicaset;
pub mod service;
pub mod workload;

use std::future::Future;

use shipway_controller::{Cache, Clock};
use shipway_model::{Key, Object};
use shipway_store::{ApplyOutcome, DeleteOutcome, Store, StoreError};
use tokio_util::sync::CancellationToken;

pub use kubelet::KubeletConfig;

/// The controllers of the local runtime, running until the token is cancelled.
pub struct LocalRuntime {
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl LocalRuntime {
    /// Starts the runtime's controllers on `cache`, the process's shared view of `store` (see
    /// `shipway_controller::Reflector`); writes go to `store`.
    pub fn start(
        store: Store,
        cache: Cache,
        config: KubeletConfig,
        shutdown: CancellationToken,
    ) -> LocalRuntime {
        let clock = Clock::new();
        let tasks = vec![
            tokio::spawn(
                controller::Controller::new(
                    cache.clone(),
                    deployment::DeploymentController {
                        store: store.clone(),
                        cache: cache.clone(),
                        clock,
                    },
                )
                .run(shutdown.clone()),
            ),
            tokio::spawn(
                controller::Controller::new(
                    cache.clone(),
                    replicaset::ReplicaSetController {
                        store: store.clone(),
                        cache: cache.clone(),
                        clock,
                    },
                )
                .run(shutdown.clone()),
            ),
            tokio::spawn(
                controller::Controller::new(
                    cache.clone(),
                    job::JobController {
                        store: store.clone(),
                        cache: cache.clone(),
                        clock,
                        backoff_base: config.backoff_base,
                    },
                )
                .run(shutdown.clone()),
            ),
            tokio::spawn(
                controller::Controller::new(
                    cache.clone(),
                    service::EndpointsController {
                        store: store.clone(),
                        cache: cache.clone(),
                    },
                )
                .run(shutdown.clone()),
            ),
            tokio::spawn(gc::run(store.clone(), cache.clone(), shutdown.clone())),
            tokio::spawn(
                controller::Controller::new(
                    cache.clone(),
                    kubelet::Kubelet::new(store, cache, config),
                )
                .run(shutdown),
            ),
        ];
        LocalRuntime { tasks }
    }

    /// Waits for every controller to stop.
    pub async fn join(self) {
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Where applications run: what GitOps syncs to. The local runtime keeps desired state in the
/// store, where its controllers pick it up; a Kubernetes runtime applies to a cluster instead.
pub trait Runtime: Send + Sync {
    fn name(&self) -> &'static str;
    /// Creates or updates `obj`; says whether anything changed.
    fn apply(
        &self,
        obj: Object,
        actor: &str,
    ) -> impl Future<Output = Result<(Object, ApplyOutcome), StoreError>> + Send;
    /// Deletes an object; false when it did not exist. Dependents go with it.
    fn delete(
        &self,
        key: &Key,
        actor: &str,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// The live object, with the status its controllers report.
    fn observe(&self, key: &Key)
    -> impl Future<Output = Result<Option<Object>, StoreError>> + Send;
}

/// The local runtime as a [`Runtime`]: objects go to the store the local controllers watch.
#[derive(Clone)]
pub struct StoreRuntime {
    pub store: Store,
}

impl Runtime for StoreRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    /// Goes through admission first, so a sync stores only what the API would accept.
    async fn apply(&self, obj: Object, actor: &str) -> Result<(Object, ApplyOutcome), StoreError> {
        let obj = admission::admit(&self.store, obj)
            .await?
            .map_err(|invalid| StoreError::Invalid {
                key: invalid.key,
                message: invalid
                    .problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            })?;
        self.store.apply(obj, actor).await
    }

    async fn delete(&self, key: &Key, actor: &str) -> Result<bool, StoreError> {
        match self.store.delete(key, actor).await {
            Ok(DeleteOutcome::Deleted(_) | DeleteOutcome::Terminating(_)) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn observe(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        self.store.get(key).await
    }
}
