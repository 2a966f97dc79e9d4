//! The inline blocks of the config (`<ca>`, `<tls-crypt>`, `<tls-auth>`): PEM certificates
//! and OpenVPN static keys are parsed and re-emitted in canonical form, so nothing but key
//! material can appear between their tags.

use super::{field_err, Problem, RenderError, MAX_CERTS, MAX_PEM_BYTES};

/// Splits multi-line text into trimmed lines (CRLF tolerated). Rejects NUL and other control
/// characters except tab.
fn block_lines<'a>(field: &str, v: &'a str) -> Result<Vec<&'a str>, RenderError> {
    if v.len() > MAX_PEM_BYTES {
        return Err(field_err(
            field,
            Problem::TooLong {
                len: v.len(),
                max: MAX_PEM_BYTES,
            },
        ));
    }
    if v.chars()
        .any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(field_err(field, Problem::ControlChar));
    }
    Ok(v.lines()
        .map(|l| l.trim_matches([' ', '\t', '\r']))
        .collect())
}

pub(super) fn is_base64_line(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 128
        && l.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '/' || c == '=')
}

const CERT_BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const CERT_END: &str = "-----END CERTIFICATE-----";

/// Parses one or more PEM certificate blocks and returns them in canonical form. Anything
/// but blank lines outside the blocks, or anything but base64 inside, is refused.
pub fn canonical_certificates(field: &str, v: &str) -> Result<String, RenderError> {
    let lines = block_lines(field, v)?;
    let mut out = String::new();
    let mut in_block = false;
    let mut body_lines = 0usize;
    let mut certs = 0usize;
    for (i, l) in lines.iter().enumerate() {
        let n = i + 1;
        if in_block {
            if *l == CERT_END {
                if body_lines == 0 {
                    return Err(field_err(
                        field,
                        Problem::Invalid(format!("empty certificate block ending at line {n}")),
                    ));
                }
                out.push_str(CERT_END);
                out.push('\n');
                in_block = false;
                certs += 1;
            } else if is_base64_line(l) {
                out.push_str(l);
                out.push('\n');
                body_lines += 1;
            } else {
                return Err(field_err(
                    field,
                    Problem::Invalid(format!("line {n} inside a certificate block is not base64")),
                ));
            }
        } else if l.is_empty() {
            continue;
        } else if *l == CERT_BEGIN {
            if certs >= MAX_CERTS {
                return Err(field_err(
                    field,
                    Problem::Invalid(format!("more than {MAX_CERTS} certificates")),
                ));
            }
            out.push_str(CERT_BEGIN);
            out.push('\n');
            in_block = true;
            body_lines = 0;
        } else {
            return Err(field_err(
                field,
                Problem::Invalid(format!(
                    "line {n} is outside a '{CERT_BEGIN}' block (only PEM certificates are accepted)"
                )),
            ));
        }
    }
    if in_block {
        return Err(field_err(
            field,
            Problem::Invalid("certificate block is not terminated".into()),
        ));
    }
    if certs == 0 {
        return Err(field_err(
            field,
            Problem::Invalid("contains no PEM certificate".into()),
        ));
    }
    Ok(out)
}

pub(super) const KEY_BEGIN: &str = "-----BEGIN OpenVPN Static key V1-----";
pub(super) const KEY_END: &str = "-----END OpenVPN Static key V1-----";
/// 2048-bit static key = 256 bytes = 512 hex digits.
const KEY_HEX_DIGITS: usize = 512;

/// Parses an OpenVPN static key (`#` comment lines allowed around it) and returns it in
/// canonical form: the BEGIN line, 16 lines of 32 hex digits, the END line.
pub fn canonical_static_key(field: &str, v: &str) -> Result<String, RenderError> {
    let lines = block_lines(field, v)?;
    let mut hex = String::with_capacity(KEY_HEX_DIGITS);
    #[derive(PartialEq)]
    enum S {
        Before,
        In,
        After,
    }
    let mut s = S::Before;
    for (i, l) in lines.iter().enumerate() {
        let n = i + 1;
        match s {
            S::Before | S::After if l.is_empty() || l.starts_with('#') => continue,
            S::Before if *l == KEY_BEGIN => s = S::In,
            S::In if *l == KEY_END => s = S::After,
            S::In if !l.is_empty() && l.chars().all(|c| c.is_ascii_hexdigit()) => {
                hex.push_str(l);
                if hex.len() > KEY_HEX_DIGITS {
                    return Err(field_err(
                        field,
                        Problem::Invalid(format!("key is longer than {KEY_HEX_DIGITS} hex digits")),
                    ));
                }
            }
            S::In => {
                return Err(field_err(
                    field,
                    Problem::Invalid(format!("line {n} inside the key block is not hex")),
                ))
            }
            S::Before => {
                return Err(field_err(
                    field,
                    Problem::Invalid(format!("line {n} is not a comment and not '{KEY_BEGIN}'")),
                ))
            }
            S::After => {
                return Err(field_err(
                    field,
                    Problem::Invalid(format!("line {n} follows the key block")),
                ))
            }
        }
    }
    if s != S::After {
        return Err(field_err(
            field,
            Problem::Invalid("no complete OpenVPN static key block".into()),
        ));
    }
    if hex.len() != KEY_HEX_DIGITS {
        return Err(field_err(
            field,
            Problem::Invalid(format!(
                "key has {} hex digits, expected {KEY_HEX_DIGITS}",
                hex.len()
            )),
        ));
    }
    let mut out = String::new();
    out.push_str(KEY_BEGIN);
    out.push('\n');
    for chunk in hex.as_bytes().chunks(32) {
        // Hex digits are ASCII, so every chunk is valid UTF-8.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(KEY_END);
    out.push('\n');
    Ok(out)
}
