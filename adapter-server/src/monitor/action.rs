//! What a client transition asks of the actor ([`Action`]) and what it is told about the
//! world ([`Ctx`]); counters and their bound.

use std::time::{Duration, Instant};

use service_api::{SessionId, SpeedLimits, MAX_BYTE_COUNT};
use tc_shaper::ClientAddrs;

/// Cumulative `(bytes_in, bytes_out)` of a connection, as OpenVPN counts them.
pub type Counts = (u64, u64);

/// The larger of each counter.
pub fn max2(a: Counts, b: Counts) -> Counts {
    (a.0.max(b.0), a.1.max(b.1))
}

/// Whether the core can accept these counters: it refuses (422 `invalid`) any counter above
/// [`MAX_BYTE_COUNT`], so the monitor drops such a count itself.
pub fn acceptable(c: Counts) -> bool {
    c.0 <= MAX_BYTE_COUNT && c.1 <= MAX_BYTE_COUNT
}

/// What the actor must do for a client after a transition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// StartSession for this connection (spawned; answered by `Client::on_started`).
    Start,
    /// UpdateSession with these cumulative counts (answered by `Client::on_updated`).
    Update { session: SessionId, counts: Counts },
    /// StopSession with the final counts (answered by `Client::on_stopped`).
    Stop { session: SessionId, fin: Counts },
    /// FindSession by the connection id of a departed connection that was unknown here
    /// (answered by `Client::on_found`).
    Find,
    /// `client-kill CID HALT`.
    Kill { cid: u64, why: &'static str },
    /// Install the client's speed limits for its VPN addresses (IPv4 and, when it has one,
    /// IPv6).
    Shape {
        key: u64,
        addrs: ClientAddrs,
        speed: SpeedLimits,
    },
    /// Remove the client's speed limits.
    Unshape { key: u64 },
    /// Remove the client's nftables quota and block.
    Unfence { key: u64 },
    /// The connection is accounted for: drop it.
    Forget,
}

/// What the actor knows of the world when it asks for a transition.
#[derive(Debug, Clone, Copy)]
pub struct Ctx {
    pub now: Instant,
    /// Generation of the management connection (a kill is sent once per connection).
    pub gen: u64,
    /// A management connection is up (commands can be sent).
    pub mgmt_up: bool,
    /// Core calls may be made now (false while a down core's backoff runs).
    pub core_callable: bool,
    /// Cut a client after this long without a successful report.
    pub grace: Duration,
    /// Speed limits are applied (`tc`).
    pub shaping: bool,
}
