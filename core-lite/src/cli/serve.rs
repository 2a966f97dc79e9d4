//! `core-lite serve`: the Service API, the market API (role agent) with their TLS, and the
//! payer (role client).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::{open, Role};
use crate::server::ServerLimits;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on. The default is loopback only; expose it with care.
    #[arg(long, env = "CORE_LITE_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: SocketAddr,
    /// How often the billing timers (maxInactiveTime, maxSuspendTime) run, in milliseconds.
    #[arg(long, env = "CORE_LITE_TICK_MS", default_value_t = 1000)]
    pub tick_ms: u64,
    /// `core`: the Service API only. `agent`: also the market API on --market-listen.
    /// `client`: also the payer (cheques for channels accepted over the market; the agent's
    /// status mirrored). `both`: agent and client.
    #[arg(long, env = "CORE_LITE_ROLE", value_enum, default_value_t = Role::Core)]
    pub role: Role,
    /// Market API address (role agent): reachable by clients, e.g. 0.0.0.0:7710.
    #[arg(
        long,
        env = "CORE_LITE_MARKET_LISTEN",
        default_value = "127.0.0.1:7710"
    )]
    pub market_listen: SocketAddr,
    /// How often the payer (role client) looks at usage and the agent's view, in ms.
    #[arg(long, env = "CORE_LITE_PAY_INTERVAL_MS", default_value_t = 1000)]
    pub pay_interval_ms: u64,
    /// The payer pays the agent's count of units up to this many percent above its own.
    #[arg(long, env = "CORE_LITE_TOLERANCE_PCT", default_value_t = crate::market::DEFAULT_TOLERANCE_PCT)]
    pub tolerance_pct: u64,
    /// Most connections open at once on each listener (Service API, market API); at the cap
    /// new ones wait until one closes. Lowered to what the descriptor limit allows.
    #[arg(long, env = "CORE_LITE_MAX_CONNECTIONS", default_value_t = ServerLimits::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// A request head must be complete within this many ms from the moment the server waits
    /// for it, and a request body within as long after its head.
    #[arg(long, env = "CORE_LITE_HEADER_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_timeout_ms: u64,
    /// A connection that sends nothing for this many ms while the server waits for a request
    /// is closed.
    #[arg(long, env = "CORE_LITE_IDLE_TIMEOUT_MS", default_value_t = 5_000)]
    pub idle_timeout_ms: u64,
    /// Resolution of the usage series the web console plots (/ui): seconds per bucket (at
    /// least 1; the last 1440 buckets of each channel are kept).
    #[arg(long, env = "CORE_LITE_USAGE_BUCKET_SECS", default_value_t = 60)]
    pub usage_bucket_secs: u64,
    /// Certificate chain (PEM, leaf first) of the Service API listener: it then speaks
    /// https. Give it with --tls-key.
    #[arg(long, env = "CORE_LITE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert.
    #[arg(long, env = "CORE_LITE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Certificate chain (PEM, leaf first) of the market listener, e.g. one issued by a CA
    /// (ACME). Without it, a market on a non-loopback address uses a self-signed certificate
    /// made once in the data dir (market-tls.crt/.key), whose key fingerprint every offering
    /// signed from then on carries (agentTlsSpkiSha256): clients pin it, no CA needed.
    #[arg(long, env = "CORE_LITE_MARKET_TLS_CERT", requires = "market_tls_key")]
    pub market_tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --market-tls-cert.
    #[arg(long, env = "CORE_LITE_MARKET_TLS_KEY", requires = "market_tls_cert")]
    pub market_tls_key: Option<PathBuf>,
    /// Allow plain HTTP on a non-loopback address (Service API without --tls-cert; market
    /// without a certificate: no self-signed one is made). Everything, VPN passwords and
    /// payment cheques included, then crosses the network readable by anyone on the path.
    #[arg(long, env = "CORE_LITE_INSECURE_HTTP")]
    pub insecure_http: bool,
    /// Role agent: a channel accepted over the market must be claimed within this many
    /// seconds (prepaid: the first interval paid; postpaid: used), or it is closed and its
    /// supply returns to the offering (nobody can hoard supply without paying).
    #[arg(long, env = "CORE_LITE_CLAIM_WINDOW_SECS", default_value_t = 300)]
    pub claim_window_secs: u64,
    /// Longest wait of a WatchStatus long-poll, ms (at most 30000, the API's maximum; a
    /// call asking for longer answers after this with no change). Lower it when a proxy in
    /// front closes idle requests sooner.
    #[arg(long, env = "CORE_LITE_WATCH_MAX_WAIT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(0..=30_000))]
    pub watch_max_wait_ms: u64,
}

impl ServeArgs {
    /// The listeners' limits, the connection cap lowered to what the descriptor limit allows
    /// for `listeners` listeners.
    fn limits(&self, listeners: usize) -> ServerLimits {
        let mut max_connections = self.max_connections.max(1);
        if let Some(budget) = crate::server::fd_budget(listeners) {
            if budget < max_connections {
                tracing::warn!(
                    requested = max_connections,
                    allowed = budget,
                    "--max-connections lowered to what the open-file limit allows"
                );
                max_connections = budget;
            }
        }
        ServerLimits {
            max_connections,
            header_timeout: Duration::from_millis(self.header_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
        }
    }
}

pub(super) async fn serve(
    data_dir: &Path,
    database: Option<&str>,
    ca_file: Option<&Path>,
    args: ServeArgs,
) -> anyhow::Result<()> {
    let core = Arc::new(open(data_dir, database)?);
    core.usage_series
        .set_width(Duration::from_secs(args.usage_bucket_secs.max(1)));
    let market = matches!(args.role, Role::Agent | Role::Both);
    let limits = args.limits(1 + usize::from(market));
    core.set_claim_window(Duration::from_secs(args.claim_window_secs.max(1)));
    core.set_watch_max_wait(Duration::from_millis(args.watch_max_wait_ms));
    if let Some(ca) = ca_file {
        core.set_market_ca_file(ca.to_path_buf());
    }
    let api_tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(crate::server::tls::load_server_config(cert, key)?.0),
        _ => {
            plain_allowed("the Service API", args.listen, args.insecure_http)?;
            None
        }
    };
    let market_tls = if market {
        market_tls(data_dir, &args)?
    } else {
        None
    };
    let server = crate::server::start_tls(
        core.clone(),
        args.listen,
        Duration::from_millis(args.tick_ms.max(10)),
        limits,
        api_tls.clone(),
    )
    .await
    .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        listen = %server.addr,
        tls = api_tls.is_some(),
        max_connections = limits.max_connections,
        data_dir = %data_dir.display(),
        database = %core.db.describe(),
        admin_token = %core.admin_token_path().display(),
        "core-lite serving"
    );
    if market {
        let tls = market_tls.is_some();
        let (addr, _task) = crate::server::start_market(
            core.clone(),
            args.market_listen,
            limits,
            market_tls,
            server.stopped(),
        )
        .await
        .with_context(|| format!("market API on {}", args.market_listen))?;
        tracing::info!(listen = %addr, tls, "market API serving");
    }
    if matches!(args.role, Role::Client | Role::Both) {
        tokio::spawn(crate::market::run_payer(
            core.clone(),
            Duration::from_millis(args.pay_interval_ms.max(50)),
            args.tolerance_pct,
        ));
        tracing::info!(every_ms = args.pay_interval_ms, "payer running");
    }
    let stop = server.stopper();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot watch SIGTERM");
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping");
        let _ = stop.send(true);
    });
    let mut server = server;
    server.wait().await.context("serving")?;
    tracing::info!("stopped");
    Ok(())
}

/// Plain HTTP on `addr`: fine on loopback; elsewhere only with --insecure-http (warned).
fn plain_allowed(what: &str, addr: SocketAddr, insecure: bool) -> anyhow::Result<()> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if !insecure {
        bail!(
            "{what} would listen on {addr} in plain HTTP: give a certificate (see --help: \
             --tls-cert/--tls-key, --market-tls-cert/--market-tls-key) or, knowingly, \
             --insecure-http"
        );
    }
    tracing::warn!(
        listen = %addr,
        "{what} serves plain HTTP on a non-loopback address (--insecure-http): passwords, \
         tokens and cheques cross the network in clear"
    );
    Ok(())
}

/// The market listener's TLS: the given certificate; or, on a non-loopback address, the
/// self-signed one of the data dir (its pin recorded for the offerings); or plain HTTP on
/// loopback or with --insecure-http.
fn market_tls(
    data_dir: &Path,
    args: &ServeArgs,
) -> anyhow::Result<Option<Arc<rustls::ServerConfig>>> {
    use crate::server::tls;
    if let (Some(cert), Some(key)) = (&args.market_tls_cert, &args.market_tls_key) {
        let (config, _) = tls::load_server_config(cert, key)?;
        // A CA-issued certificate: clients check it against their roots, no pin.
        tls::set_pin(data_dir, None)?;
        return Ok(Some(config));
    }
    let addr = args.market_listen;
    if addr.ip().is_loopback() || args.insecure_http {
        plain_allowed("the market API", addr, args.insecure_http)?;
        tls::set_pin(data_dir, None)?;
        return Ok(None);
    }
    let (cert, key) = tls::self_signed(data_dir, addr.ip())?;
    let (config, pin) = tls::load_server_config(&cert, &key)?;
    tls::set_pin(data_dir, Some(&pin))?;
    tracing::info!(
        agent_tls_spki_sha256 = %pin,
        "market API over TLS with the self-signed certificate; offerings signed from now on pin it"
    );
    Ok(Some(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_off_loopback_needs_insecure_http() -> anyhow::Result<()> {
        plain_allowed("the Service API", "127.0.0.1:7700".parse()?, false)?;
        plain_allowed("the Service API", "[::1]:7700".parse()?, false)?;
        let e = plain_allowed("the Service API", "0.0.0.0:7700".parse()?, false)
            .expect_err("plain on every address");
        assert!(e.to_string().contains("--insecure-http"), "{e}");
        assert!(plain_allowed("the market API", "10.0.0.1:7710".parse()?, false).is_err());
        plain_allowed("the market API", "10.0.0.1:7710".parse()?, true)?;
        Ok(())
    }

    #[test]
    fn a_network_market_gets_the_self_signed_certificate_and_its_pin() -> anyhow::Result<()> {
        use clap::Parser;
        let dir = tempfile::tempdir()?;
        let cli = super::super::Cli::try_parse_from([
            "core-lite",
            "serve",
            "--role",
            "agent",
            "--market-listen",
            "10.0.0.1:7710",
        ])?;
        let super::super::Command::Serve(args) = cli.command else {
            anyhow::bail!("not serve");
        };
        assert!(market_tls(dir.path(), &args)?.is_some());
        let pin = crate::server::tls::read_pin(dir.path())?.expect("pin recorded");
        assert_eq!(pin.len(), 64);
        // On loopback: plain, and offerings no longer carry a pin.
        let cli = super::super::Cli::try_parse_from(["core-lite", "serve", "--role", "agent"])?;
        let super::super::Command::Serve(args) = cli.command else {
            anyhow::bail!("not serve");
        };
        assert!(market_tls(dir.path(), &args)?.is_none());
        assert_eq!(crate::server::tls::read_pin(dir.path())?, None);
        Ok(())
    }
}
