//! Exact decimal numbers: JSON numbers as integer base units (PRIX) or whole counts, with
//! integer arithmetic only.

use serde_json::Value;

use super::terms::PRIX_DECIMALS;
use crate::validation::{truncate, FieldError};

/// A JSON number as PRIX → integer base units (1 PRIX = 10^8), exactly: the number's
/// shortest decimal text is converted with integer arithmetic only. More than 8 decimals,
/// negative values, non-numbers and values beyond u64 are errors at `pointer`.
pub fn prix_to_base_units(pointer: &str, v: &Value) -> Result<u64, FieldError> {
    number_to_scaled(pointer, v, PRIX_DECIMALS)
}

/// A JSON number that must be a non-negative whole number fitting u64 (`1.0` is fine, `1.5`
/// is not).
pub fn whole_number(pointer: &str, v: &Value) -> Result<u64, FieldError> {
    number_to_scaled(pointer, v, 0)
}

/// `v · 10^scale` as an exact u64, from the decimal text of the JSON number.
fn number_to_scaled(pointer: &str, v: &Value, scale: u32) -> Result<u64, FieldError> {
    let Value::Number(n) = v else {
        return Err(FieldError::new(pointer, "must be a number"));
    };
    let text = n.to_string();
    decimal_text_to_scaled(&text, scale).map_err(|e| {
        let msg = match e {
            DecimalError::Negative => "must not be negative".to_string(),
            DecimalError::TooPrecise if scale == 0 => {
                format!("must be a whole number (got {})", truncate(&text, 40))
            }
            DecimalError::TooPrecise => format!(
                "at most {scale} decimal places allowed (1 PRIX = 10^{scale} base units), got {}",
                truncate(&text, 40)
            ),
            DecimalError::TooLarge if scale == 0 => format!(
                "too large (at most {}), got {}",
                u64::MAX,
                truncate(&text, 40)
            ),
            DecimalError::TooLarge => format!(
                "too large (at most {} base units), got {}",
                u64::MAX,
                truncate(&text, 40)
            ),
            DecimalError::Malformed => {
                format!("not a decimal number: {}", truncate(&text, 40))
            }
        };
        FieldError::new(pointer, msg)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum DecimalError {
    Negative,
    TooPrecise,
    TooLarge,
    Malformed,
}

/// Parses JSON number text (`-?int(.frac)?([eE][+-]?exp)?`) into `value · 10^scale` exactly.
pub(super) fn decimal_text_to_scaled(text: &str, scale: u32) -> Result<u64, DecimalError> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => {
            let e = &rest[i + 1..];
            let e = e.strip_prefix('+').unwrap_or(e);
            let (eneg, edigits) = match e.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, e),
            };
            if edigits.is_empty()
                || edigits.len() > 6
                || !edigits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(DecimalError::Malformed);
            }
            let mag: i64 = edigits.parse().map_err(|_| DecimalError::Malformed)?;
            (&rest[..i], if eneg { -mag } else { mag })
        }
        None => (rest, 0),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (mantissa.contains('.') && frac.is_empty())
    {
        return Err(DecimalError::Malformed);
    }
    // value = digits · 10^shift
    let mut digits: String = format!("{int}{frac}");
    let mut shift: i64 = exp - frac.len() as i64 + i64::from(scale);
    // Drop trailing zeros into the exponent, then leading zeros.
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
        shift += 1;
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0); // zero, including -0
    }
    if negative {
        return Err(DecimalError::Negative);
    }
    if shift < 0 {
        // Non-zero digits below the unit: more precision than allowed.
        return Err(DecimalError::TooPrecise);
    }
    if digits.len() as i64 + shift > 20 {
        return Err(DecimalError::TooLarge);
    }
    let mut v: u64 = digits.parse().map_err(|_| DecimalError::TooLarge)?;
    for _ in 0..shift {
        v = v.checked_mul(10).ok_or(DecimalError::TooLarge)?;
    }
    Ok(v)
}
