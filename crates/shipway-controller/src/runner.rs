//! The controller runner, shaped like kube-runtime's `Controller`:
//! `Controller::new(kind, cache).owns(kind).watches(kind, mapper).run(reconcile, error_policy, ctx)`.
//!
//! Changes from the shared [`Cache`] are mapped to the keys of managed objects (an owned object to
//! its controller owner, a watched one through its mapper), queued, and reconciled with the
//! object's cached state. The reason for a call is hidden, so reconcilers stay idempotent. No two
//! reconciles of one key run at once; a change that arrives during a reconcile runs it again
//! afterwards. Every timer is tokio's, so the runner works on paused time.

use std::collections::{HashMap, HashSet};
use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shipway_model::{GroupKind, Key, Object};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::reflector::{Cache, Change};

/// What to do after a reconcile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long even if nothing changes (timers, probes, deadlines).
    Requeue(Duration),
    /// Reconcile again only when the object or something mapped to it changes (or at the next
    /// periodic resync).
    AwaitChange,
}

/// How long after a panicking reconcile the key is tried again.
const PANIC_RETRY: Duration = Duration::from_secs(5);

/// Maps a change of a watched kind to the keys of the managed objects it concerns.
pub type Mapper = Arc<dyn Fn(&Object) -> Vec<Key> + Send + Sync>;

/// `base` doubled per consecutive failure, capped at `max`: the usual error policy.
pub fn exponential_backoff(failures: u32, base: Duration, max: Duration) -> Duration {
    let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(31));
    base.saturating_mul(factor).min(max)
}

/// The queue: which keys are due when, which are running, which changed while running.
#[derive(Default)]
struct Queue {
    pending: HashMap<Key, Instant>,
    running: HashSet<Key>,
    dirty: HashSet<Key>,
    failures: HashMap<Key, u32>,
}

impl Queue {
    fn schedule(&mut self, key: Key, at: Instant) {
        if self.running.contains(&key) {
            self.dirty.insert(key);
            return;
        }
        let due = self.pending.entry(key).or_insert(at);
        if at < *due {
            *due = at;
        }
    }

    /// The keys due at `now`, marked running.
    fn take_due(&mut self, now: Instant) -> Vec<Key> {
        let due: Vec<Key> = self
            .pending
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for k in &due {
            self.pending.remove(k);
            self.running.insert(k.clone());
        }
        due
    }

    fn next_due(&self) -> Option<Instant> {
        self.pending.values().min().copied()
    }

    /// A reconcile of `key` ended; `next` is when its outcome asks to run again.
    fn finish(&mut self, key: Key, next: Option<Instant>, now: Instant) {
        self.running.remove(&key);
        let next = if self.dirty.remove(&key) {
            Some(now)
        } else {
            next
        };
        if let Some(at) = next {
            self.schedule(key, at);
        }
    }
}

/// A controller for one kind; build it, then [`Controller::run`] it.
pub struct Controller {
    kind: GroupKind,
    cache: Cache,
    owns: Vec<GroupKind>,
    watches: Vec<(GroupKind, Mapper)>,
    resync: Option<Duration>,
}

impl Controller {
    /// Manages objects of `kind`, read from `cache`.
    pub fn new(kind: GroupKind, cache: Cache) -> Controller {
        Controller {
            kind,
            cache,
            owns: Vec::new(),
            watches: Vec::new(),
            resync: None,
        }
    }

    /// Objects of `kind` whose controller owner is managed here wake that owner.
    pub fn owns(mut self, kind: GroupKind) -> Controller {
        self.owns.push(kind);
        self
    }

    /// Objects of `kind` wake the managed objects `mapper` names (a Service for the Pods it
    /// selects, an Application for the objects it tracks).
    pub fn watches(
        mut self,
        kind: GroupKind,
        mapper: impl Fn(&Object) -> Vec<Key> + Send + Sync + 'static,
    ) -> Controller {
        self.watches.push((kind, Arc::new(mapper)));
        self
    }

    /// Reconciles every managed object this often even without changes, so a missed change
    /// (or a bug) heals eventually.
    pub fn resync_every(mut self, period: Duration) -> Controller {
        self.resync = Some(period);
        self
    }

    /// The keys a change concerns.
    fn keys_for(&self, obj: &Object) -> Vec<Key> {
        let mut keys = Vec::new();
        if self.kind.is(obj) {
            keys.push(obj.key());
        }
        if self.owns.iter().any(|k| k.is(obj)) {
            let namespace = obj.metadata.namespace.as_deref().unwrap_or("");
            keys.extend(
                obj.metadata
                    .owner_references
                    .iter()
                    .filter(|r| {
                        r.controller == Some(true)
                            && r.kind == self.kind.kind
                            && shipway_model::object::group_of(&r.api_version) == self.kind.group
                    })
                    .map(|r| self.kind.key(namespace, &r.name)),
            );
        }
        for (kind, mapper) in &self.watches {
            if kind.is(obj) {
                keys.extend(mapper(obj).into_iter().filter(|k| self.kind.is_key(k)));
            }
        }
        keys
    }

    fn all_keys(&self) -> Vec<Key> {
        self.cache
            .list(&self.kind, None)
            .iter()
            .map(|o| o.key())
            .collect()
    }

    /// Runs until `shutdown` is cancelled, then waits for the reconciles in flight.
    ///
    /// `reconcile(obj, ctx)` gets the newest cached object; `error_policy(obj, &error, failures,
    /// ctx)` decides when to retry after a failure (`failures` counts this key's consecutive
    /// failures, from 1; kube leaves that count to the context).
    pub async fn run<C, E, R, Fut, P>(
        self,
        reconcile: R,
        error_policy: P,
        ctx: Arc<C>,
        shutdown: CancellationToken,
    ) where
        C: Send + Sync + 'static,
        E: Display + Send + 'static,
        R: Fn(Arc<Object>, Arc<C>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
        P: Fn(Arc<Object>, &E, u32, Arc<C>) -> Action + Send + Sync + 'static,
    {
        let reconcile = Arc::new(reconcile);
        let error_policy = Arc::new(error_policy);
        let mut changes = self.cache.subscribe();
        tokio::select! {
            _ = self.cache.ready() => {}
            _ = shutdown.cancelled() => return,
        }
        let mut queue = Queue::default();
        let now = Instant::now();
        for key in self.all_keys() {
            queue.schedule(key, now);
        }
        let mut resync = self.resync.map(|period| {
            let mut tick = tokio::time::interval_at(Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        });
        type Outcome<E> = (Key, Option<(Result<Action, E>, Arc<Object>)>);
        let mut tasks: JoinSet<Outcome<E>> = JoinSet::new();
        // Which key each reconcile task is for, so a panicking one does not leave its key
        // marked running for ever.
        let mut running: HashMap<tokio::task::Id, Key> = HashMap::new();
        loop {
            let now = Instant::now();
            for key in queue.take_due(now) {
                let cache = self.cache.clone();
                let reconcile = reconcile.clone();
                let ctx = ctx.clone();
                let task_key = key.clone();
                let handle = tasks.spawn(async move {
                    cache.synced().await;
                    // Gone: nothing to reconcile (cleanup runs through finalizers while it exists).
                    let Some(obj) = cache.get(&key) else {
                        return (key, None);
                    };
                    let result = reconcile(obj.clone(), ctx).await;
                    (key, Some((result, obj)))
                });
                running.insert(handle.id(), task_key);
            }
            let next_due = queue.next_due();
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(Change::Applied(obj) | Change::Deleted(obj)) => {
                        for key in self.keys_for(&obj) {
                            queue.schedule(key, Instant::now());
                        }
                    }
                    Ok(Change::Resynced) | Err(RecvError::Lagged(_)) => {
                        for key in self.all_keys() {
                            queue.schedule(key, Instant::now());
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let now = Instant::now();
                    let (key, outcome) = match done {
                        Ok((id, outcome)) => {
                            running.remove(&id);
                            outcome
                        }
                        Err(e) => {
                            // A reconcile that panicked: retried after a pause, as a failure
                            // would be (the panic itself is reported by the runtime).
                            if let Some(key) = running.remove(&e.id()) {
                                tracing::error!(object = %key, "reconcile panicked: {e}");
                                queue.finish(key, Some(now + PANIC_RETRY), now);
                            }
                            continue;
                        }
                    };
                    let Some((result, obj)) = outcome else {
                        queue.finish(key, None, now);
                        continue;
                    };
                    let action = match result {
                        Ok(action) => {
                            queue.failures.remove(&key);
                            action
                        }
                        Err(e) => {
                            let failures = queue.failures.entry(key.clone()).or_insert(0);
                            *failures += 1;
                            // Logging is the policy's to decide: some failures
                            // (conflicts) are routine.
                            tracing::debug!(object = %key, error = %e, "reconcile failed");
                            error_policy(obj, &e, *failures, ctx.clone())
                        }
                    };
                    let next = match action {
                        Action::Requeue(d) => Some(now + d),
                        Action::AwaitChange => None,
                    };
                    queue.finish(key, next, now);
                }
                _ = async {
                    match next_due {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
                _ = async {
                    match resync.as_mut() {
                        Some(tick) => { tick.tick().await; }
                        None => std::future::pending().await,
                    }
                } => {
                    for key in self.all_keys() {
                        queue.schedule(key, Instant::now());
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watcher::Event;
    use serde_json::json;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const RS: GroupKind = GroupKind::from_static("apps", "ReplicaSet");
    const POD: GroupKind = GroupKind::from_static("", "Pod");

    fn object(kind: &str, api: &str, name: &str, rv: u64, extra: serde_json::Value) -> Object {
        let mut v = json!({
            "apiVersion": api, "kind": kind,
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string()},
        });
        if let (Some(meta), Some(extra)) = (v["metadata"].as_object_mut(), extra.as_object()) {
            meta.extend(extra.clone());
        }
        serde_json::from_value(v).unwrap()
    }

    fn rs(name: &str, rv: u64) -> Object {
        object(
            "ReplicaSet",
            "apps/v1",
            name,
            rv,
            json!({"uid": format!("uid-{name}")}),
        )
    }

    fn ready_cache(objects: Vec<Object>) -> Cache {
        let cache = Cache::new();
        cache.handle(Event::Init);
        for o in objects {
            cache.handle(Event::InitApply(o));
        }
        cache.handle(Event::InitDone {
            resource_version: 1,
        });
        cache
    }

    /// What the test reconciler saw: (name, resourceVersion, time since start).
    #[derive(Default)]
    struct Log {
        calls: Mutex<Vec<(String, u64, Duration)>>,
        running: AtomicUsize,
        most_at_once: AtomicUsize,
    }

    struct Ctx {
        log: Log,
        start: Instant,
        busy: Duration,
        fail: bool,
    }

    fn ctx(busy: Duration, fail: bool) -> Arc<Ctx> {
        Arc::new(Ctx {
            log: Log::default(),
            start: Instant::now(),
            busy,
            fail,
        })
    }

    async fn reconcile(obj: Arc<Object>, ctx: Arc<Ctx>) -> Result<Action, String> {
        let now = ctx.log.running.fetch_add(1, Ordering::SeqCst) + 1;
        ctx.log.most_at_once.fetch_max(now, Ordering::SeqCst);
        ctx.log.calls.lock().unwrap().push((
            obj.metadata.name.clone(),
            obj.resource_version().unwrap_or(0),
            ctx.start.elapsed(),
        ));
        tokio::time::sleep(ctx.busy).await;
        ctx.log.running.fetch_sub(1, Ordering::SeqCst);
        if ctx.fail {
            Err("boom".into())
        } else {
            Ok(Action::AwaitChange)
        }
    }

    fn calls(ctx: &Ctx) -> Vec<(String, u64, Duration)> {
        ctx.log.calls.lock().unwrap().clone()
    }

    /// Yields to the runner until `n` calls are recorded (paused time advances only when all
    /// tasks are idle, so this is evidence, not a race).
    async fn until_calls(ctx: &Ctx, n: usize) {
        while calls(ctx).len() < n {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn never_two_reconciles_of_one_key_and_a_change_during_one_runs_it_again() {
        let cache = ready_cache(vec![rs("web", 1)]);
        let ctx = ctx(Duration::from_secs(10), false);
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(Controller::new(RS, cache.clone()).run(
            reconcile,
            |_, _: &String, _, _| Action::AwaitChange,
            ctx.clone(),
            shutdown.clone(),
        ));
        until_calls(&ctx, 1).await;
        // Three changes while the first reconcile is busy: one more reconcile, of the newest.
        for rv in 2..=4 {
            cache.handle(Event::Apply(rs("web", rv)));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        until_calls(&ctx, 2).await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        shutdown.cancel();
        run.await.unwrap();
        let calls = calls(&ctx);
        assert_eq!(
            calls
                .iter()
                .map(|(n, rv, _)| (n.as_str(), *rv))
                .collect::<Vec<_>>(),
            [("web", 1), ("web", 4)]
        );
        assert_eq!(
            calls[1].2,
            Duration::from_secs(10),
            "right after the first ended"
        );
        assert_eq!(ctx.log.most_at_once.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn different_keys_reconcile_concurrently() {
        let cache = ready_cache(vec![rs("a", 1), rs("b", 1), rs("c", 1)]);
        let ctx = ctx(Duration::from_secs(5), false);
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(Controller::new(RS, cache).run(
            reconcile,
            |_, _: &String, _, _| Action::AwaitChange,
            ctx.clone(),
            shutdown.clone(),
        ));
        until_calls(&ctx, 3).await;
        shutdown.cancel();
        run.await.unwrap();
        assert_eq!(ctx.log.most_at_once.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_up_to_the_cap() {
        let cache = ready_cache(vec![rs("web", 1)]);
        let ctx = ctx(Duration::ZERO, true);
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(Controller::new(RS, cache).run(
            reconcile,
            |_, _: &String, failures, _| {
                Action::Requeue(exponential_backoff(
                    failures,
                    Duration::from_secs(1),
                    Duration::from_secs(8),
                ))
            },
            ctx.clone(),
            shutdown.clone(),
        ));
        until_calls(&ctx, 7).await;
        shutdown.cancel();
        run.await.unwrap();
        let at: Vec<u64> = calls(&ctx).iter().map(|c| c.2.as_secs()).collect();
        assert_eq!(at[..7], [0, 1, 3, 7, 15, 23, 31]);
    }

    #[tokio::test(start_paused = true)]
    async fn owned_and_watched_objects_wake_the_managed_one_and_resync_wakes_all() {
        let cache = ready_cache(vec![rs("web", 1), rs("api", 1)]);
        let ctx = ctx(Duration::ZERO, false);
        let shutdown = CancellationToken::new();
        let run = tokio::spawn(
            Controller::new(RS, cache.clone())
                .owns(POD)
                .watches(GroupKind::from_static("", "ConfigMap"), |cm| {
                    vec![RS.key("default", cm.metadata.name.trim_end_matches("-config"))]
                })
                .resync_every(Duration::from_secs(300))
                .run(
                    reconcile,
                    |_, _: &String, _, _| Action::AwaitChange,
                    ctx.clone(),
                    shutdown.clone(),
                ),
        );
        until_calls(&ctx, 2).await;
        let owner = json!({"ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "uid-web", "controller": true}
        ]});
        cache.handle(Event::Apply(object("Pod", "v1", "web-1", 2, owner)));
        until_calls(&ctx, 3).await;
        cache.handle(Event::Apply(object(
            "ConfigMap",
            "v1",
            "api-config",
            3,
            json!({}),
        )));
        until_calls(&ctx, 4).await;
        // A pod without a controller owner, and a deleted ReplicaSet, wake nobody.
        cache.handle(Event::Apply(object("Pod", "v1", "stray", 4, json!({}))));
        cache.handle(Event::Delete(rs("api", 5)));
        tokio::time::sleep(Duration::from_secs(299)).await;
        assert_eq!(calls(&ctx).len(), 4, "{:?}", calls(&ctx));
        until_calls(&ctx, 5).await;
        shutdown.cancel();
        run.await.unwrap();
        let got: Vec<(String, u64)> = calls(&ctx)
            .iter()
            .map(|(n, _, t)| (n.clone(), t.as_secs()))
            .collect();
        let mut first_two = got[..2].to_vec();
        first_two.sort();
        assert_eq!(first_two, [("api".into(), 0), ("web".into(), 0)]);
        assert_eq!(
            got[2..],
            [
                ("web".to_string(), 0),
                ("api".to_string(), 0),
                ("web".to_string(), 300)
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_reconcile_that_panics_is_retried_not_lost() {
        let cache = ready_cache(vec![rs("web", 1)]);
        let calls = Arc::new(AtomicUsize::new(0));
        let shutdown = CancellationToken::new();
        let start = Instant::now();
        let run = tokio::spawn(Controller::new(RS, cache).run(
            |_obj: Arc<Object>, calls: Arc<AtomicUsize>| async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    panic!("a bug in the reconciler");
                }
                Ok::<_, String>(Action::AwaitChange)
            },
            |_, _: &String, _, _| Action::AwaitChange,
            calls.clone(),
            shutdown.clone(),
        ));
        while calls.load(Ordering::SeqCst) < 2 {
            assert!(start.elapsed() < Duration::from_secs(60), "never retried");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(start.elapsed() >= PANIC_RETRY, "{:?}", start.elapsed());
        shutdown.cancel();
        run.await.unwrap();
    }

    #[test]
    fn backoff_doubles_and_saturates() {
        let b = |n| exponential_backoff(n, Duration::from_millis(100), Duration::from_secs(30));
        assert_eq!(b(1), Duration::from_millis(100));
        assert_eq!(b(2), Duration::from_millis(200));
        assert_eq!(b(9), Duration::from_millis(25_600));
        assert_eq!(b(10), Duration::from_secs(30));
        assert_eq!(b(u32::MAX), Duration::from_secs(30));
    }
}
