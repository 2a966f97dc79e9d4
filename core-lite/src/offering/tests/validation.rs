//! The schema and the semantic rules: every bad field named by its JSON pointer, all at
//! once, and the size bounds.

use super::*;

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
