//! The SQLite pool: WAL, foreign keys on, one writer connection and a few readers. Every
//! write is a transaction committed with `synchronous=FULL`, so what a caller was told is
//! durable; writers arriving together share one commit (group commit).
//!
//! A write that the storage cannot take (full disk, I/O error, read-only filesystem) fails
//! with an error that [`StoreError::is_unavailable`] names, and the pool remembers the fault
//! ([`super::Db::fault`]) until a write succeeds again.
//!
//! Store functions run on a [`Tx`]; this module hands them the SQLite connection.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};

use super::db::{Health, Tx};
use super::error::{is_storage_fault, StoreError};
use super::migrations::migrate;
use super::stats::WriteFailure;

const READERS: usize = 4;

/// A pool of one writer and a few reader connections to one SQLite file.
pub(super) struct LiteDb {
    path: PathBuf,
    writer: Mutex<Writer>,
    /// Writers waiting for the writer connection (group commit).
    writers_waiting: AtomicUsize,
    /// Signalled after every commit (or abandoned group).
    committed: Condvar,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    /// Faults, commit times and failed writes.
    pub(super) health: Health,
}

impl std::fmt::Debug for LiteDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiteDb").field("path", &self.path).finish()
    }
}

/// The writer connection and its group-commit state.
struct Writer {
    conn: Connection,
    /// A transaction is open (a group is being collected).
    in_tx: bool,
    /// A writer of the open group kept changes (its commit proves the storage writable).
    group_wrote: bool,
    /// Number of the group being collected; bumped at each commit.
    generation: u64,
    /// Groups whose commit failed, with the error (rare; bounded). A group not listed here
    /// committed: a waiter may wake many commits later and must still learn its group's
    /// outcome.
    failed_generations: VecDeque<(u64, Arc<rusqlite::Error>)>,
}

impl Writer {
    fn record_failure(&mut self, generation: u64, error: Arc<rusqlite::Error>) {
        self.failed_generations.push_back((generation, error));
        while self.failed_generations.len() > 4096 {
            self.failed_generations.pop_front();
        }
    }

    fn failure_of(&self, generation: u64) -> Option<Arc<rusqlite::Error>> {
        self.failed_generations
            .iter()
            .find(|(g, _)| *g == generation)
            .map(|(_, e)| e.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll back).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, StoreError> {
    let open_err = |source| StoreError::Open {
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

impl LiteDb {
    /// Opens (creating, mode 0600) the database and migrates it to the newest version.
    pub(super) fn open(path: &Path) -> Result<LiteDb, StoreError> {
        if !path.exists() {
            // Create the file 0600 before SQLite does (it would use the umask).
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|e| StoreError::Open {
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
        Ok(LiteDb {
            path: path.to_path_buf(),
            writer: Mutex::new(Writer {
                conn: writer,
                in_tx: false,
                group_wrote: false,
                generation: 0,
                failed_generations: VecDeque::new(),
            }),
            writers_waiting: AtomicUsize::new(0),
            committed: Condvar::new(),
            readers,
            next_reader: AtomicUsize::new(0),
            health: Health::default(),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Remembers a storage fault (full disk, I/O error...): answered 503 until a write
    /// succeeds again.
    fn note_fault(&self, e: &rusqlite::Error) {
        if is_storage_fault(e) {
            self.health.note_fault(e.to_string());
        }
    }

    /// Runs `f` in a transaction on the writer connection and returns once its changes are
    /// committed durably (`synchronous=FULL`); if `f` fails, its changes are rolled back.
    ///
    /// Group commit: writers that arrive while another one holds the connection join the
    /// same open transaction, each in its own savepoint (a failing `f` undoes only its own
    /// changes). The last writer of a burst commits for all of them, and every writer gets
    /// its answer only after that commit: one fsync serves many UpdateSessions. When the
    /// transaction itself is lost (a failed commit, or SQLite rolling it back on a full
    /// disk), every writer of the group gets the error.
    pub(super) fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        self.writers_waiting.fetch_add(1, Ordering::SeqCst);
        let mut w = lock(&self.writer);
        self.writers_waiting.fetch_sub(1, Ordering::SeqCst);
        if !w.in_tx {
            if let Err(e) = w.conn.execute_batch("BEGIN IMMEDIATE") {
                self.note_fault(&e);
                return Err(E::from(StoreError::Sql(e)));
            }
            w.in_tx = true;
            w.group_wrote = false;
        }
        if let Err(e) = w.conn.execute_batch("SAVEPOINT w") {
            self.note_fault(&e);
            let cause = Arc::new(e);
            self.abandon(&mut w, cause.clone());
            return Err(E::from(StoreError::CommitFailed { source: cause }));
        }
        let changes_before = w.conn.total_changes();
        let hit = RefCell::new(None);
        let out = f(&Tx::sqlite(&w.conn, Some(&hit)));
        let hit = hit.into_inner();
        if let Some(e) = &hit {
            self.note_fault(e);
        }
        let undo = if out.is_ok() {
            "RELEASE w"
        } else {
            "ROLLBACK TO w; RELEASE w"
        };
        let undone = w.conn.execute_batch(undo);
        if undone.is_err() || w.conn.is_autocommit() {
            // The transaction is lost or in an unknown state (SQLite rolls it back itself on
            // some errors, e.g. a full disk): abandon it for everyone in it.
            let cause = hit.or_else(|| undone.err()).unwrap_or_else(|| {
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ABORT),
                    Some("the transaction ended unexpectedly".into()),
                )
            });
            let cause = Arc::new(cause);
            self.abandon(&mut w, cause.clone());
            return match out {
                Err(e) => Err(e),
                Ok(_) => Err(E::from(StoreError::CommitFailed { source: cause })),
            };
        }
        if out.is_ok() && w.conn.total_changes() > changes_before {
            w.group_wrote = true;
        }
        let my_generation = w.generation;
        if self.writers_waiting.load(Ordering::SeqCst) == 0 {
            // Nobody behind us: commit the whole group now.
            let started = Instant::now();
            let failure = match w.conn.execute_batch("COMMIT") {
                Ok(()) => {
                    self.health.stats.committed(started.elapsed());
                    if w.group_wrote {
                        self.health.clear_fault();
                    }
                    None
                }
                Err(e) => {
                    self.note_fault(&e);
                    self.health.stats.failed(WriteFailure::CommitFailed);
                    let _ = w.conn.execute_batch("ROLLBACK");
                    let cause = Arc::new(e);
                    w.record_failure(my_generation, cause.clone());
                    Some(cause)
                }
            };
            w.in_tx = false;
            w.generation += 1;
            self.committed.notify_all();
            return match failure {
                None => out,
                Some(source) => out.and(Err(E::from(StoreError::CommitFailed { source }))),
            };
        }
        // Someone is waiting for the connection: they (or the last of them) commit for us.
        loop {
            w = self.committed.wait(w).unwrap_or_else(|e| e.into_inner());
            if w.generation > my_generation {
                return match w.failure_of(my_generation) {
                    None => out,
                    Some(source) => out.and(Err(E::from(StoreError::CommitFailed { source }))),
                };
            }
        }
    }

    /// Ends the open group without committing: everyone in it gets `cause`.
    fn abandon(&self, w: &mut Writer, cause: Arc<rusqlite::Error>) {
        self.health.stats.failed(WriteFailure::CommitFailed);
        let _ = w.conn.execute_batch("ROLLBACK");
        w.in_tx = false;
        let g = w.generation;
        w.record_failure(g, cause);
        w.generation += 1;
        self.committed.notify_all();
    }

    /// Runs `f` on one of the reader connections (a consistent snapshot per statement).
    pub(super) fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len();
        let conn = lock(&self.readers[i]);
        f(&Tx::sqlite(&conn, None))
    }
}

#[cfg(test)]
mod tests {
    use super::super::migrations::MIGRATIONS;
    use super::*;

    #[test]
    fn opens_migrates_and_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("core.db");
        {
            let db = LiteDb::open(&p).expect("open");
            db.write(|tx| {
                tx.lite_conn().execute(
                    "INSERT INTO modules VALUES ('m','1','{}','h1','{}','h2',0)",
                    [],
                )?;
                Ok::<_, StoreError>(())
            })
            .expect("insert");
        }
        let db = LiteDb::open(&p).expect("reopen");
        let n: i64 = db
            .read(|c| {
                Ok::<_, StoreError>(c.lite_conn().query_row(
                    "SELECT count(*) FROM modules",
                    [],
                    |r| r.get(0),
                )?)
            })
            .expect("count");
        assert_eq!(n, 1);
        let v: i64 = db
            .read(|c| {
                Ok::<_, StoreError>(
                    c.lite_conn()
                        .query_row("PRAGMA user_version", [], |r| r.get(0))?,
                )
            })
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
        drop(LiteDb::open(&p).expect("open"));
        let c = Connection::open(&p).expect("raw");
        c.pragma_update(None, "user_version", 99).expect("set");
        drop(c);
        let e = LiteDb::open(&p).expect_err("must refuse");
        assert!(e.to_string().contains("newer"), "{e}");
    }

    #[test]
    fn failed_write_rolls_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = LiteDb::open(&dir.path().join("core.db")).expect("open");
        let r: Result<(), StoreError> = db.write(|tx| {
            tx.lite_conn().execute(
                "INSERT INTO modules VALUES ('m','1','{}','h1','{}','h2',0)",
                [],
            )?;
            tx.lite_conn().execute(
                "INSERT INTO modules VALUES ('m','1','{}','h1','{}','h2',0)",
                [],
            )?;
            Ok(())
        });
        assert!(r.is_err());
        let n: i64 = db
            .read(|c| {
                Ok::<_, StoreError>(c.lite_conn().query_row(
                    "SELECT count(*) FROM modules",
                    [],
                    |r| r.get(0),
                )?)
            })
            .expect("count");
        assert_eq!(n, 0);
    }

    #[test]
    fn group_commit_keeps_each_writers_outcome() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("core.db");
        let db = std::sync::Arc::new(LiteDb::open(&path).expect("open"));
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let db = db.clone();
                std::thread::spawn(move || {
                    let mut ok = 0;
                    for i in 0..50 {
                        let name = format!("m{t}-{i}");
                        // Every 5th writer fails after writing: only its row must vanish.
                        let fail = i % 5 == 0;
                        let r: Result<(), StoreError> = db.write(|c| {
                            c.lite_conn().execute(
                                "INSERT INTO modules VALUES (?1,'1','{}',?1,'{}',?1 || 'a',0)",
                                [&name],
                            )?;
                            if fail {
                                // A constraint error: the duplicate insert fails.
                                c.lite_conn().execute(
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
        let db = LiteDb::open(&path).expect("reopen");
        let n: i64 = db
            .read(|c| {
                Ok::<_, StoreError>(c.lite_conn().query_row(
                    "SELECT count(*) FROM modules",
                    [],
                    |r| r.get(0),
                )?)
            })
            .expect("count");
        assert_eq!(n, 16 * 40);
        let failed: i64 = db
            .read(|c| {
                Ok::<_, StoreError>(c.lite_conn().query_row(
                    "SELECT count(*) FROM modules WHERE name LIKE '%-0' OR name LIKE '%-5' OR name LIKE '%-10'",
                    [],
                    |r| r.get(0),
                )?)
            })
            .expect("count");
        assert_eq!(failed, 0);
    }
}
