//! The `core-lite` command line: `serve` and the admin commands. Admin commands work on the
//! data dir directly (SQLite allows a running server beside them). Commands that create
//! something print one JSON object on stdout and a sentence on stderr.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use crate::admin::{read_json_file, write_private_file};
use crate::server::ServerLimits;
use crate::service::Core;
use service_api::ServiceStatus;

/// core-lite — the light core of the VPN service module pair.
///
/// Keeps templates, products, offerings, channels, credentials, sessions and usage in a
/// SQLite database under --data-dir, and serves the Service API over HTTP/JSON.
///
/// Quick start (agent):
///   core-lite module register templates/vpn
///   core-lite product create --name vpn-1 --module vpn --endpoint 203.0.113.7:1194
///   core-lite offering publish --product vpn-1 --input offer.json --out offering.signed.json
///   core-lite channel create --offering HASH
///   core-lite access export CHANNEL --out access.json
///   core-lite serve
#[derive(Debug, Parser)]
#[command(name = "core-lite", version, about, long_about, verbatim_doc_comment)]
pub struct Cli {
    /// Data directory: core.db (SQLite), agent.key and admin.token (both 0600).
    #[arg(
        long,
        env = "CORE_LITE_DATA_DIR",
        default_value = "./core-lite-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// The database: a PostgreSQL URL (`postgres://user@host/db`, or on a unix socket
    /// `postgres:///db?host=/run/postgresql&user=core`), shared by several `core-lite serve`
    /// on different hosts; the schema is created and migrated at start. Without it, SQLite
    /// in the data dir (core.db). The data dir still holds agent.key (copy the same key to
    /// every core of one agent) and the token files. No TLS: use a unix socket, loopback or
    /// a trusted network.
    #[arg(long, env = "CORE_LITE_DATABASE", global = true, value_name = "URL")]
    pub database: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve the Service API (HTTP/JSON; OpenAPI document at /openapi.json).
    Serve(ServeArgs),
    /// Service modules (templates).
    #[command(subcommand)]
    Module(ModuleCmd),
    /// Products (what an agent sells through a module).
    #[command(subcommand)]
    Product(ProductCmd),
    /// Offerings (filled, signed offering templates).
    #[command(subcommand)]
    Offering(OfferingCmd),
    /// Channels (one client's purchase under an offering).
    #[command(subcommand)]
    Channel(ChannelCmd),
    /// Access messages (credentials + config for the client).
    #[command(subcommand)]
    Access(AccessCmd),
    /// API tokens.
    #[command(subcommand)]
    Token(TokenCmd),
}

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

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Role {
    Core,
    Agent,
    Client,
    Both,
}

#[derive(Debug, Subcommand)]
pub enum ModuleCmd {
    /// Register a module directory (module.toml, offering.json, access.json). Idempotent;
    /// a changed template under the same name is refused.
    Register {
        /// The module directory, e.g. templates/vpn.
        dir: PathBuf,
    },
    /// List registered modules with their template hashes.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ProductCmd {
    /// Create a product; prints its id and its adapter token (shown only once).
    Create {
        #[arg(long, env = "CORE_LITE_PRODUCT_NAME")]
        name: String,
        /// Registered module name.
        #[arg(long, env = "CORE_LITE_PRODUCT_MODULE", default_value = "vpn")]
        module: String,
        /// Service endpoint HOST or HOST:PORT given to clients in access messages.
        #[arg(long, env = "CORE_LITE_PRODUCT_ENDPOINT")]
        endpoint: Option<String>,
        /// Also write the token to this file (0600).
        #[arg(long, env = "CORE_LITE_TOKEN_OUT")]
        token_out: Option<PathBuf>,
    },
    List,
    Show {
        /// Product id or name.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum OfferingCmd {
    /// Build, validate, sign and store an offering from the agent's input (a JSON object
    /// with the offering fields; the core fills templateHash, nonce, agentPublicKey, product).
    Publish {
        /// Product id or name.
        #[arg(long, env = "CORE_LITE_OFFERING_PRODUCT")]
        product: String,
        /// JSON file with the agent's fields.
        #[arg(long, env = "CORE_LITE_OFFERING_INPUT")]
        input: PathBuf,
        /// Write the signed offering here.
        #[arg(long, env = "CORE_LITE_OFFERING_OUT")]
        out: Option<PathBuf>,
    },
    List,
    Show {
        hash: String,
    },
    /// Client-side check of a signed offering: known template, signature, schema, rules.
    Verify {
        file: PathBuf,
    },
    /// Client: fetch an agent's offerings from its market URL (http://HOST:PORT), keep the
    /// ones whose template is registered here and that verify, and show them.
    Fetch {
        url: String,
    },
    /// Client: the offerings fetched so far.
    Fetched,
    /// Client: accept a fetched offering; the agent creates the channel and answers the
    /// signed access message, which GetAccess then serves.
    Accept {
        hash: String,
        /// Deposit in base units (1 PRIX = 10^8). Default: the minimum deposit.
        #[arg(long, env = "CORE_LITE_ACCEPT_DEPOSIT")]
        deposit: Option<u64>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ChannelCmd {
    /// Create a channel (client key + password) under an offering.
    Create {
        #[arg(long, env = "CORE_LITE_CHANNEL_OFFERING")]
        offering: String,
        /// Deposit in base units (1 PRIX = 10^8). Default: enough for maxUnits.
        #[arg(long, env = "CORE_LITE_CHANNEL_DEPOSIT")]
        deposit: Option<u64>,
    },
    List,
    /// A channel with its usage and status history (by id or client key).
    Show {
        id: String,
    },
    /// Client: stop or resume paying a channel accepted over the market.
    Payments {
        id: String,
        #[arg(long, conflicts_with = "resume")]
        pause: bool,
        #[arg(long)]
        resume: bool,
    },
    /// Force a channel's status (operator action), e.g. `terminating`.
    SetStatus {
        id: String,
        status: ServiceStatus,
        #[arg(long, default_value = "set by operator")]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum AccessCmd {
    /// Agent: print (or write, 0600) the access message of a channel, signed by the agent,
    /// with the signed offering it was sold under.
    Export {
        /// Channel id or client key.
        channel: String,
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Client: check a signed access message (the file `access export` writes: the access
    /// message signed by the agent, with the signed offering) and store it so that GetAccess
    /// serves it. A bare or changed access message is refused.
    Import {
        file: PathBuf,
        /// Refuse it unless it is for this offering (the hash `offering verify` printed).
        #[arg(long)]
        offering: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCmd {
    /// Create an API token (shown once; stored hashed).
    Create {
        /// Only `client` (the client adapter's token); product tokens come with `product create`.
        #[arg(long, default_value = "client")]
        role: String,
        /// Also write the token to this file (0600).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn print_json<T: Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

fn open(data_dir: &Path, database: Option<&str>) -> anyhow::Result<Core> {
    Core::open_with(data_dir, database).with_context(|| match database {
        None => format!("opening data dir {}", data_dir.display()),
        Some(_) => format!(
            "opening data dir {} with the database of --database",
            data_dir.display()
        ),
    })
}

/// Runs one command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let db = cli.database.as_deref();
    match cli.command {
        Command::Serve(args) => serve(&cli.data_dir, db, args).await,
        Command::Module(cmd) => module(&open(&cli.data_dir, db)?, cmd),
        Command::Product(cmd) => product(&open(&cli.data_dir, db)?, cmd),
        Command::Offering(cmd) => offering(&open(&cli.data_dir, db)?, cmd).await,
        Command::Channel(cmd) => channel(&open(&cli.data_dir, db)?, cmd),
        Command::Access(cmd) => access(&open(&cli.data_dir, db)?, cmd),
        Command::Token(TokenCmd::Create { role, out }) => token(&cli.data_dir, db, &role, out),
    }
}

fn module(core: &Core, cmd: ModuleCmd) -> anyhow::Result<()> {
    match cmd {
        ModuleCmd::Register { dir } => {
            let r = core.register_module(&dir)?;
            eprintln!(
                "module {} {} {}",
                r.module,
                r.version,
                if r.newly_registered {
                    "registered"
                } else {
                    "already registered (unchanged)"
                }
            );
            print_json(&r)
        }
        ModuleCmd::List => print_json(&core.list_modules()?),
    }
}

fn product(core: &Core, cmd: ProductCmd) -> anyhow::Result<()> {
    match cmd {
        ProductCmd::Create {
            name,
            module,
            endpoint,
            token_out,
        } => {
            let (p, token) = core.create_product(&name, &module, endpoint.as_deref())?;
            if let Some(path) = token_out {
                write_private_file(&path, format!("{}\n", token.expose()).as_bytes())?;
                eprintln!("token written to {}", path.display());
            }
            eprintln!(
                "product {} created; keep its token: it is not shown again",
                p.product_id
            );
            print_json(&serde_json::json!({
                "productId": p.product_id,
                "token": token.expose(),
            }))
        }
        ProductCmd::List => print_json(&core.list_products()?),
        ProductCmd::Show { id } => print_json(&core.show_product(&id)?),
    }
}

async fn offering(core: &Core, cmd: OfferingCmd) -> anyhow::Result<()> {
    match cmd {
        OfferingCmd::Publish {
            product,
            input,
            out,
        } => {
            let input = read_json_file(&input)?;
            let (hash, signed) = core.publish_offering(&product, &input)?;
            if let Some(path) = out {
                std::fs::write(&path, serde_json::to_string_pretty(&signed)?)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("signed offering written to {}", path.display());
            }
            eprintln!("offering {hash} published");
            print_json(&serde_json::json!({ "offeringHash": hash }))
        }
        OfferingCmd::List => print_json(&core.list_offerings()?),
        OfferingCmd::Show { hash } => print_json(&core.show_offering(&hash)?),
        OfferingCmd::Fetch { url } => {
            let market = crate::market::MarketClient::new(Duration::from_secs(10))?;
            let report = crate::market::fetch_offerings(core, &market, &url).await?;
            for o in &report.accepted {
                eprintln!(
                    "{}  {}  {} base units/{}  setup {}  up to {} units  {}  down {} / up {} Mbit/s",
                    o.offering_hash,
                    o.country,
                    o.unit_price,
                    o.unit_name,
                    o.setup_price,
                    o.max_units,
                    o.billing_type,
                    o.max_download_mbps.as_deref().unwrap_or("-"),
                    o.max_upload_mbps.as_deref().unwrap_or("-"),
                );
            }
            for (h, why) in &report.rejected {
                eprintln!("rejected {h}: {why}");
            }
            print_json(&report)
        }
        OfferingCmd::Fetched => print_json(&core.list_market_offerings()?),
        OfferingCmd::Accept { hash, deposit } => {
            let market = crate::market::MarketClient::new(Duration::from_secs(10))?;
            let (id, key) = crate::market::accept_offering(core, &market, &hash, deposit).await?;
            eprintln!("offering accepted: channel {id}, client key {key}");
            print_json(&serde_json::json!({ "channelId": id, "clientKey": key }))
        }
        OfferingCmd::Verify { file } => {
            let v = read_json_file(&file)?;
            let (hash, terms) = core.verify_offering(&v)?;
            eprintln!(
                "offering {hash} is valid: {} {} at {} base units/{}, up to {} units",
                terms.service_name,
                terms.country,
                terms.unit_price,
                terms.unit_name,
                terms.max_units
            );
            print_json(&serde_json::json!({ "offeringHash": hash, "valid": true }))
        }
    }
}

fn channel(core: &Core, cmd: ChannelCmd) -> anyhow::Result<()> {
    match cmd {
        ChannelCmd::Create { offering, deposit } => {
            let (id, key) = core.create_channel(&offering, deposit)?;
            eprintln!("channel {id} created for client key {key}");
            print_json(&serde_json::json!({ "channelId": id, "clientKey": key }))
        }
        ChannelCmd::List => print_json(&core.list_channels()?),
        ChannelCmd::Show { id } => print_json(&core.channel_info(&id)?),
        ChannelCmd::Payments { id, pause, resume } => {
            if pause == resume {
                bail!("give exactly one of --pause and --resume");
            }
            core.set_payments_paused(&id, pause)?;
            eprintln!(
                "payments {} for {id}",
                if pause { "paused" } else { "resumed" }
            );
            Ok(())
        }
        ChannelCmd::SetStatus { id, status, reason } => {
            print_json(&core.set_channel_status(&id, status, &reason)?)
        }
    }
}

fn access(core: &Core, cmd: AccessCmd) -> anyhow::Result<()> {
    match cmd {
        AccessCmd::Export { channel, out } => {
            let signed = core.export_signed_access(&channel)?;
            let text = serde_json::to_string_pretty(&signed)?;
            match out {
                Some(path) => {
                    write_private_file(&path, text.as_bytes())?;
                    eprintln!("signed access message written to {} (0600)", path.display());
                    Ok(())
                }
                None => {
                    println!("{text}");
                    Ok(())
                }
            }
        }
        AccessCmd::Import { file, offering } => {
            let v = read_json_file(&file)?;
            let key = core.import_access(&v, offering.as_deref())?;
            eprintln!("signed access message for client key {key} checked and imported");
            print_json(&serde_json::json!({ "clientKey": key }))
        }
    }
}

fn token(
    data_dir: &Path,
    db: Option<&str>,
    role: &str,
    out: Option<PathBuf>,
) -> anyhow::Result<()> {
    if role != "client" {
        bail!("--role: only `client` tokens are created here (product tokens come with `product create`)");
    }
    let core = open(data_dir, db)?;
    let t = core.create_client_token()?;
    if let Some(path) = out {
        write_private_file(&path, format!("{}\n", t.expose()).as_bytes())?;
        eprintln!("token written to {}", path.display());
    }
    print_json(&serde_json::json!({ "token": t.expose() }))
}

async fn serve(data_dir: &Path, db: Option<&str>, args: ServeArgs) -> anyhow::Result<()> {
    let core = Arc::new(open(data_dir, db)?);
    core.usage_series
        .set_width(Duration::from_secs(args.usage_bucket_secs.max(1)));
    let market = matches!(args.role, Role::Agent | Role::Both);
    let limits = args.limits(1 + usize::from(market));
    let server = crate::server::start(
        core.clone(),
        args.listen,
        Duration::from_millis(args.tick_ms.max(10)),
        limits,
    )
    .await
    .with_context(|| format!("listening on {}", args.listen))?;
    tracing::info!(
        listen = %server.addr,
        max_connections = limits.max_connections,
        data_dir = %data_dir.display(),
        database = %core.db.describe(),
        admin_token = %core.admin_token_path().display(),
        "core-lite serving"
    );
    if market {
        let (addr, _task) =
            crate::server::start_market(core.clone(), args.market_listen, limits, server.stopped())
                .await
                .with_context(|| format!("market API on {}", args.market_listen))?;
        tracing::info!(listen = %addr, "market API serving");
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
