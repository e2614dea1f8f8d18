//! What Shipway's tests share: waiting for evidence instead of sleeping ([`eventually`]), a free
//! loopback port ([`free_port`]), the demo app's binary ([`demo_app`]), and invariants checked on every change the store records
//! ([`Invariant`]) instead of on samples taken now and then.
//!
//! Dev-only: no crate depends on it outside `[dev-dependencies]`.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use shipway_model::{Key, Object};
use shipway_store::{ListQuery, Store, WatchEventType};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How often [`eventually`] looks again.
const POLL: Duration = Duration::from_millis(20);

/// Waits until `f` holds, looking every 20 ms; panics naming `what` after `timeout`. The timeout
/// is a bound for a broken build, not a measure: pick it generous.
#[track_caller]
pub fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F) -> impl Future<Output = ()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let caller = std::panic::Location::caller();
    let what = what.to_string();
    async move {
        let deadline = Instant::now() + timeout;
        while !f().await {
            assert!(
                Instant::now() < deadline,
                "{caller}: timed out after {timeout:?} waiting for {what}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A loopback port nothing listens on at the moment of the call.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding an ephemeral loopback port")
}

/// The demo app binary in the calling test's target directory (`target/<profile>/`), built with
/// cargo if missing (`--release` when the test runs from a release directory), so a test that
/// runs pods or upstreams needs no separate build step. `None` when it cannot be built: the
/// caller decides whether that skips or fails.
pub fn demo_app() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // target/<profile>/deps/<test>-<hash>
    let dir = exe.parent()?.parent()?;
    let app = dir.join(format!("shipway-demo-app{}", std::env::consts::EXE_SUFFIX));
    if !app.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = std::process::Command::new(cargo);
        build.args(["build", "-p", "shipway-demo-app"]);
        if dir.file_name().is_some_and(|n| n == "release") {
            build.arg("--release");
        }
        if !build.status().ok()?.success() {
            return None;
        }
    }
    app.exists().then_some(app)
}

/// The objects an [`Invariant`] sees: every object matching its query, by key, as of the event
/// being checked.
pub type Objects = BTreeMap<Key, Object>;

/// A property checked after every change the store records for a query, in commit order: the
/// state before the first change (as listed when the check starts), then the state after each
/// change. The store guarantees every change in order, so nothing that happens between two
/// looks can slip by, as it could with sampling.
pub struct Invariant {
    stop: Option<oneshot::Sender<u64>>,
    task: JoinHandle<Result<usize, String>>,
}

impl Invariant {
    /// Starts checking `check` on `query`'s objects. `check` returns a description of what is
    /// wrong, or `Ok`.
    pub async fn watch<C>(store: &Store, query: ListQuery, mut check: C) -> Invariant
    where
        C: FnMut(&Objects) -> Result<(), String> + Send + 'static,
    {
        let listed = store.list(&query).await.expect("listing for an invariant");
        let mut objects: Objects = listed.items.into_iter().map(|o| (o.key(), o)).collect();
        // Every change, not only the query's: each resourceVersion is one change, so the watch
        // can tell when it has seen everything up to a version (see `assert_held`).
        let mut stream = store.watch(ListQuery::default(), listed.resource_version);
        let (stop, mut stop_at) = oneshot::channel::<u64>();
        let task = tokio::spawn(async move {
            check(&objects).map_err(|e| format!("{e}\n  before any change: {objects:#?}"))?;
            let mut checked = 1;
            let mut until: Option<u64> = None;
            let mut seen = listed.resource_version;
            loop {
                if until.is_some_and(|rv| seen >= rv) {
                    return Ok(checked);
                }
                let event = tokio::select! {
                    event = stream.next() => event,
                    rv = &mut stop_at, if until.is_none() => {
                        until = Some(rv.unwrap_or(0));
                        continue;
                    }
                };
                let event = match event {
                    Some(Ok(event)) => event,
                    Some(Err(e)) => return Err(format!("the watch failed: {e}")),
                    None => return Err("the watch ended".into()),
                };
                seen = event.resource_version();
                let key = event.object.key();
                let selected = query.matches(&key, &event.object.metadata.labels);
                let summary = format!("{:?} {key} at resourceVersion {seen}", event.kind);
                let changed = match event.kind {
                    WatchEventType::Added | WatchEventType::Modified if selected => {
                        objects.insert(key, event.object);
                        true
                    }
                    // Deleted, or relabelled out of the query.
                    _ => objects.remove(&key).is_some(),
                };
                if changed {
                    checked += 1;
                    check(&objects).map_err(|e| format!("{e}\n  after {summary}"))?;
                }
            }
        });
        Invariant {
            stop: Some(stop),
            task,
        }
    }

    /// Checks every change committed up to now, then stops; panics with the first violation.
    /// Returns how many states were checked.
    pub async fn assert_held(mut self, store: &Store) -> usize {
        let newest = store.last_committed();
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(newest);
        }
        let task = &mut self.task;
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(Ok(checked))) => checked,
            Ok(Ok(Err(violation))) => panic!("invariant violated: {violation}"),
            Ok(Err(e)) => panic!("the invariant's check panicked: {e}"),
            Err(_) => panic!("the invariant's watch did not reach resourceVersion {newest}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, phase: &str) -> Object {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": phase}}))
        .unwrap()
    }

    /// A state that lasts for one change only is seen: two quick writes, the first breaking the
    /// property and the second mending it, fail the check although both a sample before and one
    /// after would pass.
    #[tokio::test]
    async fn a_violation_between_two_samples_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_sqlite(&dir.path().join("db")).await.unwrap();
        store.apply(pod("a", "Running"), "test").await.unwrap();
        let at_most_one = || {
            |objects: &Objects| match objects.len() {
                0 | 1 => Ok(()),
                n => Err(format!("{n} pods")),
            }
        };
        let held = Invariant::watch(&store, ListQuery::kind("", "Pod"), at_most_one()).await;
        // Changes to other kinds do not count as states of the query.
        let cm: Object = serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "namespace": "default"}}))
        .unwrap();
        store.apply(cm, "test").await.unwrap();
        assert_eq!(held.assert_held(&store).await, 1);

        let broken = Invariant::watch(&store, ListQuery::kind("", "Pod"), at_most_one()).await;
        store.apply(pod("b", "Pending"), "test").await.unwrap();
        store
            .delete(&pod("b", "Pending").key(), "test")
            .await
            .unwrap();
        assert_eq!(
            store
                .list(&ListQuery::kind("", "Pod"))
                .await
                .unwrap()
                .items
                .len(),
            1
        );
        let outcome = tokio::spawn(async move { broken.assert_held(&store).await }).await;
        let message = *outcome
            .unwrap_err()
            .into_panic()
            .downcast::<String>()
            .unwrap();
        assert!(
            message.contains("invariant violated: 2 pods\n  after Added Pod/default/b"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn eventually_waits_for_evidence() {
        let mut calls = 0;
        eventually(Duration::from_secs(5), "the third call", || {
            calls += 1;
            std::future::ready(calls >= 3)
        })
        .await;
        assert_eq!(calls, 3);
    }
}
