//! Exact PRIX amounts and the country list.

use super::*;

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
