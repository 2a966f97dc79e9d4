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
mod tests {
    use super::*;
    use ServiceStatus::*;

    fn terms() -> BillingTerms {
        BillingTerms {
            unit_price: 100_000,
            setup_price: 1_000_000,
            min_units: 10,
            max_units: 100,
            free_units: 5,
            max_billing_unit_lag: 10,
            billing_interval: 10,
            max_suspend_time_s: 60,
            max_inactive_time_s: 120,
        }
    }

    fn st(status: ServiceStatus, bytes: u64, deposit: u64, open: bool) -> ChannelState {
        ChannelState {
            status,
            status_since_ms: 1_000_000,
            created_at_ms: 1_000_000,
            had_session: open,
            suspended_since_ms: matches!(status, Suspending | Suspended).then_some(1_000_000),
            bytes_total: bytes,
            deposit,
            has_open_session: open,
            amount_paid: None,
        }
    }

    #[test]
    fn remaining_bytes_end_where_next_status_terminates() {
        let t = terms();
        for deposit in [0, t.setup_price, full_deposit(&t).unwrap_or(0), 12_345_678] {
            let left = remaining_bytes(&t, Active, 0, deposit);
            // One byte short of the budget the channel is still in service, at the budget it
            // ends (maxUnits or the deposit).
            if left > 0 {
                let before = st(Active, left - 1, deposit, true);
                assert_eq!(next_status(&t, &before, 0), None, "deposit {deposit}");
            }
            let at = st(Active, left, deposit, true);
            assert_eq!(
                next_status(&t, &at, 0).map(|(s, _)| s),
                Some(Terminating),
                "deposit {deposit}, budget {left}"
            );
            assert_eq!(
                remaining_bytes(&t, Active, left, deposit),
                0,
                "deposit {deposit}"
            );
        }
        assert_eq!(remaining_bytes(&t, Suspending, 0, 12_345_678), 0);
        assert_eq!(remaining_bytes(&t, Terminating, 0, 12_345_678), 0);
        let free = free(0, 0, 0);
        assert_eq!(
            remaining_bytes(&free, Active, 1, 0),
            free.max_units * BYTES_PER_UNIT - 1
        );
    }

    #[test]
    fn units_are_whole_megabytes() {
        assert_eq!(units_used(0), 0);
        assert_eq!(units_used(999_999), 0);
        assert_eq!(units_used(1_000_000), 1);
        assert_eq!(units_used(u64::MAX), u64::MAX / 1_000_000);
    }

    #[test]
    fn cost_counts_setup_and_units_beyond_free() {
        let t = terms();
        assert_eq!(cost(&t, 0), 1_000_000);
        assert_eq!(cost(&t, 5), 1_000_000);
        assert_eq!(cost(&t, 6), 1_100_000);
        // minUnits 10, 5 of them free: setup + 5 paid units (free units are free here too).
        assert_eq!(min_deposit(&t), Some(1_500_000));
        assert_eq!(full_deposit(&t), Some(1_000_000 + 95 * 100_000));
    }

    #[test]
    fn max_units_terminates() {
        let t = terms();
        let full = full_deposit(&t).expect("fits") + 1;
        assert_eq!(
            next_status(&t, &st(Active, 99_999_999, full, true), 1_000_000),
            None
        );
        let (s, why) =
            next_status(&t, &st(Active, 100_000_000, full, true), 1_000_000).expect("transition");
        assert_eq!(s, Terminating);
        assert!(why.contains("maxUnits"), "{why}");
    }

    #[test]
    fn deposit_exhaustion_terminates() {
        let t = terms();
        // deposit buys setup + 10 paid units: 15 units used (5 free) = exactly the deposit
        let deposit = 2_000_000;
        assert_eq!(
            next_status(&t, &st(Active, 14_999_999, deposit, true), 0),
            None
        );
        let (s, why) = next_status(&t, &st(Active, 15_000_000, deposit, true), 0).expect("t");
        assert_eq!(s, Terminating);
        assert!(why.contains("deposit"), "{why}");
    }

    #[test]
    fn terminating_and_suspending_finish_when_session_closed() {
        let t = terms();
        assert_eq!(
            next_status(&t, &st(Terminating, 0, 10_000_000, true), 0),
            None
        );
        assert_eq!(
            next_status(&t, &st(Terminating, 0, 10_000_000, false), 0).map(|x| x.0),
            Some(Terminated)
        );
        assert_eq!(
            next_status(&t, &st(Suspending, 0, 10_000_000, true), 0),
            None
        );
        assert_eq!(
            next_status(&t, &st(Suspending, 0, 10_000_000, false), 0).map(|x| x.0),
            Some(Suspended)
        );
        assert_eq!(
            next_status(&t, &st(Terminated, 10u64.pow(12), 1, false), 0),
            None
        );
    }

    #[test]
    fn payment_lag_suspends_and_payment_resumes() {
        let t = terms(); // 5 free units, lag 10, setup 1_000_000, unit 100_000
        let deposit = 100_000_000;
        let paid = |bytes: u64, amount: u64, status, open| ChannelState {
            amount_paid: Some(amount),
            ..st(status, bytes, deposit, open)
        };
        // setup + 10 units paid; 25 used = 20 billable, 10 unpaid: within the lag
        assert_eq!(
            next_status(&t, &paid(25_000_000, 2_000_000, Active, true), 0),
            None
        );
        // 26 used: 11 unpaid > 10
        let (s, why) = next_status(&t, &paid(26_000_000, 2_000_000, Active, true), 0).expect("lag");
        assert_eq!(s, Suspending);
        assert!(why.contains("lag"), "{why}");
        // suspending with the session gone settles to suspended
        assert_eq!(
            next_status(&t, &paid(26_000_000, 2_000_000, Suspending, false), 0).map(|x| x.0),
            Some(Suspended)
        );
        // a payment that brings the lag back: suspended -> activating
        assert_eq!(
            next_status(&t, &paid(26_000_000, 2_100_000, Suspended, false), 0).map(|x| x.0),
            Some(Activating)
        );
        // paid while still suspending with a session open: back to active
        assert_eq!(
            next_status(&t, &paid(26_000_000, 2_100_000, Suspending, true), 0).map(|x| x.0),
            Some(Active)
        );
        // setup price unpaid: suspended once a unit is billable
        assert_eq!(next_status(&t, &paid(5_999_999, 0, Active, true), 0), None);
        assert_eq!(
            next_status(&t, &paid(6_000_000, 0, Active, true), 0).map(|x| x.0),
            Some(Suspending)
        );
        // channels without cheques (manual) never lag
        assert_eq!(
            next_status(&t, &st(Active, 50_000_000, deposit, true), 0),
            None
        );
    }

    #[test]
    fn amounts() {
        let t = terms();
        assert_eq!(paid_units(&t, 0), 0);
        assert_eq!(paid_units(&t, 999_999), 0);
        assert_eq!(paid_units(&t, 1_000_000), 0);
        assert_eq!(paid_units(&t, 1_250_000), 2);
        assert_eq!(amount_for_units(&t, 15, u64::MAX), 2_000_000);
        assert_eq!(amount_for_units(&t, 15, 1_500_000), 1_500_000);
        let free = BillingTerms {
            unit_price: 0,
            setup_price: 0,
            ..terms()
        };
        assert_eq!(paid_units(&free, 0), u64::MAX);
    }

    #[test]
    fn timers() {
        let t = terms();
        let a = st(Activating, 0, 10_000_000, false);
        // The deadline is exact, in milliseconds: 120 s after creation, not a second later.
        assert_eq!(next_status(&t, &a, 1_000_000 + 119_999), None);
        assert_eq!(
            next_status(&t, &a, 1_000_000 + 120_000).map(|x| x.0),
            Some(Terminating)
        );
        assert_eq!(
            next_status(&t, &a, 1_000_000 + 121_000).map(|x| x.0),
            Some(Terminating)
        );
        let s = st(Suspended, 0, 10_000_000, false);
        assert_eq!(next_status(&t, &s, 1_000_000 + 59_999), None);
        assert_eq!(
            next_status(&t, &s, 1_000_000 + 60_000).map(|x| x.0),
            Some(Terminating)
        );
        assert_eq!(
            next_status(&t, &s, 1_000_000 + 61_000).map(|x| x.0),
            Some(Terminating)
        );
        // active channels have no timer
        assert_eq!(
            next_status(&t, &st(Active, 0, 10_000_000, false), i64::MAX),
            None
        );
    }

    fn free(unit_price: u64, setup_price: u64, free_units: u64) -> BillingTerms {
        BillingTerms {
            unit_price,
            setup_price,
            min_units: 0,
            max_units: 10,
            free_units,
            ..terms()
        }
    }

    #[test]
    fn a_free_offering_ends_at_max_units_not_for_money() {
        let t = free(0, 0, 0);
        assert_eq!(full_deposit(&t), Some(0));
        assert_eq!(min_deposit(&t), Some(0));
        // deposit 0: admitted, usable up to maxUnits
        assert_eq!(
            next_status(&t, &st(Activating, 0, 0, false), 1_000_000),
            None
        );
        assert_eq!(next_status(&t, &st(Active, 9_999_999, 0, true), 0), None);
        let (s, why) = next_status(&t, &st(Active, 10_000_000, 0, true), 0).expect("maxUnits");
        assert_eq!(s, Terminating);
        assert!(why.contains("maxUnits"), "{why}");
        // A setup price alone: the deposit that covers it buys every unit.
        let t = free(0, 700, 0);
        assert_eq!((min_deposit(&t), full_deposit(&t)), (Some(700), Some(700)));
        assert_eq!(next_status(&t, &st(Active, 9_999_999, 700, true), 0), None);
    }

    #[test]
    fn a_trial_uses_its_free_units_then_needs_money() {
        // 5 free units, then 100 per unit; deposit 0, or exactly the setup price.
        for (setup, deposit) in [(0, 0), (1_000, 1_000)] {
            let t = free(100, setup, 5);
            assert_eq!(
                min_deposit(&t),
                Some(setup),
                "a trial needs the setup price only"
            );
            assert_eq!(
                next_status(&t, &st(Activating, 0, deposit, false), 1_000_000),
                None
            );
            assert_eq!(
                next_status(&t, &st(Active, 4_999_999, deposit, true), 0),
                None
            );
            // 5 units used: the 6th would have to be paid.
            let (s, why) =
                next_status(&t, &st(Active, 5_000_000, deposit, true), 0).expect("6th unit");
            assert_eq!(s, Terminating);
            assert!(why.contains("deposit used up"), "{why}");
            // One paid unit more in the deposit: one unit more of service.
            assert_eq!(
                next_status(&t, &st(Active, 5_999_999, deposit + 100, true), 0),
                None
            );
            assert_eq!(
                next_status(&t, &st(Active, 6_000_000, deposit + 100, true), 0).map(|x| x.0),
                Some(Terminating)
            );
        }
    }

    #[test]
    fn the_minimum_deposit_buys_min_units_and_at_least_the_first_unit() {
        // minUnits 0, nothing free: a deposit of the setup price alone would buy nothing.
        let t = free(100, 1_000, 0);
        assert_eq!(min_deposit(&t), Some(1_100));
        assert!(next_unit_affordable(&t, 0, 1_100));
        assert!(!next_unit_affordable(&t, 0, 1_099));
        // minUnits 8, 5 free: setup + 3 paid units.
        let t = BillingTerms {
            min_units: 8,
            ..free(100, 1_000, 5)
        };
        assert_eq!(min_deposit(&t), Some(1_300));
        // Beyond 64 bits: none.
        let t = BillingTerms {
            max_units: u64::MAX,
            ..free(u64::MAX, 0, 0)
        };
        assert_eq!(full_deposit(&t), None);
    }

    #[test]
    fn inactivity_counts_from_creation_until_the_first_session() {
        let t = terms(); // maxInactiveTime 120 s
                         // Activating again later (an admin or a payment): still counted from creation.
        let late = ChannelState {
            status_since_ms: 1_000_000 + 100_000,
            ..st(Activating, 0, 10_000_000, false)
        };
        assert_eq!(next_status(&t, &late, 1_000_000 + 119_999), None);
        assert_eq!(
            next_status(&t, &late, 1_000_000 + 120_000).map(|x| x.0),
            Some(Terminating)
        );
        // A channel that had a session: no inactivity timer, however long it waits.
        let used = ChannelState {
            had_session: true,
            ..late
        };
        assert_eq!(next_status(&t, &used, i64::MAX), None);
    }

    #[test]
    fn a_suspension_times_out_from_its_start_even_with_the_session_open() {
        let t = terms(); // maxSuspendTime 60 s
                         // Suspending, and the adapter never stops the session.
        let stuck = st(Suspending, 0, 10_000_000, true);
        assert_eq!(next_status(&t, &stuck, 1_000_000 + 59_999), None);
        let (s, why) = next_status(&t, &stuck, 1_000_000 + 60_000).expect("timed out");
        assert_eq!(s, Terminating);
        assert!(why.contains("maxSuspendTime"), "{why}");
        // Suspending → suspended keeps the start of the suspension.
        let mut c = st(Suspending, 0, 10_000_000, false);
        assert_eq!(
            next_status(&t, &c, 1_000_000 + 30_000).map(|x| x.0),
            Some(Suspended)
        );
        c.enter(Suspended, 1_000_000 + 30_000);
        assert_eq!(c.suspended_since_ms, Some(1_000_000));
        assert_eq!(next_status(&t, &c, 1_000_000 + 59_999), None);
        assert_eq!(
            next_status(&t, &c, 1_000_000 + 60_000).map(|x| x.0),
            Some(Terminating)
        );
        // Leaving the suspension ends the wait; a new one starts afresh.
        c.enter(Activating, 2_000_000);
        assert_eq!(c.suspended_since_ms, None);
        c.enter(Suspending, 3_000_000);
        assert_eq!(c.suspended_since_ms, Some(3_000_000));
    }

    #[test]
    fn deadlines_saturate() {
        assert_eq!(deadline_ms(5, 2), 2_005);
        assert_eq!(deadline_ms(5, u64::MAX), i64::MAX);
        assert_eq!(deadline_ms(i64::MAX - 1, 1), i64::MAX);
        let t = BillingTerms {
            max_inactive_time_s: u64::MAX,
            ..terms()
        };
        assert_eq!(
            next_status(&t, &st(Activating, 0, 10_000_000, false), i64::MAX - 1),
            None
        );
    }
}
