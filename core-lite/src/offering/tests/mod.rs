use super::decimal::{decimal_text_to_scaled, DecimalError};
use super::*;
use crate::billing;
use crate::keys::AgentKeys;
use crate::template::{load_module, Module};
use serde_json::{json, Value};
use std::path::PathBuf;

fn vpn() -> Module {
    load_module(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../templates/vpn"))
        .expect("templates/vpn loads")
}

/// The agent's part of a VPN offering (the spec example filled in).
fn input() -> Value {
    json!({
        "serviceName": "Privatix VPN",
        "supply": 10,
        "unitName": "MB",
        "unitPrice": 0.001,
        "setupPrice": 0,
        "minUnits": 10,
        "maxUnits": 1000,
        "billingType": "prepaid",
        "billingInterval": 10,
        "billingFrequency": 10,
        "maxBillingUnitLag": 20,
        "maxSuspendTime": 600,
        "maxInactiveTime": 1800,
        "freeUnits": 0,
        "country": "DE",
        "additionalParams": {
            "minUploadSpeed": "1",
            "maxUploadSpeed": "4",
            "minDownloadSpeed": "1",
            "maxDownloadSpeed": "8.5"
        }
    })
}

fn full(m: &Module, keys: &AgentKeys) -> Value {
    let mut v = input();
    v["templateHash"] = json!(m.offering_hash);
    v["nonce"] = json!("0b7c8f1e-3c8a-4d5e-9f10-2a3b4c5d6e7f");
    v["agentPublicKey"] = json!(keys.public_key_b64());
    v["product"] = json!("prod-1");
    v
}

#[test]
fn spec_example_filled_in_is_valid() {
    let m = vpn();
    let k = AgentKeys::generate();
    let t = validate_offering(&m.offering_template, &full(&m, &k)).expect("valid offering");
    assert_eq!(t.template_hash, m.offering_hash);
    assert_eq!(t.product, "prod-1");
    assert_eq!(t.unit_price, 100_000); // 0.001 PRIX
    assert_eq!(t.setup_price, 0);
    assert_eq!((t.min_units, t.max_units, t.supply), (10, 1000, 10));
    assert_eq!(t.billing_type, BillingType::Prepaid);
    assert_eq!(t.billing_interval, 10);
    assert_eq!((t.max_suspend_time_s, t.max_inactive_time_s), (600, 1800));
    assert_eq!(t.country, "DE");
    assert_eq!(t.speed.max_download_bps, Some(8_500_000));
    assert_eq!(t.speed.max_upload_bps, Some(4_000_000));
    assert_eq!(t.additional_params.len(), 4);
    let b = t.billing_terms();
    assert_eq!(billing::min_deposit(&b), Some(1_000_000));
    assert_eq!(billing::full_deposit(&b), Some(100_000_000));

    // Optional fields absent: default maxInactiveTime, no billingFrequency, no speeds.
    let mut v = full(&m, &k);
    let o = v.as_object_mut().expect("obj");
    o.remove("maxInactiveTime");
    o.remove("billingFrequency");
    o.insert("additionalParams".into(), json!({}));
    o.insert("unitPrice".into(), json!(1));
    let t = validate_offering(&m.offering_template, &v).expect("valid offering");
    assert_eq!(t.max_inactive_time_s, DEFAULT_MAX_INACTIVE_TIME_S);
    assert_eq!(t.unit_price, BASE_UNITS_PER_PRIX);
    assert!(t.speed.is_unlimited());
}

#[test]
fn each_bad_field_is_named_by_its_pointer() {
    let m = vpn();
    let k = AgentKeys::generate();
    type Mutation = Box<dyn Fn(&mut Value)>;
    let remove = |name: &'static str| -> Mutation {
        Box::new(move |v: &mut Value| {
            v.as_object_mut().expect("obj").remove(name);
        })
    };
    let set = |name: &'static str, val: Value| -> Mutation {
        Box::new(move |v: &mut Value| v[name] = val.clone())
    };
    let param = |name: &'static str, val: Value| -> Mutation {
        Box::new(move |v: &mut Value| v["additionalParams"][name] = val.clone())
    };
    let cases: Vec<(&str, &str, Mutation)> = vec![
        ("missing required", "/supply", remove("supply")),
        (
            "missing required (not in properties)",
            "/billingInterval",
            remove("billingInterval"),
        ),
        ("missing product", "/product", remove("product")),
        ("missing country", "/country", remove("country")),
        ("wrong type", "/supply", set("supply", json!("10"))),
        (
            "wrong type, undefined property",
            "/billingInterval",
            set("billingInterval", json!("10")),
        ),
        ("wrong type, product", "/product", set("product", json!(7))),
        (
            "wrong const",
            "/serviceName",
            set("serviceName", json!("Other VPN")),
        ),
        (
            "bad enum",
            "/billingType",
            set("billingType", json!("monthly")),
        ),
        ("supply 0", "/supply", set("supply", json!(0))),
        (
            "minUnits > maxUnits",
            "/minUnits",
            set("minUnits", json!(1001)),
        ),
        ("maxUnits 0", "/maxUnits", set("maxUnits", json!(0))),
        ("bad country", "/country", set("country", json!("XX"))),
        (
            "lower-case country",
            "/country",
            set("country", json!("de")),
        ),
        ("reserved country", "/country", set("country", json!("UK"))),
        (
            "9-decimal price",
            "/unitPrice",
            set("unitPrice", json!(0.000000001)),
        ),
        (
            "9-decimal setup price",
            "/setupPrice",
            set("setupPrice", json!(1.123456789)),
        ),
        (
            "negative price",
            "/setupPrice",
            set("setupPrice", json!(-1)),
        ),
        ("negative count", "/freeUnits", set("freeUnits", json!(-5))),
        ("1.5 units", "/maxUnits", set("maxUnits", json!(1.5))),
        (
            "fractional lag",
            "/maxBillingUnitLag",
            set("maxBillingUnitLag", json!(0.5)),
        ),
        (
            "huge count",
            "/maxSuspendTime",
            set("maxSuspendTime", json!(1e30)),
        ),
        (
            "billingInterval 0",
            "/billingInterval",
            set("billingInterval", json!(0)),
        ),
        (
            "billingFrequency != billingInterval",
            "/billingFrequency",
            set("billingFrequency", json!(5)),
        ),
        (
            "bad maxInactiveTime",
            "/maxInactiveTime",
            set("maxInactiveTime", json!(-1)),
        ),
        (
            "non-string param",
            "/additionalParams/maxDownloadSpeed",
            param("maxDownloadSpeed", json!(8)),
        ),
        (
            "non-string custom param",
            "/additionalParams/foo.bar",
            param("foo.bar", json!(true)),
        ),
        (
            "param key with '/' (pointer escaped)",
            "/additionalParams/foo~1bar",
            param("foo/bar", json!("x")),
        ),
        (
            "speed abc",
            "/additionalParams/maxUploadSpeed",
            param("maxUploadSpeed", json!("abc")),
        ),
        (
            "speed zero",
            "/additionalParams/minUploadSpeed",
            param("minUploadSpeed", json!("0")),
        ),
        (
            "min speed > max speed",
            "/additionalParams/minDownloadSpeed",
            param("minDownloadSpeed", json!("9")),
        ),
        (
            "additionalParams not an object",
            "/additionalParams",
            set("additionalParams", json!("x")),
        ),
        (
            "wrong templateHash",
            "/templateHash",
            set("templateHash", json!("0".repeat(64))),
        ),
        (
            "malformed templateHash",
            "/templateHash",
            set("templateHash", json!("ABC")),
        ),
        ("bad nonce", "/nonce", set("nonce", json!("not-a-uuid"))),
        (
            "uuid v1 nonce",
            "/nonce",
            set("nonce", json!("c232ab00-9414-11ec-b3c8-9f6bdeced846")),
        ),
        (
            "bad agentPublicKey",
            "/agentPublicKey",
            set("agentPublicKey", json!("AAAA")),
        ),
        ("empty product", "/product", set("product", json!(""))),
        (
            "long product",
            "/product",
            set("product", json!("p".repeat(129))),
        ),
        (
            "freeUnits > maxUnits",
            "/freeUnits",
            set("freeUnits", json!(1001)),
        ),
        (
            "postpaid, billingInterval > maxUnits − freeUnits",
            "/billingInterval",
            Box::new(|v: &mut Value| {
                v["billingType"] = json!("postpaid");
                v["freeUnits"] = json!(100);
                v["billingInterval"] = json!(901);
                v["billingFrequency"] = json!(901);
                v["maxBillingUnitLag"] = json!(901);
            }),
        ),
        (
            "postpaid lag below one interval",
            "/maxBillingUnitLag",
            Box::new(|v: &mut Value| {
                v["billingType"] = json!("postpaid");
                v["maxBillingUnitLag"] = json!(9);
            }),
        ),
        (
            "full deposit beyond u64",
            "/unitPrice",
            Box::new(|v: &mut Value| {
                v["maxUnits"] = json!(10_000_000_000u64);
                v["unitPrice"] = json!(10_000);
            }),
        ),
        (
            "full deposit beyond u64 by the setup price",
            "/unitPrice",
            Box::new(|v: &mut Value| {
                // u64::MAX units at 1 base unit each, plus a setup price of 1 base unit.
                v["maxUnits"] = json!(u64::MAX);
                v["unitPrice"] = json!(0.00000001);
                v["setupPrice"] = json!(0.00000001);
            }),
        ),
        (
            "wrong unit for VPN",
            "/unitName",
            set("unitName", json!("kW")),
        ),
        (
            "long string",
            "/additionalParams/x",
            param("x", json!("y".repeat(1025))),
        ),
    ];
    for (what, pointer, mutate) in cases {
        let mut v = full(&m, &k);
        mutate(&mut v);
        let err =
            validate_offering(&m.offering_template, &v).expect_err(&format!("{what}: accepted"));
        assert!(
            err.has_pointer(pointer),
            "{what}: expected an error at {pointer}, got: {err}"
        );
        assert!(
            err.to_string().contains(&format!("{pointer}: ")),
            "{what}: {err}"
        );
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let m = vpn();
    let k = AgentKeys::generate();
    let mut v = full(&m, &k);
    v["supply"] = json!(0);
    v["country"] = json!("ZZ");
    v["unitPrice"] = json!(-0.5);
    v.as_object_mut().expect("obj").remove("maxUnits");
    v["additionalParams"]["maxUploadSpeed"] = json!("fast");
    let err = validate_offering(&m.offering_template, &v).expect_err("invalid");
    for p in [
        "/supply",
        "/country",
        "/unitPrice",
        "/maxUnits",
        "/additionalParams/maxUploadSpeed",
    ] {
        assert!(err.has_pointer(p), "missing {p} in {err}");
    }
    // A missing field is reported once, not by both the schema and the semantic check.
    assert_eq!(
        err.0.iter().filter(|e| e.pointer == "/maxUnits").count(),
        1,
        "{err}"
    );
}

#[test]
fn size_bounds() {
    let m = vpn();
    let k = AgentKeys::generate();
    let mut v = full(&m, &k);
    for i in 0..65 {
        v["additionalParams"][format!("k{i}")] = json!("v");
    }
    let err = validate_offering(&m.offering_template, &v).expect_err("too many params");
    assert!(err.has_pointer("/additionalParams"), "{err}");

    let mut v = full(&m, &k);
    v["padding"] = json!(vec!["x".repeat(1000); 70]);
    let err = validate_offering(&m.offering_template, &v).expect_err("too large");
    assert!(err.has_pointer(""), "{err}");

    let mut v = full(&m, &k);
    let mut deep = json!(1);
    for _ in 0..20 {
        deep = json!([deep]);
    }
    v["deep"] = deep;
    validate_offering(&m.offering_template, &v).expect_err("too deep");

    let err = validate_offering(&m.offering_template, &json!([1])).expect_err("not object");
    assert!(err.has_pointer(""), "{err}");
}

#[test]
fn prix_conversion_is_exact() {
    let ok: &[(&str, u64)] = &[
        ("0", 0),
        ("-0", 0),
        ("-0.0", 0),
        ("1", 100_000_000),
        ("1.0", 100_000_000),
        ("0.001", 100_000),
        ("0.1", 10_000_000),
        ("0.00000001", 1),
        ("1e-8", 1),
        ("1.5e2", 15_000_000_000),
        ("12345.6789", 1_234_567_890_000),
        ("1234567.12345678", 123_456_712_345_678),
        ("1E2", 10_000_000_000),
    ];
    for (text, want) in ok {
        let v: Value = serde_json::from_str(text).expect("json");
        assert_eq!(prix_to_base_units("/p", &v), Ok(*want), "{text}");
    }
    let bad: &[(&str, &str)] = &[
        ("0.000000001", "decimal places"),
        ("1e-9", "decimal places"),
        ("0.123456789", "decimal places"),
        ("-1", "negative"),
        ("-0.00000001", "negative"),
        ("1e30", "too large"),
        ("184467440737.1", "too large"),
        ("\"1\"", "must be a number"),
        ("null", "must be a number"),
    ];
    for (text, want) in bad {
        let v: Value = serde_json::from_str(text).expect("json");
        let e = prix_to_base_units("/p", &v).expect_err(text);
        assert_eq!(e.pointer, "/p");
        assert!(e.message.contains(want), "{text}: {}", e.message);
    }
    // Whole numbers.
    for (text, want) in [
        ("1.0", Some(1)),
        ("1.5", None),
        ("1e3", Some(1000)),
        ("-1", None),
    ] {
        let v: Value = serde_json::from_str(text).expect("json");
        assert_eq!(whole_number("/n", &v).ok(), want, "{text}");
    }
    // The text parser itself, including forms serde_json does not produce.
    assert_eq!(
        decimal_text_to_scaled("18446744073709551615", 0),
        Ok(u64::MAX)
    );
    assert_eq!(
        decimal_text_to_scaled("184467440737.09551615", 8),
        Ok(u64::MAX)
    );
    assert_eq!(
        decimal_text_to_scaled("184467440737.09551616", 8),
        Err(DecimalError::TooLarge)
    );
    assert_eq!(
        decimal_text_to_scaled("18446744073709551616", 0),
        Err(DecimalError::TooLarge)
    );
    assert_eq!(
        decimal_text_to_scaled("1.", 0),
        Err(DecimalError::Malformed)
    );
    assert_eq!(
        decimal_text_to_scaled(".5", 8),
        Err(DecimalError::Malformed)
    );
    assert_eq!(
        decimal_text_to_scaled("1e", 0),
        Err(DecimalError::Malformed)
    );
    assert_eq!(
        decimal_text_to_scaled("NaN", 0),
        Err(DecimalError::Malformed)
    );
    assert_eq!(decimal_text_to_scaled("1e+2", 0), Ok(100));
    assert_eq!(decimal_text_to_scaled("1000e-3", 0), Ok(1));
    assert_eq!(decimal_text_to_scaled("0e999999", 0), Ok(0));
    assert_eq!(
        decimal_text_to_scaled("1e999999", 0),
        Err(DecimalError::TooLarge)
    );
}

#[test]
fn country_list_is_sorted_and_complete() {
    assert!(ISO_3166_ALPHA2.windows(2).all(|w| w[0] < w[1]));
    assert!(ISO_3166_ALPHA2
        .iter()
        .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())));
    for c in ["DE", "US", "GB", "JP", "SS", "AX", "ZW"] {
        assert!(is_country_code(c), "{c}");
    }
    for c in ["XK", "UK", "EU", "de", "D", "DEU", ""] {
        assert!(!is_country_code(c), "{c}");
    }
}

#[test]
fn build_and_verify_round_trip() {
    let m = vpn();
    let agent = AgentKeys::generate();
    let lookup = |h: &str| (h == m.offering_hash).then(|| m.offering_template.clone());
    let (signed, hash, terms) = build_offering(
        &m.offering_template,
        &m.offering_hash,
        "prod-1",
        &agent,
        &input(),
        None,
    )
    .expect("build");
    assert_eq!(hash, offering_hash(&signed.offering).expect("hash"));
    assert_eq!(terms.product, "prod-1");
    assert_eq!(terms.agent_public_key, agent.public_key_b64());
    assert!(is_uuid_v4(&terms.nonce));

    // Through the file format.
    let text = serde_json::to_string_pretty(&signed).expect("ser");
    let parsed: SignedOffering = serde_json::from_str(&text).expect("parse");
    let (h2, t2) = verify_offering(&parsed, lookup).expect("verifies");
    assert_eq!(h2, hash);
    assert_eq!(t2, terms);

    // Publishing the same input twice gives a new nonce and so a new hash.
    let (_, hash_b, _) = build_offering(
        &m.offering_template,
        &m.offering_hash,
        "prod-1",
        &agent,
        &input(),
        None,
    )
    .expect("build");
    assert_ne!(hash, hash_b);

    // A changed field breaks the signature.
    let mut changed = signed.clone();
    changed.offering["unitPrice"] = json!(0.0001);
    assert!(matches!(
        verify_offering(&changed, lookup),
        Err(OfferingError::BadSignature { .. })
    ));

    // Signed by another key (with the true agent's key in the offering).
    let other = AgentKeys::generate();
    let mut forged = signed.clone();
    forged.signature = other.sign(&hex::decode(&hash).expect("hex"));
    assert!(matches!(
        verify_offering(&forged, lookup),
        Err(OfferingError::BadSignature { .. })
    ));
    // Missing/garbage signature, bad agentPublicKey.
    let mut nosig = signed.clone();
    nosig.signature = String::new();
    assert!(matches!(
        verify_offering(&nosig, lookup),
        Err(OfferingError::BadSignature { .. })
    ));
    let mut badkey = signed.clone();
    badkey.offering["agentPublicKey"] = json!("not-a-key");
    assert!(matches!(
        verify_offering(&badkey, lookup),
        Err(OfferingError::BadSignature { .. })
    ));
    let mut nokey = signed.clone();
    nokey
        .offering
        .as_object_mut()
        .expect("obj")
        .remove("agentPublicKey");
    assert!(matches!(
        verify_offering(&nokey, lookup),
        Err(OfferingError::BadSignature { .. })
    ));

    // Unknown template.
    let err = verify_offering(&signed, |_| None).expect_err("unknown");
    assert!(
        matches!(&err, OfferingError::UnknownTemplate { hash } if *hash == m.offering_hash),
        "{err}"
    );

    // Correctly signed but invalid: the client still rejects it.
    let mut bad = signed.offering.clone();
    bad["supply"] = json!(0);
    let digest = crate::jcs::sha256_jcs(&bad).expect("digest");
    let resigned = SignedOffering {
        offering: bad,
        signature: agent.sign(&digest),
    };
    match verify_offering(&resigned, lookup) {
        Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer("/supply"), "{inv}"),
        other => panic!("expected Invalid, got {other:?}"),
    }

    // Unknown fields of the signed file are refused.
    let extra = json!({"offering": {}, "signature": "", "x": 1});
    assert!(serde_json::from_value::<SignedOffering>(extra).is_err());
}

#[test]
fn build_rejects_core_fields_and_invalid_input() {
    let m = vpn();
    let agent = AgentKeys::generate();
    for f in CORE_FILLED_FIELDS {
        let mut v = input();
        v[f] = json!("x");
        match build_offering(
            &m.offering_template,
            &m.offering_hash,
            "p",
            &agent,
            &v,
            None,
        ) {
            Err(OfferingError::Invalid(inv)) => {
                assert!(inv.has_pointer(&format!("/{f}")), "{inv}")
            }
            other => panic!("{f}: expected Invalid, got {other:?}"),
        }
    }
    let mut v = input();
    v["minUnits"] = json!(5000);
    match build_offering(
        &m.offering_template,
        &m.offering_hash,
        "p",
        &agent,
        &v,
        None,
    ) {
        Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer("/minUnits"), "{inv}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    // A wrong template hash from the caller is caught too.
    match build_offering(
        &m.offering_template,
        &"0".repeat(64),
        "p",
        &agent,
        &input(),
        None,
    ) {
        Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer("/templateHash"), "{inv}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    match build_offering(
        &m.offering_template,
        &m.offering_hash,
        "p",
        &agent,
        &json!(3),
        None,
    ) {
        Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer(""), "{inv}"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

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
