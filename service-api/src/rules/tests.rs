use serde_json::json;

use super::*;
use crate::{
    AuthClientRequest, SetProductConfigRequest, StartSessionRequest, UpdateSessionRequest,
};

fn update(body: &str) -> Result<UpdateSessionRequest, serde_json::Error> {
    serde_json::from_str(body)
}

#[test]
fn text_rule() {
    assert!(check_text("f", "", 0, 4).is_ok());
    assert!(check_text("f", "", 1, 4).is_err());
    assert!(check_text("f", "a b~", 1, 4).is_ok());
    assert!(check_text("f", "abcde", 1, 4).is_err());
    for bad in ["a\nb", "a\u{7f}", "a\u{85}", "é", "\u{0}"] {
        let e = check_text("f", bad, 0, 4).expect_err(bad);
        assert!(e.to_string().starts_with("f: "), "{e}");
    }
}

#[test]
fn counters_accept_integral_numbers_only() {
    for (text, want) in [
        ("1", 1),
        ("1.0", 1),
        ("1e3", 1000),
        ("1.5e1", 15),
        ("-0", 0),
        ("-0.0", 0),
        ("18446744073709551615", u64::MAX),
    ] {
        let body = format!(r#"{{"sessionId":"s","bytesIn":{text},"bytesOut":0}}"#);
        assert_eq!(update(&body).expect(text).bytes_in, want, "{text}");
    }
    for text in [
        "1.5",
        "-1",
        "-1.0",
        "1e30",
        "18446744073709551616",
        "\"1\"",
        "true",
        "null",
        "[1]",
    ] {
        let body = format!(r#"{{"sessionId":"s","bytesIn":{text},"bytesOut":0}}"#);
        assert!(update(&body).is_err(), "{text} accepted");
    }
}

#[test]
fn counter_bound_is_a_rule_of_the_request() {
    let at = UpdateSessionRequest {
        session_id: crate::SessionId("s".into()),
        bytes_in: MAX_BYTE_COUNT,
        bytes_out: 0,
    };
    assert_eq!(at.validate(), Ok(()));
    let above = UpdateSessionRequest {
        bytes_out: MAX_BYTE_COUNT + 1,
        ..at
    };
    assert_eq!(above.validate().expect_err("above").pointer, "/bytesOut");
    assert_eq!(MAX_BYTE_COUNT, u64::try_from(i64::MAX / 4).expect("fits"));
}

#[test]
fn request_text_fields_keep_their_rules() {
    let auth = |v: serde_json::Value| serde_json::from_value::<AuthClientRequest>(v);
    assert!(auth(json!({"clientKey": "c-1", "password": ""})).is_ok());
    assert!(auth(json!({"clientKey": "", "password": "p"})).is_err());
    assert!(auth(json!({"clientKey": "c\u{1}", "password": "p"})).is_err());
    assert!(auth(json!({"clientKey": "k".repeat(256), "password": "p"})).is_ok());
    assert!(auth(json!({"clientKey": "k".repeat(257), "password": "p"})).is_err());
    assert!(auth(json!({"clientKey": "c", "password": "p".repeat(257)})).is_err());
    assert!(auth(json!({"clientKey": "c", "password": "p", "clientAddr": null})).is_ok());
    assert!(auth(json!({"clientKey": "c", "password": "p", "clientAddr": "a\tb"})).is_err());

    let start = |v: serde_json::Value| serde_json::from_value::<StartSessionRequest>(v);
    assert!(start(json!({"clientKey": "c", "connectionId": "u|1.2.3.4:5|6"})).is_ok());
    assert!(start(json!({"clientKey": "c", "vpnAddr": "10.8.0.2\n"})).is_err());

    for bad in ["s\n", "s\u{0}", "ü"] {
        let body = json!({"sessionId": bad, "bytesIn": 0, "bytesOut": 0}).to_string();
        let e = update(&body).expect_err(bad);
        assert!(e.to_string().contains("sessionId"), "{e}");
    }
}

#[test]
fn config_rules() {
    let cfg = |v: serde_json::Value| {
        serde_json::from_value::<SetProductConfigRequest>(json!({ "config": v }))
            .expect("shape")
            .validate()
    };
    assert_eq!(
        cfg(json!({"proto": "udp", "ca": "-----BEGIN\nX\n"})),
        Ok(())
    );
    assert_eq!(cfg(json!({"any.other_key-1": "x"})), Ok(()));
    assert_eq!(cfg(json!({ENDPOINT_KEY: "[::1]:1194"})), Ok(()));
    let big: serde_json::Map<_, _> = (0..=CONFIG_MAX_KEYS)
        .map(|i| (format!("k{i}"), json!("v")))
        .collect();
    assert_eq!(cfg(json!(big)).expect_err("keys").pointer, "/config");
    for (bad, pointer) in [
        (json!({"bad key": "x"}), "/config/bad key"),
        (json!({"": "x"}), "/config/"),
        (json!({"a/b": "x"}), "/config/a~1b"),
        (
            json!({"k".repeat(65): "x"}),
            "/config/kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk",
        ),
        (json!({"k": "é"}), "/config/k"),
        (
            json!({"k": "x".repeat(CONFIG_VALUE_MAX_LEN + 1)}),
            "/config/k",
        ),
        (
            json!({ENDPOINT_KEY: "x\ny"}),
            "/config/serviceEndpointAddress",
        ),
        (json!({ENDPOINT_KEY: ""}), "/config/serviceEndpointAddress"),
    ] {
        assert_eq!(
            cfg(bad.clone()).expect_err("refused").pointer,
            pointer,
            "{bad}"
        );
    }
}

#[test]
fn endpoint_rule() {
    // (Moved here from core-lite's service checks: the rule lives in one place.)
    assert!(check_endpoint("/e", "vpn.example.org:1194").is_ok());
    assert!(check_endpoint("/e", "10.1.2.3").is_ok());
    assert!(check_endpoint("/e", "[2001:db8::1]:1194").is_ok());
    for bad in [
        "a b",
        "x\nremote evil",
        "",
        &"a".repeat(ENDPOINT_MAX_LEN + 1),
    ] {
        assert_eq!(
            check_endpoint("/e", bad).expect_err("refused").pointer,
            "/e",
            "{bad:?}"
        );
    }
}
