//! The service-status rules of DESIGN §2 as a pure function of a channel's state.
//!
//! The agent core calls [`next_status`] after every change that matters (a usage report, a
//! session start or stop, a payment, the clock) and applies the answer until it is `None`.

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
    /// All bytes (in + out) of every session of the channel.
    pub bytes_total: u64,
    pub deposit: u64,
    pub has_open_session: bool,
    /// Total of the best payment cheque received, when the channel is paid by cheques
    /// (accepted over the market). `None`: the deposit alone pays (manual channels), and
    /// the lag rule does not apply.
    pub amount_paid: Option<u64>,
}

/// Units used: whole MB consumed (floor), so a unit counts once it is fully used.
pub fn units_used(bytes_total: u64) -> u64 {
    bytes_total / BYTES_PER_UNIT
}

/// Cost so far in base units: setup price + every used unit beyond `freeUnits`.
pub fn cost(terms: &BillingTerms, units: u64) -> u128 {
    u128::from(terms.setup_price)
        + u128::from(units.saturating_sub(terms.free_units)) * u128::from(terms.unit_price)
}

/// Smallest deposit a channel needs: setupPrice + minUnits·unitPrice.
pub fn min_deposit(terms: &BillingTerms) -> u128 {
    u128::from(terms.setup_price) + u128::from(terms.min_units) * u128::from(terms.unit_price)
}

/// Deposit that buys `maxUnits` (after the free ones): the default deposit of a new channel.
pub fn full_deposit(terms: &BillingTerms) -> u128 {
    cost(terms, terms.max_units)
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

/// The next status transition, if any, with a human-readable reason.
pub fn next_status(
    terms: &BillingTerms,
    st: &ChannelState,
    now_ms: i64,
) -> Option<(ServiceStatus, String)> {
    use ServiceStatus::*;
    let in_status_s = now_ms.saturating_sub(st.status_since_ms).max(0) / 1000;
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
    let c = cost(terms, units);
    if c >= u128::from(st.deposit) {
        return Some((
            Terminating,
            format!("deposit used up: cost {c} >= deposit {}", st.deposit),
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
        Activating
            if in_status_s > i64::try_from(terms.max_inactive_time_s).unwrap_or(i64::MAX) =>
        {
            Some((
                Terminating,
                format!(
                    "not used within maxInactiveTime ({} s)",
                    terms.max_inactive_time_s
                ),
            ))
        }
        Suspended if in_status_s > i64::try_from(terms.max_suspend_time_s).unwrap_or(i64::MAX) => {
            Some((
                Terminating,
                format!(
                    "suspended longer than maxSuspendTime ({} s)",
                    terms.max_suspend_time_s
                ),
            ))
        }
        Suspending if !st.has_open_session => {
            Some((Suspended, "service stopped after suspension".to_string()))
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
            bytes_total: bytes,
            deposit,
            has_open_session: open,
            amount_paid: None,
        }
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
        assert_eq!(min_deposit(&t), 2_000_000);
        assert_eq!(full_deposit(&t), 1_000_000 + 95 * 100_000);
    }

    #[test]
    fn max_units_terminates() {
        let t = terms();
        let full = u64::try_from(full_deposit(&t)).expect("fits") + 1;
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
        assert_eq!(next_status(&t, &a, 1_000_000 + 120_000), None);
        assert_eq!(
            next_status(&t, &a, 1_000_000 + 121_000).map(|x| x.0),
            Some(Terminating)
        );
        let s = st(Suspended, 0, 10_000_000, false);
        assert_eq!(next_status(&t, &s, 1_000_000 + 60_000), None);
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
}
