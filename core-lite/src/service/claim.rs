//! Anti-hoarding (issue 13): a channel accepted over the market must be claimed within the
//! agent's claim window (`serve --claim-window-secs`, default 5 minutes): prepaid, by
//! paying the first interval (the setup price and one billing interval of billable units);
//! postpaid, by being used (a session). Otherwise it is closed (`terminated`, or
//! `terminating` while a session is open) and its supply returns to the offering.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use service_api::ServiceStatus;

use super::state::Core;
use super::status::set_status;
use crate::billing;
use crate::error::Result;
use crate::store::channels::{self, AgentKey};
use crate::store::claims;

/// The default claim window.
pub const DEFAULT_CLAIM_WINDOW: Duration = Duration::from_secs(300);

/// The agent's claim window, in ms.
#[derive(Debug)]
pub struct ClaimWindow(AtomicI64);

impl Default for ClaimWindow {
    fn default() -> Self {
        ClaimWindow(AtomicI64::new(
            i64::try_from(DEFAULT_CLAIM_WINDOW.as_millis()).unwrap_or(i64::MAX),
        ))
    }
}

impl Core {
    /// Sets the claim window of channels accepted from now on.
    pub fn set_claim_window(&self, window: Duration) {
        let ms = i64::try_from(window.as_millis()).unwrap_or(i64::MAX);
        self.claim_window.0.store(ms.max(1), Ordering::Relaxed);
    }

    /// Caps the wait of every WatchStatus call (a proxy in front with a shorter idle
    /// timeout; tests). A call that asks for longer answers after this, with no change.
    pub fn set_watch_max_wait(&self, wait: Duration) {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        self.watch_max_wait_ms.store(ms, Ordering::Relaxed);
    }

    /// The longest WatchStatus wait, ms.
    pub(crate) fn watch_max_wait_ms(&self) -> u64 {
        self.watch_max_wait_ms.load(Ordering::Relaxed)
    }

    /// The deadline of a channel accepted at `now`.
    pub(crate) fn claim_deadline(&self, now: i64) -> i64 {
        now.saturating_add(self.claim_window.0.load(Ordering::Relaxed))
    }

    /// Closes the channels whose claim window passed unclaimed at `now`; claimed ones lose
    /// their deadline. Returns the channels whose status changed.
    pub(crate) fn release_unclaimed(&self, now: i64) -> Result<Vec<(String, ServiceStatus)>> {
        let due = self.db.read(|tx| claims::due(tx, now))?;
        let mut changed = Vec::new();
        for (id, billing_type) in due {
            let after = self.db.write(|tx| {
                let Some(ch) = channels::agent(tx, AgentKey::Id(&id), None)? else {
                    return Ok(None);
                };
                let claimed = if billing_type == "postpaid" {
                    ch.had_session || ch.bytes_total > 0
                } else {
                    let t = &ch.terms;
                    let first = t
                        .free_units
                        .saturating_add(t.billing_interval.max(1))
                        .min(t.max_units);
                    let required = billing::amount_for_units(t, first, ch.deposit);
                    ch.amount_paid.unwrap_or(0) >= required
                };
                claims::clear(tx, &id)?;
                if claimed {
                    return Ok(None);
                }
                let next = if ch.has_open_session {
                    ServiceStatus::Terminating
                } else {
                    ServiceStatus::Terminated
                };
                let why = if billing_type == "postpaid" {
                    "claim window passed without use: closed, its supply returns"
                } else {
                    "claim window passed without paying the first interval: closed, its supply returns"
                };
                set_status(tx, &id, next, now, why)?;
                Ok::<_, crate::error::CoreError>(Some(next))
            })?;
            if let Some(st) = after {
                tracing::info!(channel = %id, status = %st, "unclaimed channel released");
                changed.push((id, st));
            }
        }
        Ok(changed)
    }
}
