//! Unit tests of the client's payment rule ([`super::client_payment`]).
use super::*;
use std::collections::BTreeMap;

fn terms(billing_type: BillingType) -> OfferingTerms {
    OfferingTerms {
        template_hash: String::new(),
        product: String::new(),
        agent_public_key: String::new(),
        nonce: String::new(),
        service_name: "Privatix VPN".into(),
        supply: 1,
        unit_name: "MB".into(),
        unit_price: 1_000,
        setup_price: 500,
        min_units: 1,
        max_units: 100,
        billing_type,
        billing_interval: 10,
        max_billing_unit_lag: 5,
        max_suspend_time_s: 60,
        max_inactive_time_s: 60,
        free_units: 2,
        country: "DE".into(),
        additional_params: BTreeMap::new(),
        speed: Default::default(),
    }
}

const MB: u64 = 1_000_000;

#[test]
fn prepaid_pays_one_interval_ahead() {
    let t = terms(BillingType::Prepaid);
    // nothing used: setup + (2 free + 10) units... free units are free: 500 + 10·1000
    assert_eq!(
        client_payment(&t, 1_000_000, 0, 0, None, 10),
        PayDecision::Pay(10_500)
    );
    assert_eq!(
        client_payment(&t, 1_000_000, 11 * MB, 10_500, None, 10),
        PayDecision::Nothing
    );
    assert_eq!(
        client_payment(&t, 1_000_000, 12 * MB, 10_500, None, 10),
        PayDecision::Pay(20_500)
    );
}

#[test]
fn postpaid_pays_whole_intervals_used() {
    let t = terms(BillingType::Postpaid);
    // The setup price (500) up front, before any unit is billable.
    assert_eq!(
        client_payment(&t, 1_000_000, 0, 0, None, 10),
        PayDecision::Pay(500)
    );
    assert_eq!(
        client_payment(&t, 1_000_000, 11 * MB, 500, None, 10),
        PayDecision::Nothing
    );
    assert_eq!(
        client_payment(&t, 1_000_000, 12 * MB, 0, None, 10),
        PayDecision::Pay(10_500)
    );
}

#[test]
fn a_postpaid_client_is_never_behind_the_agent_for_the_setup_price() {
    // The agent suspends once a unit is billable and the setup price is unpaid; the
    // client pays it before that, whatever the billing type.
    for bt in [BillingType::Prepaid, BillingType::Postpaid] {
        let t = terms(bt);
        let PayDecision::Pay(amount) = client_payment(&t, 1_000_000, 0, 0, None, 10) else {
            panic!("{bt:?}: nothing paid up front");
        };
        let b = t.billing_terms();
        let lag = billing::unpaid_units(&b, 3 * MB, Some(amount)).expect("by cheque");
        assert!(lag <= t.max_billing_unit_lag, "{bt:?}: lag {lag}");
    }
}

#[test]
fn free_and_trial_channels_pay_nothing_they_cannot() {
    // A free offering: nothing to pay, ever.
    let t = OfferingTerms {
        unit_price: 0,
        setup_price: 0,
        ..terms(BillingType::Prepaid)
    };
    assert_eq!(
        client_payment(&t, 0, 50 * MB, 0, None, 10),
        PayDecision::Nothing
    );
    // A trial with a deposit of 0: nothing above the deposit.
    let t = OfferingTerms {
        setup_price: 0,
        ..terms(BillingType::Postpaid)
    };
    assert_eq!(
        client_payment(&t, 0, 2 * MB, 0, None, 10),
        PayDecision::Nothing
    );
}

#[test]
fn never_above_deposit() {
    let t = terms(BillingType::Prepaid);
    assert_eq!(
        client_payment(&t, 3_000, 0, 0, None, 10),
        PayDecision::Pay(3_000)
    );
    assert_eq!(
        client_payment(&t, 3_000, 0, 3_000, None, 10),
        PayDecision::Nothing
    );
}

#[test]
fn agent_due_is_paid_within_tolerance_and_refused_beyond() {
    let t = terms(BillingType::Postpaid);
    // We measured 50 MB; the agent counts 53 (6 % more): pay what it asks.
    let due = billing::amount_for_units(&t.billing_terms(), 53, 1_000_000);
    assert_eq!(
        client_payment(&t, 1_000_000, 50 * MB, 40_500, Some(due), 10),
        PayDecision::Pay(due)
    );
    // The agent claims 80: pay only what 50 MB + 10 % allows, and say so.
    let due = billing::amount_for_units(&t.billing_terms(), 80, 1_000_000);
    let allowed = billing::amount_for_units(&t.billing_terms(), 56, 1_000_000);
    assert_eq!(
        client_payment(&t, 1_000_000, 50 * MB, 40_500, Some(due), 10),
        PayDecision::Pay(allowed)
    );
    assert_eq!(
        client_payment(&t, 1_000_000, 50 * MB, allowed, Some(due), 10),
        PayDecision::Refuse { due, allowed }
    );
}
