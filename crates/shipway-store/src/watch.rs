//! `WatchStream`: follows the change log from a resourceVersion, waking on commits (this
//! process's, and on PostgreSQL other processes' through LISTEN/NOTIFY) and polling for the rest.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;

use crate::types::{ListQuery, WatchEvent};
use crate::{Store, StoreError};

/// Changes read per database round trip.
pub(crate) const BATCH: usize = 1000;

/// The stream [`Store::watch`] returns. Dropping it stops the watch; to resume, watch again from
/// the resourceVersion of the last event received.
pub struct WatchStream {
    inner: Pin<Box<dyn Stream<Item = Result<WatchEvent, StoreError>> + Send>>,
}

impl Stream for WatchStream {
    type Item = Result<WatchEvent, StoreError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for WatchStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchStream").finish_non_exhaustive()
    }
}

struct State {
    store: Store,
    query: Arc<ListQuery>,
    /// Every change up to here has been read (and sent, if it matched).
    since: u64,
    buffer: VecDeque<WatchEvent>,
    latest: tokio::sync::watch::Receiver<u64>,
    /// The last read reached the end of the log: read again only when a commit is signalled
    /// (or the poll interval passes), so a watcher costs one read per wake-up, not two.
    caught_up: bool,
    done: bool,
}

pub(crate) fn stream(store: Store, query: ListQuery, since: u64) -> WatchStream {
    let state = State {
        latest: store.inner.latest.subscribe(),
        store,
        query: Arc::new(query),
        since,
        buffer: VecDeque::new(),
        caught_up: false,
        done: false,
    };
    WatchStream {
        inner: Box::pin(futures_util::stream::unfold(state, next)),
    }
}

async fn next(mut st: State) -> Option<(Result<WatchEvent, StoreError>, State)> {
    let poll = st.store.inner.options.poll_interval;
    loop {
        if let Some(event) = st.buffer.pop_front() {
            return Some((Ok(event), st));
        }
        if st.done {
            return None;
        }
        if st.caught_up {
            // The poll covers writers in other processes that cannot signal us (SQLite, or a
            // PostgreSQL listener that lost its connection).
            tokio::select! {
                _ = st.latest.changed() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
        // Mark the current value seen before reading, so a commit after the read wakes us.
        st.latest.borrow_and_update();
        match st.store.watch_batch(st.query.clone(), st.since).await {
            Ok(batch) => {
                st.since = batch.next_since;
                st.buffer.extend(batch.events);
                st.caught_up = !batch.more;
            }
            Err(e) if e.is_retryable() => st.caught_up = true,
            Err(e) => {
                st.done = true;
                return Some((Err(e), st));
            }
        }
    }
}
