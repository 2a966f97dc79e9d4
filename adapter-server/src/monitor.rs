//! `adapter-server monitor`: the accounting daemon on OpenVPN's management interface.
//!
//! Actor design: one task ([`Actor`]) owns all client state. The management reader, the
//! management writer, the ticker, the config-file watcher and every core call run as
//! separate tasks and talk to the actor through one event channel; core calls are spawned
//! so a slow core never blocks the management reader. Shaping (tc) runs in its own task
//! fed in order by the actor.
//!
//! Per client (key: the connectionId `"<username>|<ip>:<port>|<time_unix>"`):
//! `>CLIENT:ESTABLISHED` → StartSession (speed limits → shaping);
//! `>BYTECOUNT_CLI` → UpdateSession with the cumulative counts (coalesced: at most one in
//! flight per client); an answer suspending/suspended/terminating/terminated →
//! `client-kill CID HALT`; `>CLIENT:DISCONNECT` → StopSession with `bytes_received` /
//! `bytes_sent` of the event. When the core is unreachable the latest totals are kept and
//! replayed (with a capped exponential backoff); a client whose reports have kept failing
//! for the grace period is cut.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openvpn_mgmt::{
    self as mgmt, ClientEventKind, Command, Event as MEvent, ReadItem, StatusClient,
};
use service_api::{
    ApiError, AuthClientRequest, AuthClientResponse, Client as CoreClient, ClientKey, ErrorCode,
    Secret, SessionId, SpeedLimits, StartSessionRequest, StartSessionResponse, StopSessionRequest,
    StopSessionResponse, UpdateSessionRequest, UpdateSessionResponse,
};
use tc_shaper::{Shaper, ShapingConfig};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn, Instrument};

use crate::push_config;
use crate::script_env::{self, ClientIdentity, RawEnv};

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
        }
    }
}

/// Errors that stop the monitor (everything else is logged and retried).
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("watching config files: {0}")]
    Watch(#[source] notify::Error),
}

type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

enum Ev {
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
        event: MEvent,
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
        sent: (u64, u64),
        result: Result<UpdateSessionResponse, ApiError>,
    },
    Stopped {
        conn_id: String,
        result: Result<StopSessionResponse, ApiError>,
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
    Tick,
}

enum ShapeOp {
    Setup,
    Apply {
        key: u64,
        addr: Ipv4Addr,
        speed: SpeedLimits,
    },
    Remove {
        key: u64,
    },
    Teardown(oneshot::Sender<()>),
}

#[derive(Debug)]
struct Client {
    serial: u64,
    cid: u64,
    id: ClientIdentity,
    conn_id: String,
    session: Option<SessionId>,
    starting: bool,
    counts: (u64, u64),
    reported: (u64, u64),
    updating: bool,
    stopping: bool,
    /// Since when reports of this client have been failing (None = last one succeeded).
    failing_since: Option<Instant>,
    kill_wanted: bool,
    kill_sent_gen: Option<u64>,
    speed: Option<SpeedLimits>,
    shaped: bool,
    /// Disconnected: the final counts waiting for StopSession.
    gone: Option<(u64, u64)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pending {
    Password,
    Cmd(bool /* multi-line */),
}

fn max2(a: (u64, u64), b: (u64, u64)) -> (u64, u64) {
    (a.0.max(b.0), a.1.max(b.1))
}

/// Core calls in flight at once. A burst of 1,000 `>CLIENT:ESTABLISHED` (or of byte counts)
/// would otherwise open one HTTP connection per client, each with its buffers, in the monitor
/// and in the core.
const MAX_CORE_CALLS_IN_FLIGHT: usize = 32;

/// The core client with a bound on concurrent calls; everything else derefs to the client.
#[derive(Clone)]
struct BoundedCore {
    client: CoreClient,
    permits: Arc<tokio::sync::Semaphore>,
}

macro_rules! bounded_calls {
    ($($name:ident($req:ty) -> $resp:ty;)*) => {
        impl BoundedCore {
            $(async fn $name(&self, req: &$req) -> Result<$resp, ApiError> {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = self.permits.acquire().await;
                self.client.$name(req).await
            })*
        }
    };
}

bounded_calls! {
    start_session(StartSessionRequest) -> StartSessionResponse;
    update_session(UpdateSessionRequest) -> service_api::UpdateSessionResponse;
    stop_session(StopSessionRequest) -> StopSessionResponse;
    auth_client(AuthClientRequest) -> AuthClientResponse;
}

impl std::ops::Deref for BoundedCore {
    type Target = CoreClient;
    fn deref(&self) -> &CoreClient {
        &self.client
    }
}

struct Actor {
    cfg: MonitorConfig,
    core: BoundedCore,
    tx: mpsc::Sender<Ev>,
    cancel: CancellationToken,
    gen: u64,
    conn: Option<(mpsc::UnboundedSender<String>, CancellationToken)>,
    connecting: bool,
    backoff: Duration,
    pending: VecDeque<Pending>,
    clients: HashMap<String, Client>,
    by_cid: HashMap<u64, String>,
    recently_stopped: VecDeque<String>,
    next_serial: u64,
    shaper: Option<mpsc::UnboundedSender<ShapeOp>>,
    last_status_req: Option<Instant>,
    push_due: Option<Instant>,
    push_in_flight: bool,
    watched: HashSet<PathBuf>,
    watcher: Option<notify::RecommendedWatcher>,
    core_down: bool,
    /// While the core is down, retries wait until this instant (exponential backoff).
    core_retry_at: Instant,
    core_backoff: Duration,
    warned_client_auth: bool,
}

/// Runs the monitor until `cancel` fires.
pub async fn run(
    cfg: MonitorConfig,
    core: CoreClient,
    cancel: CancellationToken,
) -> Result<(), MonitorError> {
    let (tx, mut rx) = mpsc::channel::<Ev>(8192);
    let shaper = cfg.shaping.clone().map(|sc| {
        let (stx, srx) = mpsc::unbounded_channel();
        tokio::spawn(shaper_task(Shaper::new(sc), srx).in_current_span());
        stx
    });
    // Ticker.
    {
        let tx = tx.clone();
        let cancel = cancel.clone();
        let every = cfg.tick;
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
    let mut actor = Actor {
        backoff: cfg.reconnect_min,
        push_due: cfg.server_config.as_ref().map(|_| Instant::now()),
        cfg,
        core: BoundedCore {
            client: core,
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CORE_CALLS_IN_FLIGHT)),
        },
        tx,
        cancel: cancel.clone(),
        gen: 0,
        conn: None,
        connecting: false,
        pending: VecDeque::new(),
        clients: HashMap::new(),
        by_cid: HashMap::new(),
        recently_stopped: VecDeque::new(),
        next_serial: 1,
        shaper,
        last_status_req: None,
        push_in_flight: false,
        watched: HashSet::new(),
        watcher: None,
        core_down: false,
        core_retry_at: Instant::now(),
        core_backoff: Duration::ZERO,
        warned_client_auth: false,
    };
    info!(management = %actor.cfg.management, core = %actor.core.base_url(), "monitor starting");
    actor.spawn_connect(Duration::ZERO);
    actor.maybe_push();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            ev = rx.recv() => match ev {
                Some(ev) => actor.handle(ev),
                None => break,
            },
        }
    }
    actor.shutdown().await;
    Ok(())
}

async fn shaper_task(mut shaper: Shaper, mut rx: mpsc::UnboundedReceiver<ShapeOp>) {
    while let Some(op) = rx.recv().await {
        match op {
            ShapeOp::Setup => match shaper.setup().await {
                Ok(()) => info!("shaping set up"),
                Err(e) => error!("shaping setup failed (clients will not be limited): {e:#}"),
            },
            ShapeOp::Apply { key, addr, speed } => {
                if let Err(e) = shaper.apply(key, addr, &speed).await {
                    warn!(%addr, "shaping client failed: {e:#}");
                }
            }
            ShapeOp::Remove { key } => shaper.remove(key).await,
            ShapeOp::Teardown(done) => {
                shaper.teardown().await;
                let _ = done.send(());
            }
        }
    }
}

async fn connect(addr: &MgmtAddr) -> std::io::Result<(BoxRead, BoxWrite)> {
    match addr {
        MgmtAddr::Unix(p) => {
            let s = tokio::net::UnixStream::connect(p).await?;
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
        MgmtAddr::Tcp(a) => {
            let s = tokio::net::TcpStream::connect(a.as_str()).await?;
            s.set_nodelay(true)?;
            let (r, w) = s.into_split();
            Ok((Box::new(r), Box::new(w)))
        }
    }
}

async fn reader_task(rd: BoxRead, gen: u64, tx: mpsc::Sender<Ev>, cancel: CancellationToken) {
    let mut r = mgmt::LineReader::new(BufReader::new(rd));
    let mut asm = mgmt::Assembler::new();
    let reason = loop {
        let res = tokio::select! {
            _ = cancel.cancelled() => return,
            res = r.next() => res,
        };
        let event = match res {
            Err(e) => break format!("read error: {e}"),
            Ok(None) => break "closed by OpenVPN".to_string(),
            Ok(Some(ReadItem::Line(line))) => asm.feed(&line),
            Ok(Some(ReadItem::TooLong { len })) => Some(MEvent::Garbage(format!(
                "line of {len} bytes dropped (longer than {} bytes)",
                mgmt::MAX_LINE
            ))),
            Ok(Some(ReadItem::Unterminated { len })) => Some(MEvent::Garbage(format!(
                "unterminated last line of {len} bytes dropped"
            ))),
        };
        if let Some(event) = event {
            if tx.send(Ev::Mgmt { gen, event }).await.is_err() {
                return;
            }
        }
    };
    let _ = tx.send(Ev::Closed { gen, reason }).await;
}

async fn writer_task(
    mut wr: BoxWrite,
    mut rx: mpsc::UnboundedReceiver<String>,
    gen: u64,
    tx: mpsc::Sender<Ev>,
    cancel: CancellationToken,
) {
    loop {
        let line = tokio::select! {
            _ = cancel.cancelled() => return,
            l = rx.recv() => l,
        };
        let Some(mut line) = line else { return };
        line.push('\n');
        let res = wr.write_all(line.as_bytes()).await;
        let res = match res {
            Ok(()) => wr.flush().await,
            Err(e) => Err(e),
        };
        if let Err(e) = res {
            let _ = tx
                .send(Ev::Closed {
                    gen,
                    reason: format!("write error: {e}"),
                })
                .await;
            return;
        }
    }
}

fn is_transient(e: &ApiError) -> bool {
    e.is_transport() || matches!(e.code(), Some(ErrorCode::RateLimited))
}

impl Actor {
    fn spawn_connect(&mut self, delay: Duration) {
        if self.connecting || self.conn.is_some() {
            return;
        }
        self.connecting = true;
        self.gen += 1;
        let gen = self.gen;
        let addr = self.cfg.management.clone();
        let tx = self.tx.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(
            async move {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                let res = tokio::time::timeout(Duration::from_secs(5), connect(&addr)).await;
                let (rd, wr) = match res {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        let _ = tx
                            .send(Ev::ConnectFailed {
                                gen,
                                error: e.to_string(),
                            })
                            .await;
                        return;
                    }
                    Err(_) => {
                        let _ = tx
                            .send(Ev::ConnectFailed {
                                gen,
                                error: "connect timed out".into(),
                            })
                            .await;
                        return;
                    }
                };
                let conn_cancel = cancel.child_token();
                let (ltx, lrx) = mpsc::unbounded_channel();
                tokio::spawn(
                    reader_task(rd, gen, tx.clone(), conn_cancel.clone()).in_current_span(),
                );
                tokio::spawn(
                    writer_task(wr, lrx, gen, tx.clone(), conn_cancel.clone()).in_current_span(),
                );
                let _ = tx
                    .send(Ev::Connected {
                        gen,
                        lines: ltx,
                        conn_cancel,
                    })
                    .await;
            }
            .in_current_span(),
        );
    }

    fn send_cmd(&mut self, cmd: Command) -> bool {
        let Some((lines, _)) = &self.conn else {
            return false;
        };
        let line = cmd.render();
        debug!(cmd = %line, "management command");
        if lines.send(line).is_err() {
            return false;
        }
        self.pending.push_back(Pending::Cmd(cmd.multi_line()));
        true
    }

    fn request_status(&mut self) {
        if self.send_cmd(Command::Status(3)) {
            self.last_status_req = Some(Instant::now());
        }
    }

    fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Connected {
                gen,
                lines,
                conn_cancel,
            } => {
                if gen != self.gen {
                    conn_cancel.cancel();
                    return;
                }
                self.connecting = false;
                self.backoff = self.cfg.reconnect_min;
                self.pending.clear();
                if let Some(pw) = &self.cfg.password {
                    let _ = lines.send(pw.expose().to_string());
                    self.pending.push_back(Pending::Password);
                }
                self.conn = Some((lines, conn_cancel));
                info!(management = %self.cfg.management, "connected to OpenVPN management");
                if let Some(s) = &self.shaper {
                    let _ = s.send(ShapeOp::Setup);
                    // Mark everything unshaped; the status answer / session answers re-apply.
                    for c in self.clients.values_mut() {
                        c.shaped = false;
                    }
                }
                self.send_cmd(Command::ByteCount(self.cfg.bytecount_interval.max(1)));
                self.request_status();
            }
            Ev::ConnectFailed { gen, error } => {
                if gen != self.gen {
                    return;
                }
                self.connecting = false;
                warn!(management = %self.cfg.management, retry_in = ?self.backoff, "cannot connect to OpenVPN management: {error}");
                self.schedule_reconnect();
            }
            Ev::Closed { gen, reason } => {
                if gen != self.gen || self.conn.is_none() {
                    return;
                }
                if let Some((_, c)) = self.conn.take() {
                    c.cancel();
                }
                self.pending.clear();
                warn!(management = %self.cfg.management, "management connection lost: {reason}");
                self.schedule_reconnect();
            }
            Ev::Mgmt { gen, event } => {
                if gen == self.gen && self.conn.is_some() {
                    self.on_mgmt(event);
                }
            }
            Ev::Started { conn_id, result } => self.on_started(conn_id, result),
            Ev::Updated {
                conn_id,
                sent,
                result,
            } => self.on_updated(conn_id, sent, result),
            Ev::Stopped { conn_id, result } => self.on_stopped(conn_id, result),
            Ev::AuthDone {
                gen,
                cid,
                kid,
                user,
                result,
            } => self.on_auth_done(gen, cid, kid, user, result),
            Ev::Pushed { result, transient } => self.on_pushed(result, transient),
            Ev::ConfigChanged => {
                self.push_due = Some(Instant::now() + Duration::from_millis(300));
            }
            Ev::Tick => self.on_tick(),
        }
    }

    fn schedule_reconnect(&mut self) {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.reconnect_max);
        self.spawn_connect(delay);
    }

    fn on_mgmt(&mut self, event: MEvent) {
        match event {
            MEvent::Client {
                kind,
                cid,
                kid,
                env,
            } => {
                let raw = RawEnv::from_strs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                match kind {
                    ClientEventKind::Established => self.on_established(cid, &raw),
                    ClientEventKind::Disconnect => self.on_disconnect(cid, &raw),
                    ClientEventKind::Connect | ClientEventKind::Reauth => {
                        self.on_client_auth(cid, kid.unwrap_or(0), &raw)
                    }
                    ClientEventKind::CrResponse => {
                        if self.cfg.client_auth {
                            self.send_cmd(Command::ClientDeny {
                                cid,
                                kid: kid.unwrap_or(0),
                                reason: "challenge/response not supported".into(),
                                client_reason: None,
                            });
                        }
                    }
                }
            }
            MEvent::ByteCountCli {
                cid,
                bytes_in,
                bytes_out,
            } => self.on_bytecount(cid, (bytes_in, bytes_out)),
            MEvent::ClientAddress { cid, addr, primary } => {
                if let (true, Ok(a)) = (primary, addr.parse::<Ipv4Addr>()) {
                    if let Some(c) = self.by_cid.get(&cid).and_then(|k| self.clients.get_mut(k)) {
                        if c.id.vpn_addr.is_none() {
                            c.id.vpn_addr = Some(a);
                        }
                    }
                }
            }
            MEvent::Hold(text) => {
                if self.cfg.release_hold {
                    info!("OpenVPN holds ({text}); releasing");
                    self.send_cmd(Command::HoldRelease);
                } else {
                    warn!("OpenVPN holds ({text}); start the monitor with --release-hold to release it");
                }
            }
            MEvent::Info(t) => debug!("management: {t}"),
            MEvent::Fatal(t) => error!("OpenVPN fatal: {t}"),
            MEvent::Notification { kind, text } => debug!(%kind, "management: {text}"),
            MEvent::Reply { ok, text } => {
                match self.pending.front() {
                    Some(Pending::Password) | Some(Pending::Cmd(_)) => {
                        self.pending.pop_front();
                    }
                    None => {}
                }
                if !ok {
                    warn!("management command failed: {text}");
                }
            }
            MEvent::Block(lines) => {
                while let Some(p) = self.pending.pop_front() {
                    if p == Pending::Cmd(true) {
                        break;
                    }
                }
                match mgmt::parse_status(&lines) {
                    Ok(rows) => self.reconcile(rows),
                    Err(e) => warn!("unusable status answer: {e}"),
                }
            }
            MEvent::Garbage(g) => warn!("ignoring management line: {g}"),
        }
    }

    fn new_client(&mut self, cid: u64, id: ClientIdentity, counts: (u64, u64)) -> String {
        let conn_id = id.connection_id();
        let serial = self.next_serial;
        self.next_serial += 1;
        self.clients.insert(
            conn_id.clone(),
            Client {
                serial,
                cid,
                id,
                conn_id: conn_id.clone(),
                session: None,
                starting: false,
                counts,
                reported: (0, 0),
                updating: false,
                stopping: false,
                failing_since: None,
                kill_wanted: false,
                kill_sent_gen: None,
                speed: None,
                shaped: false,
                gone: None,
            },
        );
        self.by_cid.insert(cid, conn_id.clone());
        conn_id
    }

    fn on_established(&mut self, cid: u64, env: &RawEnv) {
        let id = match ClientIdentity::from_env(env) {
            Ok(id) => id,
            Err(e) => {
                warn!(cid, "client without a usable identity, cutting it: {e}");
                self.send_cmd(Command::ClientKill { cid });
                return;
            }
        };
        let conn_id = id.connection_id();
        if let Some(c) = self.clients.get_mut(&conn_id) {
            c.cid = cid;
            self.by_cid.insert(cid, conn_id);
            return;
        }
        info!(cid, connection = %conn_id, vpn_addr = ?id.vpn_addr, "client established");
        let k = self.new_client(cid, id, (0, 0));
        self.start_session(&k);
    }

    fn start_session(&mut self, conn_id: &str) {
        let Some(c) = self.clients.get_mut(conn_id) else {
            return;
        };
        if c.starting || c.session.is_some() {
            return;
        }
        c.starting = true;
        let req = StartSessionRequest {
            client_key: c.id.username.clone(),
            connection_id: Some(c.conn_id.clone()),
            client_addr: Some(c.id.client_addr.clone()),
            vpn_addr: c.id.vpn_addr.map(|a| a.to_string()),
        };
        let core = self.core.clone();
        let tx = self.tx.clone();
        let conn_id = conn_id.to_string();
        tokio::spawn(
            async move {
                let result = core.start_session(&req).await;
                let _ = tx.send(Ev::Started { conn_id, result }).await;
            }
            .in_current_span(),
        );
    }

    fn core_ok(&mut self) {
        if self.core_down {
            info!("core reachable again");
            self.core_down = false;
        }
        self.core_backoff = Duration::ZERO;
    }

    fn core_failed(&mut self, call: &str, e: &ApiError) {
        if !self.core_down {
            warn!("core unreachable ({call}): {e}; buffering usage");
            self.core_down = true;
        } else if Instant::now() < self.core_retry_at {
            return; // another failure of the same round
        }
        self.core_backoff = (self.core_backoff * 2)
            .max(self.cfg.reconnect_min)
            .min(self.cfg.reconnect_max);
        self.core_retry_at = Instant::now() + self.core_backoff;
    }

    /// False while the core is down and its backoff has not expired: no call is made then
    /// (totals are kept and sent later), so a recovering core is not hit by a storm.
    fn core_callable(&self) -> bool {
        !self.core_down || Instant::now() >= self.core_retry_at
    }

    fn on_started(&mut self, conn_id: String, result: Result<StartSessionResponse, ApiError>) {
        let Some(c) = self.clients.get_mut(&conn_id) else {
            return;
        };
        c.starting = false;
        match result {
            Ok(r) => {
                c.session = Some(r.session_id.clone());
                c.failing_since = None;
                c.reported = max2(c.reported, (r.bytes_in, r.bytes_out));
                c.speed = Some(r.speed);
                info!(connection = %conn_id, session = %r.session_id, status = %r.status, "session started");
                let must_kill = r.status.must_disconnect();
                self.core_ok();
                if self.clients.get(&conn_id).is_some_and(|c| c.gone.is_some()) {
                    self.stop_session(&conn_id);
                    return;
                }
                if must_kill {
                    self.kill(&conn_id, "channel not in service");
                    return;
                }
                self.apply_shaping(&conn_id);
                self.maybe_update(&conn_id);
            }
            Err(e) if is_transient(&e) => {
                c.failing_since.get_or_insert_with(Instant::now);
                self.core_failed("StartSession", &e)
            }
            Err(e) => {
                let gone = c.gone.is_some();
                error!(connection = %conn_id, "StartSession refused: {e}");
                if gone {
                    self.forget(&conn_id);
                } else {
                    self.kill(&conn_id, "StartSession refused");
                }
            }
        }
    }

    fn apply_shaping(&mut self, conn_id: &str) {
        let Some(shaper) = &self.shaper else { return };
        let Some(c) = self.clients.get_mut(conn_id) else {
            return;
        };
        if c.shaped || c.gone.is_some() {
            return;
        }
        if let (Some(addr), Some(speed)) = (c.id.vpn_addr, c.speed) {
            if !speed.is_unlimited() {
                let _ = shaper.send(ShapeOp::Apply {
                    key: c.serial,
                    addr,
                    speed,
                });
                c.shaped = true;
            }
        }
    }

    fn unshape(&mut self, conn_id: &str) {
        let Some(shaper) = &self.shaper else { return };
        if let Some(c) = self.clients.get_mut(conn_id) {
            if c.shaped {
                let _ = shaper.send(ShapeOp::Remove { key: c.serial });
                c.shaped = false;
            }
        }
    }

    fn maybe_update(&mut self, conn_id: &str) {
        let Some(c) = self.clients.get_mut(conn_id) else {
            return;
        };
        let Some(session) = c.session.clone() else {
            return;
        };
        if c.updating || c.gone.is_some() {
            return;
        }
        if self.core_down && Instant::now() < self.core_retry_at {
            return;
        }
        c.updating = true;
        let sent = c.counts;
        let core = self.core.clone();
        let tx = self.tx.clone();
        let conn_id = conn_id.to_string();
        tokio::spawn(
            async move {
                let result = core
                    .update_session(&UpdateSessionRequest {
                        session_id: session,
                        bytes_in: sent.0,
                        bytes_out: sent.1,
                    })
                    .await;
                let _ = tx
                    .send(Ev::Updated {
                        conn_id,
                        sent,
                        result,
                    })
                    .await;
            }
            .in_current_span(),
        );
    }

    fn on_updated(
        &mut self,
        conn_id: String,
        sent: (u64, u64),
        result: Result<UpdateSessionResponse, ApiError>,
    ) {
        let Some(c) = self.clients.get_mut(&conn_id) else {
            return;
        };
        c.updating = false;
        match result {
            Ok(r) => {
                c.reported = max2(c.reported, sent);
                c.failing_since = None;
                let again = c.counts != sent && c.gone.is_none();
                let gone = c.gone.is_some();
                debug!(connection = %conn_id, bytes_in = sent.0, bytes_out = sent.1, status = %r.status, units = r.units_used, "usage reported");
                self.core_ok();
                if gone {
                    self.stop_session(&conn_id);
                } else if r.status.must_disconnect() {
                    info!(connection = %conn_id, status = %r.status, "core says stop service");
                    self.kill(&conn_id, "channel suspended or terminated");
                } else if again {
                    self.maybe_update(&conn_id);
                }
            }
            Err(e) if is_transient(&e) => {
                let gone = c.gone.is_some();
                c.failing_since.get_or_insert_with(Instant::now);
                self.core_failed("UpdateSession", &e);
                if gone {
                    self.stop_session(&conn_id);
                }
            }
            Err(e) => {
                let gone = c.gone.is_some();
                match e.code() {
                    Some(
                        ErrorCode::ChannelInactive
                        | ErrorCode::NotFound
                        | ErrorCode::Forbidden
                        | ErrorCode::AuthFailed,
                    ) => {
                        warn!(connection = %conn_id, "UpdateSession refused: {e}");
                        if !gone {
                            self.kill(&conn_id, "session refused by core");
                        }
                    }
                    _ => warn!(connection = %conn_id, "UpdateSession failed: {e}"),
                }
                if gone {
                    self.stop_session(&conn_id);
                }
            }
        }
    }

    fn kill(&mut self, conn_id: &str, why: &str) {
        let gen = self.gen;
        let connected = self.conn.is_some();
        let Some(c) = self.clients.get_mut(conn_id) else {
            return;
        };
        c.kill_wanted = true;
        if c.gone.is_some() || c.kill_sent_gen == Some(gen) || !connected {
            return;
        }
        let cid = c.cid;
        c.kill_sent_gen = Some(gen);
        warn!(cid, connection = %conn_id, "killing client: {why}");
        self.send_cmd(Command::ClientKill { cid });
    }

    fn on_bytecount(&mut self, cid: u64, counts: (u64, u64)) {
        let Some(conn_id) = self.by_cid.get(&cid).cloned() else {
            let stale = self
                .last_status_req
                .is_none_or(|t| t.elapsed() > Duration::from_secs(5));
            if stale {
                debug!(
                    cid,
                    "bytecount for an unknown client; refreshing the client list"
                );
                self.request_status();
            }
            return;
        };
        if let Some(c) = self.clients.get_mut(&conn_id) {
            c.counts = max2(c.counts, counts);
        }
        self.maybe_update(&conn_id);
    }

    fn on_disconnect(&mut self, cid: u64, env: &RawEnv) {
        let conn_id = match self.by_cid.remove(&cid) {
            Some(k) => k,
            None => {
                // Missed the ESTABLISHED (monitor started in between): account it anyway.
                let Ok(id) = ClientIdentity::from_env(env) else {
                    debug!(cid, "disconnect of an unknown client without identity");
                    return;
                };
                let k = id.connection_id();
                if self.recently_stopped.contains(&k) {
                    return;
                }
                if !self.clients.contains_key(&k) {
                    self.new_client(cid, id, (0, 0));
                    self.by_cid.remove(&cid);
                }
                k
            }
        };
        let final_counts = script_env::final_counts(env);
        let Some(c) = self.clients.get_mut(&conn_id) else {
            return;
        };
        let fin = match final_counts {
            Ok(f) => max2(f, c.reported),
            Err(e) => {
                warn!(connection = %conn_id, "disconnect without final counters ({e}); using the last bytecount");
                c.counts
            }
        };
        c.counts = max2(c.counts, fin);
        c.gone = Some(fin);
        info!(cid, connection = %conn_id, bytes_in = fin.0, bytes_out = fin.1, "client disconnected");
        self.unshape(&conn_id);
        self.finish_gone(&conn_id);
    }

    /// Drives a disconnected client towards StopSession.
    fn finish_gone(&mut self, conn_id: &str) {
        let Some(c) = self.clients.get(conn_id) else {
            return;
        };
        if c.session.is_some() {
            if !c.updating {
                self.stop_session(conn_id);
            }
        } else if !c.starting {
            self.start_session(conn_id);
        }
    }

    fn stop_session(&mut self, conn_id: &str) {
        let Some(c) = self.clients.get_mut(conn_id) else {
            return;
        };
        let (Some(session), Some(fin)) = (c.session.clone(), c.gone) else {
            return;
        };
        if c.stopping {
            return;
        }
        c.stopping = true;
        let core = self.core.clone();
        let tx = self.tx.clone();
        let conn_id = conn_id.to_string();
        tokio::spawn(
            async move {
                let result = core
                    .stop_session(&StopSessionRequest {
                        session_id: session,
                        bytes_in: fin.0,
                        bytes_out: fin.1,
                    })
                    .await;
                let _ = tx.send(Ev::Stopped { conn_id, result }).await;
            }
            .in_current_span(),
        );
    }

    fn on_stopped(&mut self, conn_id: String, result: Result<StopSessionResponse, ApiError>) {
        let Some(c) = self.clients.get_mut(&conn_id) else {
            return;
        };
        c.stopping = false;
        match result {
            Ok(r) => {
                info!(connection = %conn_id, session = %r.session_id, bytes_in = r.bytes_in, bytes_out = r.bytes_out, status = %r.status, "session stopped");
                self.core_ok();
                self.forget(&conn_id);
            }
            Err(e) if is_transient(&e) => self.core_failed("StopSession", &e),
            Err(e) => {
                warn!(connection = %conn_id, "StopSession refused: {e}");
                self.forget(&conn_id);
            }
        }
    }

    fn forget(&mut self, conn_id: &str) {
        self.unshape(conn_id);
        if let Some(c) = self.clients.remove(conn_id) {
            if self.by_cid.get(&c.cid).map(String::as_str) == Some(conn_id) {
                self.by_cid.remove(&c.cid);
            }
            self.recently_stopped.push_back(c.conn_id);
            while self.recently_stopped.len() > 4096 {
                self.recently_stopped.pop_front();
            }
        }
    }

    fn reconcile(&mut self, rows: Vec<StatusClient>) {
        let mut listed = HashSet::new();
        for row in rows {
            let (Some(user), Some(vpn)) = (row.username.as_deref(), row.virtual_address) else {
                continue; // still authenticating, or no username to bill
            };
            let Ok(username) = script_env::validate_username("username", user) else {
                continue;
            };
            let conn_id =
                script_env::connection_id(&username, &row.real_address, row.connected_since);
            listed.insert(conn_id.clone());
            let counts = (row.bytes_received, row.bytes_sent);
            if let Some(c) = self.clients.get_mut(&conn_id) {
                if c.gone.is_some() {
                    continue;
                }
                c.cid = row.cid;
                c.counts = max2(c.counts, counts);
                self.by_cid.insert(row.cid, conn_id.clone());
                self.apply_shaping(&conn_id);
                continue;
            }
            if self.recently_stopped.contains(&conn_id) {
                continue;
            }
            info!(cid = row.cid, connection = %conn_id, "learned connected client from status");
            let id = ClientIdentity {
                username,
                client_addr: row.real_address.clone(),
                time_unix: row.connected_since,
                vpn_addr: Some(vpn),
            };
            let k = self.new_client(row.cid, id, counts);
            self.start_session(&k);
        }
        // Clients we knew that OpenVPN no longer lists went away while we were not looking.
        let vanished: Vec<String> = self
            .clients
            .values()
            .filter(|c| c.gone.is_none() && !listed.contains(&c.conn_id))
            .map(|c| c.conn_id.clone())
            .collect();
        for k in vanished {
            if let Some(c) = self.clients.get_mut(&k) {
                info!(connection = %k, "client no longer connected; stopping its session with the last counts");
                c.gone = Some(c.counts);
                let cid = c.cid;
                if self.by_cid.get(&cid) == Some(&k) {
                    self.by_cid.remove(&cid);
                }
            }
            self.unshape(&k);
            self.finish_gone(&k);
        }
    }

    fn on_client_auth(&mut self, cid: u64, kid: u64, env: &RawEnv) {
        if !self.cfg.client_auth {
            if !self.warned_client_auth {
                warn!("OpenVPN asks the management interface to authenticate clients (--management-client-auth) but the monitor runs without --client-auth; logins will hang");
                self.warned_client_auth = true;
            }
            return;
        }
        let creds = script_env::credentials_from_env(env);
        let addr = script_env::peer_addr(env)
            .ok()
            .flatten()
            .map(|(ip, port)| script_env::format_addr(ip, port));
        let (user, password) = match creds {
            Ok(c) => c,
            Err(e) => {
                warn!(cid, "auth deny: {e}");
                self.send_cmd(Command::ClientDeny {
                    cid,
                    kid,
                    reason: format!("bad credentials: {e}"),
                    client_reason: Some("authentication failed".into()),
                });
                return;
            }
        };
        let core = self.core.clone();
        let tx = self.tx.clone();
        let gen = self.gen;
        tokio::spawn(
            async move {
                let result = core
                    .auth_client(&AuthClientRequest {
                        client_key: user.clone(),
                        password,
                        client_addr: addr,
                    })
                    .await;
                let _ = tx
                    .send(Ev::AuthDone {
                        gen,
                        cid,
                        kid,
                        user,
                        result,
                    })
                    .await;
            }
            .in_current_span(),
        );
    }

    fn on_auth_done(
        &mut self,
        gen: u64,
        cid: u64,
        kid: u64,
        user: ClientKey,
        result: Result<AuthClientResponse, ApiError>,
    ) {
        if gen != self.gen {
            return; // a new management connection: OpenVPN will ask again if still waiting
        }
        match crate::hook::decide(result) {
            crate::hook::Decision::Accept { channel_id, status } => {
                info!(cid, user = %user, channel = %channel_id, %status, "auth accept");
                self.send_cmd(Command::ClientAuthNt { cid, kid });
            }
            crate::hook::Decision::Deny {
                log_reason,
                client_reason,
            } => {
                warn!(cid, user = %user, reason = %log_reason, "auth deny");
                self.send_cmd(Command::ClientDeny {
                    cid,
                    kid,
                    reason: log_reason,
                    client_reason: Some(client_reason),
                });
            }
        }
    }

    fn maybe_push(&mut self) {
        let Some(path) = self.cfg.server_config.clone() else {
            return;
        };
        match self.push_due {
            Some(t) if t <= Instant::now() && !self.push_in_flight => {}
            _ => return,
        }
        self.push_due = None;
        self.push_in_flight = true;
        let endpoint = self.cfg.endpoint.clone();
        let core = self.core.clone();
        let tx = self.tx.clone();
        tokio::spawn(
            async move {
                let loaded = tokio::task::spawn_blocking(move || {
                    push_config::load(&path, endpoint.as_deref())
                })
                .await;
                let (result, transient) = match loaded {
                    Err(e) => (Err(format!("config loader panicked: {e}")), false),
                    Ok(Err(e)) => (Err(format!("{e:#}")), false),
                    Ok(Ok(l)) => match push_config::push(&core, l.config).await {
                        Ok(r) => (Ok((r.changed, l.files)), false),
                        Err(push_config::PushConfigError::Core(e)) => {
                            let t = is_transient(&e);
                            (Err(format!("SetProductConfig: {e}")), t)
                        }
                        Err(e) => (Err(format!("{e:#}")), false),
                    },
                };
                let _ = tx.send(Ev::Pushed { result, transient }).await;
            }
            .in_current_span(),
        );
    }

    fn on_pushed(&mut self, result: Result<(bool, Vec<PathBuf>), String>, transient: bool) {
        self.push_in_flight = false;
        match result {
            Ok((changed, files)) => {
                info!(changed, "product config pushed");
                self.watch(files);
            }
            Err(e) => {
                error!("pushing the product config failed: {e}");
                if transient {
                    self.push_due = Some(Instant::now() + Duration::from_secs(10));
                }
            }
        }
    }

    fn watch(&mut self, files: Vec<PathBuf>) {
        use notify::Watcher;
        // Absolute, symlink-free paths: notify reports events under the watched directory.
        let want: HashSet<PathBuf> = files
            .into_iter()
            .map(|p| std::fs::canonicalize(&p).unwrap_or(p))
            .collect();
        if want == self.watched && self.watcher.is_some() {
            return;
        }
        let targets = Arc::new(want.clone());
        let tx = self.tx.clone();
        let t2 = targets.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if let Ok(ev) = res {
                let relevant = matches!(
                    ev.kind,
                    notify::EventKind::Create(_)
                        | notify::EventKind::Modify(_)
                        | notify::EventKind::Remove(_)
                ) && ev.paths.iter().any(|p| t2.contains(p));
                if relevant {
                    let _ = tx.try_send(Ev::ConfigChanged);
                }
            }
        });
        let mut watcher = match watcher {
            Ok(w) => w,
            Err(e) => {
                error!("{}", MonitorError::Watch(e));
                return;
            }
        };
        // Watch the directories: editors and `mv` replace files.
        let dirs: HashSet<PathBuf> = targets
            .iter()
            .filter_map(|p| {
                p.parent().map(|d| {
                    if d.as_os_str().is_empty() {
                        PathBuf::from(".")
                    } else {
                        d.to_path_buf()
                    }
                })
            })
            .collect();
        for d in dirs {
            if let Err(e) = watcher.watch(&d, notify::RecursiveMode::NonRecursive) {
                warn!(dir = %d.display(), "cannot watch: {e}");
            }
        }
        self.watcher = Some(watcher);
        self.watched = want;
    }

    fn on_tick(&mut self) {
        if self.conn.is_none() && !self.connecting {
            self.spawn_connect(Duration::ZERO);
        }
        // OpenVPN sends `>CLIENT:DISCONNECT` only for clients it authenticated through the
        // management interface (`--management-client-auth`); with the auth hook the only way
        // to notice that a client left is the client list. Poll it at the bytecount interval.
        let status_due = self.last_status_req.is_none_or(|t| {
            t.elapsed() >= Duration::from_secs(u64::from(self.cfg.bytecount_interval.max(1)))
        });
        if self.conn.is_some() && !self.clients.is_empty() && status_due {
            self.request_status();
        }
        let now = Instant::now();
        let gen = self.gen;
        let connected = self.conn.is_some();
        let callable = self.core_callable();
        let keys: Vec<String> = self.clients.keys().cloned().collect();
        for k in keys {
            let Some(c) = self.clients.get(&k) else {
                continue;
            };
            if c.gone.is_some() {
                if callable && !c.stopping && !c.starting && !c.updating {
                    self.finish_gone(&k);
                }
                continue;
            }
            if callable && c.session.is_none() && !c.starting {
                self.start_session(&k);
            } else if callable && c.session.is_some() && !c.updating && c.counts != c.reported {
                self.maybe_update(&k);
            }
            let Some(c) = self.clients.get(&k) else {
                continue;
            };
            let overdue = c
                .failing_since
                .is_some_and(|t| now.duration_since(t) > self.cfg.grace);
            if connected && (c.kill_wanted || overdue) && c.kill_sent_gen != Some(gen) {
                let why = if c.kill_wanted {
                    "kill pending"
                } else {
                    "no successful report to the core within the grace period"
                };
                self.kill(&k, why);
            }
        }
        self.maybe_push();
    }

    async fn shutdown(&mut self) {
        info!("monitor stopping");
        // Give pending StopSessions a short chance: final counts are what billing needs.
        let stops: Vec<_> = self
            .clients
            .values()
            .filter_map(|c| match (&c.session, c.gone) {
                (Some(s), Some(f)) => Some((s.clone(), f)),
                _ => None,
            })
            .collect();
        if !stops.is_empty() {
            let core = self.core.clone();
            let all = async move {
                for (s, f) in stops {
                    let _ = core
                        .stop_session(&StopSessionRequest {
                            session_id: s,
                            bytes_in: f.0,
                            bytes_out: f.1,
                        })
                        .await;
                }
            };
            let _ = tokio::time::timeout(Duration::from_secs(3), all).await;
        }
        if let Some((_, c)) = self.conn.take() {
            c.cancel();
        }
        if let Some(s) = self.shaper.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if s.send(ShapeOp::Teardown(done_tx)).is_ok() {
                let _ = tokio::time::timeout(Duration::from_secs(10), done_rx).await;
            }
        }
    }
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
