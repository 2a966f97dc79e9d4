//! The actor's side of the core: sessions (StartSession when connected, UpdateSession with
//! the cumulative counts every report interval, StopSession with the final counts), the
//! answers of the spawned calls, and what a service status means — suspension by the agent,
//! the end of a suspension, a server halt checked with the core, the end of the service.

use std::time::Duration;

use service_api::{
    ApiError, ErrorCode, ServiceStatus, SessionId, StartSessionRequest, StartSessionResponse,
    StopSessionRequest, StopSessionResponse, UpdateSessionResponse,
};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::actor::{Actor, Closing, SessionState};
use super::calls::{CoreApi, CoreReply};
use super::conn::{AfterCheck, Goal, Reaction, Wait};
use super::process::OpenVpnLauncher;
use super::usage::Counts;
use super::{suspended_reason, Outcome};
use crate::state::{human_bytes, Phase};

impl<L: OpenVpnLauncher, C: CoreApi> Actor<L, C> {
    pub(super) async fn on_core_reply(&mut self, reply: CoreReply) {
        self.calls.answered(&reply);
        match reply {
            CoreReply::Started {
                connection_id,
                result,
            } => self.on_started(&connection_id, result).await,
            CoreReply::Updated {
                session_id,
                sent,
                result,
            } => self.on_updated(&session_id, sent, result).await,
            CoreReply::Stopped { req, result } => self.on_stopped(req, result).await,
            CoreReply::StatusChecked { status, .. } => self.on_status_checked(status).await,
        }
    }

    /// Queues StartSession for the current session unless it has one.
    pub(super) fn start_session(&mut self) {
        let Some(sess) = self.session.as_mut() else {
            return;
        };
        if sess.core != SessionState::Unstarted {
            return;
        }
        sess.core = SessionState::Starting;
        let req = StartSessionRequest {
            client_key: self.s.client_key.clone(),
            connection_id: Some(sess.connection_id.clone()),
            client_addr: sess.client_addr.clone(),
            vpn_addr: sess.vpn_addr.clone(),
        };
        self.calls.start(req);
    }

    /// The report timer: unacknowledged stops again, then StartSession (not acknowledged
    /// yet) or UpdateSession with the session's cumulative counts.
    pub(super) fn report(&mut self) {
        self.calls.retry_pending_stops();
        let update = match self.session.as_ref().map(|s| (&s.core, s.counts)) {
            Some((SessionState::Open(id), counts)) => Some((id.clone(), counts)),
            Some((SessionState::Unstarted, _)) => {
                self.start_session();
                None
            }
            _ => None,
        };
        // With an UpdateSession on the way the state file is written with its answer.
        let sent = update.is_some_and(|(id, counts)| self.calls.update(id, counts));
        if !sent {
            self.write_state();
        }
    }

    async fn on_started(
        &mut self,
        connection_id: &str,
        result: Result<StartSessionResponse, ApiError>,
    ) {
        let current = self
            .session
            .as_ref()
            .is_some_and(|s| s.connection_id == connection_id);
        if current {
            match result {
                Ok(resp) => {
                    info!(session = %resp.session_id, status = %resp.status, "session started");
                    self.status.session_id = Some(resp.session_id.0.clone());
                    if let Some(sess) = self.session.as_mut() {
                        sess.core = SessionState::Open(resp.session_id);
                    }
                    self.check_status(resp.status, "StartSession").await;
                }
                Err(e) => {
                    if let Some(sess) = self.session.as_mut() {
                        sess.core = SessionState::Unstarted;
                    }
                    self.check_api_error(&e, "StartSession").await;
                }
            }
            self.write_state();
            return;
        }
        let Some(i) = self
            .closing
            .iter()
            .position(|c| c.connection_id == connection_id)
        else {
            debug!("StartSession answer for connection {connection_id} ignored (no such session)");
            return;
        };
        let closing = self.closing.remove(i);
        match result {
            Ok(resp) => {
                info!(session = %resp.session_id, status = %resp.status, "session started");
                self.status.session_id = Some(resp.session_id.0.clone());
                self.check_status(resp.status, "StartSession").await;
                self.calls.stop(StopSessionRequest {
                    session_id: resp.session_id,
                    bytes_in: closing.counts.bytes_in,
                    bytes_out: closing.counts.bytes_out,
                });
            }
            Err(e) => {
                self.check_api_error(&e, "StartSession").await;
                warn!(
                    "the core never acknowledged this session; {} bytes are unreported",
                    closing.counts.total()
                );
            }
        }
    }

    async fn on_updated(
        &mut self,
        session_id: &SessionId,
        sent: Counts,
        result: Result<UpdateSessionResponse, ApiError>,
    ) {
        let current = self
            .session
            .as_ref()
            .is_some_and(|s| matches!(&s.core, SessionState::Open(id) if id == session_id));
        match result {
            Ok(resp) => {
                // Show the traffic when it changed, and at least once a minute.
                let now = Instant::now();
                if current && (sent != self.last_logged || now >= self.next_traffic_log) {
                    info!(
                        "traffic: down {} / up {} this session; channel {} MB used; status {}",
                        human_bytes(sent.bytes_in),
                        human_bytes(sent.bytes_out),
                        resp.units_used,
                        resp.status
                    );
                    self.last_logged = sent;
                    self.next_traffic_log = now + Duration::from_secs(60);
                }
                self.check_status(resp.status, "UpdateSession").await;
            }
            Err(e) if e.code() == Some(ErrorCode::NotFound) && current => {
                // The core lost the session (e.g. its data was reset): start a new one.
                warn!("the core does not know the session any more; starting a new one: {e}");
                self.status.session_id = None;
                if let Some(sess) = self.session.as_mut() {
                    sess.core = SessionState::Unstarted;
                }
                self.start_session();
            }
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                debug!("UpdateSession of an ended session {session_id}: {e}");
            }
            Err(e) => self.check_api_error(&e, "UpdateSession").await,
        }
        self.write_state();
    }

    async fn on_stopped(
        &mut self,
        req: StopSessionRequest,
        result: Result<StopSessionResponse, ApiError>,
    ) {
        match result {
            Ok(resp) => {
                debug!(stopped = resp.stopped, "session stopped");
                self.check_status(resp.status, "StopSession").await;
            }
            Err(e) if e.is_transport() => {
                warn!("StopSession failed, will retry: {e}");
                self.calls.keep_for_retry(req);
            }
            Err(e) => self.check_api_error(&e, "StopSession").await,
        }
    }

    async fn on_status_checked(&mut self, status: Option<ServiceStatus>) {
        if let Some(st) = status {
            self.check_status(st, "status check").await;
        }
        if self.goal.stopping() {
            return;
        }
        let now = Instant::now();
        let (poll, max_wait) = (self.s.suspend_poll, self.s.max_suspend_wait);
        let Goal::Wait(wait) = &mut self.goal else {
            return;
        };
        match wait.after_check(now, poll, max_wait) {
            AfterCheck::GiveUp(o) => self.begin_stop(o),
            AfterCheck::Waiting {
                reason: Some(reason),
                log,
            } => {
                if log {
                    warn!("{reason}");
                }
                self.status.reason = Some(reason);
                self.write_state();
            }
            AfterCheck::Waiting { reason: None, .. } => {}
        }
    }

    /// Closes the current session (if any) with its last counts.
    pub(super) fn end_session(&mut self, reason: &str) {
        let Some(sess) = self.session.take() else {
            return;
        };
        let c = sess.counts;
        // The next session of this OpenVPN process counts from here.
        self.usage.session_ended();
        self.status.total_bytes_in += c.bytes_in;
        self.status.total_bytes_out += c.bytes_out;
        self.status.connected_since = None;
        info!(
            "session ended ({reason}): down {} / up {}",
            human_bytes(c.bytes_in),
            human_bytes(c.bytes_out)
        );
        match sess.core {
            SessionState::Open(id) => self.calls.stop(StopSessionRequest {
                session_id: id,
                bytes_in: c.bytes_in,
                bytes_out: c.bytes_out,
            }),
            // Its StartSession answer brings the id for the StopSession.
            SessionState::Starting => self.closing.push(Closing {
                connection_id: sess.connection_id,
                counts: c,
            }),
            // StartSession never succeeded: try once more so the traffic is not lost.
            SessionState::Unstarted => {
                self.calls.start(StartSessionRequest {
                    client_key: self.s.client_key.clone(),
                    connection_id: Some(sess.connection_id.clone()),
                    client_addr: sess.client_addr,
                    vpn_addr: sess.vpn_addr,
                });
                self.closing.push(Closing {
                    connection_id: sess.connection_id,
                    counts: c,
                });
            }
        }
    }

    /// Reacts to a service status from the core: terminating/terminated stop for good,
    /// suspending/suspended suspend, activating/active end a suspension.
    async fn check_status(&mut self, status: ServiceStatus, what: &str) {
        match self.goal.react(status, what) {
            Reaction::Nothing => {}
            Reaction::StopForGood(o) => {
                self.stop_sending(status).await;
                self.begin_stop(o)
            }
            Reaction::Suspend => {
                self.stop_sending(status).await;
                self.enter_suspend(status, what).await
            }
            Reaction::Resume => self.resume(status, what),
        }
    }

    /// A status change pushed by the core (WatchStatus).
    pub(super) async fn on_pushed(&mut self, status: ServiceStatus) {
        self.check_status(status, "WatchStatus").await;
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

    async fn enter_suspend(&mut self, status: ServiceStatus, what: &str) {
        let was_waiting = self.goal.wait().is_some();
        if let Goal::Wait(Wait::Suspended { status: s, .. }) = &mut self.goal {
            *s = status;
            return;
        }
        let now = Instant::now();
        let reason = suspended_reason(status, what, Duration::ZERO);
        warn!(
            "{reason} (asking the core every {} ms)",
            self.s.suspend_poll.as_millis()
        );
        self.goal = Goal::Wait(Wait::suspended(status, what, now, self.s.suspend_poll));
        self.conn.hold_off();
        if !was_waiting {
            self.stop_child_for_wait();
        }
        if self.conn.is_down() {
            self.tunnel_down().await;
        }
        self.set_phase(Phase::Suspended, Some(reason));
    }

    /// The channel admits logins again: a new openvpn (and session) is started.
    fn resume(&mut self, status: ServiceStatus, what: &str) {
        let Goal::Wait(Wait::Suspended { since, .. }) = &self.goal else {
            return;
        };
        let msg = format!(
            "payment received: the channel is {status} again ({what}) after {} s suspended; reconnecting",
            since.elapsed().as_secs()
        );
        self.goal = Goal::Connect;
        info!("{msg}");
        self.attempt = 0;
        if self.conn.is_down() {
            // Started from the timer, so no caller up the stack sees a new child.
            self.conn.schedule_restart(Instant::now());
        }
        self.set_phase(Phase::Reconnecting, Some(msg));
    }

    /// The server halted the client (or refused the credentials): stop openvpn and ask the
    /// core why before `outcome` becomes final.
    pub(super) fn begin_halt_check(&mut self, outcome: Outcome) {
        if self.goal.holding_off() {
            return;
        }
        let reason = outcome.reason();
        info!(
            "{reason}; asking the core whether the channel was suspended or terminated (up to {} ms)",
            self.s.halt_grace.as_millis()
        );
        self.goal = Goal::Wait(Wait::check(outcome, Instant::now(), self.s.halt_grace));
        self.conn.hold_off();
        self.stop_child_for_wait();
        self.set_phase(Phase::Stopping, Some(reason));
    }
}
