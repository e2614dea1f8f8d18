//! The shared cache: one watcher over the whole store per process, folded into an in-memory
//! index that every controller (and the proxy's discovery) reads instead of the database, with
//! each change fanned out to subscribers. N readers cost one change-log read per write, not N.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use std::future::Future;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use shipway_model::{GroupKind, Key, Object, Selector};
use shipway_store::{ListQuery, ObjectList, StoreError, WatchEvent};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::watcher::{Event, Source, watcher};

/// How long [`Cache::synced`] waits for the reflector to catch up.
const SYNC_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// How many changes a subscriber may fall behind before it is told to resync instead.
const FANOUT_CAPACITY: usize = 4096;

/// A change, as subscribers see it.
#[derive(Clone, Debug)]
pub enum Change {
    Applied(Arc<Object>),
    /// The last state of an object that is gone.
    Deleted(Arc<Object>),
    /// The cache was rebuilt from a fresh list (first start, expired history) or this subscriber
    /// fell behind: anything may have changed; read what you care about again.
    Resynced,
}

#[derive(Default)]
struct Indexes {
    objects: HashMap<Key, Arc<Object>>,
    /// (group, kind) → (namespace, name), for ordered lists of one kind.
    by_kind: BTreeMap<(String, String), BTreeSet<(String, String)>>,
    /// Owner uid → keys of the objects that name it in `ownerReferences`.
    by_owner: HashMap<String, BTreeSet<Key>>,
    /// (label, value) → keys.
    by_label: HashMap<(String, String), BTreeSet<Key>>,
    /// The newest resourceVersion folded in.
    resource_version: u64,
}

impl Indexes {
    fn insert(&mut self, obj: Object) -> Arc<Object> {
        let key = obj.key();
        self.resource_version = self
            .resource_version
            .max(obj.resource_version().unwrap_or(0));
        let obj = Arc::new(obj);
        if let Some(old) = self.objects.insert(key.clone(), obj.clone()) {
            self.unindex(&key, &old);
        }
        self.by_kind
            .entry((key.group.clone(), key.kind.clone()))
            .or_default()
            .insert((key.namespace.clone(), key.name.clone()));
        for owner in &obj.metadata.owner_references {
            self.by_owner
                .entry(owner.uid.clone())
                .or_default()
                .insert(key.clone());
        }
        for (k, v) in &obj.metadata.labels {
            self.by_label
                .entry((k.clone(), v.clone()))
                .or_default()
                .insert(key.clone());
        }
        obj
    }

    fn remove(&mut self, obj: &Object) -> Arc<Object> {
        let key = obj.key();
        self.resource_version = self
            .resource_version
            .max(obj.resource_version().unwrap_or(0));
        if let Some(old) = self.objects.remove(&key) {
            self.unindex(&key, &old);
            let gk = (key.group.clone(), key.kind.clone());
            if let Some(names) = self.by_kind.get_mut(&gk) {
                names.remove(&(key.namespace.clone(), key.name.clone()));
                if names.is_empty() {
                    self.by_kind.remove(&gk);
                }
            }
        }
        Arc::new(obj.clone())
    }

    /// Drops `key` from the owner and label indexes as `old` had it.
    fn unindex(&mut self, key: &Key, old: &Object) {
        for owner in &old.metadata.owner_references {
            if let Some(keys) = self.by_owner.get_mut(&owner.uid) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_owner.remove(&owner.uid);
                }
            }
        }
        for (k, v) in &old.metadata.labels {
            let label = (k.clone(), v.clone());
            if let Some(keys) = self.by_label.get_mut(&label) {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_label.remove(&label);
                }
            }
        }
    }
}

struct Inner {
    state: RwLock<Indexes>,
    /// The newest resourceVersion folded in, for [`Cache::synced`].
    folded: watch::Sender<u64>,
    /// The source's committed version (set by the reflector).
    committed: std::sync::OnceLock<Box<dyn Fn() -> u64 + Send + Sync>>,
    /// A rebuild in progress (between `Init` and `InitDone`).
    building: std::sync::Mutex<Option<Indexes>>,
    ready: watch::Sender<bool>,
    changes: broadcast::Sender<Change>,
}

/// The in-memory view of the store, shared by every reader in the process. Cheap to clone.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

impl Default for Cache {
    fn default() -> Cache {
        Cache::new()
    }
}

impl Cache {
    /// An empty cache, not ready until a list has been folded in. [`Reflector::spawn`] feeds one
    /// from the store; tests feed one with [`Cache::handle`].
    pub fn new() -> Cache {
        Cache {
            inner: Arc::new(Inner {
                state: RwLock::default(),
                folded: watch::Sender::new(0),
                committed: std::sync::OnceLock::new(),
                building: std::sync::Mutex::default(),
                ready: watch::Sender::new(false),
                changes: broadcast::Sender::new(FANOUT_CAPACITY),
            }),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Indexes> {
        self.inner.state.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds one watcher event in and tells the subscribers.
    pub fn handle(&self, event: Event) {
        let mut building = self
            .inner
            .building
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let change = match event {
            Event::Init => {
                *building = Some(Indexes::default());
                return;
            }
            Event::InitApply(obj) => {
                building.get_or_insert_with(Indexes::default).insert(obj);
                return;
            }
            Event::InitDone { resource_version } => {
                let mut fresh = building.take().unwrap_or_default();
                fresh.resource_version = fresh.resource_version.max(resource_version);
                *self.inner.state.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                self.inner.ready.send_replace(true);
                Change::Resynced
            }
            Event::Apply(obj) => {
                let mut state = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
                Change::Applied(state.insert(obj))
            }
            Event::Delete(obj) => {
                let mut state = self.inner.state.write().unwrap_or_else(|p| p.into_inner());
                Change::Deleted(state.remove(&obj))
            }
        };
        drop(building);
        let rv = self.read().resource_version;
        self.inner.folded.send_if_modified(|seen| {
            let newer = rv > *seen;
            *seen = (*seen).max(rv);
            newer
        });
        // No subscriber yet is fine: a new one starts from the cache.
        let _ = self.inner.changes.send(change);
    }

    /// Every change from now on. Subscribe before reading the cache, so nothing falls between.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.changes.subscribe()
    }

    /// Waits until the first list has been folded in.
    pub async fn ready(&self) {
        let mut ready = self.inner.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Waits until the cache has folded in every write committed before the call (this
    /// process's own writes above all), so a reconcile never acts on a view older than what it
    /// wrote itself — creating a pod twice, say. Bounded: after `SYNC_PATIENCE` the caller goes
    /// on with what there is (a lagging reflector must not stop every controller).
    pub async fn synced(&self) {
        let Some(committed) = self.inner.committed.get() else {
            return;
        };
        let target = committed();
        let mut folded = self.inner.folded.subscribe();
        let caught_up = tokio::time::timeout(SYNC_PATIENCE, folded.wait_for(|rv| *rv >= target));
        if caught_up.await.is_err() {
            tracing::warn!(
                target,
                folded = *folded.borrow(),
                "the cache is behind the store; reconciling with what it has"
            );
        }
    }

    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// The newest resourceVersion the cache has seen.
    pub fn resource_version(&self) -> u64 {
        self.read().resource_version
    }

    pub fn get(&self, key: &Key) -> Option<Arc<Object>> {
        self.read().objects.get(key).cloned()
    }

    /// Objects of one kind, in one namespace or all, ordered by (namespace, name).
    pub fn list(&self, kind: &GroupKind, namespace: Option<&str>) -> Vec<Arc<Object>> {
        let state = self.read();
        let Some(names) = state
            .by_kind
            .get(&(kind.group.to_string(), kind.kind.to_string()))
        else {
            return Vec::new();
        };
        names
            .iter()
            .filter(|(ns, _)| namespace.is_none_or(|want| want == ns))
            .filter_map(|(ns, name)| state.objects.get(&kind.key(ns, name)).cloned())
            .collect()
    }

    /// Every object, or every object in one namespace (cluster-scoped ones have `""`).
    pub fn all(&self, namespace: Option<&str>) -> Vec<Arc<Object>> {
        self.read()
            .objects
            .values()
            .filter(|o| {
                namespace.is_none_or(|ns| o.metadata.namespace.as_deref().unwrap_or("") == ns)
            })
            .cloned()
            .collect()
    }

    /// Objects of one kind whose labels match `selector`.
    pub fn select(
        &self,
        kind: &GroupKind,
        namespace: Option<&str>,
        selector: &Selector,
    ) -> Vec<Arc<Object>> {
        self.list(kind, namespace)
            .into_iter()
            .filter(|o| selector.matches(&o.metadata.labels))
            .collect()
    }

    /// Objects that name `uid` among their owners, ordered by key.
    pub fn owned_by(&self, uid: &str) -> Vec<Arc<Object>> {
        let state = self.read();
        state
            .by_owner
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|k| state.objects.get(k).cloned())
            .collect()
    }

    /// Objects carrying the label `key=value`, ordered by key.
    pub fn labelled(&self, key: &str, value: &str) -> Vec<Arc<Object>> {
        let state = self.read();
        state
            .by_label
            .get(&(key.to_string(), value.to_string()))
            .into_iter()
            .flatten()
            .filter_map(|k| state.objects.get(k).cloned())
            .collect()
    }

    /// How many objects the cache holds.
    pub fn len(&self) -> usize {
        self.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Feeds a [`Cache`] from one watcher over everything in a source.
pub struct Reflector;

impl Reflector {
    /// Starts the one watch of the process; the task ends when `shutdown` is cancelled.
    pub fn spawn<S: Source>(
        source: S,
        shutdown: CancellationToken,
    ) -> (Cache, tokio::task::JoinHandle<()>) {
        let cache = Cache::new();
        let feed = cache.clone();
        let committed = Arc::new(source);
        let reader = committed.clone();
        let _ = cache
            .inner
            .committed
            .set(Box::new(move || reader.committed()));
        let source = SharedSource(committed);
        let task = tokio::spawn(async move {
            let mut events = Box::pin(watcher(source, ListQuery::default()));
            loop {
                let next = tokio::select! {
                    next = events.next() => next,
                    _ = shutdown.cancelled() => return,
                };
                match next {
                    Some(Ok(event)) => feed.handle(event),
                    Some(Err(e)) => tracing::info!(error = %e, "store watch interrupted; resuming"),
                    None => return,
                }
            }
        });
        (cache, task)
    }
}

/// One source shared by the watcher and the cache's `committed` reader.
struct SharedSource<S>(Arc<S>);

impl<S: Source> Source for SharedSource<S> {
    fn list(
        &self,
        query: &ListQuery,
    ) -> impl Future<Output = Result<ObjectList, StoreError>> + Send {
        self.0.list(query)
    }

    fn watch(
        &self,
        query: &ListQuery,
        since: u64,
    ) -> BoxStream<'static, Result<WatchEvent, StoreError>> {
        self.0.watch(query, since)
    }

    fn committed(&self) -> u64 {
        self.0.committed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, rv: u64, owner: Option<&str>, app: &str) -> Object {
        let owners = owner.map_or(json!([]), |uid| {
            json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": uid, "controller": true}])
        });
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string(),
                         "labels": {"app": app}, "ownerReferences": owners},
        }))
        .unwrap()
    }

    const POD: GroupKind = GroupKind::from_static("", "Pod");

    fn names(objs: &[Arc<Object>]) -> Vec<&str> {
        objs.iter().map(|o| o.metadata.name.as_str()).collect()
    }

    #[test]
    fn indexes_follow_applies_and_deletes() {
        let cache = Cache::new();
        assert!(!cache.is_ready());
        cache.handle(Event::Init);
        cache.handle(Event::InitApply(pod("a", 1, Some("u1"), "web")));
        cache.handle(Event::InitApply(pod("b", 2, Some("u1"), "api")));
        assert!(cache.is_empty(), "a list is swapped in whole at InitDone");
        cache.handle(Event::InitDone {
            resource_version: 5,
        });
        assert!(cache.is_ready());
        assert_eq!(cache.resource_version(), 5);
        assert_eq!(names(&cache.owned_by("u1")), ["a", "b"]);
        assert_eq!(names(&cache.labelled("app", "web")), ["a"]);

        // b changes owner and label; a is deleted.
        cache.handle(Event::Apply(pod("b", 6, Some("u2"), "web")));
        cache.handle(Event::Delete(pod("a", 7, Some("u1"), "web")));
        assert_eq!(names(&cache.owned_by("u1")), Vec::<&str>::new());
        assert_eq!(names(&cache.owned_by("u2")), ["b"]);
        assert_eq!(names(&cache.labelled("app", "web")), ["b"]);
        assert_eq!(names(&cache.labelled("app", "api")), Vec::<&str>::new());
        assert_eq!(names(&cache.list(&POD, Some("default"))), ["b"]);
        assert_eq!(names(&cache.list(&POD, Some("other"))), Vec::<&str>::new());
        let web = Selector::parse("app=web").unwrap();
        assert_eq!(names(&cache.select(&POD, None, &web)), ["b"]);
        assert_eq!(cache.resource_version(), 7);

        // A relist replaces everything: what is not listed again is gone.
        cache.handle(Event::Init);
        cache.handle(Event::InitApply(pod("c", 9, None, "web")));
        cache.handle(Event::InitDone {
            resource_version: 9,
        });
        assert_eq!(names(&cache.list(&POD, None)), ["c"]);
        assert_eq!(names(&cache.owned_by("u2")), Vec::<&str>::new());
    }

    #[tokio::test]
    async fn subscribers_see_each_change_and_the_resync() {
        let cache = Cache::new();
        let mut rx = cache.subscribe();
        cache.handle(Event::Init);
        cache.handle(Event::InitDone {
            resource_version: 1,
        });
        cache.handle(Event::Apply(pod("a", 2, None, "web")));
        cache.handle(Event::Delete(pod("a", 3, None, "web")));
        let got: Vec<String> = (0..3)
            .map(|_| match rx.try_recv().unwrap() {
                Change::Resynced => "resynced".into(),
                Change::Applied(o) => format!("applied {}", o.metadata.name),
                Change::Deleted(o) => format!("deleted {}", o.metadata.name),
            })
            .collect();
        assert_eq!(got, ["resynced", "applied a", "deleted a"]);
        assert!(rx.try_recv().is_err());
    }
}
