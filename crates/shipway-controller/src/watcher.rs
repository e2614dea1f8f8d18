//! `watcher`: list, then watch from the list's resourceVersion, as an explicit state machine
//! (kube-runtime's `watcher.rs` is the model). Every transition is one arm of [`step`]: an
//! expired resourceVersion goes back to `Empty` (list again), a broken or ended stream back to
//! `Listed` (watch again from the last version seen), so no change is missed or repeated.

use std::collections::VecDeque;
use std::future::Future;
use std::time::Duration;

use futures_util::stream::BoxStream;
use futures_util::{Stream, StreamExt};
use shipway_model::Object;
use shipway_store::{ListQuery, ObjectList, Store, StoreError, WatchEvent, WatchEventType};

/// What a watcher reads from: the store, or a scripted source in tests.
pub trait Source: Send + Sync + 'static {
    fn list(
        &self,
        query: &ListQuery,
    ) -> impl Future<Output = Result<ObjectList, StoreError>> + Send;
    /// Changes after `since`, in resourceVersion order.
    fn watch(
        &self,
        query: &ListQuery,
        since: u64,
    ) -> BoxStream<'static, Result<WatchEvent, StoreError>>;
    /// The newest resourceVersion known to be committed, without IO (0: unknown). A cache that
    /// has folded it in has seen this process's own writes.
    fn committed(&self) -> u64 {
        0
    }
}

impl Source for Store {
    fn committed(&self) -> u64 {
        self.last_committed()
    }

    async fn list(&self, query: &ListQuery) -> Result<ObjectList, StoreError> {
        Store::list(self, query).await
    }

    fn watch(
        &self,
        query: &ListQuery,
        since: u64,
    ) -> BoxStream<'static, Result<WatchEvent, StoreError>> {
        Store::watch(self, query.clone(), since).boxed()
    }
}

/// What a watcher reports. A (re)list is `Init`, one `InitApply` per object, then `InitDone`:
/// a consumer that keeps a cache builds the new one from those and swaps it in at `InitDone`,
/// so objects deleted while the watch was down disappear.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    Init,
    InitApply(Object),
    InitDone { resource_version: u64 },
    Apply(Object),
    Delete(Object),
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot list: {0}")]
    List(#[source] StoreError),
    #[error("watch failed: {0}")]
    Watch(#[source] StoreError),
    #[error("{0}")]
    Expired(#[source] StoreError),
}

/// The watcher's states.
pub(crate) enum State {
    /// Nothing known: list next.
    Empty,
    /// Listed or watched up to `rv`: open a watch from there next.
    Listed { rv: u64 },
    /// Reading a watch; `rv` is the last version seen.
    Watching {
        rv: u64,
        stream: BoxStream<'static, Result<WatchEvent, StoreError>>,
    },
}

/// One transition: what to report and where to go.
pub(crate) async fn step<S: Source>(
    source: &S,
    query: &ListQuery,
    state: State,
) -> (Result<Vec<Event>, WatchError>, State) {
    match state {
        State::Empty => match source.list(query).await {
            Ok(list) => {
                let rv = list.resource_version;
                let mut events = Vec::with_capacity(list.items.len() + 2);
                events.push(Event::Init);
                events.extend(list.items.into_iter().map(Event::InitApply));
                events.push(Event::InitDone {
                    resource_version: rv,
                });
                (Ok(events), State::Listed { rv })
            }
            Err(e) => (Err(WatchError::List(e)), State::Empty),
        },
        State::Listed { rv } => (
            Ok(Vec::new()),
            State::Watching {
                rv,
                stream: source.watch(query, rv),
            },
        ),
        State::Watching { rv, mut stream } => match stream.next().await {
            Some(Ok(event)) => {
                let next = event.resource_version().max(rv);
                let out = match event.kind {
                    WatchEventType::Deleted => Event::Delete(event.object),
                    WatchEventType::Added | WatchEventType::Modified => Event::Apply(event.object),
                };
                (Ok(vec![out]), State::Watching { rv: next, stream })
            }
            Some(Err(e @ StoreError::Expired { .. })) => {
                (Err(WatchError::Expired(e)), State::Empty)
            }
            Some(Err(e)) => (Err(WatchError::Watch(e)), State::Listed { rv }),
            None => (Ok(Vec::new()), State::Listed { rv }),
        },
    }
}

/// Backoff after a failed step: doubling from 100 ms, capped at 5 s, reset by the next event.
const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// The events of `query`, forever: errors are reported (then retried after a backoff), never
/// the end of the stream.
pub fn watcher<S: Source>(
    source: S,
    query: ListQuery,
) -> impl Stream<Item = Result<Event, WatchError>> + Send {
    struct Run<S> {
        source: S,
        query: ListQuery,
        state: Option<State>,
        out: VecDeque<Event>,
        /// The backoff level: grows with consecutive failures, reset by the next event.
        backoff: Option<Duration>,
        /// Set by a failure: wait this long before the next step.
        delay: Option<Duration>,
    }
    let run = Run {
        source,
        query,
        state: Some(State::Empty),
        out: VecDeque::new(),
        backoff: None,
        delay: None,
    };
    futures_util::stream::unfold(run, |mut run| async move {
        loop {
            if let Some(event) = run.out.pop_front() {
                return Some((Ok(event), run));
            }
            if let Some(delay) = run.delay.take() {
                tokio::time::sleep(delay).await;
            }
            let state = run.state.take().unwrap_or(State::Empty);
            let (result, next) = step(&run.source, &run.query, state).await;
            run.state = Some(next);
            match result {
                Ok(events) => {
                    // Opening a watch proves nothing; an event does.
                    if !events.is_empty() {
                        run.backoff = None;
                    }
                    run.out.extend(events);
                }
                Err(e) => {
                    let delay = run
                        .backoff
                        .map_or(BACKOFF_START, |d| (d * 2).min(BACKOFF_MAX));
                    run.backoff = Some(delay);
                    run.delay = Some(delay);
                    return Some((Err(e), run));
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Mutex;

    fn cm(name: &str, rv: u64) -> Object {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv.to_string()},
        }))
        .unwrap()
    }

    fn event(kind: WatchEventType, name: &str, rv: u64) -> WatchEvent {
        WatchEvent {
            kind,
            object: cm(name, rv),
        }
    }

    /// A source that answers from a script and records what it was asked.
    #[derive(Default)]
    struct Scripted {
        lists: Mutex<VecDeque<Result<ObjectList, StoreError>>>,
        watches: Mutex<VecDeque<Vec<Result<WatchEvent, StoreError>>>>,
        calls: Mutex<Vec<String>>,
    }

    impl Source for std::sync::Arc<Scripted> {
        async fn list(&self, _: &ListQuery) -> Result<ObjectList, StoreError> {
            self.calls.lock().unwrap().push("list".into());
            self.lists
                .lock()
                .unwrap()
                .pop_front()
                .expect("a scripted list")
        }

        fn watch(
            &self,
            _: &ListQuery,
            since: u64,
        ) -> BoxStream<'static, Result<WatchEvent, StoreError>> {
            self.calls.lock().unwrap().push(format!("watch {since}"));
            let items = self.watches.lock().unwrap().pop_front().unwrap_or_default();
            // After the scripted items the stream stays open, as a quiet watch does.
            futures_util::stream::iter(items)
                .chain(futures_util::stream::pending())
                .boxed()
        }
    }

    fn names(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Event::Init => "init".to_string(),
                Event::InitApply(o) => format!("init-apply {}", o.metadata.name),
                Event::InitDone { resource_version } => format!("init-done {resource_version}"),
                Event::Apply(o) => format!("apply {}", o.metadata.name),
                Event::Delete(o) => format!("delete {}", o.metadata.name),
            })
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn expired_relists_then_watches_from_the_new_list() {
        let src = std::sync::Arc::new(Scripted::default());
        src.lists.lock().unwrap().extend([
            Ok(ObjectList {
                items: vec![cm("a", 3)],
                resource_version: 5,
            }),
            Ok(ObjectList {
                items: vec![cm("b", 9)],
                resource_version: 10,
            }),
        ]);
        src.watches.lock().unwrap().extend([
            vec![
                Ok(event(WatchEventType::Modified, "a", 6)),
                Err(StoreError::Expired {
                    requested: 6,
                    oldest: 8,
                }),
            ],
            vec![Ok(event(WatchEventType::Deleted, "b", 11))],
        ]);
        let mut w = Box::pin(watcher(src.clone(), ListQuery::default()));
        let mut seen = Vec::new();
        let mut errors = Vec::new();
        while seen.len() < 8 {
            match w.next().await.expect("the watcher never ends") {
                Ok(e) => seen.push(e),
                Err(e) => errors.push(e.to_string()),
            }
        }
        assert_eq!(
            names(&seen),
            [
                "init",
                "init-apply a",
                "init-done 5",
                "apply a",
                "init",
                "init-apply b",
                "init-done 10",
                "delete b",
            ]
        );
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(errors[0].contains("too old"), "{errors:?}");
        assert_eq!(
            *src.calls.lock().unwrap(),
            ["list", "watch 5", "list", "watch 10"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_broken_watch_resumes_from_the_last_version_seen_with_backoff() {
        let src = std::sync::Arc::new(Scripted::default());
        src.lists.lock().unwrap().push_back(Ok(ObjectList {
            items: vec![],
            resource_version: 1,
        }));
        let broken = || StoreError::Backend {
            message: "connection reset".into(),
            retryable: false,
        };
        src.watches.lock().unwrap().extend([
            vec![Ok(event(WatchEventType::Added, "a", 2)), Err(broken())],
            vec![Err(broken())],
            vec![Ok(event(WatchEventType::Modified, "a", 3))],
        ]);
        let mut w = Box::pin(watcher(src.clone(), ListQuery::default()));
        let start = tokio::time::Instant::now();
        let mut seen = Vec::new();
        let mut errors = 0;
        while seen.len() < 4 {
            match w.next().await.expect("never ends") {
                Ok(e) => seen.push(e),
                Err(_) => errors += 1,
            }
        }
        assert_eq!(names(&seen), ["init", "init-done 1", "apply a", "apply a"]);
        assert_eq!(errors, 2);
        assert_eq!(
            *src.calls.lock().unwrap(),
            ["list", "watch 1", "watch 2", "watch 2"]
        );
        // Two failures in a row: 100 ms, then 200 ms of backoff, on paused time.
        assert_eq!(start.elapsed(), Duration::from_millis(300));
    }
}
