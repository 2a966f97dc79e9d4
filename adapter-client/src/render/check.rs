//! Per-field checks of the access message's values and of the adapter's local choices:
//! single-line values, character sets, ports, the server endpoint, local paths and device
//! names. Each refusal names the field and never shows the value.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::{field_err, Problem, RenderError, MAX_VALUE_LEN};

/// Rejects empty values, newlines and control characters, and overlong values.
pub(super) fn check_line(field: &str, v: &str, max: usize) -> Result<(), RenderError> {
    if v.is_empty() {
        return Err(field_err(field, Problem::Empty));
    }
    if v.contains(['\n', '\r']) {
        return Err(field_err(field, Problem::Newline));
    }
    if v.chars().any(char::is_control) {
        return Err(field_err(field, Problem::ControlChar));
    }
    if v.len() > max {
        return Err(field_err(field, Problem::TooLong { len: v.len(), max }));
    }
    Ok(())
}

pub(super) fn check_charset(
    field: &str,
    v: &str,
    max: usize,
    allowed: &'static str,
    ok: impl Fn(char) -> bool,
) -> Result<(), RenderError> {
    check_line(field, v, max)?;
    if !v.chars().all(ok) {
        return Err(field_err(field, Problem::Charset { allowed }));
    }
    Ok(())
}

pub(super) fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

pub(super) fn parse_port(field: &str, v: &str) -> Result<u16, RenderError> {
    check_charset(field, v, 5, "[0-9]", |c| c.is_ascii_digit())?;
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(field_err(
            field,
            Problem::Invalid("is not a port number (1-65535)".into()),
        )),
    }
}

fn is_hostname(h: &str) -> bool {
    h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// What is wrong with a host outside brackets, if anything. The rule: an IPv4 literal
/// (four decimal octets), or a DNS name whose last label is not all digits — `70000`,
/// `10.0.0.300` or `1.2.3` are neither (resolvers read some of them as numeric addresses).
fn host_problem(h: &str) -> Option<&'static str> {
    if h.parse::<Ipv4Addr>().is_ok() {
        return None;
    }
    if !is_hostname(h) {
        return Some("host is neither a DNS name ([A-Za-z0-9-] labels) nor an address");
    }
    let last = h.rsplit('.').next().unwrap_or(h);
    if last.chars().all(|c| c.is_ascii_digit()) {
        return Some(
            "host is not an IPv4 address, and a DNS name cannot end in a label of all digits",
        );
    }
    None
}

/// Parses `host`, `host:port`, `[v6]` or `[v6]:port`; ports are 1..=65535.
pub(super) fn parse_endpoint(v: &str) -> Result<(String, Option<u16>), RenderError> {
    const F: &str = "serviceEndpointAddress";
    check_line(F, v, MAX_VALUE_LEN)?;
    let (host, port) = if let Some(rest) = v.strip_prefix('[') {
        let Some((inside, after)) = rest.split_once(']') else {
            return Err(field_err(
                F,
                Problem::Invalid("unclosed '[' in address".into()),
            ));
        };
        if inside.parse::<Ipv6Addr>().is_err() {
            return Err(field_err(
                F,
                Problem::Invalid("text in brackets is not an IPv6 address".into()),
            ));
        }
        let port = match after {
            "" => None,
            p => match p.strip_prefix(':') {
                Some(p) => Some(parse_port(F, p)?),
                None => {
                    return Err(field_err(F, Problem::Invalid("text after ']'".into())));
                }
            },
        };
        (inside.to_string(), port)
    } else {
        let (h, p) = match v.split_once(':') {
            Some((h, p)) => (h, Some(parse_port(F, p)?)),
            None => (v, None),
        };
        if let Some(problem) = host_problem(h) {
            return Err(field_err(F, Problem::Invalid(problem.into())));
        }
        (h.to_string(), p)
    };
    Ok((host, port))
}

/// A local path must be absolute and consist only of safe characters, so it can be
/// written unquoted into the config.
pub(super) fn check_local_path(p: &Path) -> Result<&str, RenderError> {
    let bad = |reason| RenderError::LocalPath {
        path: p.to_path_buf(),
        reason,
    };
    let s = p.to_str().ok_or_else(|| bad("not UTF-8"))?;
    if !s.starts_with('/') {
        return Err(bad("must be absolute"));
    }
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-'))
    {
        return Err(bad("only [A-Za-z0-9/._-] are allowed"));
    }
    Ok(s)
}

/// Checks a tun device name: 1-15 characters of [A-Za-z0-9_-].
pub fn check_dev_name(name: &str) -> Result<(), RenderError> {
    let bad = |reason| RenderError::TunDevice {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() || name.len() > 15 {
        return Err(bad("must be 1 to 15 characters"));
    }
    if !name.chars().all(is_token_char) {
        return Err(bad("only [A-Za-z0-9_-] are allowed"));
    }
    Ok(())
}
