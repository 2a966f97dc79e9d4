//! The PostgreSQL backend: tokio-postgres connections in a deadpool pool (no TLS: reach the
//! server on a unix socket or a trusted network; see docs), the same store functions and SQL
//! as SQLite, the schema of [`super::pg_schema`] migrated at start under an advisory lock (so
//! several cores starting at once migrate once).
//!
//! The store's interface is synchronous (the core calls it from blocking threads, its admin
//! commands from the command line), the driver async: the pool lives on a small runtime of
//! its own that drives the connections, and each store call waits for its future on the
//! calling thread ([`PgDb::block_on`]).
//!
//! Each write is one transaction. Store functions that read a row they will change lock it
//! (`FOR UPDATE`, see [`super::Tx::lock_rows`]), so concurrent writes from several cores to
//! one channel take turns: totals stay exact and a status changes once.

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake};
use std::time::{Duration, Instant};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::types::ToSql;
use tokio_postgres::NoTls;

use super::db::{Arg, Health, Tx};
use super::error::{pg_is_unavailable, StoreError};
use super::pg_schema::MIGRATIONS;
use super::stats::WriteFailure;

/// Connections per core (PostgreSQL's default `max_connections` is 100).
const POOL_SIZE: usize = 16;
/// How long a call waits for a pooled connection, and for a new one to connect.
const WAIT: Duration = Duration::from_secs(5);
/// The advisory lock taken while migrating (any fixed number; "core-lite" in ASCII).
const MIGRATION_LOCK: i64 = 0x636f_7265_6c69_7465;

/// A pool of connections to one PostgreSQL database.
pub(super) struct PgDb {
    rt: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// `postgres host/db as user`, for logs (no password).
    name: String,
    pub(super) health: Health,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        self.pool.close();
        // Allowed anywhere, also inside another runtime (a plain drop is not).
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Wakes the thread that waits in [`PgDb::block_on`].
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// `?1` placeholders (the store's SQL) as PostgreSQL's `$1`.
fn placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '?' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('$');
        } else {
            out.push(c);
        }
    }
    out
}

fn describe(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(s) => s.clone(),
            tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .collect();
    format!(
        "postgres {}/{} as {}",
        hosts.join(","),
        config.get_dbname().unwrap_or("(default)"),
        config.get_user().unwrap_or("(default)")
    )
}

impl PgDb {
    pub(super) fn open(url: &str) -> Result<PgDb, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|source| StoreError::PgConfig { source })?;
        config.connect_timeout(WAIT);
        if config.get_application_name().is_none() {
            config.application_name("core-lite");
        }
        let name = describe(&config);
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(WAIT))
            .create_timeout(Some(WAIT))
            .recycle_timeout(Some(WAIT))
            .build()
            .map_err(|e| StoreError::PgPool(e.to_string()))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("core-lite-pg")
            .enable_all()
            .build()
            .map_err(|e| StoreError::PgPool(format!("starting the driver's runtime: {e}")))?;
        let db = PgDb {
            rt: Some(rt),
            pool,
            name,
            health: Health::default(),
        };
        db.migrate()?;
        Ok(db)
    }

    pub(super) fn describe(&self) -> String {
        self.name.clone()
    }

    /// Runs `f` to completion on this thread, with the pool's runtime entered (connections
    /// it opens are driven by that runtime's thread).
    fn block_on<F: Future>(&self, f: F) -> F::Output {
        let _enter = self.rt.as_ref().map(|rt| rt.handle().enter());
        let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        // Unconstrained: when the caller is itself inside a tokio task (the admin commands,
        // the testkit), tokio's cooperative budget of that task must not make the driver's
        // futures yield here, where yielding only spins.
        let mut f = std::pin::pin!(tokio::task::unconstrained(f));
        loop {
            if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
            std::thread::park();
        }
    }

    /// A driver error; an unreachable server is remembered as a fault (503 until a write
    /// succeeds).
    fn failed(&self, e: tokio_postgres::Error) -> StoreError {
        if pg_is_unavailable(&e) && e.code().is_none() {
            self.health.note_fault(e.to_string());
        }
        StoreError::Pg(e)
    }

    fn client(&self) -> Result<deadpool_postgres::Client, StoreError> {
        self.block_on(self.pool.get()).map_err(|e| {
            let msg = format!("no connection to {}: {e}", self.name);
            self.health.note_fault(msg.clone());
            StoreError::PgPool(msg)
        })
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut client = self.client()?;
        let known = i64::try_from(MIGRATIONS.len()).unwrap_or(i64::MAX);
        let mig = |version| move |source| StoreError::PgMigrate { version, source };
        self.block_on(async {
            let tx = client.transaction().await.map_err(mig(0))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await
                .map_err(mig(0))?;
            tx.batch_execute(
                "CREATE TABLE IF NOT EXISTS core_lite_schema (version BIGINT NOT NULL)",
            )
            .await
            .map_err(mig(0))?;
            let current: i64 = match tx
                .query_opt("SELECT max(version) FROM core_lite_schema", &[])
                .await
                .map_err(mig(0))?
            {
                Some(r) => r.try_get::<_, Option<i64>>(0).map_err(mig(0))?.unwrap_or(0),
                None => 0,
            };
            if current > known {
                return Err(StoreError::TooNew {
                    location: self.name.clone(),
                    found: current,
                    known,
                });
            }
            for (i, sql) in MIGRATIONS.iter().enumerate() {
                let version = i64::try_from(i).unwrap_or(i64::MAX) + 1;
                if version <= current {
                    continue;
                }
                tx.batch_execute(sql).await.map_err(mig(version))?;
                tx.execute("DELETE FROM core_lite_schema", &[])
                    .await
                    .map_err(mig(version))?;
                tx.execute(
                    "INSERT INTO core_lite_schema (version) VALUES ($1)",
                    &[&version],
                )
                .await
                .map_err(mig(version))?;
            }
            tx.commit().await.map_err(mig(known))
        })
    }

    pub(super) fn write<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut client = self.client()?;
        let tx = match self.block_on(client.transaction()) {
            Ok(tx) => tx,
            Err(e) => {
                self.health.stats.failed(WriteFailure::CommitFailed);
                return Err(E::from(self.failed(e)));
            }
        };
        let out = f(&Tx::postgres(PgTx {
            conn: Conn::Tx(&tx),
            db: self,
        }));
        match out {
            Ok(v) => {
                let started = Instant::now();
                match self.block_on(tx.commit()) {
                    Ok(()) => {
                        self.health.stats.committed(started.elapsed());
                        self.health.clear_fault();
                        Ok(v)
                    }
                    Err(e) => {
                        self.health.stats.failed(WriteFailure::CommitFailed);
                        Err(E::from(StoreError::PgCommit(self.failed(e).to_string())))
                    }
                }
            }
            Err(e) => {
                // A dropped transaction rolls back too; saying so keeps the connection clean.
                let _ = self.block_on(tx.rollback());
                Err(e)
            }
        }
    }

    pub(super) fn read<T, E: From<StoreError>>(
        &self,
        f: impl FnOnce(&Tx<'_>) -> Result<T, E>,
    ) -> Result<T, E> {
        let client = self.client()?;
        f(&Tx::postgres(PgTx {
            conn: Conn::Client(&client),
            db: self,
        }))
    }

    /// Runs `f` while holding the session advisory lock `name` (waiting for it while another
    /// session, another core, holds it). A core that dies loses its session and the lock.
    pub(super) fn serialized<T>(&self, name: &str, f: impl FnOnce() -> T) -> Result<T, StoreError> {
        let client = self.client()?;
        self.block_on(client.execute("SELECT pg_advisory_lock(hashtext($1))", &[&name]))
            .map_err(|e| self.failed(e))?;
        let out = f();
        if let Err(e) =
            self.block_on(client.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&name]))
        {
            // The connection is broken: its session, and so the lock, is gone with it.
            tracing::warn!(error = %e, lock = name, "releasing an advisory lock failed");
        }
        Ok(out)
    }
}

enum Conn<'c> {
    Tx(&'c deadpool_postgres::Transaction<'c>),
    Client(&'c deadpool_postgres::Client),
}

/// A PostgreSQL transaction (writes) or pooled connection (reads) for [`Tx`].
pub(super) struct PgTx<'c> {
    conn: Conn<'c>,
    db: &'c PgDb,
}

impl PgTx<'_> {
    pub(super) fn is_write(&self) -> bool {
        matches!(self.conn, Conn::Tx(_))
    }

    pub(super) fn query(
        &self,
        sql: &str,
        args: &[&dyn Arg],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        let sql = placeholders(sql);
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.postgres()).collect();
        let out = self.db.block_on(async {
            match &self.conn {
                Conn::Tx(t) => {
                    let st = t.prepare_cached(&sql).await?;
                    t.query(&st, &params).await
                }
                Conn::Client(c) => {
                    let st = c.prepare_cached(&sql).await?;
                    c.query(&st, &params).await
                }
            }
        });
        out.map_err(|e| self.db.failed(e))
    }

    pub(super) fn query_opt(
        &self,
        sql: &str,
        args: &[&dyn Arg],
    ) -> Result<Option<tokio_postgres::Row>, StoreError> {
        Ok(self.query(sql, args)?.into_iter().next())
    }

    pub(super) fn execute(&self, sql: &str, args: &[&dyn Arg]) -> Result<usize, StoreError> {
        let sql = placeholders(sql);
        let params: Vec<&(dyn ToSql + Sync)> = args.iter().map(|a| a.postgres()).collect();
        let out = self.db.block_on(async {
            match &self.conn {
                Conn::Tx(t) => {
                    let st = t.prepare_cached(&sql).await?;
                    t.execute(&st, &params).await
                }
                Conn::Client(c) => {
                    let st = c.prepare_cached(&sql).await?;
                    c.execute(&st, &params).await
                }
            }
        });
        let n = out.map_err(|e| self.db.failed(e))?;
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_become_dollars() {
        assert_eq!(
            placeholders("SELECT a FROM t WHERE b = ?1 AND c = ?12 OR d = '?'"),
            "SELECT a FROM t WHERE b = $1 AND c = $12 OR d = '?'"
        );
    }

    #[test]
    fn same_versions_as_sqlite() {
        assert_eq!(MIGRATIONS.len(), super::super::migrations::MIGRATIONS.len());
    }
}
