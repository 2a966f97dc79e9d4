//! Sessions and usage: StartSession, FindSession, UpdateSession and StopSession on either
//! side (agent: a product's server adapter; client: the client adapter).

use std::collections::BTreeMap;

use service_api::{
    self as api, ErrorCode, ErrorDetail, FindSessionRequest, ServiceStatus, SessionId,
    StartSessionRequest, StartSessionResponse, StopSessionRequest, StopSessionResponse,
    UpdateSessionRequest, UpdateSessionResponse, UpdateSessionsRequest, UpdateSessionsResponse,
    UpdateSessionsResult,
};

use super::access::verified_access;
use super::state::speed_of;
use super::state::{new_id, now_ms, Caller, Core};
use super::status::{apply_billing_budget, budget, set_status};
use crate::billing;
use crate::error::{CoreError, Result};
use crate::store::channels::{self, AgentKey, Side};
use crate::store::sessions::{self, NewSession};
use crate::store::Tx;

/// What a usage report changed.
struct Usage {
    status: ServiceStatus,
    bytes_in: u64,
    bytes_out: u64,
    channel_bytes: u64,
    stopped_now: bool,
    /// A usage report on a session that is no longer open.
    closed: bool,
    /// Bytes the channel may still use (agent side only).
    remaining_bytes: Option<u64>,
    /// What this report added, for the usage series: (channel, in, out, at unix ms).
    added: (String, u64, u64, i64),
}

/// A channel as a session call needs it: (id, status, additional params).
type ChannelView = (String, ServiceStatus, Option<BTreeMap<String, String>>);

/// The channel of a client key as the caller sees it.
fn channel_of(
    tx: &Tx<'_>,
    caller: &Caller,
    product: Option<&str>,
    key: &service_api::ClientKey,
) -> Result<ChannelView> {
    Ok(match side_of(caller) {
        Side::Agent => {
            let ch = channels::agent(tx, AgentKey::ClientKey(&key.0), product)?
                .ok_or_else(|| CoreError::NotFound(format!("unknown client key {key}")))?;
            (ch.id, ch.status, ch.additional_params)
        }
        Side::Client => {
            let ch = channels::client_by_key(tx, &key.0)?.ok_or_else(|| {
                CoreError::NotFound(format!("no access message for client key {key}"))
            })?;
            let params = verified_access(&ch.access, key)
                .ok()
                .map(|a| a.additional_params);
            (ch.id, ch.status, params)
        }
    })
}

/// The bytes an agent channel may still use; `None` on the client side (its core does not
/// bill).
fn budget_of(tx: &Tx<'_>, caller: &Caller, channel_id: &str) -> Result<Option<u64>> {
    match side_of(caller) {
        Side::Agent => Ok(Some(budget(tx, channel_id)?)),
        Side::Client => Ok(None),
    }
}

fn side_of(caller: &Caller) -> Side {
    match caller {
        Caller::Client => Side::Client,
        Caller::Admin | Caller::Product(_) => Side::Agent,
    }
}

impl Core {
    pub fn start_session(
        &self,
        caller: &Caller,
        req: &StartSessionRequest,
    ) -> Result<StartSessionResponse> {
        let product = match caller {
            Caller::Product(p) => Some(p.as_str()),
            _ => None,
        };
        self.db.write(|tx| {
            let now = now_ms();
            let (channel_id, status, params) = channel_of(tx, caller, product, &req.client_key)?;
            // A connection id names one connection: StartSession for it again (an adapter that
            // restarted, or the client-disconnect hook looking for the session the monitor
            // opened) returns that session, open or already stopped, whatever the status.
            if let Some(conn) = &req.connection_id {
                if let Some(known) = sessions::by_connection(tx, &channel_id, conn)? {
                    let remaining_bytes = budget_of(tx, caller, &channel_id)?;
                    return Ok(StartSessionResponse {
                        session_id: SessionId(known.id),
                        channel_id,
                        status,
                        speed: speed_of(params.as_ref()),
                        bytes_in: known.bytes_in,
                        bytes_out: known.bytes_out,
                        remaining_bytes,
                    });
                }
            }
            if !status.admits_login() {
                return Err(CoreError::ChannelInactive {
                    channel: channel_id,
                    status,
                });
            }
            if let Some(stale) = sessions::open_id(tx, &channel_id)? {
                // A stale session (another connection): close it with its last known counts.
                sessions::close(tx, &stale, now)?;
            }
            let sid = new_id("s-");
            sessions::insert(
                tx,
                &NewSession {
                    id: &sid,
                    channel_id: &channel_id,
                    connection_id: req.connection_id.as_deref(),
                    client_addr: req.client_addr.as_deref(),
                    vpn_addr: req.vpn_addr.as_deref(),
                    started_at_ms: now,
                },
            )?;
            let mut status = status;
            if status == ServiceStatus::Activating {
                set_status(
                    tx,
                    &channel_id,
                    ServiceStatus::Active,
                    now,
                    "first session started",
                )?;
                status = ServiceStatus::Active;
            }
            let remaining_bytes = budget_of(tx, caller, &channel_id)?;
            Ok(StartSessionResponse {
                session_id: SessionId(sid),
                channel_id,
                status,
                speed: speed_of(params.as_ref()),
                bytes_in: 0,
                bytes_out: 0,
                remaining_bytes,
            })
        })
    }

    /// The session a StartSession with this connection id opened (open or stopped); never
    /// opens one (404 when there is none).
    pub fn find_session(
        &self,
        caller: &Caller,
        req: &FindSessionRequest,
    ) -> Result<StartSessionResponse> {
        let product = match caller {
            Caller::Product(p) => Some(p.as_str()),
            _ => None,
        };
        self.db.read(|tx| {
            let (channel_id, status, params) = channel_of(tx, caller, product, &req.client_key)?;
            let known =
                sessions::by_connection(tx, &channel_id, &req.connection_id)?.ok_or_else(|| {
                    CoreError::NotFound(format!(
                        "no session has connection id {}",
                        req.connection_id
                    ))
                })?;
            let remaining_bytes = budget_of(tx, caller, &channel_id)?;
            Ok(StartSessionResponse {
                session_id: SessionId(known.id),
                channel_id,
                status,
                speed: speed_of(params.as_ref()),
                bytes_in: known.bytes_in,
                bytes_out: known.bytes_out,
                remaining_bytes,
            })
        })
    }

    pub fn update_session(
        &self,
        caller: &Caller,
        req: &UpdateSessionRequest,
    ) -> Result<UpdateSessionResponse> {
        let r = self.record_usage(caller, &req.session_id, req.bytes_in, req.bytes_out, false)?;
        Ok(update_answer(&req.session_id, &r))
    }

    pub fn stop_session(
        &self,
        caller: &Caller,
        req: &StopSessionRequest,
    ) -> Result<StopSessionResponse> {
        let r = self.record_usage(caller, &req.session_id, req.bytes_in, req.bytes_out, true)?;
        Ok(StopSessionResponse {
            session_id: req.session_id.clone(),
            status: r.status,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            channel_bytes: r.channel_bytes,
            units_used: billing::units_used(r.channel_bytes),
            stopped: r.stopped_now,
        })
    }

    /// UpdateSessions: every report applied as UpdateSession would, all in one transaction
    /// (one commit, one durable write); a report the core refuses (unknown session,
    /// overflow) gets its error and the others still count. A storage failure fails the
    /// whole batch (nothing of it is recorded).
    pub fn update_sessions(
        &self,
        caller: &Caller,
        req: &UpdateSessionsRequest,
    ) -> Result<UpdateSessionsResponse> {
        let outcomes = self.db.write(|tx| {
            let now = now_ms();
            let mut out = Vec::with_capacity(req.updates.len());
            for u in &req.updates {
                match record_in_tx(
                    tx,
                    caller,
                    &u.session_id,
                    u.bytes_in,
                    u.bytes_out,
                    false,
                    now,
                ) {
                    Ok(r) => out.push(Ok(r)),
                    Err(e) if !matches!(e.code(), ErrorCode::Internal | ErrorCode::Unavailable) => {
                        out.push(Err(e))
                    }
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, CoreError>(out)
        })?;
        let results = req
            .updates
            .iter()
            .zip(outcomes)
            .map(|(u, r)| match r {
                Ok(r) => {
                    self.count_usage(&r);
                    UpdateSessionsResult {
                        session_id: u.session_id.clone(),
                        update: Some(update_answer(&u.session_id, &r)),
                        error: None,
                    }
                }
                Err(e) => UpdateSessionsResult {
                    session_id: u.session_id.clone(),
                    update: None,
                    error: Some(ErrorDetail {
                        code: e.code(),
                        message: e.to_string(),
                        status: e.status(),
                    }),
                },
            })
            .collect();
        Ok(UpdateSessionsResponse { results })
    }

    /// Records cumulative counters (per-field maximum, so replays and reordering change
    /// nothing), optionally closes the session, then applies the billing rules.
    fn record_usage(
        &self,
        caller: &Caller,
        session_id: &SessionId,
        bytes_in: u64,
        bytes_out: u64,
        stop: bool,
    ) -> Result<Usage> {
        let r = self.db.write(|tx| {
            record_in_tx(tx, caller, session_id, bytes_in, bytes_out, stop, now_ms())
        })?;
        self.count_usage(&r);
        Ok(r)
    }

    /// A committed report: counted for the console's plot (in memory, written in batches).
    fn count_usage(&self, r: &Usage) {
        let (channel, added_in, added_out, at) = &r.added;
        if added_in + added_out > 0 {
            self.usage_series.add(channel, *added_in, *added_out, *at);
        }
    }
}

/// The UpdateSession answer of a recorded report.
fn update_answer(session_id: &SessionId, r: &Usage) -> UpdateSessionResponse {
    UpdateSessionResponse {
        session_id: session_id.clone(),
        status: r.status,
        bytes_in: r.bytes_in,
        bytes_out: r.bytes_out,
        channel_bytes: r.channel_bytes,
        units_used: billing::units_used(r.channel_bytes),
        remaining_bytes: r.remaining_bytes,
        closed: r.closed,
    }
}

/// One usage report inside the caller's transaction: the counters, the session's stop, the
/// billing rules. Refusals (unknown session, overflow) come before any write.
fn record_in_tx(
    tx: &Tx<'_>,
    caller: &Caller,
    session_id: &SessionId,
    bytes_in: u64,
    bytes_out: u64,
    stop: bool,
    now: i64,
) -> Result<Usage> {
    let not_found = || CoreError::NotFound(format!("unknown session {session_id}"));
    let s = sessions::usage(tx, &session_id.0)?.ok_or_else(not_found)?;
    let allowed = match caller {
        Caller::Admin => true,
        Caller::Product(p) => s.side == Side::Agent && s.product_id.as_deref() == Some(p.as_str()),
        Caller::Client => s.side == Side::Client,
    };
    if !allowed {
        return Err(not_found());
    }
    let (old_in, old_out) = (s.bytes_in, s.bytes_out);
    // Per-field maximum, also after the stop: a later StopSession with higher final counts
    // wins (the monitor may stop a session with its last bytecount before the
    // client-disconnect hook brings OpenVPN's exact final counters), and a session that a
    // newer one replaced while its connection lived on (the client logged in again
    // elsewhere) is counted to its last byte; its answer says `closed`, so its adapter
    // disconnects the client.
    let (new_in, new_out) = (old_in.max(bytes_in), old_out.max(bytes_out));
    // Counters only grow (per-field maximum), and each is at most MAX_BYTE_COUNT (a
    // rule of the request), so neither difference underflows; their sum and the
    // channel's new total are checked.
    let delta = new_in
        .saturating_sub(old_in)
        .checked_add(new_out.saturating_sub(old_out));
    let total = delta.and_then(|d| s.channel_bytes.checked_add(d));
    let (Some(delta), Some(channel_bytes)) =
        (delta, total.filter(|t| *t <= api::MAX_CHANNEL_BYTES))
    else {
        return Err(CoreError::UsageOverflow {
            channel: s.channel_id.clone(),
            total: s.channel_bytes,
            delta: delta.unwrap_or(u64::MAX),
        });
    };
    let stopped_now = stop && !s.stopped;
    if delta > 0 || stopped_now {
        sessions::set_counts(tx, &session_id.0, new_in, new_out, now, stopped_now)?;
    }
    if delta > 0 {
        channels::add_bytes(tx, &s.channel_id, delta)?;
    }
    // Billing looks again only when the units used or the session changed: every usage
    // rule of `billing::next_status` counts whole units, so a report that stays within the
    // same unit changes no status (timers and cheques apply the rules themselves; the
    // timers run every second). Most reports take this path: three statements, no billing.
    let same_units = billing::units_used(s.channel_bytes) == billing::units_used(channel_bytes);
    let (status, remaining_bytes) = match (&s.terms, s.side) {
        (_, Side::Client) => (s.channel_status, None),
        (Some(terms), Side::Agent) if same_units && !stopped_now => (
            s.channel_status,
            Some(billing::remaining_bytes(
                terms,
                s.channel_status,
                channel_bytes,
                s.channel_deposit,
            )),
        ),
        (_, Side::Agent) if delta > 0 || stopped_now => {
            let (status, left) = apply_billing_budget(tx, &s.channel_id, now)?;
            (status, Some(left))
        }
        (_, Side::Agent) => (s.channel_status, Some(budget(tx, &s.channel_id)?)),
    };
    Ok(Usage {
        status,
        bytes_in: new_in,
        bytes_out: new_out,
        channel_bytes,
        stopped_now,
        closed: s.stopped && !stop,
        remaining_bytes,
        added: (
            s.channel_id,
            new_in.saturating_sub(old_in),
            new_out.saturating_sub(old_out),
            now,
        ),
    })
}
