//! `adapter-client connect`: GetAccess → config → `openvpn` child → sessions on the core.
//!
//! One task (the actor, `actor.rs`) owns all connection state. Other tasks only send it
//! events: the `openvpn` process behind a trait (`process.rs`; the real one in `real.rs`:
//! the child waiter, the management socket reader and writer) and the core calls, which are
//! spawned with their answers coming back as events (`core.rs`), so a slow core never holds
//! up the management connection or a signal. The state is a set of enums whose variants
//! carry their data, with pure transitions (`conn.rs`: the process, the goal, the wait;
//! `usage.rs`: byte accounting). Timers (hold release after backoff, child restart, usage
//! reports, stop deadline, status checks) live in the actor's `select!`. Shutdown comes
//! through a [`CancellationToken`].
//!
//! Connection life cycle:
//! - OpenVPN starts with `management-hold`: it waits for `hold release`. The hold flag
//!   persists, so after every internal restart (`RECONNECTING`) OpenVPN holds again and the
//!   adapter releases it after the backoff delay — this is how reconnects are paced.
//! - `>STATE:…,CONNECTED,…` → StartSession (`connectionId = "<openvpn pid>:<state time>"`),
//!   shaping applied. `>BYTECOUNT` (cumulative for the OpenVPN process) minus the value at
//!   connect time = the session's counts; UpdateSession every report interval.
//! - `RECONNECTING` / `EXITING` / child exit → StopSession with the last counts.
//! - The core answering terminating/terminated → stop for good.
//! - The core answering suspending/suspended (payment lag on the agent's side) → openvpn is
//!   stopped (final StopSession) and the actor WAITS: every `suspend_poll` it asks the core
//!   for the channel status (replaying the last StopSession, which changes nothing and
//!   answers the status; StartSession's `channel_inactive` when there is no session yet).
//!   activating/active again → a new openvpn, a new session; terminating/terminated → stop
//!   for good; `max_suspend_wait` (optional) → give up.
//! - A server HALT (`server-pushed-halt`) or refused credentials: openvpn is stopped and the
//!   core asked for the status during `halt_grace` (the client core mirrors the agent's
//!   status about a second late): suspending/suspended → wait as above; terminating/
//!   terminated → stop for good; still activating/active → stop for good with the HALT
//!   (or auth failure) outcome.
//! - Anything else reconnects (an exited child is restarted) with capped exponential
//!   backoff.

mod actor;
mod calls;
mod conn;
mod on_core;
mod on_proc;
mod process;
mod real;
mod usage;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use service_api::{
    AccessMessage, ApiError, Client, ClientKey, GetAccessRequest, Secret, ServiceStatus,
};
use tc_shaper::Tools;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::netguard::{NetError, NetGuard, NetSettings};
use crate::render::{self, RenderError, RenderOptions, RenderedConfig};
use crate::runtime::{RuntimeDir, RuntimeError, AUTH_NAME, CONFIG_NAME};
use crate::state::Phase;
use crate::{journal, lockdown};

pub use conn::{backoff_delay, suspended_reason};
pub use usage::Counts;

/// Everything `connect` needs (resolved from flags, env and the config file).
#[derive(Debug, Clone)]
pub struct ConnectSettings {
    pub client_key: ClientKey,
    pub core_url: String,
    pub token: Secret,
    pub openvpn: PathBuf,
    pub runtime_dir: PathBuf,
    pub tun_dev: String,
    pub ifb_dev: String,
    pub shaping: bool,
    pub tools: Tools,
    pub state_file: PathBuf,
    /// `bytecount N` interval (seconds, ≥ 1).
    pub bytecount_interval: u32,
    /// How often usage is reported with UpdateSession.
    pub report_interval: Duration,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How long OpenVPN gets to exit after `signal SIGTERM` before it is killed.
    pub stop_timeout: Duration,
    /// How long to wait for OpenVPN's management socket after the start.
    pub mgmt_connect_timeout: Duration,
    /// Timeout of each core call.
    pub api_timeout: Duration,
    /// OpenVPN `verb`.
    pub verb: u8,
    /// While suspended: how often the core is asked whether the channel is back.
    pub suspend_poll: Duration,
    /// While suspended: give up (exit 3) after this long; None = wait until the channel is
    /// terminated or a signal arrives.
    pub max_suspend_wait: Option<Duration>,
    /// After a server HALT (or refused credentials): how long the core is asked whether
    /// the channel was suspended/terminated before the halt counts as final.
    pub halt_grace: Duration,
    /// Pushed DNS servers and the kill switch.
    pub net: NetSettings,
}

impl ConnectSettings {
    /// Defaults for everything but the identity and the core.
    pub fn new(client_key: ClientKey, core_url: String, token: Secret) -> Self {
        let pid = std::process::id();
        Self {
            runtime_dir: crate::runtime::default_runtime_dir(&client_key.0),
            state_file: crate::runtime::default_state_file(&client_key.0),
            client_key,
            core_url,
            token,
            openvpn: PathBuf::from("openvpn"),
            tun_dev: format!("tunac{pid}"),
            ifb_dev: format!("ifbac{pid}"),
            shaping: true,
            tools: Tools::default(),
            bytecount_interval: 1,
            report_interval: Duration::from_secs(5),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            stop_timeout: Duration::from_secs(10),
            mgmt_connect_timeout: Duration::from_secs(15),
            api_timeout: Duration::from_secs(5),
            verb: 3,
            suspend_poll: Duration::from_secs(2),
            max_suspend_wait: None,
            halt_grace: Duration::from_secs(5),
            net: NetSettings::default(),
        }
    }
}

/// Why `connect` ended without an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped on request (SIGINT/SIGTERM).
    Stopped,
    /// The core answered a status that ends the service.
    CoreStopped {
        status: ServiceStatus,
        reason: String,
    },
    /// The server halted the client (`server-pushed-halt`).
    ServerHalted { reason: String },
    /// The server refused the credentials.
    AuthFailed { reason: String },
}

impl Outcome {
    /// Process exit code: 0 stopped on request, 3 suspended/terminated by the core, 4 halted
    /// by the server, 5 credentials refused.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Stopped => 0,
            Self::CoreStopped { .. } => 3,
            Self::ServerHalted { .. } => 4,
            Self::AuthFailed { .. } => 5,
        }
    }
    pub fn phase(&self) -> Phase {
        match self {
            Self::Stopped => Phase::Stopped,
            Self::CoreStopped { status, .. } if status.is_final() => Phase::Terminated,
            Self::CoreStopped { .. } => Phase::Suspended,
            Self::ServerHalted { .. } => Phase::Halted,
            Self::AuthFailed { .. } => Phase::AuthFailed,
        }
    }
    pub fn reason(&self) -> String {
        match self {
            Self::Stopped => "stopped on request".into(),
            Self::CoreStopped { reason, .. }
            | Self::ServerHalted { reason }
            | Self::AuthFailed { reason } => reason.clone(),
        }
    }
}

/// Errors that end `connect` before or outside the connection loop.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("invalid core settings: {0}")]
    CoreClient(#[source] ApiError),
    #[error("GetAccess for client key {client_key} failed: {source}")]
    GetAccess {
        client_key: ClientKey,
        #[source]
        source: ApiError,
    },
    #[error("the access message was refused: {0}")]
    Render(#[from] RenderError),
    /// The access message names another OpenVPN user than the channel's client key.
    #[error(
        "the access message is not for client key {client_key}: its username differs; refusing it"
    )]
    WrongUsername { client_key: ClientKey },
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("invalid settings: {0}")]
    Settings(String),
    #[error(transparent)]
    Net(#[from] NetError),
    /// The kill switch needs the server's address; its name did not resolve.
    #[error("could not resolve the VPN server {host}: {source}")]
    ResolveEndpoint {
        host: String,
        #[source]
        source: std::io::Error,
    },
}

/// The executable `program` names: a path with a `/` as is, otherwise looked up in `PATH`.
pub fn find_program(program: &std::path::Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &std::path::Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.components().count() > 1 || program.is_absolute() {
        return executable(program).then(|| program.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| executable(p))
}

/// Fetches the access message (the `render` command uses this too) and checks that it is
/// for `client_key` ([`check_username`]).
pub async fn fetch_access(
    api: &Client,
    client_key: &ClientKey,
) -> Result<AccessMessage, ConnectError> {
    let access = api
        .get_access(&GetAccessRequest {
            client_key: client_key.clone(),
        })
        .await
        .map_err(|e| ConnectError::GetAccess {
            client_key: client_key.clone(),
            source: e,
        })?;
    check_username(&access, client_key)?;
    Ok(access)
}

/// The access message's username (the OpenVPN user) must be the adapter's client key: a
/// message for another channel is refused before anything is written or started.
pub fn check_username(access: &AccessMessage, client_key: &ClientKey) -> Result<(), ConnectError> {
    if access.username != *client_key {
        return Err(ConnectError::WrongUsername {
            client_key: client_key.clone(),
        });
    }
    Ok(())
}

/// Runs `connect` until stopped. Returns the [`Outcome`]; errors only for problems before
/// the connection loop (core unreachable at start, refused access message, runtime dir).
pub async fn run(s: ConnectSettings, cancel: CancellationToken) -> Result<Outcome, ConnectError> {
    if s.bytecount_interval == 0 {
        return Err(ConnectError::Settings(
            "bytecount interval must be ≥ 1 s".into(),
        ));
    }
    render::check_dev_name(&s.ifb_dev)?;
    if find_program(&s.openvpn).is_none() {
        return Err(ConnectError::Settings(format!(
            "the openvpn program {} was not found or is not executable",
            s.openvpn.display()
        )));
    }
    // Undo what a killed adapter of this runtime directory left behind (DNS settings,
    // kill-switch table) before anything else.
    let journal_path = s.net.journal_path(&s.runtime_dir);
    for done in journal::recover(&journal_path, &s.net.dns_tools, &s.net.nft) {
        info!("recovered from an earlier run: {done}");
    }
    let api = Client::new(&s.core_url, s.token.clone(), s.api_timeout)
        .map_err(ConnectError::CoreClient)?;
    info!(client_key = %s.client_key, core = %s.core_url, "connecting: fetching the access message (GetAccess)");
    let mut access = tokio::select! {
        r = fetch_access(&api, &s.client_key) => r?,
        () = cancel.cancelled() => return Ok(Outcome::Stopped),
    };
    let dir = RuntimeDir::create(&s.runtime_dir)?;
    let opts = RenderOptions {
        auth_file: dir.auth_path(),
        mgmt_socket: dir.socket_path(),
        tun_dev: s.tun_dev.clone(),
        // OpenVPN logs the pushed options (read for DNS) at verb 3.
        verb: if s.net.dns == crate::dns::DnsMode::Off {
            s.verb
        } else {
            s.verb.max(3)
        },
    };
    let mut rendered = render::render(&access, &opts)?;
    let plan = if s.net.lockdown {
        // The kill switch lets through the server's address only, and DNS only through the
        // tunnel: a server name is resolved now, and OpenVPN is given the address.
        let server = resolve_server(&rendered).await?;
        if rendered.host.parse::<std::net::IpAddr>().is_err() {
            access.service_endpoint_address = server.to_string();
            rendered = render::render(&access, &opts)?;
        }
        Some(lockdown_plan(&s, &rendered, server))
    } else {
        None
    };
    if !rendered.ignored_keys.is_empty() {
        warn!(
            "access message: ignored unknown additionalParams keys: {}",
            rendered.ignored_keys.join(", ")
        );
    }
    for w in &rendered.warnings {
        warn!("access message: {w}");
    }
    dir.write_private(AUTH_NAME, rendered.credentials.file_contents().as_bytes())?;
    dir.write_private(CONFIG_NAME, rendered.text.as_bytes())?;
    let net = NetGuard::start(&s.net, &journal_path, plan.as_ref()).await?;
    info!(
        endpoint = %rendered.endpoint(),
        proto = rendered.proto.directive_arg(),
        tun = %s.tun_dev,
        "access message accepted; starting OpenVPN"
    );
    let launcher = real::RealOpenVpn::new(
        &s.openvpn,
        &dir.config_path(),
        &dir.socket_path(),
        s.mgmt_connect_timeout,
    );
    let endpoint = rendered.endpoint();
    let speed = rendered.speed;
    let key = s.client_key.clone();
    let actor = actor::Actor::new(s, api.clone(), launcher, endpoint, speed).with_net(net);
    let watch_cancel = cancel.child_token();
    watch::spawn(&api, key, actor.tx.clone(), watch_cancel.clone());
    let _stop_watch = watch_cancel.drop_guard();
    let outcome = actor.run(cancel).await;
    drop(dir);
    Ok(outcome)
}

/// The VPN server's socket address (its name resolved, the first address).
async fn resolve_server(r: &RenderedConfig) -> Result<std::net::SocketAddr, ConnectError> {
    if let Ok(ip) = r.host.parse::<std::net::IpAddr>() {
        return Ok(std::net::SocketAddr::new(ip, r.port));
    }
    let rerr = |e| ConnectError::ResolveEndpoint {
        host: r.host.clone(),
        source: e,
    };
    tokio::net::lookup_host((r.host.as_str(), r.port))
        .await
        .map_err(rerr)?
        .next()
        .ok_or_else(|| rerr(std::io::Error::other("no address")))
}

/// The kill switch of this run: the server (with the config's transport) and the
/// `--lockdown-allow` entries (TCP).
fn lockdown_plan(
    s: &ConnectSettings,
    r: &RenderedConfig,
    server: std::net::SocketAddr,
) -> lockdown::LockdownPlan {
    let transport = if r.proto.is_udp() {
        lockdown::Transport::Udp
    } else {
        lockdown::Transport::Tcp
    };
    lockdown::LockdownPlan {
        table: lockdown::table_name(std::process::id()),
        tun: s.tun_dev.clone(),
        servers: vec![lockdown::Endpoint::new(server, transport)],
        allowed: s
            .net
            .lockdown_allow
            .iter()
            .map(|a| lockdown::Endpoint::new(*a, lockdown::Transport::Tcp))
            .collect(),
    }
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = int.recv() => info!("SIGINT received"),
            _ = term.recv() => info!("SIGTERM received"),
        }
        token.cancel();
    });
    Ok(())
}

#[cfg(test)]
mod tests;
