//! Command line, config file and the dispatch of the subcommands.
//!
//! Precedence for every setting: command-line flag, then its environment variable, then
//! the TOML config file (`--config`), then the built-in default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;
use service_api::{AccessMessage, Client, ClientKey, Secret};
use tc_shaper::Tools;
use tokio_util::sync::CancellationToken;

use crate::connect::{self, ConnectError, ConnectSettings};
use crate::render::{self, RenderOptions};
use crate::runtime;
use crate::state;

pub const DEFAULT_CORE_URL: &str = "http://127.0.0.1:7701";
/// Largest config / token / access file read.
const MAX_FILE: u64 = 256 * 1024;

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

Exit codes of `connect`: 0 stopped by SIGINT/SIGTERM (also while suspended); 1 error;
2 usage error; 3 terminated by the core (or still suspended after --max-suspend-wait);
4 halted by the server; 5 credentials refused.";

#[derive(Debug, Parser)]
#[command(name = "adapter-client", version, about = "VPN client adapter: GetAccess → OpenVPN client with accounting and speed limits", long_about = LONG_ABOUT)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax, e.g. `info`, `debug`, `adapter_client=debug,openvpn=debug`).
    /// Log lines go to stderr.
    #[arg(
        long,
        env = "ADAPTER_CLIENT_LOG",
        default_value = "info",
        global = true
    )]
    pub log: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Connect and stay connected until SIGINT/SIGTERM or until the service ends.
    Connect(Box<ConnectArgs>),
    /// Print the state of a running `connect` (or of the last one) from its state file.
    Status(StatusArgs),
    /// Print the OpenVPN config `connect` would use (the password is never printed).
    Render(RenderArgs),
}

/// Where the core is and how to authenticate.
#[derive(Debug, Clone, Args)]
pub struct CoreArgs {
    /// TOML config file (keys: core_url, token, token_file, client_key, openvpn, runtime_dir,
    /// state_file, tun_dev, ifb_dev, no_shaping, tc, ip, report_interval_secs,
    /// bytecount_interval_secs, backoff_initial_ms, backoff_max_secs, stop_timeout_secs, verb,
    /// suspend_poll_secs, max_suspend_wait_secs, halt_grace_secs).
    #[arg(long, env = "ADAPTER_CLIENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Base URL of the client's core-lite [default: http://127.0.0.1:7701].
    #[arg(long, env = "ADAPTER_CLIENT_CORE_URL")]
    pub core_url: Option<String>,
    /// Client token for the core (prefer --token-file: command lines are visible to others).
    #[arg(long, env = "ADAPTER_CLIENT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
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
    /// [default: /run/adapter-client/<client-key>, or $XDG_RUNTIME_DIR/adapter-client/<client-key> when not root].
    #[arg(long, env = "ADAPTER_CLIENT_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// State file read by `status` [default: <runtime base>/<client-key>.state.json].
    #[arg(long, env = "ADAPTER_CLIENT_STATE_FILE")]
    pub state_file: Option<PathBuf>,
    /// Name of the tun device openvpn creates (≤ 15 chars) [default: tunac<pid>].
    #[arg(long, env = "ADAPTER_CLIENT_TUN_DEV")]
    pub tun_dev: Option<String>,
    /// Name of the IFB device for download shaping (≤ 15 chars) [default: ifbac<pid>].
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
    /// Tun device name written into the config [default: tunac<pid>].
    #[arg(long, env = "ADAPTER_CLIENT_TUN_DEV")]
    pub tun_dev: Option<String>,
}

/// The TOML config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub core_url: Option<String>,
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub client_key: Option<String>,
    pub openvpn: Option<PathBuf>,
    pub runtime_dir: Option<PathBuf>,
    pub state_file: Option<PathBuf>,
    pub tun_dev: Option<String>,
    pub ifb_dev: Option<String>,
    pub no_shaping: Option<bool>,
    pub tc: Option<PathBuf>,
    pub ip: Option<PathBuf>,
    pub report_interval_secs: Option<u64>,
    pub bytecount_interval_secs: Option<u32>,
    pub backoff_initial_ms: Option<u64>,
    pub backoff_max_secs: Option<u64>,
    pub stop_timeout_secs: Option<u64>,
    pub verb: Option<u8>,
    pub suspend_poll_secs: Option<u64>,
    pub max_suspend_wait_secs: Option<u64>,
    pub halt_grace_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("could not read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} is larger than {MAX_FILE} bytes")]
    FileTooLarge { what: &'static str, path: PathBuf },
    #[error("config file {path} is invalid: {source}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("access file {path} is not a valid access message: {source}")]
    ParseAccess {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("token file {0} is empty")]
    EmptyToken(PathBuf),
    #[error("no client token: give --token-file, --token, ADAPTER_CLIENT_TOKEN(_FILE) or token/token_file in the config file")]
    MissingToken,
    #[error(
        "no client key: give --client-key, ADAPTER_CLIENT_KEY or client_key in the config file"
    )]
    MissingClientKey,
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("no state file found in {0} (is `adapter-client connect` running?)")]
    NoStateFile(PathBuf),
}

impl CliError {
    /// Exit code for errors: 2 for usage/config errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ParseConfig { .. }
            | Self::MissingToken
            | Self::MissingClientKey
            | Self::Invalid(_) => 2,
            _ => 1,
        }
    }
}

fn read_small(what: &'static str, path: &Path) -> Result<String, CliError> {
    let rerr = |e| CliError::ReadFile {
        what,
        path: path.to_path_buf(),
        source: e,
    };
    let md = std::fs::metadata(path).map_err(rerr)?;
    if md.len() > MAX_FILE {
        return Err(CliError::FileTooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(rerr)
}

pub fn load_file_config(path: Option<&Path>) -> Result<FileConfig, CliError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = read_small("config file", path)?;
    toml::from_str(&text).map_err(|e| CliError::ParseConfig {
        path: path.to_path_buf(),
        source: e,
    })
}

fn read_token_file(path: &Path) -> Result<Secret, CliError> {
    use std::os::unix::fs::PermissionsExt;
    let text = read_small("token file", path)?;
    if let Ok(md) = std::fs::metadata(path) {
        if md.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the token file is readable by group/others; use mode 0600");
        }
    }
    let tok = text.lines().next().unwrap_or_default().trim().to_string();
    if tok.is_empty() {
        return Err(CliError::EmptyToken(path.to_path_buf()));
    }
    Ok(Secret(tok))
}

/// Core URL, token and client key from flags/env, then the file.
pub fn resolve_core(
    a: &CoreArgs,
    f: &FileConfig,
    need_token: bool,
) -> Result<(String, Option<Secret>, ClientKey), CliError> {
    let url = a
        .core_url
        .clone()
        .or_else(|| f.core_url.clone())
        .unwrap_or_else(|| DEFAULT_CORE_URL.to_string());
    let token = if let Some(t) = &a.token {
        Some(Secret(t.trim().to_string()))
    } else if let Some(p) = &a.token_file {
        Some(read_token_file(p)?)
    } else if let Some(t) = &f.token {
        Some(Secret(t.trim().to_string()))
    } else if let Some(p) = &f.token_file {
        Some(read_token_file(p)?)
    } else {
        None
    };
    if need_token && token.as_ref().is_none_or(|t| t.expose().is_empty()) {
        return Err(CliError::MissingToken);
    }
    let key = a
        .client_key
        .clone()
        .or_else(|| f.client_key.clone())
        .filter(|k| !k.is_empty())
        .ok_or(CliError::MissingClientKey)?;
    if key.len() > service_api::MAX_FIELD_LEN || key.chars().any(char::is_control) {
        return Err(CliError::Invalid(
            "client key: too long or contains control characters".into(),
        ));
    }
    Ok((url, token, ClientKey(key)))
}

/// Resolves all `connect` settings.
pub fn resolve_connect(a: &ConnectArgs) -> Result<ConnectSettings, CliError> {
    let f = load_file_config(a.core.config.as_deref())?;
    let (url, token, key) = resolve_core(&a.core, &f, true)?;
    let token = token.ok_or(CliError::MissingToken)?;
    let mut s = ConnectSettings::new(key, url, token);
    if let Some(v) = a.openvpn.clone().or(f.openvpn.clone()) {
        s.openvpn = v;
    }
    if let Some(v) = a.runtime_dir.clone().or(f.runtime_dir.clone()) {
        s.runtime_dir = v;
    }
    if let Some(v) = a.state_file.clone().or(f.state_file.clone()) {
        s.state_file = v;
    }
    if let Some(v) = a.tun_dev.clone().or(f.tun_dev.clone()) {
        s.tun_dev = v;
    }
    if let Some(v) = a.ifb_dev.clone().or(f.ifb_dev.clone()) {
        s.ifb_dev = v;
    }
    s.shaping = !(a.no_shaping || f.no_shaping.unwrap_or(false));
    s.tools = Tools {
        tc: a
            .tc
            .clone()
            .or(f.tc.clone())
            .unwrap_or_else(|| PathBuf::from("tc")),
        ip: a
            .ip
            .clone()
            .or(f.ip.clone())
            .unwrap_or_else(|| PathBuf::from("ip")),
    };
    if let Some(v) = a.report_interval.or(f.report_interval_secs) {
        if v == 0 {
            return Err(CliError::Invalid("report interval must be ≥ 1 s".into()));
        }
        s.report_interval = Duration::from_secs(v);
    }
    if let Some(v) = a.bytecount_interval.or(f.bytecount_interval_secs) {
        if v == 0 {
            return Err(CliError::Invalid("bytecount interval must be ≥ 1 s".into()));
        }
        s.bytecount_interval = v;
    }
    if let Some(v) = a.backoff_initial_ms.or(f.backoff_initial_ms) {
        s.backoff_initial = Duration::from_millis(v.max(1));
    }
    if let Some(v) = a.backoff_max.or(f.backoff_max_secs) {
        s.backoff_max = Duration::from_secs(v.max(1));
    }
    if let Some(v) = a.stop_timeout.or(f.stop_timeout_secs) {
        s.stop_timeout = Duration::from_secs(v.max(1));
    }
    if let Some(v) = a.verb.or(f.verb) {
        s.verb = v;
    }
    if let Some(v) = a.suspend_poll.or(f.suspend_poll_secs) {
        if v == 0 {
            return Err(CliError::Invalid(
                "suspend poll interval must be ≥ 1 s".into(),
            ));
        }
        s.suspend_poll = Duration::from_secs(v);
    }
    if let Some(v) = a.max_suspend_wait.or(f.max_suspend_wait_secs) {
        s.max_suspend_wait = Some(Duration::from_secs(v));
    }
    if let Some(v) = a.halt_grace.or(f.halt_grace_secs) {
        s.halt_grace = Duration::from_secs(v);
    }
    render::check_dev_name(&s.tun_dev).map_err(|e| CliError::Invalid(e.to_string()))?;
    render::check_dev_name(&s.ifb_dev).map_err(|e| CliError::Invalid(e.to_string()))?;
    Ok(s)
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
        Command::Status(a) => status(&a).map(|()| 0),
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
        serde_json::from_str(&text).map_err(|e| CliError::ParseAccess {
            path: p.clone(),
            source: e,
        })?
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

/// Logging to stderr with an EnvFilter.
pub fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: logs go to files and journals too.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        let mut v = vec!["adapter-client"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v) {
            Ok(c) => c,
            Err(e) => panic!("parse failed: {e}"),
        }
    }

    #[test]
    fn file_config_denies_unknown_fields() {
        let ok: FileConfig =
            toml::from_str("core_url = \"http://x:1\"\nno_shaping = true\n").expect("ok");
        assert_eq!(ok.core_url.as_deref(), Some("http://x:1"));
        assert!(toml::from_str::<FileConfig>("core_ur = \"x\"").is_err());
    }

    #[test]
    fn flags_override_file_and_defaults_apply() {
        let tmp = tempfile::tempdir().expect("tmp");
        let cfg = tmp.path().join("c.toml");
        let tokf = tmp.path().join("tok");
        std::fs::write(&tokf, "file-token\n").expect("w");
        std::fs::write(
            &cfg,
            format!(
                "core_url = \"http://10.0.0.1:7701\"\ntoken_file = \"{}\"\nclient_key = \"ck-file\"\nreport_interval_secs = 7\ntun_dev = \"tunfile\"\n",
                tokf.display()
            ),
        )
        .expect("w");
        let cli = parse(&[
            "connect",
            "--config",
            cfg.to_str().expect("utf8"),
            "--client-key",
            "ck-flag",
            "--no-shaping",
            "--backoff-initial-ms",
            "50",
        ]);
        let Command::Connect(a) = cli.command else {
            panic!("not connect")
        };
        let s = resolve_connect(&a).expect("resolve");
        assert_eq!(s.client_key.0, "ck-flag");
        assert_eq!(s.core_url, "http://10.0.0.1:7701");
        assert_eq!(s.token.expose(), "file-token");
        assert_eq!(s.report_interval, Duration::from_secs(7));
        assert_eq!(s.backoff_initial, Duration::from_millis(50));
        assert_eq!(s.tun_dev, "tunfile");
        assert!(!s.shaping);
        assert_eq!(s.bytecount_interval, 1);
        assert_eq!(s.suspend_poll, Duration::from_secs(2));
        assert_eq!(s.max_suspend_wait, None);
        assert_eq!(s.halt_grace, Duration::from_secs(5));
    }

    #[test]
    fn suspend_and_halt_flags() {
        let tmp = tempfile::tempdir().expect("tmp");
        let cfg = tmp.path().join("c.toml");
        std::fs::write(
            &cfg,
            "token = \"t\"\nclient_key = \"ck\"\nsuspend_poll_secs = 9\nmax_suspend_wait_secs = 600\nhalt_grace_secs = 3\n",
        )
        .expect("w");
        let base = ["connect", "--config", cfg.to_str().expect("utf8")];
        let resolve = |extra: &[&str]| {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            let Command::Connect(a) = parse(&v).command else {
                panic!("not connect")
            };
            resolve_connect(&a)
        };
        let s = resolve(&[]).expect("file values");
        assert_eq!(s.suspend_poll, Duration::from_secs(9));
        assert_eq!(s.max_suspend_wait, Some(Duration::from_secs(600)));
        assert_eq!(s.halt_grace, Duration::from_secs(3));
        let s = resolve(&[
            "--suspend-poll",
            "1",
            "--max-suspend-wait",
            "60",
            "--halt-grace",
            "0",
        ])
        .expect("flags win");
        assert_eq!(s.suspend_poll, Duration::from_secs(1));
        assert_eq!(s.max_suspend_wait, Some(Duration::from_secs(60)));
        assert_eq!(s.halt_grace, Duration::ZERO);
        let e = resolve(&["--suspend-poll", "0"]).expect_err("zero poll");
        assert_eq!(e.exit_code(), 2, "{e}");
    }

    #[test]
    fn missing_token_and_bad_dev_are_usage_errors() {
        let cli = parse(&[
            "connect",
            "--client-key",
            "ck",
            "--core-url",
            "http://127.0.0.1:1",
        ]);
        let Command::Connect(mut a) = cli.command else {
            panic!("not connect")
        };
        a.core.token = None;
        a.core.token_file = None;
        a.core.config = None;
        let e = resolve_connect(&a).expect_err("no token");
        assert!(matches!(e, CliError::MissingToken), "{e}");
        assert_eq!(e.exit_code(), 2);
        a.core.token = Some("t".into());
        a.tun_dev = Some("a-very-long-device-name".into());
        let e = resolve_connect(&a).expect_err("bad dev");
        assert_eq!(e.exit_code(), 2, "{e}");
    }
}
