//! The service-status rules of DESIGN §2 as a pure function of a channel's state.
//!
//! The agent core calls [`next_status`] after every change that matters (a usage report, a
//! session start or stop, a payment, the clock) and applies the answer until it is `None`.

use crate::api::{ServiceStatus, BYTES_PER_UNIT};

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
