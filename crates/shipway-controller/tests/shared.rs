//! The shared cache over a real SQLite store: however many controllers read it, the store's
//! change log is read once per write.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::json;
use shipway_controller::{Action, Controller, GroupKind, Reflector};
use shipway_model::Object;
use shipway_store::Store;
use tokio_util::sync::CancellationToken;

const CM: GroupKind = GroupKind::from_static("", "ConfigMap");

/// `shipway_store_operations_total{op="watch_read"}`, summed over results.
fn watch_reads(store: &Store) -> u64 {
    store
        .metrics_text()
        .lines()
        .filter(|l| {
            l.starts_with("shipway_store_operations_total{") && l.contains("op=\"watch_read\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

fn config_map(name: &str, value: usize) -> Object {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"v": value.to_string()},
    }))
    .unwrap()
}

/// Runs `controllers` controllers on one shared cache while `writes` writes land; returns the
/// change-log reads the store served after start-up, and checks every controller saw the last
/// write.
async fn reads_for(controllers: usize, writes: usize) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("shipway.db"))
        .await
        .unwrap();
    store.create(config_map("cm", 0), "test").await.unwrap();
    let shutdown = CancellationToken::new();
    let (cache, feed) = Reflector::spawn(store.clone(), shutdown.clone());
    cache.ready().await;
    let seen: Arc<Vec<AtomicUsize>> =
        Arc::new((0..controllers).map(|_| AtomicUsize::new(0)).collect());
    let mut runs = Vec::new();
    for i in 0..controllers {
        let seen = seen.clone();
        runs.push(tokio::spawn(Controller::new(CM, cache.clone()).run(
            move |obj: Arc<Object>, _ctx: Arc<()>| {
                let seen = seen.clone();
                async move {
                    let v = obj.body["data"]["v"]
                        .as_str()
                        .unwrap_or("0")
                        .parse()
                        .unwrap_or(0);
                    seen[i].fetch_max(v, Ordering::SeqCst);
                    Ok::<_, String>(Action::AwaitChange)
                }
            },
            |_, _, _, _| Action::AwaitChange,
            Arc::new(()),
            shutdown.clone(),
        )));
    }
    // Let the watch settle on its first (empty) read before counting.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = watch_reads(&store);
    for v in 1..=writes {
        store.apply(config_map("cm", v), "test").await.unwrap();
        // One write at a time, so reads cannot be batched away: each must be served.
        while cache
            .get(&CM.key("default", "cm"))
            .and_then(|o| o.resource_version())
            != Some(1 + v as u64)
        {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while seen.iter().any(|s| s.load(Ordering::SeqCst) < writes) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "a controller missed the last write"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let reads = watch_reads(&store) - before;
    shutdown.cancel();
    for r in runs {
        r.await.unwrap();
    }
    feed.await.unwrap();
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n_controllers_cost_one_change_log_read_per_write_not_n() {
    let writes = 40;
    let one = reads_for(1, writes).await;
    let eight = reads_for(8, writes).await;
    // A write wakes the one watch, which reads the log once; eight watches of their own would
    // read it eight times per write. (+1: a wake-up may race the last read and find nothing.)
    let budget = writes as u64 + 1;
    assert!(
        (writes as u64..=budget).contains(&one),
        "1 controller: {one} reads for {writes} writes"
    );
    assert!(
        (writes as u64..=budget).contains(&eight),
        "8 controllers: {eight} reads for {writes} writes"
    );
    println!("change-log reads for {writes} writes: 1 controller {one}, 8 controllers {eight}");
}

/// A reconcile reads its own writes: a controller that keeps three children, woken again and
/// again while it creates them, never creates a fourth from a cache that has not seen them yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconcile_sees_the_writes_of_the_one_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_sqlite(&dir.path().join("shipway.db"))
        .await
        .unwrap();
    let parent = store.create(config_map("parent", 0), "test").await.unwrap();
    let uid = parent.metadata.uid.clone().unwrap();
    let shutdown = CancellationToken::new();
    let (cache, feed) = Reflector::spawn(store.clone(), shutdown.clone());
    let created = Arc::new(AtomicUsize::new(0));
    let ctx = Arc::new((store.clone(), cache.clone(), created.clone()));
    let run = tokio::spawn(
        Controller::new(CM, cache.clone())
            .watches(CM, |o: &Object| {
                // Every child wakes the parent, as an owned object would.
                o.metadata
                    .owner_references
                    .iter()
                    .map(|r| CM.key("default", &r.name))
                    .collect()
            })
            .run(
                |obj: Arc<Object>,
                 ctx: Arc<(Store, shipway_controller::Cache, Arc<AtomicUsize>)>| async move {
                    let (store, cache, created) = &*ctx;
                    if !obj.metadata.owner_references.is_empty() {
                        return Ok(Action::AwaitChange);
                    }
                    let uid = obj.metadata.uid.clone().unwrap_or_default();
                    let have = cache.owned_by(&uid).len();
                    for i in have..3 {
                        let mut child = config_map(
                            &format!("child-{}", created.fetch_add(1, Ordering::SeqCst)),
                            i,
                        );
                        child
                            .metadata
                            .owner_references
                            .push(shipway_model::OwnerReference {
                                api_version: "v1".into(),
                                kind: "ConfigMap".into(),
                                name: obj.metadata.name.clone(),
                                uid: uid.clone(),
                                controller: Some(true),
                                block_owner_deletion: None,
                            });
                        store
                            .create(child, "test")
                            .await
                            .map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(Action::AwaitChange)
                },
                |_, _, _, _| Action::Requeue(Duration::from_millis(10)),
                ctx,
                shutdown.clone(),
            ),
    );
    // Poke the parent many times while it works: each poke is a reconcile that must see the
    // children already made.
    for v in 1..=30 {
        store.apply(config_map("parent", v), "test").await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while cache.owned_by(&uid).len() < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the children never appeared"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the reconciles still queued run out before counting (an extra child would be created
    // within a few milliseconds of the last poke).
    cache.synced().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    shutdown.cancel();
    run.await.unwrap();
    feed.await.unwrap();
    assert_eq!(created.load(Ordering::SeqCst), 3, "children created");
}
