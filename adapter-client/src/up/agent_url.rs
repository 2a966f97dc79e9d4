//! The agent's market URL as the user types it, made into the URL the client core calls:
//! the one place where an agent address is read (`up AGENT_URL`).
//!
//! `10.77.0.1`, `10.77.0.1:7710`, `http://10.77.0.1:7710/` and `vpn.example.org` are all
//! accepted: a missing scheme is `https://` (an agent's market on a network address speaks
//! TLS unless its operator chose `--insecure-http`), a missing port the market's default
//! [`DEFAULT_MARKET_PORT`], a trailing `/` is dropped. `https://` is kept as given (the
//! client core decides whether it can use it). User info (`user@`), a query or a fragment
//! are refused, and so is anything the Service API's rule for market URLs
//! (`service_api::rules::check_market_url`) refuses.

use std::fmt;

/// The port of an agent's market API when the URL names none (`core-lite serve
/// --market-listen`'s default).
pub const DEFAULT_MARKET_PORT: u16 = 7710;

/// A normalized agent market URL (`http://HOST:PORT[/path]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentUrl(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentUrlError {
    #[error("agent URL {url:?}: only http:// and https:// are supported")]
    Scheme { url: String },
    #[error("agent URL {url:?}: no host")]
    NoHost { url: String },
    #[error("agent URL {url:?}: {what} is not allowed")]
    NotAllowed { url: String, what: &'static str },
    #[error("agent URL {url:?}: the port must be 1-65535")]
    Port { url: String },
    #[error("agent URL {url:?}: {source}")]
    Rule {
        url: String,
        #[source]
        source: service_api::rules::TextError,
    },
}

impl AgentUrl {
    /// Reads what the user typed (see the module doc).
    pub fn parse(input: &str) -> Result<AgentUrl, AgentUrlError> {
        let raw = input.trim();
        let url = raw.to_string();
        let (scheme, rest) = match raw.split_once("://") {
            Some((s, r)) => (s.to_ascii_lowercase(), r),
            None => ("https".to_string(), raw),
        };
        if scheme != "http" && scheme != "https" {
            return Err(AgentUrlError::Scheme { url });
        }
        for (c, what) in [
            ('@', "user info (@)"),
            ('?', "a query (?)"),
            ('#', "a fragment (#)"),
        ] {
            if rest.contains(c) {
                return Err(AgentUrlError::NotAllowed { url, what });
            }
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty() {
            return Err(AgentUrlError::NoHost { url });
        }
        // The port is what follows the last ':' outside an IPv6 literal's brackets.
        let host_end = authority.rfind(']').map_or(0, |i| i + 1);
        let (host, port) = match authority[host_end..].rfind(':') {
            Some(i) => {
                let (h, p) = authority.split_at(host_end + i);
                (h, Some(&p[1..]))
            }
            None => (authority, None),
        };
        if host.is_empty() || host == "[]" {
            return Err(AgentUrlError::NoHost { url });
        }
        let port = match port {
            None => DEFAULT_MARKET_PORT,
            Some(p) => match p.parse::<u16>() {
                Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
                _ => return Err(AgentUrlError::Port { url }),
            },
        };
        let out = format!("{scheme}://{host}:{port}{path}");
        service_api::rules::check_market_url(&out)
            .map_err(|source| AgentUrlError::Rule { url, source })?;
        Ok(AgentUrl(out))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AgentUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_users_type_becomes_one_url() {
        for (input, want) in [
            ("10.77.0.1", "https://10.77.0.1:7710"),
            ("10.77.0.1:7711", "https://10.77.0.1:7711"),
            ("http://10.77.0.1:7710/", "http://10.77.0.1:7710"),
            (" HTTP://vpn.example.org ", "http://vpn.example.org:7710"),
            ("https://vpn.example.org", "https://vpn.example.org:7710"),
            ("[2001:db8::1]", "https://[2001:db8::1]:7710"),
            (
                "http://[2001:db8::1]:80/market/",
                "http://[2001:db8::1]:80/market",
            ),
        ] {
            assert_eq!(
                AgentUrl::parse(input).map(|u| u.as_str().to_string()),
                Ok(want.to_string()),
                "{input}"
            );
        }
    }

    #[test]
    fn what_is_refused() {
        for input in [
            "ftp://x",
            "",
            "http://",
            "http://:7710",
            "http://x:0",
            "http://x:65536",
            "http://x:+1",
            "http://x:",
            "http://u:p@x",
            "http://x/?q",
            "http://x/#f",
            "http://[]:1",
            "http://a b",
            "http://é",
        ] {
            assert!(AgentUrl::parse(input).is_err(), "{input:?} accepted");
        }
    }
}
