//! Concurrency groups (`concurrency:` of a job, or of a workflow across runs): at most one
//! holder running and one pending per group. A newer arrival cancels the pending one; with
//! `cancel-in-progress` it also cancels the running one, as GitHub does.

use std::collections::HashMap;
use std::sync::Mutex;

use shipway_expr::{Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::workflow::{Concurrency, Dyn};

/// A `concurrency:` evaluated with `contexts`: the group's name and whether it cancels the
/// run in progress. A group that does not evaluate is its text, as written.
pub(crate) fn evaluate(c: &Concurrency, contexts: &Map) -> (String, bool) {
    let group = c
        .group
        .template
        .eval_string(contexts)
        .unwrap_or_else(|_| c.group.raw.clone());
    let cancel_in_progress = match &c.cancel_in_progress {
        None => false,
        Some(Dyn::Value(v)) => Value::from_json(v).truthy(),
        Some(Dyn::Expr(s)) => s.template.eval(contexts).is_ok_and(|v| v.truthy()),
    };
    (group, cancel_in_progress)
}

#[derive(Default)]
struct Group {
    /// Ids of the holder and of the waiting job, with their tokens.
    running: Option<(u64, CancellationToken)>,
    pending: Option<(u64, CancellationToken)>,
}

/// Every group of a run (or of a server, shared by its runs). State changes bump a version on a watch channel, so a waiter never
/// misses a release.
pub struct Groups {
    state: Mutex<(u64, HashMap<String, Group>)>,
    changed: watch::Sender<u64>,
}

impl Default for Groups {
    fn default() -> Groups {
        Groups {
            state: Mutex::new((0, HashMap::new())),
            changed: watch::channel(0).0,
        }
    }
}

/// Holding a group; leaving it (on drop) lets the pending job run.
pub struct Slot<'a> {
    groups: &'a Groups,
    group: String,
    id: u64,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.groups.state.lock()
            && let Some(g) = s.1.get_mut(&self.group)
            && g.running.as_ref().is_some_and(|(id, _)| *id == self.id)
        {
            g.running = None;
        }
        self.groups.changed.send_modify(|v| *v += 1);
    }
}

impl Groups {
    /// Waits for the group; `None` when this job was cancelled while it waited (a newer job
    /// replaced it, or the run was cancelled).
    pub async fn enter(
        &self,
        group: &str,
        cancel_in_progress: bool,
        token: &CancellationToken,
    ) -> Option<Slot<'_>> {
        let mut rx = self.changed.subscribe();
        let id = {
            let Ok(mut s) = self.state.lock() else {
                return None;
            };
            s.0 += 1;
            let id = s.0;
            let g = s.1.entry(group.to_string()).or_default();
            if g.running.is_none() {
                g.running = Some((id, token.clone()));
                return Some(Slot {
                    groups: self,
                    group: group.to_string(),
                    id,
                });
            }
            if let Some((_, older)) = g.pending.take() {
                older.cancel();
            }
            if cancel_in_progress && let Some((_, running)) = &g.running {
                running.cancel();
            }
            g.pending = Some((id, token.clone()));
            id
        };
        self.changed.send_modify(|v| *v += 1);
        loop {
            if token.is_cancelled() {
                self.forget(group, id);
                return None;
            }
            {
                let Ok(mut s) = self.state.lock() else {
                    return None;
                };
                if let Some(g) = s.1.get_mut(group)
                    && g.running.is_none()
                    && g.pending.as_ref().is_some_and(|(p, _)| *p == id)
                {
                    let (_, t) = g.pending.take().unwrap_or((id, token.clone()));
                    g.running = Some((id, t));
                    return Some(Slot {
                        groups: self,
                        group: group.to_string(),
                        id,
                    });
                }
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return None },
                () = token.cancelled() => {}
            }
        }
    }

    fn forget(&self, group: &str, id: u64) {
        if let Ok(mut s) = self.state.lock()
            && let Some(g) = s.1.get_mut(group)
            && g.pending.as_ref().is_some_and(|(p, _)| *p == id)
        {
            g.pending = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_newer_arrival_replaces_the_pending_one_and_may_cancel_the_running_one() {
        let groups = Groups::default();
        let (a, b, c) = (
            CancellationToken::new(),
            CancellationToken::new(),
            CancellationToken::new(),
        );
        let slot_a = groups.enter("g", false, &a).await.expect("a runs at once");
        let (rb, rc) = tokio::join!(
            async { groups.enter("g", false, &b).await.map(|s| s.id) },
            async {
                // Let b become pending first.
                tokio::task::yield_now().await;
                let entered = groups.enter("g", false, &c);
                tokio::pin!(entered);
                // c waits behind a; b was cancelled by c's arrival.
                tokio::select! {
                    _ = &mut entered => panic!("c must wait for a"),
                    () = tokio::task::yield_now() => {}
                }
                assert!(b.is_cancelled());
                assert!(!a.is_cancelled());
                drop(slot_a);
                entered.await.map(|s| s.id)
            }
        );
        assert_eq!(rb, None);
        assert!(rc.is_some());

        let (d, e) = (CancellationToken::new(), CancellationToken::new());
        let _slot_d = groups.enter("h", false, &d).await.expect("d runs");
        let waiting = groups.enter("h", true, &e);
        tokio::pin!(waiting);
        tokio::select! {
            _ = &mut waiting => panic!("e must wait until d leaves"),
            () = tokio::task::yield_now() => {}
        }
        // cancel-in-progress: the running job is told to stop.
        assert!(d.is_cancelled());
    }
}
