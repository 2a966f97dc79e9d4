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
        "database {location} has schema version {found}, newer than this core-lite knows ({known})"
    )]
    TooNew {
        location: String,
        found: i64,
        known: i64,
    },
    #[error(
        "bad PostgreSQL URL (postgres://user@host/db or postgres:///db?host=/socket/dir): {source}"
    )]
    PgConfig {
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL unavailable: {0}")]
    PgPool(String),
    #[error("migrating the PostgreSQL database to version {version}: {source}")]
    PgMigrate {
        version: i64,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("PostgreSQL commit failed (changes rolled back): {0}")]
    PgCommit(String),
    #[error("PostgreSQL query failed: {}", pg_message(.0))]
    Pg(#[source] tokio_postgres::Error),
    #[error("query returned no rows")]
    NoRow,
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
    ///
    /// On PostgreSQL: the server is unreachable or shutting down, out of resources, or the
    /// transaction lost a serialization conflict or deadlock (a retry succeeds).
    pub fn is_unavailable(&self) -> bool {
        match self {
            StoreError::PgPool(_) | StoreError::PgCommit(_) => true,
            StoreError::Pg(e) => pg_is_unavailable(e),
            _ => self
                .sqlite()
                .is_some_and(|e| is_busy(e) || is_storage_fault(e)),
        }
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

/// A PostgreSQL error worth a retry: no connection (closed, refused, timed out), a connection
/// exception (class 08), the server shutting down or starting (57P0x), out of resources
/// (class 53), a serialization failure or deadlock (40001, 40P01).
pub(super) fn pg_is_unavailable(e: &tokio_postgres::Error) -> bool {
    match e.code() {
        Some(code) => {
            let c = code.code();
            c.starts_with("08")
                || c.starts_with("53")
                || c.starts_with("57P")
                || c == "40001"
                || c == "40P01"
        }
        None => {
            e.is_closed()
                || std::error::Error::source(e)
                    .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
                || e.to_string().contains("timed out")
        }
    }
}

/// A driver error with the server's message (tokio-postgres says only "db error").
pub(super) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}
