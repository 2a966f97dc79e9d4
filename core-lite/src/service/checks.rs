//! Checks of request fields shared by the Service API and the admin commands.

use std::collections::BTreeMap;

use service_api::{self as api, ClientKey, SpeedLimits};

use crate::error::{CoreError, Result};

pub(crate) fn check_client_key(k: &ClientKey) -> Result<()> {
    let s = &k.0;
    if s.is_empty() || s.len() > api::MAX_FIELD_LEN {
        return Err(CoreError::BadRequest(format!(
            "clientKey: must be 1..={} bytes",
            api::MAX_FIELD_LEN
        )));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(CoreError::BadRequest(
            "clientKey: contains control characters".into(),
        ));
    }
    Ok(())
}

pub(crate) fn check_field(name: &str, v: &str) -> Result<()> {
    if v.len() > api::MAX_FIELD_LEN || v.chars().any(|c| c.is_control()) {
        return Err(CoreError::BadRequest(format!(
            "{name}: at most {} bytes without control characters",
            api::MAX_FIELD_LEN
        )));
    }
    Ok(())
}

/// A service endpoint: `HOST` or `HOST:PORT`.
pub(crate) fn check_endpoint(e: &str) -> Result<()> {
    let ok = !e.is_empty()
        && e.len() <= 255
        && e.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!(
            "endpoint {:?}: must be HOST or HOST:PORT (letters, digits, '.', '-', ':')",
            e.chars().take(64).collect::<String>()
        )))
    }
}

/// Host part of `ip`, `ip:port` or `[v6]:port`.
pub(crate) fn addr_host(a: &str) -> &str {
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => a,
    }
}

/// The speed limits of a channel's parameters (none when they are unreadable or invalid).
pub(crate) fn speed_of(params: Option<&BTreeMap<String, String>>) -> SpeedLimits {
    params
        .and_then(|m| SpeedLimits::from_params(m).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_host_strips_port() {
        assert_eq!(addr_host("10.0.0.1:1194"), "10.0.0.1");
        assert_eq!(addr_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(addr_host("[::1]:5"), "::1");
        assert_eq!(addr_host("::1"), "::1");
    }

    #[test]
    fn endpoint_check() {
        assert!(check_endpoint("vpn.example.org:1194").is_ok());
        assert!(check_endpoint("10.1.2.3").is_ok());
        assert!(check_endpoint("a b").is_err());
        assert!(check_endpoint("x\nremote evil").is_err());
        assert!(check_endpoint("").is_err());
    }
}
