//! `adapter-client connect`: GetAccess → config → `openvpn` child → sessions on the core.
//!
//! One task (the [`Actor`]) owns all connection state. Other tasks only send it events: the
//! management socket reader (parsed lines), the child waiter (exit status). Timers (hold
//! release after backoff, child restart, usage reports, stop deadline) live in the actor's
//! `select!`. Shutdown comes through a [`CancellationToken`].
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

use std::path::PathBuf;
use std::time::Duration;

use openvpn_mgmt::{
    self as mgmt, classify_exit_reason, Command, ExitKind, Line as MgmtLine, OvpnState, ReadItem,
    Signal, StateChange,
};
use service_api::{
    ApiError, Client, ClientKey, GetAccessRequest, Secret, ServiceStatus, SessionId,
    StartSessionRequest, StopSessionRequest, UpdateSessionRequest,
};
use tc_shaper::{self as shaping, ShapingPlan, Tools};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::openvpn::{OpenVpnCommand, OutputTail};
use crate::render::{self, RenderError, RenderOptions, RenderedConfig};
use crate::runtime::{RuntimeDir, RuntimeError, AUTH_NAME, CONFIG_NAME};
use crate::state::{self, human_bytes, now_unix, Phase, Status};

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
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("invalid settings: {0}")]
    Settings(String),
}

/// Most unacknowledged StopSession reports kept for retry.
const MAX_PENDING_STOPS: usize = 64;

/// How often a suspended adapter logs that it is still waiting.
const SUSPEND_LOG_EVERY: Duration = Duration::from_secs(30);

/// Longest interval between status checks after a server HALT.
const HALT_CHECK_MAX_INTERVAL: Duration = Duration::from_secs(1);

/// Why the actor is not (re)connecting although it was not asked to stop.
enum Wait {
    /// The core answered suspending/suspended: openvpn is stopped until a payment brings
    /// the channel back (or it is terminated).
    Suspended {
        status: ServiceStatus,
        /// The call whose answer suspended the service.
        what: String,
        since: Instant,
        next_poll: Instant,
        next_log: Instant,
    },
    /// The server halted the client (or refused the credentials): openvpn is stopped and
    /// the core is asked why before `outcome` becomes final at `deadline`.
    Check {
        outcome: Outcome,
        deadline: Instant,
        next_poll: Instant,
    },
}

impl Wait {
    fn next_poll(&self) -> Instant {
        match self {
            Self::Suspended { next_poll, .. } | Self::Check { next_poll, .. } => *next_poll,
        }
    }
}

/// The text shown while suspended.
pub fn suspended_reason(status: ServiceStatus, what: &str, waited: Duration) -> String {
    format!(
        "service suspended by the agent (the core answered {status} to {what}): payment lag; waiting for payment to resume — {} s",
        waited.as_secs()
    )
}

/// Backoff delay before attempt `attempt` (0 = first try, no delay).
pub fn backoff_delay(attempt: u32, initial: Duration, max: Duration) -> Duration {
    if attempt == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32
        .checked_shl(attempt.saturating_sub(1).min(20))
        .unwrap_or(u32::MAX);
    initial.saturating_mul(factor).min(max)
}

/// Per-direction byte counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub bytes_in: u64,
    pub bytes_out: u64,
}

impl Counts {
    /// `self - base`; a counter below its base means OpenVPN restarted its counters, and
    /// the absolute value is the session's count.
    pub fn since(self, base: Counts) -> Counts {
        let d = |now: u64, b: u64| if now >= b { now - b } else { now };
        Counts {
            bytes_in: d(self.bytes_in, base.bytes_in),
            bytes_out: d(self.bytes_out, base.bytes_out),
        }
    }
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

/// Fetches the access message and renders the config (the `render` command uses this too).
pub async fn fetch_access(
    api: &Client,
    client_key: &ClientKey,
) -> Result<service_api::AccessMessage, ConnectError> {
    api.get_access(&GetAccessRequest {
        client_key: client_key.clone(),
    })
    .await
    .map_err(|e| ConnectError::GetAccess {
        client_key: client_key.clone(),
        source: e,
    })
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
    let api = Client::new(&s.core_url, s.token.clone(), s.api_timeout)
        .map_err(ConnectError::CoreClient)?;
    info!(client_key = %s.client_key, core = %s.core_url, "connecting: fetching the access message (GetAccess)");
    let access = tokio::select! {
        r = fetch_access(&api, &s.client_key) => r?,
        () = cancel.cancelled() => return Ok(Outcome::Stopped),
    };
    let dir = RuntimeDir::create(&s.runtime_dir)?;
    let rendered = render::render(
        &access,
        &RenderOptions {
            auth_file: dir.auth_path(),
            mgmt_socket: dir.socket_path(),
            tun_dev: s.tun_dev.clone(),
            verb: s.verb,
        },
    )?;
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
    info!(
        endpoint = %rendered.endpoint(),
        proto = rendered.proto.directive_arg(),
        tun = %s.tun_dev,
        "access message accepted; starting OpenVPN"
    );
    let actor = Actor::new(s, api, rendered, &dir);
    let outcome = actor.run(cancel).await;
    drop(dir);
    Ok(outcome)
}

enum Event {
    MgmtConnected { gen: u64, writer: OwnedWriteHalf },
    MgmtConnectFailed { gen: u64, error: String },
    Line { gen: u64, line: MgmtLine },
    MgmtClosed { gen: u64 },
    ChildExited { gen: u64, status: String },
}

struct ChildInfo {
    pid: u32,
    tail: OutputTail,
    /// Cancels the management connector/reader of this child.
    cancel: CancellationToken,
    holds: u32,
}

struct Session {
    id: Option<SessionId>,
    connection_id: String,
    vpn_addr: Option<String>,
    /// The local `ip:port` of the tunnel's transport, when OpenVPN tells it.
    client_addr: Option<String>,
    /// Absolute BYTECOUNT at connect time.
    baseline: Counts,
    /// Session counts (absolute − baseline) as of the last BYTECOUNT.
    counts: Counts,
}

/// The connection actor.
pub struct Actor {
    s: ConnectSettings,
    api: Client,
    rendered: RenderedConfig,
    config_path: PathBuf,
    socket_path: PathBuf,
    tx: mpsc::Sender<Event>,
    rx: mpsc::Receiver<Event>,
    gen: u64,
    child: Option<ChildInfo>,
    writer: Option<OwnedWriteHalf>,
    release_at: Option<Instant>,
    restart_at: Option<Instant>,
    stop_deadline: Option<Instant>,
    killed: bool,
    next_report: Instant,
    attempt: u32,
    /// Absolute BYTECOUNT of the current child.
    abs: Counts,
    /// Absolute counts already attributed to a session (of the current child).
    consumed: Counts,
    session: Option<Session>,
    stopping: bool,
    outcome: Option<Outcome>,
    shaping: Option<ShapingPlan>,
    last_fatal: Option<String>,
    status: Status,
    /// Cancels the management reader of the previous (exited) child at the next start.
    old_reader: Option<CancellationToken>,
    /// StopSession reports the core did not acknowledge (unreachable).
    pending_stops: Vec<StopSessionRequest>,
    state_write_failed: bool,
    last_logged: Counts,
    next_traffic_log: Instant,
    /// Suspended, or checking a server halt with the core.
    wait: Option<Wait>,
    /// The last StopSession sent: replaying it answers the channel status without side
    /// effects (a stopped session's counts are final).
    last_stop: Option<StopSessionRequest>,
    probe_seq: u32,
}

impl Actor {
    fn new(s: ConnectSettings, api: Client, rendered: RenderedConfig, dir: &RuntimeDir) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let status = Status {
            client_key: s.client_key.0.clone(),
            phase: Phase::Starting,
            reason: None,
            pid: std::process::id(),
            openvpn_pid: None,
            openvpn_state: None,
            endpoint: rendered.endpoint(),
            tun_dev: s.tun_dev.clone(),
            vpn_address: None,
            session_id: None,
            connected_since: None,
            bytes_in: 0,
            bytes_out: 0,
            total_bytes_in: 0,
            total_bytes_out: 0,
            connections: 0,
            updated_at: now_unix(),
        };
        Self {
            next_report: Instant::now() + s.report_interval,
            config_path: dir.config_path(),
            socket_path: dir.socket_path(),
            s,
            api,
            rendered,
            tx,
            rx,
            gen: 0,
            child: None,
            writer: None,
            release_at: None,
            restart_at: None,
            stop_deadline: None,
            killed: false,
            attempt: 0,
            abs: Counts::default(),
            consumed: Counts::default(),
            session: None,
            stopping: false,
            outcome: None,
            shaping: None,
            last_fatal: None,
            status,
            old_reader: None,
            pending_stops: Vec::new(),
            state_write_failed: false,
            last_logged: Counts::default(),
            next_traffic_log: Instant::now(),
            wait: None,
            last_stop: None,
            probe_seq: 0,
        }
    }

    /// openvpn must not be (re)started or released now: stopping, suspended or checking a
    /// halt.
    fn holding_off(&self) -> bool {
        self.stopping || self.wait.is_some()
    }

    fn earliest_timer(&self) -> Instant {
        // The status checks of a wait start once openvpn is gone.
        let poll = self
            .wait
            .as_ref()
            .filter(|_| self.child.is_none() && !self.stopping)
            .map(Wait::next_poll);
        [self.release_at, self.restart_at, self.stop_deadline, poll]
            .into_iter()
            .flatten()
            .fold(self.next_report, Instant::min)
    }

    async fn run(mut self, cancel: CancellationToken) -> Outcome {
        self.write_state();
        self.spawn_child();
        loop {
            if self.stopping && self.child.is_none() {
                break;
            }
            let timer = self.earliest_timer();
            tokio::select! {
                () = cancel.cancelled(), if !self.stopping => {
                    info!("stop requested: stopping OpenVPN");
                    self.begin_stop(Outcome::Stopped).await;
                }
                ev = self.rx.recv() => {
                    if let Some(ev) = ev {
                        self.handle(ev).await;
                    }
                }
                () = tokio::time::sleep_until(timer) => self.on_timer().await,
            }
        }
        self.remove_shaping().await;
        self.retry_pending_stops().await;
        for req in &self.pending_stops {
            error!(
                "the core never acknowledged the end of session {} (bytes in {}, out {})",
                req.session_id, req.bytes_in, req.bytes_out
            );
        }
        let outcome = self.outcome.take().unwrap_or(Outcome::Stopped);
        self.status.phase = outcome.phase();
        self.status.reason = Some(outcome.reason());
        self.status.openvpn_pid = None;
        self.status.openvpn_state = None;
        self.status.connected_since = None;
        self.write_state();
        match &outcome {
            Outcome::Stopped => info!("stopped"),
            _ => error!("stopped for good: {}", outcome.reason()),
        }
        outcome
    }

    // ---- child and management connection -------------------------------------------

    fn spawn_child(&mut self) {
        self.restart_at = None;
        if let Some(old) = self.old_reader.take() {
            old.cancel();
        }
        self.gen += 1;
        let gen = self.gen;
        self.abs = Counts::default();
        self.consumed = Counts::default();
        self.writer = None;
        let _ = std::fs::remove_file(&self.socket_path);
        let cmd = OpenVpnCommand::new(&self.s.openvpn, &self.config_path);
        let (mut child, tail) = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                error!(program = %self.s.openvpn.display(), "could not start openvpn: {e}");
                self.schedule_restart("openvpn could not be started");
                return;
            }
        };
        let pid = child.id().unwrap_or(0);
        info!(
            pid,
            "openvpn started; connecting to {}",
            self.rendered.endpoint()
        );
        let child_cancel = CancellationToken::new();
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let status = match child.wait().await {
                Ok(st) => st.to_string(),
                Err(e) => format!("wait failed: {e}"),
            };
            let _ = tx.send(Event::ChildExited { gen, status }).await;
        });
        tokio::spawn(mgmt_task(
            self.socket_path.clone(),
            gen,
            self.tx.clone(),
            self.s.mgmt_connect_timeout,
            child_cancel.clone(),
        ));
        self.child = Some(ChildInfo {
            pid,
            tail,
            cancel: child_cancel,
            holds: 0,
        });
        self.status.openvpn_pid = Some(pid);
        self.set_phase(Phase::Connecting, None);
    }

    fn schedule_restart(&mut self, why: &str) {
        self.attempt = self.attempt.saturating_add(1);
        let d = backoff_delay(self.attempt, self.s.backoff_initial, self.s.backoff_max);
        info!("restarting openvpn in {} ms ({why})", d.as_millis());
        self.restart_at = Some(Instant::now() + d);
        self.set_phase(Phase::Reconnecting, Some(why.to_string()));
    }

    async fn send(&mut self, cmd: Command) -> bool {
        let Some(w) = self.writer.as_mut() else {
            return false;
        };
        let line = cmd.line();
        match tokio::time::timeout(Duration::from_secs(2), w.write_all(line.as_bytes())).await {
            Ok(Ok(())) => {
                debug!("management <- {}", line.trim_end());
                true
            }
            Ok(Err(e)) => {
                warn!("writing to the management socket failed: {e}");
                self.writer = None;
                false
            }
            Err(_) => {
                warn!("writing to the management socket timed out");
                self.writer = None;
                false
            }
        }
    }

    fn signal_child(&self, sig: nix::sys::signal::Signal) {
        if let Some(c) = &self.child {
            if c.pid > 0 {
                let pid = nix::unistd::Pid::from_raw(c.pid as i32);
                if let Err(e) = nix::sys::signal::kill(pid, sig) {
                    debug!("signal {sig} to openvpn pid {}: {e}", c.pid);
                }
            }
        }
    }

    /// SIGTERM to the child (it cannot be controlled any more), SIGKILL after the stop
    /// timeout.
    fn terminate_child(&mut self) {
        self.signal_child(nix::sys::signal::Signal::SIGTERM);
        if self.stop_deadline.is_none() {
            self.stop_deadline = Some(Instant::now() + self.s.stop_timeout);
        }
    }

    async fn begin_stop(&mut self, outcome: Outcome) {
        if self.stopping {
            return;
        }
        self.stopping = true;
        self.wait = None;
        self.outcome = Some(outcome);
        self.release_at = None;
        self.restart_at = None;
        if self.child.is_none() {
            return;
        }
        self.set_phase(Phase::Stopping, None);
        if !self.send(Command::Signal(Signal::Term)).await {
            self.signal_child(nix::sys::signal::Signal::SIGTERM);
        }
        self.stop_deadline = Some(Instant::now() + self.s.stop_timeout);
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        if self.stop_deadline.is_some_and(|d| d <= now) {
            if self.child.is_none() {
                self.stop_deadline = None;
            } else if !self.killed {
                warn!(
                    "openvpn did not exit within {} s; killing it",
                    self.s.stop_timeout.as_secs()
                );
                self.signal_child(nix::sys::signal::Signal::SIGKILL);
                self.killed = true;
                self.stop_deadline = Some(now + Duration::from_secs(5));
            } else {
                error!("openvpn did not go away even after SIGKILL; giving up on it");
                if let Some(c) = self.child.take() {
                    c.cancel.cancel();
                }
                self.stop_deadline = None;
                self.killed = false;
                self.writer = None;
                self.end_session("openvpn is gone").await;
                self.remove_shaping().await;
                if !self.holding_off() {
                    self.schedule_restart("openvpn could not be stopped");
                }
            }
        }
        if self.release_at.is_some_and(|d| d <= now) {
            self.release_at = None;
            info!("reconnecting (attempt {})", self.attempt);
            self.send(Command::HoldRelease).await;
            self.set_phase(Phase::Connecting, None);
        }
        if self.restart_at.is_some_and(|d| d <= now) && !self.holding_off() {
            self.spawn_child();
        }
        if self.child.is_none()
            && !self.stopping
            && self.wait.as_ref().is_some_and(|w| w.next_poll() <= now)
        {
            self.poll_wait().await;
        }
        if self.next_report <= now {
            self.next_report = now + self.s.report_interval;
            self.report().await;
        }
    }

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::MgmtConnected { gen, writer } if gen == self.gen => {
                debug!("management interface connected");
                self.writer = Some(writer);
                if self.holding_off() {
                    self.send(Command::Signal(Signal::Term)).await;
                    return;
                }
                self.send(Command::StateOn).await;
                self.send(Command::ByteCount(self.s.bytecount_interval))
                    .await;
            }
            Event::MgmtConnectFailed { gen, error } if gen == self.gen => {
                error!("could not connect to the openvpn management socket: {error}");
                self.terminate_child();
            }
            Event::Line { gen, line } if gen == self.gen => self.on_line(line).await,
            Event::MgmtClosed { gen } if gen == self.gen => {
                self.writer = None;
                if self.child.is_some() && !self.stopping {
                    warn!("the openvpn management connection closed; restarting openvpn");
                    self.terminate_child();
                }
            }
            Event::ChildExited { gen, status } if gen == self.gen => {
                self.on_child_exit(status).await;
            }
            _ => debug!("event of an earlier openvpn process ignored"),
        }
    }

    async fn on_child_exit(&mut self, status: String) {
        let Some(child) = self.child.take() else {
            return;
        };
        // The management reader keeps going until EOF: OpenVPN's last lines (EXITING with
        // its reason, NOTIFY of a server halt) may still be in the socket and still count.
        self.old_reader = Some(child.cancel.clone());
        self.stop_deadline = None;
        self.killed = false;
        self.writer = None;
        self.release_at = None;
        self.status.openvpn_pid = None;
        self.status.openvpn_state = None;
        self.end_session("openvpn exited").await;
        self.remove_shaping().await;
        if self.holding_off() {
            info!("openvpn exited ({status})");
            if !self.stopping {
                self.write_state();
            }
            return;
        }
        warn!(
            "openvpn exited unexpectedly ({status}){}",
            self.last_fatal
                .take()
                .map(|f| format!(": {f}"))
                .unwrap_or_default()
        );
        for l in child.tail.lines() {
            warn!(target: "openvpn", "{l}");
        }
        self.schedule_restart(&format!("openvpn exited: {status}"));
    }

    async fn on_line(&mut self, line: MgmtLine) {
        match line {
            MgmtLine::Hold(text) => {
                let holding_off = self.holding_off();
                let Some(c) = self.child.as_mut() else { return };
                c.holds += 1;
                if holding_off {
                    return;
                }
                if c.holds == 1 {
                    debug!("openvpn holds ({text}); releasing");
                    self.send(Command::HoldRelease).await;
                } else {
                    let d = backoff_delay(self.attempt, self.s.backoff_initial, self.s.backoff_max);
                    info!("reconnecting in {} ms", d.as_millis());
                    self.release_at = Some(Instant::now() + d);
                }
            }
            MgmtLine::State(sc) => self.on_state(sc).await,
            MgmtLine::ByteCount {
                bytes_in,
                bytes_out,
            } => {
                self.abs = Counts {
                    bytes_in,
                    bytes_out,
                };
                if let Some(sess) = self.session.as_mut() {
                    sess.counts = self.abs.since(sess.baseline);
                    self.status.bytes_in = sess.counts.bytes_in;
                    self.status.bytes_out = sess.counts.bytes_out;
                }
            }
            MgmtLine::Fatal(msg) => {
                error!("openvpn fatal error: {msg}");
                self.last_fatal = Some(msg);
            }
            MgmtLine::Notify { kind, text, .. } => match classify_exit_reason(&kind) {
                ExitKind::ServerHalt => {
                    let why = if text.is_empty() {
                        String::new()
                    } else {
                        format!(": {text}")
                    };
                    self.begin_halt_check(Outcome::ServerHalted {
                        reason: format!("the server halted the client ({kind}{why})"),
                    })
                    .await;
                }
                ExitKind::ServerRestart => {
                    warn!("the server asked the client to reconnect ({text})");
                }
                _ => info!("openvpn notification: {kind} {text}"),
            },
            MgmtLine::Password(text) => {
                if text.contains("Verification Failed") {
                    // With auth-retry none OpenVPN exits next; do not restart it. A
                    // suspended channel refuses logins too: ask the core first.
                    self.begin_halt_check(Outcome::AuthFailed {
                        reason: format!("the server refused the credentials ({text})"),
                    })
                    .await;
                } else {
                    warn!("openvpn asks for a password over the management interface ({text}); it should read the credentials file");
                }
            }
            MgmtLine::Error(text) => warn!("openvpn management command failed: {text}"),
            other => debug!("management -> {other:?}"),
        }
    }

    async fn on_state(&mut self, sc: StateChange) {
        self.status.openvpn_state = Some(state_name(&sc.state));
        match sc.state {
            OvpnState::Connected => self.on_connected(sc).await,
            OvpnState::Reconnecting => {
                let reason = sc.description;
                self.end_session(&format!("connection lost: {reason}"))
                    .await;
                self.remove_shaping().await;
                if self.holding_off() {
                    return;
                }
                if classify_exit_reason(&reason) == ExitKind::ServerRestart {
                    warn!("the server asked the client to reconnect ({reason})");
                } else {
                    warn!("connection lost ({reason}); reconnecting");
                }
                self.attempt = self.attempt.saturating_add(1);
                self.set_phase(Phase::Reconnecting, Some(reason));
            }
            OvpnState::Exiting => {
                let reason = sc.description;
                self.end_session(&format!("openvpn exiting: {reason}"))
                    .await;
                self.remove_shaping().await;
                match classify_exit_reason(&reason) {
                    ExitKind::ServerHalt => {
                        self.begin_halt_check(Outcome::ServerHalted {
                            reason: format!("the server halted the client ({reason})"),
                        })
                        .await;
                    }
                    ExitKind::AuthFailure => {
                        self.begin_halt_check(Outcome::AuthFailed {
                            reason: format!("the server refused the credentials ({reason})"),
                        })
                        .await;
                    }
                    _ if self.holding_off() => debug!("openvpn exiting ({reason})"),
                    _ => warn!("openvpn is exiting ({reason}); it will be restarted"),
                }
            }
            other => {
                debug!("openvpn state {other:?} {}", sc.description);
                if self.session.is_none() && !self.holding_off() {
                    self.set_phase(Phase::Connecting, None);
                }
                self.write_state();
            }
        }
    }

    async fn on_connected(&mut self, sc: StateChange) {
        if self.session.is_some() {
            return;
        }
        let pid = self.child.as_ref().map_or(0, |c| c.pid);
        let vpn_addr = sc.tun_ipv4.clone().or_else(|| sc.tun_ipv6.clone());
        let remote = match (&sc.remote_ip, sc.remote_port) {
            (Some(ip), Some(p)) => format!("{ip}:{p}"),
            (Some(ip), None) => ip.clone(),
            _ => self.rendered.endpoint(),
        };
        if sc.description == "ERROR" {
            warn!("openvpn reports the initialization completed with errors");
        }
        info!(
            vpn_address = vpn_addr.as_deref().unwrap_or("?"),
            endpoint = %self.rendered.endpoint(),
            remote = %remote,
            "connected"
        );
        self.attempt = 0;
        self.session = Some(Session {
            id: None,
            connection_id: format!("{pid}:{}", sc.time),
            vpn_addr: vpn_addr.clone(),
            client_addr: match (&sc.local_ip, sc.local_port) {
                (Some(ip), Some(p)) if ip.contains(':') => Some(format!("[{ip}]:{p}")),
                (Some(ip), Some(p)) => Some(format!("{ip}:{p}")),
                _ => None,
            },
            baseline: self.consumed,
            counts: self.abs.since(self.consumed),
        });
        self.status.connections += 1;
        self.status.vpn_address = vpn_addr;
        self.status.connected_since = Some(now_unix());
        self.status.session_id = None;
        self.set_phase(Phase::Connected, None);
        self.apply_shaping().await;
        // Earlier sessions first: the core closes a stale open session when a new one starts.
        self.retry_pending_stops().await;
        self.start_session().await;
        self.write_state();
    }

    // ---- core calls ------------------------------------------------------------------

    /// Reacts to a service status from the core: terminating/terminated stop for good,
    /// suspending/suspended suspend, activating/active end a suspension.
    async fn check_status(&mut self, status: ServiceStatus, what: &str) {
        if self.stopping {
            return;
        }
        if status.is_final() {
            self.begin_stop(Outcome::CoreStopped {
                status,
                reason: format!("the core answered {status} ({what})"),
            })
            .await;
        } else if status.must_disconnect() {
            self.enter_suspend(status, what).await;
        } else if status.admits_login() && matches!(self.wait, Some(Wait::Suspended { .. })) {
            self.resume(status, what);
        }
    }

    /// Stops openvpn (without a restart) over management, else with a signal.
    async fn stop_child_for_wait(&mut self) {
        if self.child.is_none() {
            return;
        }
        if !self.send(Command::Signal(Signal::Term)).await {
            self.signal_child(nix::sys::signal::Signal::SIGTERM);
        }
        if self.stop_deadline.is_none() {
            self.stop_deadline = Some(Instant::now() + self.s.stop_timeout);
        }
    }

    async fn enter_suspend(&mut self, status: ServiceStatus, what: &str) {
        let was_waiting = self.wait.is_some();
        if let Some(Wait::Suspended { status: s, .. }) = self.wait.as_mut() {
            *s = status;
            return;
        }
        let now = Instant::now();
        let reason = suspended_reason(status, what, Duration::ZERO);
        warn!(
            "{reason} (asking the core every {} ms)",
            self.s.suspend_poll.as_millis()
        );
        self.wait = Some(Wait::Suspended {
            status,
            what: what.to_string(),
            since: now,
            next_poll: now + self.s.suspend_poll,
            next_log: now + SUSPEND_LOG_EVERY,
        });
        self.release_at = None;
        self.restart_at = None;
        if !was_waiting {
            self.stop_child_for_wait().await;
        }
        if self.child.is_none() {
            self.remove_shaping().await;
        }
        self.set_phase(Phase::Suspended, Some(reason));
    }

    /// The channel admits logins again: a new openvpn (and session) is started.
    fn resume(&mut self, status: ServiceStatus, what: &str) {
        let Some(Wait::Suspended { since, .. }) = self.wait.take() else {
            return;
        };
        let msg = format!(
            "payment received: the channel is {status} again ({what}) after {} s suspended; reconnecting",
            since.elapsed().as_secs()
        );
        info!("{msg}");
        self.attempt = 0;
        if self.child.is_none() {
            // Started from the timer, so no caller up the stack sees a new child.
            self.restart_at = Some(Instant::now());
        }
        self.set_phase(Phase::Reconnecting, Some(msg));
    }

    /// The server halted the client (or refused the credentials): stop openvpn and ask the
    /// core why before `outcome` becomes final.
    async fn begin_halt_check(&mut self, outcome: Outcome) {
        if self.stopping || self.wait.is_some() {
            return;
        }
        let reason = outcome.reason();
        info!(
            "{reason}; asking the core whether the channel was suspended or terminated (up to {} ms)",
            self.s.halt_grace.as_millis()
        );
        let now = Instant::now();
        self.wait = Some(Wait::Check {
            outcome,
            deadline: now + self.s.halt_grace,
            next_poll: now,
        });
        self.release_at = None;
        self.restart_at = None;
        self.stop_child_for_wait().await;
        self.set_phase(Phase::Stopping, Some(reason));
    }

    /// One status check of a wait (openvpn is gone).
    async fn poll_wait(&mut self) {
        if let Some(st) = self.ask_status().await {
            self.check_status(st, "status check").await;
        }
        if self.stopping {
            return;
        }
        let now = Instant::now();
        let poll = self.s.suspend_poll;
        let max_wait = self.s.max_suspend_wait;
        let mut give_up = None;
        let mut show = None;
        match self.wait.as_mut() {
            None => {}
            Some(Wait::Check {
                outcome,
                deadline,
                next_poll,
            }) => {
                if now >= *deadline {
                    give_up = Some(match outcome.clone() {
                        Outcome::ServerHalted { reason } => Outcome::ServerHalted {
                            reason: format!("{reason}; the core still admits the channel"),
                        },
                        o => o,
                    });
                } else {
                    *next_poll = (now + poll.min(HALT_CHECK_MAX_INTERVAL)).min(*deadline);
                }
            }
            Some(Wait::Suspended {
                status,
                what,
                since,
                next_poll,
                next_log,
            }) => {
                let waited = now.saturating_duration_since(*since);
                match max_wait {
                    Some(max) if waited >= max => {
                        give_up = Some(Outcome::CoreStopped {
                            status: *status,
                            reason: format!(
                                "service suspended by the agent (the core answered {status} to {what}); no payment within {} s, giving up",
                                max.as_secs()
                            ),
                        });
                    }
                    _ => {
                        *next_poll = now + poll;
                        if let Some(max) = max_wait {
                            *next_poll = (*next_poll).min(*since + max);
                        }
                        let reason = suspended_reason(*status, what, waited);
                        if now >= *next_log {
                            *next_log = now + SUSPEND_LOG_EVERY;
                            warn!("{reason}");
                        }
                        show = Some(reason);
                    }
                }
            }
        }
        if let Some(o) = give_up {
            self.begin_stop(o).await;
        } else if let Some(reason) = show {
            self.status.reason = Some(reason);
            self.write_state();
        }
    }

    /// Asks the core for the channel status without side effects: replays the last
    /// StopSession; without one, StartSession (its `channel_inactive` error names the
    /// status; a session it opens is stopped again at once, empty).
    async fn ask_status(&mut self) -> Option<ServiceStatus> {
        self.retry_pending_stops().await;
        if self.stopping || self.wait.is_none() {
            return None;
        }
        if let Some(req) = self.last_stop.clone() {
            match self.api.stop_session(&req).await {
                Ok(r) => return Some(r.status),
                Err(ApiError::Api {
                    status: Some(st), ..
                }) => return Some(st),
                Err(e) if e.code() == Some(service_api::ErrorCode::NotFound) => {
                    self.last_stop = None;
                }
                Err(e) => {
                    warn!("asking the core for the channel status failed (will retry): {e}");
                    return None;
                }
            }
        }
        self.probe_seq = self.probe_seq.wrapping_add(1);
        let req = StartSessionRequest {
            client_key: self.s.client_key.clone(),
            connection_id: Some(format!(
                "status-check:{}:{}",
                std::process::id(),
                self.probe_seq
            )),
            client_addr: None,
            vpn_addr: None,
        };
        match self.api.start_session(&req).await {
            Ok(resp) => {
                let stop = StopSessionRequest {
                    session_id: resp.session_id,
                    bytes_in: 0,
                    bytes_out: 0,
                };
                match self.api.stop_session(&stop).await {
                    Ok(_) => self.last_stop = Some(stop),
                    Err(e) => warn!(
                        "could not stop the empty status-check session {}: {e}",
                        stop.session_id
                    ),
                }
                Some(resp.status)
            }
            Err(ApiError::Api {
                status: Some(st), ..
            }) => Some(st),
            Err(e) => {
                warn!("asking the core for the channel status failed (will retry): {e}");
                None
            }
        }
    }

    async fn check_api_error(&mut self, e: &ApiError, what: &str) {
        if let ApiError::Api {
            status: Some(st), ..
        } = e
        {
            if st.must_disconnect() {
                self.check_status(*st, what).await;
                return;
            }
        }
        warn!("{what} failed (will retry): {e}");
    }

    async fn start_session(&mut self) {
        let Some(sess) = self.session.as_ref() else {
            return;
        };
        if sess.id.is_some() {
            return;
        }
        let req = StartSessionRequest {
            client_key: self.s.client_key.clone(),
            connection_id: Some(sess.connection_id.clone()),
            client_addr: sess.client_addr.clone(),
            vpn_addr: sess.vpn_addr.clone(),
        };
        match self.api.start_session(&req).await {
            Ok(resp) => {
                info!(session = %resp.session_id, status = %resp.status, "session started");
                self.status.session_id = Some(resp.session_id.0.clone());
                if let Some(sess) = self.session.as_mut() {
                    sess.id = Some(resp.session_id);
                }
                self.check_status(resp.status, "StartSession").await;
            }
            Err(e) => self.check_api_error(&e, "StartSession").await,
        }
    }

    async fn report(&mut self) {
        self.retry_pending_stops().await;
        let Some(sess) = self.session.as_ref() else {
            self.write_state();
            return;
        };
        let Some(id) = sess.id.clone() else {
            self.start_session().await;
            self.write_state();
            return;
        };
        let c = sess.counts;
        let req = UpdateSessionRequest {
            session_id: id,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
        };
        match self.api.update_session(&req).await {
            Ok(resp) => {
                // Show the traffic when it changed, and at least once a minute.
                let now = Instant::now();
                if c != self.last_logged || now >= self.next_traffic_log {
                    info!(
                        "traffic: down {} / up {} this session; channel {} MB used; status {}",
                        human_bytes(c.bytes_in),
                        human_bytes(c.bytes_out),
                        resp.units_used,
                        resp.status
                    );
                    self.last_logged = c;
                    self.next_traffic_log = now + Duration::from_secs(60);
                }
                self.check_status(resp.status, "UpdateSession").await;
            }
            Err(e) if e.code() == Some(service_api::ErrorCode::NotFound) => {
                // The core lost the session (e.g. its data was reset): start a new one.
                warn!("the core does not know the session any more; starting a new one: {e}");
                self.status.session_id = None;
                if let Some(sess) = self.session.as_mut() {
                    sess.id = None;
                }
                self.start_session().await;
            }
            Err(e) => self.check_api_error(&e, "UpdateSession").await,
        }
        self.write_state();
    }

    /// Closes the current session (if any) with its last counts.
    async fn end_session(&mut self, reason: &str) {
        let Some(mut sess) = self.session.take() else {
            return;
        };
        let c = sess.counts;
        // The next session of this OpenVPN process counts from here.
        self.consumed = self.abs;
        self.status.total_bytes_in += c.bytes_in;
        self.status.total_bytes_out += c.bytes_out;
        self.status.connected_since = None;
        info!(
            "session ended ({reason}): down {} / up {}",
            human_bytes(c.bytes_in),
            human_bytes(c.bytes_out)
        );
        if sess.id.is_none() {
            // StartSession never succeeded: try once more so the traffic is not lost.
            self.session = Some(sess);
            self.start_session().await;
            match self.session.take() {
                Some(s) => sess = s,
                None => return,
            }
        }
        let Some(id) = sess.id.clone() else {
            warn!(
                "the core never acknowledged this session; {} bytes are unreported",
                c.bytes_in + c.bytes_out
            );
            return;
        };
        let req = StopSessionRequest {
            session_id: id,
            bytes_in: c.bytes_in,
            bytes_out: c.bytes_out,
        };
        self.send_stop(req).await;
    }

    /// StopSession; when the core cannot be reached the report is kept and retried with
    /// the next usage report (and once more before exit).
    async fn send_stop(&mut self, req: StopSessionRequest) {
        self.last_stop = Some(req.clone());
        match self.api.stop_session(&req).await {
            Ok(resp) => {
                debug!(stopped = resp.stopped, "session stopped");
                self.check_status(resp.status, "StopSession").await;
            }
            Err(e) if e.is_transport() => {
                warn!("StopSession failed, will retry: {e}");
                if self.pending_stops.len() < MAX_PENDING_STOPS {
                    self.pending_stops.push(req);
                } else {
                    error!(
                        "too many unacknowledged StopSession reports; dropping the one of {}",
                        req.session_id
                    );
                }
            }
            Err(e) => self.check_api_error(&e, "StopSession").await,
        }
    }

    async fn retry_pending_stops(&mut self) {
        for req in std::mem::take(&mut self.pending_stops) {
            self.send_stop(req).await;
        }
    }

    // ---- shaping ---------------------------------------------------------------------

    async fn apply_shaping(&mut self) {
        if !self.s.shaping {
            return;
        }
        let Some(plan) = ShapingPlan::new(&self.s.tun_dev, &self.s.ifb_dev, &self.rendered.speed)
        else {
            return;
        };
        // Leftovers of an earlier connection first.
        for e in shaping::run_each(&plan.remove_commands(&self.s.tools)).await {
            debug!("cleanup before shaping: {e}");
        }
        self.shaping = Some(plan.clone());
        match shaping::run_all(&plan.apply_commands(&self.s.tools)).await {
            Ok(()) => info!("speed limits applied: {plan}"),
            Err(e) => error!("could not apply the speed limits: {e}"),
        }
    }

    async fn remove_shaping(&mut self) {
        if let Some(plan) = self.shaping.take() {
            for e in shaping::run_each(&plan.remove_commands(&self.s.tools)).await {
                warn!("removing the speed limits: {e}");
            }
        }
    }

    // ---- state file ------------------------------------------------------------------

    fn set_phase(&mut self, phase: Phase, reason: Option<String>) {
        let changed = self.status.phase != phase || reason.is_some();
        self.status.phase = phase;
        if reason.is_some() {
            self.status.reason = reason;
        }
        if phase == Phase::Connected {
            self.status.reason = None;
        }
        if phase != Phase::Connected {
            self.status.session_id = self
                .session
                .as_ref()
                .and_then(|s| s.id.as_ref().map(|i| i.0.clone()));
        }
        if changed {
            self.write_state();
        }
    }

    fn write_state(&mut self) {
        self.status.updated_at = now_unix();
        match state::write(&self.s.state_file, &self.status) {
            Ok(()) => self.state_write_failed = false,
            Err(e) if !self.state_write_failed => {
                warn!("{e}");
                self.state_write_failed = true;
            }
            Err(_) => {}
        }
    }
}

fn state_name(s: &OvpnState) -> String {
    match s {
        OvpnState::Connecting => "CONNECTING",
        OvpnState::Wait => "WAIT",
        OvpnState::Auth => "AUTH",
        OvpnState::GetConfig => "GET_CONFIG",
        OvpnState::AssignIp => "ASSIGN_IP",
        OvpnState::AddRoutes => "ADD_ROUTES",
        OvpnState::Connected => "CONNECTED",
        OvpnState::Reconnecting => "RECONNECTING",
        OvpnState::Exiting => "EXITING",
        OvpnState::Resolve => "RESOLVE",
        OvpnState::TcpConnect => "TCP_CONNECT",
        OvpnState::AuthPending => "AUTH_PENDING",
        OvpnState::Other(o) => return o.chars().take(32).collect(),
    }
    .to_string()
}

/// Connects to the management socket (retrying until `timeout`), then forwards parsed lines.
async fn mgmt_task(
    path: PathBuf,
    gen: u64,
    tx: mpsc::Sender<Event>,
    timeout: Duration,
    cancel: CancellationToken,
) {
    let deadline = Instant::now() + timeout;
    let stream = loop {
        let attempt = tokio::select! {
            r = UnixStream::connect(&path) => r,
            () = cancel.cancelled() => return,
        };
        match attempt {
            Ok(s) => break s,
            Err(e) if Instant::now() >= deadline => {
                let _ = tx
                    .send(Event::MgmtConnectFailed {
                        gen,
                        error: format!("{}: {e}", path.display()),
                    })
                    .await;
                return;
            }
            Err(_) => {
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(50)) => {}
                    () = cancel.cancelled() => return,
                }
            }
        }
    };
    let (r, w) = stream.into_split();
    if tx
        .send(Event::MgmtConnected { gen, writer: w })
        .await
        .is_err()
    {
        return;
    }
    let mut r = mgmt::LineReader::new(BufReader::new(r));
    loop {
        let item = tokio::select! {
            l = r.next() => l,
            () = cancel.cancelled() => return,
        };
        match item {
            Ok(Some(ReadItem::Line(l))) => match mgmt::parse_line(&l) {
                Ok(line) => {
                    if tx.send(Event::Line { gen, line }).await.is_err() {
                        return;
                    }
                }
                Err(e) => warn!("unreadable management line: {e}"),
            },
            Ok(Some(ReadItem::TooLong { len })) => warn!(
                "management line of {len} bytes dropped (longer than {} bytes)",
                mgmt::MAX_LINE
            ),
            Ok(Some(ReadItem::Unterminated { len })) => {
                warn!("unterminated last management line of {len} bytes dropped")
            }
            Ok(None) | Err(_) => {
                let _ = tx.send(Event::MgmtClosed { gen }).await;
                return;
            }
        }
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
mod tests {
    use super::*;

    #[test]
    fn finds_programs() {
        assert!(find_program(std::path::Path::new("sh")).is_some());
        assert!(find_program(std::path::Path::new("/bin/sh")).is_some());
        assert!(find_program(std::path::Path::new("no-such-program-xyz")).is_none());
        let dir = tempfile::tempdir().expect("tmp");
        let f = dir.path().join("not-executable");
        std::fs::write(&f, "x").expect("write");
        assert!(find_program(&f).is_none());
        assert!(find_program(dir.path()).is_none(), "a directory");
    }

    #[test]
    fn backoff_is_capped_exponential() {
        let i = Duration::from_secs(1);
        let m = Duration::from_secs(60);
        let got: Vec<u64> = (0..10).map(|a| backoff_delay(a, i, m).as_secs()).collect();
        assert_eq!(got, vec![0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff_delay(u32::MAX, i, m), m);
    }

    #[test]
    fn counts_since_baseline() {
        let c = |i, o| Counts {
            bytes_in: i,
            bytes_out: o,
        };
        assert_eq!(c(150, 250).since(c(100, 200)), c(50, 50));
        assert_eq!(c(10, 250).since(c(100, 200)), c(10, 50), "reset counter");
        assert_eq!(c(0, 0).since(c(0, 0)), c(0, 0));
    }

    #[test]
    fn outcome_codes_and_phases() {
        assert_eq!(Outcome::Stopped.exit_code(), 0);
        let t = Outcome::CoreStopped {
            status: ServiceStatus::Terminating,
            reason: "r".into(),
        };
        assert_eq!((t.exit_code(), t.phase()), (3, Phase::Terminated));
        let s = Outcome::CoreStopped {
            status: ServiceStatus::Suspending,
            reason: "r".into(),
        };
        assert_eq!(s.phase(), Phase::Suspended);
        assert_eq!(Outcome::ServerHalted { reason: "h".into() }.exit_code(), 4);
    }
}
