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
//! # Ok(()) }
//! ```

use std::path::PathBuf;

use serde_json::Value;

use crate::api::{AccessMessage, ChannelInfo, ClientKey, Secret};

/// A running in-process core. Dropping it stops the server and removes the directory.
pub struct TestCore {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    pub admin_token: Secret,
    pub data_dir: PathBuf,
    _priv: (),
}

/// Path of `templates/vpn` in this workspace.
pub fn vpn_module_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../templates/vpn")
}

/// Agent input for a VPN offering (the specification's example filled in): `MB` units at
/// 0.001 PRIX, `max_units` MB, supply 10, prepaid, billingInterval 10, freeUnits 0;
/// `speed` = (maxDownloadSpeed, maxUploadSpeed) in Mbit/s, min speeds 1.
pub fn vpn_offering_input(max_units: u64, speed: Option<(&str, &str)>) -> Value {
    let _ = (max_units, speed);
    unimplemented!("testkit: being written")
}

impl TestCore {
    /// Starts a server on 127.0.0.1:0 with a fresh data dir.
    pub async fn start() -> anyhow::Result<TestCore> {
        unimplemented!("testkit: being written")
    }
    /// Stops the server and starts it again on the same port and data dir (for restart tests).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        unimplemented!("testkit: being written")
    }
    pub fn register_vpn_module(&self) -> anyhow::Result<()> {
        unimplemented!("testkit: being written")
    }
    /// Returns (product id, product token).
    pub fn create_product(&self, name: &str, endpoint: &str) -> anyhow::Result<(String, Secret)> {
        let _ = (name, endpoint);
        unimplemented!("testkit: being written")
    }
    /// Returns the offering hash.
    pub fn publish_offering(&self, product_id: &str, input: &Value) -> anyhow::Result<String> {
        let _ = (product_id, input);
        unimplemented!("testkit: being written")
    }
    /// Returns (channel id, client key). `deposit` in base units; None = enough for maxUnits.
    pub fn create_channel(
        &self,
        offering_hash: &str,
        deposit: Option<u64>,
    ) -> anyhow::Result<(String, ClientKey)> {
        let _ = (offering_hash, deposit);
        unimplemented!("testkit: being written")
    }
    pub fn export_access(&self, channel_id: &str) -> anyhow::Result<AccessMessage> {
        let _ = channel_id;
        unimplemented!("testkit: being written")
    }
    /// Client side: store an access message so GetAccess serves it.
    pub fn import_access(&self, msg: &AccessMessage) -> anyhow::Result<()> {
        let _ = msg;
        unimplemented!("testkit: being written")
    }
    /// A token for the client adapter (GetAccess, client-side sessions).
    pub fn create_client_token(&self) -> anyhow::Result<Secret> {
        unimplemented!("testkit: being written")
    }
    pub fn channel(&self, id_or_client_key: &str) -> anyhow::Result<ChannelInfo> {
        let _ = id_or_client_key;
        unimplemented!("testkit: being written")
    }
    /// Admin: force a channel's status (e.g. terminating) as billing would.
    pub fn set_channel_status(
        &self,
        id_or_client_key: &str,
        status: crate::api::ServiceStatus,
        reason: &str,
    ) -> anyhow::Result<()> {
        let _ = (id_or_client_key, status, reason);
        unimplemented!("testkit: being written")
    }
}
