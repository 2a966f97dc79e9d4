//! Command line (clap derive). Every flag can also come from an `ADAPTER_SERVER_*`
//! environment variable and most from the TOML file given with `--config`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Server-side adapter of the VPN service module: glues an OpenVPN server to core-lite.
#[derive(Debug, Parser)]
#[command(name = "adapter-server", version, about, long_about = None)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,
    #[command(subcommand)]
    pub command: Cmd,
}

/// Options every subcommand understands.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// TOML config file; keys: core_url, token, token_file, core_timeout_ms, sync, state_dir,
    /// management, management_password_file, bytecount_interval, grace_period_secs,
    /// client_auth, release_hold, server_config, endpoint, no_shaping, tun, ifb,
    /// link_capacity, max_clients, netns, handoff_socket, handoff_user, nft, nft_table. Flags and env vars
    /// win over the file.
    #[arg(long, env = "ADAPTER_SERVER_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Base URL of the core's Service API [default: http://127.0.0.1:7700]. Several cores of
    /// one agent (core-lite serve on one PostgreSQL database): their URLs separated by
    /// commas; calls go to the one that answered last and fail over to the next in order
    /// when it is unreachable or answers 503/500 (reports are buffered only when none
    /// answers).
    #[arg(long, env = "ADAPTER_SERVER_CORE_URL", global = true)]
    pub core_url: Option<String>,
    /// File holding the product token (one line, mode 0600).
    #[arg(long, env = "ADAPTER_SERVER_TOKEN_FILE", global = true)]
    pub token_file: Option<PathBuf>,
    /// The product token itself (prefer --token-file: command lines are visible to all
    /// users). Write it as --token=VALUE: tokens may begin with '-'.
    #[arg(
        long,
        env = "ADAPTER_SERVER_TOKEN",
        global = true,
        hide_env_values = true
    )]
    pub token: Option<String>,
    /// Timeout of one core call in milliseconds [default: 3000].
    #[arg(long, env = "ADAPTER_SERVER_CORE_TIMEOUT_MS", global = true)]
    pub core_timeout_ms: Option<u64>,
    /// Unix socket of the hook hand-off: `monitor` listens on it (only when it is given)
    /// and `adapter-server-hook` hands OpenVPN's script events to it (the hook's default:
    /// /run/adapter-server/hook.sock); `hook` itself ignores it.
    #[arg(long, env = "ADAPTER_SERVER_HANDOFF_SOCKET", global = true)]
    pub handoff_socket: Option<PathBuf>,
    /// PEM file of the certificate authorities trusted for an https:// --core-url (a remote
    /// agent core with `serve --tls-cert`); default: the system's roots. A self-signed core
    /// certificate can be given here itself.
    #[arg(long, env = "ADAPTER_SERVER_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
// Parsed once per process: the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Cmd {
    /// OpenVPN script hook: auth-user-pass-verify (via-file or via-env), client-connect,
    /// client-disconnect (dispatches on the `script_type` env var).
    #[command(long_about = HOOK_HELP)]
    Hook(HookArgs),
    /// Accounting daemon on OpenVPN's management interface.
    #[command(long_about = MONITOR_HELP)]
    Monitor(MonitorArgs),
    /// Read the OpenVPN server config and send it to the core (SetProductConfig).
    #[command(long_about = PUSH_HELP)]
    PushConfig(PushConfigArgs),
    /// Check a config file (default: --config) and report every problem (file, line, key)
    /// without starting; exit status 0 when it is fine, 1 otherwise.
    CheckConfig {
        /// The file [default: --config / ADAPTER_SERVER_CONFIG].
        file: Option<PathBuf>,
    },
    /// Internal: the detached deferred-auth worker (job on stdin).
    #[command(name = "__auth-worker", hide = true)]
    AuthWorker,
}

const HOOK_HELP: &str = "\
OpenVPN script hook. Wire it into the server config, e.g.:

    script-security 2
    auth-user-pass-verify \"/usr/local/bin/adapter-server --config /etc/adapter-server/config.toml hook\" via-file
    tmp-dir /dev/shm
    # optional, for operators running without `adapter-server monitor`:
    client-connect \"/usr/local/bin/adapter-server --config /etc/adapter-server/config.toml hook\"
    client-disconnect \"/usr/local/bin/adapter-server --config /etc/adapter-server/config.toml hook\"

(via-env works too; OpenVPN 2.6 sets script_type=user-pass-verify for auth.) OpenVPN does
not pass its own environment to scripts, so give the core URL and token through --config
or flags (or OpenVPN `setenv ADAPTER_SERVER_TOKEN_FILE ...`). Scripts run as OpenVPN's
`user`: it must be able to read those files and own --state-dir.

Auth is deferred when OpenVPN offers auth_control_file: the hook exits 2 at once and a
detached worker writes 1/0 to the control file (and the reason to
auth_failed_reason_file). --sync (or no auth_control_file) answers with the exit code:
0 = accept, 1 = deny. Any failure denies (fail closed). client-connect calls StartSession,
client-disconnect StopSession with bytes_received / bytes_sent; both use the connection id
\"<username>|<untrusted_ip>:<untrusted_port>|<time_unix>\" like the monitor.

With `adapter-server monitor --handoff-socket PATH` running, put the small
`adapter-server-hook` in front of the same command line instead (same arguments): it hands
each event to the monitor and starts this binary only when no monitor takes it.";

const MONITOR_HELP: &str = "\
Accounting daemon on OpenVPN's management interface. In the server config:

    management /run/openvpn-server/mgmt.sock unix
    # optional: the monitor authenticates logins itself (no process per login):
    management-client-auth

then run `adapter-server --config /etc/adapter-server/config.toml monitor
--management /run/openvpn-server/mgmt.sock --server-config /etc/openvpn/server/server.conf
[--client-auth]`.

With --handoff-socket PATH it also takes OpenVPN's script events from the small
`adapter-server-hook` (auth-user-pass-verify, client-connect, client-disconnect): logins
are answered through auth_control_file, connects and disconnects become StartSession /
StopSession with the event's data (OpenVPN's exact final counters). The socket is made mode
0600 and owned by --handoff-user (OpenVPN's user), and only that user and root may use it.

It enables `bytecount`, reports cumulative usage per client (UpdateSession), kills a client
with `client-kill CID HALT` as soon as the core answers suspending/terminating, sends the
final counts at disconnect (StopSession), reconnects with backoff, buffers usage while the
core is down and cuts clients after --grace-period-secs without a successful report. It
with --nft keeps an nftables byte quota per client for what the core says is left of its
budget (no megabytes past maxUnits or the deposit between two reports) and drops a client's
traffic before killing it. It applies per-client speed limits with tc (HTB on the tun egress = download, HTB on an IFB
fed from the tun ingress = upload) unless --no-shaping, and pushes the product config at
start and whenever the server config, CA or tls key files change.";

const PUSH_HELP: &str = "\
Reads the OpenVPN server config (proto, port, cipher, data-ciphers, auth, tls-version-min,
ca, tls-crypt / tls-auth + key-direction; relative paths from the config's directory or
`cd`) and sends the product config to the core (SetProductConfig). Private keys (`key`,
`dh`, ...) are never read or sent.

    adapter-server --token-file /etc/adapter-server/token push-config \\
        --server-config /etc/openvpn/server/server.conf --endpoint vpn.example.net:1194";

#[derive(Debug, Args)]
pub struct HookArgs {
    /// Answer auth synchronously (exit 0/1) even when OpenVPN offers deferred auth.
    #[arg(long, env = "ADAPTER_SERVER_SYNC")]
    pub sync: bool,
    /// Private directory (0700) where client-connect records the session id that
    /// client-disconnect stops [default: /tmp/adapter-server-hook].
    #[arg(long, env = "ADAPTER_SERVER_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Appended by OpenVPN: the credentials file (auth-user-pass-verify via-file) or the
    /// dynamic config file (client-connect).
    pub path: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// Management address: a unix socket path (or unix:PATH) or HOST:PORT (or tcp:HOST:PORT).
    #[arg(long, env = "ADAPTER_SERVER_MANAGEMENT")]
    pub management: Option<String>,
    /// Password file of a TCP management interface (first line).
    #[arg(long, env = "ADAPTER_SERVER_MANAGEMENT_PASSWORD_FILE")]
    pub management_password_file: Option<PathBuf>,
    /// `bytecount` interval in seconds [default: 1].
    #[arg(long, env = "ADAPTER_SERVER_BYTECOUNT_INTERVAL")]
    pub bytecount_interval: Option<u32>,
    /// Cut a client after this many seconds without a successful report to the core
    /// [default: 60].
    #[arg(long, env = "ADAPTER_SERVER_GRACE_PERIOD_SECS")]
    pub grace_period_secs: Option<u64>,
    /// Authenticate >CLIENT:CONNECT/REAUTH (OpenVPN `management-client-auth`).
    #[arg(long, env = "ADAPTER_SERVER_CLIENT_AUTH")]
    pub client_auth: bool,
    /// Answer >HOLD with `hold release` (OpenVPN `management-hold`).
    #[arg(long, env = "ADAPTER_SERVER_RELEASE_HOLD")]
    pub release_hold: bool,
    /// OpenVPN server config: pushed at start and on change; its `dev` is the default --tun.
    #[arg(long, env = "ADAPTER_SERVER_SERVER_CONFIG")]
    pub server_config: Option<PathBuf>,
    /// HOST or HOST:PORT clients connect to (sent as serviceEndpointAddress).
    #[arg(long, env = "ADAPTER_SERVER_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Do not touch tc (no speed limits).
    #[arg(long, env = "ADAPTER_SERVER_NO_SHAPING")]
    pub no_shaping: bool,
    /// The server's tun device [default: `dev` of --server-config, else tun0].
    #[arg(long, env = "ADAPTER_SERVER_TUN")]
    pub tun: Option<String>,
    /// IFB device for upload shaping [default: ifb-TUN, TUN being the tun device, cut to 15 chars].
    #[arg(long, env = "ADAPTER_SERVER_IFB")]
    pub ifb: Option<String>,
    /// Capacity of the parent HTB class (e.g. 1gbit, 500mbit) [default: 1gbit].
    #[arg(long, env = "ADAPTER_SERVER_LINK_CAPACITY")]
    pub link_capacity: Option<String>,
    /// Most shaped clients at once (match OpenVPN `max-clients`) [default: 1024, max 4094].
    #[arg(long, env = "ADAPTER_SERVER_MAX_CLIENTS")]
    pub max_clients: Option<u32>,
    /// Network namespace holding the tun device (tc/ip run with `-n NETNS`).
    #[arg(long, env = "ADAPTER_SERVER_NETNS")]
    pub netns: Option<String>,
    /// Longest wait between reconnect attempts, seconds [default: 30].
    #[arg(long, env = "ADAPTER_SERVER_RECONNECT_MAX_SECS")]
    pub reconnect_max_secs: Option<u64>,
    /// OpenVPN's user (name or uid), the user its scripts run as: owner of the hand-off
    /// socket and, with root, the only peer it accepts [default: `user` of
    /// --server-config, else root].
    #[arg(long, env = "ADAPTER_SERVER_HANDOFF_USER")]
    pub handoff_user: Option<String>,
    /// Enforce each client's remaining budget (what the core's StartSession / UpdateSession
    /// answers say is left) as an nftables byte quota on its VPN addresses (IPv4 and IPv6,
    /// both directions), and drop all its traffic before `client-kill` when it is cut. Needs
    /// `nft` (Debian package nftables) and CAP_NET_ADMIN; uses a table of its own
    /// (--nft-table), removed on exit. Runs in --netns when given.
    #[arg(long, env = "ADAPTER_SERVER_NFT")]
    pub nft: bool,
    /// Name of the monitor's nftables table (family inet) [default: adapter_server].
    #[arg(long, env = "ADAPTER_SERVER_NFT_TABLE")]
    pub nft_table: Option<String>,
    /// Serve Prometheus metrics at http://ADDR/metrics (a loopback address, e.g.
    /// 127.0.0.1:9187; plain HTTP) [default: no metrics].
    #[arg(long, env = "ADAPTER_SERVER_METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

#[derive(Debug, Args)]
pub struct PushConfigArgs {
    /// The OpenVPN server config file.
    #[arg(long, env = "ADAPTER_SERVER_SERVER_CONFIG")]
    pub server_config: Option<PathBuf>,
    /// HOST or HOST:PORT clients connect to (sent as serviceEndpointAddress).
    #[arg(long, env = "ADAPTER_SERVER_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Print the product config (without CA / key bodies) instead of sending it.
    #[arg(long)]
    pub dry_run: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn hook_takes_trailing_path_and_global_flags() {
        let c = Cli::try_parse_from([
            "adapter-server",
            "--config",
            "/etc/a.toml",
            "hook",
            "/tmp/openvpn_acf_x.tmp",
        ])
        .expect("parse");
        assert_eq!(c.common.config, Some(PathBuf::from("/etc/a.toml")));
        match c.command {
            Cmd::Hook(h) => assert_eq!(h.path, Some(PathBuf::from("/tmp/openvpn_acf_x.tmp"))),
            other => panic!("{other:?}"),
        }
        let c = Cli::try_parse_from(["adapter-server", "hook", "--sync", "--core-url", "http://x"])
            .expect("parse");
        assert_eq!(c.common.core_url.as_deref(), Some("http://x"));
        assert!(matches!(
            c.command,
            Cmd::Hook(HookArgs {
                sync: true,
                path: None,
                ..
            })
        ));
        assert!(Cli::try_parse_from(["adapter-server", "hook", "a", "b"]).is_err());
    }
}
