//! The event assembler: lines in, complete management events out.
//!
//! Per the protocol a `>CLIENT:CONNECT|REAUTH|ESTABLISHED|DISCONNECT|CR_RESPONSE` header,
//! its `>CLIENT:ENV,name=value` lines and the closing `>CLIENT:ENV,END` are atomic; the
//! [`Assembler`] turns them into one [`Event::Client`]. Lines that are not real-time
//! messages or single-line answers are command output, collected until `END` into an
//! [`Event::Block`]. Sizes are bounded ([`MAX_ENV_VARS`], [`MAX_BLOCK_LINES`]).

use std::collections::BTreeMap;

use crate::line::{parse_line, snippet, ClientEventKind, Line};

/// Most variables kept from one `>CLIENT:ENV` block.
pub const MAX_ENV_VARS: usize = 512;
/// Most lines kept from one multi-line command answer.
pub const MAX_BLOCK_LINES: usize = 100_000;

/// A complete management event, after assembling multi-line messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A `>CLIENT:` header with its env block.
    Client {
        kind: ClientEventKind,
        cid: u64,
        kid: Option<u64>,
        env: BTreeMap<String, String>,
    },
    /// `>CLIENT:ADDRESS`
    ClientAddress {
        cid: u64,
        addr: String,
        primary: bool,
    },
    /// `>BYTECOUNT_CLI`
    ByteCountCli {
        cid: u64,
        bytes_in: u64,
        bytes_out: u64,
    },
    Hold(String),
    Info(String),
    Fatal(String),
    /// Any other real-time message (`>STATE:`, `>LOG:`, `>BYTECOUNT:`, …), as `KIND` and
    /// the text after the `:`.
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

type OpenBlock = (ClientEventKind, u64, Option<u64>, BTreeMap<String, String>);

/// Turns lines into events. Feed it every line in order.
#[derive(Debug, Default)]
pub struct Assembler {
    client: Option<OpenBlock>,
    block: Option<Vec<String>>,
}

impl Assembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one raw line (as read by [`crate::LineReader`]); returns the event it
    /// completes, if any.
    pub fn feed(&mut self, raw: &str) -> Option<Event> {
        let line = match parse_line(raw) {
            Ok(l) => l,
            Err(e) => return Some(Event::Garbage(format!("{e}: {}", snippet(raw, 80)))),
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
                    return match self.feed_line(other, raw) {
                        Some(ev) => Some(ev),
                        None => Some(dropped),
                    };
                }
            }
        }
        self.feed_line(line, raw)
    }

    fn feed_line(&mut self, line: Line, raw: &str) -> Option<Event> {
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
            Line::Hold(t) => Some(Event::Hold(t)),
            Line::Info(t) => Some(Event::Info(t)),
            Line::Fatal(t) => Some(Event::Fatal(t)),
            Line::Notification { kind, text } => Some(Event::Notification { kind, text }),
            Line::ByteCount { .. }
            | Line::State(_)
            | Line::Password(_)
            | Line::Log(_)
            | Line::Notify { .. } => Some(notification(raw)),
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

/// `>KIND:text` of a line already parsed as a real-time message.
fn notification(raw: &str) -> Event {
    let raw = raw.strip_suffix('\r').unwrap_or(raw);
    let rt = raw.split_once('>').map_or(raw, |(_, r)| r);
    let (kind, text) = rt.split_once(':').unwrap_or((rt, ""));
    Event::Notification {
        kind: kind.to_string(),
        text: text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from adapter-server's mgmt.
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

    /// Moved from adapter-server's mgmt.
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

    /// Real-time messages a server has no use for come out as notifications with their
    /// kind and text; an interrupted env block is reported when nothing else comes out.
    #[test]
    fn other_messages_and_interrupted_blocks() {
        let table: Vec<(&[&str], Vec<Event>)> = vec![
            (
                &[">STATE:1,CONNECTED,SUCCESS,10.8.0.1,,,,\r"],
                vec![Event::Notification {
                    kind: "STATE".into(),
                    text: "1,CONNECTED,SUCCESS,10.8.0.1,,,,".into(),
                }],
            ),
            (
                &[">LOG:1,I,hello"],
                vec![Event::Notification {
                    kind: "LOG".into(),
                    text: "1,I,hello".into(),
                }],
            ),
            (
                &[">BYTECOUNT:1,2"],
                vec![Event::Notification {
                    kind: "BYTECOUNT".into(),
                    text: "1,2".into(),
                }],
            ),
            (
                &[">NEED-OK:Need 'token-insertion-request' confirmation MSG:x"],
                vec![Event::Notification {
                    kind: "NEED-OK".into(),
                    text: "Need 'token-insertion-request' confirmation MSG:x".into(),
                }],
            ),
            (
                &["ENTER PASSWORD:SUCCESS: password is correct"],
                vec![Event::Reply {
                    ok: true,
                    text: "password is correct".into(),
                }],
            ),
            (
                &["ERROR: unknown command"],
                vec![Event::Reply {
                    ok: false,
                    text: "unknown command".into(),
                }],
            ),
            (
                &[">CLIENT:ESTABLISHED,1", ">CLIENT:ENV,a=b", "TITLE\tx"],
                vec![Event::Garbage("unterminated >CLIENT:ENV block".into())],
            ),
            (
                &[">CLIENT:ESTABLISHED,1", ">HOLD:Waiting for hold release:0"],
                vec![Event::Hold("Waiting for hold release:0".into())],
            ),
            (&["END"], vec![Event::Block(vec![])]),
        ];
        for (lines, want) in table {
            let mut a = Assembler::new();
            let got: Vec<Event> = lines.iter().filter_map(|l| a.feed(l)).collect();
            assert_eq!(got, want, "{lines:?}");
        }
        let mut a = Assembler::new();
        match a.feed(">BYTECOUNT_CLI:1,2") {
            Some(Event::Garbage(g)) => assert!(g.contains("BYTECOUNT_CLI"), "{g}"),
            other => panic!("{other:?}"),
        }
    }

    /// A command answer is bounded in lines.
    #[test]
    fn block_bounded() {
        let mut a = Assembler::new();
        for _ in 0..(MAX_BLOCK_LINES + 10) {
            assert!(a.feed("CLIENT_LIST\tx").is_none());
        }
        match a.feed("END") {
            Some(Event::Block(b)) => assert_eq!(b.len(), MAX_BLOCK_LINES),
            other => panic!("{other:?}"),
        }
    }
}
