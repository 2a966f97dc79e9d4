//! The storage interface: [`Db`] is one database, SQLite ([`super::sqlite`], a file in the
//! data dir, the default) or PostgreSQL ([`super::pg`], `--database postgres://…`). Store
//! functions run on a [`Tx`] and see rows through [`Row`] and parameters through [`Arg`]:
//! the same SQL (written with `?N` placeholders, in the dialect both engines accept) runs on
//! either backend.
//!
//! A write that the storage cannot take (full disk, I/O error, PostgreSQL unreachable) fails
//! with an error that [`StoreError::is_unavailable`] names, and the database remembers the
//! fault ([`Db::fault`]) until a write succeeds again; [`Db::check_writable`] tries a tiny
//! write when a fault is remembered (what `/health` reports).

use std::cell::RefCell;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use super::error::StoreError;
use super::pg::{PgDb, PgTx};
use super::sqlite::LiteDb;
use super::stats::{StoreStats, WriteFailure};

/// Where the core's database is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file (created when missing).
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database (`postgres://user@host/db`, or a unix socket directory with
    /// `?host=/run/postgresql`); it must exist, the schema is created in it.
    Postgres(String),
}

impl Location {
    /// `postgres://…` / `postgresql://…` is PostgreSQL, anything else a SQLite file path.
    pub fn parse(s: &str) -> Location {
        if s.starts_with("postgres://") || s.starts_with("postgresql://") {
            Location::Postgres(s.to_string())
        } else {
            Location::Sqlite(s.into())
        }
    }
}

/// A write the storage could not take, remembered until a write succeeds again.
#[derive(Clone, Debug)]
pub struct WriteFault {
    /// When the first failing write of this fault happened (unix ms).
    pub since_ms: i64,
    /// The latest failure.
    pub error: String,
}

impl std::fmt::Display for WriteFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "writes fail since unix time {} ms: {}",
            self.since_ms, self.error
        )
    }
}

pub(super) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the database inconsistent (transactions
    // roll back).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How often [`Db::check_writable`] tries a write while a fault is remembered.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What a backend reports about itself: its remembered fault, commit times, failed writes.
#[derive(Default)]
pub(super) struct Health {
    pub(super) stats: StoreStats,
    fault: Mutex<Option<WriteFault>>,
    last_probe: Mutex<Option<Instant>>,
}

impl Health {
    /// A write failed because the storage could not take it.
    pub(super) fn note_fault(&self, error: String) {
        self.stats.failed(WriteFailure::StorageFault);
        let mut fault = lock(&self.fault);
        if fault.is_none() {
            tracing::error!(%error, "storage fault: writes fail (answered 503 until one succeeds)");
        }
        let since_ms = fault.as_ref().map_or_else(unix_ms, |f| f.since_ms);
        *fault = Some(WriteFault { since_ms, error });
    }

    /// A write succeeded.
    pub(super) fn clear_fault(&self) {
        if let Some(f) = lock(&self.fault).take() {
            tracing::warn!(since_ms = f.since_ms, "storage writable again");
        }
    }

    fn fault(&self) -> Option<WriteFault> {
        lock(&self.fault).clone()
    }
}

enum Backend {
    Sqlite(LiteDb),
    Postgres(PgDb),
}

/// The core's database: SQLite or PostgreSQL, the same schema and the same store functions.
pub struct Db {
    backend: Backend,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("location", &self.describe())
            .finish()
    }
}

impl Db {
    /// Opens (creating, mode 0600) the SQLite file and migrates it to the newest version.
    pub fn open(path: &Path) -> Result<Db, StoreError> {
        Ok(Db {
            backend: Backend::Sqlite(LiteDb::open(path)?),
        })
    }

    /// Connects to PostgreSQL and migrates the database to the newest version (refusing one
    /// newer than this code). Several cores may do this at once on one database.
    pub fn open_postgres(url: &str) -> Result<Db, StoreError> {
        Ok(Db {
            backend: Backend::Postgres(PgDb::open(url)?),
        })
    }

    /// Opens the database at `location`.
    pub fn open_at(location: &Location) -> Result<Db, StoreError> {
        match location {
            Location::Sqlite(p) => Db::open(p),
            Location::Postgres(url) => Db::open_postgres(url),
        }
    }

    /// Whether this is PostgreSQL (several cores may share it).
    pub fn is_postgres(&self) -> bool {
        matches!(self.backend, Backend::Postgres(_))
    }

    /// The database for logs and errors: the SQLite path, or PostgreSQL's host and database
    /// (never a password).
    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Sqlite(l) => format!("sqlite {}", l.path().display()),
            Backend::Postgres(p) => p.describe(),
        }
    }

    fn health(&self) -> &Health {
        match &self.backend {
            Backend::Sqlite(l) => &l.health,
            Backend::Postgres(p) => &p.health,
        }
    }

    /// Commit times and failed writes (see [`crate::metrics`]).
    pub fn stats(&self) -> &StoreStats {
        &self.health().stats
    }

    /// The storage fault of the last failing write, until a write succeeds again.
    pub fn fault(&self) -> Option<WriteFault> {
        self.health().fault()
    }

    /// `Ok` unless a storage fault is remembered; then a tiny write is tried (at most once
    /// per second), and its success clears the fault.
    pub fn check_writable(&self) -> Result<(), WriteFault> {
        let Some(fault) = self.fault() else {
            return Ok(());
        };
        {
            let mut last = lock(&self.health().last_probe);
            if last.is_some_and(|t| t.elapsed() < PROBE_INTERVAL) {
                return Err(fault);
            }
            *last = Some(Instant::now());
        }
        let probe = self.write(|tx| {
            tx.exec(
                "INSERT INTO health_probe (id, at_ms) VALUES (1, ?1)
                 ON CONFLICT(id) DO UPDATE SET at_ms = excluded.at_ms",
                args![unix_ms()],
            )
        });
        match probe {
            Ok(_) => Ok(()),
            Err(_) => Err(self.fault().unwrap_or(fault)),
        }
    }

    /// Runs `f` in a transaction and returns once its changes are committed durably; if `f`
    /// fails, its changes are rolled back. On SQLite writers arriving together share one
    /// commit (see [`super::sqlite`]); on PostgreSQL each write is its own transaction, and
    /// store functions that read what they will change lock the rows (`FOR UPDATE`), so
    /// writes from several cores to one channel never lose an update.
    pub fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite(l) => l.write(f),
            Backend::Postgres(p) => p.write(f),
        }
    }

    /// Runs `f` on a reader connection (a consistent snapshot per statement).
    pub fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        match &self.backend {
            Backend::Sqlite(l) => l.read(f),
            Backend::Postgres(p) => p.read(f),
        }
    }

    /// Runs `f` while no other core on the same database runs a job of this `name`
    /// (PostgreSQL: a session advisory lock, waited for; SQLite has one core per file: runs
    /// at once). For periodic jobs such as the billing timers: the cores take turns.
    pub fn serialized<T>(&self, name: &str, f: impl FnOnce() -> T) -> Result<T, StoreError> {
        match &self.backend {
            Backend::Sqlite(_) => Ok(f()),
            Backend::Postgres(p) => p.serialized(name, f),
        }
    }
}

/// What the store functions run on: the open transaction of [`Db::write`] or a reader
/// connection of [`Db::read`]. Outside the store it is an opaque handle to pass on.
pub struct Tx<'c> {
    inner: TxInner<'c>,
}

enum TxInner<'c> {
    Sqlite {
        conn: &'c Connection,
        /// The first storage fault a statement of this write hit.
        fault: Option<&'c RefCell<Option<rusqlite::Error>>>,
    },
    Postgres(PgTx<'c>),
}

/// A parameter of a statement: anything both drivers can bind (`&str`, `String`, `i64`,
/// `bool`, their `Option`s).
pub trait Arg: Sync {
    fn sqlite(&self) -> &dyn rusqlite::ToSql;
    fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync);
}

// Only types both engines store the same way: no u32 (an OID to PostgreSQL) or u64 (not
// an SQL integer); counters go through `codec::to_sql_u64`.
macro_rules! arg {
    ($($t:ty),*) => {$(
        impl Arg for $t {
            fn sqlite(&self) -> &dyn rusqlite::ToSql {
                self
            }
            fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
                self
            }
        }
    )*};
}
arg!(
    &str,
    String,
    i64,
    bool,
    f64,
    Option<&str>,
    Option<String>,
    Option<i64>
);

impl<T: Arg> Arg for &T {
    fn sqlite(&self) -> &dyn rusqlite::ToSql {
        (**self).sqlite()
    }
    fn postgres(&self) -> &(dyn tokio_postgres::types::ToSql + Sync) {
        (**self).postgres()
    }
}

/// The parameters of a statement, `args![a, b]`, bound to `?1`, `?2`.
macro_rules! args {
    () => {
        &[] as &[&dyn $crate::store::Arg]
    };
    ($($e:expr),+ $(,)?) => {
        &[$(&$e as &dyn $crate::store::Arg),+] as &[&dyn $crate::store::Arg]
    };
}
pub(crate) use args;

/// One result row, of either backend.
pub enum Row<'a> {
    Sqlite(&'a rusqlite::Row<'a>),
    Postgres(&'a tokio_postgres::Row),
}

/// A column index (`r.get(0)`).
pub trait ColumnIndex {
    fn index(self) -> usize;
}
impl ColumnIndex for usize {
    fn index(self) -> usize {
        self
    }
}
impl ColumnIndex for i32 {
    fn index(self) -> usize {
        usize::try_from(self).unwrap_or(usize::MAX)
    }
}

/// A value read from a column. Integers are 64-bit on both backends (PostgreSQL `BIGINT`;
/// `INTEGER` columns are read too); booleans are `BOOLEAN` on PostgreSQL, 0/1 on SQLite.
pub trait Column: Sized {
    fn sqlite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self>;
    fn postgres(r: &tokio_postgres::Row, i: usize) -> Result<Self, tokio_postgres::Error>;
}

macro_rules! plain_column {
    ($($t:ty),*) => {$(
        impl Column for $t {
            fn sqlite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
                r.get(i)
            }
            fn postgres(r: &tokio_postgres::Row, i: usize) -> Result<Self, tokio_postgres::Error> {
                r.try_get(i)
            }
        }
    )*};
}
plain_column!(String, Option<String>, f64, Option<f64>);

impl Column for i64 {
    fn sqlite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn postgres(r: &tokio_postgres::Row, i: usize) -> Result<Self, tokio_postgres::Error> {
        r.try_get::<_, i64>(i)
            .or_else(|e| r.try_get::<_, i32>(i).map(i64::from).map_err(|_| e))
    }
}

impl Column for Option<i64> {
    fn sqlite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn postgres(r: &tokio_postgres::Row, i: usize) -> Result<Self, tokio_postgres::Error> {
        r.try_get::<_, Option<i64>>(i).or_else(|e| {
            r.try_get::<_, Option<i32>>(i)
                .map(|v| v.map(i64::from))
                .map_err(|_| e)
        })
    }
}

impl Column for bool {
    fn sqlite(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Self> {
        r.get(i)
    }
    fn postgres(r: &tokio_postgres::Row, i: usize) -> Result<Self, tokio_postgres::Error> {
        r.try_get::<_, bool>(i).or_else(|e| {
            <i64 as Column>::postgres(r, i)
                .map(|v| v != 0)
                .map_err(|_| e)
        })
    }
}

impl Row<'_> {
    /// Column `i` (0-based).
    pub fn get<I: ColumnIndex, T: Column>(&self, i: I) -> Result<T, StoreError> {
        let i = i.index();
        match self {
            Row::Sqlite(r) => T::sqlite(r, i).map_err(StoreError::Sql),
            Row::Postgres(r) => T::postgres(r, i).map_err(StoreError::Pg),
        }
    }
}

fn sqlite_args<'a>(args: &'a [&'a dyn Arg]) -> impl rusqlite::Params + 'a {
    rusqlite::params_from_iter(args.iter().map(|a| a.sqlite()))
}

impl<'c> Tx<'c> {
    pub(super) fn sqlite(
        conn: &'c Connection,
        fault: Option<&'c RefCell<Option<rusqlite::Error>>>,
    ) -> Tx<'c> {
        Tx {
            inner: TxInner::Sqlite { conn, fault },
        }
    }

    pub(super) fn postgres(tx: PgTx<'c>) -> Tx<'c> {
        Tx {
            inner: TxInner::Postgres(tx),
        }
    }

    /// In a PostgreSQL write, locks the rows `select` returns (`SELECT … FOR UPDATE`) until
    /// the commit; the statements after it see what the previous holder committed (each
    /// statement reads a fresh snapshot). Writers changing one channel lock its row first,
    /// so two cores take turns and no update is lost. Nothing on SQLite (one writer at a
    /// time anyway) and in reads.
    pub(super) fn lock(&self, select: &str, args: &[&dyn Arg]) -> Result<(), StoreError> {
        match &self.inner {
            TxInner::Postgres(p) if p.is_write() => {
                p.query(&format!("{select} FOR UPDATE"), args)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// A SQLite statement's error; a storage fault is also noted for the pool.
    fn sqlite_failed(
        fault: Option<&RefCell<Option<rusqlite::Error>>>,
        e: rusqlite::Error,
    ) -> StoreError {
        if let Some(cell) = fault {
            if super::error::is_storage_fault(&e) && cell.borrow().is_none() {
                *cell.borrow_mut() = super::error::copy_failure(&e);
            }
        }
        StoreError::Sql(e)
    }

    /// One row (an error when there is none), through the prepared-statement cache: the hot
    /// paths (AuthClient, UpdateSession) run the same few statements thousands of times.
    pub(super) fn row<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match self.opt_row(sql, args, f)? {
            Some(v) => Ok(v),
            None => Err(match &self.inner {
                TxInner::Sqlite { .. } => StoreError::Sql(rusqlite::Error::QueryReturnedNoRows),
                TxInner::Postgres(_) => StoreError::NoRow,
            }),
        }
    }

    /// At most one row (`SELECT ... LIMIT 1`), through the statement cache.
    pub(super) fn opt_row<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        f: impl FnOnce(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        match &self.inner {
            TxInner::Sqlite { conn, fault } => {
                let failed = |e| Self::sqlite_failed(*fault, e);
                let mut st = conn.prepare_cached(sql).map_err(failed)?;
                let mut rows = st.query(sqlite_args(args)).map_err(failed)?;
                match rows.next().map_err(failed)? {
                    Some(r) => f(&Row::Sqlite(r)).map(Some),
                    None => Ok(None),
                }
            }
            TxInner::Postgres(p) => match p.query_opt(sql, args)? {
                Some(r) => f(&Row::Postgres(&r)).map(Some),
                None => Ok(None),
            },
        }
    }

    /// Every row (listings: on SQLite prepared without the cache).
    pub(super) fn rows<T>(
        &self,
        sql: &str,
        args: &[&dyn Arg],
        mut f: impl FnMut(&Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        match &self.inner {
            TxInner::Sqlite { conn, fault } => {
                let failed = |e| Self::sqlite_failed(*fault, e);
                let mut st = conn.prepare(sql).map_err(failed)?;
                let mut rows = st.query(sqlite_args(args)).map_err(failed)?;
                let mut out = Vec::new();
                while let Some(r) = rows.next().map_err(failed)? {
                    out.push(f(&Row::Sqlite(r))?);
                }
                Ok(out)
            }
            TxInner::Postgres(p) => p
                .query(sql, args)?
                .iter()
                .map(|r| f(&Row::Postgres(r)))
                .collect(),
        }
    }

    /// Runs one statement through the statement cache; returns the rows changed.
    pub(super) fn exec(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize, StoreError> {
        match &self.inner {
            TxInner::Sqlite { conn, fault } => conn
                .prepare_cached(sql)
                .and_then(|mut st| st.execute(sqlite_args(args)))
                .map_err(|e| Self::sqlite_failed(*fault, e)),
            TxInner::Postgres(p) => p.execute(sql, args),
        }
    }

    /// Runs a statement of a test that tampers with stored data (either backend).
    #[cfg(feature = "testkit")]
    pub fn test_exec(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize, StoreError> {
        self.exec(sql, args)
    }

    /// The first column of the first row of a test's query, as text (either backend).
    #[cfg(feature = "testkit")]
    pub fn test_query_text(&self, sql: &str, args: &[&dyn Arg]) -> Result<String, StoreError> {
        self.row(sql, args, |r| r.get(0))
    }

    #[cfg(test)]
    pub(super) fn lite_conn(&self) -> &Connection {
        match &self.inner {
            TxInner::Sqlite { conn, .. } => conn,
            TxInner::Postgres(_) => panic!("a SQLite test on PostgreSQL"),
        }
    }
}
