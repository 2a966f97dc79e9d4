//! Canonical JSON (RFC 8785, "JCS") and the hashes taken over it: template hashes, offering
//! hashes and what every signature of the market protocol covers.
//!
//! A hash here is the lowercase hex SHA-256 of the JCS form, so whitespace and key order never
//! change it while any semantic change does (DESIGN §2).

use serde_json::Value;
use sha2::{Digest, Sha256};

/// A JSON value that has no canonical form.
#[derive(Debug, thiserror::Error)]
#[error("canonicalizing JSON (RFC 8785): {source}")]
pub struct JcsError {
    #[source]
    source: serde_json::Error,
}

/// RFC 8785 (JCS) canonical form of a JSON value.
pub fn canonical_json(v: &Value) -> Result<String, JcsError> {
    serde_json_canonicalizer::to_string(v).map_err(|source| JcsError { source })
}

/// Lowercase hex SHA-256 of the JCS form of `v` (template hashes and offering hashes).
pub fn hash_hex(v: &Value) -> Result<String, JcsError> {
    Ok(hex::encode(sha256_jcs(v)?))
}

/// SHA-256 of the JCS form of `v`, as raw bytes (what a signature covers).
pub fn sha256_jcs(v: &Value) -> Result<[u8; 32], JcsError> {
    let canonical = canonical_json(v)?;
    Ok(Sha256::digest(canonical.as_bytes()).into())
}

/// True when `s` looks like a hash produced by [`hash_hex`]: 64 lowercase hex digits.
pub fn is_hash_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jcs_of_text(text: &str) -> String {
        let v: Value = serde_json::from_str(text).expect("test JSON parses");
        canonical_json(&v).expect("canonicalizes")
    }

    #[test]
    fn rfc8785_example_object() {
        // RFC 8785 §3.2.2 input and §3.2.3 output.
        let input = r#"{
            "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
            "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
            "literals": [null, true, false]
        }"#;
        assert_eq!(
            jcs_of_text(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn rfc8785_number_vectors() {
        // RFC 8785 Appendix B (IEEE 754 bit pattern -> JCS text).
        let table: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for (bits, want) in table {
            let n = serde_json::Number::from_f64(f64::from_bits(*bits)).expect("finite");
            assert_eq!(
                canonical_json(&Value::Number(n)).expect("jcs"),
                *want,
                "bits {bits:#018x}"
            );
        }
        // The same through JSON text, including "-0", "1e21" and "0.1".
        assert_eq!(jcs_of_text("1e21"), "1e+21");
        assert_eq!(jcs_of_text("0.1"), "0.1");
        assert_eq!(jcs_of_text("-0"), "0");
        assert_eq!(jcs_of_text("-0.0"), "0");
        assert_eq!(jcs_of_text("1.0"), "1");
        assert_eq!(jcs_of_text("100"), "100");
    }

    #[test]
    fn rfc8785_key_sorting_by_utf16() {
        // RFC 8785 §3.2.3 sorting example.
        let input = r#"{
            "\u20ac": "Euro Sign",
            "\r": "Carriage Return",
            "\ufb33": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\ud83d\ude00": "Emoji: Grinning Face",
            "\u0080": "Control",
            "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        let out = jcs_of_text(input);
        let want = "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\
                    \"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",\
                    \"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}";
        assert_eq!(out, want);
    }

    #[test]
    fn hash_ignores_whitespace_and_key_order_but_not_semantics() {
        let a = r#"{"b": [1, 2, {"y": "z", "x": 1.50}], "a": "é"}"#;
        let b = "{\n  \"a\" : \"\\u00e9\",\n  \"b\":[1,2,{\"x\":1.5,\"y\":\"z\"}]\n}";
        let ha = hash_hex(&serde_json::from_str(a).expect("a")).expect("hash a");
        let hb = hash_hex(&serde_json::from_str(b).expect("b")).expect("hash b");
        assert_eq!(ha, hb);
        assert!(is_hash_hex(&ha), "{ha}");
        let c = r#"{"b": [1, 2, {"y": "z", "x": 1.51}], "a": "é"}"#;
        let hc = hash_hex(&serde_json::from_str(c).expect("c")).expect("hash c");
        assert_ne!(ha, hc);
        let d = r#"{"b": [2, 1, {"y": "z", "x": 1.50}], "a": "é"}"#;
        let hd = hash_hex(&serde_json::from_str(d).expect("d")).expect("hash d");
        assert_ne!(ha, hd, "array order is semantic");
        // Known value: SHA-256 of the JCS text "{}".
        assert_eq!(
            hash_hex(&json!({})).expect("hash"),
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
