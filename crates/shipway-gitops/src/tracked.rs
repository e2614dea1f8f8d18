//! Which live objects carry each Application's tracking id, and which Applications have a
//! given name, kept up to date from the shared cache's changes, so a reconcile (and the
//! mapping of a changed object to its app) reads its own objects instead of scanning the
//! whole cache: with 1,000 apps of 20 objects a scan per reconcile is quadratic.
//!
//! The index may hold stale keys (an object deleted or re-annotated since); readers check
//! each key against the cache. Until it has been filled from a first scan it says so, and
//! readers scan the cache themselves.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use shipway_controller::{Cache, Change};
use shipway_model::{Key, Object};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

use crate::controller::GROUP;
use crate::tracking::TRACKING_ANNOTATION;

#[derive(Default)]
struct Maps {
    /// App name (the tracking id's first part) → keys of objects carrying such an id.
    objects: HashMap<String, HashSet<Key>>,
    /// App name → the Applications of that name (one per namespace at most).
    apps: HashMap<String, HashSet<Key>>,
}

#[derive(Default)]
pub(crate) struct TrackedIndex {
    maps: RwLock<Maps>,
    ready: AtomicBool,
}

/// The app name of a tracking id (`guestbook:apps/Deployment:default/web` → `guestbook`).
pub(crate) fn app_of(obj: &Object) -> Option<&str> {
    let id = obj.metadata.annotations.get(TRACKING_ANNOTATION)?;
    id.split(':').next()
}

impl TrackedIndex {
    /// Follows `cache` until `shutdown`: subscribes first, then fills the maps from a scan
    /// once the cache is ready; a resync, or falling behind its changes, scans again.
    pub(crate) fn follow(self: Arc<Self>, cache: Cache, shutdown: CancellationToken) {
        let mut changes = cache.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                _ = cache.ready() => {}
                _ = shutdown.cancelled() => return,
            }
            self.rebuild(&cache);
            loop {
                let change = tokio::select! {
                    c = changes.recv() => c,
                    _ = shutdown.cancelled() => return,
                };
                match change {
                    Ok(Change::Applied(obj)) => self.note(&obj),
                    // Stale keys are checked by readers; a deleted one is dropped here so
                    // the maps do not grow with churn.
                    Ok(Change::Deleted(obj)) => self.forget(&obj),
                    Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => self.rebuild(&cache),
                    Err(RecvError::Closed) => return,
                }
            }
        });
    }

    fn rebuild(&self, cache: &Cache) {
        let mut maps = Maps::default();
        for obj in cache.all(None) {
            insert(&mut maps, &obj);
        }
        *self.maps.write().unwrap_or_else(|p| p.into_inner()) = maps;
        self.ready.store(true, Ordering::Release);
    }

    fn note(&self, obj: &Object) {
        insert(
            &mut self.maps.write().unwrap_or_else(|p| p.into_inner()),
            obj,
        );
    }

    fn forget(&self, obj: &Object) {
        let mut maps = self.maps.write().unwrap_or_else(|p| p.into_inner());
        let key = obj.key();
        if let Some(app) = app_of(obj)
            && let Some(keys) = maps.objects.get_mut(app)
        {
            keys.remove(&key);
            if keys.is_empty() {
                maps.objects.remove(app);
            }
        }
        if is_application(obj)
            && let Some(keys) = maps.apps.get_mut(&obj.metadata.name)
        {
            keys.remove(&key);
            if keys.is_empty() {
                maps.apps.remove(&obj.metadata.name);
            }
        }
    }

    /// The keys of objects that carried `app`'s tracking id when last seen, or `None` before
    /// the first scan.
    pub(crate) fn objects_of(&self, app: &str) -> Option<Vec<Key>> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        Some(
            maps.objects
                .get(app)
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }

    /// The Applications named `name`, or `None` before the first scan.
    pub(crate) fn apps_named(&self, name: &str) -> Option<Vec<Key>> {
        if !self.ready.load(Ordering::Acquire) {
            return None;
        }
        let maps = self.maps.read().unwrap_or_else(|p| p.into_inner());
        Some(
            maps.apps
                .get(name)
                .map(|keys| keys.iter().cloned().collect())
                .unwrap_or_default(),
        )
    }
}

fn is_application(obj: &Object) -> bool {
    obj.kind == "Application" && obj.api_version.split('/').next() == Some(GROUP)
}

fn insert(maps: &mut Maps, obj: &Object) {
    if let Some(app) = app_of(obj) {
        maps.objects
            .entry(app.to_string())
            .or_default()
            .insert(obj.key());
    }
    if is_application(obj) {
        maps.apps
            .entry(obj.metadata.name.clone())
            .or_default()
            .insert(obj.key());
    }
}
