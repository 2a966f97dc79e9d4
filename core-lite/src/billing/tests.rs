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
        let (s, why) = next_status(&t, &st(Active, 5_000_000, deposit, true), 0).expect("6th unit");
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
