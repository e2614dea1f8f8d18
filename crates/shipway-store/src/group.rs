//! Group commit: concurrent committed writes share one transaction, so one fsync (SQLite) or one
//! commit round trip and WAL flush (PostgreSQL) serves all of them.
//!
//! Leader/follower, no timer: a writer queues its write; if no batch is running it becomes the
//! leader, takes what is queued (at most [`MAX_BATCH`]), and hands it to the backend, which runs
//! each write in its own savepoint inside one transaction and commits once. Writers that queue
//! meanwhile wait and go in the next batch, led by one of them. A lone writer leads a batch of
//! one at once, so it waits for no company.
//!
//! *Architecture Invariant*: a writer is answered only after the COMMIT holding its write
//! succeeded, or with the error that kept it from committing: its own (its savepoint rolled back,
//! its batch-mates unaffected) or the batch's (every write of the batch gets it).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use crate::StoreError;
use crate::backend::{Result, Tx};

/// The most writes one transaction holds: bounds the commit's size and a batch-mate's wait.
pub(crate) const MAX_BATCH: usize = 64;

/// One queued write, type-erased so writes of any result type share a batch.
pub(crate) trait Job: Send {
    /// Runs the write inside its savepoint. `Err` (a copy of the write's own error) means the
    /// backend must roll the savepoint back.
    fn run(&mut self, tx: &mut dyn Tx) -> Result<()>;
    /// The resourceVersion a successful write stands at (0 for writes that take none).
    fn rv(&self) -> Option<u64>;
    /// The batch's outcome, once known: `Ok` when the COMMIT holding this write succeeded;
    /// otherwise a write that succeeded (or never ran) is answered `err`, and one that failed
    /// keeps its own error.
    fn settle(&mut self, commit: std::result::Result<(), &StoreError>);
}

/// A write and where its answer goes. Dropping it publishes the answer (when the batch is
/// dropped), so even a leader that unwinds answers every write it took, and a write not settled
/// as committed is never answered `Ok`.
struct Pending<T, F> {
    write: Option<F>,
    rv_of: fn(&T) -> u64,
    out: Option<Result<T>>,
    settled: bool,
    slot: Arc<Mutex<Option<Result<T>>>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnOnce(&mut dyn Tx) -> Result<T> + Send,
{
    fn run(&mut self, tx: &mut dyn Tx) -> Result<()> {
        let Some(write) = self.write.take() else {
            return Ok(());
        };
        let out = catch_unwind(AssertUnwindSafe(|| write(tx)))
            .unwrap_or_else(|_| Err(StoreError::backend("the store write panicked", false)));
        let res = out.as_ref().map(|_| ()).map_err(Clone::clone);
        self.out = Some(out);
        res
    }

    fn rv(&self) -> Option<u64> {
        match &self.out {
            Some(Ok(out)) => Some((self.rv_of)(out)),
            _ => None,
        }
    }

    fn settle(&mut self, commit: std::result::Result<(), &StoreError>) {
        if let Err(err) = commit
            && !matches!(self.out, Some(Err(_)))
        {
            self.out = Some(Err(err.clone()));
        }
        self.settled = true;
    }
}

impl<T, F> Drop for Pending<T, F> {
    fn drop(&mut self) {
        let out = match self.out.take() {
            Some(out) if self.settled => out,
            Some(Err(e)) => Err(e),
            _ => Err(StoreError::backend(
                "the store write was abandoned before its transaction committed",
                false,
            )),
        };
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(out);
    }
}

#[derive(Default)]
struct State {
    queue: VecDeque<Box<dyn Job>>,
    /// A leader is running a batch.
    leading: bool,
}

/// The queue of committed writes of one store.
#[derive(Default)]
pub(crate) struct Group {
    state: Mutex<State>,
    /// Notified when a batch ends: its writers have their answers, and a new leader may start.
    done: Condvar,
}

/// A leadership and its batch. Dropping it (also when the batch unwinds) publishes every answer,
/// then lets the next leader go and wakes the writers, in that order, so no writer is stranded.
struct Leading<'a> {
    group: &'a Group,
    batch: Vec<Box<dyn Job>>,
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        self.batch.clear();
        self.group.lock().leading = false;
        self.group.done.notify_all();
    }
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `write` in the next batch and returns its answer once that batch committed (or
    /// failed). `run_batch` runs a batch as leader: its jobs in order in one transaction, each in
    /// a savepoint, and it is called with at most [`MAX_BATCH`] jobs; it returns the commit's
    /// outcome, and on success is handed the batch's highest resourceVersion to publish
    /// before any of its writers is answered.
    pub(crate) fn write<T, F>(
        &self,
        write: F,
        rv_of: fn(&T) -> u64,
        run_batch: impl Fn(&mut [Box<dyn Job>]) -> Result<()>,
        committed: impl Fn(u64),
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Tx) -> Result<T> + Send + 'static,
    {
        let slot = Arc::new(Mutex::new(None));
        let job = Pending {
            write: Some(write),
            rv_of,
            out: None,
            settled: false,
            slot: slot.clone(),
        };
        let mut state = self.lock();
        state.queue.push_back(Box::new(job));
        loop {
            // Answers are published before `done` is notified, under no lock of ours, and checked
            // here under the state lock, so a notification cannot slip between check and wait.
            if let Some(out) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() {
                return out;
            }
            if state.leading {
                state = self
                    .done
                    .wait(state)
                    .unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            state.leading = true;
            let take = state.queue.len().min(MAX_BATCH);
            let mut leading = Leading {
                group: self,
                batch: state.queue.drain(..take).collect(),
            };
            drop(state);
            let outcome = run_batch(&mut leading.batch);
            if outcome.is_ok()
                && let Some(rv) = leading.batch.iter().filter_map(|j| j.rv()).max()
            {
                committed(rv);
            }
            for job in &mut leading.batch {
                job.settle(outcome.as_ref().copied());
            }
            drop(leading);
            state = self.lock();
        }
    }
}

#[cfg(test)]
impl Group {
    fn queued(&self) -> usize {
        self.lock().queue.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::mpsc;
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant};

    use shipway_model::Object;

    use super::*;
    use crate::AnyBackend;
    use crate::backend::RowFilter;
    use crate::core::{self, Ctx, Now};
    use crate::postgres::PostgresBackend;
    use crate::sqlite::SqliteBackend;
    use crate::types::EventQuery;

    /// A real store's backend, its group, the sizes of the batches it committed or tried, and
    /// the highest resourceVersion published to watchers.
    struct Fixture {
        _dir: Option<tempfile::TempDir>,
        backend: Option<AnyBackend>,
        /// PostgreSQL: the admin URL and the database to drop afterwards.
        postgres: Option<(String, String)>,
        group: Group,
        batches: Mutex<Vec<usize>>,
        published: AtomicU64,
    }

    fn fixture(
        backend: AnyBackend,
        dir: Option<tempfile::TempDir>,
        postgres: Option<(String, String)>,
    ) -> Arc<Fixture> {
        Arc::new(Fixture {
            _dir: dir,
            backend: Some(backend),
            postgres,
            group: Group::default(),
            batches: Mutex::new(Vec::new()),
            published: AtomicU64::new(0),
        })
    }

    fn sqlite() -> Arc<Fixture> {
        let dir = tempfile::tempdir().unwrap();
        let backend = SqliteBackend::open(&dir.path().join("s.db"), "now").unwrap();
        fixture(AnyBackend::Sqlite(backend), Some(dir), None)
    }

    /// A fresh database on the server `SHIPWAY_TEST_POSTGRES_URL` names, `None` when unset.
    fn postgres() -> Option<Arc<Fixture>> {
        let Some(admin) = std::env::var("SHIPWAY_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            println!("SKIPPED (set SHIPWAY_TEST_POSTGRES_URL)");
            return None;
        };
        let name = format!("shipway_group_{}", uuid::Uuid::new_v4().simple());
        let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}dbname={name}");
        let backend = PostgresBackend::open(&url, "now", false).unwrap();
        Some(fixture(
            AnyBackend::Postgres(Box::new(backend)),
            None,
            Some((admin, name)),
        ))
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            drop(self.backend.take());
            if let Some((admin, name)) = &self.postgres
                && let Ok(mut client) = postgres::Client::connect(admin, postgres::NoTls)
            {
                let _ = client.batch_execute(&format!("DROP DATABASE {name} WITH (FORCE)"));
            }
        }
    }

    fn config_map(name: &str, rv: Option<u64>) -> Object {
        let mut o: Object = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default"},
            "data": {"v": name},
        }))
        .unwrap();
        o.metadata.resource_version = rv.map(|v| v.to_string());
        o
    }

    fn rv_of(o: &Object) -> u64 {
        o.resource_version().unwrap_or(0)
    }

    impl Fixture {
        fn write(
            &self,
            f: impl FnOnce(&mut dyn Tx) -> Result<Object> + Send + 'static,
        ) -> Result<Object> {
            self.group.write(
                f,
                rv_of,
                |jobs| {
                    self.batches.lock().unwrap().push(jobs.len());
                    self.backend().write_batch(jobs)
                },
                |rv| self.published.store(rv, Ordering::SeqCst),
            )
        }

        /// Starts a write on its own thread.
        fn spawn(
            self: &Arc<Self>,
            f: impl FnOnce(&mut dyn Tx) -> Result<Object> + Send + 'static,
        ) -> JoinHandle<Result<Object>> {
            let me = self.clone();
            std::thread::spawn(move || me.write(f))
        }

        /// Starts a write that holds its batch open until `release` is sent, and returns once
        /// it runs: the writes queued meanwhile make up the next batch.
        fn hold_batch(
            self: &Arc<Self>,
            name: &'static str,
        ) -> (JoinHandle<Result<Object>>, mpsc::Sender<()>) {
            let (running_tx, running) = mpsc::channel();
            let (release, released) = mpsc::channel::<()>();
            let handle = self.spawn(move |tx| {
                running_tx.send(()).unwrap();
                released.recv().unwrap();
                create(tx, name)
            });
            running.recv().unwrap();
            (handle, release)
        }

        /// Waits until `n` writes are queued behind the running batch.
        fn wait_queued(&self, n: usize) {
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.group.queued() < n {
                assert!(Instant::now() < deadline, "{n} writes never queued");
                std::thread::sleep(Duration::from_millis(1));
            }
        }

        fn backend(&self) -> &AnyBackend {
            self.backend.as_ref().expect("open")
        }

        /// The counter, and how many change rows, audit rows and objects are stored.
        fn counts(&self) -> (u64, usize, usize, usize) {
            self.backend()
                .read(|tx| {
                    Ok((
                        tx.current_rv()?,
                        tx.changes_since(0, RowFilter::default(), 1000)?.len(),
                        tx.audit(&EventQuery::default())?.len(),
                        tx.list(RowFilter::default())?.len(),
                    ))
                })
                .unwrap()
        }

        fn stored(&self, name: &str) -> bool {
            let key = config_map(name, None).key();
            self.backend().read(|tx| tx.get(&key)).unwrap().is_some()
        }

        fn sqlite_writer(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
            match self.backend() {
                AnyBackend::Sqlite(b) => b.writer_for_test(),
                AnyBackend::Postgres(_) => unreachable!("a SQLite fixture"),
            }
        }
    }

    fn create(tx: &mut dyn Tx, name: &str) -> Result<Object> {
        let now = Now::current();
        let ctx = Ctx {
            actor: "t",
            now: &now,
            sealer: None,
        };
        core::create(tx, config_map(name, None), &ctx)
    }

    fn update(tx: &mut dyn Tx, name: &str, rv: u64) -> Result<Object> {
        let now = Now::current();
        let ctx = Ctx {
            actor: "t",
            now: &now,
            sealer: None,
        };
        core::update(tx, config_map(name, Some(rv)), &ctx)
    }

    #[test]
    fn a_lone_writer_commits_at_once_in_a_batch_of_its_own() {
        let f = sqlite();
        let o = f.write(|tx| create(tx, "a")).unwrap();
        assert_eq!(rv_of(&o), 1);
        assert_eq!(*f.batches.lock().unwrap(), vec![1]);
        assert_eq!(f.published.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_failing_write_rolls_back_alone_and_its_batch_mates_commit_sqlite() {
        a_failing_write_rolls_back_alone_and_its_batch_mates_commit(sqlite());
    }

    #[test]
    fn a_failing_write_rolls_back_alone_and_its_batch_mates_commit_postgres() {
        if let Some(f) = postgres() {
            a_failing_write_rolls_back_alone_and_its_batch_mates_commit(f);
        }
    }

    fn a_failing_write_rolls_back_alone_and_its_batch_mates_commit(f: Arc<Fixture>) {
        let (first, release) = f.hold_batch("first");
        let ok1 = f.spawn(|tx| create(tx, "ok1"));
        f.wait_queued(1);
        // An update of "first" sent with a resourceVersion it never had.
        let stale = f.spawn(|tx| update(tx, "first", 7));
        f.wait_queued(2);
        // A write that fails after it took a resourceVersion and wrote its rows.
        let late = f.spawn(|tx| {
            create(tx, "late")?;
            Err(StoreError::backend("late failure", false))
        });
        f.wait_queued(3);
        let ok2 = f.spawn(|tx| create(tx, "ok2"));
        f.wait_queued(4);
        release.send(()).unwrap();

        assert_eq!(rv_of(&first.join().unwrap().unwrap()), 1);
        assert_eq!(rv_of(&ok1.join().unwrap().unwrap()), 2);
        let err = stale.join().unwrap().unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err:?}");
        let err = late.join().unwrap().unwrap_err();
        assert_eq!(err.to_string(), "store backend error: late failure");
        // The failed writes' savepoints went back: ok2 takes the next resourceVersion, no gap.
        assert_eq!(rv_of(&ok2.join().unwrap().unwrap()), 3);
        assert_eq!(
            *f.batches.lock().unwrap(),
            vec![1, 4],
            "one commit for the four"
        );
        assert_eq!(f.published.load(Ordering::SeqCst), 3);
        assert_eq!(f.counts(), (3, 3, 3, 3), "rv, changes, audit rows, objects");
        assert!(!f.stored("late"));
    }

    #[test]
    fn a_panicking_write_fails_alone_and_the_store_goes_on() {
        let f = sqlite();
        let (first, release) = f.hold_batch("first");
        let panics = f.spawn(|tx| {
            create(tx, "half")?;
            panic!("a bug in a write");
        });
        f.wait_queued(1);
        let ok = f.spawn(|tx| create(tx, "ok"));
        f.wait_queued(2);
        release.send(()).unwrap();
        assert_eq!(rv_of(&first.join().unwrap().unwrap()), 1);
        let err = panics.join().unwrap().unwrap_err();
        assert_eq!(
            err.to_string(),
            "store backend error: the store write panicked"
        );
        assert_eq!(rv_of(&ok.join().unwrap().unwrap()), 2);
        assert!(!f.stored("half"));
        assert_eq!(rv_of(&f.write(|tx| create(tx, "later")).unwrap()), 3);
    }

    #[test]
    fn a_failed_commit_fails_every_write_of_the_batch() {
        let f = sqlite();
        f.write(|tx| create(tx, "before")).unwrap();
        // A deferred foreign key that the audit row of "c" breaks: SQLite refuses the COMMIT
        // itself, after every write of the batch ran and released its savepoint.
        f.sqlite_writer()
            .execute_batch(
                "PRAGMA foreign_keys = ON;
                 CREATE TEMP TABLE parent (id INTEGER PRIMARY KEY);
                 CREATE TEMP TABLE child (p INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
                 CREATE TEMP TRIGGER break_commit AFTER INSERT ON main.audit
                 WHEN NEW.name = 'c' BEGIN INSERT INTO child VALUES (1); END;",
            )
            .expect("the failing commit arranged");
        let (first, release) = f.hold_batch("first");
        let queued: Vec<_> = (0..3)
            .map(|i| {
                let h = f.spawn(move |tx| create(tx, ["a", "b", "c"][i]));
                f.wait_queued(i + 1);
                h
            })
            .collect();
        release.send(()).unwrap();
        assert_eq!(
            rv_of(&first.join().unwrap().unwrap()),
            2,
            "its batch was before"
        );
        for h in queued {
            let err = h.join().unwrap().unwrap_err();
            assert!(
                err.to_string().contains("FOREIGN KEY constraint failed"),
                "{err}"
            );
        }
        assert_eq!(*f.batches.lock().unwrap(), vec![1, 1, 3]);
        assert_eq!(
            f.published.load(Ordering::SeqCst),
            2,
            "no watcher woken for it"
        );
        assert_eq!(f.counts(), (2, 2, 2, 2), "rv, changes, audit rows, objects");
        // The connection is out of the failed transaction: the next write commits.
        f.sqlite_writer()
            .execute_batch("DROP TRIGGER temp.break_commit;")
            .unwrap();
        assert_eq!(rv_of(&f.write(|tx| create(tx, "after")).unwrap()), 3);
    }
}
