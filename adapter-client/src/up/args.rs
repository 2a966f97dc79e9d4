//! The command lines of `up`, `ls` and `down`.

use std::path::PathBuf;

use clap::Args;
use service_api::Secret;

use crate::cli::ConnectArgs;

fn secret_arg(s: &str) -> Result<Secret, std::convert::Infallible> {
    Ok(Secret(s.to_string()))
}

/// Where the user's client core is, how to reach it, and where `up` keeps its own.
#[derive(Debug, Clone, Args)]
pub struct UserCoreArgs {
    /// The user's state directory: the client core `up` starts keeps its data there
    /// (`core/`, with `core.log`) and its client token (`client.token`, 0600)
    /// [default: /var/lib/adapter-client as root, else $XDG_STATE_HOME/privatix-vpn or
    /// ~/.local/state/privatix-vpn].
    #[arg(long, env = "ADAPTER_CLIENT_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// The core-lite program `up` starts when no core answers at --core-url [default:
    /// core-lite next to this program, else from PATH].
    #[arg(long, env = "ADAPTER_CLIENT_CORE_BIN")]
    pub core_bin: Option<PathBuf>,
    /// The VPN module directory (module.toml, offering.json, access.json) a new core
    /// registers [default: the module's templates built into this program].
    #[arg(long, env = "ADAPTER_CLIENT_MODULE_DIR")]
    pub module_dir: Option<PathBuf>,
    /// Directory of the connections' state files (and runtime directories) that `ls` and
    /// `down` look at [default: /run/adapter-client as root, else
    /// $XDG_RUNTIME_DIR/adapter-client].
    #[arg(long, env = "ADAPTER_CLIENT_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Print JSON on stdout (`up`: one event per line; `ls`, `down`: one document) and no
    /// prompts, spinners or tables.
    #[arg(long)]
    pub json: bool,
}

/// `adapter-client up`.
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// The agent's market: https://HOST:PORT (the scheme may be left out: https; without a port,
    /// 7710). Not needed with --client-key.
    pub agent_url: Option<String>,
    /// Buy this offering (its hash, or a prefix of at least 8 hex digits).
    #[arg(long, env = "ADAPTER_CLIENT_OFFERING")]
    pub offering: Option<String>,
    /// Only offerings whose unit price is at most this (base units per unit; 1 PRIX =
    /// 10^8).
    #[arg(long, env = "ADAPTER_CLIENT_MAX_PRICE")]
    pub max_price: Option<u64>,
    /// Only offerings from this country (ISO 3166-1 alpha-2, e.g. DE).
    #[arg(long, env = "ADAPTER_CLIENT_COUNTRY")]
    pub country: Option<String>,
    /// Deposit: base units, or `min` / `full` (the offering's minimum deposit / the one
    /// that buys every unit) [default: asked on a terminal, else full].
    #[arg(long, env = "ADAPTER_CLIENT_DEPOSIT")]
    pub deposit: Option<String>,
    /// Accept without asking (needed when there is no terminal to ask on).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Buy a new channel even when one of the chosen offering can still be used.
    #[arg(long)]
    pub new_channel: bool,
    /// With --json: seconds between `status` events (also between status lines when the
    /// output is not a terminal).
    #[arg(long, env = "ADAPTER_CLIENT_STATUS_INTERVAL", default_value_t = 5)]
    pub status_interval: u64,
    #[command(flatten)]
    pub user: UserCoreArgs,
    /// The settings of the connection, as for `connect` (--core-url, --token-file,
    /// --openvpn, ...). --client-key connects a channel bought before (no AGENT_URL).
    #[command(flatten)]
    pub connect: ConnectArgs,
}

/// `adapter-client ls`.
#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub user: UserCoreArgs,
    /// TOML config file (core_url, token, token_file are used).
    #[arg(long, env = "ADAPTER_CLIENT_CONFIG")]
    pub config: Option<PathBuf>,
    /// Base URL of the client's core-lite [default: http://127.0.0.1:7701].
    #[arg(long, env = "ADAPTER_CLIENT_CORE_URL")]
    pub core_url: Option<String>,
    /// Client token for the core [default: the state directory's client.token].
    #[arg(long, env = "ADAPTER_CLIENT_TOKEN", hide_env_values = true, value_parser = secret_arg)]
    pub token: Option<Secret>,
    /// File holding the client token (first line).
    #[arg(long, env = "ADAPTER_CLIENT_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
}

/// `adapter-client down`.
#[derive(Debug, Clone, Args)]
pub struct DownArgs {
    /// The channel to stop: its client key (or a unique prefix) [default: the only running
    /// connection].
    pub client_key: Option<String>,
    /// Stop every running connection.
    #[arg(long, conflicts_with = "client_key")]
    pub all: bool,
    /// Seconds to wait for a connection to stop (final counts reported) [default: 30].
    #[arg(long, default_value_t = 30)]
    pub timeout: u64,
    /// Directory of the connections' state files [default: /run/adapter-client as root,
    /// else $XDG_RUNTIME_DIR/adapter-client].
    #[arg(long, env = "ADAPTER_CLIENT_RUN_DIR")]
    pub run_dir: Option<PathBuf>,
    /// Print JSON on stdout.
    #[arg(long)]
    pub json: bool,
}
