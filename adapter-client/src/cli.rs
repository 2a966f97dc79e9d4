//! Command line, config file and the dispatch of the subcommands.
//!
//! Precedence for every setting: command-line flag, then its environment variable, then
//! the TOML config file (`--config`), then the built-in default.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use service_api::{AccessMessage, Client, ClientKey, Secret};
use tokio_util::sync::CancellationToken;

use crate::connect::{self, ConnectError};
use crate::render::{self, RenderOptions};
use crate::runtime;
use crate::state;
use crate::up::{DownArgs, LsArgs, UpArgs};

pub mod check;
mod config;
mod net;

use config::read_small;
pub use config::{
    load_file_config, parse_file_config, resolve_connect, resolve_core, resolve_core_url,
    resolve_token, CliError, ConfigFileError, FileConfig,
};
pub use net::{resolve_net, NetArgs};

/// `--token` as a [`Secret`] (its `Debug` never shows it).
fn secret_arg(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret(s.to_string()))
}

pub const DEFAULT_CORE_URL: &str = "http://127.0.0.1:7701";
/// Largest config / token / access file read.
pub(crate) const MAX_FILE: u64 = 256 * 1024;

const LONG_ABOUT: &str = "\
Client adapter of the VPN service module: gets the access message of a channel from the
client's core-lite (GetAccess), renders an OpenVPN client config from an allow-list (the
message is untrusted), runs openvpn with its management interface on a private unix socket,
reports the sessions (StartSession / UpdateSession / StopSession) with cumulative byte
counts, reconnects with backoff, applies the offering's speed limits on the tun device
(upload on egress, download through an IFB device). When the core answers suspending/
suspended (payment lag) it stops openvpn and waits, asking the core every --suspend-poll
seconds, and reconnects once a payment brings the channel back (activating/active). It
stops for good when the core answers terminating/terminated, or when the server halts the
client (or refuses the credentials) and the core still admits the channel after
--halt-grace seconds.

Exit codes of `connect` and `up`: 0 stopped by SIGINT/SIGTERM or `down` (also while
suspended); 1 error; 2 usage error; 3 terminated by the core (or still suspended after
--max-suspend-wait); 4 halted by the server; 5 credentials refused; `up`, `down` also:
6 nothing matched (no offering, no such channel, nothing running); 7 the deposit was
declined at the prompt.

The end user's one command: adapter-client up http://AGENT:7710 (see `up --help`).";

#[derive(Debug, Parser)]
#[command(name = "adapter-client", version, about = "VPN client adapter: GetAccess → OpenVPN client with accounting and speed limits", long_about = LONG_ABOUT)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info`, `debug`, `adapter_client=debug,openvpn=debug`).
    /// Log lines go to stderr [default: `warn` for up, ls and down, else `info`].
    #[arg(long, env = "ADAPTER_CLIENT_LOG", global = true)]
    pub log: Option<String>,
    /// PEM file of the certificate authorities trusted for an https:// --core-url (a client
    /// core on another host with `serve --tls-cert`); default: the system's roots. A
    /// self-signed core certificate can be given here itself.
    #[arg(long, env = "ADAPTER_CLIENT_CA_FILE", global = true)]
    pub ca_file: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

impl Cli {
    /// The log filter: `--log`, else `warn` for the end user's commands (their own output
    /// says what happens), else `info`.
    pub fn log_filter(&self) -> &str {
        match (&self.log, &self.command) {
            (Some(l), _) => l,
            (None, Command::Up(_) | Command::Ls(_) | Command::Down(_)) => "warn",
            (None, _) => "info",
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Buy VPN service from an agent and connect, in one command: starts or reuses the
    /// client core, fetches and verifies the agent's offerings, lets you pick one, accepts
    /// it with a deposit you confirm, connects and shows a live status line until Ctrl-C.
    Up(Box<UpArgs>),
    /// List the client's channels: status, usage, money, and their running connection.
    Ls(LsArgs),
    /// Stop a running `up` or `connect` cleanly (final counts reported).
    Down(DownArgs),
    /// Connect and stay connected until SIGINT/SIGTERM or until the service ends.
    Connect(Box<ConnectArgs>),
    /// Print the state of a running `connect` (or of the last one) from its state file.
    Status(StatusArgs),
    /// Print the OpenVPN config `connect` would use (the password is never printed).
    Render(RenderArgs),
    /// Check a config file and report every problem (file, line, key) without starting;
    /// exit status 0 when it is fine, 1 otherwise.
    CheckConfig {
        /// The file [default: --config / ADAPTER_CLIENT_CONFIG].
        file: Option<PathBuf>,
        /// The file, as `connect --config` takes it.
        #[arg(long, env = "ADAPTER_CLIENT_CONFIG")]
        config: Option<PathBuf>,
    },
}

/// Where the core is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct CoreArgs {
    /// TOML config file (keys: core_url, token, token_file, client_key, openvpn, runtime_dir,
    /// state_file, tun_dev, ifb_dev, no_shaping, tc, ip, report_interval_secs,
    /// bytecount_interval_secs, backoff_initial_ms, backoff_max_secs, stop_timeout_secs, verb,
    /// suspend_poll_secs, max_suspend_wait_secs, halt_grace_secs, dns, lockdown,
    /// lockdown_allow, nft).
    #[arg(long, env = "ADAPTER_CLIENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Base URL of the client's core-lite [default: http://127.0.0.1:7701]; several cores
    /// separated by commas are tried in order (the one that answered last first).
    #[arg(long, env = "ADAPTER_CLIENT_CORE_URL")]
    pub core_url: Option<String>,
    /// Client token for the core (prefer --token-file: command lines are visible to others).
    #[arg(long, env = "ADAPTER_CLIENT_TOKEN", hide_env_values = true, value_parser = secret_arg)]
    pub token: Option<Secret>,
    /// File holding the client token (first line). Used when --token is not given.
    #[arg(long, env = "ADAPTER_CLIENT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Client key (channel) to connect.
    #[arg(long, env = "ADAPTER_CLIENT_KEY")]
    pub client_key: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct ConnectArgs {
    #[command(flatten)]
    pub core: CoreArgs,
    /// The openvpn program [default: openvpn].
    #[arg(long, env = "ADAPTER_CLIENT_OPENVPN")]
    pub openvpn: Option<PathBuf>,
    /// Private runtime directory (created 0700, removed on exit) for the config, the
    /// credentials file and the management socket
    /// [default: /run/adapter-client/CLIENT_KEY, or $XDG_RUNTIME_DIR/adapter-client/CLIENT_KEY
    /// when not root; CLIENT_KEY is the client key made safe as a file name].
    #[arg(long, env = "ADAPTER_CLIENT_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// State file read by `status` [default: CLIENT_KEY.state.json next to the runtime
    /// directory, e.g. /run/adapter-client/CLIENT_KEY.state.json].
    #[arg(long, env = "ADAPTER_CLIENT_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// Name of the tun device openvpn creates (≤ 15 chars) [default: tunac followed by the
    /// adapter's pid, e.g. tunac4242].
    #[arg(long, env = "ADAPTER_CLIENT_TUN_DEV")]
    pub tun_dev: Option<String>,
    /// Name of the IFB device for download shaping (≤ 15 chars) [default: ifbac followed by
    /// the adapter's pid].
    #[arg(long, env = "ADAPTER_CLIENT_IFB_DEV")]
    pub ifb_dev: Option<String>,
    /// Do not apply the speed limits with tc.
    #[arg(long, env = "ADAPTER_CLIENT_NO_SHAPING")]
    pub no_shaping: bool,
    /// The tc program [default: tc].
    #[arg(long, env = "ADAPTER_CLIENT_TC")]
    pub tc: Option<PathBuf>,
    /// The ip program [default: ip].
    #[arg(long, env = "ADAPTER_CLIENT_IP")]
    pub ip: Option<PathBuf>,
    /// Seconds between usage reports (UpdateSession) [default: 5].
    #[arg(long, env = "ADAPTER_CLIENT_REPORT_INTERVAL")]
    pub report_interval: Option<u64>,
    /// Seconds between openvpn byte counts (`bytecount N`) [default: 1].
    #[arg(long, env = "ADAPTER_CLIENT_BYTECOUNT_INTERVAL")]
    pub bytecount_interval: Option<u32>,
    /// First reconnect delay in milliseconds (doubles per failed attempt) [default: 1000].
    #[arg(long, env = "ADAPTER_CLIENT_BACKOFF_INITIAL_MS")]
    pub backoff_initial_ms: Option<u64>,
    /// Longest reconnect delay in seconds [default: 60].
    #[arg(long, env = "ADAPTER_CLIENT_BACKOFF_MAX")]
    pub backoff_max: Option<u64>,
    /// Seconds openvpn gets to exit after `signal SIGTERM` before it is killed [default: 10].
    #[arg(long, env = "ADAPTER_CLIENT_STOP_TIMEOUT")]
    pub stop_timeout: Option<u64>,
    /// OpenVPN log verbosity (`verb`) [default: 3]. Its output is logged at debug level
    /// (target `openvpn`).
    #[arg(long, env = "ADAPTER_CLIENT_VERB")]
    pub verb: Option<u8>,
    /// While the service is suspended (payment lag): seconds between status checks with
    /// the core [default: 2].
    #[arg(long, env = "ADAPTER_CLIENT_SUSPEND_POLL")]
    pub suspend_poll: Option<u64>,
    /// Give up (exit 3) when the service stays suspended this many seconds
    /// [default: wait until the channel is terminated or a signal arrives].
    #[arg(long, env = "ADAPTER_CLIENT_MAX_SUSPEND_WAIT")]
    pub max_suspend_wait: Option<u64>,
    /// After a server HALT (or refused credentials): seconds the core is asked whether the
    /// channel was suspended (→ wait) or terminated before the halt counts as final (exit 4)
    /// [default: 5].
    #[arg(long, env = "ADAPTER_CLIENT_HALT_GRACE")]
    pub halt_grace: Option<u64>,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// State file to read [default: the one of --client-key, or every state file in the
    /// default runtime base directory].
    #[arg(long, env = "ADAPTER_CLIENT_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// Client key whose default state file to read.
    #[arg(long, env = "ADAPTER_CLIENT_KEY")]
    pub client_key: Option<String>,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
pub struct RenderArgs {
    #[command(flatten)]
    pub core: CoreArgs,
    /// Render this access message (JSON file) instead of calling GetAccess (no core needed).
    #[arg(long, env = "ADAPTER_CLIENT_ACCESS_FILE")]
    pub access_file: Option<PathBuf>,
    /// Runtime directory used for the paths in the config (nothing is created).
    #[arg(long, env = "ADAPTER_CLIENT_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Tun device name written into the config [default: tunac followed by the adapter's
    /// pid].
    #[arg(long, env = "ADAPTER_CLIENT_TUN_DEV")]
    pub tun_dev: Option<String>,
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run(cli: Cli) -> Result<u8, CliError> {
    match cli.command {
        Command::Connect(a) => {
            let s = resolve_connect(&a)?;
            let cancel = CancellationToken::new();
            connect::cancel_on_signals(cancel.clone()).map_err(|e| {
                CliError::Invalid(format!("could not install signal handlers: {e}"))
            })?;
            let outcome = connect::run(s, cancel).await?;
            Ok(outcome.exit_code())
        }
        Command::Up(a) => Ok(crate::up::run_up(*a).await?),
        Command::Ls(a) => Ok(crate::up::run_ls(a).await?),
        Command::Down(a) => Ok(crate::up::run_down(a).await?),
        Command::Status(a) => status(&a).map(|()| 0),
        Command::CheckConfig { file, config } => {
            let path = file.or(config).ok_or_else(|| {
                CliError::Invalid(
                    "check-config: give the file (`adapter-client check-config FILE`, --config or ADAPTER_CLIENT_CONFIG)".into(),
                )
            })?;
            let report = check::check(&path);
            print!("{report}");
            Ok(report.exit_code())
        }
        Command::Render(a) => {
            let text = render_cmd(&a).await?;
            print!("{text}");
            Ok(0)
        }
    }
}

fn status(a: &StatusArgs) -> Result<(), CliError> {
    let files: Vec<PathBuf> = if let Some(p) = &a.state_file {
        vec![p.clone()]
    } else if let Some(k) = &a.client_key {
        vec![runtime::default_state_file(k)]
    } else {
        let base = runtime::default_base_dir();
        let mut v: Vec<PathBuf> = std::fs::read_dir(&base)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        p.file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| n.ends_with(".state.json"))
                    })
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        if v.is_empty() {
            return Err(CliError::NoStateFile(base));
        }
        v
    };
    let now = state::now_unix();
    for (i, p) in files.iter().enumerate() {
        let s = state::read(p)?;
        if a.json {
            println!(
                "{}",
                serde_json::to_string(&s).unwrap_or_else(|_| "{}".to_string())
            );
            continue;
        }
        if i > 0 {
            println!();
        }
        let alive = i32::try_from(s.pid)
            .is_ok_and(|pid| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok());
        print!("{}", state::describe(&s, alive, now));
    }
    Ok(())
}

/// The text of `adapter-client render`.
pub async fn render_cmd(a: &RenderArgs) -> Result<String, CliError> {
    let f = load_file_config(a.core.config.as_deref())?;
    let msg: AccessMessage = if let Some(p) = &a.access_file {
        let text = read_small("access file", p)?;
        let parse_err = |e| CliError::ParseAccess {
            path: p.clone(),
            source: e,
        };
        // Either a bare access message or the agent's signed envelope (`access export`, the
        // market's answer): `render` only shows the config, so the envelope's access part is
        // taken as it is (the client's core verifies signatures before it serves one).
        let signed = serde_json::from_str::<serde_json::Value>(&text)
            .is_ok_and(|v| v.get("access").is_some() && v.get("signature").is_some());
        let msg: AccessMessage = if signed {
            service_api::body::from_slice::<service_api::market::SignedAccess>(text.as_bytes())
                .map_err(parse_err)?
                .access
        } else {
            service_api::body::from_slice(text.as_bytes()).map_err(parse_err)?
        };
        // With a client key given, the message must be its own (`render` can show any file).
        if let Some(key) = a.core.client_key.clone().or(f.client_key.clone()) {
            connect::check_username(&msg, &ClientKey(key))?;
        }
        msg
    } else {
        let (url, token, key) = resolve_core(&a.core, &f, true)?;
        let token = token.ok_or(CliError::MissingToken)?;
        let api = Client::new(&url, token, Duration::from_secs(10))
            .map_err(|e| CliError::Connect(ConnectError::CoreClient(e)))?;
        connect::fetch_access(&api, &key).await?
    };
    let dir = a
        .runtime_dir
        .clone()
        .or(f.runtime_dir.clone())
        .unwrap_or_else(|| runtime::default_runtime_dir(&msg.username.0));
    let tun = a
        .tun_dev
        .clone()
        .or(f.tun_dev.clone())
        .unwrap_or_else(|| format!("tunac{}", std::process::id()));
    let r = render::render(
        &msg,
        &RenderOptions {
            auth_file: dir.join(runtime::AUTH_NAME),
            mgmt_socket: dir.join(runtime::MGMT_SOCKET_NAME),
            tun_dev: tun,
            verb: 3,
        },
    )
    .map_err(ConnectError::from)?;
    for k in &r.ignored_keys {
        tracing::warn!("ignored unknown additionalParams key {k}");
    }
    for w in &r.warnings {
        tracing::warn!("{w}");
    }
    let mut out = String::new();
    out.push_str(&format!(
        "# credentials file {}: username {}, password <redacted>\n",
        dir.join(runtime::AUTH_NAME).display(),
        r.credentials.username
    ));
    out.push_str(&format!(
        "# speed limits (bit/s): upload min {:?} max {:?}, download min {:?} max {:?}\n",
        r.speed.min_upload_bps,
        r.speed.max_upload_bps,
        r.speed.min_download_bps,
        r.speed.max_download_bps
    ));
    out.push_str(&r.text);
    Ok(out)
}

/// Logging to stderr with an EnvFilter (above the spinner of `up` when one is on screen).
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(crate::up::ui::LogWriter)
        // Colour only on a terminal: logs go to files and journals too.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests;
