//! The state machine of one client connection, without any I/O.
//!
//! A [`Client`] is in one [`Phase`]; every event of the connection (a core answer, a byte
//! count, the disconnect, a housekeeping tick) is a method that moves it to the next phase
//! and returns the [`Action`]s the actor must carry out (core calls, `client-kill`, shaping).
//! Variants carry their own data, so a stopped session with a report in flight, or a kill of
//! a client that is already gone, cannot be represented.

use std::time::Instant;

use service_api::{
    ApiError, ErrorCode, SessionId, SpeedLimits, StartSessionResponse, UpdateSessionResponse,
};
use tc_shaper::ClientAddrs;
use tracing::{debug, error, info, warn};

pub use super::action::{acceptable, max2, Action, Counts, Ctx};
use crate::script_env::ClientIdentity;

/// Whether a client is to be cut off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kill {
    /// No.
    No,
    /// Yes; `client-kill` was sent on management connection `sent_gen` (None: not yet).
    Wanted { sent_gen: Option<u64> },
}

/// The session of a connected client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Session {
    /// No session yet: a StartSession is in flight, or is retried at the next tick.
    Starting { in_flight: bool },
    /// Open. `reported` is the highest count the core accepted, `sending` the count of the
    /// UpdateSession in flight (at most one per client).
    Open {
        id: SessionId,
        reported: Counts,
        sending: Option<Counts>,
        speed: SpeedLimits,
    },
}

/// How a departed client's session is closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closing {
    /// The StartSession made while the client was connected is still in flight; the
    /// session it answers is stopped. (A departed client never gets a StartSession.)
    AwaitStart,
    /// An UpdateSession sent before the disconnect is still in flight; StopSession follows.
    AwaitUpdate { id: SessionId },
    /// StopSession with the final counts; `sending` holds the counts of the call in flight
    /// (None: to be sent or retried). Final counts that rise while a call is in flight (a
    /// client-disconnect hand-off after the client list showed the client gone) are sent
    /// when it returns.
    Stopping {
        id: SessionId,
        sending: Option<Counts>,
    },
    /// The connection was unknown here (a `client-disconnect` hand-off of a client whose
    /// session the monitor never saw): FindSession by its connection id, then StopSession;
    /// a connection without a session gets none.
    Finding { in_flight: bool },
}

/// Where a connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// OpenVPN has the client connected.
    Connected {
        session: Session,
        kill: Kill,
        /// Since when the core calls of this client have been failing (None: the last
        /// one succeeded).
        failing_since: Option<Instant>,
        /// Its speed limits are installed.
        shaped: bool,
    },
    /// OpenVPN dropped it; `fin` are the final counts for StopSession.
    Gone { fin: Counts, closing: Closing },
}

/// One client connection (key: its connection id).
#[derive(Debug, Clone)]
pub struct Client {
    /// Unique per monitor run (the shaping key).
    pub serial: u64,
    /// OpenVPN's client id on the current management connection (None while the client is
    /// known only from a client-connect hand-off).
    pub cid: Option<u64>,
    /// Since when the client is known only from a client-connect hand-off (the management
    /// interface has not shown it yet: OpenVPN runs client-connect before the client is
    /// established and listed).
    pub announced: Option<Instant>,
    pub id: ClientIdentity,
    pub conn_id: String,
    /// The highest counts seen.
    pub counts: Counts,
    pub phase: Phase,
    /// An nftables quota or block of this client may be installed (removed with it).
    pub fenced: bool,
}

/// A core failure: retried later, or refused for good.
fn is_transient(e: &ApiError) -> bool {
    e.is_transport() || matches!(e.code(), Some(ErrorCode::RateLimited))
}

impl Client {
    /// A connected client without a session (call [`Client::start`] next).
    pub fn new(serial: u64, cid: Option<u64>, id: ClientIdentity, counts: Counts) -> Self {
        Self {
            serial,
            cid,
            announced: None,
            conn_id: id.connection_id(),
            id,
            counts,
            fenced: false,
            phase: Phase::Connected {
                session: Session::Starting { in_flight: false },
                kill: Kill::No,
                failing_since: None,
                shaped: false,
            },
        }
    }

    pub fn is_gone(&self) -> bool {
        matches!(self.phase, Phase::Gone { .. })
    }

    /// The highest count the core accepted (zero before a session).
    pub fn reported(&self) -> Counts {
        match &self.phase {
            Phase::Connected {
                session: Session::Open { reported, .. },
                ..
            } => *reported,
            _ => (0, 0),
        }
    }

    /// Makes the StartSession of a connected client that has none and none in flight.
    pub fn start(&mut self) -> Vec<Action> {
        match &mut self.phase {
            Phase::Connected {
                session: Session::Starting { in_flight },
                ..
            } if !*in_flight => {
                *in_flight = true;
                vec![Action::Start]
            }
            _ => vec![],
        }
    }

    /// The StartSession answer.
    pub fn on_started(
        &mut self,
        result: Result<StartSessionResponse, ApiError>,
        ctx: &Ctx,
    ) -> Vec<Action> {
        let conn_id = self.conn_id.clone();
        match &mut self.phase {
            Phase::Connected {
                session,
                failing_since,
                ..
            } => {
                if matches!(session, Session::Open { .. }) {
                    return vec![];
                }
                *session = Session::Starting { in_flight: false };
                match result {
                    Ok(r) => {
                        info!(connection = %conn_id, session = %r.session_id, status = %r.status, "session started");
                        *session = Session::Open {
                            id: r.session_id,
                            reported: (r.bytes_in, r.bytes_out),
                            sending: None,
                            speed: r.speed,
                        };
                        *failing_since = None;
                        if r.status.must_disconnect() {
                            return self.kill("channel not in service", ctx);
                        }
                        let mut out = self.shape(ctx);
                        out.extend(self.update());
                        out
                    }
                    Err(e) if is_transient(&e) => {
                        failing_since.get_or_insert(ctx.now);
                        vec![]
                    }
                    Err(e) => {
                        error!(connection = %conn_id, "StartSession refused: {e}");
                        self.kill("StartSession refused", ctx)
                    }
                }
            }
            Phase::Gone { fin, closing } => {
                if *closing != Closing::AwaitStart {
                    return vec![];
                }
                match result {
                    Ok(r) => {
                        info!(connection = %conn_id, session = %r.session_id, status = %r.status, "session started");
                        *closing = Closing::Stopping {
                            id: r.session_id.clone(),
                            sending: Some(*fin),
                        };
                        vec![Action::Stop {
                            session: r.session_id,
                            fin: *fin,
                        }]
                    }
                    Err(e) => {
                        warn!(connection = %conn_id, bytes_in = fin.0, bytes_out = fin.1, "StartSession of a departed client failed ({e}); no session is started for it, its usage is not reported");
                        vec![Action::Forget]
                    }
                }
            }
        }
    }

    /// Sends the latest counts when the session is open, connected and nothing is in
    /// flight.
    pub fn update(&mut self) -> Vec<Action> {
        let counts = self.counts;
        match &mut self.phase {
            Phase::Connected {
                session: Session::Open { id, sending, .. },
                ..
            } if sending.is_none() => {
                *sending = Some(counts);
                vec![Action::Update {
                    session: id.clone(),
                    counts,
                }]
            }
            _ => vec![],
        }
    }

    /// A `>BYTECOUNT_CLI` (or a status row) of this client. A count the core would refuse
    /// is dropped (it never raises the counts) and starts the grace timer.
    pub fn on_counts(&mut self, counts: Counts, ctx: &Ctx) -> Vec<Action> {
        if !self.merge_counts(counts, ctx.now) {
            return vec![];
        }
        if ctx.core_callable {
            self.update()
        } else {
            vec![]
        }
    }

    /// Takes new counts; false (and logged) when the core would refuse them. A good count
    /// that the core has already accepted in full ends the grace timer of earlier refusals.
    pub fn merge_counts(&mut self, counts: Counts, now: Instant) -> bool {
        if !acceptable(counts) {
            self.refused(counts, now, "above the largest counter the core accepts");
            return false;
        }
        self.counts = max2(self.counts, counts);
        let all_reported = self.counts;
        if let Phase::Connected {
            session:
                Session::Open {
                    reported,
                    sending: None,
                    ..
                },
            failing_since,
            ..
        } = &mut self.phase
        {
            if *reported == all_reported {
                *failing_since = None;
            }
        }
        true
    }

    /// A count that is not reported: logged, and the client's grace timer runs.
    fn refused(&mut self, counts: Counts, now: Instant, why: &str) {
        if let Phase::Connected { failing_since, .. } = &mut self.phase {
            if failing_since.is_none() {
                warn!(connection = %self.conn_id, bytes_in = counts.0, bytes_out = counts.1, "byte count dropped: {why}");
            } else {
                debug!(connection = %self.conn_id, bytes_in = counts.0, bytes_out = counts.1, "byte count dropped: {why}");
            }
            failing_since.get_or_insert(now);
        }
    }

    /// The UpdateSession answer for `sent`.
    pub fn on_updated(
        &mut self,
        sent: Counts,
        result: Result<UpdateSessionResponse, ApiError>,
        ctx: &Ctx,
    ) -> Vec<Action> {
        let conn_id = self.conn_id.clone();
        let counts = self.counts;
        match &mut self.phase {
            Phase::Connected {
                session: Session::Open {
                    reported, sending, ..
                },
                failing_since,
                ..
            } => {
                *sending = None;
                match result {
                    Ok(r) => {
                        *reported = max2(*reported, sent);
                        *failing_since = None;
                        debug!(connection = %conn_id, bytes_in = sent.0, bytes_out = sent.1, status = %r.status, units = r.units_used, "usage reported");
                        if r.status.must_disconnect() {
                            info!(connection = %conn_id, status = %r.status, "core says stop service");
                            self.kill("channel suspended or terminated", ctx)
                        } else if r.closed {
                            info!(connection = %conn_id, "core says the session is closed (a newer login of the channel replaced it)");
                            self.kill("session replaced by a newer login", ctx)
                        } else if counts != sent {
                            self.update()
                        } else {
                            vec![]
                        }
                    }
                    Err(e) if is_transient(&e) => {
                        failing_since.get_or_insert(ctx.now);
                        vec![]
                    }
                    Err(e)
                        if matches!(
                            e.code(),
                            Some(ErrorCode::Invalid | ErrorCode::UsageOverflow)
                        ) =>
                    {
                        // The core refuses these counts: drop them (back to what it
                        // accepted; later good counts raise them again) and let the grace
                        // timer run.
                        let accepted = *reported;
                        self.counts = accepted;
                        self.refused(sent, ctx.now, &format!("UpdateSession refused it: {e}"));
                        vec![]
                    }
                    Err(e) => match e.code() {
                        Some(
                            ErrorCode::ChannelInactive
                            | ErrorCode::NotFound
                            | ErrorCode::Forbidden
                            | ErrorCode::AuthFailed,
                        ) => {
                            warn!(connection = %conn_id, "UpdateSession refused: {e}");
                            self.kill("session refused by core", ctx)
                        }
                        _ => {
                            warn!(connection = %conn_id, "UpdateSession failed: {e}");
                            vec![]
                        }
                    },
                }
            }
            Phase::Gone { fin, closing } => {
                let Closing::AwaitUpdate { id } = closing else {
                    return vec![];
                };
                if let Err(e) = &result {
                    if !is_transient(e) {
                        warn!(connection = %conn_id, "UpdateSession failed: {e}");
                    }
                }
                let id = id.clone();
                *closing = Closing::Stopping {
                    id: id.clone(),
                    sending: Some(*fin),
                };
                vec![Action::Stop {
                    session: id,
                    fin: *fin,
                }]
            }
            Phase::Connected { .. } => vec![],
        }
    }

    /// Asks for `client-kill` (once per management connection; a departed client is not
    /// killed; a client without a client id yet is killed once it has one).
    pub fn kill(&mut self, why: &'static str, ctx: &Ctx) -> Vec<Action> {
        let Phase::Connected { kill, .. } = &mut self.phase else {
            return vec![];
        };
        let Some(cid) = self.cid else {
            *kill = Kill::Wanted { sent_gen: None };
            return vec![];
        };
        if let Kill::Wanted {
            sent_gen: Some(gen),
        } = kill
        {
            if *gen == ctx.gen {
                return vec![];
            }
        }
        if !ctx.mgmt_up {
            *kill = Kill::Wanted { sent_gen: None };
            return vec![];
        }
        *kill = Kill::Wanted {
            sent_gen: Some(ctx.gen),
        };
        vec![Action::Kill { cid, why }]
    }

    /// Installs the speed limits of a connected client with an open session and a VPN
    /// address (once; [`Client::forget_shaping`] resets that after a shaping reset).
    pub fn shape(&mut self, ctx: &Ctx) -> Vec<Action> {
        if !ctx.shaping {
            return vec![];
        }
        let Phase::Connected {
            session: Session::Open { speed, .. },
            shaped,
            ..
        } = &mut self.phase
        else {
            return vec![];
        };
        match self.id.vpn_addr {
            Some(v4) if !*shaped && !speed.is_unlimited() => {
                *shaped = true;
                vec![Action::Shape {
                    key: self.serial,
                    addrs: ClientAddrs {
                        v4,
                        v6: self.id.vpn_addr6,
                    },
                    speed: *speed,
                }]
            }
            _ => vec![],
        }
    }

    /// The client's VPN IPv6 address became known (the `status` list): its limits are
    /// installed again to cover it.
    pub fn learn_vpn_addr6(&mut self, addr: std::net::Ipv6Addr, ctx: &Ctx) -> Vec<Action> {
        if self.id.vpn_addr6.is_some() {
            return vec![];
        }
        self.id.vpn_addr6 = Some(addr);
        self.forget_shaping();
        self.shape(ctx)
    }

    /// The shaping was set up anew: nothing of this client is installed any more.
    pub fn forget_shaping(&mut self) {
        if let Phase::Connected { shaped, .. } = &mut self.phase {
            *shaped = false;
        }
    }

    /// Removes the speed limits and the nftables fence when they are installed.
    pub fn unshape(&mut self) -> Vec<Action> {
        let mut out = match &mut self.phase {
            Phase::Connected { shaped, .. } if *shaped => {
                *shaped = false;
                vec![Action::Unshape { key: self.serial }]
            }
            _ => vec![],
        };
        if self.fenced {
            self.fenced = false;
            out.push(Action::Unfence { key: self.serial });
        }
        out
    }

    /// The client's VPN addresses while it is connected and not being cut (for its quota).
    pub fn quota_addrs(&self) -> Option<ClientAddrs> {
        match &self.phase {
            Phase::Connected {
                kill: Kill::No,
                session: Session::Open { .. },
                ..
            } => self.id.vpn_addr.map(|v4| ClientAddrs {
                v4,
                v6: self.id.vpn_addr6,
            }),
            _ => None,
        }
    }

    /// Housekeeping: retries what failed, reports what is new, cuts a client that is to be
    /// killed or whose reports have failed for longer than the grace period.
    pub fn tick(&mut self, ctx: &Ctx) -> Vec<Action> {
        if self.is_gone() {
            return if ctx.core_callable {
                self.finish_gone()
            } else {
                vec![]
            };
        }
        let mut out = vec![];
        let reported = self.reported();
        if ctx.core_callable {
            if let Phase::Connected { session, .. } = &self.phase {
                match session {
                    Session::Starting { in_flight: false } => out.extend(self.start()),
                    Session::Open { sending: None, .. } if self.counts != reported => {
                        out.extend(self.update())
                    }
                    _ => {}
                }
            }
        }
        let Phase::Connected {
            kill,
            failing_since,
            ..
        } = &self.phase
        else {
            return out;
        };
        let overdue = failing_since.is_some_and(|t| ctx.now.duration_since(t) > ctx.grace);
        let wanted = matches!(kill, Kill::Wanted { .. });
        let sent_now = matches!(kill, Kill::Wanted { sent_gen: Some(g) } if *g == ctx.gen);
        if ctx.mgmt_up && (wanted || overdue) && !sent_now {
            let why = if wanted {
                "kill pending"
            } else {
                "no successful report to the core within the grace period"
            };
            out.extend(self.kill(why, ctx));
        }
        out
    }
}

mod gone;

#[cfg(test)]
pub(super) mod tests;
