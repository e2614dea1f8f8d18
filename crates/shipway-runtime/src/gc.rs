//! The garbage collector: an object whose owners are all gone is deleted, as Kubernetes'
//! background cascading deletion does (a Deployment takes its ReplicaSets, which take their Pods).

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use shipway_model::Object;
use shipway_store::{ListQuery, Store, StoreError, WatchEventType};
use tokio_util::sync::CancellationToken;

const ACTOR: &str = "garbage-collector";

/// Deletes every object in `objects` whose owner references all point at missing uids.
async fn collect(store: &Store, objects: &[Object]) {
    let alive: HashSet<&str> = objects
        .iter()
        .filter(|o| o.metadata.deletion_timestamp.is_none())
        .filter_map(|o| o.metadata.uid.as_deref())
        .collect();
    for o in objects {
        let owners = &o.metadata.owner_references;
        if owners.is_empty() || o.metadata.deletion_timestamp.is_some() {
            continue;
        }
        if owners.iter().all(|r| !alive.contains(r.uid.as_str())) {
            match store.delete(&o.key(), ACTOR).await {
                Ok(_) | Err(StoreError::NotFound(_)) => {
                    tracing::debug!(object = %o.key(), "collected an orphan")
                }
                Err(e) => tracing::warn!(object = %o.key(), error = %e, "cannot delete an orphan"),
            }
        }
    }
}

pub async fn run(store: Store, shutdown: CancellationToken) {
    loop {
        let list = match store.list(&ListQuery::default()).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "garbage collector cannot list; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = shutdown.cancelled() => return,
                }
            }
        };
        collect(&store, &list.items).await;
        let mut watch = store.watch(ListQuery::default(), list.resource_version);
        loop {
            let event = tokio::select! {
                e = watch.next() => e,
                _ = shutdown.cancelled() => return,
            };
            match event {
                // An owner going away (or starting to) is what can orphan something.
                Some(Ok(e))
                    if e.kind == WatchEventType::Deleted
                        || e.object.metadata.deletion_timestamp.is_some() =>
                {
                    let ns = e.object.metadata.namespace.clone();
                    let query = match &ns {
                        Some(ns) => ListQuery::default().in_namespace(ns),
                        None => ListQuery::default(),
                    };
                    if let Ok(list) = store.list(&query).await {
                        collect(&store, &list.items).await;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            }
        }
    }
}
