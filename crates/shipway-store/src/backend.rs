//! The transaction primitives each database implements; the semantics on top live in `core`.

use shipway_model::Key;

use crate::StoreError;
use crate::settings::SettingRow;
use crate::types::AuditEvent;
use crate::types::EventQuery;
use crate::types::{LogLine, NewLogLine};

pub(crate) type Result<T> = std::result::Result<T, StoreError>;

/// A row of the `changes` table: one per resourceVersion.
#[derive(Clone, Debug)]
pub(crate) struct ChangeRow {
    pub rv: u64,
    pub event_type: String,
    pub key: Key,
    pub object: String,
    /// The labels before a MODIFIED change (JSON), so a selector watch also sees an object that
    /// stopped matching.
    pub prev_labels: Option<String>,
}

/// An audit row to append; the database assigns the id.
#[derive(Clone, Debug)]
pub(crate) struct NewAudit<'a> {
    pub time: &'a str,
    pub actor: &'a str,
    pub action: &'a str,
    pub key: &'a Key,
    pub rv: u64,
    pub message: &'a str,
}

/// Filters a backend applies in SQL; the label selector is applied in Rust.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RowFilter<'a> {
    pub group: Option<&'a str>,
    pub kind: Option<&'a str>,
    pub namespace: Option<&'a str>,
}

/// One open transaction. Write transactions already hold the database's write lock when handed
/// out (SQLite `BEGIN IMMEDIATE`, PostgreSQL `SELECT ... FOR UPDATE` on the counter row), so a read
/// followed by a write cannot interleave with another writer, in this process or another.
pub(crate) trait Tx {
    /// The object JSON stored under `key`.
    fn get(&mut self, key: &Key) -> Result<Option<String>>;
    /// Object JSON of every row matching `filter`, in no particular order.
    fn list(&mut self, filter: RowFilter<'_>) -> Result<Vec<String>>;
    /// The newest resourceVersion handed out (0 for an empty store).
    fn current_rv(&mut self) -> Result<u64>;
    /// Bumps and returns the global resourceVersion.
    fn next_rv(&mut self) -> Result<u64>;
    /// Inserts or replaces the row for `key`.
    fn put(&mut self, key: &Key, rv: u64, data: &str) -> Result<()>;
    fn delete(&mut self, key: &Key) -> Result<()>;
    fn append_change(&mut self, change: &ChangeRow) -> Result<()>;
    fn append_audit(&mut self, event: &NewAudit<'_>) -> Result<()>;
    /// Changes with rv > `since` matching `filter`, ascending, at most `limit`.
    fn changes_since(
        &mut self,
        since: u64,
        filter: RowFilter<'_>,
        limit: usize,
    ) -> Result<Vec<ChangeRow>>;
    /// The retained change rows of one Secret, as (rv, object JSON), ascending.
    fn secret_changes(&mut self, namespace: &str, name: &str) -> Result<Vec<(u64, String)>>;
    /// Replaces the object JSON of the change row `rv`.
    fn rewrite_change(&mut self, rv: u64, object: &str) -> Result<()>;
    /// The smallest retained change rv, `None` when the table is empty.
    fn oldest_change(&mut self) -> Result<Option<u64>>;
    /// Deletes changes with rv <= `upto`; returns how many.
    fn delete_changes_upto(&mut self, upto: u64) -> Result<u64>;
    /// Audit events matching the query, newest last.
    fn audit(&mut self, query: &EventQuery) -> Result<Vec<AuditEvent>>;
    /// Appends `lines` to the log of `owner`, all stamped `time`; returns the last seq taken.
    fn append_logs(&mut self, owner: &Key, time: &str, lines: &[NewLogLine]) -> Result<u64>;
    /// Lines of `owner` with seq > `after`, ascending, at most `limit` (0: all).
    fn logs(&mut self, owner: &Key, after: u64, limit: usize) -> Result<Vec<LogLine>>;
    /// Deletes every line of `owner`; returns how many.
    fn delete_logs(&mut self, owner: &Key) -> Result<u64>;
    /// Every row of `pipeline_settings` of `kind` (`secret` or `variable`), in no order.
    fn settings(&mut self, kind: &str) -> Result<Vec<SettingRow>>;
    /// Inserts or replaces one row of `pipeline_settings`.
    fn put_setting(&mut self, kind: &str, row: &SettingRow) -> Result<()>;
    /// Deletes one row; whether it existed.
    fn delete_setting(&mut self, kind: &str, repo: &str, env: &str, name: &str) -> Result<bool>;
    /// Migration support: the versions already applied (creates `schema_migrations` if missing).
    fn applied_migrations(&mut self) -> Result<Vec<i64>>;
    /// Runs one migration's SQL and records it.
    fn apply_migration(&mut self, version: i64, sql: &str, now: &str) -> Result<()>;
}

/// The numbered migrations of one backend, applied in order at open.
pub(crate) type Migrations = &'static [(i64, &'static str)];

/// Applies the migrations not yet recorded in `schema_migrations`.
pub(crate) fn migrate(tx: &mut dyn Tx, migrations: Migrations, now: &str) -> Result<()> {
    let applied = tx.applied_migrations()?;
    if let Some(newest) = applied.iter().max()
        && let Some(known) = migrations.iter().map(|(v, _)| *v).max()
        && *newest > known
    {
        return Err(StoreError::backend(
            format!(
                "the database has schema version {newest} but this Shipway knows only up to {known}: upgrade Shipway"
            ),
            false,
        ));
    }
    for (version, sql) in migrations {
        if !applied.contains(version) {
            tx.apply_migration(*version, sql, now)?;
        }
    }
    Ok(())
}
