//! The connection actor: one task owns all connection state; the `openvpn` process (through
//! [`OpenVpnLauncher`]) and the core calls ([`Calls`]) report to it as [`Event`]s on one
//! channel. Its timers (delayed hold release, restart, SIGKILL deadline, status checks,
//! usage reports) live in its `select!`; shutdown comes through a [`CancellationToken`].
//!
//! The handlers are split by source: [`super::on_proc`] (the process and its management
//! lines) and [`super::on_core`] (answers of the core, suspension and halts, sessions).

use std::time::Duration;

use openvpn_mgmt::Command;
use service_api::{SessionId, SpeedLimits};
use tc_shaper::{self as shaping, ShapingPlan};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::calls::{Calls, CoreApi, CoreReply};
use super::conn::{Conn, Due, Goal};
use super::process::{KillSignal, OpenVpnLauncher, OpenVpnProcess, ProcEvent};
use super::usage::{Counts, UsageMeter};
use super::{ConnectSettings, Outcome};
use crate::netguard::NetGuard;
use crate::state::{self, now_unix, Phase, Status};

/// What reaches the actor.
#[derive(Debug)]
pub(crate) enum Event {
    /// From the `openvpn` process of generation `gen`.
    Proc { gen: u64, ev: ProcEvent },
    /// The answer of a core call.
    Core(CoreReply),
    /// WatchStatus: the channel entered this status.
    Pushed(service_api::ServiceStatus),
}

/// Where a session stands with the core.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SessionState {
    /// No StartSession acknowledged, none on the way.
    Unstarted,
    /// StartSession queued or in flight.
    Starting,
    Open(SessionId),
}

/// The tunnel session of the current connection.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) connection_id: String,
    pub(crate) vpn_addr: Option<String>,
    /// The local `ip:port` of the tunnel's transport, when OpenVPN tells it.
    pub(crate) client_addr: Option<String>,
    /// Absolute BYTECOUNT at connect time.
    pub(crate) baseline: Counts,
    /// Session counts (absolute − baseline) as of the last BYTECOUNT.
    pub(crate) counts: Counts,
    pub(crate) core: SessionState,
}

/// An ended session whose StartSession answer is awaited; its StopSession follows it.
#[derive(Debug)]
pub(crate) struct Closing {
    pub(crate) connection_id: String,
    pub(crate) counts: Counts,
}

/// OpenVPN states kept in the state file (the current process's last ones).
pub(crate) const STATE_HISTORY: usize = 16;

/// The connection actor.
pub(crate) struct Actor<L: OpenVpnLauncher, C: CoreApi> {
    pub(super) s: ConnectSettings,
    /// `host:port` of the server, for display.
    pub(super) endpoint: String,
    pub(super) speed: SpeedLimits,
    pub(super) launcher: L,
    pub(super) calls: Calls<C>,
    pub(super) tx: mpsc::Sender<Event>,
    rx: mpsc::Receiver<Event>,
    /// Generation of the current process (events of earlier ones are ignored).
    pub(super) gen: u64,
    pub(super) conn: Conn<L::Process>,
    pub(super) goal: Goal,
    /// Failed connection attempts in a row (the backoff).
    pub(super) attempt: u32,
    pub(super) usage: UsageMeter,
    pub(super) session: Option<Session>,
    pub(super) closing: Vec<Closing>,
    pub(super) next_report: Instant,
    /// A status check is due and starts once the sessions lane is idle.
    pub(super) check_wanted: bool,
    /// The unacknowledged StopSession reports got their last try before exit.
    final_round: bool,
    pub(super) shaping: Option<ShapingPlan>,
    pub(super) last_fatal: Option<String>,
    pub(super) status: Status,
    state_write_failed: bool,
    pub(super) last_logged: Counts,
    pub(super) next_traffic_log: Instant,
    /// Pushed DNS servers and the kill switch.
    pub(super) net: NetGuard,
}

impl<L: OpenVpnLauncher, C: CoreApi> Actor<L, C> {
    pub(crate) fn new(
        s: ConnectSettings,
        core: C,
        launcher: L,
        endpoint: String,
        speed: SpeedLimits,
    ) -> Self {
        let (tx, rx) = mpsc::channel(1024);
        let status = Status {
            client_key: s.client_key.0.clone(),
            phase: Phase::Starting,
            reason: None,
            pid: std::process::id(),
            openvpn_pid: None,
            openvpn_state: None,
            openvpn_states: Vec::new(),
            endpoint: endpoint.clone(),
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
            calls: Calls::new(core, tx.clone(), s.client_key.clone()),
            s,
            endpoint,
            speed,
            launcher,
            tx,
            rx,
            gen: 0,
            conn: Conn::Down { restart_at: None },
            goal: Goal::Connect,
            attempt: 0,
            usage: UsageMeter::default(),
            session: None,
            closing: Vec::new(),
            check_wanted: false,
            final_round: false,
            shaping: None,
            last_fatal: None,
            status,
            state_write_failed: false,
            last_logged: Counts::default(),
            next_traffic_log: Instant::now(),
            net: NetGuard::disabled(),
        }
    }

    /// Hands the actor the DNS and kill-switch state (`connect::run`; the unit tests run
    /// without).
    pub(crate) fn with_net(mut self, net: NetGuard) -> Self {
        self.net = net;
        self
    }

    /// Stopping, openvpn gone: only the last core calls are awaited.
    fn draining(&self) -> bool {
        self.goal.stopping() && self.conn.is_down()
    }

    fn earliest_timer(&self) -> Instant {
        if self.draining() {
            return Instant::now() + Duration::from_secs(86_400);
        }
        let holding_off = self.goal.holding_off();
        // The status checks of a wait start once openvpn is gone.
        let poll = self
            .goal
            .wait()
            .filter(|_| self.conn.is_down() && !self.check_wanted && !self.calls.status_busy())
            .map(|w| w.next_poll());
        [self.conn.timer(holding_off), poll]
            .into_iter()
            .flatten()
            .fold(self.next_report, Instant::min)
    }

    pub(crate) async fn run(mut self, cancel: CancellationToken) -> Outcome {
        self.write_state();
        self.spawn_child();
        loop {
            if self.draining() && self.calls.idle() {
                if self.final_round {
                    break;
                }
                // One more try for what the core has not acknowledged.
                self.final_round = true;
                self.calls.retry_pending_stops();
                continue;
            }
            self.start_wanted_check();
            let timer = self.earliest_timer();
            tokio::select! {
                () = cancel.cancelled(), if !self.goal.stopping() => {
                    info!("stop requested: stopping OpenVPN");
                    self.begin_stop(Outcome::Stopped);
                }
                ev = self.rx.recv() => {
                    if let Some(ev) = ev {
                        self.handle(ev).await;
                    }
                }
                () = tokio::time::sleep_until(timer) => self.on_timer().await,
            }
        }
        self.tunnel_down().await;
        self.net.shutdown();
        for req in self.calls.pending_stops() {
            error!(
                "the core never acknowledged the end of session {} (bytes in {}, out {})",
                req.session_id, req.bytes_in, req.bytes_out
            );
        }
        let outcome = match std::mem::replace(&mut self.goal, Goal::Connect) {
            Goal::Stop(o) => o,
            _ => Outcome::Stopped,
        };
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

    async fn handle(&mut self, ev: Event) {
        match ev {
            Event::Core(reply) => self.on_core_reply(reply).await,
            Event::Pushed(_) if self.draining() => {}
            Event::Pushed(status) => self.on_pushed(status).await,
            // After the stop the old process's last lines change nothing.
            Event::Proc { .. } if self.draining() => {}
            Event::Proc { gen, ev } if gen == self.gen => self.on_proc_event(ev).await,
            Event::Proc { .. } => debug!("event of an earlier openvpn process ignored"),
        }
    }

    async fn on_timer(&mut self) {
        let now = Instant::now();
        match self.conn.due(now, self.goal.holding_off()) {
            Due::Nothing => {}
            Due::Kill => {
                warn!(
                    "openvpn did not exit within {} s; killing it",
                    self.s.stop_timeout.as_secs()
                );
                self.signal_child(KillSignal::Kill);
            }
            Due::GiveUp(run) => {
                error!("openvpn did not go away even after SIGKILL; giving up on it");
                run.proc.stop_reading();
                self.end_session("openvpn is gone");
                self.tunnel_down().await;
                if !self.goal.holding_off() {
                    self.schedule_restart("openvpn could not be stopped");
                }
            }
            Due::Release => {
                info!("reconnecting (attempt {})", self.attempt);
                self.send(Command::HoldRelease);
                self.set_phase(Phase::Connecting, None);
            }
            Due::Restart => self.spawn_child(),
        }
        let poll_due = self.conn.is_down()
            && !self.check_wanted
            && !self.calls.status_busy()
            && self.goal.wait().is_some_and(|w| w.next_poll() <= now);
        if poll_due {
            // Unacknowledged stops first, then the check (once the lane is idle).
            self.calls.retry_pending_stops();
            self.check_wanted = true;
        }
        if self.next_report <= now {
            self.next_report = now + self.s.report_interval;
            self.report();
        }
    }

    /// Starts the wanted status check when the sessions lane allows it.
    fn start_wanted_check(&mut self) {
        if !self.check_wanted {
            return;
        }
        // A wait that ended (or a stop) needs no check; otherwise it starts when it can.
        let pointless = self.goal.stopping() || self.goal.wait().is_none();
        if pointless || self.calls.check_status() {
            self.check_wanted = false;
        }
    }

    // ---- process helpers -------------------------------------------------------------

    /// Sends a management command; false when there is no management link.
    pub(super) fn send(&mut self, cmd: Command) -> bool {
        self.conn
            .running()
            .and_then(|r| r.mgmt.as_ref())
            .is_some_and(|link| link.send(cmd))
    }

    pub(super) fn signal_child(&self, sig: KillSignal) {
        if let Some(run) = self.conn.running() {
            run.proc.signal(sig);
        }
    }

    /// SIGTERM to the child (it cannot be controlled any more), SIGKILL after the stop
    /// timeout.
    pub(super) fn terminate_child(&mut self) {
        self.signal_child(KillSignal::Term);
        self.conn
            .exit_requested(Instant::now(), self.s.stop_timeout, false);
    }

    /// Stops openvpn (without a restart) over management, else with a signal.
    pub(super) fn stop_child_for_wait(&mut self) {
        if self.conn.is_down() {
            return;
        }
        if !self.send(Command::Signal(openvpn_mgmt::Signal::Term)) {
            self.signal_child(KillSignal::Term);
        }
        self.conn
            .exit_requested(Instant::now(), self.s.stop_timeout, false);
    }

    /// The core says the channel is out of service: the tunnel stops carrying traffic at
    /// once (its link goes down), before openvpn is told to exit and the final counts are
    /// reported.
    pub(super) async fn stop_sending(&mut self, status: service_api::ServiceStatus) {
        if self.conn.is_down() || self.goal.stopping() {
            return;
        }
        let tun = self.s.tun_dev.clone();
        let cmd =
            crate::tool::ToolCommand::new(&self.s.tools.ip, &["link", "set", "dev", &tun, "down"]);
        match cmd.run().await {
            Ok(_) => {
                warn!(tun = %tun, "the channel is {status}: tunnel taken down, no more traffic is sent")
            }
            Err(e) => {
                warn!(tun = %tun, "the channel is {status}: taking the tunnel down failed: {e}")
            }
        }
    }

    pub(super) fn begin_stop(&mut self, outcome: Outcome) {
        if self.goal.stopping() {
            return;
        }
        self.goal = Goal::Stop(outcome);
        self.conn.hold_off();
        if self.conn.is_down() {
            return;
        }
        self.set_phase(Phase::Stopping, None);
        if !self.send(Command::Signal(openvpn_mgmt::Signal::Term)) {
            self.signal_child(KillSignal::Term);
        }
        self.conn
            .exit_requested(Instant::now(), self.s.stop_timeout, true);
    }

    pub(super) fn schedule_restart(&mut self, why: &str) {
        self.attempt = self.attempt.saturating_add(1);
        let d = super::backoff_delay(self.attempt, self.s.backoff_initial, self.s.backoff_max);
        info!("restarting openvpn in {} ms ({why})", d.as_millis());
        self.conn.schedule_restart(Instant::now() + d);
        self.set_phase(Phase::Reconnecting, Some(why.to_string()));
    }

    // ---- shaping ---------------------------------------------------------------------

    pub(super) async fn apply_shaping(&mut self) {
        if !self.s.shaping {
            return;
        }
        let Some(plan) = ShapingPlan::new(&self.s.tun_dev, &self.s.ifb_dev, &self.speed) else {
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

    /// The tunnel is gone (or going): speed limits removed, DNS settings restored.
    pub(super) async fn tunnel_down(&mut self) {
        self.remove_shaping().await;
        self.net.on_down();
    }

    pub(super) async fn remove_shaping(&mut self) {
        if let Some(plan) = self.shaping.take() {
            for e in shaping::run_each(&plan.remove_commands(&self.s.tools)).await {
                warn!("removing the speed limits: {e}");
            }
        }
    }

    // ---- state file ------------------------------------------------------------------

    pub(super) fn set_phase(&mut self, phase: Phase, reason: Option<String>) {
        let changed = self.status.phase != phase || reason.is_some();
        self.status.phase = phase;
        if reason.is_some() {
            self.status.reason = reason;
        }
        if phase == Phase::Connected {
            self.status.reason = None;
        }
        if phase != Phase::Connected {
            self.status.session_id = self.session.as_ref().and_then(|s| match &s.core {
                SessionState::Open(id) => Some(id.0.clone()),
                _ => None,
            });
        }
        if changed {
            self.write_state();
        }
    }

    pub(super) fn write_state(&mut self) {
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
