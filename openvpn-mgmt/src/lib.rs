//! openvpn-mgmt: the OpenVPN management-interface protocol, for both sides of the VPN
//! module pair (the server adapter's monitor and the client adapter's connection actor).
//!
//! Everything here is pure except the [`LineReader`], which only reads: no process, no
//! socket, no state of the adapters. The formats follow `management-notes.txt` of
//! OpenVPN 2.6 (shipped as `/usr/share/doc/openvpn/management-notes.txt.gz`):
//!
//! - [`reader`]: [`LineReader`], the one bounded line reader. A line is at most
//!   [`MAX_LINE`] bytes; a longer line is dropped whole and an unfinished last line at end
//!   of stream is never returned as a line — both are reported ([`ReadItem`]) so callers
//!   can log them.
//! - [`mod@line`]: [`parse_line`], one line to a [`Line`]: real-time messages (`>CLIENT:…`,
//!   `>BYTECOUNT_CLI:…` on a server; `>STATE:…`, `>BYTECOUNT:…`, `>HOLD:…`,
//!   `>PASSWORD:…`, `>NOTIFY:…` on a client; `>INFO:`, `>LOG:`, `>FATAL:`, any other
//!   `>KIND:`), command answers (`SUCCESS:` / `ERROR:`) and multi-line output ending in
//!   `END`.
//! - [`state`]: the `>STATE:` fields ([`StateChange`]) and what an exit or restart reason
//!   means ([`classify_exit_reason`]).
//! - [`event`]: the [`Assembler`] that joins a `>CLIENT:` header and its `>CLIENT:ENV`
//!   lines (atomic per the protocol) into one [`Event`], and command output into blocks.
//! - [`status`]: [`parse_status`] of a `status 3` (or `status 2`) answer.
//! - [`command`]: the [`Command`]s the adapters send, rendered with the management
//!   lexer's quoting ([`quote`]).
//!
//! Every input is hostile until parsed: sizes are bounded (line length, variables per env
//! block, lines per answer), numbers are strict decimal digits, and nothing panics.

pub mod command;
pub mod event;
pub mod line;
pub mod reader;
pub mod state;
pub mod status;

pub use command::{quote, Command, Signal};
pub use event::{Assembler, Event, MAX_BLOCK_LINES, MAX_ENV_VARS};
pub use line::{parse_line, ClientEventKind, Line, LineError};
pub use reader::{LineReader, ReadItem};
pub use state::{classify_exit_reason, ExitKind, OvpnState, StateChange};
pub use status::{parse_status, StatusClient, StatusError};

/// Longest management line used, in bytes, without its `\n` terminator: 16 KiB.
///
/// OpenVPN's longest lines on this interface are `>CLIENT:ENV,name=value` lines (a value is
/// a certificate subject, a password or a peer-info string of a few KiB at most) and
/// `>LOG:` lines (bounded by OpenVPN's message buffer, well under 16 KiB); everything else
/// is short. A longer line is not OpenVPN speaking normally, so it is dropped whole — never
/// cut and the kept part parsed, which would turn `>BYTECOUNT:0,000…0123` into 0.
pub const MAX_LINE: usize = 16 * 1024;
