//! Commands the adapters send. Each renders to one line ([`Command::render`], without the
//! newline; [`Command::line`] with it). Free text goes through [`quote`], the quoting of
//! OpenVPN's config/management lexer, so a peer's text can never add a parameter or a
//! command.

/// Quotes an argument for the management command lexer (same rules as the config file):
/// double quotes, with `\` and `"` escaped; control characters become spaces; at most 512
/// characters are kept.
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

/// The signals the `signal` command accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Hup,
    Term,
    Usr1,
    Usr2,
}

impl Signal {
    fn name(self) -> &'static str {
        match self {
            Self::Hup => "SIGHUP",
            Self::Term => "SIGTERM",
            Self::Usr1 => "SIGUSR1",
            Self::Usr2 => "SIGUSR2",
        }
    }
}

/// A management command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `bytecount N`: a `>BYTECOUNT` / `>BYTECOUNT_CLI` every N seconds (0 = off).
    ByteCount(u32),
    /// `status N` (multi-line answer).
    Status(u8),
    /// `state on`: real-time `>STATE:` notifications.
    StateOn,
    /// `log on`: real-time `>LOG:` lines (the client adapter reads the server's pushed
    /// options from OpenVPN's `PUSH: Received control message` line).
    LogOn,
    /// `hold release`
    HoldRelease,
    /// `signal SIGxxx`
    Signal(Signal),
    /// `client-kill CID HALT`
    ClientKill { cid: u64 },
    /// `client-auth-nt CID KID`
    ClientAuthNt { cid: u64, kid: u64 },
    /// `client-deny CID KID "reason" ["client reason"]`
    ClientDeny {
        cid: u64,
        kid: u64,
        reason: String,
        client_reason: Option<String>,
    },
}

impl Command {
    /// The command line without its newline.
    pub fn render(&self) -> String {
        match self {
            Self::ByteCount(n) => format!("bytecount {n}"),
            Self::Status(v) => format!("status {v}"),
            Self::StateOn => "state on".into(),
            Self::LogOn => "log on".into(),
            Self::HoldRelease => "hold release".into(),
            Self::Signal(s) => format!("signal {}", s.name()),
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

    /// The command line with its newline, ready to write.
    pub fn line(&self) -> String {
        let mut s = self.render();
        s.push('\n');
        s
    }

    /// True when OpenVPN answers with a multi-line block ending in `END`.
    pub fn multi_line(&self) -> bool {
        matches!(self, Self::Status(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from adapter-server's mgmt; the client's commands (formerly string constants
    /// in adapter-client's `mgmt::cmd`) added with the same text.
    #[test]
    fn commands_render() {
        let cases = [
            (Command::ByteCount(1), "bytecount 1"),
            (Command::Status(3), "status 3"),
            (Command::HoldRelease, "hold release"),
            (Command::StateOn, "state on"),
            (Command::LogOn, "log on"),
            (Command::Signal(Signal::Term), "signal SIGTERM"),
            (Command::Signal(Signal::Hup), "signal SIGHUP"),
            (Command::Signal(Signal::Usr1), "signal SIGUSR1"),
            (Command::Signal(Signal::Usr2), "signal SIGUSR2"),
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
            assert_eq!(c.line(), format!("{want}\n"));
        }
        assert!(Command::Status(3).multi_line());
        assert!(!Command::ClientKill { cid: 1 }.multi_line());
    }

    #[test]
    fn quote_bounds_and_escapes() {
        let table = [
            ("", "\"\""),
            ("a b", "\"a b\""),
            ("\r\n\t", "\"   \""),
            ("x\"\nclient-kill 1", "\"x\\\" client-kill 1\""),
        ];
        for (input, want) in table {
            assert_eq!(quote(input), want, "{input:?}");
        }
        assert_eq!(quote(&"y".repeat(2000)).len(), 512 + 2);
    }
}
