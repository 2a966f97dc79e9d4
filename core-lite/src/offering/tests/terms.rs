//! Edge terms that are consistent, and the deposits that follow from the terms.

use super::*;

#[test]
fn consistent_edge_terms_are_valid() {
    let m = vpn();
    let k = AgentKeys::generate();
    type Edit = fn(&mut Value);
    let cases: [(&str, Edit); 9] = [
        ("free offering", |v| {
            v["unitPrice"] = json!(0);
            v["setupPrice"] = json!(0);
        }),
        ("setup price only", |v| {
            v["unitPrice"] = json!(0);
            v["setupPrice"] = json!(1);
        }),
        ("all units free", |v| v["freeUnits"] = json!(1000)),
        ("one interval of all units", |v| {
            v["billingInterval"] = json!(1000);
            v["billingFrequency"] = json!(1000);
        }),
        ("prepaid, all units in one payment ahead", |v| {
            v["billingInterval"] = json!(5000);
            v["billingFrequency"] = json!(5000);
        }),
        ("postpaid, every unit free", |v| {
            v["billingType"] = json!("postpaid");
            v["freeUnits"] = json!(1000);
            v["billingInterval"] = json!(5000);
            v["billingFrequency"] = json!(5000);
            v["maxBillingUnitLag"] = json!(5000);
        }),
        ("postpaid, lag of one interval", |v| {
            v["billingType"] = json!("postpaid");
            v["maxBillingUnitLag"] = json!(10);
        }),
        ("prepaid, no lag tolerated", |v| {
            v["maxBillingUnitLag"] = json!(0)
        }),
        (
            "maxUnits·unitPrice beyond u64, but not after the free units",
            |v| {
                // 2·10^12 units at 0.1 PRIX = 2·10^19 base units; 10^12 of them free: 10^19.
                v["maxUnits"] = json!(2_000_000_000_000u64);
                v["freeUnits"] = json!(1_000_000_000_000u64);
                v["minUnits"] = json!(0);
                v["unitPrice"] = json!(0.1);
            },
        ),
    ];
    for (what, edit) in cases {
        let mut v = full(&m, &k);
        edit(&mut v);
        if let Err(e) = validate_offering(&m.offering_template, &v) {
            panic!("{what}: refused: {e}");
        }
    }
}

#[test]
fn one_full_deposit_counts_free_units_as_free() {
    let m = vpn();
    let k = AgentKeys::generate();
    let mut v = full(&m, &k);
    v["freeUnits"] = json!(100);
    v["setupPrice"] = json!(0.5);
    let t = validate_offering(&m.offering_template, &v).expect("valid");
    let b = t.billing_terms();
    // setup + (1000 − 100) paid units; min: setup + max(10 − 100, 0) paid units.
    assert_eq!(billing::full_deposit(&b), Some(50_000_000 + 900 * 100_000));
    assert_eq!(billing::min_deposit(&b), Some(50_000_000));
    assert_eq!(
        billing::full_deposit(&b).map(u128::from),
        Some(billing::cost(&b, t.max_units))
    );
}
