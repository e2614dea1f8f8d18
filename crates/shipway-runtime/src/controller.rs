//! A level-triggered controller runner over the store, with kube-runtime's contract.
//!
//! A [`Reconciler`] names the kind it manages and the kinds it owns; the runner watches the store,
//! maps every change to the key of the managing object (an owned object maps to its controller
//! owner), and calls `reconcile` with the object's current state. The reason for a call is hidden,
//! so reconcilers stay idempotent. No two reconciles of one key run at once: a change that arrives
//! during a reconcile runs it again afterwards.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use shipway_model::{Key, Object};
use shipway_store::{ListQuery, Store, StoreError};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// What to do after a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long even if nothing changes (timers, probes, deadlines).
    Requeue(Duration),
    /// Reconcile again only when the object or something it owns changes.
    AwaitChange,
}

/// A reconcile failure; the runner logs it and retries with backoff.
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
    /// Brings the world toward `obj`'s desired state. Called with the newest stored object.
    fn reconcile(
        &self,
        obj: Arc<Object>,
    ) -> impl Future<Output = Result<Action, ReconcileError>> + Send;
    /// Called once when the controller stops, after the last reconcile.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

#[derive(Default)]
struct Queue {
    /// Key → when it is due.
    pending: HashMap<Key, Instant>,
    running: HashSet<Key>,
    /// Keys that changed while being reconciled.
    dirty: HashSet<Key>,
    /// Consecutive failures per key, for backoff.
    failures: HashMap<Key, u32>,
}

/// Runs a reconciler until `shutdown` is cancelled.
pub struct Controller<R: Reconciler> {
    store: Store,
    reconciler: Arc<R>,
    queue: Arc<Mutex<Queue>>,
    wake: Arc<Notify>,
    /// Keys of the managed objects that exist, for `watches_namespace`.
    known: Mutex<HashSet<Key>>,
}

impl<R: Reconciler> Controller<R> {
    pub fn new(store: Store, reconciler: R) -> Controller<R> {
        Controller {
            store,
            reconciler: Arc::new(reconciler),
            queue: Arc::default(),
            wake: Arc::default(),
            known: Mutex::default(),
        }
    }

    fn enqueue(&self, key: Key, at: Instant) {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if q.running.contains(&key) {
            q.dirty.insert(key);
            return;
        }
        let due = q.pending.entry(key).or_insert(at);
        if at < *due {
            *due = at;
        }
        drop(q);
        self.wake.notify_one();
    }

    /// The keys of the objects to reconcile for a change to `obj`.
    fn keys_for(&self, obj: &Object, deleted: bool) -> Vec<Key> {
        let (group, kind) = self.reconciler.kind();
        let is = |list: &[(&str, &str)]| {
            list.iter()
                .any(|(g, k)| obj.group() == *g && obj.kind == *k)
        };
        if obj.group() == group && obj.kind == kind {
            let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            if deleted {
                known.remove(&obj.key());
            } else {
                known.insert(obj.key());
            }
            return vec![obj.key()];
        }
        let namespace = obj.metadata.namespace.as_deref().unwrap_or("");
        if is(self.reconciler.watches_namespace()) {
            let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
            return known
                .iter()
                .filter(|k| k.namespace == namespace)
                .cloned()
                .collect();
        }
        if !is(self.reconciler.owns()) {
            return Vec::new();
        }
        obj.metadata
            .owner_references
            .iter()
            .filter(|r| {
                r.controller == Some(true)
                    && r.kind == kind
                    && shipway_model::object::group_of(&r.api_version) == group
            })
            .map(|owner| Key::new(group, kind, namespace, &owner.name))
            .collect()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let this = Arc::new(self);
        let feeder = tokio::spawn(this.clone().feed(shutdown.clone()));
        this.work(shutdown).await;
        feeder.abort();
        this.reconciler.shutdown().await;
    }

    /// Lists, then watches from the list's version; relists when the version has expired.
    async fn feed(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let list = match self.store.list(&ListQuery::default()).await {
                Ok(list) => list,
                Err(e) => {
                    tracing::warn!(error = %e, "controller cannot list; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                        _ = shutdown.cancelled() => return,
                    }
                }
            };
            let now = Instant::now();
            self.known.lock().unwrap_or_else(|p| p.into_inner()).clear();
            for obj in &list.items {
                for key in self.keys_for(obj, false) {
                    self.enqueue(key, now);
                }
            }
            let mut watch = self
                .store
                .watch(ListQuery::default(), list.resource_version);
            loop {
                let event = tokio::select! {
                    e = watch.next() => e,
                    _ = shutdown.cancelled() => return,
                };
                match event {
                    Some(Ok(event)) => {
                        let deleted = event.kind == shipway_store::WatchEventType::Deleted;
                        for key in self.keys_for(&event.object, deleted) {
                            self.enqueue(key, Instant::now());
                        }
                    }
                    Some(Err(e)) => {
                        tracing::info!(error = %e, "controller watch ended; relisting");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    async fn work(self: &Arc<Self>, shutdown: CancellationToken) {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            let (ready, next_due) = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                let ready: Vec<Key> = q
                    .pending
                    .iter()
                    .filter(|(_, due)| **due <= now)
                    .map(|(k, _)| k.clone())
                    .collect();
                for k in &ready {
                    q.pending.remove(k);
                    q.running.insert(k.clone());
                }
                (ready, q.pending.values().min().copied())
            };
            for key in ready {
                let this = self.clone();
                tasks.spawn(async move { this.reconcile_one(key).await });
            }
            let sleep = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = sleep => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.cancelled() => break,
            }
        }
        tasks.shutdown().await;
    }

    async fn reconcile_one(&self, key: Key) {
        let result = match self.store.get(&key).await {
            Ok(Some(obj)) => self.reconciler.reconcile(Arc::new(obj)).await,
            Ok(None) => Ok(Action::AwaitChange),
            Err(e) => Err(e.into()),
        };
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.running.remove(&key);
        let now = Instant::now();
        let next = match result {
            Ok(action) => {
                q.failures.remove(&key);
                match action {
                    Action::Requeue(d) => Some(now + d),
                    Action::AwaitChange => None,
                }
            }
            Err(e) => {
                let n = q.failures.entry(key.clone()).or_insert(0);
                *n += 1;
                // Conflicts are expected under concurrency and resolve on the next read: retry fast.
                let backoff = match &e {
                    ReconcileError::Store(StoreError::Conflict { .. }) => Duration::from_millis(20),
                    _ => Duration::from_millis(100 * 2u64.pow((*n).min(8)))
                        .min(Duration::from_secs(30)),
                };
                if !matches!(&e, ReconcileError::Store(StoreError::Conflict { .. })) {
                    tracing::warn!(object = %key, error = %e, "reconcile failed; retrying in {backoff:?}");
                }
                Some(now + backoff)
            }
        };
        let next = if q.dirty.remove(&key) {
            Some(now)
        } else {
            next
        };
        if let Some(at) = next {
            let due = q.pending.entry(key).or_insert(at);
            if at < *due {
                *due = at;
            }
        }
        drop(q);
        self.wake.notify_one();
    }
}
