//! The hand-off protocol between `adapter-server-hook` (the script OpenVPN runs) and
//! `adapter-server monitor`, version [`VERSION`]. The one place that writes and reads it.
//!
//! One unix-socket connection carries one event, one way:
//!
//! ```text
//! hook → monitor  "ASHK" VERSION LEN(u32 BE) BODY[LEN]       (LEN ≤ MAX_BODY)
//!                 BODY = KIND(u8) FIELD*
//!                 FIELD = ID(u8) LEN(u16 BE) VALUE[LEN]
//! ```
//!
//! The hook connects without waiting, checks who listens (`SO_PEERCRED`), writes the whole
//! frame and exits; the monitor never answers. The event belongs to the monitor once the
//! write succeeded: a unix stream connection exists as soon as `connect` returns, even
//! before the monitor accepts it, and what the hook wrote waits in its receive queue. So
//! the steps that can fail fail before the monitor has a whole event: the connect (no
//! socket, nobody listening, or a backlog that is full because the monitor has as many
//! events in hand as it takes) and the write (a frame cut short is dropped by the
//! monitor); the hook then falls back, and no event is handled twice. Version 1
//! waited for a reply and sent a commit: a round trip through the monitor's scheduler
//! inside the time OpenVPN is blocked on the script.
//!
//! `KIND` is 1 auth (`user-pass-verify`), 2 `client-connect`, 3 `client-disconnect`.
//! Field `ID` `n` in 1..=[`ENV_VARS`]`.len()` is the script variable `ENV_VARS[n - 1]` with
//! its raw bytes (at most [`MAX_VALUE`]); [`CREDENTIALS_ID`] is the contents of the
//! via-file credentials file (at most [`MAX_CREDENTIALS`], auth only). Every field at most
//! once; anything else (unknown kind or id, a repeated field, a length beyond its bound or
//! beyond the frame, bytes after the last field, another magic or version) makes the frame
//! invalid as a whole. Values are bytes: what they mean is decided by the monitor with the
//! same parsers the full hook uses for its environment.

use std::fmt;

/// First bytes of every message.
pub const MAGIC: [u8; 4] = *b"ASHK";
/// Protocol version.
pub const VERSION: u8 = 2;
/// Magic, version and body length.
pub const HEADER_LEN: usize = 9;
/// Largest value of one script variable (the full hook's bound too).
pub const MAX_VALUE: usize = 4096;
/// Largest credentials file carried.
pub const MAX_CREDENTIALS: usize = 1024;
/// Field id of the via-file credentials file.
pub const CREDENTIALS_ID: u8 = 0x80;
/// The script variables carried, in id order (id = index + 1). Part of the protocol:
/// append only, and only with a new [`VERSION`].
pub const ENV_VARS: &[&str] = &[
    "username",
    "password",
    "common_name",
    "auth_control_file",
    "auth_failed_reason_file",
    "auth_pending_file",
    "untrusted_ip",
    "untrusted_ip6",
    "untrusted_port",
    "trusted_ip",
    "trusted_ip6",
    "trusted_port",
    "time_unix",
    "ifconfig_pool_remote_ip",
    "ifconfig_pool_remote_ip6",
    "bytes_received",
    "bytes_sent",
];
/// Largest body: the kind, every variable at its bound and the credentials.
pub const MAX_BODY: usize = 1 + (ENV_VARS.len() * (3 + MAX_VALUE)) + 3 + MAX_CREDENTIALS;

/// The script that produced an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `auth-user-pass-verify` (OpenVPN's `script_type` is `user-pass-verify`).
    Auth,
    ClientConnect,
    ClientDisconnect,
}

impl Kind {
    /// From OpenVPN's `script_type` (the names the full hook accepts).
    pub fn from_script_type(s: &str) -> Option<Self> {
        match s {
            "user-pass-verify" | "auth-user-pass-verify" => Some(Self::Auth),
            "client-connect" => Some(Self::ClientConnect),
            "client-disconnect" => Some(Self::ClientDisconnect),
            _ => None,
        }
    }

    /// The `script_type` value.
    pub fn script_type(self) -> &'static str {
        match self {
            Self::Auth => "user-pass-verify",
            Self::ClientConnect => "client-connect",
            Self::ClientDisconnect => "client-disconnect",
        }
    }

    /// What the hook exits with once the monitor owns the event: 2 (auth deferred, the
    /// answer comes through `auth_control_file`) or 0.
    pub fn handed_off_exit_code(self) -> u8 {
        match self {
            Self::Auth => 2,
            Self::ClientConnect | Self::ClientDisconnect => 0,
        }
    }

    fn code(self) -> u8 {
        match self {
            Self::Auth => 1,
            Self::ClientConnect => 2,
            Self::ClientDisconnect => 3,
        }
    }

    fn from_code(c: u8) -> Option<Self> {
        match c {
            1 => Some(Self::Auth),
            2 => Some(Self::ClientConnect),
            3 => Some(Self::ClientDisconnect),
            _ => None,
        }
    }
}

/// One event. Secrets (`password`, the credentials file) never show in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub kind: Kind,
    /// Script variables (names from [`ENV_VARS`]) with their raw values.
    pub env: Vec<(&'static str, Vec<u8>)>,
    /// The via-file credentials file (auth only).
    pub credentials: Option<Vec<u8>>,
}

impl Request {
    /// The value of a variable.
    pub fn var(&self, name: &str) -> Option<&[u8]> {
        self.env
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_slice())
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<String> = self
            .env
            .iter()
            .map(|(n, v)| match *n {
                "password" => format!("{n}=<redacted>"),
                _ => format!("{n}={:?}", String::from_utf8_lossy(v)),
            })
            .collect();
        f.debug_struct("Request")
            .field("kind", &self.kind)
            .field("env", &env)
            .field(
                "credentials",
                &self
                    .credentials
                    .as_ref()
                    .map(|c| format!("<{} bytes>", c.len())),
            )
            .finish()
    }
}

/// Why a message is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("not a hand-off message (bad magic)")]
    BadMagic,
    #[error("protocol version {0}, this side speaks {VERSION}")]
    Version(u8),
    #[error("body of {len} bytes is larger than {max}")]
    TooLarge { len: usize, max: usize },
    #[error("message cut short: {need} more bytes expected")]
    Truncated { need: usize },
    #[error("unknown event kind {0}")]
    UnknownKind(u8),
    #[error("unknown field id {0}")]
    UnknownField(u8),
    #[error("field {0} given twice")]
    Duplicate(&'static str),
    #[error("field {name} has {len} bytes, at most {max} allowed")]
    ValueTooLong {
        name: &'static str,
        len: usize,
        max: usize,
    },
    #[error("credentials in a {0} event")]
    CredentialsNotAllowed(&'static str),
    #[error("{0} bytes after the last field")]
    Trailing(usize),
    #[error("unknown variable {0:?}")]
    UnknownVariable(String),
}

fn id_of(name: &str) -> Option<u8> {
    ENV_VARS
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u8::try_from(i + 1).ok())
}

fn put_field(
    out: &mut Vec<u8>,
    id: u8,
    v: &[u8],
    name: &'static str,
    max: usize,
) -> Result<(), WireError> {
    if v.len() > max {
        return Err(WireError::ValueTooLong {
            name,
            len: v.len(),
            max,
        });
    }
    let len = u16::try_from(v.len()).map_err(|_| WireError::ValueTooLong {
        name,
        len: v.len(),
        max,
    })?;
    out.push(id);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(v);
    Ok(())
}

/// The request frame (header and body). Fails when a value is beyond its bound, a name is
/// not in [`ENV_VARS`] or given twice, or credentials come with another kind than auth.
pub fn encode_request(r: &Request) -> Result<Vec<u8>, WireError> {
    let mut body = vec![r.kind.code()];
    let mut seen = Vec::new();
    for (name, v) in &r.env {
        let id = id_of(name).ok_or_else(|| WireError::UnknownVariable(name.to_string()))?;
        if seen.contains(&id) {
            return Err(WireError::Duplicate(ENV_VARS[usize::from(id) - 1]));
        }
        seen.push(id);
        put_field(&mut body, id, v, ENV_VARS[usize::from(id) - 1], MAX_VALUE)?;
    }
    if let Some(c) = &r.credentials {
        if r.kind != Kind::Auth {
            return Err(WireError::CredentialsNotAllowed(r.kind.script_type()));
        }
        put_field(&mut body, CREDENTIALS_ID, c, "credentials", MAX_CREDENTIALS)?;
    }
    let len = u32::try_from(body.len()).map_err(|_| WireError::TooLarge {
        len: body.len(),
        max: MAX_BODY,
    })?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks a request header; the body length to read next.
pub fn body_len(header: &[u8; HEADER_LEN]) -> Result<usize, WireError> {
    if header[..4] != MAGIC {
        return Err(WireError::BadMagic);
    }
    if header[4] != VERSION {
        return Err(WireError::Version(header[4]));
    }
    let len = u32::from_be_bytes([header[5], header[6], header[7], header[8]]);
    let len = usize::try_from(len).unwrap_or(usize::MAX);
    if len > MAX_BODY {
        return Err(WireError::TooLarge { len, max: MAX_BODY });
    }
    if len == 0 {
        return Err(WireError::Truncated { need: 1 });
    }
    Ok(len)
}

/// Parses a request body (after [`body_len`]).
pub fn decode_body(body: &[u8]) -> Result<Request, WireError> {
    if body.len() > MAX_BODY {
        return Err(WireError::TooLarge {
            len: body.len(),
            max: MAX_BODY,
        });
    }
    let (&code, mut rest) = body.split_first().ok_or(WireError::Truncated { need: 1 })?;
    let kind = Kind::from_code(code).ok_or(WireError::UnknownKind(code))?;
    let mut req = Request {
        kind,
        env: Vec::new(),
        credentials: None,
    };
    while let Some((&id, after)) = rest.split_first() {
        let [hi, lo, ref value @ ..] = *after else {
            return Err(WireError::Truncated {
                need: 2 - after.len(),
            });
        };
        let len = usize::from(u16::from_be_bytes([hi, lo]));
        if value.len() < len {
            return Err(WireError::Truncated {
                need: len - value.len(),
            });
        }
        let (v, next) = value.split_at(len);
        rest = next;
        if id == CREDENTIALS_ID {
            if kind != Kind::Auth {
                return Err(WireError::CredentialsNotAllowed(kind.script_type()));
            }
            if req.credentials.is_some() {
                return Err(WireError::Duplicate("credentials"));
            }
            if len > MAX_CREDENTIALS {
                return Err(WireError::ValueTooLong {
                    name: "credentials",
                    len,
                    max: MAX_CREDENTIALS,
                });
            }
            req.credentials = Some(v.to_vec());
            continue;
        }
        let name = usize::from(id)
            .checked_sub(1)
            .and_then(|i| ENV_VARS.get(i))
            .copied()
            .ok_or(WireError::UnknownField(id))?;
        if req.var(name).is_some() {
            return Err(WireError::Duplicate(name));
        }
        if len > MAX_VALUE {
            return Err(WireError::ValueTooLong {
                name,
                len,
                max: MAX_VALUE,
            });
        }
        req.env.push((name, v.to_vec()));
    }
    Ok(req)
}

/// Parses a whole request frame (header and body, nothing after it).
pub fn decode_request(frame: &[u8]) -> Result<Request, WireError> {
    let header: &[u8; HEADER_LEN] = frame
        .get(..HEADER_LEN)
        .and_then(|h| h.try_into().ok())
        .ok_or(WireError::Truncated {
            need: HEADER_LEN.saturating_sub(frame.len()),
        })?;
    let len = body_len(header)?;
    let body = &frame[HEADER_LEN..];
    if body.len() < len {
        return Err(WireError::Truncated {
            need: len - body.len(),
        });
    }
    if body.len() > len {
        return Err(WireError::Trailing(body.len() - len));
    }
    decode_body(body)
}

#[cfg(test)]
mod tests;
