//! In-process core-lite for tests of this crate and of the adapters: a real server on a
//! random loopback port with a real SQLite file in a temporary directory.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let core = core_lite::testkit::TestCore::start().await?;
//! core.register_vpn_module()?;
//! let (product_id, product_token) = core.create_product("vpn-1", "10.0.0.1:1194")?;
//! let input = core_lite::testkit::vpn_offering_input(100, Some(("8", "4")));
//! let offering_hash = core.publish_offering(&product_id, &input)?;
//! let (channel_id, client_key) = core.create_channel(&offering_hash, None)?;
//! let access = core.export_access(&channel_id)?; // username = client key, password
//! // A client core: client.import_access(&access)? stores it as the agent signed it.
//! # Ok(()) }
//! ```

pub mod prom;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use serde_json::{json, Value};

use crate::server::{RunningServer, ServerLimits};
use crate::service::Core;
use service_api::market::SignedAccess;
use service_api::{AccessMessage, ChannelInfo, ClientKey, Secret, ServiceStatus};

/// A running in-process core. Dropping it stops the server and removes the directory.
pub struct TestCore {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub admin_token: Secret,
    pub data_dir: PathBuf,
    /// The PostgreSQL database of this core (`CORE_LITE_TEST_DATABASE` set), else `None`
    /// (SQLite in the data dir).
    pub database: Option<String>,
    core: Arc<Core>,
    server: Option<RunningServer>,
    limits: ServerLimits,
    _dir: tempfile::TempDir,
}

/// How [`TestCore::start_with`] starts a core.
#[derive(Clone, Debug, Default)]
pub struct TestOptions {
    /// The listeners' limits (connection cap, timeouts).
    pub limits: ServerLimits,
    /// Where to make the temporary data dir (default: the system's temporary directory),
    /// e.g. on a small filesystem.
    pub parent_dir: Option<PathBuf>,
    /// The core's database.
    pub database: TestDb,
    /// Copy this `agent.key` into the new data dir (another core of the same agent: tokens
    /// and passwords are hashed with the agent's key, so every core needs the same one).
    pub agent_key_from: Option<PathBuf>,
}

/// Which database a test core uses.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TestDb {
    /// `CORE_LITE_TEST_DATABASE` set (as `scripts/pg-test.sh` does): a fresh PostgreSQL
    /// database on that server; unset: SQLite in the data dir.
    #[default]
    FromEnv,
    /// SQLite in the data dir whatever the environment (tests of the SQLite file itself).
    Sqlite,
    /// This PostgreSQL database (several cores sharing one database).
    Postgres(String),
}

/// The signed access messages exported by the test cores of this process, by client key.
fn exported() -> std::sync::MutexGuard<'static, BTreeMap<String, SignedAccess>> {
    static EXPORTED: Mutex<BTreeMap<String, SignedAccess>> = Mutex::new(BTreeMap::new());
    EXPORTED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Path of `templates/vpn` in this workspace.
pub fn vpn_module_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../templates/vpn")
}

/// Agent input for a VPN offering (the specification's example filled in): `MB` units at
/// 0.001 PRIX, `max_units` MB, supply 10, prepaid, billingInterval 10, freeUnits 0;
/// `speed` = (maxDownloadSpeed, maxUploadSpeed) in Mbit/s, min speeds 1.
pub fn vpn_offering_input(max_units: u64, speed: Option<(&str, &str)>) -> Value {
    let additional = match speed {
        Some((down, up)) => json!({
            "minDownloadSpeed": "1", "maxDownloadSpeed": down,
            "minUploadSpeed": "1", "maxUploadSpeed": up,
        }),
        None => json!({}),
    };
    json!({
        "serviceName": "Privatix VPN",
        "supply": 10,
        "unitName": "MB",
        "unitPrice": 0.001,
        "minUnits": 1,
        "maxUnits": max_units,
        "billingType": "prepaid",
        "billingInterval": 10,
        "maxBillingUnitLag": 100,
        "maxSuspendTime": 600,
        "maxInactiveTime": 3600,
        "setupPrice": 0,
        "freeUnits": 0,
        "country": "DE",
        "additionalParams": additional,
    })
}

/// The billing timers of a test core run this often.
pub const TEST_TICK: Duration = Duration::from_millis(200);

impl TestCore {
    /// Starts a server on 127.0.0.1:0 with a fresh data dir.
    pub async fn start() -> anyhow::Result<TestCore> {
        Self::start_with(TestOptions::default()).await
    }

    /// Starts a server on 127.0.0.1:0 with a fresh data dir, as `opts` say.
    pub async fn start_with(opts: TestOptions) -> anyhow::Result<TestCore> {
        let dir = match &opts.parent_dir {
            Some(p) => tempfile::tempdir_in(p),
            None => tempfile::tempdir(),
        }
        .context("tempdir")?;
        let data_dir = dir.path().join("data");
        let database = match &opts.database {
            TestDb::FromEnv => match std::env::var("CORE_LITE_TEST_DATABASE") {
                Ok(url) if !url.is_empty() => Some(fresh_database(&url).await?),
                _ => None,
            },
            TestDb::Sqlite => None,
            TestDb::Postgres(url) => Some(url.clone()),
        };
        if let Some(key) = &opts.agent_key_from {
            use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
            std::fs::DirBuilder::new().mode(0o700).create(&data_dir)?;
            let to = data_dir.join("agent.key");
            std::fs::copy(key, &to).with_context(|| format!("copying {}", key.display()))?;
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
        }
        let core = Arc::new(Core::open_with(&data_dir, database.as_deref())?);
        let admin_token = core.ensure_admin_token()?;
        let server =
            crate::server::start(core.clone(), "127.0.0.1:0".parse()?, TEST_TICK, opts.limits)
                .await?;
        Ok(TestCore {
            url: format!("http://{}", server.addr),
            admin_token,
            data_dir,
            database,
            core,
            server: Some(server),
            limits: opts.limits,
            _dir: dir,
        })
    }

    /// The core's operations, for tests that need more than the helpers below.
    pub fn core(&self) -> &Core {
        &self.core
    }

    /// The same core, shareable with tasks (e.g. [`crate::market::pay_round`]).
    pub fn core_arc(&self) -> Arc<Core> {
        self.core.clone()
    }

    /// Starts the agent's market API on a random loopback port; returns its URL.
    pub async fn start_market(&self) -> anyhow::Result<String> {
        let stop = self
            .server
            .as_ref()
            .map(|s| s.stopped())
            .context("server not running")?;
        let (addr, _task) = crate::server::start_market(
            self.core.clone(),
            "127.0.0.1:0".parse()?,
            self.limits,
            None,
            stop,
        )
        .await?;
        Ok(format!("http://{addr}"))
    }

    /// Stops the server (the port is closed; the data stays).
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.server.take() {
            s.stop().await?;
        }
        Ok(())
    }

    /// Stops the server and starts it again on the same port and data dir (for restart tests).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.stop().await?;
        let addr: std::net::SocketAddr = self
            .url
            .trim_start_matches("http://")
            .parse()
            .context("test core url")?;
        // The old core's pool must go before the new one opens (SQLite: one writer).
        self.core = Arc::new(Core::open_with(&self.data_dir, self.database.as_deref())?);
        let mut last = None;
        for _ in 0..50 {
            match crate::server::start(self.core.clone(), addr, TEST_TICK, self.limits).await {
                Ok(s) => {
                    self.server = Some(s);
                    return Ok(());
                }
                Err(e) => {
                    last = Some(e);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        Err(anyhow::anyhow!("rebinding {addr}: {last:?}"))
    }

    pub fn register_vpn_module(&self) -> anyhow::Result<()> {
        self.core.register_module(&vpn_module_dir())?;
        Ok(())
    }
    /// Returns (product id, product token).
    pub fn create_product(&self, name: &str, endpoint: &str) -> anyhow::Result<(String, Secret)> {
        let (p, t) = self.core.create_product(name, "vpn", Some(endpoint))?;
        Ok((p.product_id, t))
    }
    /// Returns the offering hash.
    pub fn publish_offering(&self, product_id: &str, input: &Value) -> anyhow::Result<String> {
        Ok(self.core.publish_offering(product_id, input)?.0)
    }
    /// Returns (channel id, client key). `deposit` in base units; None = enough for maxUnits.
    pub fn create_channel(
        &self,
        offering_hash: &str,
        deposit: Option<u64>,
    ) -> anyhow::Result<(String, ClientKey)> {
        Ok(self.core.create_channel(offering_hash, deposit)?)
    }
    /// Agent: the access message of a channel (username = client key, password), as the
    /// agent signs it for [`export_signed_access`](Self::export_signed_access); the signed
    /// form is kept for [`import_access`](Self::import_access) in this process.
    pub fn export_access(&self, channel_id: &str) -> anyhow::Result<AccessMessage> {
        Ok(self.export_signed_access(channel_id)?.access)
    }
    /// Agent: the signed access message of a channel (what `access export` writes).
    pub fn export_signed_access(&self, channel_id: &str) -> anyhow::Result<SignedAccess> {
        let signed = self.core.export_signed_access(channel_id)?;
        exported().insert(signed.access.username.0.clone(), signed.clone());
        Ok(signed)
    }
    /// Client side: import `msg` as its agent signed it (it must have been exported by a
    /// [`TestCore`] of this process, and is refused like a tampered file if it was changed
    /// since), so GetAccess serves it.
    pub fn import_access(&self, msg: &AccessMessage) -> anyhow::Result<()> {
        let mut signed = exported().get(&msg.username.0).cloned().with_context(|| {
            format!(
                "no signed access message for {} was exported in this process \
                     (use import_signed_access)",
                msg.username
            )
        })?;
        signed.access = msg.clone();
        self.import_signed_access(&signed)
    }
    /// Client side: import a signed access message (what `access import FILE` does).
    pub fn import_signed_access(&self, signed: &SignedAccess) -> anyhow::Result<()> {
        self.core
            .import_access(&serde_json::to_value(signed)?, None)?;
        Ok(())
    }
    /// A token for the client adapter (GetAccess, client-side sessions).
    pub fn create_client_token(&self) -> anyhow::Result<Secret> {
        Ok(self.core.create_client_token()?)
    }
    pub fn channel(&self, id_or_client_key: &str) -> anyhow::Result<ChannelInfo> {
        Ok(self.core.channel_info(id_or_client_key)?)
    }
    /// Admin: force a channel's status (e.g. terminating) as billing would.
    pub fn set_channel_status(
        &self,
        id_or_client_key: &str,
        status: ServiceStatus,
        reason: &str,
    ) -> anyhow::Result<()> {
        self.core
            .set_channel_status(id_or_client_key, status, reason)?;
        Ok(())
    }
}

impl Drop for TestCore {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            // Stop accepting at once; the runtime may be gone, so do not await.
            let _ = s.stopper().send(true);
        }
    }
}

/// A new, empty PostgreSQL database on the server of `url` (which names a database, e.g.
/// `postgres:///postgres?host=/tmp/pg&user=postgres`, as `scripts/pg-test.sh` exports it);
/// returns the URL of the new one. Every test core gets its own database.
pub async fn fresh_database(url: &str) -> anyhow::Result<String> {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .with_context(|| format!("connecting to CORE_LITE_TEST_DATABASE {url}"))?;
    let driver = tokio::spawn(conn);
    let name = format!("core_lite_test_{}", uuid::Uuid::new_v4().simple());
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .with_context(|| format!("creating database {name}"))?;
    drop(client);
    let _ = driver.await;
    let (head, query) = match url.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (url, None),
    };
    let scheme_end = head.find("://").map_or(0, |i| i + 3);
    let (base, _) = head[scheme_end..]
        .rsplit_once('/')
        .context("CORE_LITE_TEST_DATABASE must name a database (postgres://…/DB)")?;
    let mut out = format!("{}{base}/{name}", &head[..scheme_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    Ok(out)
}
