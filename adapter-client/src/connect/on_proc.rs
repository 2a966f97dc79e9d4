//! The actor's handlers of the `openvpn` process: its start and exit, its management
//! connection, and what its management lines mean (holds, states, byte counts, halts).

use openvpn_mgmt::{
    classify_exit_reason, Command, ExitKind, Line as MgmtLine, OvpnState, Signal, StateChange,
};
use tokio::time::Instant;
use tracing::{debug, error, info, warn};

use super::actor::{Actor, Session, SessionState, STATE_HISTORY};
use super::calls::CoreApi;
use super::conn::{Hold, Running};
use super::process::{OpenVpnLauncher, OpenVpnProcess, ProcEvent, ProcEvents};
use super::usage::Counts;
use super::{backoff_delay, Outcome};
use crate::state::{now_unix, Phase};

/// The name the state file shows for an OpenVPN state.
pub(crate) fn state_name(s: &OvpnState) -> String {
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

impl<L: OpenVpnLauncher, C: CoreApi> Actor<L, C> {
    pub(super) fn spawn_child(&mut self) {
        self.gen += 1;
        self.usage.reset();
        self.net.on_restart();
        self.status.openvpn_states.clear();
        match self
            .launcher
            .spawn(ProcEvents::new(self.gen, self.tx.clone()))
        {
            Ok(proc) => {
                let pid = proc.pid();
                info!(pid, "openvpn started; connecting to {}", self.endpoint);
                self.conn.started(Running::new(proc, pid));
                self.status.openvpn_pid = Some(pid);
                self.set_phase(Phase::Connecting, None);
            }
            Err(e) => {
                error!(program = %self.s.openvpn.display(), "could not start openvpn: {e}");
                self.schedule_restart("openvpn could not be started");
            }
        }
    }

    pub(super) async fn on_proc_event(&mut self, ev: ProcEvent) {
        match ev {
            ProcEvent::MgmtConnected(link) => {
                let holding_off = self.goal.holding_off();
                let Some(run) = self.conn.running_mut() else {
                    debug!("management connection of an exited openvpn ignored");
                    return;
                };
                debug!("management interface connected");
                run.mgmt = Some(link);
                if holding_off {
                    self.send(Command::Signal(Signal::Term));
                    return;
                }
                self.send(Command::StateOn);
                self.send(Command::ByteCount(self.s.bytecount_interval));
                if self.net.wants_log() {
                    self.send(Command::LogOn);
                }
            }
            ProcEvent::MgmtConnectFailed(e) => {
                error!(
                    "could not connect to the openvpn management socket: {}: {e}",
                    self.launcher.mgmt_socket().display()
                );
                self.terminate_child();
            }
            ProcEvent::Line(line) => self.on_line(line).await,
            ProcEvent::MgmtClosed => {
                let Some(run) = self.conn.running_mut() else {
                    return;
                };
                run.mgmt = None;
                if !self.goal.stopping() {
                    warn!("the openvpn management connection closed; restarting openvpn");
                    self.terminate_child();
                }
            }
            ProcEvent::MgmtWriteFailed(cmd) => {
                if let Some(run) = self.conn.running_mut() {
                    run.mgmt = None;
                }
                // The stop that could not be said over management is said with a signal.
                if cmd == Command::Signal(Signal::Term) {
                    self.signal_child(super::process::KillSignal::Term);
                }
            }
            ProcEvent::Exited(status) => self.on_child_exit(status).await,
        }
    }

    async fn on_child_exit(&mut self, status: String) {
        let Some(run) = self.conn.gone() else {
            return;
        };
        // The management reader keeps going until EOF (the launcher stops it when the next
        // process starts): OpenVPN's last lines (EXITING with its reason, NOTIFY of a server
        // halt) may still be in the socket and still count.
        self.status.openvpn_pid = None;
        self.status.openvpn_state = None;
        self.end_session("openvpn exited");
        self.tunnel_down().await;
        if self.goal.holding_off() {
            info!("openvpn exited ({status})");
            if !self.goal.stopping() {
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
        for l in run.proc.output_tail() {
            warn!(target: "openvpn", "{l}");
        }
        self.schedule_restart(&format!("openvpn exited: {status}"));
    }

    async fn on_line(&mut self, line: MgmtLine) {
        match line {
            MgmtLine::Hold(text) => {
                let delay = backoff_delay(self.attempt, self.s.backoff_initial, self.s.backoff_max);
                match self
                    .conn
                    .on_hold(self.goal.holding_off(), delay, Instant::now())
                {
                    Hold::Ignore => {}
                    Hold::ReleaseNow => {
                        debug!("openvpn holds ({text}); releasing");
                        self.send(Command::HoldRelease);
                    }
                    Hold::ReleaseLater(d) => info!("reconnecting in {} ms", d.as_millis()),
                }
            }
            MgmtLine::State(sc) => self.on_state(sc).await,
            MgmtLine::ByteCount {
                bytes_in,
                bytes_out,
            } => {
                let counts = Counts {
                    bytes_in,
                    bytes_out,
                };
                if !self.usage.observe(counts) {
                    warn!(
                        "openvpn reported lower byte counts (in {bytes_in}, out {bytes_out}) than before; the lower ones are ignored (usage never goes backwards)"
                    );
                }
                if let Some(sess) = self.session.as_mut() {
                    sess.counts = self.usage.session_counts(sess.baseline);
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
                    });
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
                    });
                } else {
                    warn!("openvpn asks for a password over the management interface ({text}); it should read the credentials file");
                }
            }
            MgmtLine::Log(text) => {
                tracing::trace!(target: "openvpn", "{text}");
                self.net.on_log(&text);
            }
            MgmtLine::Error(text) => warn!("openvpn management command failed: {text}"),
            other => debug!("management -> {other:?}"),
        }
    }

    async fn on_state(&mut self, sc: StateChange) {
        let name = state_name(&sc.state);
        let history = &mut self.status.openvpn_states;
        if history.len() == STATE_HISTORY {
            history.remove(0);
        }
        history.push(name.clone());
        self.status.openvpn_state = Some(name);
        match sc.state {
            OvpnState::Connected => self.on_connected(sc).await,
            OvpnState::Reconnecting => {
                let reason = sc.description;
                self.net.on_restart();
                self.end_session(&format!("connection lost: {reason}"));
                self.tunnel_down().await;
                if self.goal.holding_off() {
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
                self.end_session(&format!("openvpn exiting: {reason}"));
                self.tunnel_down().await;
                match classify_exit_reason(&reason) {
                    ExitKind::ServerHalt => {
                        self.begin_halt_check(Outcome::ServerHalted {
                            reason: format!("the server halted the client ({reason})"),
                        });
                    }
                    ExitKind::AuthFailure => {
                        self.begin_halt_check(Outcome::AuthFailed {
                            reason: format!("the server refused the credentials ({reason})"),
                        });
                    }
                    _ if self.goal.holding_off() => debug!("openvpn exiting ({reason})"),
                    _ => warn!("openvpn is exiting ({reason}); it will be restarted"),
                }
            }
            other => {
                debug!("openvpn state {other:?} {}", sc.description);
                if self.session.is_none() && !self.goal.holding_off() {
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
        let pid = self.conn.running().map_or(0, |r| r.pid);
        let vpn_addr = sc.tun_ipv4.clone().or_else(|| sc.tun_ipv6.clone());
        let remote = match (&sc.remote_ip, sc.remote_port) {
            (Some(ip), Some(p)) => format!("{ip}:{p}"),
            (Some(ip), None) => ip.clone(),
            _ => self.endpoint.clone(),
        };
        if sc.description == "ERROR" {
            warn!("openvpn reports the initialization completed with errors");
        }
        info!(
            vpn_address = vpn_addr.as_deref().unwrap_or("?"),
            endpoint = %self.endpoint,
            remote = %remote,
            "connected"
        );
        self.attempt = 0;
        let baseline = self.usage.baseline();
        self.session = Some(Session {
            connection_id: format!("{pid}:{}", sc.time),
            vpn_addr: vpn_addr.clone(),
            client_addr: match (&sc.local_ip, sc.local_port) {
                (Some(ip), Some(p)) if ip.contains(':') => Some(format!("[{ip}]:{p}")),
                (Some(ip), Some(p)) => Some(format!("{ip}:{p}")),
                _ => None,
            },
            baseline,
            counts: self.usage.session_counts(baseline),
            core: SessionState::Unstarted,
        });
        self.status.connections += 1;
        self.status.vpn_address = vpn_addr;
        self.status.connected_since = Some(now_unix());
        self.status.session_id = None;
        self.set_phase(Phase::Connected, None);
        self.apply_shaping().await;
        let tun = self.s.tun_dev.clone();
        self.net.on_connected(&tun).await;
        // Earlier sessions first: the core closes a stale open session when a new one starts.
        self.calls.retry_pending_stops();
        self.start_session();
        self.write_state();
    }
}
