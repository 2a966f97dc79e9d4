//! SQLite storage: WAL, foreign keys on, migrations keyed by version, one writer connection
//! and a few readers. Every write is a transaction committed with `synchronous=FULL`, so what
//! a caller was told is durable.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior};

/// Errors of the storage layer.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
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
    #[error("database commit failed (changes rolled back)")]
    CommitFailed,
    #[error("database query failed: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored JSON in {what} is unreadable: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

/// The migrations, in order; index + 1 is the schema version.
const MIGRATIONS: &[&str] = &[
    // 1: the whole schema of issue 2; payments (issue 6) get their own table later.
    r#"
    CREATE TABLE modules (
        name               TEXT PRIMARY KEY,
        version            TEXT NOT NULL,
        offering_template  TEXT NOT NULL,
        offering_hash      TEXT NOT NULL UNIQUE,
        access_template    TEXT NOT NULL,
        access_hash        TEXT NOT NULL UNIQUE,
        registered_at_ms   INTEGER NOT NULL
    );
    CREATE TABLE products (
        id             TEXT PRIMARY KEY,
        name           TEXT NOT NULL UNIQUE,
        module         TEXT NOT NULL REFERENCES modules(name),
        endpoint       TEXT,
        config         TEXT NOT NULL DEFAULT '{}',
        config_at_ms   INTEGER,
        created_at_ms  INTEGER NOT NULL
    );
    CREATE TABLE tokens (
        hash           TEXT PRIMARY KEY,
        role           TEXT NOT NULL CHECK (role IN ('admin', 'product', 'client')),
        product_id     TEXT REFERENCES products(id),
        created_at_ms  INTEGER NOT NULL,
        CHECK ((role = 'product') = (product_id IS NOT NULL))
    );
    CREATE TABLE offerings (
        hash                  TEXT PRIMARY KEY,
        product_id            TEXT NOT NULL REFERENCES products(id),
        template_hash         TEXT NOT NULL,
        signed                TEXT NOT NULL,
        supply                INTEGER NOT NULL,
        unit_price            INTEGER NOT NULL,
        setup_price           INTEGER NOT NULL,
        min_units             INTEGER NOT NULL,
        max_units             INTEGER NOT NULL,
        free_units            INTEGER NOT NULL,
        billing_type          TEXT NOT NULL,
        billing_interval      INTEGER NOT NULL,
        max_billing_unit_lag  INTEGER NOT NULL,
        max_suspend_time_s    INTEGER NOT NULL,
        max_inactive_time_s   INTEGER NOT NULL,
        additional_params     TEXT NOT NULL,
        created_at_ms         INTEGER NOT NULL
    );
    -- side 'agent': a sale (offering, password hash); side 'client': an imported access message.
    CREATE TABLE channels (
        id                TEXT PRIMARY KEY,
        side              TEXT NOT NULL CHECK (side IN ('agent', 'client')),
        offering_hash     TEXT REFERENCES offerings(hash),
        client_key        TEXT NOT NULL,
        password_hash     TEXT,
        access_message    TEXT,
        deposit           INTEGER NOT NULL DEFAULT 0,
        amount_paid       INTEGER NOT NULL DEFAULT 0,
        status            TEXT NOT NULL,
        status_since_ms   INTEGER NOT NULL,
        bytes_total       INTEGER NOT NULL DEFAULT 0,
        created_at_ms     INTEGER NOT NULL,
        UNIQUE (side, client_key),
        CHECK ((side = 'agent') = (offering_hash IS NOT NULL AND password_hash IS NOT NULL)),
        CHECK ((side = 'client') = (access_message IS NOT NULL))
    );
    CREATE INDEX channels_offering ON channels(offering_hash, status);
    CREATE TABLE status_history (
        id          INTEGER PRIMARY KEY,
        channel_id  TEXT NOT NULL REFERENCES channels(id),
        status      TEXT NOT NULL,
        at_ms       INTEGER NOT NULL,
        reason      TEXT NOT NULL
    );
    CREATE INDEX status_history_channel ON status_history(channel_id, id);
    CREATE TABLE sessions (
        id              TEXT PRIMARY KEY,
        channel_id      TEXT NOT NULL REFERENCES channels(id),
        connection_id   TEXT,
        client_addr     TEXT,
        vpn_addr        TEXT,
        started_at_ms   INTEGER NOT NULL,
        stopped_at_ms   INTEGER,
        updated_at_ms   INTEGER NOT NULL,
        bytes_in        INTEGER NOT NULL DEFAULT 0,
        bytes_out       INTEGER NOT NULL DEFAULT 0
    );
    CREATE UNIQUE INDEX sessions_one_open ON sessions(channel_id) WHERE stopped_at_ms IS NULL;
    CREATE INDEX sessions_channel ON sessions(channel_id, started_at_ms);
    "#,
    // 2: the market (issue 6): accepted offerings, client keys, cheques.
    r#"
    CREATE TABLE market_offerings (
        hash            TEXT PRIMARY KEY,
        market_url      TEXT NOT NULL,
        signed          TEXT NOT NULL,
        terms           TEXT NOT NULL,
        fetched_at_ms   INTEGER NOT NULL
    );
    -- agent: the client's key (cheques) and the accept nonce (idempotent accept);
    -- client: where the agent's market is, the agent's channel id, the offering.
    ALTER TABLE channels ADD COLUMN client_public_key TEXT;
    ALTER TABLE channels ADD COLUMN accept_nonce TEXT;
    ALTER TABLE channels ADD COLUMN cheque TEXT;
    ALTER TABLE channels ADD COLUMN market_url TEXT;
    ALTER TABLE channels ADD COLUMN remote_channel_id TEXT;
    ALTER TABLE channels ADD COLUMN market_offering TEXT REFERENCES market_offerings(hash);
    ALTER TABLE channels ADD COLUMN payments_paused INTEGER NOT NULL DEFAULT 0;
    CREATE UNIQUE INDEX channels_accept_nonce ON channels(accept_nonce) WHERE accept_nonce IS NOT NULL;
    CREATE TABLE cheques (
        id          INTEGER PRIMARY KEY,
        channel_id  TEXT NOT NULL REFERENCES channels(id),
        amount      INTEGER NOT NULL,
        signature   TEXT NOT NULL,
        at_ms       INTEGER NOT NULL
    );
    CREATE INDEX cheques_channel ON cheques(channel_id, id);
    "#,
];

/// SQLite stores signed 64-bit integers; counters and money are u64 in Rust.
pub fn to_sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
pub fn from_sql_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

const READERS: usize = 4;

/// A pool of one writer and a few reader connections to one SQLite file.
pub struct Db {
    path: PathBuf,
    writer: Mutex<Writer>,
    /// Writers waiting for the writer connection (group commit).
    writers_waiting: AtomicUsize,
    /// Signalled after every commit (or abandoned group).
    committed: Condvar,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db").field("path", &self.path).finish()
    }
}

/// The writer connection and its group-commit state.
struct Writer {
    conn: Connection,
    /// A transaction is open (a group is being collected).
    in_tx: bool,
    /// Number of the group being collected; bumped at each commit.
    generation: u64,
    /// Groups whose commit failed (rare; bounded). A group not listed here committed: a
    /// waiter may wake many commits later and must still learn its group's outcome.
    failed_generations: VecDeque<u64>,
}

impl Writer {
    fn record_failure(&mut self, generation: u64) {
        self.failed_generations.push_back(generation);
        while self.failed_generations.len() > 4096 {
            self.failed_generations.pop_front();
        }
    }
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, DbError> {
    let open_err = |source| DbError::Open {
        path: path.to_path_buf(),
        source,
    };
    let conn = Connection::open_with_flags(path, flags).map_err(open_err)?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(open_err)?;
    conn.set_prepared_statement_cache_capacity(64);
    // A checkpoint every ~8,000 WAL pages instead of 1,000: usage reports rewrite the same
    // few pages, so fewer checkpoints copy far fewer pages (UpdateSession CPU at 1,000
    // reports/s: 13.7 % -> 11.4 % of a core in bench-core). The WAL stays <= ~32 MB.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = FULL;
         PRAGMA foreign_keys = ON;
         PRAGMA wal_autocheckpoint = 8000;",
    )
    .map_err(open_err)?;
    Ok(conn)
}

impl Db {
    /// Opens (creating, mode 0600) the database and migrates it to the newest version.
    pub fn open(path: &Path) -> Result<Db, DbError> {
        if !path.exists() {
            // Create the file 0600 before SQLite does (it would use the umask).
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| DbError::Open {
                    path: path.to_path_buf(),
                    source: rusqlite::Error::InvalidPath(PathBuf::from(format!(
                        "{}: {e}",
                        path.display()
                    ))),
                })?;
        }
        let mut writer = open_conn(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        migrate(&mut writer, path)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(open_conn(
                path,
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?));
        }
        Ok(Db {
            path: path.to_path_buf(),
            writer: Mutex::new(Writer {
                conn: writer,
                in_tx: false,
                generation: 0,
                failed_generations: VecDeque::new(),
            }),
            writers_waiting: AtomicUsize::new(0),
            committed: Condvar::new(),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` in a transaction on the writer connection and returns once its changes are
    /// committed durably (`synchronous=FULL`); if `f` fails, its changes are rolled back.
    ///
    /// Group commit: writers that arrive while another one holds the connection join the
    /// same open transaction, each in its own savepoint (a failing `f` undoes only its own
    /// changes). The last writer of a burst commits for all of them, and every writer gets
    /// its answer only after that commit: one fsync serves many UpdateSessions.
    pub fn write<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let sql = |e| E::from(DbError::Sql(e));
        self.writers_waiting.fetch_add(1, Ordering::SeqCst);
        let mut w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        self.writers_waiting.fetch_sub(1, Ordering::SeqCst);
        if !w.in_tx {
            if let Err(e) = w.conn.execute_batch("BEGIN IMMEDIATE") {
                return Err(sql(e));
            }
            w.in_tx = true;
        }
        if let Err(e) = w.conn.execute_batch("SAVEPOINT w") {
            return Err(sql(e));
        }
        let out = f(&w.conn);
        let undo = if out.is_ok() {
            "RELEASE w"
        } else {
            "ROLLBACK TO w; RELEASE w"
        };
        if let Err(e) = w.conn.execute_batch(undo) {
            // The transaction is in an unknown state: abandon it for everyone in it.
            let _ = w.conn.execute_batch("ROLLBACK");
            w.in_tx = false;
            let g = w.generation;
            w.record_failure(g);
            w.generation += 1;
            self.committed.notify_all();
            return Err(sql(e));
        }
        let my_generation = w.generation;
        if self.writers_waiting.load(Ordering::SeqCst) == 0 {
            // Nobody behind us: commit the whole group now.
            let ok = w.conn.execute_batch("COMMIT").is_ok();
            if !ok {
                let _ = w.conn.execute_batch("ROLLBACK");
            }
            w.in_tx = false;
            if !ok {
                w.record_failure(my_generation);
            }
            w.generation += 1;
            self.committed.notify_all();
            return if ok {
                out
            } else {
                out.and(Err(E::from(DbError::CommitFailed)))
            };
        }
        // Someone is waiting for the connection: they (or the last of them) commit for us.
        loop {
            w = self.committed.wait(w).unwrap_or_else(|e| e.into_inner());
            if w.generation > my_generation {
                let ok = !w.failed_generations.contains(&my_generation);
                return if ok {
                    out
                } else {
                    out.and(Err(E::from(DbError::CommitFailed)))
                };
            }
        }
    }

    /// Runs `f` on one of the reader connections (a consistent snapshot per statement).
    pub fn read<T, E: From<DbError>>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = lock(&self.readers[i]);
        f(&conn)
    }
}

fn migrate(conn: &mut Connection, path: &Path) -> Result<(), DbError> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|source| DbError::Migrate { version: 0, source })?;
    let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
    if current > known {
        return Err(DbError::TooNew {
            path: path.to_path_buf(),
            found: current,
            known,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
        if version <= current {
            continue;
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Exclusive)
            .map_err(|source| DbError::Migrate { version, source })?;
        tx.execute_batch(sql)
            .and_then(|()| tx.pragma_update(None, "user_version", version))
            .and_then(|()| tx.commit())
            .map_err(|source| DbError::Migrate { version, source })?;
    }
    Ok(())
}

/// `query_row` / `execute` through the connection's prepared-statement cache: the hot
/// paths (AuthClient, UpdateSession) run the same few statements thousands of times.
pub trait Cached {
    fn q_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>;
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize>;
}

impl Cached for Connection {
    fn q_row<T, P, F>(&self, sql: &str, params: P, f: F) -> rusqlite::Result<T>
    where
        P: rusqlite::Params,
        F: FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    {
        self.prepare_cached(sql)?.query_row(params, f)
    }
    fn exec<P: rusqlite::Params>(&self, sql: &str, params: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(params)
    }
}

/// `SELECT ... LIMIT 1` returning an optional row.
pub fn opt<T>(r: rusqlite::Result<T>) -> Result<Option<T>, DbError> {
    r.optional().map_err(DbError::Sql)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("core.db");
        {
            let db = Db::open(&p).expect("open");
            db.write(|tx| {
                tx.execute(
                    "INSERT INTO modules VALUES ('m','1','{}','h1','{}','h2',0)",
                    [],
                )?;
                Ok::<_, DbError>(())
            })
            .expect("insert");
        }
        let db = Db::open(&p).expect("reopen");
        let n: i64 = db
            .read(|c| {
                Ok::<_, DbError>(c.query_row("SELECT count(*) FROM modules", [], |r| r.get(0))?)
            })
            .expect("count");
        assert_eq!(n, 1);
        let v: i64 = db
            .read(|c| Ok::<_, DbError>(c.query_row("PRAGMA user_version", [], |r| r.get(0))?))
            .expect("version");
        assert_eq!(v, i64::try_from(MIGRATIONS.len()).expect("fits"));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn refuses_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("core.db");
        drop(Db::open(&p).expect("open"));
        let c = Connection::open(&p).expect("raw");
        c.pragma_update(None, "user_version", 99).expect("set");
        drop(c);
        let e = Db::open(&p).expect_err("must refuse");
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn failed_write_rolls_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = Db::open(&dir.path().join("core.db")).expect("open");
        let r: Result<(), DbError> = db.write(|tx| {
            tx.execute(
                "INSERT INTO modules VALUES ('m','1','{}','h1','{}','h2',0)",
                [],
            )?;
            tx.execute(
                "INSERT INTO modules VALUES ('m','1','{}','h1','{}','h2',0)",
                [],
            )?;
            Ok(())
        });
        assert!(r.is_err());
        let n: i64 = db
            .read(|c| {
                Ok::<_, DbError>(c.query_row("SELECT count(*) FROM modules", [], |r| r.get(0))?)
            })
            .expect("count");
        assert_eq!(n, 0);
    }

    #[test]
    fn group_commit_keeps_each_writers_outcome() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("core.db");
        let db = std::sync::Arc::new(Db::open(&path).expect("open"));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for i in 0..50 {
                        let name = format!("m{t}-{i}");
                        // Every 5th writer fails after writing: only its row must vanish.
                        let fail = i % 5 == 0;
                        let r: Result<(), DbError> = db.write(|c| {
                            c.execute(
                                "INSERT INTO modules VALUES (?1,'1','{}',?1,'{}',?1 || 'a',0)",
                                [&name],
                            )?;
                            if fail {
                                // A constraint error: the duplicate insert fails.
                                c.execute(
                                    "INSERT INTO modules VALUES (?1,'1','{}',?1,'{}',?1 || 'a',0)",
                                    [&name],
                                )?;
                            }
                            Ok(())
                        });
                        assert_eq!(r.is_ok(), !fail, "{name}: {r:?}");
                        ok += usize::from(r.is_ok());
                    }
                    ok
                })
            })
            .collect();
        let ok: usize = threads.into_iter().map(|t| t.join().expect("thread")).sum();
        assert_eq!(ok, 16 * 40);
        drop(db);
        // Everything acknowledged is on disk, nothing else.
        let db = Db::open(&path).expect("reopen");
        let n: i64 = db
            .read(|c| {
                Ok::<_, DbError>(c.query_row("SELECT count(*) FROM modules", [], |r| r.get(0))?)
            })
            .expect("count");
        assert_eq!(n, 16 * 40);
        let failed: i64 = db
            .read(|c| {
                Ok::<_, DbError>(c.query_row(
                    "SELECT count(*) FROM modules WHERE name LIKE '%-0' OR name LIKE '%-5' OR name LIKE '%-10'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .expect("count");
        assert_eq!(failed, 0);
    }
}
