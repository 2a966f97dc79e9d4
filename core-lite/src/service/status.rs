//! Channel statuses on the agent side: [`set_status`] records every change, [`apply_billing`]
//! applies the rules of [`crate::billing`] after anything that matters, and [`Core::tick`]
//! runs the timer rules.

use service_api::ServiceStatus;

use super::state::Core;
use crate::billing::{self, ChannelState};
use crate::error::{CoreError, Result};
use crate::store::channels::{self, AgentKey};
use crate::store::{status_history, Tx};

/// Sets a channel's status and records it with its reason.
pub(crate) fn set_status(
    tx: &Tx<'_>,
    channel_id: &str,
    status: ServiceStatus,
    now: i64,
    reason: &str,
) -> Result<()> {
    channels::set_status(tx, channel_id, status, now)?;
    status_history::insert(tx, channel_id, status, now, reason)?;
    tracing::info!(channel = channel_id, status = %status, reason, "channel status changed");
    Ok(())
}

/// Applies [`billing::next_status`] until it settles; returns the final status.
pub(crate) fn apply_billing(tx: &Tx<'_>, channel_id: &str, now: i64) -> Result<ServiceStatus> {
    Ok(apply_billing_budget(tx, channel_id, now)?.0)
}

/// The bytes an agent channel may still use ([`billing::remaining_bytes`]).
pub(crate) fn budget(tx: &Tx<'_>, channel_id: &str) -> Result<u64> {
    let ch = channels::agent(tx, AgentKey::Id(channel_id), None)?
        .ok_or_else(|| CoreError::NotFound(format!("no agent channel {channel_id}")))?;
    Ok(billing::remaining_bytes(
        &ch.terms,
        ch.status,
        ch.bytes_total,
        ch.deposit,
    ))
}

/// [`apply_billing`], also answering the bytes the channel may still use afterwards.
pub(crate) fn apply_billing_budget(
    tx: &Tx<'_>,
    channel_id: &str,
    now: i64,
) -> Result<(ServiceStatus, u64)> {
    let ch = channels::agent(tx, AgentKey::Id(channel_id), None)?
        .ok_or_else(|| CoreError::NotFound(format!("no agent channel {channel_id}")))?;
    let mut st = ChannelState {
        amount_paid: ch.amount_paid,
        status: ch.status,
        status_since_ms: ch.status_since_ms,
        created_at_ms: ch.created_at_ms,
        had_session: ch.had_session,
        suspended_since_ms: ch.suspended_since_ms,
        bytes_total: ch.bytes_total,
        deposit: ch.deposit,
        has_open_session: ch.has_open_session,
    };
    for _ in 0..8 {
        let Some((next, reason)) = billing::next_status(&ch.terms, &st, now) else {
            break;
        };
        set_status(tx, channel_id, next, now, &reason)?;
        st.enter(next, now);
    }
    let left = billing::remaining_bytes(&ch.terms, st.status, st.bytes_total, st.deposit);
    Ok((st.status, left))
}

impl Core {
    /// Applies the timer rules at `now` (unix ms): maxInactiveTime, maxSuspendTime (see
    /// [`billing`] for when each counts and fires), and finishing suspending / terminating
    /// channels without a session. Returns the channels whose status changed.
    pub fn tick(&self, now: i64) -> Result<Vec<(String, ServiceStatus)>> {
        // Several cores on one PostgreSQL database run the timers in turn, never at once.
        // Each transition also locks its channel and re-reads it, so a status changes once
        // (the next core finds the new status and has nothing left to do).
        let run = || -> Result<Vec<(String, ServiceStatus)>> {
            let mut changed = self.release_unclaimed(now)?;
            let timed = self.db.read(channels::agent_with_timers)?;
            for ch in timed {
                let after = self.db.write(|tx| apply_billing(tx, &ch.id, now))?;
                if after != ch.status {
                    changed.push((ch.id, after));
                }
            }
            Ok(changed)
        };
        self.db.serialized("core-lite billing timers", run)?
    }
}
