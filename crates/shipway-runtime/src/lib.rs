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
mod logs;
pub mod private;
pub mod process;
pub mod replicaset;
pub mod service;
pub mod workload;

use std::path::PathBuf;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use shipway_controller::{Cache, Clock};
use shipway_model::{Actor, Invalid, Key, Object};
pub use shipway_store::{ApplyOutcome, DeleteOutcome};
use shipway_store::{Store, StoreError};
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

/// Why a [`Runtime`] call failed, in the runtime's own terms: a Kubernetes runtime reports the
/// same kinds from its API server as the local one from its store.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct RuntimeError {
    pub kind: RuntimeErrorKind,
    /// Names the object and says what to do, as kubectl words it.
    pub message: String,
    /// Every problem, for `Invalid` (`spec.replicas: Invalid value: ...`).
    pub details: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeErrorKind {
    /// Refused by admission or by the store's own checks.
    Invalid,
    /// The request itself is wrong (an unknown container, a bad continue token).
    BadRequest,
    NotFound,
    AlreadyExists,
    /// Written meanwhile by someone else: read again and retry.
    Conflict,
    /// The history or token asked for is too old.
    Expired,
    /// The runtime's backend failed; `retryable` says whether the same call may succeed later.
    Unavailable {
        retryable: bool,
    },
}

impl RuntimeError {
    fn new(kind: RuntimeErrorKind, message: String) -> RuntimeError {
        RuntimeError {
            kind,
            message,
            details: Vec::new(),
        }
    }

    pub fn not_found(message: String) -> RuntimeError {
        RuntimeError::new(RuntimeErrorKind::NotFound, message)
    }

    pub fn bad_request(message: String) -> RuntimeError {
        RuntimeError::new(RuntimeErrorKind::BadRequest, message)
    }

    /// Whether repeating the same call may succeed without changing it.
    pub fn is_retryable(&self) -> bool {
        self.kind == RuntimeErrorKind::Unavailable { retryable: true }
    }
}

impl From<StoreError> for RuntimeError {
    fn from(e: StoreError) -> RuntimeError {
        use RuntimeErrorKind as K;
        let kind = match &e {
            StoreError::NotFound(_) => K::NotFound,
            StoreError::AlreadyExists(_) => K::AlreadyExists,
            StoreError::Conflict { .. } => K::Conflict,
            StoreError::Invalid { .. } => K::Invalid,
            StoreError::InvalidContinue(_) => K::BadRequest,
            StoreError::Expired { .. } | StoreError::ContinueExpired => K::Expired,
            StoreError::Backend { retryable, .. } => K::Unavailable {
                retryable: *retryable,
            },
        };
        RuntimeError::new(kind, e.to_string())
    }
}

impl From<Invalid> for RuntimeError {
    fn from(invalid: Invalid) -> RuntimeError {
        RuntimeError {
            kind: RuntimeErrorKind::Invalid,
            message: invalid.to_string(),
            details: invalid.problems.iter().map(ToString::to_string).collect(),
        }
    }
}

/// How to apply: who writes (for the audit trail) and whether only to try.
#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub actor: Actor,
    /// Admit and compute the outcome, write nothing (Kubernetes' `dryRun=All`).
    pub dry_run: bool,
}

impl ApplyOptions {
    pub fn by(actor: Actor) -> ApplyOptions {
        ApplyOptions {
            actor,
            dry_run: false,
        }
    }
}

/// Which output of a Pod's container to read, as `kubectl logs` asks for it.
#[derive(Clone, Debug, Default)]
pub struct LogOptions {
    /// `None`: the Pod's only container (an error naming the choices if there are several).
    pub container: Option<String>,
    /// Keep the stream open for new output until the container instance ends.
    pub follow: bool,
    /// Only the last `n` lines of what was written so far.
    pub tail: Option<usize>,
    /// The instance before the last restart.
    pub previous: bool,
}

/// A container's output in chunks as it is read; ends when there is no more to come.
pub type LogStream = BoxStream<'static, Result<Vec<u8>, RuntimeError>>;

/// Where applications run: what GitOps syncs to and the API serves from. The local runtime
/// keeps desired state in the store, where its controllers pick it up; a Kubernetes runtime
/// applies to a cluster instead. Object-safe, so a server holds an `Arc<dyn Runtime>`.
pub trait Runtime: Send + Sync {
    fn name(&self) -> &'static str;
    /// Admits and creates or updates `obj`; says whether anything changed (or would have, with
    /// `dry_run`).
    fn apply(
        &self,
        obj: Object,
        opts: ApplyOptions,
    ) -> BoxFuture<'_, Result<(Object, ApplyOutcome), RuntimeError>>;
    /// Deletes an object (or marks it terminating while finalizers remain); `None` when it did
    /// not exist. Dependents go with it.
    fn delete<'a>(
        &'a self,
        key: &'a Key,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<Option<DeleteOutcome>, RuntimeError>>;
    /// Replaces `obj`'s status, for the kinds whose status carries a user's intent as well as
    /// the controller's report (Argo Rollouts' `abort`, `promoteFull`, `pauseConditions`, which
    /// `kubectl argo rollouts` patches). `obj` must carry the resourceVersion it was read at:
    /// `Conflict` if the object changed since.
    fn update_status<'a>(
        &'a self,
        obj: Object,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<Object, RuntimeError>>;
    /// The live object, with the status its controllers report.
    fn observe<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Object>, RuntimeError>>;
    /// A Pod's container output.
    fn logs<'a>(
        &'a self,
        pod: &'a Key,
        opts: LogOptions,
    ) -> BoxFuture<'a, Result<LogStream, RuntimeError>>;
}

/// The local runtime as a [`Runtime`]: objects go to the store the local controllers watch, and
/// logs come from the files the kubelet writes under the data directory.
#[derive(Clone)]
pub struct StoreRuntime {
    store: Store,
    data_dir: PathBuf,
}

impl StoreRuntime {
    /// `data_dir` is the kubelet's (`KubeletConfig::data_dir`).
    pub fn new(store: Store, data_dir: impl Into<PathBuf>) -> StoreRuntime {
        StoreRuntime {
            store,
            data_dir: data_dir.into(),
        }
    }
}

impl Runtime for StoreRuntime {
    fn name(&self) -> &'static str {
        "local"
    }

    /// Goes through admission first, so a sync stores only what the API would accept.
    fn apply(
        &self,
        obj: Object,
        opts: ApplyOptions,
    ) -> BoxFuture<'_, Result<(Object, ApplyOutcome), RuntimeError>> {
        Box::pin(async move {
            let obj = admission::admit(&self.store, obj).await??;
            Ok(if opts.dry_run {
                self.store.apply_dry_run(obj).await?
            } else {
                self.store.apply(obj, opts.actor.as_str()).await?
            })
        })
    }

    fn delete<'a>(
        &'a self,
        key: &'a Key,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<Option<DeleteOutcome>, RuntimeError>> {
        Box::pin(async move {
            match self.store.delete(key, actor.as_str()).await {
                Ok(outcome) => Ok(Some(outcome)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })
    }

    fn update_status<'a>(
        &'a self,
        obj: Object,
        actor: &'a Actor,
    ) -> BoxFuture<'a, Result<Object, RuntimeError>> {
        Box::pin(async move {
            if obj.metadata.resource_version.is_none() {
                return Err(RuntimeError::new(
                    RuntimeErrorKind::BadRequest,
                    format!(
                        "{}: a status update needs the resourceVersion it was read at",
                        obj.key()
                    ),
                ));
            }
            Ok(self.store.update_status(obj, actor.as_str()).await?)
        })
    }

    fn observe<'a>(&'a self, key: &'a Key) -> BoxFuture<'a, Result<Option<Object>, RuntimeError>> {
        Box::pin(async move { Ok(self.store.get(key).await?) })
    }

    fn logs<'a>(
        &'a self,
        pod: &'a Key,
        opts: LogOptions,
    ) -> BoxFuture<'a, Result<LogStream, RuntimeError>> {
        Box::pin(logs::logs(&self.store, &self.data_dir, pod, opts))
    }
}
