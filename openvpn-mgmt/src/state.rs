//! `>STATE:` notifications and what an exit or restart reason means.
//!
//! `>STATE:time,name,description,tun-ipv4,remote-ip,remote-port,local-ip,local-port,tun-ipv6`
//! (up to 9 fields; the later ones are optional and often empty). The description of
//! `RECONNECTING` / `EXITING` is OpenVPN's signal text (`server-pushed-halt`,
//! `auth-failure`, `ping-restart`, `SIGTERM`, …); [`classify_exit_reason`] maps it to what
//! an adapter must do.

use crate::line::{malformed, num, LineError};

/// OpenVPN's state names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OvpnState {
    Connecting,
    Wait,
    Auth,
    GetConfig,
    AssignIp,
    AddRoutes,
    Connected,
    Reconnecting,
    Exiting,
    Resolve,
    TcpConnect,
    AuthPending,
    Other(String),
}

impl OvpnState {
    fn parse(s: &str) -> Self {
        match s {
            "CONNECTING" => Self::Connecting,
            "WAIT" => Self::Wait,
            "AUTH" => Self::Auth,
            "GET_CONFIG" => Self::GetConfig,
            "ASSIGN_IP" => Self::AssignIp,
            "ADD_ROUTES" => Self::AddRoutes,
            "CONNECTED" => Self::Connected,
            "RECONNECTING" => Self::Reconnecting,
            "EXITING" => Self::Exiting,
            "RESOLVE" => Self::Resolve,
            "TCP_CONNECT" => Self::TcpConnect,
            "AUTH_PENDING" => Self::AuthPending,
            other => Self::Other(other.to_string()),
        }
    }
}

/// One `>STATE:` notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// Unix time of the change (OpenVPN's clock).
    pub time: u64,
    pub state: OvpnState,
    /// Reason (`RECONNECTING`/`EXITING`) or `SUCCESS`/`ERROR` (`CONNECTED`).
    pub description: String,
    pub tun_ipv4: Option<String>,
    pub remote_ip: Option<String>,
    pub remote_port: Option<u16>,
    pub local_ip: Option<String>,
    pub local_port: Option<u16>,
    pub tun_ipv6: Option<String>,
}

fn opt(s: Option<&str>) -> Option<String> {
    s.filter(|v| !v.is_empty()).map(str::to_string)
}

fn opt_port(s: Option<&str>) -> Option<u16> {
    s.and_then(|v| v.parse().ok())
}

/// Parses the text after `>STATE:`.
pub(crate) fn parse_state(text: &str) -> Result<StateChange, LineError> {
    let mut f = text.split(',');
    let time = num("STATE", f.next().unwrap_or_default())?;
    let state = match f.next() {
        Some(s) if !s.is_empty() => OvpnState::parse(s),
        _ => return Err(malformed("STATE", "no state name")),
    };
    Ok(StateChange {
        time,
        state,
        description: f.next().unwrap_or_default().to_string(),
        tun_ipv4: opt(f.next()),
        remote_ip: opt(f.next()),
        remote_port: opt_port(f.next()),
        local_ip: opt(f.next()),
        local_port: opt_port(f.next()),
        tun_ipv6: opt(f.next()),
    })
}

/// What a `RECONNECTING` / `EXITING` reason (or a `>NOTIFY:` type) means for the adapter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitKind {
    /// The server pushed `HALT` (e.g. the agent cut the client off): stop for good.
    ServerHalt,
    /// The server pushed `RESTART`: reconnect.
    ServerRestart,
    /// Username/password refused: stop for good.
    AuthFailure,
    /// A local signal (SIGTERM/SIGINT/SIGHUP/SIGUSR1): expected when we asked for it.
    Signal,
    /// Anything else (ping-restart, tls-error, connection-reset, …): reconnect.
    Other,
}

/// Classifies OpenVPN's signal text.
pub fn classify_exit_reason(reason: &str) -> ExitKind {
    let r = reason.trim();
    if r == "server-pushed-halt" {
        ExitKind::ServerHalt
    } else if r == "server-pushed-connection-reset" {
        ExitKind::ServerRestart
    } else if r.starts_with("auth-failure") {
        ExitKind::AuthFailure
    } else if matches!(r, "SIGTERM" | "SIGINT" | "SIGHUP" | "SIGUSR1")
        || r.starts_with("SIGTERM[")
        || r.starts_with("SIGINT[")
    {
        ExitKind::Signal
    } else {
        ExitKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from adapter-client's mgmt.
    #[test]
    fn classifies_exit_reasons() {
        let table = [
            ("server-pushed-halt", ExitKind::ServerHalt),
            ("server-pushed-connection-reset", ExitKind::ServerRestart),
            ("auth-failure", ExitKind::AuthFailure),
            ("auth-failure (auth-token)", ExitKind::AuthFailure),
            ("SIGTERM", ExitKind::Signal),
            ("SIGINT", ExitKind::Signal),
            ("SIGUSR1", ExitKind::Signal),
            ("ping-restart", ExitKind::Other),
            ("tls-error", ExitKind::Other),
            ("connection-reset", ExitKind::Other),
            ("exit-with-notification", ExitKind::Other),
            ("", ExitKind::Other),
        ];
        for (r, k) in table {
            assert_eq!(classify_exit_reason(r), k, "{r:?}");
        }
    }
}
