//! One management line to a [`Line`] ([`parse_line`]), pure.
//!
//! Real-time messages are `>KIND:text` (`KIND` = upper-case letters, digits, `_`, `-`);
//! command answers are `SUCCESS: text` / `ERROR: text`; multi-line output ends with `END`.
//! A TCP management interface with a password sends its `ENTER PASSWORD:` prompt without
//! a newline, so the prompt is stripped from the front of the next line.

use crate::state::{parse_state, StateChange};
use crate::MAX_LINE;

/// Kinds of `>CLIENT:` notifications that carry an env block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEventKind {
    Connect,
    Reauth,
    Established,
    Disconnect,
    CrResponse,
}

/// One parsed line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// `>CLIENT:CONNECT,cid,kid` etc. (kid only for CONNECT / REAUTH / CR_RESPONSE).
    ClientHeader {
        kind: ClientEventKind,
        cid: u64,
        kid: Option<u64>,
    },
    /// `>CLIENT:ENV,name=value`
    ClientEnv { name: String, value: String },
    /// `>CLIENT:ENV,END`
    ClientEnvEnd,
    /// `>CLIENT:ADDRESS,cid,addr,pri`
    ClientAddress {
        cid: u64,
        addr: String,
        primary: bool,
    },
    /// `>BYTECOUNT_CLI:cid,in,out` (server mode; in = received from the client).
    ByteCountCli {
        cid: u64,
        bytes_in: u64,
        bytes_out: u64,
    },
    /// `>BYTECOUNT:in,out` (client mode; in = received from the server).
    ByteCount { bytes_in: u64, bytes_out: u64 },
    /// `>STATE:time,name,description,…`
    State(StateChange),
    /// `>HOLD:` text.
    Hold(String),
    /// `>INFO:` text.
    Info(String),
    /// `>FATAL:` text.
    Fatal(String),
    /// `>PASSWORD:` text (a request, or `Verification Failed: …`).
    Password(String),
    /// `>LOG:` text.
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
    /// Any other `>KIND:text` real-time message (`>ECHO:`, `>NEED-OK:`, …).
    Notification { kind: String, text: String },
    /// `SUCCESS: text`
    Success(String),
    /// `ERROR: text`
    Error(String),
    /// `END` (end of a multi-line answer).
    End,
    /// A line of a multi-line answer.
    Data(String),
}

/// Why a line could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("malformed {kind} line: {reason}")]
    Malformed { kind: &'static str, reason: String },
    #[error("line longer than {MAX_LINE} bytes")]
    TooLong,
}

pub(crate) fn malformed(kind: &'static str, reason: impl Into<String>) -> LineError {
    LineError::Malformed {
        kind,
        reason: reason.into(),
    }
}

/// The first characters of a peer's value, for error messages.
pub(crate) fn snippet(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// A strict decimal `u64`: digits only (no sign, space or `+`), no overflow.
pub(crate) fn num(kind: &'static str, s: &str) -> Result<u64, LineError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(
            kind,
            format!("{:?} is not a number", snippet(s, 32)),
        ));
    }
    s.parse()
        .map_err(|_| malformed(kind, format!("{:?} out of range", snippet(s, 32))))
}

fn is_kind(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// Parses one line (without its `\n`; one trailing `\r` is ignored).
pub fn parse_line(line: &str) -> Result<Line, LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    let line = line.strip_suffix('\r').unwrap_or(line);
    let line = line.strip_prefix("ENTER PASSWORD:").unwrap_or(line);
    let Some(rt) = line.strip_prefix('>') else {
        if let Some(t) = line.strip_prefix("SUCCESS:") {
            return Ok(Line::Success(t.trim().to_string()));
        }
        if let Some(t) = line.strip_prefix("ERROR:") {
            return Ok(Line::Error(t.trim().to_string()));
        }
        if line == "END" {
            return Ok(Line::End);
        }
        return Ok(Line::Data(line.to_string()));
    };
    let (kind, text) = rt
        .split_once(':')
        .ok_or_else(|| malformed("real-time", "no ':' after the message type"))?;
    match kind {
        "CLIENT" => parse_client(text),
        "BYTECOUNT_CLI" => {
            let mut it = text.split(',');
            let (Some(c), Some(i), Some(o), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(malformed("BYTECOUNT_CLI", "expected cid,in,out"));
            };
            Ok(Line::ByteCountCli {
                cid: num("BYTECOUNT_CLI", c)?,
                bytes_in: num("BYTECOUNT_CLI", i)?,
                bytes_out: num("BYTECOUNT_CLI", o)?,
            })
        }
        "BYTECOUNT" => {
            let (i, o) = text
                .split_once(',')
                .ok_or_else(|| malformed("BYTECOUNT", "expected in,out"))?;
            Ok(Line::ByteCount {
                bytes_in: num("BYTECOUNT", i)?,
                bytes_out: num("BYTECOUNT", o)?,
            })
        }
        "STATE" => Ok(Line::State(parse_state(text)?)),
        "HOLD" => Ok(Line::Hold(text.to_string())),
        "INFO" => Ok(Line::Info(text.to_string())),
        "FATAL" => Ok(Line::Fatal(text.to_string())),
        "PASSWORD" => Ok(Line::Password(text.to_string())),
        "LOG" => Ok(Line::Log(text.to_string())),
        "NOTIFY" => {
            let mut f = text.splitn(3, ',');
            Ok(Line::Notify {
                severity: f.next().unwrap_or_default().to_string(),
                kind: f.next().unwrap_or_default().to_string(),
                text: f.next().unwrap_or_default().to_string(),
            })
        }
        k if is_kind(k) => Ok(Line::Notification {
            kind: k.to_string(),
            text: text.to_string(),
        }),
        _ => Err(malformed("real-time", "bad message type")),
    }
}

fn parse_client(text: &str) -> Result<Line, LineError> {
    let (sub, rest) = text.split_once(',').unwrap_or((text, ""));
    let header = |kind: ClientEventKind, with_kid: bool| -> Result<Line, LineError> {
        let mut it = rest.split(',');
        let cid = num("CLIENT", it.next().unwrap_or(""))?;
        let kid = if with_kid {
            Some(num("CLIENT", it.next().unwrap_or(""))?)
        } else {
            None
        };
        // CR_RESPONSE carries a base64 response after the kid; others must end here.
        if kind != ClientEventKind::CrResponse && it.next().is_some() {
            return Err(malformed("CLIENT", "trailing fields"));
        }
        Ok(Line::ClientHeader { kind, cid, kid })
    };
    match sub {
        "CONNECT" => header(ClientEventKind::Connect, true),
        "REAUTH" => header(ClientEventKind::Reauth, true),
        "ESTABLISHED" => header(ClientEventKind::Established, false),
        "DISCONNECT" => header(ClientEventKind::Disconnect, false),
        "CR_RESPONSE" => header(ClientEventKind::CrResponse, true),
        "ENV" => {
            if rest == "END" {
                return Ok(Line::ClientEnvEnd);
            }
            let (name, value) = rest
                .split_once('=')
                .ok_or_else(|| malformed("CLIENT:ENV", "no '='"))?;
            if name.is_empty() {
                return Err(malformed("CLIENT:ENV", "empty name"));
            }
            Ok(Line::ClientEnv {
                name: name.to_string(),
                value: value.to_string(),
            })
        }
        "ADDRESS" => {
            let mut it = rest.split(',');
            let (Some(c), Some(a), Some(p), None) = (it.next(), it.next(), it.next(), it.next())
            else {
                return Err(malformed("CLIENT:ADDRESS", "expected cid,addr,pri"));
            };
            Ok(Line::ClientAddress {
                cid: num("CLIENT:ADDRESS", c)?,
                addr: a.to_string(),
                primary: p == "1",
            })
        }
        other => Err(malformed(
            "CLIENT",
            format!("unknown type {:?}", snippet(other, 32)),
        )),
    }
}

#[cfg(test)]
mod tests;
