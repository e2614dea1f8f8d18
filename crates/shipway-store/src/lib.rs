//! Shipway's persistence: Kubernetes-shaped objects with a global resourceVersion, optimistic
//! concurrency, generation, finalizers, watch from a resourceVersion, and an audit log, on SQLite
//! (the embedded default) or PostgreSQL.
//!
//! Newcomers: start with [`Store`] (the whole public API, async). The semantics (what create,
//! update, apply and delete do) are written once in `core.rs` over the small transaction trait
//! in `backend.rs`; `sqlite.rs` and `postgres.rs` only implement that trait's primitives.
//! Migrations are numbered SQL files under `migrations/<backend>/`, applied at open.
//!
//! *Architecture Invariant*: every write takes one new resourceVersion from a single counter row
//! inside its transaction, and appends exactly one change row and one audit row. Writers are
//! serialized by the database's write lock (SQLite) or the counter's row lock (PostgreSQL), so
//! changes become visible in resourceVersion order with no gaps; watch relies on that.
//!
//! Committed writes go through group commit (`group.rs`): writes that overlap share one
//! transaction and one commit (one fsync on SQLite, where `synchronous=FULL` makes every commit
//! durable), each in its own savepoint, so a failing write rolls back alone, resourceVersion bump
//! included. A writer is answered, and watchers woken, only after that commit succeeded.

mod backend;
mod core;
mod error;
mod group;
mod metrics;
mod postgres;
pub mod seal;
pub mod settings;
mod sqlite;
mod types;
mod watch;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use shipway_model::{Key, Object};

use crate::backend::Tx;
use crate::core::{Ctx, Now};
use crate::group::{Group, Job};
use crate::metrics::Metrics;
use crate::postgres::PostgresBackend;
use crate::seal::Sealer;
use crate::sqlite::SqliteBackend;

pub use crate::error::StoreError;
pub use crate::settings::{Scope, Setting, SettingKind};
pub use crate::types::{
    ApplyOutcome, AuditEvent, DeleteOutcome, EventQuery, ListPage, ListQuery, LogLine, NewLogLine,
    ObjectList, StoreOptions, WatchEvent, WatchEventType,
};
pub use crate::watch::WatchStream;

/// The object store. Cheap to clone (an `Arc` inside); every method may be called from any task.
///
/// Database work runs on tokio's blocking pool, so a `Store` must be used inside a tokio runtime.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    backend: AnyBackend,
    /// The newest resourceVersion committed through this process; watchers wait on it.
    latest: tokio::sync::watch::Sender<u64>,
    /// The newest log seq appended through this process; log followers wait on it.
    logs_appended: tokio::sync::watch::Sender<u64>,
    metrics: Metrics,
    options: StoreOptions,
    /// Committed writes waiting for, or in, the running batch.
    group: Group,
}

enum AnyBackend {
    Sqlite(SqliteBackend),
    Postgres(Box<PostgresBackend>),
}

impl AnyBackend {
    fn name(&self) -> &'static str {
        match self {
            AnyBackend::Sqlite(_) => "sqlite",
            AnyBackend::Postgres(_) => "postgres",
        }
    }

    fn write<T>(
        &self,
        commit: bool,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            AnyBackend::Sqlite(b) => b.write(commit, f),
            AnyBackend::Postgres(b) => b.write(commit, f),
        }
    }

    fn write_batch(&self, jobs: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
        match self {
            AnyBackend::Sqlite(b) => b.write_batch(jobs),
            AnyBackend::Postgres(b) => b.write_batch(jobs),
        }
    }

    fn read<T>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self {
            AnyBackend::Sqlite(b) => b.read(f),
            AnyBackend::Postgres(b) => b.read(f),
        }
    }
}

impl Inner {
    /// Wakes watchers for a commit up to `rv` (of this process or, on PostgreSQL, another).
    fn committed(&self, rv: u64) {
        self.latest.send_if_modified(|latest| {
            let newer = rv > *latest;
            if newer {
                *latest = rv;
            }
            newer
        });
    }

    /// Runs a committed write in the next batch (group commit) and returns once that batch
    /// committed, watchers woken; compacts the change log now and then.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Tx) -> Result<T, StoreError> + Send + 'static,
        rv_of: fn(&T) -> u64,
    ) -> Result<T, StoreError> {
        let out = self.group.write(
            f,
            rv_of,
            |jobs| self.backend.write_batch(jobs),
            |rv| self.committed(rv),
        )?;
        let rv = rv_of(&out);
        // Compacting every `interval` writes keeps each DELETE small and the table near its bound.
        let retain = self.options.retained_changes.max(1);
        let interval = (retain / 10).clamp(1, 1000);
        if rv > retain && rv.is_multiple_of(interval) {
            // A failed compaction is retried at the next interval; the write itself succeeded.
            let started = Instant::now();
            let res = self.backend.write(true, |tx| core::compact(tx, retain));
            self.metrics
                .record("compact", result_label(&res), started.elapsed());
        }
        Ok(out)
    }
}

/// Runs `f` with the actor and the time now: taken when the write runs in its batch.
fn with_ctx<T>(actor: &str, sealer: Option<&Sealer>, f: impl FnOnce(&Ctx) -> T) -> T {
    let now = Now::current();
    f(&Ctx {
        actor,
        now: &now,
        sealer,
    })
}

fn result_label<T>(res: &Result<T, StoreError>) -> &'static str {
    match res {
        Ok(_) => "ok",
        Err(e) => e.metric_label(),
    }
}

fn rv_of(obj: &Object) -> u64 {
    obj.resource_version().unwrap_or(0)
}

impl Store {
    /// Opens (creating and migrating as needed) the store at `url`: `postgres://...` or
    /// `postgresql://...` for PostgreSQL; `sqlite:PATH` or a plain file path for SQLite.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, StoreOptions::default()).await
    }

    pub async fn open_with(url: &str, options: StoreOptions) -> Result<Store, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let url = url.to_string();
            let exclusive = options.exclusive;
            Store::open_backend(options, move |now| {
                PostgresBackend::open(&url, now, exclusive)
                    .map(|b| AnyBackend::Postgres(Box::new(b)))
            })
            .await
        } else {
            let path = url.strip_prefix("sqlite:").unwrap_or(url);
            // `sqlite:///abs/path` as well as `sqlite:/abs/path` and `sqlite:rel/path`.
            let path = path.strip_prefix("//").unwrap_or(path);
            Store::open_sqlite_with(Path::new(path), options).await
        }
    }

    /// Opens (creating and migrating as needed) the SQLite database file at `path`, creating its
    /// directory if missing.
    pub async fn open_sqlite(path: &Path) -> Result<Store, StoreError> {
        Store::open_sqlite_with(path, StoreOptions::default()).await
    }

    pub async fn open_sqlite_with(path: &Path, options: StoreOptions) -> Result<Store, StoreError> {
        let path = path.to_path_buf();
        Store::open_backend(options, move |now| {
            SqliteBackend::open(&path, now).map(AnyBackend::Sqlite)
        })
        .await
    }

    async fn open_backend(
        options: StoreOptions,
        open: impl FnOnce(&str) -> Result<AnyBackend, StoreError> + Send + 'static,
    ) -> Result<Store, StoreError> {
        let sealer = options.sealer.clone();
        let (backend, rv) = blocking(move || {
            let backend = open(&Now::current().millis)?;
            if let Some(sealer) = &sealer {
                // Secrets written in plain (before the store had a key) are sealed before any
                // caller reads or writes.
                backend.write(true, |tx| core::seal_existing(tx, sealer))?;
            }
            let rv = backend.read(|tx| tx.current_rv())?;
            Ok((backend, rv))
        })
        .await?;
        let metrics = Metrics::new(backend.name());
        let store = Store {
            inner: Arc::new(Inner {
                backend,
                latest: tokio::sync::watch::Sender::new(rv),
                logs_appended: tokio::sync::watch::Sender::new(0),
                metrics,
                options,
                group: Group::default(),
            }),
        };
        // PostgreSQL tells of other processes' commits; the listener holds the store weakly and
        // ends with it.
        let weak = Arc::downgrade(&store.inner);
        let inner = store.inner.clone();
        blocking(move || match &inner.backend {
            AnyBackend::Postgres(pg) => pg.listen(move |rv| match weak.upgrade() {
                Some(inner) => {
                    inner.committed(rv);
                    true
                }
                None => false,
            }),
            AnyBackend::Sqlite(_) => Ok(()),
        })
        .await?;
        Ok(store)
    }

    /// The store's sealer, for a write closure that outlives the borrow of `self`.
    fn sealer(&self) -> Option<Sealer> {
        self.inner.options.sealer.clone()
    }

    /// `"sqlite"` or `"postgres"`.
    pub fn backend_name(&self) -> &'static str {
        self.inner.backend.name()
    }

    /// Runs `f` on the blocking pool and records it in the metrics under `op`.
    async fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        let started = Instant::now();
        let res = blocking(move || f(&inner)).await;
        self.inner
            .metrics
            .record(op, result_label(&res), started.elapsed());
        res
    }

    /// Stores a new object. Server-owned fields (uid, resourceVersion, generation, timestamps) are
    /// set here whatever `obj` says; a namespaced kind without a namespace goes to `default`.
    pub async fn create(&self, obj: Object, actor: &str) -> Result<Object, StoreError> {
        let actor = actor.to_string();
        let sealer = self.sealer();
        self.run("create", move |inner| {
            inner.write(
                move |tx| {
                    with_ctx(&actor, sealer.as_ref(), move |ctx| {
                        core::create(tx, obj, ctx)
                    })
                },
                rv_of,
            )
        })
        .await
    }

    /// Replaces the desired state (body but `status`, labels, annotations, finalizers,
    /// ownerReferences). If `obj` carries a resourceVersion it must be the stored one, else
    /// `Conflict`; without one the update is unconditional. `status` is kept (see
    /// [`Store::update_status`]). Emptying the finalizers of an object being deleted removes it.
    /// An update that changes nothing writes nothing and returns the stored object.
    pub async fn update(&self, obj: Object, actor: &str) -> Result<Object, StoreError> {
        let actor = actor.to_string();
        let sealer = self.sealer();
        self.run("update", move |inner| {
            inner.write(
                move |tx| {
                    with_ctx(&actor, sealer.as_ref(), move |ctx| {
                        core::update(tx, obj, ctx)
                    })
                },
                rv_of,
            )
        })
        .await
    }

    /// Replaces only `status` (taken from `obj`), with the same resourceVersion rule as
    /// [`Store::update`]. Never bumps generation.
    pub async fn update_status(&self, obj: Object, actor: &str) -> Result<Object, StoreError> {
        let actor = actor.to_string();
        let sealer = self.sealer();
        self.run("update_status", move |inner| {
            inner.write(
                move |tx| {
                    with_ctx(&actor, sealer.as_ref(), move |ctx| {
                        core::update_status(tx, obj, ctx)
                    })
                },
                rv_of,
            )
        })
        .await
    }

    /// Creates the object, or replaces its desired state keeping status, uid and
    /// creationTimestamp. `Unchanged` writes nothing and takes no resourceVersion. A
    /// resourceVersion in `obj` is checked as in [`Store::update`].
    pub async fn apply(
        &self,
        obj: Object,
        actor: &str,
    ) -> Result<(Object, ApplyOutcome), StoreError> {
        let actor = actor.to_string();
        let sealer = self.sealer();
        self.run("apply", move |inner| {
            inner.write(
                move |tx| {
                    with_ctx(&actor, sealer.as_ref(), move |ctx| {
                        core::apply(tx, obj, ctx)
                    })
                },
                |(obj, _)| rv_of(obj),
            )
        })
        .await
    }

    /// What [`Store::apply`] would return, with the same validation, writing nothing. The apply
    /// runs in a transaction that is rolled back; a `Created` or `Configured` result has no
    /// resourceVersion, since none was taken.
    pub async fn apply_dry_run(&self, obj: Object) -> Result<(Object, ApplyOutcome), StoreError> {
        self.run("apply_dry_run", move |inner| {
            let now = Now::current();
            let ctx = Ctx {
                actor: "dry-run",
                now: &now,
                sealer: inner.options.sealer.as_ref(),
            };
            let (mut obj, outcome) = inner
                .backend
                .write(false, |tx| core::apply(tx, obj, &ctx))?;
            if outcome != ApplyOutcome::Unchanged {
                obj.metadata.resource_version = None;
            }
            Ok((obj, outcome))
        })
        .await
    }

    /// The object stored under `key`. The namespace rule of create applies: an empty namespace
    /// of a namespaced kind means `default`.
    pub async fn get(&self, key: &Key) -> Result<Option<Object>, StoreError> {
        let key = key.clone();
        self.run("get", move |inner| {
            inner
                .backend
                .read(|tx| core::get(tx, &key, inner.options.sealer.as_ref()))
        })
        .await
    }

    /// The objects matching `query`, sorted by (group, kind, namespace, name), and the store's
    /// resourceVersion in the same snapshot: watch from it to miss nothing. With `query.limit`
    /// or `query.continue_token` set, one page of them: [`Store::list_page`] says where the next
    /// one starts.
    pub async fn list(&self, query: &ListQuery) -> Result<ObjectList, StoreError> {
        Ok(self.list_page(query).await?.list)
    }

    /// One page of the objects matching `query` (`limit`, `continue_token`), in key order; see
    /// [`ListPage`] for what a write between pages does.
    pub async fn list_page(&self, query: &ListQuery) -> Result<ListPage, StoreError> {
        let query = query.clone();
        self.run("list", move |inner| {
            inner
                .backend
                .read(|tx| core::list(tx, &query, inner.options.sealer.as_ref()))
        })
        .await
    }

    /// Deletes the object, or, when it has finalizers, marks it (deletionTimestamp) and returns
    /// `Terminating`; it goes when an update empties its finalizers. Deleting an object already
    /// terminating writes nothing.
    pub async fn delete(&self, key: &Key, actor: &str) -> Result<DeleteOutcome, StoreError> {
        let key = key.clone();
        let actor = actor.to_string();
        let sealer = self.sealer();
        self.run("delete", move |inner| {
            inner.write(
                move |tx| {
                    with_ctx(&actor, sealer.as_ref(), move |ctx| {
                        core::delete(tx, &key, ctx)
                    })
                },
                |out| rv_of(out.object()),
            )
        })
        .await
    }

    /// Every change with resourceVersion > `since` that matches `query`, in resourceVersion
    /// order, each once, then new changes as they are committed (by this process at once; by
    /// others at once on PostgreSQL, else within [`StoreOptions::poll_interval`]).
    ///
    /// `since = 0` replays all retained history, which is all history until the first
    /// compaction; afterwards it is too old. Too old (`since` < oldest retained - 1): the stream
    /// yields `Err(Expired)` once and ends; the caller lists again and watches from the list's
    /// resourceVersion. With a selector, an object modified so that it stops matching is still
    /// sent once (its labels say it no longer matches); DELETED events carry the last state.
    /// Lost database connections are retried quietly; other errors end the stream after one
    /// `Err`.
    pub fn watch(&self, query: ListQuery, since: u64) -> WatchStream {
        watch::stream(self.clone(), query, since)
    }

    /// Records an event about `key` in the audit trail without writing the object (what kubectl
    /// shows as events: `AddressInUse`, `Killing`, `BackOff`): no resourceVersion is taken and no
    /// watcher wakes.
    pub async fn record_event(
        &self,
        key: &Key,
        actor: &str,
        action: &str,
        message: &str,
    ) -> Result<(), StoreError> {
        let (key, actor, action, message) = (
            key.clone(),
            actor.to_string(),
            action.to_string(),
            message.to_string(),
        );
        self.run("record_event", move |inner| {
            inner.write(
                move |tx| {
                    with_ctx(&actor, None, |ctx| {
                        core::record_event(tx, &key, &action, &message, ctx)
                    })
                },
                |_| 0,
            )
        })
        .await
    }

    /// Appends `lines` to the log of `owner` (a run) in one transaction, durable when this
    /// returns; wakes [`Store::log_updates`]. Lines are not objects: no resourceVersion is
    /// taken and no watcher of objects wakes.
    pub async fn append_logs(
        &self,
        owner: &Key,
        lines: Vec<NewLogLine>,
    ) -> Result<u64, StoreError> {
        if lines.is_empty() {
            return Ok(0);
        }
        let owner = owner.clone();
        let seq = self
            .run("append_logs", move |inner| {
                let now = Now::current();
                inner
                    .backend
                    .write(true, |tx| tx.append_logs(&owner, &now.millis, &lines))
            })
            .await?;
        self.inner.logs_appended.send_if_modified(|latest| {
            let newer = seq > *latest;
            if newer {
                *latest = seq;
            }
            newer
        });
        Ok(seq)
    }

    /// The lines of `owner` after seq `after`, oldest first, at most `limit` (0: all).
    pub async fn logs(
        &self,
        owner: &Key,
        after: u64,
        limit: usize,
    ) -> Result<Vec<LogLine>, StoreError> {
        let owner = owner.clone();
        self.run("logs", move |inner| {
            inner.backend.read(|tx| tx.logs(&owner, after, limit))
        })
        .await
    }

    /// Deletes the log of `owner` (when the run is deleted); returns how many lines went.
    pub async fn delete_logs(&self, owner: &Key) -> Result<u64, StoreError> {
        let owner = owner.clone();
        self.run("delete_logs", move |inner| {
            inner.backend.write(true, |tx| tx.delete_logs(&owner))
        })
        .await
    }

    /// Sets (creates or replaces) the pipeline secret or variable `name` in `scope`; the name is
    /// checked by GitHub's rules and stored upper case. A secret is sealed with the store's key
    /// (refused without one). The audit trail names who, the name and the scope, never the value.
    pub async fn set_setting(
        &self,
        kind: SettingKind,
        scope: &Scope,
        name: &str,
        value: &str,
        actor: &str,
    ) -> Result<Setting, StoreError> {
        let (scope, name, value, actor) = (
            scope.clone(),
            name.to_string(),
            value.to_string(),
            actor.to_string(),
        );
        let sealer = self.sealer();
        self.run("set_setting", move |inner| {
            inner.write(
                move |tx| {
                    with_ctx(&actor, sealer.as_ref(), |ctx| {
                        settings::set(tx, kind, &scope, &name, &value, ctx)
                    })
                },
                |_| 0,
            )
        })
        .await
    }

    /// Deletes the pipeline secret or variable `name` of `scope` (audited); `NotFound` if absent.
    pub async fn delete_setting(
        &self,
        kind: SettingKind,
        scope: &Scope,
        name: &str,
        actor: &str,
    ) -> Result<(), StoreError> {
        let (scope, name, actor) = (scope.clone(), name.to_string(), actor.to_string());
        self.run("delete_setting", move |inner| {
            inner.write(
                move |tx| {
                    with_ctx(&actor, None, |ctx| {
                        settings::delete(tx, kind, &scope, &name, ctx)
                    })
                },
                |_| 0,
            )
        })
        .await
    }

    /// The pipeline secrets or variables of `scope` (all scopes when `None`), with names and
    /// update times; a secret's value is never returned.
    pub async fn list_settings(
        &self,
        kind: SettingKind,
        scope: Option<&Scope>,
    ) -> Result<Vec<Setting>, StoreError> {
        let scope = scope.cloned();
        self.run("list_settings", move |inner| {
            inner
                .backend
                .read(|tx| settings::list(tx, kind, scope.as_ref()))
        })
        .await
    }

    /// The values a run of `repo` (a job bound to environment `env`) is given: global, then the
    /// repository's, then the environment's override by name. Secrets come back opened: give
    /// them to the run and its masker only.
    pub async fn settings_for(
        &self,
        kind: SettingKind,
        repo: Option<&str>,
        env: Option<&str>,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let (repo, env) = (repo.map(str::to_string), env.map(str::to_string));
        self.run("settings_for", move |inner| {
            inner.backend.read(|tx| {
                settings::resolve(
                    tx,
                    kind,
                    repo.as_deref(),
                    env.as_deref(),
                    inner.options.sealer.as_ref(),
                )
            })
        })
        .await
    }

    /// Changes whenever lines are appended through this handle: followers re-read after it.
    pub fn log_updates(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.logs_appended.subscribe()
    }

    /// The newest `query.limit` audit events matching `query`, oldest first.
    pub async fn events(&self, query: &EventQuery) -> Result<Vec<crate::AuditEvent>, StoreError> {
        let query = query.clone();
        self.run("events", move |inner| {
            inner.backend.read(|tx| tx.audit(&query))
        })
        .await
    }

    /// The newest resourceVersion this handle knows to be committed (by this process, and on
    /// PostgreSQL by others it was told of), without a database read: a cache that has seen this
    /// version has seen this process's own writes.
    pub fn last_committed(&self) -> u64 {
        *self.inner.latest.borrow()
    }

    /// The newest resourceVersion handed out.
    pub async fn current_resource_version(&self) -> Result<u64, StoreError> {
        self.run("current_resource_version", |inner| {
            inner.backend.read(|tx| tx.current_rv())
        })
        .await
    }

    /// Drops change-log rows beyond [`StoreOptions::retained_changes`] now (writes do it every
    /// so often anyway); returns how many went.
    pub async fn compact(&self) -> Result<u64, StoreError> {
        self.run("compact", |inner| {
            let retain = inner.options.retained_changes;
            inner.backend.write(true, |tx| core::compact(tx, retain))
        })
        .await
    }

    /// The store's metrics in the Prometheus text exposition format:
    /// `shipway_store_operations_total{backend,op,result}` and
    /// `shipway_store_operation_duration_seconds{backend,op}`.
    pub fn metrics_text(&self) -> String {
        self.inner.metrics.render()
    }

    /// One read of the change log for [`WatchStream`].
    async fn watch_batch(
        &self,
        query: Arc<ListQuery>,
        since: u64,
    ) -> Result<core::WatchBatch, StoreError> {
        self.run("watch_read", move |inner| {
            inner.backend.read(|tx| {
                core::watch_batch(
                    tx,
                    &query,
                    since,
                    watch::BATCH,
                    inner.options.sealer.as_ref(),
                )
            })
        })
        .await
    }
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend_name())
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(res) => res,
        Err(e) => Err(StoreError::backend(
            format!("store task failed: {e}"),
            false,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_can_be_shared_across_tasks() {
        fn shared<T: Clone + Send + Sync + 'static>() {}
        fn streamed<T: futures_util::Stream + Send + Unpin + 'static>() {}
        shared::<Store>();
        streamed::<WatchStream>();
    }
}
