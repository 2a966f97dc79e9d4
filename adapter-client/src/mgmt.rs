//! The OpenVPN management interface, client side of the socket (OpenVPN is the server of
//! the unix socket given with `--management PATH unix`).
//!
//! [`parse_line`] is a pure function from one line to a [`MgmtLine`]; the formats follow
//! `management-notes.txt` of OpenVPN 2.6:
//! - `>STATE:time,name,description,tun-ipv4,remote-ip,remote-port,local-ip,local-port,tun-ipv6`
//! - `>BYTECOUNT:bytes-in,bytes-out` (client mode; in = received from the server)
//! - `>HOLD:Waiting for hold release:N`, `>INFO:…`, `>FATAL:…`, `>PASSWORD:…`, `>LOG:…`
//! - command answers `SUCCESS: …` / `ERROR: …`, multi-line output ends with `END`.
//!
//! [`classify_exit_reason`] maps the description of `EXITING` / `RECONNECTING` (OpenVPN's
//! signal text, e.g. `server-pushed-halt`, `auth-failure`, `ping-restart`) to what the
//! adapter must do.

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// Longest management line kept; longer lines are cut (they are never expected).
pub const MAX_LINE: usize = 8 * 1024;

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

/// One parsed line of the management interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MgmtLine {
    State(StateChange),
    ByteCount {
        bytes_in: u64,
        bytes_out: u64,
    },
    /// `>HOLD:` text.
    Hold(String),
    Info(String),
    Fatal(String),
    Password(String),
    Log(String),
    /// `>NOTIFY:severity,type,text` — e.g. `>NOTIFY:info,server-pushed-halt,<message>` when
    /// the server pushes HALT (OpenVPN 2.6 `management_notify`). With
    /// `explicit-exit-notify` the later `EXITING` says `exit-with-notification`, so this is
    /// the reliable sign of a server halt.
    Notify {
        severity: String,
        kind: String,
        text: String,
    },
    /// Any other `>KIND:text` notification.
    Notification {
        kind: String,
        text: String,
    },
    Success(String),
    Error(String),
    /// Other command output (including `END`).
    Data(String),
}

/// Errors of [`parse_line`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("malformed >STATE line: {0}")]
    State(String),
    #[error("malformed >BYTECOUNT line: {0}")]
    ByteCount(String),
    #[error("malformed notification (no ':' after the kind): {0}")]
    Notification(String),
}

fn opt(s: Option<&str>) -> Option<String> {
    s.filter(|v| !v.is_empty()).map(str::to_string)
}

fn opt_port(s: Option<&str>) -> Option<u16> {
    s.and_then(|v| v.parse().ok())
}

fn shorten(s: &str) -> String {
    s.chars().take(200).collect()
}

fn parse_state(text: &str) -> Result<StateChange, ParseError> {
    let mut f = text.split(',');
    let time = f
        .next()
        .and_then(|t| t.parse::<u64>().ok())
        .ok_or_else(|| ParseError::State(shorten(text)))?;
    let state = match f.next() {
        Some(s) if !s.is_empty() => OvpnState::parse(s),
        _ => return Err(ParseError::State(shorten(text))),
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

fn parse_bytecount(text: &str) -> Result<MgmtLine, ParseError> {
    let bad = || ParseError::ByteCount(shorten(text));
    let (a, b) = text.split_once(',').ok_or_else(bad)?;
    Ok(MgmtLine::ByteCount {
        bytes_in: a.trim().parse().map_err(|_| bad())?,
        bytes_out: b.trim().parse().map_err(|_| bad())?,
    })
}

/// Parses one line (without its line terminator; a trailing `\r` is ignored).
pub fn parse_line(line: &str) -> Result<MgmtLine, ParseError> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if let Some(rest) = line.strip_prefix('>') {
        let (kind, text) = rest
            .split_once(':')
            .ok_or_else(|| ParseError::Notification(shorten(line)))?;
        return Ok(match kind {
            "STATE" => MgmtLine::State(parse_state(text)?),
            "BYTECOUNT" => parse_bytecount(text)?,
            "HOLD" => MgmtLine::Hold(text.to_string()),
            "INFO" => MgmtLine::Info(text.to_string()),
            "FATAL" => MgmtLine::Fatal(text.to_string()),
            "PASSWORD" => MgmtLine::Password(text.to_string()),
            "LOG" => MgmtLine::Log(text.to_string()),
            "NOTIFY" => {
                let mut f = text.splitn(3, ',');
                MgmtLine::Notify {
                    severity: f.next().unwrap_or_default().to_string(),
                    kind: f.next().unwrap_or_default().to_string(),
                    text: f.next().unwrap_or_default().to_string(),
                }
            }
            _ => MgmtLine::Notification {
                kind: kind.to_string(),
                text: text.to_string(),
            },
        });
    }
    if let Some(t) = line.strip_prefix("SUCCESS:") {
        return Ok(MgmtLine::Success(t.trim().to_string()));
    }
    if let Some(t) = line.strip_prefix("ERROR:") {
        return Ok(MgmtLine::Error(t.trim().to_string()));
    }
    Ok(MgmtLine::Data(line.to_string()))
}

/// What a `RECONNECTING` / `EXITING` reason means for the adapter.
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

/// Reads one line of at most [`MAX_LINE`] bytes (longer lines are cut, the rest of the line
/// is discarded). Returns `None` at end of stream. Invalid UTF-8 is replaced.
pub async fn read_bounded_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<String>> {
    buf.clear();
    let mut saw_any = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if saw_any {
                Some(String::from_utf8_lossy(buf).into_owned())
            } else {
                None
            });
        }
        saw_any = true;
        let (take, done) = match chunk.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (chunk.len(), false),
        };
        let room = MAX_LINE.saturating_sub(buf.len());
        let content = if done {
            &chunk[..take - 1]
        } else {
            &chunk[..take]
        };
        buf.extend_from_slice(&content[..content.len().min(room)]);
        r.consume(take);
        if done {
            return Ok(Some(String::from_utf8_lossy(buf).into_owned()));
        }
    }
}

/// Commands the adapter sends (each ends with a newline).
pub mod cmd {
    pub const STATE_ON: &str = "state on\n";
    pub const HOLD_RELEASE: &str = "hold release\n";
    pub const SIGNAL_TERM: &str = "signal SIGTERM\n";
    pub fn bytecount(secs: u32) -> String {
        format!("bytecount {secs}\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(
        time: u64,
        state: OvpnState,
        description: &str,
        tun: Option<&str>,
        remote: Option<(&str, u16)>,
    ) -> MgmtLine {
        MgmtLine::State(StateChange {
            time,
            state,
            description: description.into(),
            tun_ipv4: tun.map(str::to_string),
            remote_ip: remote.map(|r| r.0.to_string()),
            remote_port: remote.map(|r| r.1),
            local_ip: None,
            local_port: None,
            tun_ipv6: None,
        })
    }

    #[test]
    fn parses_lines() {
        let connected = MgmtLine::State(StateChange {
            time: 1_700_000_000,
            state: OvpnState::Connected,
            description: "SUCCESS".into(),
            tun_ipv4: Some("10.8.0.6".into()),
            remote_ip: Some("192.0.2.1".into()),
            remote_port: Some(1194),
            local_ip: Some("192.0.2.9".into()),
            local_port: Some(40001),
            tun_ipv6: Some("fd00::1000".into()),
        });
        let table: Vec<(&str, MgmtLine)> = vec![
            (
                ">STATE:1700000000,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194,192.0.2.9,40001,fd00::1000",
                connected,
            ),
            (
                ">STATE:1700000001,RECONNECTING,ping-restart,,,,,\r",
                st(1_700_000_001, OvpnState::Reconnecting, "ping-restart", None, None),
            ),
            (
                ">STATE:1700000002,EXITING,server-pushed-halt,,,,,",
                st(1_700_000_002, OvpnState::Exiting, "server-pushed-halt", None, None),
            ),
            (
                ">STATE:1700000003,ASSIGN_IP,,10.8.0.6,,,,",
                st(1_700_000_003, OvpnState::AssignIp, "", Some("10.8.0.6"), None),
            ),
            (
                ">STATE:5,WAIT,,,,,,",
                st(5, OvpnState::Wait, "", None, None),
            ),
            (
                ">STATE:6,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194",
                st(6, OvpnState::Connected, "SUCCESS", Some("10.8.0.6"), Some(("192.0.2.1", 1194))),
            ),
            (
                ">STATE:7,NEW_STATE",
                st(7, OvpnState::Other("NEW_STATE".into()), "", None, None),
            ),
            (
                ">BYTECOUNT:12345,678",
                MgmtLine::ByteCount { bytes_in: 12345, bytes_out: 678 },
            ),
            (
                ">BYTECOUNT:18446744073709551615,0",
                MgmtLine::ByteCount { bytes_in: u64::MAX, bytes_out: 0 },
            ),
            (
                ">HOLD:Waiting for hold release:10",
                MgmtLine::Hold("Waiting for hold release:10".into()),
            ),
            (
                ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info",
                MgmtLine::Info("OpenVPN Management Interface Version 5 -- type 'help' for more info".into()),
            ),
            (">FATAL:Cannot open TUN", MgmtLine::Fatal("Cannot open TUN".into())),
            (
                ">PASSWORD:Verification Failed: 'Auth'",
                MgmtLine::Password("Verification Failed: 'Auth'".into()),
            ),
            (">LOG:1,I,hello", MgmtLine::Log("1,I,hello".into())),
            (
                ">NOTIFY:info,server-pushed-halt,channel suspended, pay up",
                MgmtLine::Notify {
                    severity: "info".into(),
                    kind: "server-pushed-halt".into(),
                    text: "channel suspended, pay up".into(),
                },
            ),
            (
                ">NOTIFY:info,server-pushed-connection-reset,",
                MgmtLine::Notify {
                    severity: "info".into(),
                    kind: "server-pushed-connection-reset".into(),
                    text: String::new(),
                },
            ),
            (
                ">ECHO:1101519562,forget-passwords",
                MgmtLine::Notification { kind: "ECHO".into(), text: "1101519562,forget-passwords".into() },
            ),
            (
                "SUCCESS: hold release succeeded",
                MgmtLine::Success("hold release succeeded".into()),
            ),
            (
                "ERROR: unknown command, enter 'help' for more options",
                MgmtLine::Error("unknown command, enter 'help' for more options".into()),
            ),
            ("END", MgmtLine::Data("END".into())),
            ("", MgmtLine::Data(String::new())),
        ];
        for (line, want) in table {
            assert_eq!(parse_line(line), Ok(want), "line {line:?}");
        }
    }

    #[test]
    fn rejects_malformed_lines() {
        type Check = fn(&ParseError) -> bool;
        let table: Vec<(&str, Check)> = vec![
            (">STATE:abc,CONNECTED", |e| {
                matches!(e, ParseError::State(_))
            }),
            (">STATE:1", |e| matches!(e, ParseError::State(_))),
            (">STATE:", |e| matches!(e, ParseError::State(_))),
            (">BYTECOUNT:1", |e| matches!(e, ParseError::ByteCount(_))),
            (">BYTECOUNT:-1,2", |e| matches!(e, ParseError::ByteCount(_))),
            (">BYTECOUNT:1,2,3", |e| {
                matches!(e, ParseError::ByteCount(_))
            }),
            (">BYTECOUNT:99999999999999999999999,1", |e| {
                matches!(e, ParseError::ByteCount(_))
            }),
            (">NOCOLON", |e| matches!(e, ParseError::Notification(_))),
        ];
        for (line, ok) in table {
            let e = parse_line(line).expect_err(line);
            assert!(ok(&e), "{line:?} gave {e:?}");
        }
    }

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

    #[tokio::test]
    async fn bounded_reader_cuts_long_lines() {
        let long = "x".repeat(MAX_LINE * 2);
        let input = format!("a\r\n{long}\nb");
        let mut r = tokio::io::BufReader::with_capacity(64, input.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(
            read_bounded_line(&mut r, &mut buf)
                .await
                .ok()
                .flatten()
                .as_deref(),
            Some("a\r")
        );
        let l = read_bounded_line(&mut r, &mut buf)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        assert_eq!(l.len(), MAX_LINE);
        assert_eq!(
            read_bounded_line(&mut r, &mut buf)
                .await
                .ok()
                .flatten()
                .as_deref(),
            Some("b")
        );
        assert_eq!(
            read_bounded_line(&mut r, &mut buf).await.ok().flatten(),
            None
        );
    }
}
