//! The events the actor receives: from the management connection tasks, the core-call
//! tasks, the config push and watch, and the ticker.

use std::path::PathBuf;

use openvpn_mgmt::Event as MgmtEvent;
use service_api::{
    ApiError, AuthClientResponse, ClientKey, StartSessionResponse, StopSessionResponse,
    UpdateSessionResponse,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::client::Counts;
use super::handoff::HandoffEvent;

/// One event for the actor. `gen` is the generation of the management connection an event
/// belongs to (events of an older connection are dropped).
pub enum Ev {
    Connected {
        gen: u64,
        lines: mpsc::UnboundedSender<String>,
        conn_cancel: CancellationToken,
    },
    ConnectFailed {
        gen: u64,
        error: String,
    },
    Mgmt {
        gen: u64,
        event: MgmtEvent,
    },
    Closed {
        gen: u64,
        reason: String,
    },
    Started {
        conn_id: String,
        result: Result<StartSessionResponse, ApiError>,
    },
    Updated {
        conn_id: String,
        sent: Counts,
        result: Result<UpdateSessionResponse, ApiError>,
    },
    Stopped {
        conn_id: String,
        result: Result<StopSessionResponse, ApiError>,
    },
    Found {
        conn_id: String,
        result: Result<StartSessionResponse, ApiError>,
    },
    /// An event handed over by `adapter-server-hook` (committed: the monitor owns it).
    Handoff(HandoffEvent),
    /// The AuthClient answer of handed-off login `id`.
    HandoffAuthDone {
        id: u64,
        result: Result<AuthClientResponse, ApiError>,
    },
    AuthDone {
        gen: u64,
        cid: u64,
        kid: u64,
        user: ClientKey,
        result: Result<AuthClientResponse, ApiError>,
    },
    Pushed {
        result: Result<(bool, Vec<PathBuf>), String>,
        transient: bool,
    },
    ConfigChanged,
    /// The nftables block of a client to be killed is in place (or failed: `ok` false);
    /// `client-kill` follows.
    Blocked {
        gen: u64,
        conn_id: String,
        cid: u64,
        why: &'static str,
        ok: bool,
    },
    /// WatchStatus: a channel of the product entered `status`.
    StatusPushed {
        client_key: ClientKey,
        status: service_api::ServiceStatus,
    },
    Tick,
}
