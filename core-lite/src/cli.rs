//! The `core-lite` command line: `serve` and the admin commands. Admin commands work on the
//! data dir directly (SQLite allows a running server beside them). Commands that create
//! something print one JSON object on stdout and a sentence on stderr.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::admin::{read_json_file, write_private_file};

mod serve;
use crate::service::Core;
pub use serve::ServeArgs;
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
///
/// Settings may also come from a TOML file (--config, CORE_LITE_CONFIG): its keys are
/// data_dir and the flags of `serve` with `_` for `-` (listen, role, market_listen,
/// tick_ms, pay_interval_ms, tolerance_pct, max_connections, header_timeout_ms,
/// idle_timeout_ms, usage_bucket_secs). Flags and environment variables win over the file.
/// `core-lite check-config FILE` reports every problem of a file without starting.
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

    /// TOML config file (keys: see `core-lite --help`). Flags and environment variables
    /// win over it; a file with problems stops every command but `check-config`.
    #[arg(long, env = "CORE_LITE_CONFIG", global = true)]
    pub config: Option<PathBuf>,

    /// The database: a PostgreSQL URL (`postgres://user@host/db`, or on a unix socket
    /// `postgres:///db?host=/run/postgresql&user=core`), shared by several `core-lite serve`
    /// on different hosts; the schema is created and migrated at start. Without it, SQLite
    /// in the data dir (core.db). The data dir still holds agent.key (copy the same key to
    /// every core of one agent) and the token files. No TLS: use a unix socket, loopback or
    /// a trusted network.
    #[arg(long, env = "CORE_LITE_DATABASE", global = true, value_name = "URL")]
    pub database: Option<String>,

    /// PEM file of the certificate authorities trusted for an agent's market reached over
    /// https:// whose offerings pin no TLS key (default: the system's roots). Offerings of an
    /// agent with a self-signed certificate carry its key's fingerprint
    /// (agentTlsSpkiSha256) and need no CA.
    #[arg(long, env = "CORE_LITE_CA_FILE", global = true)]
    pub ca_file: Option<PathBuf>,

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
    /// Check a config file and report every problem (file, line, key) without starting;
    /// exit status 0 when it is fine, 1 otherwise.
    CheckConfig {
        /// The file [default: --config / CORE_LITE_CONFIG].
        file: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
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
    /// with the signed offering it was sold under. With --seal-to, sealed to the client
    /// (HPKE): only the client core holding that key can read it.
    Export {
        /// Channel id or client key.
        channel: String,
        #[arg(long)]
        out: Option<PathBuf>,
        /// The client core's sealing key (base64 X25519, what `access seal-key` prints on
        /// the client host).
        #[arg(long)]
        seal_to: Option<String>,
    },
    /// Client: print this core's sealing key (base64 X25519; made on first use), for the
    /// agent's `access export --seal-to`.
    SealKey,
    /// Client: check a signed access message (the file `access export` writes: the access
    /// message signed by the agent, with the signed offering) and store it so that GetAccess
    /// serves it. A bare or changed access message is refused; a sealed one is opened with
    /// this core's sealing key.
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

pub(crate) fn open(data_dir: &Path, database: Option<&str>) -> anyhow::Result<Core> {
    Core::open_with(data_dir, database).with_context(|| match database {
        None => format!("opening data dir {}", data_dir.display()),
        Some(_) => format!(
            "opening data dir {} with the database of --database",
            data_dir.display()
        ),
    })
}

/// Runs one command line; the exit code (check-config's 1 when the file has problems).
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    if let Command::CheckConfig { file } = &cli.command {
        return crate::config::run_check(file.as_deref(), cli.config.as_deref());
    }
    run_command(cli).await.map(|()| 0)
}

async fn run_command(cli: Cli) -> anyhow::Result<()> {
    let db = cli.database.as_deref();
    match cli.command {
        Command::CheckConfig { .. } => Ok(()),
        Command::Serve(args) => serve::serve(&cli.data_dir, db, cli.ca_file.as_deref(), args).await,
        Command::Module(cmd) => module(&open(&cli.data_dir, db)?, cmd),
        Command::Product(cmd) => product(&open(&cli.data_dir, db)?, cmd),
        Command::Offering(cmd) => offering(&open(&cli.data_dir, db)?, cli.ca_file, cmd).await,
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

async fn offering(core: &Core, ca_file: Option<PathBuf>, cmd: OfferingCmd) -> anyhow::Result<()> {
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
            let market =
                crate::market::MarketClient::with_ca_file(Duration::from_secs(10), ca_file)?;
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
            let market =
                crate::market::MarketClient::with_ca_file(Duration::from_secs(10), ca_file)?;
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
        AccessCmd::Export {
            channel,
            out,
            seal_to,
        } => {
            let signed = core.export_signed_access(&channel)?;
            let text = match seal_to {
                Some(k) => serde_json::to_string_pretty(&crate::market::sealed::seal_access(
                    &core.keys, &signed, &k,
                )?)?,
                None => serde_json::to_string_pretty(&signed)?,
            };
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
        AccessCmd::SealKey => {
            print_json(&serde_json::json!({ "sealKey": core.seal_public_key()? }))
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
