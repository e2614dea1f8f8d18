//! The PostgreSQL backend: one writer client behind a mutex and a few pooled readers, using the
//! synchronous `postgres` crate (the async `Store` runs it on the blocking pool).

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use postgres::types::ToSql;
use postgres::{Client, Config, IsolationLevel, NoTls, Row, Statement};
use shipway_model::Key;

use crate::StoreError;
use crate::backend::{ChangeRow, Migrations, NewAudit, Result, RowFilter, Tx, migrate};
use crate::group::Job;
use crate::settings::SettingRow;
use crate::types::{AuditEvent, EventQuery, LogLine, NewLogLine};

const MIGRATIONS: Migrations = &[
    (1, include_str!("../migrations/postgres/0001_init.sql")),
    (
        2,
        include_str!("../migrations/postgres/0002_secret_changes.sql"),
    ),
    (3, include_str!("../migrations/postgres/0003_logs.sql")),
    (
        4,
        include_str!("../migrations/postgres/0004_pipeline_settings.sql"),
    ),
];

const MAX_IDLE_READERS: usize = 4;

/// Key of the advisory lock that keeps two processes from migrating at once.
const MIGRATION_LOCK: i64 = 0x0053_4849_5057_4159; // "SHIPWAY"
/// Key of the session advisory lock an exclusive store holds for its life: one server (one set of
/// controllers and one kubelet) per database.
const EXCLUSIVE_LOCK: i64 = 0x0053_4849_5052_554e; // "SHIPRUN"
/// How long an exclusive open waits for another session's lock before refusing.
const EXCLUSIVE_WAIT: Duration = Duration::from_secs(3);

/// A client with its prepared statements, so each statement is parsed once per connection.
struct PgConn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

pub(crate) struct PostgresBackend {
    config: Config,
    writer: Mutex<Option<PgConn>>,
    readers: Mutex<Vec<PgConn>>,
    /// The session holding `EXCLUSIVE_LOCK` (exclusive stores only); closing it releases the lock.
    exclusive: Mutex<Option<Client>>,
}

impl PostgresBackend {
    pub(crate) fn open(url: &str, now: &str, exclusive: bool) -> Result<PostgresBackend> {
        let mut config: Config = url
            .parse()
            .map_err(|e| StoreError::backend(format!("invalid PostgreSQL URL: {e}"), false))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("shipway");
        }
        let backend = PostgresBackend {
            config,
            writer: Mutex::new(None),
            readers: Mutex::new(Vec::new()),
            exclusive: Mutex::new(None),
        };
        if exclusive {
            // Before migrating, so a refused server changes nothing.
            let mut session = backend.connect()?.client;
            // A server that just died (kill -9, a crash before a restart) holds the lock until
            // PostgreSQL notices its closed connection: a few tries before refusing.
            let deadline = std::time::Instant::now() + EXCLUSIVE_WAIT;
            let locked = loop {
                let locked: bool = session
                    .query_one("SELECT pg_try_advisory_lock($1)", &[&EXCLUSIVE_LOCK])?
                    .get(0);
                if locked || std::time::Instant::now() >= deadline {
                    break locked;
                }
                std::thread::sleep(Duration::from_millis(100));
            };
            if !locked {
                // Closed on a plain thread, as in `Drop`.
                let _ = std::thread::spawn(move || drop(session)).join();
                return Err(StoreError::backend(
                    format!(
                        "another Shipway server is already using PostgreSQL database {}: only one server per database may run the controllers and pods; stop it, or give this server a database of its own (--database)",
                        backend.database()
                    ),
                    false,
                ));
            }
            *backend
                .exclusive
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(session);
        }
        let mut conn = backend.connect()?;
        {
            let mut tx = conn.client.transaction()?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])?;
            let mut pg = PgTx {
                tx,
                statements: &mut conn.statements,
            };
            migrate(&mut pg, MIGRATIONS, now)?;
            pg.tx.commit()?;
        }
        // Statements prepared before the tables existed would be stale.
        conn.statements.clear();
        *backend
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(conn);
        Ok(backend)
    }

    /// Follows other processes' commits: every write transaction notifies channel
    /// `shipway_changes` with its resourceVersion. LISTENs before returning, so no commit after
    /// the store opened is missed; then a thread hands each resourceVersion to `on_change` until
    /// that returns false (the store is gone; it is also asked with 0 every second). A lost
    /// connection is re-made; until then the watchers' poll covers.
    pub(crate) fn listen(&self, on_change: impl Fn(u64) -> bool + Send + 'static) -> Result<()> {
        let listener = |config: &Config| -> Result<Client> {
            let mut client = config.connect(NoTls)?;
            client.batch_execute("LISTEN shipway_changes")?;
            Ok(client)
        };
        let mut client = Some(listener(&self.config)?);
        let config = self.config.clone();
        let follow = move || {
            use postgres::fallible_iterator::FallibleIterator as _;
            loop {
                let Some(c) = client.as_mut() else {
                    std::thread::sleep(Duration::from_secs(1));
                    if !on_change(0) {
                        return;
                    }
                    client = listener(&config)
                        .inspect_err(|e| tracing::warn!("store: PostgreSQL LISTEN: {e}"))
                        .ok();
                    continue;
                };
                {
                    let mut notes = c.notifications();
                    let mut pending = notes.timeout_iter(Duration::from_secs(1));
                    loop {
                        match pending.next() {
                            Ok(Some(n)) => {
                                if !on_change(n.payload().parse().unwrap_or(0)) {
                                    return;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                tracing::warn!("store: PostgreSQL notifications: {e}");
                                break;
                            }
                        }
                    }
                }
                if !on_change(0) {
                    return;
                }
                if c.is_closed() {
                    client = None;
                }
            }
        };
        std::thread::Builder::new()
            .name("shipway-pg-listen".into())
            .spawn(follow)
            .map_err(|e| {
                StoreError::backend(format!("cannot start the LISTEN thread: {e}"), false)
            })?;
        Ok(())
    }

    /// `"NAME" on HOST:PORT`, for messages (never the password).
    fn database(&self) -> String {
        let name = self
            .config
            .get_dbname()
            .or(self.config.get_user())
            .unwrap_or("postgres");
        let host = match self.config.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        format!("{name:?} on {host}:{port}")
    }

    fn connect(&self) -> Result<PgConn> {
        let client = self.config.connect(NoTls).map_err(|e| {
            let mut err = StoreError::from(e);
            if let StoreError::Backend { message, .. } = &mut err {
                *message = format!("cannot connect to PostgreSQL: {message}");
            }
            err
        })?;
        Ok(PgConn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Runs `f` in a write transaction holding the counter row lock, committed when `f` succeeds
    /// and `commit` is set.
    pub(crate) fn write<T>(
        &self,
        commit: bool,
        f: impl FnOnce(&mut dyn Tx) -> Result<T>,
    ) -> Result<T> {
        let mut slot = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = match slot.as_mut() {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => slot.insert(self.connect()?),
        };
        let out = (|| {
            let mut tx = conn.client.transaction()?;
            // Lock the counter first: writers (of any process) serialize here, so the reads in `f`
            // see the latest commit and commits happen in resourceVersion order.
            tx.execute("SELECT rv FROM counter WHERE id = 1 FOR UPDATE", &[])?;
            let mut pg = PgTx {
                tx,
                statements: &mut conn.statements,
            };
            let out = f(&mut pg)?;
            if commit {
                pg.tx.commit()?;
            } else {
                pg.tx.rollback()?;
            }
            Ok(out)
        })();
        if conn.client.is_closed() {
            *slot = None;
        }
        out
    }

    /// Runs a batch of committed writes (group commit, see `group`) in one transaction holding
    /// the counter row lock, each in its own savepoint: released when the write succeeds, rolled
    /// back when it fails (its resourceVersion bump, notification, change and audit rows with it).
    /// `Err` means nothing of the batch committed.
    pub(crate) fn write_batch(&self, jobs: &mut [Box<dyn Job>]) -> Result<()> {
        let mut slot = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let conn = match slot.as_mut() {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => slot.insert(self.connect()?),
        };
        let out = (|| {
            let mut tx = conn.client.transaction()?;
            tx.execute("SELECT rv FROM counter WHERE id = 1 FOR UPDATE", &[])?;
            if let [job] = jobs {
                // Alone, the transaction is the savepoint: two round trips fewer.
                let mut pg = PgTx {
                    tx,
                    statements: &mut conn.statements,
                };
                return match job.run(&mut pg) {
                    Ok(()) => Ok(pg.tx.commit()?),
                    Err(_) => Ok(pg.tx.rollback()?),
                };
            }
            for job in jobs.iter_mut() {
                let mut pg = PgTx {
                    tx: tx.savepoint("write")?,
                    statements: &mut conn.statements,
                };
                match job.run(&mut pg) {
                    Ok(()) => pg.tx.commit()?,
                    Err(_) => pg.tx.rollback()?,
                }
            }
            tx.commit()?;
            Ok(())
        })();
        if conn.client.is_closed() {
            *slot = None;
        }
        out
    }

    /// Runs `f` in a read-only REPEATABLE READ transaction: one snapshot for all its statements.
    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut dyn Tx) -> Result<T>) -> Result<T> {
        let pooled = self
            .readers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop();
        let mut conn = match pooled {
            Some(conn) if !conn.client.is_closed() => conn,
            _ => self.connect()?,
        };
        let out = (|| {
            let tx = conn
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let mut pg = PgTx {
                tx,
                statements: &mut conn.statements,
            };
            let out = f(&mut pg)?;
            pg.tx.rollback()?;
            Ok(out)
        })();
        if !conn.client.is_closed() {
            let mut readers = self.readers.lock().unwrap_or_else(PoisonError::into_inner);
            if readers.len() < MAX_IDLE_READERS {
                readers.push(conn);
            }
        }
        out
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        let writer = self
            .writer
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let readers = std::mem::take(
            self.readers
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner),
        );
        let exclusive = self
            .exclusive
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if writer.is_none() && readers.is_empty() && exclusive.is_none() {
            return;
        }
        // Dropping a `postgres::Client` blocks on its own runtime, which panics on a tokio worker
        // thread, where the last `Store` clone is often dropped: close them on a plain thread.
        let _ = std::thread::Builder::new()
            .name("shipway-store-pg-close".into())
            .spawn(move || drop((writer, readers, exclusive)));
    }
}

struct PgTx<'a> {
    tx: postgres::Transaction<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl PgTx<'_> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement> {
        if let Some(stmt) = self.statements.get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.tx.prepare(sql)?;
        self.statements.insert(sql, stmt.clone());
        Ok(stmt)
    }

    fn query(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let stmt = self.statement(sql)?;
        Ok(self.tx.query(&stmt, params)?)
    }

    fn execute(&mut self, sql: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        Ok(self.tx.execute(&stmt, params)?)
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn change_row(r: &Row) -> Result<ChangeRow> {
    Ok(ChangeRow {
        rv: to_u64(r.try_get(0)?),
        event_type: r.try_get(1)?,
        key: Key {
            group: r.try_get(2)?,
            kind: r.try_get(3)?,
            namespace: r.try_get(4)?,
            name: r.try_get(5)?,
        },
        object: r.try_get(6)?,
        prev_labels: r.try_get(7)?,
    })
}

fn audit_row(r: &Row) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: r.try_get(0)?,
        time: r.try_get(1)?,
        actor: r.try_get(2)?,
        action: r.try_get(3)?,
        key: Key {
            group: r.try_get(4)?,
            kind: r.try_get(5)?,
            namespace: r.try_get(6)?,
            name: r.try_get(7)?,
        },
        resource_version: to_u64(r.try_get(8)?),
        message: r.try_get(9)?,
    })
}

impl Tx for PgTx<'_> {
    fn get(&mut self, key: &Key) -> Result<Option<String>> {
        let rows = self.query(
            "SELECT data FROM objects WHERE grp = $1 AND kind = $2 AND namespace = $3 AND name = $4",
            &[&key.group, &key.kind, &key.namespace, &key.name],
        )?;
        Ok(match rows.first() {
            Some(r) => Some(r.try_get(0)?),
            None => None,
        })
    }

    fn list(&mut self, filter: RowFilter<'_>) -> Result<Vec<String>> {
        let rows = self.query(
            "SELECT data FROM objects WHERE ($1::text IS NULL OR grp = $1) \
             AND ($2::text IS NULL OR kind = $2) AND ($3::text IS NULL OR namespace = $3)",
            &[&filter.group, &filter.kind, &filter.namespace],
        )?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    fn current_rv(&mut self) -> Result<u64> {
        let rows = self.query("SELECT rv FROM counter WHERE id = 1", &[])?;
        Ok(to_u64(rows[0].try_get(0)?))
    }

    fn next_rv(&mut self) -> Result<u64> {
        // The notification goes out with the commit (and not at all on rollback), in the same
        // round trip as the bump: watchers in other processes wake at once.
        let rows = self.query(
            "WITH bumped AS (UPDATE counter SET rv = rv + 1 WHERE id = 1 RETURNING rv) \
             SELECT rv, pg_notify('shipway_changes', rv::text) FROM bumped",
            &[],
        )?;
        Ok(to_u64(rows[0].try_get(0)?))
    }

    fn put(&mut self, key: &Key, rv: u64, data: &str) -> Result<()> {
        self.execute(
            "INSERT INTO objects (grp, kind, namespace, name, rv, data) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (grp, kind, namespace, name) DO UPDATE SET rv = excluded.rv, data = excluded.data",
            &[&key.group, &key.kind, &key.namespace, &key.name, &to_i64(rv), &data],
        )?;
        Ok(())
    }

    fn delete(&mut self, key: &Key) -> Result<()> {
        self.execute(
            "DELETE FROM objects WHERE grp = $1 AND kind = $2 AND namespace = $3 AND name = $4",
            &[&key.group, &key.kind, &key.namespace, &key.name],
        )?;
        Ok(())
    }

    fn append_change(&mut self, c: &ChangeRow) -> Result<()> {
        self.execute(
            "INSERT INTO changes (rv, type, grp, kind, namespace, name, object, prev_labels) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &to_i64(c.rv),
                &c.event_type,
                &c.key.group,
                &c.key.kind,
                &c.key.namespace,
                &c.key.name,
                &c.object,
                &c.prev_labels,
            ],
        )?;
        Ok(())
    }

    fn append_audit(&mut self, e: &NewAudit<'_>) -> Result<()> {
        self.execute(
            "INSERT INTO audit (time, actor, action, grp, kind, namespace, name, rv, message) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            &[
                &e.time,
                &e.actor,
                &e.action,
                &e.key.group,
                &e.key.kind,
                &e.key.namespace,
                &e.key.name,
                &to_i64(e.rv),
                &e.message,
            ],
        )?;
        Ok(())
    }

    fn changes_since(
        &mut self,
        since: u64,
        filter: RowFilter<'_>,
        limit: usize,
    ) -> Result<Vec<ChangeRow>> {
        let rows = self.query(
            "SELECT rv, type, grp, kind, namespace, name, object, prev_labels FROM changes \
             WHERE rv > $1 AND ($2::text IS NULL OR grp = $2) AND ($3::text IS NULL OR kind = $3) \
             AND ($4::text IS NULL OR namespace = $4) ORDER BY rv LIMIT $5",
            &[
                &to_i64(since),
                &filter.group,
                &filter.kind,
                &filter.namespace,
                &to_i64(limit as u64),
            ],
        )?;
        rows.iter().map(change_row).collect()
    }

    fn secret_changes(&mut self, namespace: &str, name: &str) -> Result<Vec<(u64, String)>> {
        // The literal grp and kind terms match the partial index changes_of_secrets.
        let rows = self.query(
            "SELECT rv, object FROM changes WHERE grp = '' AND kind = 'Secret' \
             AND namespace = $1 AND name = $2 ORDER BY rv",
            &[&namespace, &name],
        )?;
        rows.iter()
            .map(|r| Ok((to_u64(r.try_get(0)?), r.try_get(1)?)))
            .collect()
    }

    fn rewrite_change(&mut self, rv: u64, object: &str) -> Result<()> {
        self.execute(
            "UPDATE changes SET object = $2 WHERE rv = $1",
            &[&to_i64(rv), &object],
        )?;
        Ok(())
    }

    fn oldest_change(&mut self) -> Result<Option<u64>> {
        let rows = self.query("SELECT MIN(rv) FROM changes", &[])?;
        let min: Option<i64> = rows[0].try_get(0)?;
        Ok(min.map(to_u64))
    }

    fn delete_changes_upto(&mut self, upto: u64) -> Result<u64> {
        self.execute("DELETE FROM changes WHERE rv <= $1", &[&to_i64(upto)])
    }

    fn audit(&mut self, q: &EventQuery) -> Result<Vec<AuditEvent>> {
        // LIMIT NULL means no limit.
        let limit = (q.limit > 0).then(|| to_i64(q.limit as u64));
        let rows = self.query(
            "SELECT id, time, actor, action, grp, kind, namespace, name, rv, message FROM audit \
             WHERE ($1::text IS NULL OR grp = $1) AND ($2::text IS NULL OR kind = $2) \
             AND ($3::text IS NULL OR namespace = $3) AND ($4::text IS NULL OR name = $4) \
             ORDER BY id DESC LIMIT $5",
            &[&q.group, &q.kind, &q.namespace, &q.name, &limit],
        )?;
        let mut events = rows.iter().map(audit_row).collect::<Result<Vec<_>>>()?;
        events.reverse();
        Ok(events)
    }

    fn append_logs(&mut self, owner: &Key, time: &str, lines: &[NewLogLine]) -> Result<u64> {
        let mut last = 0;
        for l in lines {
            let step = l.step.map(i64::from);
            let rows = self.query(
                "INSERT INTO logs (grp, kind, namespace, name, time, job, step, stream, line) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
                &[
                    &owner.group,
                    &owner.kind,
                    &owner.namespace,
                    &owner.name,
                    &time,
                    &l.job,
                    &step,
                    &l.stream,
                    &l.text,
                ],
            )?;
            last = to_u64(rows[0].try_get(0)?);
        }
        Ok(last)
    }

    fn logs(&mut self, owner: &Key, after: u64, limit: usize) -> Result<Vec<LogLine>> {
        // LIMIT NULL means no limit.
        let limit = (limit > 0).then(|| to_i64(limit as u64));
        let rows = self.query(
            "SELECT seq, time, job, step, stream, line FROM logs \
             WHERE grp = $1 AND kind = $2 AND namespace = $3 AND name = $4 AND seq > $5 \
             ORDER BY seq LIMIT $6",
            &[
                &owner.group,
                &owner.kind,
                &owner.namespace,
                &owner.name,
                &to_i64(after),
                &limit,
            ],
        )?;
        rows.iter()
            .map(|r| {
                let step: Option<i64> = r.try_get(3)?;
                Ok(LogLine {
                    seq: to_u64(r.try_get(0)?),
                    time: r.try_get(1)?,
                    job: r.try_get(2)?,
                    step: step.and_then(|s| u32::try_from(s).ok()),
                    stream: r.try_get(4)?,
                    text: r.try_get(5)?,
                })
            })
            .collect()
    }

    fn delete_logs(&mut self, owner: &Key) -> Result<u64> {
        self.execute(
            "DELETE FROM logs WHERE grp = $1 AND kind = $2 AND namespace = $3 AND name = $4",
            &[&owner.group, &owner.kind, &owner.namespace, &owner.name],
        )
    }

    fn settings(&mut self, kind: &str) -> Result<Vec<SettingRow>> {
        let rows = self.query(
            "SELECT repo, env, name, value, updated_at, updated_by FROM pipeline_settings WHERE kind = $1",
            &[&kind],
        )?;
        rows.iter()
            .map(|r| {
                Ok(SettingRow {
                    repo: r.try_get(0)?,
                    env: r.try_get(1)?,
                    name: r.try_get(2)?,
                    value: r.try_get(3)?,
                    updated_at: r.try_get(4)?,
                    updated_by: r.try_get(5)?,
                })
            })
            .collect()
    }

    fn put_setting(&mut self, kind: &str, row: &SettingRow) -> Result<()> {
        self.execute(
            "INSERT INTO pipeline_settings (kind, repo, env, name, value, updated_at, updated_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (kind, repo, env, name) DO UPDATE SET \
             value = excluded.value, updated_at = excluded.updated_at, updated_by = excluded.updated_by",
            &[
                &kind,
                &row.repo,
                &row.env,
                &row.name,
                &row.value,
                &row.updated_at,
                &row.updated_by,
            ],
        )?;
        Ok(())
    }

    fn delete_setting(&mut self, kind: &str, repo: &str, env: &str, name: &str) -> Result<bool> {
        Ok(self.execute(
            "DELETE FROM pipeline_settings WHERE kind = $1 AND repo = $2 AND env = $3 AND name = $4",
            &[&kind, &repo, &env, &name],
        )? > 0)
    }

    fn applied_migrations(&mut self) -> Result<Vec<i64>> {
        self.tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at TEXT NOT NULL);",
        )?;
        let rows = self
            .tx
            .query("SELECT version FROM schema_migrations", &[])?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    fn apply_migration(&mut self, version: i64, sql: &str, now: &str) -> Result<()> {
        self.tx.batch_execute(sql)?;
        self.tx.execute(
            "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
            &[&version, &now],
        )?;
        Ok(())
    }
}
