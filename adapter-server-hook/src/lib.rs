//! adapter-server-hook: the small executable OpenVPN runs for `auth-user-pass-verify`,
//! `client-connect` and `client-disconnect` when `adapter-server monitor` runs next to it,
//! and the pieces it shares with `adapter-server`.
//!
//! The hook reads OpenVPN's script environment (and the via-file credentials file), hands
//! the event to the resident monitor over a private unix socket and exits at once: 2 for
//! auth (the monitor answers through `auth_control_file`), 0 for connect and disconnect
//! (the monitor calls StartSession / StopSession). When no monitor takes the event it
//! `exec`s the full `adapter-server hook` with the same arguments and environment, which
//! works alone and fails closed. It links no async runtime and no HTTP client, so it starts
//! about as fast as a no-op script.
//!
//! - [`wire`]: the hand-off protocol (the one place that writes and parses it);
//! - [`handoff`]: the hook's side of a hand-off (connect, peer check, reply, commit);
//! - [`run`]: what one run does (hand off or fall back);
//! - [`files`]: how files named by OpenVPN or a peer are opened (never through a link,
//!   never created), shared with `adapter-server`.

pub mod files;
pub mod handoff;
pub mod run;
pub mod wire;
