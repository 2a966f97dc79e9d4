//! The actor: owns the client table and the management connection, turns each [`Ev`] into
//! transitions of the table (pure) and carries out the [`Todo`](super::table::Todo)s they return (`execute.rs`):
//! spawned core calls, management commands, shaping.

mod execute;

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use adapter_server_hook::wire::Kind;
use openvpn_mgmt::{self as mgmt, ClientEventKind, Command, Event as MgmtEvent};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::client::{Closing, Ctx, Phase};
use super::client_auth;
use super::config_push::ConfigPush;
use super::core_calls::{BoundedCore, CoreHealth, Report};
use super::event::Ev;
use super::fence::FenceHandle;
use super::handoff::{HandoffEvent, PendingLogins};
use super::metrics::MonitorMetrics;
use super::mgmt_conn::{self, Pending, Replies};
use super::shaping::ShapingHandle;
use super::table::ClientTable;
use super::MonitorConfig;
use crate::script_env::{self, ClientIdentity, RawEnv};

/// How long shutdown gives the pending StopSessions.
const SHUTDOWN_STOPS: Duration = Duration::from_secs(3);
/// A byte count of an unknown client asks for the client list at most this often.
const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// The state of the monitor, owned by one task.
pub struct Actor {
    cfg: MonitorConfig,
    core: BoundedCore,
    tx: mpsc::Sender<Ev>,
    cancel: CancellationToken,
    /// Generation of the management connection (one per connect attempt).
    gen: u64,
    conn: Option<(mpsc::UnboundedSender<String>, CancellationToken)>,
    connecting: bool,
    backoff: Duration,
    replies: Replies,
    table: ClientTable,
    shaper: Option<ShapingHandle>,
    fence: Option<FenceHandle>,
    /// Usage reports waiting for the tick's UpdateSessions call.
    reports: Vec<Report>,
    last_status_req: Option<Instant>,
    push: ConfigPush,
    health: CoreHealth,
    warned_client_auth: bool,
    /// Handed-off logins waiting for the core.
    logins: PendingLogins,
    metrics: MonitorMetrics,
}

impl Actor {
    pub fn new(
        cfg: MonitorConfig,
        core: BoundedCore,
        tx: mpsc::Sender<Ev>,
        cancel: CancellationToken,
        metrics: MonitorMetrics,
    ) -> Self {
        let now = Instant::now();
        Self {
            backoff: cfg.reconnect_min,
            push: ConfigPush::new(cfg.server_config.clone(), cfg.endpoint.clone(), now),
            health: CoreHealth::new(cfg.reconnect_min, cfg.reconnect_max, now),
            shaper: cfg
                .shaping
                .clone()
                .map(|s| ShapingHandle::spawn(s, metrics.clone())),
            fence: cfg.fence.clone().map(FenceHandle::spawn),
            reports: Vec::new(),
            cfg,
            core,
            tx,
            cancel,
            gen: 0,
            conn: None,
            connecting: false,
            replies: Replies::default(),
            table: ClientTable::default(),
            last_status_req: None,
            warned_client_auth: false,
            logins: PendingLogins::default(),
            metrics,
        }
    }

    /// Connects to the management interface and starts the first config push.
    pub fn start(&mut self) {
        info!(management = %self.cfg.management, core = %self.core.base_url(), "monitor starting");
        self.spawn_connect(Duration::ZERO);
        self.push.maybe_push(&self.core, &self.tx, Instant::now());
        if let Some(f) = &self.fence {
            f.setup();
        }
    }

    fn ctx(&self) -> Ctx {
        let now = Instant::now();
        Ctx {
            now,
            gen: self.gen,
            mgmt_up: self.conn.is_some(),
            core_callable: self.health.callable(now),
            grace: self.cfg.grace,
            shaping: self.shaper.is_some(),
        }
    }

    fn spawn_connect(&mut self, delay: Duration) {
        if self.connecting || self.conn.is_some() {
            return;
        }
        self.connecting = true;
        self.gen += 1;
        let (addr, tx, cancel) = (
            self.cfg.management.clone(),
            self.tx.clone(),
            self.cancel.clone(),
        );
        mgmt_conn::spawn_connect(addr, self.gen, delay, tx, cancel);
    }

    fn schedule_reconnect(&mut self) {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(self.cfg.reconnect_max);
        self.spawn_connect(delay);
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
        if matches!(cmd, Command::ClientKill { .. }) {
            self.metrics.killed();
        }
        self.replies.sent(Pending::Cmd(cmd.multi_line()));
        true
    }

    fn request_status(&mut self) {
        if self.send_cmd(Command::Status(3)) {
            self.last_status_req = Some(Instant::now());
        }
    }

    /// Handles one event.
    pub fn handle(&mut self, ev: Ev) {
        match ev {
            Ev::Connected {
                gen,
                lines,
                conn_cancel,
            } => self.on_connected(gen, lines, conn_cancel),
            Ev::ConnectFailed { gen, error } => {
                if gen != self.gen {
                    return;
                }
                self.metrics.management_connect_failed();
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
                self.replies.clear();
                self.metrics.management_down();
                warn!(management = %self.cfg.management, "management connection lost: {reason}");
                self.schedule_reconnect();
            }
            Ev::Mgmt { gen, event } => {
                if gen == self.gen && self.conn.is_some() {
                    self.on_mgmt(event);
                }
            }
            Ev::Started { conn_id, result } => {
                self.metrics.call_done("StartSession", &result);
                self.health.observe("StartSession", &result, Instant::now());
                let ctx = self.ctx();
                let quota = result
                    .as_ref()
                    .ok()
                    .map(|r| (r.bytes_in.saturating_add(r.bytes_out), r.remaining_bytes));
                let todos = self.table.with(&conn_id, |c| c.on_started(result, &ctx));
                self.run(todos);
                if let Some((recorded, left)) = quota {
                    self.set_quota(&conn_id, recorded, left);
                }
            }
            Ev::Updated {
                conn_id,
                sent,
                result,
            } => {
                self.metrics.call_done("UpdateSession", &result);
                self.health
                    .observe("UpdateSession", &result, Instant::now());
                let ctx = self.ctx();
                let quota = result
                    .as_ref()
                    .ok()
                    .map(|r| (r.bytes_in.saturating_add(r.bytes_out), r.remaining_bytes));
                let todos = self
                    .table
                    .with(&conn_id, |c| c.on_updated(sent, result, &ctx));
                self.run(todos);
                if let Some((recorded, left)) = quota {
                    self.set_quota(&conn_id, recorded, left);
                }
            }
            Ev::Stopped { conn_id, result } => {
                self.metrics.call_done("StopSession", &result);
                self.health.observe("StopSession", &result, Instant::now());
                let todos = self.table.with(&conn_id, |c| c.on_stopped(result));
                self.run(todos);
            }
            Ev::Found { conn_id, result } => {
                self.health.observe("FindSession", &result, Instant::now());
                let todos = self.table.with(&conn_id, |c| c.on_found(result));
                self.run(todos);
            }
            Ev::Handoff(h) => self.on_handoff(h),
            Ev::HandoffAuthDone { id, result } => self.logins.done(id, result),
            Ev::AuthDone {
                gen,
                cid,
                kid,
                user,
                result,
            } => {
                self.metrics.call_answered("AuthClient", &result);
                // A new management connection: OpenVPN asks again if still waiting.
                if gen == self.gen {
                    self.send_cmd(client_auth::answer(cid, kid, &user, result));
                }
            }
            Ev::Pushed { result, transient } => {
                self.metrics.pushed(result.is_ok());
                self.push
                    .on_pushed(result, transient, &self.tx, Instant::now())
            }
            Ev::ConfigChanged => self.push.changed(Instant::now()),
            Ev::Blocked {
                gen,
                conn_id,
                cid,
                why,
                ok,
            } => {
                // A newer management connection has other client ids: the kill is sent
                // again there (the client's kill stays wanted).
                if gen != self.gen || self.table.get(&conn_id).is_none_or(|c| c.is_gone()) {
                    return;
                }
                if ok {
                    warn!(cid, connection = %conn_id, "client traffic dropped; killing client: {why}");
                } else {
                    warn!(cid, connection = %conn_id, "killing client (the drop failed): {why}");
                }
                self.send_cmd(Command::ClientKill { cid });
            }
            Ev::StatusPushed { client_key, status } => {
                if !status.must_disconnect() {
                    return;
                }
                let ctx = self.ctx();
                for conn in self.table.connected_of(&client_key) {
                    info!(connection = %conn, %status, "core pushed: stop service");
                    let todos = self
                        .table
                        .with(&conn, |c| c.kill("channel suspended or terminated", &ctx));
                    self.run(todos);
                }
            }
            Ev::Tick => self.on_tick(),
        }
    }

    fn on_connected(
        &mut self,
        gen: u64,
        lines: mpsc::UnboundedSender<String>,
        conn_cancel: CancellationToken,
    ) {
        if gen != self.gen {
            conn_cancel.cancel();
            return;
        }
        self.connecting = false;
        self.backoff = self.cfg.reconnect_min;
        self.replies.clear();
        if let Some(pw) = &self.cfg.password {
            let _ = lines.send(pw.expose().to_string());
            self.replies.sent(Pending::Password);
        }
        self.conn = Some((lines, conn_cancel));
        self.metrics.management_up();
        info!(management = %self.cfg.management, "connected to OpenVPN management");
        if let Some(s) = &self.shaper {
            s.setup();
            // Everything is unshaped now; the status answer / session answers re-apply.
            self.table.forget_shaping();
        }
        self.send_cmd(Command::ByteCount(self.cfg.bytecount_interval.max(1)));
        self.request_status();
    }

    fn on_mgmt(&mut self, event: MgmtEvent) {
        match event {
            MgmtEvent::Client {
                kind,
                cid,
                kid,
                env,
            } => {
                let raw = RawEnv::from_strs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                let kid = kid.unwrap_or(0);
                match kind {
                    ClientEventKind::Established => self.on_established(cid, &raw),
                    ClientEventKind::Disconnect => {
                        let todos = self.table.disconnect(
                            cid,
                            ClientIdentity::from_env(&raw),
                            script_env::final_counts(&raw),
                        );
                        self.run(todos);
                    }
                    ClientEventKind::Connect | ClientEventKind::Reauth => {
                        self.on_client_auth(cid, kid, &raw)
                    }
                    ClientEventKind::CrResponse => {
                        if self.cfg.client_auth {
                            self.send_cmd(Command::ClientDeny {
                                cid,
                                kid,
                                reason: "challenge/response not supported".into(),
                                client_reason: None,
                            });
                        }
                    }
                }
            }
            MgmtEvent::ByteCountCli {
                cid,
                bytes_in,
                bytes_out,
            } => {
                let ctx = self.ctx();
                match self.table.bytecount(cid, (bytes_in, bytes_out), &ctx) {
                    Some(todos) => self.run(todos),
                    None => {
                        let stale = self
                            .last_status_req
                            .is_none_or(|t| t.elapsed() > STATUS_REFRESH);
                        if stale {
                            debug!(
                                cid,
                                "bytecount for an unknown client; refreshing the client list"
                            );
                            self.request_status();
                        }
                    }
                }
            }
            MgmtEvent::ClientAddress { cid, addr, primary } => {
                if let (true, Ok(a)) = (primary, addr.parse::<Ipv4Addr>()) {
                    self.table.address(cid, a);
                }
            }
            MgmtEvent::Hold(text) => {
                if self.cfg.release_hold {
                    info!("OpenVPN holds ({text}); releasing");
                    self.send_cmd(Command::HoldRelease);
                } else {
                    warn!("OpenVPN holds ({text}); start the monitor with --release-hold to release it");
                }
            }
            MgmtEvent::Info(t) => debug!("management: {t}"),
            MgmtEvent::Fatal(t) => error!("OpenVPN fatal: {t}"),
            MgmtEvent::Notification { kind, text } => debug!(%kind, "management: {text}"),
            MgmtEvent::Reply { ok, text } => {
                self.replies.line_answer();
                if !ok {
                    warn!("management command failed: {text}");
                }
            }
            MgmtEvent::Block(lines) => {
                self.replies.block_answer();
                match mgmt::parse_status(&lines) {
                    Ok(rows) => {
                        let ctx = self.ctx();
                        let todos = self.table.reconcile(rows, &ctx);
                        self.run(todos);
                    }
                    Err(e) => warn!("unusable status answer: {e}"),
                }
            }
            MgmtEvent::Garbage(g) => warn!("ignoring management line: {g}"),
        }
    }

    fn on_established(&mut self, cid: u64, env: &RawEnv) {
        match ClientIdentity::from_env(env) {
            Ok(id) => {
                let todos = self.table.established(cid, id);
                self.run(todos);
            }
            Err(e) => {
                warn!(cid, "client without a usable identity, cutting it: {e}");
                self.send_cmd(Command::ClientKill { cid });
            }
        }
    }

    /// An event handed over by `adapter-server-hook` (the monitor owns it now).
    fn on_handoff(&mut self, h: HandoffEvent) {
        info!(
            event = h.kind.script_type(),
            uid = h.peer_uid,
            "hand-off received"
        );
        match h.kind {
            Kind::Auth => self.logins.start(&self.core, &self.tx, h),
            Kind::ClientConnect => match ClientIdentity::from_env(&h.env) {
                Ok(id) => {
                    let ctx = self.ctx();
                    let todos = self.table.handoff_connect(id, &ctx);
                    self.run(todos);
                }
                Err(e) => warn!("client-connect hand-off without a usable identity ({e}); the client is accounted once OpenVPN reports it established"),
            },
            Kind::ClientDisconnect => match ClientIdentity::from_env(&h.env) {
                Ok(id) => {
                    let todos = self
                        .table
                        .handoff_disconnect(id, script_env::final_counts(&h.env));
                    self.run(todos);
                }
                Err(e) => warn!("client-disconnect hand-off without a usable identity: {e}"),
            },
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
        if let Some(deny) = client_auth::start(&self.core, &self.tx, self.gen, cid, kid, env) {
            self.send_cmd(deny);
        }
    }

    fn on_tick(&mut self) {
        if self.conn.is_none() && !self.connecting {
            self.spawn_connect(Duration::ZERO);
        }
        // OpenVPN sends `>CLIENT:DISCONNECT` only for clients it authenticated through the
        // management interface (`--management-client-auth`); with the auth hook the only way
        // to notice that a client left is the client list. Poll it at the bytecount interval.
        let every = Duration::from_secs(u64::from(self.cfg.bytecount_interval.max(1)));
        let status_due = self.last_status_req.is_none_or(|t| t.elapsed() >= every);
        if self.conn.is_some() && !self.table.is_empty() && status_due {
            self.request_status();
        }
        let ctx = self.ctx();
        let todos = self.table.tick(&ctx);
        self.run(todos);
        if !self.reports.is_empty() {
            let reports = std::mem::take(&mut self.reports);
            self.core.spawn_update_batch(&self.tx, reports);
        }
        self.push.maybe_push(&self.core, &self.tx, Instant::now());
        self.metrics.table(self.table.clients());
    }

    /// Denies the handed-off logins still waiting (and `unstarted_logins`, taken but not
    /// handled), gives the pending StopSessions a short chance, closes the management
    /// connection and removes the shaping.
    pub async fn shutdown(&mut self, unstarted_logins: Vec<HandoffEvent>) {
        info!("monitor stopping");
        self.logins.deny_all(unstarted_logins).await;
        let stops: Vec<_> = self
            .table
            .clients()
            .filter_map(|c| match &c.phase {
                Phase::Gone {
                    fin,
                    closing: Closing::AwaitUpdate { id } | Closing::Stopping { id, .. },
                } => Some((id.clone(), *fin)),
                _ => None,
            })
            .collect();
        self.core.stop_all(stops, SHUTDOWN_STOPS).await;
        if let Some((_, c)) = self.conn.take() {
            c.cancel();
        }
        if let Some(s) = self.shaper.take() {
            s.teardown().await;
        }
        if let Some(f) = self.fence.take() {
            f.teardown().await;
        }
    }
}
