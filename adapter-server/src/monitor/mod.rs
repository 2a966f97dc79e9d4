//! `adapter-server monitor`: the accounting daemon on OpenVPN's management interface.
//!
//! One task, the actor (`actor.rs`), owns all client state; a thin loop feeds it events
//! until the cancellation token fires. The management reader and writer (`mgmt_conn.rs`),
//! the ticker, the config push and its file watcher (`config_push.rs`) and every core call
//! (`core_calls.rs`) run as separate tasks and talk to the actor through one event channel;
//! core calls are spawned so a slow core never blocks the management reader. Shaping (tc)
//! runs in its own task fed in order by the actor (`shaping.rs`).
//!
//! Each connection is a state machine without I/O (`client.rs`: connected with a session
//! starting or open, with a kill pending or not; or gone with its session being found or
//! stopped), kept in a table by connection id and OpenVPN client id that also reconciles
//! the `status` client list (`table.rs`).
//!
//! Per client (key: the connectionId `"<username>|<ip>:<port>|<time_unix>"`):
//! `>CLIENT:ESTABLISHED` → StartSession (speed limits → shaping);
//! `>BYTECOUNT_CLI` → UpdateSession with the cumulative counts (coalesced: at most one in
//! flight per client); an answer suspending/suspended/terminating/terminated →
//! `client-kill CID HALT`; `>CLIENT:DISCONNECT` → StopSession with `bytes_received` /
//! `bytes_sent` of the event. When the core is unreachable the latest totals are kept and
//! replayed (with a capped exponential backoff); a client whose reports have kept failing
//! for the grace period is cut.
//!
//! With a hand-off socket (`handoff/`), `adapter-server-hook` passes OpenVPN's script events
//! to the actor: logins are answered through `auth_control_file`, client-connect opens the
//! session (ESTABLISHED later only gives the client id), client-disconnect stops it with
//! OpenVPN's exact final counters, merged by connection id with `>CLIENT:DISCONNECT` and the
//! client list, so the core gets the highest counts.
//!
//! Reports are batched: the Updates of a tick go out in one UpdateSessions call
//! (`core_calls.rs`), each report answered on its own. A WatchStatus long-poll (`watch.rs`)
//! pushes the product's status changes, so a suspended/terminated channel's client is cut
//! without waiting for its next report. With `--nft` (`fence.rs`) each client has an
//! nftables byte quota for what the core says is left of its budget, and a cut client's
//! traffic is dropped before `client-kill` is sent.
//!
//! Rules (docs/INTERFACES.md): a byte count the core would refuse (above
//! [`service_api::MAX_BYTE_COUNT`]) or did refuse (422) is dropped and never raises the
//! reported counts, and starts the grace timer like a failed report; a departed connection
//! never gets a StartSession; every VPN address of a client (IPv4 and, with `server-ipv6`,
//! IPv6) is shaped.

mod action;
mod actor;
mod client;
mod client_auth;
mod config_push;
mod core_calls;
mod event;
mod fence;
mod handoff;
pub mod metrics;
mod mgmt_conn;
mod shaping;
mod table;
mod watch;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use service_api::{Client as CoreClient, Secret};
use tc_shaper::ShapingConfig;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use self::actor::Actor;
use self::core_calls::BoundedCore;
use self::event::Ev;
use self::metrics::MonitorMetrics;

pub use self::fence::FenceConfig;
pub use self::handoff::{HandoffConfig, HandoffError};

/// Capacity of the actor's event channel.
const EVENT_QUEUE: usize = 8192;

/// Where the management interface listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MgmtAddr {
    Unix(PathBuf),
    Tcp(String),
}

impl FromStr for MgmtAddr {
    type Err = String;
    /// `unix:PATH`, `tcp:HOST:PORT`, an absolute / `./` path, or `HOST:PORT`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("empty management address".into());
        }
        if let Some(p) = s.strip_prefix("unix:") {
            return Ok(Self::Unix(p.into()));
        }
        if let Some(a) = s.strip_prefix("tcp:") {
            return Ok(Self::Tcp(a.into()));
        }
        if s.starts_with('/') || s.starts_with('.') || !s.contains(':') {
            return Ok(Self::Unix(s.into()));
        }
        Ok(Self::Tcp(s.into()))
    }
}

impl std::fmt::Display for MgmtAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
            Self::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Settings of the monitor.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    pub management: MgmtAddr,
    pub password: Option<Secret>,
    /// `bytecount N` interval, seconds.
    pub bytecount_interval: u32,
    /// Cut a client after this long without a successful report to the core.
    pub grace: Duration,
    /// Answer `>CLIENT:CONNECT` / `REAUTH` (OpenVPN `--management-client-auth`).
    pub client_auth: bool,
    /// Answer `>HOLD` with `hold release` (OpenVPN `--management-hold`).
    pub release_hold: bool,
    /// Server config to push (SetProductConfig) at start and whenever it or the files it
    /// names change.
    pub server_config: Option<PathBuf>,
    pub endpoint: Option<String>,
    /// None = no shaping.
    pub shaping: Option<ShapingConfig>,
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Housekeeping interval (retries, grace checks).
    pub tick: Duration,
    /// Listen for `adapter-server-hook` hand-offs (None: no socket).
    pub handoff: Option<HandoffConfig>,
    /// Where to serve the Prometheus metrics (`GET /metrics`; loopback only).
    pub metrics_listen: Option<SocketAddr>,
    /// None = no nftables quotas and no drop before a kill.
    pub fence: Option<FenceConfig>,
}

impl MonitorConfig {
    /// Defaults for everything but the address.
    pub fn new(management: MgmtAddr) -> Self {
        Self {
            management,
            password: None,
            bytecount_interval: 1,
            grace: Duration::from_secs(60),
            client_auth: false,
            release_hold: false,
            server_config: None,
            endpoint: None,
            shaping: None,
            reconnect_min: Duration::from_millis(250),
            reconnect_max: Duration::from_secs(30),
            tick: Duration::from_secs(1),
            handoff: None,
            metrics_listen: None,
            fence: None,
        }
    }
}

/// Errors that stop the monitor (everything else is logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("watching config files: {0}")]
    Watch(#[source] notify::Error),
    #[error("setting up the hand-off socket: {0}")]
    Handoff(#[from] HandoffError),
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
}

/// Runs the monitor until `cancel` fires.
pub async fn run(
    cfg: MonitorConfig,
    core: CoreClient,
    cancel: CancellationToken,
) -> Result<(), MonitorError> {
    let metrics = MonitorMetrics::new();
    if let Some(addr) = cfg.metrics_listen {
        metrics::serve(addr, metrics.clone(), cancel.clone()).await?;
    }
    let (tx, mut rx) = mpsc::channel::<Ev>(EVENT_QUEUE);
    let listener = match &cfg.handoff {
        Some(h) => Some(handoff::Listener::bind(h)?.spawn(tx.clone(), cancel.clone())),
        None => None,
    };
    spawn_ticker(tx.clone(), cfg.tick, cancel.clone());
    watch::spawn(
        &core,
        tx.clone(),
        cfg.reconnect_min,
        cfg.reconnect_max,
        cancel.clone(),
    );
    let mut actor = Actor::new(cfg, BoundedCore::new(core), tx, cancel.clone(), metrics);
    actor.start();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            ev = rx.recv() => match ev {
                Some(ev) => actor.handle(ev),
                None => break,
            },
        }
    }
    // Hand-offs taken but not handled yet (those still in the kernel's queue are served
    // by the listener as it stops): disconnects still reach the table (their final counts
    // are sent below), logins are denied so that their clients retry.
    let mut logins = Vec::new();
    let mut stopping = |ev: Ev| {
        if let Ev::Handoff(h) = ev {
            match h.kind {
                adapter_server_hook::wire::Kind::Auth => logins.push(h),
                _ => actor.handle(Ev::Handoff(h)),
            }
        }
    };
    if let Some(mut l) = listener {
        loop {
            tokio::select! {
                _ = &mut l => break,
                Some(ev) = rx.recv() => stopping(ev),
            }
        }
    }
    rx.close();
    while let Ok(ev) = rx.try_recv() {
        stopping(ev);
    }
    actor.shutdown(logins).await;
    Ok(())
}

/// Sends [`Ev::Tick`] every `every` until `cancel` fires.
fn spawn_ticker(tx: mpsc::Sender<Ev>, every: Duration, cancel: CancellationToken) {
    tokio::spawn(
        async move {
            let mut iv = tokio::time::interval(every);
            iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = iv.tick() => {
                        if tx.send(Ev::Tick).await.is_err() { return; }
                    }
                }
            }
        }
        .in_current_span(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mgmt_addr_forms() {
        let cases = [
            (
                "/run/openvpn/server.sock",
                MgmtAddr::Unix("/run/openvpn/server.sock".into()),
            ),
            ("./mgmt.sock", MgmtAddr::Unix("./mgmt.sock".into())),
            ("unix:/x:y", MgmtAddr::Unix("/x:y".into())),
            ("mgmt.sock", MgmtAddr::Unix("mgmt.sock".into())),
            ("127.0.0.1:7505", MgmtAddr::Tcp("127.0.0.1:7505".into())),
            ("tcp:localhost:7505", MgmtAddr::Tcp("localhost:7505".into())),
        ];
        for (s, want) in cases {
            assert_eq!(s.parse::<MgmtAddr>().expect(s), want);
        }
        assert!("".parse::<MgmtAddr>().is_err());
    }
}
