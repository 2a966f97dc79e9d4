//! `adapter-server-hook`: hand the OpenVPN script event to `adapter-server monitor`, or run
//! the full `adapter-server hook` (see the crate docs and `--help`).

use std::ffi::OsString;
use std::process::ExitCode;

use adapter_server_hook::run::{self, Plan};
use adapter_server_hook::{files, handoff, wire::Kind};

const HELP: &str = "\
adapter-server-hook: the script OpenVPN runs for auth-user-pass-verify, client-connect and
client-disconnect when `adapter-server monitor --handoff-socket PATH` runs next to it.

Usage: the full hook's command line with this binary in front, e.g. in the server config:

    auth-user-pass-verify \"/usr/local/bin/adapter-server-hook --config /etc/adapter-server/config.toml hook\" via-file
    client-disconnect \"/usr/local/bin/adapter-server-hook --config /etc/adapter-server/config.toml hook\"

It writes the event to the monitor's unix socket and exits at once, without waiting for
the monitor: 2 for auth (the monitor answers through auth_control_file), 0 for
client-connect / client-disconnect (the monitor calls StartSession / StopSession with the
event's data). When no monitor takes the event (no socket, nobody listening, its backlog
full, a write error), with --sync, or when OpenVPN offers no auth_control_file, it execs
the full `adapter-server` with the same arguments and environment, which answers by
itself and fails closed.

Settings:
  --handoff-socket PATH          the monitor's socket (env ADAPTER_SERVER_HANDOFF_SOCKET)
                                 [default: /run/adapter-server/hook.sock]
  ADAPTER_SERVER_HOOK_FALLBACK   the full binary [default: adapter-server next to this one]";

fn log(msg: &str) {
    eprintln!("adapter-server-hook: {msg}");
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match args.first().and_then(|a| a.to_str()) {
        Some("-h" | "--help") if args.len() == 1 => {
            println!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Some("-V" | "--version") if args.len() == 1 => {
            println!("adapter-server-hook {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let var = |n: &str| std::env::var_os(n);
    let kind = var("script_type").and_then(|s| Kind::from_script_type(&s.to_string_lossy()));
    match run::plan(&args, &var) {
        Plan::HandOff { request, socket } => {
            let who = request
                .var("username")
                .or_else(|| request.var("common_name"))
                .map(|u| String::from_utf8_lossy(u).into_owned())
                .unwrap_or_else(|| "-".into());
            match handoff::hand_off(&socket, &request, handoff::WRITE_TIMEOUT) {
                Ok(()) => {
                    log(&format!(
                        "{} of user {who} handed off to the monitor",
                        request.kind.script_type()
                    ));
                    return ExitCode::from(request.kind.handed_off_exit_code());
                }
                Err(e) => log(&format!("no hand-off ({e}); running the full hook")),
            }
        }
        Plan::Fallback { why } => log(&format!("{why}; running the full hook")),
    }
    let why = match run::fallback_binary(&var) {
        Some(full) => run::fallback(&full, &args),
        None => "cannot locate adapter-server".to_string(),
    };
    // Nobody answers: fail closed.
    log(&format!("{why}; denying"));
    match kind {
        Some(Kind::Auth) => {
            if let Some(r) = var("auth_failed_reason_file").filter(|v| !v.is_empty()) {
                if let Err(e) =
                    files::write_existing(std::path::Path::new(&r), b"authentication unavailable")
                {
                    log(&format!("writing the reason file: {e}"));
                }
            }
            ExitCode::from(1)
        }
        Some(Kind::ClientDisconnect) => ExitCode::SUCCESS,
        _ => ExitCode::from(1),
    }
}
