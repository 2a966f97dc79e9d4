//! The rules of the request fields, in one place: their limits and patterns (constants), the
//! checks that enforce them, and the serde helpers that run those checks while a request is
//! read. The OpenAPI document (feature `openapi`) takes its `minLength`, `maxLength`,
//! `pattern`, `maximum`, `maxProperties` and `propertyNames` from the same constants, so the
//! document and the server refuse exactly the same requests.
//!
//! Two kinds of refusal, with the codes the server answers:
//! - the shape of a field (type, length, characters, a counter that is not a non-negative
//!   integer): refused while the body is read, HTTP 400 `bad_request`;
//! - a rule of the request as a whole ([`Validate`]: a counter above [`MAX_BYTE_COUNT`], the
//!   product config rules): HTTP 422 `invalid`, with a JSON pointer to the field.
//!
//! Text fields are printable ASCII (`U+0020..=U+007E`) so that a length in characters (what
//! JSON Schema's `maxLength` counts) and a length in bytes (what the server stores) are the
//! same number.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;

/// Longest client key / password / session id / free-text field accepted on the wire, in
/// characters (printable ASCII, so also in bytes).
pub const MAX_FIELD_LEN: usize = 256;

/// Pattern of a text field: printable ASCII only (no control characters, no non-ASCII).
pub const PRINTABLE_ASCII_PATTERN: &str = r"^[\x20-\x7E]*$";

/// Largest byte counter a usage report may carry. The core stores counters as SQLite
/// (signed 64-bit) integers and adds a session's two counters to the channel's total, so a
/// counter is bounded well inside `i64`. Above it: 422 `invalid`.
pub const MAX_BYTE_COUNT: u64 = i64::MAX as u64 / 4;

/// Largest byte total of a channel (all its sessions), what the core's 64-bit signed
/// storage holds. A usage report that would take the total beyond it is refused with 422
/// `usage_overflow` (a few sessions each reporting counters near [`MAX_BYTE_COUNT`] reach it).
pub const MAX_CHANNEL_BYTES: u64 = i64::MAX as u64;

/// Most keys a product config may have.
pub const CONFIG_MAX_KEYS: usize = 64;
/// Longest product config key (characters of [`CONFIG_KEY_PATTERN`]).
pub const CONFIG_KEY_MAX_LEN: usize = 64;
/// Pattern of a product config key.
pub const CONFIG_KEY_PATTERN: &str = r"^[A-Za-z0-9_.-]{1,64}$";
/// Longest product config value, in characters (ASCII, so also in bytes).
pub const CONFIG_VALUE_MAX_LEN: usize = 16 * 1024;
/// Pattern of a product config value: ASCII (line breaks allowed: PEM blocks).
pub const CONFIG_VALUE_PATTERN: &str = r"^[\x00-\x7F]*$";
/// The config key whose value is the VPN server's endpoint (`host` or `host:port`).
pub const ENDPOINT_KEY: &str = "serviceEndpointAddress";
/// Longest endpoint (`host` or `host:port`).
pub const ENDPOINT_MAX_LEN: usize = 255;
/// Pattern of an endpoint: letters, digits, `.`, `-`, `:`, `[`, `]`.
pub const ENDPOINT_PATTERN: &str = r"^[A-Za-z0-9.:\[\]-]{1,255}$";

/// Longest agent market URL (`http://HOST:PORT` or `https://…`), in characters.
pub const MARKET_URL_MAX_LEN: usize = 256;
/// Pattern of an agent market URL: `http://` or `https://` and printable ASCII without
/// spaces. Whether the rest is a URL the core can use is told by calling it (502
/// `bad_gateway` when not).
pub const MARKET_URL_PATTERN: &str = r"^https?://[!-~]+$";
/// Pattern of an offering hash: lowercase hex SHA-256.
pub const OFFERING_HASH_PATTERN: &str = r"^[0-9a-f]{64}$";
/// Largest amount (deposit, in base units: 1 PRIX = 10^8) a request may carry: the core
/// stores money as signed 64-bit integers and adds amounts up, so it is bounded well
/// inside `i64` like the byte counters. Above it: 422 `invalid`.
pub const MAX_AMOUNT: u64 = i64::MAX as u64 / 4;

/// A text field that breaks its rule (refused with 400 `bad_request`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {min}..={max} printable ASCII characters (U+0020..U+007E), got {got}")]
pub struct TextError {
    pub field: &'static str,
    pub min: usize,
    pub max: usize,
    /// What was wrong: the length, or the first character outside the rule.
    pub got: String,
}

/// Checks a text field: `min..=max` characters, each printable ASCII.
pub fn check_text(field: &'static str, s: &str, min: usize, max: usize) -> Result<(), TextError> {
    let err = |got: String| TextError {
        field,
        min,
        max,
        got,
    };
    if let Some(c) = s.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(err(format!("the character {}", c.escape_unicode())));
    }
    if s.len() < min || s.len() > max {
        return Err(err(format!("{} characters", s.len())));
    }
    Ok(())
}

/// serde `deserialize_with` helpers of the request fields: each reads the field and checks
/// its rule ([`check_text`]), so a request that breaks one is refused while it is read (400).
/// The newtypes ([`ClientKey`](crate::ClientKey), [`SessionId`](crate::SessionId),
/// [`Secret`](crate::Secret)) stay plain strings elsewhere (files, internal messages).
pub mod field {
    use super::*;
    use crate::{ClientKey, Secret, SessionId};

    fn text<'de, D: Deserializer<'de>>(
        d: D,
        field: &'static str,
        min: usize,
    ) -> Result<String, D::Error> {
        let s = String::deserialize(d)?;
        check_text(field, &s, min, MAX_FIELD_LEN).map_err(de::Error::custom)?;
        Ok(s)
    }

    fn opt_text<'de, D: Deserializer<'de>>(
        d: D,
        field: &'static str,
    ) -> Result<Option<String>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        if let Some(s) = &s {
            check_text(field, s, 0, MAX_FIELD_LEN).map_err(de::Error::custom)?;
        }
        Ok(s)
    }

    /// `clientKey` / `username`: 1..=256 printable ASCII characters.
    pub fn client_key<'de, D: Deserializer<'de>>(d: D) -> Result<ClientKey, D::Error> {
        text(d, "clientKey", 1).map(ClientKey)
    }
    /// `sessionId`: 0..=256 printable ASCII characters (an unknown id is a 404).
    pub fn session_id<'de, D: Deserializer<'de>>(d: D) -> Result<SessionId, D::Error> {
        text(d, "sessionId", 0).map(SessionId)
    }
    /// `password`: 0..=256 printable ASCII characters (a wrong one is a 403).
    pub fn password<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        text(d, "password", 0).map(Secret)
    }
    /// `clientAddr`: absent, `null` or 0..=256 printable ASCII characters.
    pub fn client_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        opt_text(d, "clientAddr")
    }
    /// `connectionId`: absent, `null` or 0..=256 printable ASCII characters.
    pub fn connection_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        opt_text(d, "connectionId")
    }
    /// `connectionId` where it is required: 1..=256 printable ASCII characters.
    pub fn required_connection_id<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        text(d, "connectionId", 1)
    }
    /// `vpnAddr`: absent, `null` or 0..=256 printable ASCII characters.
    pub fn vpn_addr<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        opt_text(d, "vpnAddr")
    }
    /// `url` of FetchOfferings: [`MARKET_URL_PATTERN`], at most
    /// [`MARKET_URL_MAX_LEN`] characters.
    pub fn market_url<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let s = String::deserialize(d)?;
        super::check_market_url(&s).map_err(de::Error::custom)?;
        Ok(s)
    }
    /// `offeringHash`: 64 lowercase hex digits.
    pub fn offering_hash<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        let s = String::deserialize(d)?;
        if !super::is_offering_hash(&s) {
            return Err(de::Error::custom(
                "offeringHash: 64 lowercase hex digits (the offering's SHA-256)",
            ));
        }
        Ok(s)
    }
    /// The body of an operation without parameters: exactly `{}` (an object without
    /// members; `[]`, `null` or any member is refused).
    pub fn empty_object<'de, D: Deserializer<'de>>(d: D) -> Result<(), D::Error> {
        struct Empty;
        impl<'de> Visitor<'de> for Empty {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an empty JSON object")
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(()),
                    Some(k) => Err(de::Error::unknown_field(&k, &[])),
                }
            }
        }
        d.deserialize_map(Empty)
    }
    /// A byte counter, see [`counter`](super::counter).
    pub fn counter<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        super::counter(d)
    }
}

/// True for 64 lowercase hex digits ([`OFFERING_HASH_PATTERN`]).
pub fn is_offering_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Checks an agent market URL against [`MARKET_URL_PATTERN`] and [`MARKET_URL_MAX_LEN`].
pub fn check_market_url(s: &str) -> Result<(), TextError> {
    let err = |got: String| TextError {
        field: "url",
        min: "http://x".len(),
        max: MARKET_URL_MAX_LEN,
        got,
    };
    check_text("url", s, 1, MARKET_URL_MAX_LEN).map_err(|e| err(e.got))?;
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| err("no http:// or https:// at the start".into()))?;
    if rest.is_empty() {
        return Err(err("nothing after the scheme".into()));
    }
    if rest.contains(' ') {
        return Err(err("a space".into()));
    }
    Ok(())
}

/// Checks an amount (base units) against [`MAX_AMOUNT`].
pub fn check_amount(pointer: &str, v: u64) -> Result<(), Invalid> {
    if v > MAX_AMOUNT {
        return Err(Invalid {
            pointer: pointer.into(),
            reason: format!("at most {MAX_AMOUNT} base units (an amount the core can add up)"),
        });
    }
    Ok(())
}

/// Reads a byte counter: a JSON number whose value is a non-negative integer below 2^64.
///
/// JSON Schema's `integer` is any number with a zero fraction, so `1.0` and `1e3` are
/// integers there; serde's `u64` refuses them. This reader accepts them (the value of a
/// number with a fraction or an exponent is the nearest IEEE double, as in most JSON
/// parsers, including the validators) and refuses `1.5`, negative numbers and anything that
/// is not a number, with 400. The upper bound [`MAX_BYTE_COUNT`] is a rule of the request
/// ([`Validate`], 422).
pub fn counter<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    struct Counter;
    impl Visitor<'_> for Counter {
        type Value = u64;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a byte count (a non-negative integer)")
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
            Ok(v)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
            u64::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<u64, E> {
            // 2^64 as a double; every integral double below it converts exactly.
            const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;
            if v.fract() == 0.0 && (0.0..TWO_POW_64).contains(&v) {
                Ok(v as u64)
            } else {
                Err(E::invalid_value(Unexpected::Float(v), &self))
            }
        }
    }
    d.deserialize_any(Counter)
}

/// A rule of a request as a whole that its fields' shapes do not carry (422 `invalid`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{pointer}: {reason}")]
pub struct Invalid {
    /// JSON pointer of the offending field (`/bytesIn`, `/config/port`).
    pub pointer: String,
    pub reason: String,
}

/// The rules of a request beyond the shape of its fields; the server checks them right after
/// reading the body and answers 422 `invalid` when one fails.
pub trait Validate {
    fn validate(&self) -> Result<(), Invalid>;
}

/// Checks one byte counter against [`MAX_BYTE_COUNT`].
pub fn check_counter(pointer: &str, v: u64) -> Result<(), Invalid> {
    if v > MAX_BYTE_COUNT {
        return Err(Invalid {
            pointer: pointer.into(),
            reason: format!("at most {MAX_BYTE_COUNT} (a byte count the core can add up)"),
        });
    }
    Ok(())
}

/// JSON pointer token of a key (RFC 6901 escapes), cut to a readable length.
fn pointer_token(k: &str) -> String {
    k.chars()
        .take(70)
        .collect::<String>()
        .replace('~', "~0")
        .replace('/', "~1")
}

/// The product config rules: at most [`CONFIG_MAX_KEYS`] keys matching
/// [`CONFIG_KEY_PATTERN`]; ASCII values of at most [`CONFIG_VALUE_MAX_LEN`] characters; the
/// [`ENDPOINT_KEY`] value matching [`ENDPOINT_PATTERN`].
pub fn check_config(config: &BTreeMap<String, String>) -> Result<(), Invalid> {
    if config.len() > CONFIG_MAX_KEYS {
        return Err(Invalid {
            pointer: "/config".into(),
            reason: format!("at most {CONFIG_MAX_KEYS} keys, got {}", config.len()),
        });
    }
    for (k, v) in config {
        let key_ok = !k.is_empty()
            && k.len() <= CONFIG_KEY_MAX_LEN
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !key_ok {
            return Err(Invalid {
                pointer: format!("/config/{}", pointer_token(k)),
                reason: format!("a key is 1..={CONFIG_KEY_MAX_LEN} characters of [A-Za-z0-9_.-]"),
            });
        }
        if !v.is_ascii() || v.len() > CONFIG_VALUE_MAX_LEN {
            return Err(Invalid {
                pointer: format!("/config/{k}"),
                reason: format!("a value is at most {CONFIG_VALUE_MAX_LEN} ASCII characters"),
            });
        }
        if k == ENDPOINT_KEY {
            check_endpoint(&format!("/config/{k}"), v)?;
        }
    }
    Ok(())
}

/// A service endpoint (`HOST` or `HOST:PORT`): [`ENDPOINT_PATTERN`]. The rule of the
/// [`ENDPOINT_KEY`] config value, and of the endpoint an operator gives a product.
pub fn check_endpoint(pointer: &str, v: &str) -> Result<(), Invalid> {
    let ok = !v.is_empty()
        && v.len() <= ENDPOINT_MAX_LEN
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(Invalid {
            pointer: pointer.into(),
            reason: format!(
                "HOST or HOST:PORT: 1..={ENDPOINT_MAX_LEN} letters, digits, '.', '-', ':', '[', ']'"
            ),
        })
    }
}

#[cfg(test)]
mod tests;
