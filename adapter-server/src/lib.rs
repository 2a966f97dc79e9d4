//! adapter-server: glues an OpenVPN server to core-lite (DESIGN.md §4).
//!
//! - [`hook`]: the script OpenVPN runs for auth-user-pass-verify / client-connect /
//!   client-disconnect (deferred auth, fail closed), on its own or as the fallback of the
//!   small `adapter-server-hook` (crate `adapter-server-hook`).
//! - [`monitor`]: the management-interface daemon (usage, kills, reconnects, shaping,
//!   config re-push, and the hand-off socket where `adapter-server-hook` passes it the
//!   script events).
//! - [`push_config`]: OpenVPN server config → product config (SetProductConfig).
//! - [`script_env`]: pure parser of script environments.
//! - [`files`]: how files named by OpenVPN or a peer are opened (never through a link,
//!   never created); shared with `adapter-server-hook`, which owns it.
//!
//! The management-interface protocol is the `openvpn-mgmt` crate and the `tc` shaping the
//! `tc-shaper` crate, both shared with adapter-client.

pub mod check_config;
pub mod cli;
pub mod hook;
pub mod monitor;
pub mod push_config;
pub mod script_env;
pub mod settings;

pub use adapter_server_hook::files;

use std::time::Duration;

use service_api::Secret;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::cli::{Cli, Cmd, MonitorArgs, PushConfigArgs};
use crate::settings::{CoreSettings, FileConfig, SettingsError};

/// Errors of the long-running subcommands.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error("invalid option: {0}")]
    Option(String),
    #[error("reading the management password file {path}: {source}")]
    Password {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("waiting for signals: {0}")]
    Signal(#[source] std::io::Error),
    #[error(transparent)]
    Shaping(#[from] tc_shaper::ShapingError),
    #[error(transparent)]
    PushConfig(#[from] push_config::PushConfigError),
    #[error(transparent)]
    Monitor(#[from] monitor::MonitorError),
}

fn load_file_config(cli: &Cli) -> Result<FileConfig, SettingsError> {
    match &cli.common.config {
        Some(p) => FileConfig::load(p),
        None => Ok(FileConfig::default()),
    }
}

fn core_settings(cli: &Cli, file: &FileConfig) -> Result<CoreSettings, SettingsError> {
    let token = cli.common.token.clone().map(Secret);
    CoreSettings::resolve(
        cli.common.core_url.as_deref(),
        token.as_ref(),
        cli.common.token_file.as_deref(),
        cli.common.core_timeout_ms,
        file,
    )
}

/// Runs the parsed command line; returns the process exit code.
pub fn run(cli: Cli) -> Result<u8, RunError> {
    match &cli.command {
        Cmd::AuthWorker => Ok(hook::run_worker()),
        Cmd::CheckConfig { file } => {
            let path = file.as_ref().or(cli.common.config.as_ref()).ok_or_else(|| {
                RunError::Option(
                    "check-config: give the file (`adapter-server check-config FILE`, --config or ADAPTER_SERVER_CONFIG)".into(),
                )
            })?;
            let report = check_config::check(path);
            print!("{report}");
            Ok(report.exit_code())
        }
        Cmd::Hook(h) => {
            let (file, core) = match load_file_config(&cli) {
                Ok(f) => {
                    let core = core_settings(&cli, &f).map_err(hook::HookError::from);
                    (f, core)
                }
                Err(e) => (FileConfig::default(), Err(hook::HookError::from(e))),
            };
            let env = script_env::RawEnv::from_os(std::env::vars_os());
            let opts = hook::HookOptions {
                sync: h.sync || file.sync.unwrap_or(false),
                trailing_path: h.path.clone(),
                state_dir: h
                    .state_dir
                    .clone()
                    .or_else(|| file.state_dir.clone())
                    .unwrap_or_else(|| hook::DEFAULT_STATE_DIR.into()),
            };
            Ok(hook::run(&opts, core, &env).exit_code())
        }
        Cmd::PushConfig(p) => {
            let file = load_file_config(&cli)?;
            run_push_config(&cli, &file, p)
        }
        Cmd::Monitor(m) => {
            let file = load_file_config(&cli)?;
            let core = core_settings(&cli, &file)?;
            let socket = cli
                .common
                .handoff_socket
                .clone()
                .or_else(|| file.handoff_socket.clone());
            let cfg = monitor_config(m, &file, socket)?;
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(RunError::Runtime)?;
            rt.block_on(async {
                let client = core.client()?;
                let cancel = CancellationToken::new();
                let sig = {
                    let cancel = cancel.clone();
                    let mut term =
                        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                            .map_err(RunError::Signal)?;
                    tokio::spawn(async move {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => info!("SIGINT"),
                            _ = term.recv() => info!("SIGTERM"),
                        }
                        cancel.cancel();
                    })
                };
                let res = monitor::run(cfg, client, cancel).await;
                sig.abort();
                res?;
                Ok(0)
            })
        }
    }
}

fn run_push_config(cli: &Cli, file: &FileConfig, p: &PushConfigArgs) -> Result<u8, RunError> {
    let path = p
        .server_config
        .clone()
        .or_else(|| file.server_config.clone())
        .ok_or_else(|| RunError::Option("--server-config is required".into()))?;
    let endpoint = p.endpoint.clone().or_else(|| file.endpoint.clone());
    let loaded = push_config::load(&path, endpoint.as_deref())?;
    if p.dry_run {
        for (k, v) in &loaded.config {
            let shown = if v.contains('\n') {
                format!("<{} bytes>", v.len())
            } else {
                v.clone()
            };
            println!("{k} = {shown}");
        }
        return Ok(0);
    }
    let core = core_settings(cli, file)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    let client = core.client()?;
    let resp = rt.block_on(push_config::push(&client, loaded.config))?;
    info!(product = %resp.product_id, changed = resp.changed, "product config pushed");
    println!(
        "{}",
        serde_json::json!({"productId": resp.product_id, "changed": resp.changed})
    );
    Ok(0)
}

/// Reads and parses the OpenVPN server config.
fn read_server_config(p: &std::path::Path) -> Result<push_config::ServerConfig, RunError> {
    let text = settings::read_bounded(p, push_config::MAX_CONFIG_BYTES).map_err(|e| {
        push_config::PushConfigError::Read {
            path: p.to_path_buf(),
            source: e,
        }
    })?;
    Ok(push_config::parse_server_config(&String::from_utf8_lossy(
        &text,
    ))?)
}

/// A user name or numeric uid → uid.
fn resolve_uid(user: &str) -> Result<u32, RunError> {
    if let Ok(uid) = user.parse::<u32>() {
        return Ok(uid);
    }
    match nix::unistd::User::from_name(user) {
        Ok(Some(u)) => Ok(u.uid.as_raw()),
        Ok(None) => Err(RunError::Option(format!("no such user {user:?}"))),
        Err(e) => Err(RunError::Option(format!("looking up user {user:?}: {e}"))),
    }
}

/// Builds the monitor settings from flags (+env) and the config file; `handoff_socket`
/// (the global `--handoff-socket` or the file's key) turns the hand-off socket on.
pub fn monitor_config(
    m: &MonitorArgs,
    file: &FileConfig,
    handoff_socket: Option<std::path::PathBuf>,
) -> Result<monitor::MonitorConfig, RunError> {
    let addr = m
        .management
        .clone()
        .or_else(|| file.management.clone())
        .ok_or_else(|| RunError::Option("--management is required".into()))?;
    let addr: monitor::MgmtAddr = addr.parse().map_err(RunError::Option)?;
    let mut cfg = monitor::MonitorConfig::new(addr);
    if let Some(p) = m
        .management_password_file
        .clone()
        .or_else(|| file.management_password_file.clone())
    {
        let bytes = settings::read_bounded(&p, 4096).map_err(|e| RunError::Password {
            path: p.clone(),
            source: e,
        })?;
        let text = String::from_utf8_lossy(&bytes);
        let first = text.lines().next().unwrap_or("").to_string();
        if first.is_empty() {
            return Err(RunError::Option(format!(
                "management password file {} is empty",
                p.display()
            )));
        }
        cfg.password = Some(Secret(first));
    }
    cfg.bytecount_interval = m
        .bytecount_interval
        .or(file.bytecount_interval)
        .unwrap_or(1)
        .max(1);
    cfg.grace = Duration::from_secs(m.grace_period_secs.or(file.grace_period_secs).unwrap_or(60));
    cfg.client_auth = m.client_auth || file.client_auth.unwrap_or(false);
    cfg.release_hold = m.release_hold || file.release_hold.unwrap_or(false);
    cfg.server_config = m
        .server_config
        .clone()
        .or_else(|| file.server_config.clone());
    cfg.endpoint = m.endpoint.clone().or_else(|| file.endpoint.clone());
    if let Some(s) = m.reconnect_max_secs {
        cfg.reconnect_max = Duration::from_secs(s.max(1));
    }
    if let Some(path) = handoff_socket {
        // OpenVPN's user: as given, else the server config's `user`, else root.
        let user = match m.handoff_user.clone().or_else(|| file.handoff_user.clone()) {
            Some(u) => Some(u),
            None => match &cfg.server_config {
                Some(p) => read_server_config(p)?.user,
                None => None,
            },
        };
        let owner = match user {
            Some(u) => resolve_uid(&u)?,
            None => 0,
        };
        cfg.handoff = Some(monitor::HandoffConfig { path, owner });
    }
    cfg.metrics_listen = m.metrics_listen.or(file.metrics_listen);
    if m.nft || file.nft.unwrap_or(false) {
        let table = m
            .nft_table
            .clone()
            .or_else(|| file.nft_table.clone())
            .unwrap_or_else(|| "adapter_server".into());
        if table.is_empty()
            || table.len() > 64
            || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || table.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(RunError::Option(format!(
                "--nft-table {table:?}: use letters, digits and _ (not first), at most 64"
            )));
        }
        cfg.fence = Some(monitor::FenceConfig {
            nft: "nft".into(),
            table,
            netns: m.netns.clone().or_else(|| file.netns.clone()),
        });
    }
    let no_shaping = m.no_shaping || file.no_shaping.unwrap_or(false);
    if !no_shaping {
        let tun = match m.tun.clone().or_else(|| file.tun.clone()) {
            Some(t) => t,
            None => match &cfg.server_config {
                Some(p) => push_config::tun_device(&read_server_config(p)?)?,
                None => "tun0".into(),
            },
        };
        tc_shaper::check_dev(&tun)?;
        let ifb = m
            .ifb
            .clone()
            .or_else(|| file.ifb.clone())
            .unwrap_or_else(|| tc_shaper::default_ifb(&tun));
        tc_shaper::check_dev(&ifb)?;
        let link = tc_shaper::parse_rate(
            m.link_capacity
                .as_deref()
                .or(file.link_capacity.as_deref())
                .unwrap_or("1gbit"),
        )?;
        let max_clients = m.max_clients.or(file.max_clients).unwrap_or(1024);
        if max_clients == 0 || max_clients > tc_shaper::MAX_SLOTS {
            return Err(RunError::Option(format!(
                "--max-clients must be 1..={}",
                tc_shaper::MAX_SLOTS
            )));
        }
        cfg.shaping = Some(tc_shaper::ShapingConfig {
            tun,
            ifb,
            link_bps: link,
            max_clients,
            netns: m.netns.clone().or_else(|| file.netns.clone()),
        });
    }
    Ok(cfg)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn monitor_args(extra: &[&str]) -> MonitorArgs {
        let mut argv = vec![
            "adapter-server",
            "monitor",
            "--management",
            "/m.sock",
            "--no-shaping",
        ];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).expect("parse").command {
            Cmd::Monitor(m) => m,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn handoff_socket_only_when_asked_and_owned_by_openvpns_user() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("server.conf");
        std::fs::write(&conf, "dev tun0\nuser 4321\ngroup nogroup\n").expect("conf");
        let conf_s = conf.display().to_string();
        let file = FileConfig::default();
        let sock = || Some(std::path::PathBuf::from("/run/x/hook.sock"));
        let owner = |extra: &[&str]| {
            monitor_config(&monitor_args(extra), &file, sock())
                .expect("config")
                .handoff
                .map(|h| h.owner)
        };
        assert_eq!(owner(&[]), Some(0), "root without a server config");
        assert_eq!(owner(&["--server-config", &conf_s]), Some(4321));
        assert_eq!(
            owner(&["--server-config", &conf_s, "--handoff-user", "77"]),
            Some(77)
        );
        assert_eq!(owner(&["--handoff-user", "root"]), Some(0));
        assert!(monitor_config(
            &monitor_args(&["--handoff-user", "no-such-user-x"]),
            &file,
            sock()
        )
        .is_err());
        let off = monitor_config(&monitor_args(&[]), &file, None).expect("config");
        assert_eq!(off.handoff, None);
    }
}
