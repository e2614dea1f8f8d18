//! The local runtime's controllers on [`shipway_controller`]: a [`Reconciler`] names the kind it
//! manages, the kinds it owns and the kinds whose changes wake its whole namespace; [`Controller`]
//! runs it on the process's shared cache with kube-runtime's contract (level-triggered, one
//! reconcile per key at a time, a change during a reconcile runs it again, the newest cached
//! object each time) and the runtime's error policy (conflicts retried at once, other failures
//! with exponential backoff).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shipway_controller::{Cache, GroupKind, exponential_backoff};
use shipway_model::Object;
use shipway_store::StoreError;
use tokio_util::sync::CancellationToken;

pub use shipway_controller::Action;

/// A reconcile failure; the runner retries with backoff.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Other(String),
}

pub trait Reconciler: Send + Sync + 'static {
    /// (group, kind) of the objects this reconciler manages.
    fn kind(&self) -> (&'static str, &'static str);
    /// (group, kind) of objects whose controller owner is managed here: their changes wake the owner.
    fn owns(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// (group, kind) of objects that relate to managed objects by something other than ownership
    /// (a Service selects Pods by label): a change wakes every managed object in its namespace.
    fn watches_namespace(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }
    /// Brings the world toward `obj`'s desired state. Called with the newest cached object.
    fn reconcile(
        &self,
        obj: Arc<Object>,
    ) -> impl Future<Output = Result<Action, ReconcileError>> + Send;
    /// Called once when the controller stops, after the last reconcile.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Conflicts resolve on the next read of the cache: retry almost at once, quietly.
const CONFLICT_RETRY: Duration = Duration::from_millis(20);
const BACKOFF_BASE: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The runtime's error policy.
fn retry_after(key: &shipway_model::Key, e: &ReconcileError, failures: u32) -> Action {
    if let ReconcileError::Store(StoreError::Conflict { .. }) = e {
        return Action::Requeue(CONFLICT_RETRY);
    }
    let backoff = exponential_backoff(failures, BACKOFF_BASE, BACKOFF_MAX);
    tracing::warn!(object = %key, error = %e, "reconcile failed; retrying in {backoff:?}");
    Action::Requeue(backoff)
}

/// Runs a reconciler on the shared cache until `shutdown` is cancelled.
pub struct Controller<R: Reconciler> {
    cache: Cache,
    reconciler: Arc<R>,
}

impl<R: Reconciler> Controller<R> {
    pub fn new(cache: Cache, reconciler: R) -> Controller<R> {
        Controller {
            cache,
            reconciler: Arc::new(reconciler),
        }
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let (group, kind) = self.reconciler.kind();
        let managed = GroupKind::from_static(group, kind);
        let mut controller =
            shipway_controller::Controller::new(managed.clone(), self.cache.clone());
        for (g, k) in self.reconciler.owns() {
            controller = controller.owns(GroupKind::from_static(g, k));
        }
        for (g, k) in self.reconciler.watches_namespace() {
            let cache = self.cache.clone();
            let managed = managed.clone();
            controller = controller.watches(GroupKind::from_static(g, k), move |obj: &Object| {
                let ns = obj.metadata.namespace.as_deref().unwrap_or_default();
                cache
                    .list(&managed, Some(ns))
                    .iter()
                    .map(|o| o.key())
                    .collect()
            });
        }
        controller
            .run(
                |obj: Arc<Object>, r: Arc<R>| async move { r.reconcile(obj).await },
                |obj: Arc<Object>, e: &ReconcileError, failures, _| {
                    retry_after(&obj.key(), e, failures)
                },
                self.reconciler.clone(),
                shutdown,
            )
            .await;
        self.reconciler.shutdown().await;
    }
}
