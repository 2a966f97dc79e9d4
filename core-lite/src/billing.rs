//! The billing rules of DESIGN §2 as pure functions of a channel's state: money, units and
//! the service status.
//!
//! The agent core calls [`next_status`] after every change that matters (a usage report, a
//! session start or stop, a payment, the clock) and applies the answer until it is `None`.
//!
//! # Money
//!
//! Money is integer base units (1 PRIX = 10^8). The first `freeUnits` units are free, so
//! using `n` units costs [`cost`] = `setupPrice + max(n − freeUnits, 0) · unitPrice`. From that
//! one function:
//! - the **full deposit** ([`full_deposit`]) is the cost of `maxUnits` units: it buys every
//!   unit the offering sells, and is the default deposit of a new channel. An offering whose
//!   full deposit does not fit 64 bits is refused at publish;
//! - the **minimum deposit** ([`min_deposit`]) is the cost of `max(minUnits, 1)` units: it
//!   buys `minUnits` (the specification: "deposit must suffice to buy this amount") and never
//!   less than the first unit, so that a channel is never created that the money rule below
//!   would end at once. A trial (`freeUnits` ≥ `minUnits`, `freeUnits` ≥ 1) needs only the
//!   setup price, a free offering (`unitPrice` 0) only the setup price;
//! - a channel ends for lack of money only when the **next** unit cannot be paid:
//!   `cost(unitsUsed + 1) > deposit`. Free units and free offerings are usable up to
//!   `maxUnits`; a deposit buys exactly the units it covers.
//!
//! # Timers
//!
//! Limits are seconds; deadlines are compared in milliseconds. A timer's deadline is
//! `start + limit · 1000` ms and it fires at the first evaluation with `now ≥ deadline`: the
//! limit is the *maximum* time the agent waits ("Maximum time Agent will wait …"), so once it
//! has passed in full the wait is over. (DESIGN's "longer than" read at millisecond
//! resolution: a channel still waiting at the deadline has waited the whole limit.)
//! - `maxInactiveTime` counts from the channel's **creation** and applies only until its
//!   first session (the specification: "wait for Client to start using the service for the
//!   first time"). A channel that was used and is `activating` again after a payment has no
//!   inactivity timer, like an `active` channel without a session.
//! - `maxSuspendTime` counts from the start of the **suspension** (entering `suspending`, or
//!   `suspended` when set directly) and bounds `suspending` and `suspended` together: a
//!   channel whose session is never stopped (no adapter, or one that never reacts) is
//!   terminated at that deadline too. A payment that ends the suspension ends the wait.

use service_api::{ServiceStatus, BYTES_PER_UNIT};

/// The offering terms billing needs (money in base units, times in seconds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillingTerms {
    pub unit_price: u64,
    pub setup_price: u64,
    pub min_units: u64,
    pub max_units: u64,
    pub free_units: u64,
    pub max_billing_unit_lag: u64,
    pub billing_interval: u64,
    pub max_suspend_time_s: u64,
    pub max_inactive_time_s: u64,
}

/// What billing needs to know about one channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelState {
    pub status: ServiceStatus,
    /// When `status` was entered (unix ms).
    pub status_since_ms: i64,
    /// When the channel was created (unix ms): `maxInactiveTime` counts from here.
    pub created_at_ms: i64,
    /// Whether a session was ever started: the first one ends the `maxInactiveTime` wait.
    pub had_session: bool,
    /// When the current suspension began (entering `suspending`, or `suspended` directly);
    /// `None` when the channel is not suspending or suspended. `maxSuspendTime` counts from
    /// here.
    pub suspended_since_ms: Option<i64>,
    /// All bytes (in + out) of every session of the channel.
    pub bytes_total: u64,
    pub deposit: u64,
    pub has_open_session: bool,
    /// Total of the best payment cheque received, when the channel is paid by cheques
    /// (accepted over the market). `None`: the deposit alone pays (manual channels), and
    /// the lag rule does not apply.
    pub amount_paid: Option<u64>,
}

impl ChannelState {
    /// The state after entering `status` at `now_ms` (as [`next_status`] asked).
    pub fn enter(&mut self, status: ServiceStatus, now_ms: i64) {
        let suspension = |s| matches!(s, ServiceStatus::Suspending | ServiceStatus::Suspended);
        self.suspended_since_ms = match (suspension(status), self.suspended_since_ms) {
            (false, _) => None,
            (true, Some(since)) if suspension(self.status) => Some(since),
            (true, _) => Some(now_ms),
        };
        self.status = status;
        self.status_since_ms = now_ms;
    }
}

/// Units used: whole MB consumed (floor), so a unit counts once it is fully used.
pub fn units_used(bytes_total: u64) -> u64 {
    bytes_total / BYTES_PER_UNIT
}

/// Cost of using `units` units, in base units: setupPrice + every unit beyond `freeUnits`.
/// The one price function; every deposit and amount below is derived from it.
pub fn cost(terms: &BillingTerms, units: u64) -> u128 {
    u128::from(terms.setup_price)
        + u128::from(units.saturating_sub(terms.free_units)) * u128::from(terms.unit_price)
}

/// Smallest deposit a channel needs: the cost of `max(minUnits, 1)` units (see the module
/// docs). `None` when it does not fit 64 bits.
pub fn min_deposit(terms: &BillingTerms) -> Option<u64> {
    u64::try_from(cost(terms, terms.min_units.max(1))).ok()
}

/// Deposit that buys every unit of the offering: the cost of `maxUnits` units, the default
/// deposit of a new channel. `None` when it does not fit 64 bits (refused at publish).
pub fn full_deposit(terms: &BillingTerms) -> Option<u64> {
    u64::try_from(cost(terms, terms.max_units)).ok()
}

/// Whether `deposit` pays for one more unit after `units` used ones.
pub fn next_unit_affordable(terms: &BillingTerms, units: u64, deposit: u64) -> bool {
    cost(terms, units.saturating_add(1)) <= u128::from(deposit)
}

/// The units used at which the channel ends: `maxUnits`, or the first count whose next
/// unit the deposit cannot pay ([`next_unit_affordable`]), whichever is lower.
pub fn last_units(terms: &BillingTerms, deposit: u64) -> u64 {
    let affordable = if deposit < terms.setup_price {
        0
    } else {
        (deposit - terms.setup_price)
            .checked_div(terms.unit_price)
            .map_or(u64::MAX, |paid| terms.free_units.saturating_add(paid))
    };
    terms.max_units.min(affordable)
}

/// Bytes a channel may still use before it ends ([`last_units`]); 0 when its status does
/// not admit traffic. The server adapter enforces it in the kernel between two reports.
pub fn remaining_bytes(
    terms: &BillingTerms,
    status: ServiceStatus,
    bytes_total: u64,
    deposit: u64,
) -> u64 {
    if !matches!(status, ServiceStatus::Activating | ServiceStatus::Active) {
        return 0;
    }
    last_units(terms, deposit)
        .saturating_mul(BYTES_PER_UNIT)
        .saturating_sub(bytes_total)
}

/// Units covered by `amount_paid`: what is left after the setup price, in whole units.
pub fn paid_units(terms: &BillingTerms, amount_paid: u64) -> u64 {
    let after_setup = amount_paid.saturating_sub(terms.setup_price);
    if amount_paid < terms.setup_price {
        return 0;
    }
    // A unit price of 0 makes every unit paid.
    after_setup
        .checked_div(terms.unit_price)
        .unwrap_or(u64::MAX)
}

/// Units used beyond `freeUnits` and not paid for. `None` when the channel is not paid by
/// cheques.
pub fn unpaid_units(
    terms: &BillingTerms,
    bytes_total: u64,
    amount_paid: Option<u64>,
) -> Option<u64> {
    let paid = amount_paid?;
    let billable = units_used(bytes_total).saturating_sub(terms.free_units);
    let setup_unpaid = paid < terms.setup_price;
    let unpaid = billable.saturating_sub(paid_units(terms, paid));
    // An unpaid setup price counts as lag beyond any tolerance once a unit is billable.
    Some(if setup_unpaid && billable > 0 {
        unpaid.max(terms.max_billing_unit_lag.saturating_add(1))
    } else {
        unpaid
    })
}

/// Amount the client owes for `units` (all used units) in base units, capped at `deposit`.
pub fn amount_for_units(terms: &BillingTerms, units: u64, deposit: u64) -> u64 {
    let c = cost(terms, units);
    u64::try_from(c.min(u128::from(deposit))).unwrap_or(deposit)
}

/// The instant (unix ms) a timer of `limit_s` seconds started at `start_ms` fires.
pub fn deadline_ms(start_ms: i64, limit_s: u64) -> i64 {
    let limit_ms = i64::try_from(limit_s)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .unwrap_or(i64::MAX);
    start_ms.saturating_add(limit_ms)
}

/// The next status transition, if any, with a human-readable reason.
pub fn next_status(
    terms: &BillingTerms,
    st: &ChannelState,
    now_ms: i64,
) -> Option<(ServiceStatus, String)> {
    use ServiceStatus::*;
    match st.status {
        Pending | Terminated => return None,
        Terminating => {
            return (!st.has_open_session)
                .then(|| (Terminated, "service stopped after termination".to_string()));
        }
        _ => {}
    }
    let units = units_used(st.bytes_total);
    if units >= terms.max_units {
        return Some((
            Terminating,
            format!("maxUnits used: {units} of {} units", terms.max_units),
        ));
    }
    if !next_unit_affordable(terms, units, st.deposit) {
        return Some((
            Terminating,
            format!(
                "deposit used up: {units} units used, unit {} would bring the cost to {} > deposit {}",
                units.saturating_add(1),
                cost(terms, units.saturating_add(1)),
                st.deposit
            ),
        ));
    }
    let lag = unpaid_units(terms, st.bytes_total, st.amount_paid);
    let lagging = lag.is_some_and(|l| l > terms.max_billing_unit_lag);
    match st.status {
        Activating | Active if lagging => {
            return Some((
                Suspending,
                format!(
                    "payment lag: {} unpaid units > maxBillingUnitLag {}",
                    lag.unwrap_or(0),
                    terms.max_billing_unit_lag
                ),
            ));
        }
        Suspending | Suspended if lag.is_some() && !lagging => {
            let next = if st.status == Suspending && st.has_open_session {
                Active
            } else {
                Activating
            };
            return Some((
                next,
                format!("payment received: {} unpaid units", lag.unwrap_or(0)),
            ));
        }
        _ => {}
    }
    match st.status {
        Suspending if !st.has_open_session => {
            Some((Suspended, "service stopped after suspension".to_string()))
        }
        Activating
            if !st.had_session
                && now_ms >= deadline_ms(st.created_at_ms, terms.max_inactive_time_s) =>
        {
            Some((
                Terminating,
                format!(
                    "not used within maxInactiveTime ({} s) of the channel's creation",
                    terms.max_inactive_time_s
                ),
            ))
        }
        Suspending | Suspended
            if now_ms
                >= deadline_ms(
                    st.suspended_since_ms.unwrap_or(st.status_since_ms),
                    terms.max_suspend_time_s,
                ) =>
        {
            Some((
                Terminating,
                format!(
                    "suspended for maxSuspendTime ({} s)",
                    terms.max_suspend_time_s
                ),
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
