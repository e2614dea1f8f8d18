//! `StoreError`: what went wrong, for whom, and whether retrying can help.

use shipway_model::Key;

/// Every way a store operation can fail. Messages name the object and say what to do.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(Key),
    #[error("{0} already exists: update or apply it instead, or delete it first")]
    AlreadyExists(Key),
    /// `expected` is the resourceVersion the caller sent, `actual` the stored one.
    #[error(
        "{key} was modified (resourceVersion {actual}, you sent {expected}): get it again and retry"
    )]
    Conflict {
        key: Key,
        expected: u64,
        actual: u64,
    },
    #[error("{key} is invalid: {message}")]
    Invalid { key: Key, message: String },
    /// The watch asked for changes older than the retained history: list again and watch from the
    /// list's resourceVersion.
    #[error(
        "resourceVersion {requested} is too old (oldest retained change is {oldest}): list again and watch from the list's resourceVersion"
    )]
    Expired { requested: u64, oldest: u64 },
    /// A list's `continue` token that this store did not write (garbled, or from another server).
    #[error("invalid continue token: continue key is not valid: {0}")]
    InvalidContinue(String),
    /// A list's `continue` token older than the retained history, worded as Kubernetes words it.
    #[error(
        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter."
    )]
    ContinueExpired,
    /// The database failed; `retryable` says whether the same call may succeed later (lost
    /// connection, lock timeout, serialization failure).
    #[error("store backend error{}: {message}", if *.retryable { " (retryable)" } else { "" })]
    Backend { message: String, retryable: bool },
}

impl StoreError {
    /// Whether repeating the same call may succeed without changing it. A `Conflict` is not: the
    /// caller must re-read first.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            }
        )
    }

    pub(crate) fn backend(message: impl Into<String>, retryable: bool) -> StoreError {
        StoreError::Backend {
            message: message.into(),
            retryable,
        }
    }

    /// The `result` label of the operations metric.
    pub(crate) fn metric_label(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::AlreadyExists(_) => "already_exists",
            StoreError::Conflict { .. } => "conflict",
            StoreError::Invalid { .. } => "invalid",
            StoreError::Expired { .. } | StoreError::ContinueExpired => "expired",
            StoreError::InvalidContinue(_) => "invalid",
            StoreError::Backend { .. } => "backend_error",
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        // Busy/locked means another writer (possibly another process) held the file past
        // busy_timeout: trying again later can work.
        let retryable = matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        );
        StoreError::backend(format!("sqlite: {e}"), retryable)
    }
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> StoreError {
        use postgres::error::SqlState;
        let retryable = match e.code() {
            // No SQLSTATE: the connection failed (refused, reset, closed).
            None => true,
            Some(code) => {
                [
                    SqlState::T_R_SERIALIZATION_FAILURE,
                    SqlState::T_R_DEADLOCK_DETECTED,
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                ]
                .contains(code)
                    || code.code().starts_with("08")
            }
        };
        let message = match e.as_db_error() {
            Some(db) => format!("postgres: {}: {}", db.code().code(), db.message()),
            None => format!("postgres: {e}"),
        };
        StoreError::backend(message, retryable)
    }
}
