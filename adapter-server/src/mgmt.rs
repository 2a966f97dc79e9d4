//! OpenVPN management interface: line parser, event assembler, `status` parser and the
//! commands the monitor sends. All parsers are pure.
//!
//! Protocol facts (management-notes.txt of OpenVPN 2.6): command answers are
//! `SUCCESS: ...` / `ERROR: ...` or multi-line blocks ending with `END`; real-time messages
//! start with `>`; `>CLIENT:CONNECT|REAUTH|ESTABLISHED|DISCONNECT|CR_RESPONSE` are followed
//! by `>CLIENT:ENV,name=value` lines ending with `>CLIENT:ENV,END` (atomic).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

/// Longest line accepted from the management socket.
pub const MAX_LINE: usize = 16 * 1024;
/// Most variables kept from one `>CLIENT:ENV` block.
pub const MAX_ENV_VARS: usize = 512;
/// Most lines kept from one multi-line command answer.
pub const MAX_BLOCK_LINES: usize = 100_000;

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
    ClientEnv {
        name: String,
        value: String,
    },
    ClientEnvEnd,
    /// `>CLIENT:ADDRESS,cid,addr,pri`
    ClientAddress {
        cid: u64,
        addr: String,
        primary: bool,
    },
    /// `>BYTECOUNT_CLI:cid,in,out` (server mode)
    ByteCountCli {
        cid: u64,
        bytes_in: u64,
        bytes_out: u64,
    },
    /// `>BYTECOUNT:in,out` (client mode)
    ByteCount {
        bytes_in: u64,
        bytes_out: u64,
    },
    /// `>HOLD:...`
    Hold(String),
    /// `>INFO:...`
    Info(String),
    /// `>FATAL:...`
    Fatal(String),
    /// Any other real-time message (`>STATE:`, `>LOG:`, `>PASSWORD:`, ...).
    Notification {
        kind: String,
        text: String,
    },
    /// `SUCCESS: text`
    Success(String),
    /// `ERROR: text`
    Error(String),
    /// `END` (end of a multi-line answer)
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

fn malformed(kind: &'static str, reason: impl Into<String>) -> LineError {
    LineError::Malformed {
        kind,
        reason: reason.into(),
    }
}

fn num(kind: &'static str, s: &str) -> Result<u64, LineError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(malformed(kind, format!("{s:?} is not a number")));
    }
    s.parse()
        .map_err(|_| malformed(kind, format!("{s:?} out of range")))
}

/// Parses one line (without its line terminator).
pub fn parse_line(line: &str) -> Result<Line, LineError> {
    if line.len() > MAX_LINE {
        return Err(LineError::TooLong);
    }
    // A TCP management interface with a password sends the prompt without a newline.
    let line = line.strip_prefix("ENTER PASSWORD:").unwrap_or(line);
    let Some(rt) = line.strip_prefix('>') else {
        if let Some(t) = line.strip_prefix("SUCCESS:") {
            return Ok(Line::Success(t.trim_start().to_string()));
        }
        if let Some(t) = line.strip_prefix("ERROR:") {
            return Ok(Line::Error(t.trim_start().to_string()));
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
        "HOLD" => Ok(Line::Hold(text.to_string())),
        "INFO" => Ok(Line::Info(text.to_string())),
        "FATAL" => Ok(Line::Fatal(text.to_string())),
        k if !k.is_empty()
            && k.bytes().all(|b| {
                b.is_ascii_uppercase() || b == b'_' || b == b'-' || b.is_ascii_digit()
            }) =>
        {
            Ok(Line::Notification {
                kind: k.to_string(),
                text: text.to_string(),
            })
        }
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
        other => Err(malformed("CLIENT", format!("unknown type {other:?}"))),
    }
}

/// A complete management event, after assembling multi-line messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Client {
        kind: ClientEventKind,
        cid: u64,
        kid: Option<u64>,
        env: BTreeMap<String, String>,
    },
    ClientAddress {
        cid: u64,
        addr: String,
        primary: bool,
    },
    ByteCountCli {
        cid: u64,
        bytes_in: u64,
        bytes_out: u64,
    },
    Hold(String),
    Info(String),
    Fatal(String),
    Notification {
        kind: String,
        text: String,
    },
    /// Single-line answer to a command.
    Reply {
        ok: bool,
        text: String,
    },
    /// Multi-line answer to a command (without `END`).
    Block(Vec<String>),
    /// A line that could not be used (logged by the caller).
    Garbage(String),
}

/// Turns lines into events. Feed it every line in order.
type OpenBlock = (ClientEventKind, u64, Option<u64>, BTreeMap<String, String>);

#[derive(Debug, Default)]
pub struct Assembler {
    client: Option<OpenBlock>,
    block: Option<Vec<String>>,
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one raw line; returns the event it completes, if any.
    pub fn feed(&mut self, raw: &str) -> Option<Event> {
        let line = match parse_line(raw) {
            Ok(l) => l,
            Err(e) => return Some(Event::Garbage(format!("{e}: {}", snippet(raw)))),
        };
        if let Some((kind, cid, kid, env)) = &mut self.client {
            match line {
                Line::ClientEnv { name, value } => {
                    if env.len() < MAX_ENV_VARS {
                        env.insert(name, value);
                    }
                    return None;
                }
                Line::ClientEnvEnd => {
                    let ev = Event::Client {
                        kind: *kind,
                        cid: *cid,
                        kid: *kid,
                        env: std::mem::take(env),
                    };
                    self.client = None;
                    return Some(ev);
                }
                other => {
                    // Protocol says env blocks are atomic; recover by dropping the block.
                    self.client = None;
                    let dropped = Event::Garbage("unterminated >CLIENT:ENV block".into());
                    return match self.feed_line(other) {
                        Some(Event::Garbage(g)) => Some(Event::Garbage(g)),
                        Some(ev) => Some(ev),
                        None => Some(dropped),
                    };
                }
            }
        }
        self.feed_line(line)
    }

    fn feed_line(&mut self, line: Line) -> Option<Event> {
        match line {
            Line::ClientHeader { kind, cid, kid } => {
                self.client = Some((kind, cid, kid, BTreeMap::new()));
                None
            }
            Line::ClientEnv { .. } | Line::ClientEnvEnd => {
                Some(Event::Garbage(">CLIENT:ENV outside a client block".into()))
            }
            Line::ClientAddress { cid, addr, primary } => {
                Some(Event::ClientAddress { cid, addr, primary })
            }
            Line::ByteCountCli {
                cid,
                bytes_in,
                bytes_out,
            } => Some(Event::ByteCountCli {
                cid,
                bytes_in,
                bytes_out,
            }),
            Line::ByteCount { .. } => Some(Event::Notification {
                kind: "BYTECOUNT".into(),
                text: String::new(),
            }),
            Line::Hold(t) => Some(Event::Hold(t)),
            Line::Info(t) => Some(Event::Info(t)),
            Line::Fatal(t) => Some(Event::Fatal(t)),
            Line::Notification { kind, text } => Some(Event::Notification { kind, text }),
            Line::Success(text) => Some(Event::Reply { ok: true, text }),
            Line::Error(text) => Some(Event::Reply { ok: false, text }),
            Line::Data(d) => {
                let b = self.block.get_or_insert_with(Vec::new);
                if b.len() < MAX_BLOCK_LINES {
                    b.push(d);
                }
                None
            }
            Line::End => Some(Event::Block(self.block.take().unwrap_or_default())),
        }
    }
}

fn snippet(s: &str) -> String {
    s.chars().take(80).collect()
}

/// One client row of `status 2` / `status 3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusClient {
    pub common_name: String,
    /// `ip:port`
    pub real_address: String,
    pub virtual_address: Option<Ipv4Addr>,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub connected_since: u64,
    pub username: Option<String>,
    pub cid: u64,
}

/// Errors of [`parse_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error("not a status 2/3 answer (no TITLE line)")]
    NotStatus,
    #[error("status answer has no CLIENT_LIST header")]
    NoHeader,
    #[error("status column {0:?} missing")]
    MissingColumn(&'static str),
}

/// Parses the block of `status 3` (tabs) or `status 2` (commas). Rows that cannot be used
/// (unparsable numbers, clients still authenticating) are skipped.
pub fn parse_status(lines: &[String]) -> Result<Vec<StatusClient>, StatusError> {
    let first = lines.first().ok_or(StatusError::NotStatus)?;
    let sep = if first.starts_with("TITLE\t") {
        '\t'
    } else if first.starts_with("TITLE,") {
        ','
    } else {
        return Err(StatusError::NotStatus);
    };
    let header: Vec<&str> = lines
        .iter()
        .map(|l| l.split(sep).collect::<Vec<_>>())
        .find(|f| f.len() > 2 && f[0] == "HEADER" && f[1] == "CLIENT_LIST")
        .ok_or(StatusError::NoHeader)?
        .into_iter()
        .skip(1)
        .collect();
    let col = |name: &'static str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or(StatusError::MissingColumn(name))
    };
    let c_cn = col("Common Name")?;
    let c_real = col("Real Address")?;
    let c_virt = col("Virtual Address")?;
    let c_rx = col("Bytes Received")?;
    let c_tx = col("Bytes Sent")?;
    let c_since = col("Connected Since (time_t)")?;
    let c_user = col("Username")?;
    let c_cid = col("Client ID")?;
    let mut out = Vec::new();
    for l in lines {
        let f: Vec<&str> = l.split(sep).collect();
        if f.first() != Some(&"CLIENT_LIST") {
            continue;
        }
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let (Ok(rx), Ok(tx), Ok(since), Ok(cid)) = (
            get(c_rx).parse::<u64>(),
            get(c_tx).parse::<u64>(),
            get(c_since).parse::<u64>(),
            get(c_cid).parse::<u64>(),
        ) else {
            continue;
        };
        let username = match get(c_user) {
            "" | "UNDEF" => None,
            u => Some(u.to_string()),
        };
        out.push(StatusClient {
            common_name: get(c_cn).to_string(),
            real_address: get(c_real).to_string(),
            virtual_address: get(c_virt).parse().ok(),
            bytes_received: rx,
            bytes_sent: tx,
            connected_since: since,
            username,
            cid,
        });
    }
    Ok(out)
}

/// Quotes an argument for the management command lexer (same rules as the config file):
/// double quotes, with `\` and `"` escaped; control characters become spaces.
pub fn quote(arg: &str) -> String {
    let mut s = String::with_capacity(arg.len() + 2);
    s.push('"');
    for c in arg.chars().take(512) {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            c if c.is_control() => s.push(' '),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

/// Commands the monitor sends (each renders to one line without the newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    ByteCount(u32),
    Status(u8),
    HoldRelease,
    ClientKill {
        cid: u64,
    },
    ClientAuthNt {
        cid: u64,
        kid: u64,
    },
    ClientDeny {
        cid: u64,
        kid: u64,
        reason: String,
        client_reason: Option<String>,
    },
}

impl Command {
    pub fn render(&self) -> String {
        match self {
            Self::ByteCount(n) => format!("bytecount {n}"),
            Self::Status(v) => format!("status {v}"),
            Self::HoldRelease => "hold release".into(),
            // OpenVPN 2.6: `client-kill CID [M]`, M = RESTART (default) or HALT; HALT tells
            // the client not to reconnect.
            Self::ClientKill { cid } => format!("client-kill {cid} HALT"),
            Self::ClientAuthNt { cid, kid } => format!("client-auth-nt {cid} {kid}"),
            Self::ClientDeny {
                cid,
                kid,
                reason,
                client_reason,
            } => match client_reason {
                Some(cr) => format!("client-deny {cid} {kid} {} {}", quote(reason), quote(cr)),
                None => format!("client-deny {cid} {kid} {}", quote(reason)),
            },
        }
    }

    /// True when OpenVPN answers with a multi-line block ending in `END`.
    pub fn multi_line(&self) -> bool {
        matches!(self, Self::Status(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_table() {
        use ClientEventKind::*;
        let ok: Vec<(&str, Line)> = vec![
            (
                ">CLIENT:CONNECT,7,1",
                Line::ClientHeader {
                    kind: Connect,
                    cid: 7,
                    kid: Some(1),
                },
            ),
            (
                ">CLIENT:REAUTH,7,2",
                Line::ClientHeader {
                    kind: Reauth,
                    cid: 7,
                    kid: Some(2),
                },
            ),
            (
                ">CLIENT:ESTABLISHED,7",
                Line::ClientHeader {
                    kind: Established,
                    cid: 7,
                    kid: None,
                },
            ),
            (
                ">CLIENT:DISCONNECT,7",
                Line::ClientHeader {
                    kind: Disconnect,
                    cid: 7,
                    kid: None,
                },
            ),
            (
                ">CLIENT:CR_RESPONSE,7,3,dGVzdA==",
                Line::ClientHeader {
                    kind: CrResponse,
                    cid: 7,
                    kid: Some(3),
                },
            ),
            (
                ">CLIENT:ENV,username=alice",
                Line::ClientEnv {
                    name: "username".into(),
                    value: "alice".into(),
                },
            ),
            (
                ">CLIENT:ENV,password=a=b,c",
                Line::ClientEnv {
                    name: "password".into(),
                    value: "a=b,c".into(),
                },
            ),
            (
                ">CLIENT:ENV,empty=",
                Line::ClientEnv {
                    name: "empty".into(),
                    value: String::new(),
                },
            ),
            (">CLIENT:ENV,END", Line::ClientEnvEnd),
            (
                ">CLIENT:ADDRESS,7,10.8.0.6,1",
                Line::ClientAddress {
                    cid: 7,
                    addr: "10.8.0.6".into(),
                    primary: true,
                },
            ),
            (
                ">BYTECOUNT_CLI:7,1234,5678",
                Line::ByteCountCli {
                    cid: 7,
                    bytes_in: 1234,
                    bytes_out: 5678,
                },
            ),
            (
                ">BYTECOUNT:1,2",
                Line::ByteCount {
                    bytes_in: 1,
                    bytes_out: 2,
                },
            ),
            (
                ">HOLD:Waiting for hold release:0",
                Line::Hold("Waiting for hold release:0".into()),
            ),
            (
                ">INFO:OpenVPN Management Interface Version 5 -- type 'help' for more info",
                Line::Info(
                    "OpenVPN Management Interface Version 5 -- type 'help' for more info".into(),
                ),
            ),
            (">FATAL:boom", Line::Fatal("boom".into())),
            (
                ">STATE:1700000000,CONNECTED,SUCCESS,10.8.0.1,,,,",
                Line::Notification {
                    kind: "STATE".into(),
                    text: "1700000000,CONNECTED,SUCCESS,10.8.0.1,,,,".into(),
                },
            ),
            (
                ">LOG:1700000000,I,hello",
                Line::Notification {
                    kind: "LOG".into(),
                    text: "1700000000,I,hello".into(),
                },
            ),
            (
                "SUCCESS: bytecount interval changed",
                Line::Success("bytecount interval changed".into()),
            ),
            (
                "ERROR: client-kill command failed",
                Line::Error("client-kill command failed".into()),
            ),
            (
                "ENTER PASSWORD:SUCCESS: password is correct",
                Line::Success("password is correct".into()),
            ),
            ("END", Line::End),
            (
                "TITLE\tOpenVPN 2.6.14",
                Line::Data("TITLE\tOpenVPN 2.6.14".into()),
            ),
            ("", Line::Data(String::new())),
        ];
        for (input, want) in ok {
            assert_eq!(parse_line(input), Ok(want), "{input:?}");
        }
        let bad = [
            ">BYTECOUNT_CLI:7,12",
            ">BYTECOUNT_CLI:7,12,34,56",
            ">BYTECOUNT_CLI:x,1,2",
            ">BYTECOUNT_CLI:7,-1,2",
            ">BYTECOUNT_CLI:7,99999999999999999999999,2",
            ">BYTECOUNT:1",
            ">CLIENT:CONNECT,7",
            ">CLIENT:CONNECT,,1",
            ">CLIENT:ESTABLISHED,7,1",
            ">CLIENT:ENV,novalue",
            ">CLIENT:ENV,=v",
            ">CLIENT:WHATEVER,1",
            ">CLIENT:ADDRESS,7,10.8.0.6",
            ">nocolon",
            ">lower:x",
            ">:x",
        ];
        for input in bad {
            assert!(parse_line(input).is_err(), "{input:?} accepted");
        }
        assert_eq!(
            parse_line(&"x".repeat(MAX_LINE + 1)),
            Err(LineError::TooLong)
        );
    }

    #[test]
    fn assembler_blocks() {
        let mut a = Assembler::new();
        let lines = [
            ">INFO:hello",
            ">CLIENT:CONNECT,3,0",
            ">CLIENT:ENV,username=alice",
            ">CLIENT:ENV,password=pw",
            ">CLIENT:ENV,END",
            ">BYTECOUNT_CLI:3,10,20",
            "TITLE\tx",
            "CLIENT_LIST\ta",
            "END",
            "SUCCESS: ok",
            ">CLIENT:ENV,stray=1",
            ">CLIENT:DISCONNECT,3",
            ">CLIENT:ENV,bytes_received=5",
            ">BYTECOUNT_CLI:4,1,1",
        ];
        let evs: Vec<Event> = lines.iter().filter_map(|l| a.feed(l)).collect();
        let mut env = BTreeMap::new();
        env.insert("username".to_string(), "alice".to_string());
        env.insert("password".to_string(), "pw".to_string());
        assert_eq!(evs[0], Event::Info("hello".into()));
        assert_eq!(
            evs[1],
            Event::Client {
                kind: ClientEventKind::Connect,
                cid: 3,
                kid: Some(0),
                env
            }
        );
        assert_eq!(
            evs[2],
            Event::ByteCountCli {
                cid: 3,
                bytes_in: 10,
                bytes_out: 20
            }
        );
        assert_eq!(
            evs[3],
            Event::Block(vec!["TITLE\tx".into(), "CLIENT_LIST\ta".into()])
        );
        assert_eq!(
            evs[4],
            Event::Reply {
                ok: true,
                text: "ok".into()
            }
        );
        assert!(matches!(evs[5], Event::Garbage(_)));
        // The interrupted DISCONNECT block is dropped, the bytecount survives.
        assert_eq!(
            evs[6],
            Event::ByteCountCli {
                cid: 4,
                bytes_in: 1,
                bytes_out: 1
            }
        );
        assert_eq!(evs.len(), 7);
    }

    #[test]
    fn env_block_bounded() {
        let mut a = Assembler::new();
        assert!(a.feed(">CLIENT:ESTABLISHED,1").is_none());
        for i in 0..(MAX_ENV_VARS + 50) {
            assert!(a.feed(&format!(">CLIENT:ENV,v{i}=x")).is_none());
        }
        match a.feed(">CLIENT:ENV,END") {
            Some(Event::Client { env, .. }) => assert_eq!(env.len(), MAX_ENV_VARS),
            other => panic!("{other:?}"),
        }
    }

    const STATUS3: &str = "TITLE\tOpenVPN 2.6.14 x86_64-pc-linux-gnu\n\
TIME\t2026-11-22 15:00:00\t1795100000\n\
HEADER\tCLIENT_LIST\tCommon Name\tReal Address\tVirtual Address\tVirtual IPv6 Address\tBytes Received\tBytes Sent\tConnected Since\tConnected Since (time_t)\tUsername\tClient ID\tPeer ID\tData Channel Cipher\n\
CLIENT_LIST\tclient1\t192.0.2.7:50123\t10.8.0.6\t\t3964\t3202\t2026-11-22 14:59:00\t1795099940\tck-1\t0\t0\tAES-256-GCM\n\
CLIENT_LIST\tUNDEF\t192.0.2.8:40000\t\t\t100\t200\t2026-11-22 14:59:59\t1795099999\tUNDEF\t1\t1\tNone\n\
CLIENT_LIST\tbad\t192.0.2.9:1\t10.8.0.7\t\tNaN\t1\tx\t1\tu\t2\t2\tx\n\
HEADER\tROUTING_TABLE\tVirtual Address\tCommon Name\tReal Address\tLast Ref\tLast Ref (time_t)\n\
ROUTING_TABLE\t10.8.0.6\tclient1\t192.0.2.7:50123\t2026-11-22 15:00:00\t1795100000\n\
GLOBAL_STATS\tMax bcast/mcast queue length\t0\n";

    #[test]
    fn status3_parses() {
        let lines: Vec<String> = STATUS3.lines().map(str::to_string).collect();
        let cl = parse_status(&lines).expect("status");
        assert_eq!(cl.len(), 2);
        assert_eq!(
            cl[0],
            StatusClient {
                common_name: "client1".into(),
                real_address: "192.0.2.7:50123".into(),
                virtual_address: Some(Ipv4Addr::new(10, 8, 0, 6)),
                bytes_received: 3964,
                bytes_sent: 3202,
                connected_since: 1795099940,
                username: Some("ck-1".into()),
                cid: 0,
            }
        );
        assert_eq!(cl[1].username, None);
        assert_eq!(cl[1].virtual_address, None);
        // status 2 (commas) with the same content
        let v2: Vec<String> = STATUS3.lines().map(|l| l.replace('\t', ",")).collect();
        assert_eq!(parse_status(&v2).expect("v2"), cl);
        assert_eq!(
            parse_status(&["garbage".to_string()]),
            Err(StatusError::NotStatus)
        );
        assert_eq!(
            parse_status(&["TITLE\tx".to_string()]),
            Err(StatusError::NoHeader)
        );
        assert_eq!(parse_status(&[]), Err(StatusError::NotStatus));
    }

    #[test]
    fn commands_render() {
        let cases = [
            (Command::ByteCount(1), "bytecount 1"),
            (Command::Status(3), "status 3"),
            (Command::HoldRelease, "hold release"),
            (Command::ClientKill { cid: 7 }, "client-kill 7 HALT"),
            (
                Command::ClientAuthNt { cid: 7, kid: 1 },
                "client-auth-nt 7 1",
            ),
            (
                Command::ClientDeny {
                    cid: 7,
                    kid: 1,
                    reason: "auth \"failed\"\\x".into(),
                    client_reason: Some("service\nsuspended".into()),
                },
                "client-deny 7 1 \"auth \\\"failed\\\"\\\\x\" \"service suspended\"",
            ),
            (
                Command::ClientDeny {
                    cid: 1,
                    kid: 0,
                    reason: "r".into(),
                    client_reason: None,
                },
                "client-deny 1 0 \"r\"",
            ),
        ];
        for (c, want) in cases {
            assert_eq!(c.render(), want);
        }
        assert!(Command::Status(3).multi_line());
        assert!(!Command::ClientKill { cid: 1 }.multi_line());
    }
}
