//! Errors of the storage layer.

use std::path::PathBuf;
use std::sync::Arc;

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("opening database {path}: {source}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("migrating database to version {version}: {source}")]
    Migrate {
        version: i64,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "database {path} has schema version {found}, newer than this core-lite knows ({known})"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    /// The transaction this write was part of was not committed (a group commit shares the
    /// outcome of the commit, and its error, among its writers).
    #[error("database commit failed (changes rolled back): {source}")]
    CommitFailed {
        #[source]
        source: Arc<rusqlite::Error>,
    },
    #[error("database query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored JSON in {what} is unreadable: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("encoding {what} as JSON: {source}")]
    Encode {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("unreadable value in {what}: {reason}")]
    BadValue { what: &'static str, reason: String },
}

impl StoreError {
    /// The SQLite error underneath, if any.
    fn sqlite(&self) -> Option<&rusqlite::Error> {
        match self {
            StoreError::Sql(e) => Some(e),
            StoreError::CommitFailed { source } => Some(source),
            _ => None,
        }
    }

    /// Worth a retry later, the request being fine: the database was busy or locked for
    /// longer than the busy timeout, or the storage could not take the write (full disk, I/O
    /// error, read-only filesystem). Answered 503 `unavailable`.
    pub fn is_unavailable(&self) -> bool {
        self.sqlite()
            .is_some_and(|e| is_busy(e) || is_storage_fault(e))
    }
}

fn code_of(e: &rusqlite::Error) -> Option<rusqlite::ErrorCode> {
    match e {
        rusqlite::Error::SqliteFailure(f, _) => Some(f.code),
        _ => None,
    }
}

/// The database was busy or locked for longer than the busy timeout.
pub(super) fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        code_of(e),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// The storage could not take a write: full disk (`SQLITE_FULL`), an I/O error
/// (`SQLITE_IOERR_*`), a file that cannot be opened or created (`SQLITE_CANTOPEN`), a
/// read-only filesystem (`SQLITE_READONLY`).
pub(super) fn is_storage_fault(e: &rusqlite::Error) -> bool {
    matches!(
        code_of(e),
        Some(
            rusqlite::ErrorCode::DiskFull
                | rusqlite::ErrorCode::SystemIoFailure
                | rusqlite::ErrorCode::CannotOpen
                | rusqlite::ErrorCode::ReadOnly
        )
    )
}

/// A copy of a SQLite failure (rusqlite's error is not `Clone`), to share it.
pub(super) fn copy_failure(e: &rusqlite::Error) -> Option<rusqlite::Error> {
    match e {
        rusqlite::Error::SqliteFailure(f, m) => Some(rusqlite::Error::SqliteFailure(*f, m.clone())),
        _ => None,
    }
}
