//! The garbage collector: an object whose owners are all gone is deleted, as Kubernetes'
//! background cascading deletion does (a Deployment takes its ReplicaSets, which take their Pods).
//! It reads the shared cache and looks again whenever an owner goes away or starts to.

use std::collections::HashSet;
use std::sync::Arc;

use shipway_controller::{Cache, Change};
use shipway_model::Object;
use shipway_store::{Store, StoreError};
use tokio::sync::broadcast::error::RecvError;
use tokio_util::sync::CancellationToken;

const ACTOR: &str = "garbage-collector";

/// The objects among `objects` whose owner references all point at uids that are not alive.
fn orphans<'a>(objects: &'a [Arc<Object>], alive: &HashSet<&str>) -> Vec<&'a Arc<Object>> {
    objects
        .iter()
        .filter(|o| {
            let owners = &o.metadata.owner_references;
            !owners.is_empty()
                && o.metadata.deletion_timestamp.is_none()
                && owners.iter().all(|r| !alive.contains(r.uid.as_str()))
        })
        .collect()
}

/// Deletes the orphans of one namespace (or of all, with `None`). Owners may live in another
/// namespace only when cluster-scoped, so the living uids come from the whole cache.
async fn collect(store: &Store, cache: &Cache, namespace: Option<&str>) {
    cache.synced().await;
    let everything = cache.all(None);
    let alive: HashSet<&str> = everything
        .iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter_map(|o| o.metadata.uid.as_deref())
        .collect();
    let scoped;
    let candidates: &[Arc<Object>] = match namespace {
        None => &everything,
        Some(ns) => {
            scoped = cache.all(Some(ns));
            &scoped
        }
    };
    for o in orphans(candidates, &alive) {
        match store.delete(&o.key(), ACTOR).await {
            Ok(_) | Err(StoreError::NotFound(_)) => {
                tracing::debug!(object = %o.key(), "collected an orphan")
            }
            Err(e) => tracing::warn!(object = %o.key(), error = %e, "cannot delete an orphan"),
        }
    }
}

pub async fn run(store: Store, cache: Cache, shutdown: CancellationToken) {
    let mut changes = cache.subscribe();
    tokio::select! {
        _ = cache.ready() => {}
        _ = shutdown.cancelled() => return,
    }
    collect(&store, &cache, None).await;
    loop {
        let change = tokio::select! {
            c = changes.recv() => c,
            _ = shutdown.cancelled() => return,
        };
        match change {
            // An owner going away (or starting to) is what can orphan something.
            Ok(Change::Deleted(o)) => {
                collect(&store, &cache, o.metadata.namespace.as_deref()).await
            }
            Ok(Change::Applied(o)) if o.metadata.deletion_timestamp.is_some() => {
                collect(&store, &cache, o.metadata.namespace.as_deref()).await
            }
            Ok(Change::Applied(_)) => {}
            Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => collect(&store, &cache, None).await,
            Err(RecvError::Closed) => return,
        }
    }
}
