//! What one run of `adapter-server-hook` does: decide whether the event can be handed off
//! ([`plan`], no I/O but reading the credentials file), hand it off, and otherwise `exec`
//! the full `adapter-server` with the same arguments and environment ([`fallback`]).
//!
//! The command line is the full hook's (`[GLOBAL OPTIONS] hook [OPTIONS] [PATH]`, OpenVPN
//! appending PATH); only three things are read from it here: `--handoff-socket`, `--sync`
//! and the last argument (the via-file credentials file, when OpenVPN puts the password
//! there rather than in the environment). Everything else is for the full hook.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::wire::{self, Kind, Request};

/// Default socket of the monitor (`adapter-server monitor --handoff-socket`).
pub const DEFAULT_SOCKET: &str = "/run/adapter-server/hook.sock";
/// Env var naming the socket (also read by `adapter-server`).
pub const SOCKET_ENV: &str = "ADAPTER_SERVER_HANDOFF_SOCKET";
/// Env var naming the full `adapter-server` binary to exec when no monitor takes the event
/// (default: `adapter-server` next to this executable).
pub const FALLBACK_ENV: &str = "ADAPTER_SERVER_HOOK_FALLBACK";
/// Env var of the full hook's `--sync`.
const SYNC_ENV: &str = "ADAPTER_SERVER_SYNC";

/// What to do with this run.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    /// Hand `request` to the monitor on `socket`.
    HandOff { request: Request, socket: PathBuf },
    /// Run the full hook; `why` is logged.
    Fallback { why: String },
}

/// The value of `--NAME VALUE` / `--NAME=VALUE` (the last one wins, as with clap).
fn option_value<'a>(args: &'a [OsString], name: &str) -> Option<&'a OsStr> {
    let flag = format!("--{name}");
    let prefix = format!("--{name}=");
    let mut found = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let b = a.as_bytes();
        if b == flag.as_bytes() {
            found = it.next().map(OsString::as_os_str);
        } else if let Some(v) = b.strip_prefix(prefix.as_bytes()) {
            found = Some(OsStr::from_bytes(v));
        }
    }
    found
}

/// clap's reading of a boolean env var: false only for empty, 0, n, no, f, false, off.
fn env_true(v: Option<OsString>) -> bool {
    v.is_some_and(|v| {
        !matches!(
            v.to_string_lossy().to_ascii_lowercase().as_str(),
            "" | "0" | "n" | "no" | "f" | "false" | "off"
        )
    })
}

/// The socket to use: `--handoff-socket`, else the env var, else [`DEFAULT_SOCKET`].
pub fn socket_path(args: &[OsString], var: &dyn Fn(&str) -> Option<OsString>) -> PathBuf {
    option_value(args, "handoff-socket")
        .map(PathBuf::from)
        .or_else(|| var(SOCKET_ENV).filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET))
}

/// Decides what to do with the event in the environment `var` and arguments `args` (those
/// after the program name). Reads the via-file credentials file (never through a link).
pub fn plan(args: &[OsString], var: &dyn Fn(&str) -> Option<OsString>) -> Plan {
    let fallback = |why: &str| Plan::Fallback {
        why: why.to_string(),
    };
    let script_type = var("script_type").unwrap_or_default();
    let Some(kind) = Kind::from_script_type(&script_type.to_string_lossy()) else {
        return fallback("no known script_type");
    };
    let mut env = Vec::new();
    for name in wire::ENV_VARS {
        if kind != Kind::Auth && *name == "password" {
            continue;
        }
        if let Some(v) = var(name) {
            if v.len() > wire::MAX_VALUE {
                return fallback(&format!("{name} is longer than the hand-off carries"));
            }
            env.push((*name, v.into_vec()));
        }
    }
    let mut credentials = None;
    if kind == Kind::Auth {
        let has = |n: &str| env.iter().any(|(k, v)| *k == n && !v.is_empty());
        if !has("auth_control_file") {
            return fallback("OpenVPN offers no auth_control_file (synchronous auth)");
        }
        if args.iter().any(|a| a == "--sync") || env_true(var(SYNC_ENV)) {
            return fallback("--sync asks for a synchronous answer");
        }
        // via-env puts the password in the environment; via-file appends the file.
        if !has("password") {
            let Some(path) = args.last().filter(|a| !a.as_bytes().starts_with(b"-")) else {
                return fallback("no password in the environment and no credentials file");
            };
            match crate::files::read_bounded_nofollow(Path::new(path), wire::MAX_CREDENTIALS as u64)
            {
                Ok(bytes) => credentials = Some(bytes),
                Err(e) => {
                    return fallback(&format!(
                        "reading the credentials file {}: {e}",
                        Path::new(path).display()
                    ))
                }
            }
        }
    }
    Plan::HandOff {
        request: Request {
            kind,
            env,
            credentials,
        },
        socket: socket_path(args, var),
    }
}

/// The full `adapter-server`: `$ADAPTER_SERVER_HOOK_FALLBACK`, else `adapter-server` in
/// this executable's directory.
pub fn fallback_binary(var: &dyn Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    if let Some(p) = var(FALLBACK_ENV).filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let me = std::env::current_exe().ok()?;
    Some(me.parent()?.join("adapter-server"))
}

/// Replaces this process by the full hook (same arguments, same environment). Returns only
/// when that is impossible, with the reason.
pub fn fallback(full: &Path, args: &[OsString]) -> String {
    if let (Ok(a), Ok(b)) = (full.canonicalize(), std::env::current_exe()) {
        if a == b {
            return format!(
                "the fallback {} is this hook itself, not adapter-server",
                full.display()
            );
        }
    }
    let e = Command::new(full).args(args).exec();
    format!("cannot run {}: {e}", full.display())
}

#[cfg(test)]
mod tests;
