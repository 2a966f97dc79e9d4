//! The whole module pair as it runs on two machines: an AGENT namespace (core-lite
//! `--role agent` with its market API, an OpenVPN server wired to `adapter-server`, the
//! monitor with shaping) and one CLIENT namespace per client (core-lite `--role client`,
//! the offering fetched and accepted over the market, `adapter-client connect`).
//!
//! ```no_run
//! use e2e::pair::*;
//! # fn t() -> anyhow::Result<()> {
//! run_pair_test("example", |env| {
//!     let pair = Pair::start(env, PairOptions::default())?;
//!     let hash = pair.agent.publish(&OfferingSpec::new(10_000, "8", "4"))?;
//!     let client = &pair.clients[0];
//!     client.accept(&pair.agent, &hash, None)?;
//!     client.connect()?;
//!     client.wait_connected(PAIR_TIMEOUT)?;
//!     Ok(())
//! })
//! # }
//! ```
//!
//! Layout: the agent's public address is its end of the first client's veth (`10.99.X.1`);
//! every further client namespace has its own veth to the agent and a host route to that
//! address through it (a multi-homed agent, as on a LAN with several client machines).
//! Every method takes `&self` (restartable parts sit behind mutexes), so clients can be used
//! while the agent restarts its core or its OpenVPN server.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use nix::sys::signal::Signal;
use serde_json::Value;
use service_api::{ChannelInfo, ServiceStatus};

use crate::corelite::CoreLite;
use crate::env::{bin_path, TestEnv};
use crate::iperf::{iperf3_server, Iperf3Result, Iperf3Run};
use crate::leaks::LeakChecker;
use crate::netcheck::{DnsResponder, NetnsResolvConf, WhoAmI};
use crate::netns::{Netns, TcpEcho, Veth};
use crate::openvpn::{
    AuthVia, OpenVpnClient, OpenVpnClientHandle, OpenVpnServer, OpenVpnServerHandle, INIT_COMPLETED,
};
use crate::pki::Pki;
use crate::proc::{wait_for, wait_until, Proc, ProcBuilder};

/// A generous bound for one step of a pair test (start, connect, a status change). Other
/// e2e tests run at the same time on a 2-core machine, so this is far above the normal case.
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(45);
/// Service API of each core, on 127.0.0.1 inside its namespace.
pub const AGENT_CORE_PORT: u16 = 7700;
/// Service API of a client core, on 127.0.0.1 inside the client namespace.
pub const CLIENT_CORE_PORT: u16 = 7701;
/// Market API of the agent, on the agent's public (veth) address.
pub const MARKET_PORT: u16 = 7710;
/// OpenVPN server port (UDP).
pub const VPN_PORT: u16 = 1194;
/// 0.001 PRIX per MB (`vpn_offering_input`) in base units.
pub const UNIT_PRICE_BASE: u64 = 100_000;
/// Bytes per unit (MB).
pub const BYTES_PER_UNIT: u64 = service_api::BYTES_PER_UNIT;
/// How long a SIGTERMed adapter or daemon gets to exit.
const STOP_GRACE: Duration = Duration::from_secs(20);
/// Chunk size of `pump`.
const PUMP_CHUNK: usize = 64 * 1024;
/// What the agent's DNS responder on its tunnel address answers (every A query): the
/// server pushes that address (`dhcp-option DNS`).
pub const TUNNEL_DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 53);
/// What the "underlay" resolver on the agent's public address answers: the resolver the
/// client namespaces' own resolv.conf names, the one used outside the tunnel.
pub const UNDERLAY_DNS_ANSWER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 53);
/// The internet host's TCP services (`PairOptions::internet`).
pub const INTERNET_WHOAMI_PORT: u16 = 7080;
pub const INTERNET_ECHO_PORT: u16 = 7007;

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock().map_err(|_| anyhow!("fixture state lock poisoned"))
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("path {} is not UTF-8", path.display()))
}

/// Creates the test's `TestEnv` (needs the three workspace binaries), runs `f`, then checks
/// that nothing of the scope is left behind (namespaces, host devices, processes). Skips
/// like `TestEnv::with_bins` does.
pub fn run_pair_test(name: &str, f: impl FnOnce(&TestEnv) -> Result<()>) -> Result<()> {
    let bins = [
        "core-lite",
        "adapter-server",
        "adapter-server-hook",
        "adapter-client",
    ];
    let Some(env) = TestEnv::with_bins(name, &bins)? else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    let started = Instant::now();
    f(&env)?;
    leaks.wait_clean(PAIR_TIMEOUT)?;
    eprintln!("pair test {name}: {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The leak checker of `env` (re-exported for tests that check it themselves).
pub fn leak_checker(env: &TestEnv) -> LeakChecker {
    env.leak_checker()
}

// ---------------------------------------------------------------------------------------
// Options.

/// The terms of one offering (everything else as `core_lite::testkit::vpn_offering_input`:
/// MB at 0.001 PRIX, prepaid, billingInterval 10, maxBillingUnitLag 100, supply 10).
#[derive(Clone, Debug)]
pub struct OfferingSpec {
    pub max_units: u64,
    /// maxDownloadSpeed, Mbit/s (decimal string).
    pub down_mbps: String,
    /// maxUploadSpeed, Mbit/s (decimal string).
    pub up_mbps: String,
    /// Further fields merged over the input (e.g. `{"billingInterval": 5}`).
    pub overrides: Value,
}

impl OfferingSpec {
    pub fn new(max_units: u64, down_mbps: &str, up_mbps: &str) -> OfferingSpec {
        OfferingSpec {
            max_units,
            down_mbps: down_mbps.to_string(),
            up_mbps: up_mbps.to_string(),
            overrides: Value::Null,
        }
    }

    /// Merges `fields` (a JSON object) over the generated input.
    pub fn with(mut self, fields: Value) -> OfferingSpec {
        self.overrides = fields;
        self
    }

    /// The agent's input for `offering publish`.
    pub fn input(&self) -> Value {
        let mut v = core_lite::testkit::vpn_offering_input(
            self.max_units,
            Some((&self.down_mbps, &self.up_mbps)),
        );
        if let (Some(obj), Some(over)) = (v.as_object_mut(), self.overrides.as_object()) {
            for (k, val) in over {
                obj.insert(k.clone(), val.clone());
            }
        }
        v
    }

    /// The deposit that pays for all `max_units` (base units): core-lite's one full deposit
    /// ([`core_lite::billing::full_deposit`]) of these terms, free units and setup price
    /// included.
    pub fn full_deposit(&self) -> u64 {
        use core_lite::offering::{prix_to_base_units, whole_number};
        let v = self.input();
        let at = |k: &str| (format!("/{k}"), v.get(k).cloned().unwrap_or(Value::Null));
        let whole = |k: &str| {
            let (p, n) = at(k);
            whole_number(&p, &n).unwrap_or_else(|e| panic!("offering spec: {e}"))
        };
        let prix = |k: &str| {
            let (p, n) = at(k);
            prix_to_base_units(&p, &n).unwrap_or_else(|e| panic!("offering spec: {e}"))
        };
        let terms = core_lite::billing::BillingTerms {
            unit_price: prix("unitPrice"),
            setup_price: prix("setupPrice"),
            min_units: whole("minUnits"),
            max_units: whole("maxUnits"),
            free_units: whole("freeUnits"),
            max_billing_unit_lag: whole("maxBillingUnitLag"),
            billing_interval: whole("billingInterval"),
            max_suspend_time_s: whole("maxSuspendTime"),
            max_inactive_time_s: whole("maxInactiveTime"),
        };
        core_lite::billing::full_deposit(&terms).expect("offering spec: full deposit fits u64")
    }
}

/// How the OpenVPN server authenticates logins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// `auth-user-pass-verify` = `adapter-server hook` (deferred, via-file).
    Hook,
    /// `management-client-auth` and `adapter-server monitor --client-auth`.
    ManagementClientAuth,
    /// `Hook`, and the hook also as `client-connect` and `client-disconnect` (after the
    /// recorder), which OpenVPN runs with the exact final counters: the operator's way to
    /// get sessions closed without `management-client-auth`.
    HookWithSessionScripts,
    /// The small `adapter-server-hook` as auth-user-pass-verify, client-connect and
    /// client-disconnect (after the recorder), handing every event to the monitor's
    /// hand-off socket; its fallback (the full `adapter-server`) goes through a script that
    /// records each run (`Agent::fallback_runs`).
    Handoff,
}

/// What `Pair::start` builds.
#[derive(Clone, Debug)]
pub struct PairOptions {
    /// Client namespaces (each with its own core-lite; connect them with `ClientHost`).
    pub clients: usize,
    pub auth: AuthMode,
    /// OpenVPN `max-clients` and the monitor's `--max-clients`.
    pub max_clients: u32,
    /// `keepalive PING RESTART` of the server (pushed to the clients).
    pub keepalive: (u32, u32),
    /// Shaping in the monitor and in the client adapters.
    pub shaping: bool,
    /// The monitor's `--grace-period-secs`.
    pub grace_period_secs: u64,
    /// Start `adapter-server monitor` (false: only the hook does accounting-free auth).
    pub monitor: bool,
    /// DNS as a VPN provider offers it: the server pushes `dhcp-option DNS` with its
    /// tunnel address, where a responder answers `TUNNEL_DNS_ANSWER`; the agent's public
    /// address runs the "underlay" resolver (`UNDERLAY_DNS_ANSWER`) that each client
    /// namespace's own resolv.conf (`/etc/netns/NS/resolv.conf`) names.
    pub dns: bool,
    /// Full tunnel: the server pushes `redirect-gateway def1`, and each client namespace
    /// has a default route via the agent's end of its veth (OpenVPN redirects the default
    /// gateway only when there is one).
    pub full_tunnel: bool,
    /// A third namespace, "the internet" (`Agent::internet`): a veth to the agent, which
    /// forwards for the VPN subnet; reachable from a client only through the agent.
    pub internet: bool,
    /// Further options the server pushes (`push "…"`), e.g. ones the client must ignore.
    pub push: Vec<String>,
    /// Further arguments of the agent's `core-lite serve` (e.g. `--claim-window-secs 3`).
    pub agent_args: Vec<String>,
}

impl Default for PairOptions {
    fn default() -> Self {
        PairOptions {
            clients: 1,
            auth: AuthMode::Hook,
            max_clients: 16,
            keepalive: (2, 12),
            shaping: true,
            grace_period_secs: 120,
            monitor: true,
            dns: true,
            full_tunnel: true,
            internet: false,
            push: Vec::new(),
            agent_args: Vec::new(),
        }
    }
}

/// One line of the `client-disconnect` recorder: OpenVPN's own final counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FinalCounters {
    pub common_name: String,
    pub bytes_received: u64,
    pub bytes_sent: u64,
}

impl FinalCounters {
    pub fn total(&self) -> u64 {
        self.bytes_received + self.bytes_sent
    }
}

/// Parses the recorder file (`CN RECEIVED SENT` per line).
pub fn parse_final_counters(text: &str) -> Result<Vec<FinalCounters>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let [cn, rx, tx] = f.as_slice() else {
                bail!("recorder line {line:?} is not `CN RECEIVED SENT`");
            };
            Ok(FinalCounters {
                common_name: cn.to_string(),
                bytes_received: rx.parse().with_context(|| format!("in {line:?}"))?,
                bytes_sent: tx.parse().with_context(|| format!("in {line:?}"))?,
            })
        })
        .collect()
}

/// One HTB class from `tc class show`.
#[derive(Clone, Debug, PartialEq)]
pub struct TcClass {
    pub id: String,
    pub parent: Option<String>,
    pub rate_bps: u64,
    pub ceil_bps: u64,
}

/// Parses a tc rate as printed (`8Mbit`, `1Kbit`, `8000bit`, `1Gbit`, `1.5Mbit`).
pub fn parse_tc_rate(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let mul = match unit {
        "bit" => 1.0,
        "Kbit" | "kbit" => 1e3,
        "Mbit" | "mbit" => 1e6,
        "Gbit" | "gbit" => 1e9,
        _ => return None,
    };
    // Rates are small positive numbers; rounding is what tc means.
    Some((n * mul).round() as u64)
}

/// The HTB classes of `tc class show dev X` output.
pub fn parse_tc_classes(out: &str) -> Vec<TcClass> {
    out.lines()
        .filter_map(|line| {
            let w: Vec<&str> = line.split_whitespace().collect();
            if w.first() != Some(&"class") || w.get(1) != Some(&"htb") {
                return None;
            }
            let after = |key: &str| {
                w.iter()
                    .position(|x| *x == key)
                    .and_then(|i| w.get(i + 1))
                    .copied()
            };
            Some(TcClass {
                id: w.get(2)?.to_string(),
                parent: after("parent").map(str::to_string),
                rate_bps: after("rate").and_then(parse_tc_rate)?,
                ceil_bps: after("ceil").and_then(parse_tc_rate)?,
            })
        })
        .collect()
}

fn channel_from(v: Value) -> Result<ChannelInfo> {
    serde_json::from_value(v.clone()).with_context(|| format!("not a ChannelInfo: {v}"))
}

fn write_script(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} executable", path.display()))
}

/// Runs `core-lite --data-dir D args` inside `ns` (for commands that talk to the network:
/// `offering fetch`, `offering accept`); stdout as JSON.
fn core_cli_in(ns: &Netns, core: &CoreLite, args: &[&str]) -> Result<Value> {
    let mut argv = vec![utf8(core.bin())?, "--data-dir", utf8(core.data_dir())?];
    argv.extend_from_slice(args);
    let out = ns.run(&argv)?;
    if out.trim().is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&out)
        .with_context(|| format!("core-lite {} printed non-JSON: {out}", args.join(" ")))
}

// ---------------------------------------------------------------------------------------
// Traffic.

/// Sends `bytes` through a TCP connection to an echo server at `addr` from inside `ns` and
/// reads the echo back concurrently. Returns the bytes echoed back; a connection refused or
/// cut in the middle is not an error when `tolerate_cut` (the count so far is returned).
pub fn pump(
    ns: &Netns,
    addr: SocketAddr,
    bytes: u64,
    io_timeout: Duration,
    tolerate_cut: bool,
) -> Result<u64> {
    let stream = match ns.tcp_connect(addr, io_timeout) {
        Ok(s) => s,
        Err(_) if tolerate_cut => return Ok(0),
        Err(e) => return Err(e),
    };
    stream.set_read_timeout(Some(io_timeout))?;
    stream.set_write_timeout(Some(io_timeout))?;
    let mut reader = stream.try_clone()?;
    // The reader counts what comes back and keeps the error that ended it, if any.
    let read_thread = std::thread::spawn(move || -> (u64, Option<std::io::Error>) {
        let mut buf = vec![0u8; PUMP_CHUNK];
        let mut total = 0u64;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => return (total, None),
                Ok(n) => total += n as u64,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return (total, Some(e)),
            }
        }
    });
    let chunk: Vec<u8> = (0..PUMP_CHUNK).map(|i| (i % 251) as u8).collect();
    let mut sent = 0u64;
    let mut write_err = None;
    let mut w = &stream;
    while sent < bytes {
        let n = (bytes - sent).min(PUMP_CHUNK as u64) as usize;
        if let Err(e) = w.write_all(&chunk[..n]) {
            write_err = Some(e);
            // Unblock the reader too.
            let _ = stream.shutdown(Shutdown::Both);
            break;
        }
        sent += n as u64;
    }
    let _ = stream.shutdown(Shutdown::Write);
    let (echoed, read_err) = read_thread
        .join()
        .map_err(|_| anyhow!("echo reader thread panicked"))?;
    if tolerate_cut {
        return Ok(echoed);
    }
    if let Some(e) = write_err {
        return Err(e).with_context(|| format!("sending to {addr} after {sent} bytes"));
    }
    if let Some(e) = read_err {
        return Err(e)
            .with_context(|| format!("reading the echo from {addr} after {echoed} bytes"));
    }
    ensure!(echoed == bytes, "echo returned {echoed} of {bytes} bytes");
    Ok(echoed)
}

// ---------------------------------------------------------------------------------------
// The pair.

/// The agent host and the client hosts. Fields drop in order: clients first (their adapters
/// say goodbye while the server still runs), then the agent.
pub struct Pair<'e> {
    pub clients: Vec<ClientHost<'e>>,
    pub agent: Agent<'e>,
}

impl<'e> Pair<'e> {
    /// Builds the agent (namespace, core, module, product, config push, OpenVPN server,
    /// monitor) and `opts.clients` client hosts (namespace, veth, core, token). Offerings
    /// are published and accepted by the test (`Agent::publish`, `ClientHost::accept`).
    pub fn start(env: &'e TestEnv, opts: PairOptions) -> Result<Pair<'e>> {
        ensure!(opts.clients >= 1, "a pair needs at least one client host");
        let agent_ns = env.netns()?;
        let mut links = Vec::new();
        let mut client_nss = Vec::new();
        for _ in 0..opts.clients {
            let ns = env.netns()?;
            links.push(env.veth(&agent_ns, &ns)?);
            client_nss.push(ns);
        }
        let public = links[0].addr_a();
        let agent = Agent::start(env, agent_ns, public, &opts)?;
        let mut clients = Vec::new();
        for (i, (ns, link)) in client_nss.into_iter().zip(links).enumerate() {
            if i > 0 {
                ns.run(&[
                    "ip",
                    "route",
                    "add",
                    &format!("{public}/32"),
                    "via",
                    &link.addr_a().to_string(),
                ])?;
            }
            clients.push(ClientHost::start(env, ns, link, &agent, i, &opts)?);
        }
        Ok(Pair { clients, agent })
    }

    /// Client host `i`.
    pub fn client(&self, i: usize) -> Result<&ClientHost<'e>> {
        self.clients
            .get(i)
            .with_context(|| format!("the pair has no client host {i}"))
    }
}

// ---------------------------------------------------------------------------------------
// Agent.

/// The agent host. Drop order: monitor (removes its tc setup), OpenVPN server, core, then
/// the namespace.
pub struct Agent<'e> {
    env: &'e TestEnv,
    monitor: Mutex<Option<Proc>>,
    server: Mutex<OpenVpnServerHandle>,
    core_proc: Mutex<Option<Proc>>,
    /// The DNS responders (`PairOptions::dns`): underlay, then tunnel.
    dns: Vec<DnsResponder>,
    internet: Option<Internet>,
    pub ns: Netns,
    pub pki: Pki,
    pub core: CoreLite,
    opts: PairOptions,
    public: Ipv4Addr,
    token_file: PathBuf,
    recorder: PathBuf,
    mgmt_sock: PathBuf,
    handoff_sock: PathBuf,
    fallback_record: PathBuf,
    ifb: String,
    tunnel_ip: Ipv4Addr,
    tun: String,
    server_config: PathBuf,
}

impl<'e> Agent<'e> {
    fn start(
        env: &'e TestEnv,
        ns: Netns,
        public: Ipv4Addr,
        opts: &PairOptions,
    ) -> Result<Agent<'e>> {
        let pki = Pki::generate(env)?;
        let core = CoreLite::new(env, "agent-core")?;
        let module_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/vpn");
        core.cli(&["module", "register", utf8(&module_dir)?])?;
        let token_file = env.path("agent.token");
        core.cli(&[
            "product",
            "create",
            "--name",
            "vpn-e2e",
            "--module",
            "vpn",
            "--endpoint",
            &format!("{public}:{VPN_PORT}"),
            "--token-out",
            utf8(&token_file)?,
        ])?;
        let core_proc = spawn_agent_core(env, &ns, &core, public, &opts.agent_args)?;

        // The OpenVPN server: hook auth (deferred) or management-client-auth, a
        // client-disconnect recorder of OpenVPN's own final counters, management socket.
        let recorder = env.path("final-counters.txt");
        let recorder_script = env.path("record-final.sh");
        let server_bin = bin_path("adapter-server")?;
        let core_url = format!("http://127.0.0.1:{AGENT_CORE_PORT}");
        let hook = format!(
            "{} --core-url={core_url} --token-file={} hook --state-dir={}",
            utf8(&server_bin)?,
            utf8(&token_file)?,
            utf8(&env.path("hook-state"))?
        );
        // The small hook: the same command line in front of the hand-off socket, and a
        // fallback that records being run before it execs the full binary.
        let handoff_sock = env.path("handoff.sock");
        let fallback_record = env.path("fallback-runs.txt");
        let fallback = env.path("fallback.sh");
        write_script(
            &fallback,
            &format!(
                "#!/bin/sh\necho \"$script_type\" >> '{}'\nexec {} \"$@\"\n",
                utf8(&fallback_record)?,
                utf8(&server_bin)?
            ),
        )?;
        // (The socket and the state dir come through `setenv`: OpenVPN refuses config
        // lines longer than 256 characters.)
        let small_hook = format!(
            "{} --core-url={core_url} --token-file={} hook",
            utf8(&bin_path("adapter-server-hook")?)?,
            utf8(&token_file)?,
        );
        // After recording, the disconnect goes on to the hook when it handles sessions
        // (OpenVPN has one client-disconnect command; the environment passes through).
        let then_hook = match opts.auth {
            AuthMode::HookWithSessionScripts => format!("exec {hook} \"$@\"\n"),
            AuthMode::Handoff => format!("exec {small_hook} \"$@\"\n"),
            _ => String::new(),
        };
        write_script(
            &recorder_script,
            &format!(
                "#!/bin/sh\n# OpenVPN's own final counters of a client, independent of the adapters.\n\
                 echo \"$common_name $bytes_received $bytes_sent\" >> '{}'\n{then_hook}",
                utf8(&recorder)?
            ),
        )?;
        let mgmt_sock = env.path("mgmt.sock");
        let tun = format!("tun{}s", env.prefix());
        let subnet = env.next_subnet();
        let mut builder = OpenVpnServer::new(env, &ns, &pki)
            .subnet(subnet)
            .port(VPN_PORT)
            // Bound to the public address: a multi-homed UDP server must answer from the
            // address the client sent to (clients behind the other veths route to it).
            .local(public)
            .client_disconnect(utf8(&recorder_script)?)
            .management_unix(&mgmt_sock)
            .max_clients(opts.max_clients)
            .keepalive(Some(opts.keepalive))
            .extra("explicit-exit-notify 1")
            // adapter-server's config reader accepts only `dev tun*` names (it ignores
            // `dev-type tun`), so the harness's unique device name is overridden by a later
            // `dev` line (OpenVPN: the last one wins). Still unique: it carries the prefix.
            .extra(&format!("dev {tun}"));
        if opts.dns {
            builder = builder.extra(&format!("push \"dhcp-option DNS 10.8.{subnet}.1\""));
        }
        if opts.full_tunnel {
            builder = builder.extra("push \"redirect-gateway def1\"");
        }
        for p in &opts.push {
            ensure!(!p.contains(['"', '\\', '\n']), "unusable push option {p:?}");
            builder = builder.extra(&format!("push \"{p}\""));
        }
        builder = match opts.auth {
            AuthMode::Hook => builder.auth_user_pass_verify(&hook, AuthVia::File),
            AuthMode::HookWithSessionScripts => builder
                .auth_user_pass_verify(&hook, AuthVia::File)
                .client_connect(&hook),
            AuthMode::ManagementClientAuth => builder.management_client_auth(true),
            AuthMode::Handoff => builder
                .auth_user_pass_verify(&small_hook, AuthVia::File)
                .client_connect(&small_hook)
                .setenv("ADAPTER_SERVER_HANDOFF_SOCKET", utf8(&handoff_sock)?)
                .setenv("ADAPTER_SERVER_STATE_DIR", utf8(&env.path("hook-state"))?)
                .setenv("ADAPTER_SERVER_HOOK_FALLBACK", utf8(&fallback)?),
        };
        let server = builder.start_no_wait()?;
        let server_config = server.config_path().to_path_buf();
        let tunnel_ip = server.tunnel_ip();

        // Product config (CA, tls-crypt key, proto, port) before any client accepts.
        ns.run(&[
            utf8(&server_bin)?,
            &format!("--core-url={core_url}"),
            &format!("--token-file={}", utf8(&token_file)?),
            "push-config",
            "--server-config",
            utf8(&server_config)?,
            "--endpoint",
            &format!("{public}:{VPN_PORT}"),
        ])?;
        let ifb = env.unique_name('i');
        let internet = if opts.internet {
            Some(Internet::start(env, &ns)?)
        } else {
            None
        };
        let mut agent = Agent {
            env,
            monitor: Mutex::new(None),
            server: Mutex::new(server),
            core_proc: Mutex::new(Some(core_proc)),
            dns: Vec::new(),
            internet,
            ns,
            pki,
            core,
            opts: opts.clone(),
            public,
            token_file,
            recorder,
            mgmt_sock,
            handoff_sock,
            fallback_record,
            ifb,
            tunnel_ip,
            tun,
            server_config,
        };
        {
            let server = lock(&agent.server)?;
            server
                .proc
                .wait_for_line(INIT_COMPLETED, PAIR_TIMEOUT)
                .context("starting the OpenVPN server")?;
        }
        if opts.dns {
            // The tunnel address exists once the server is up (and the socket stays bound
            // across a restart of the server, when the address comes back).
            let underlay = DnsResponder::start(
                &agent.ns,
                SocketAddr::from((public, 53)),
                UNDERLAY_DNS_ANSWER,
            )?;
            let tunnel = DnsResponder::start(
                &agent.ns,
                SocketAddr::from((tunnel_ip, 53)),
                TUNNEL_DNS_ANSWER,
            )?;
            agent.dns = vec![underlay, tunnel];
        }
        if opts.monitor {
            agent.start_monitor()?;
        }
        Ok(agent)
    }

    /// Starts `adapter-server monitor` (again), inside the agent namespace.
    pub fn start_monitor(&self) -> Result<()> {
        let mut slot = lock(&self.monitor)?;
        ensure!(
            slot.as_ref().is_none_or(|p| !p.is_running()),
            "the monitor already runs"
        );
        let mut b = self
            .ns
            .spawn(bin_path("adapter-server")?)
            .env("RUST_LOG", "info,adapter_server=debug")
            .arg(format!("--core-url=http://127.0.0.1:{AGENT_CORE_PORT}"))
            .arg(format!("--token-file={}", utf8(&self.token_file)?))
            .arg("monitor")
            .arg("--management")
            .arg(&self.mgmt_sock)
            .arg("--server-config")
            .arg(&self.server_config)
            .arg("--endpoint")
            .arg(format!("{}:{VPN_PORT}", self.public))
            .args(["--reconnect-max-secs", "2"])
            .arg("--grace-period-secs")
            .arg(self.opts.grace_period_secs.to_string())
            .label("adapter-server-monitor");
        if self.opts.auth == AuthMode::ManagementClientAuth {
            b = b.arg("--client-auth");
        }
        if self.opts.auth == AuthMode::Handoff {
            b = b.arg("--handoff-socket").arg(&self.handoff_sock);
        }
        if self.opts.shaping {
            b = b
                .arg("--tun")
                .arg(&self.tun)
                .arg("--ifb")
                .arg(&self.ifb)
                .args(["--link-capacity", "1gbit"])
                .arg("--max-clients")
                .arg(self.opts.max_clients.to_string());
        } else {
            b = b.arg("--no-shaping");
        }
        let proc = b.spawn(self.env)?;
        proc.wait_for_line("connected to OpenVPN management", PAIR_TIMEOUT)?;
        if self.opts.shaping {
            wait_until(PAIR_TIMEOUT, "the monitor's shaping root class", || {
                self.tc_classes_of(&self.tun)
                    .is_ok_and(|c| c.iter().any(|c| c.id == "1:1"))
            })
            .with_context(|| proc.log_tail(30))?;
        }
        *slot = Some(proc);
        Ok(())
    }

    /// SIGTERM to the monitor; its exit status.
    pub fn stop_monitor(&self) -> Result<ExitStatus> {
        let slot = lock(&self.monitor)?;
        let proc = slot.as_ref().context("no monitor running")?;
        proc.terminate(STOP_GRACE)
    }

    /// Runs `f` with the monitor's `Proc` (its log, its state).
    pub fn with_monitor<R>(&self, f: impl FnOnce(&Proc) -> R) -> Result<R> {
        let slot = lock(&self.monitor)?;
        Ok(f(slot.as_ref().context("no monitor started")?))
    }

    /// Runs `f` with the OpenVPN server's handle.
    pub fn with_server<R>(&self, f: impl FnOnce(&OpenVpnServerHandle) -> R) -> Result<R> {
        let server = lock(&self.server)?;
        Ok(f(&server))
    }

    /// The agent's public address (endpoint of the VPN and of the market API).
    pub fn public_addr(&self) -> Ipv4Addr {
        self.public
    }

    /// `https://PUBLIC:MARKET_PORT` (the agent's self-signed certificate, pinned by its
    /// offerings).
    pub fn market_url(&self) -> String {
        format!("https://{}:{MARKET_PORT}", self.public)
    }

    /// The agent's TLS key pin (`market-tls.pin` of its data dir, what its offerings carry).
    pub fn tls_pin(&self) -> Result<String> {
        let path = self.core.data_dir().join("market-tls.pin");
        Ok(std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?
            .trim()
            .to_string())
    }

    /// The agent's market view of a channel (`GET /market/v1/channels/ID`), read from the
    /// client host's namespace with a request signed by that client core's key (curl).
    pub fn market_view(&self, client: &ClientHost<'_>, channel_id: &str) -> Result<Value> {
        let keys = core_lite::keys::AgentKeys::load(&client.core.data_dir().join("agent.key"))
            .context("loading the client core's key")?;
        let path = format!("/market/v1/channels/{channel_id}");
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let url = format!("{}{path}", self.market_url());
        let mut argv: Vec<String> = ["curl", "-sS", "-k", "--max-time", "5"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (name, value) in core_lite::market::guard::sign_read(&keys, "GET", &path, ts) {
            argv.push("-H".into());
            argv.push(format!("{name}: {value}"));
        }
        argv.push(url);
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let out = client.ns.run(&argv)?;
        serde_json::from_str(&out).with_context(|| format!("market answered {out}"))
    }

    /// The OpenVPN server's tunnel address `10.8.X.1`.
    pub fn tunnel_ip(&self) -> Ipv4Addr {
        self.tunnel_ip
    }

    /// The server's tun device (in the agent namespace).
    pub fn tun(&self) -> &str {
        &self.tun
    }

    /// The monitor's IFB device (in the agent namespace).
    pub fn ifb(&self) -> &str {
        &self.ifb
    }

    /// Publishes an offering; its hash.
    pub fn publish(&self, spec: &OfferingSpec) -> Result<String> {
        let n = self.env.unique_name('o');
        let input = self.env.path(&format!("{n}.offering-input.json"));
        std::fs::write(&input, serde_json::to_string_pretty(&spec.input())?)
            .with_context(|| format!("writing {}", input.display()))?;
        self.core.cli_field(
            &[
                "offering",
                "publish",
                "--product",
                "vpn-e2e",
                "--input",
                utf8(&input)?,
            ],
            "offeringHash",
        )
    }

    /// `core-lite channel show KEY` on the agent core.
    pub fn channel(&self, client_key: &str) -> Result<ChannelInfo> {
        channel_from(self.core.cli(&["channel", "show", client_key])?)
    }

    /// Polls the agent's channel until `pred` holds; returns it.
    pub fn wait_channel(
        &self,
        client_key: &str,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&ChannelInfo) -> bool,
    ) -> Result<ChannelInfo> {
        let mut last = None;
        let res = wait_for(timeout, what, || {
            let ch = self.channel(client_key)?;
            let ok = pred(&ch);
            last = Some(ch.clone());
            Ok(ok.then_some(ch))
        });
        res.with_context(|| format!("agent channel: last seen {last:?}"))
    }

    /// The access message (with the password) the agent derives for a channel (from the
    /// signed access message `access export` prints).
    pub fn access(&self, client_key: &str) -> Result<Value> {
        let signed = self.core.cli(&["access", "export", client_key])?;
        signed
            .get("access")
            .cloned()
            .with_context(|| format!("access export printed no signed access message: {signed}"))
    }

    /// The script types of the runs of the full `adapter-server` by `adapter-server-hook`
    /// (`AuthMode::Handoff`): empty while every event was handed off.
    pub fn fallback_runs(&self) -> Result<Vec<String>> {
        match std::fs::read_to_string(&self.fallback_record) {
            Ok(text) => Ok(text.lines().map(str::to_string).collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.fallback_record.display())),
        }
    }

    /// OpenVPN's own final counters, one entry per ended connection, in order.
    pub fn final_counters(&self) -> Result<Vec<FinalCounters>> {
        match std::fs::read_to_string(&self.recorder) {
            Ok(text) => parse_final_counters(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.recorder.display())),
        }
    }

    /// The final counters of `common_name` (the client key), oldest first.
    pub fn final_counters_of(&self, common_name: &str) -> Result<Vec<FinalCounters>> {
        Ok(self
            .final_counters()?
            .into_iter()
            .filter(|c| c.common_name == common_name)
            .collect())
    }

    /// Waits until at least `n` connections of `common_name` have ended.
    pub fn wait_final_counters(
        &self,
        common_name: &str,
        n: usize,
        timeout: Duration,
    ) -> Result<Vec<FinalCounters>> {
        wait_for(
            timeout,
            &format!("{n} recorded disconnect(s) of {common_name}"),
            || {
                let c = self.final_counters_of(common_name)?;
                Ok((c.len() >= n).then_some(c))
            },
        )
    }

    /// HTB classes on `dev` in the agent namespace (empty when the device or qdisc is gone).
    pub fn tc_classes_of(&self, dev: &str) -> Result<Vec<TcClass>> {
        let out = self.ns.output(&["tc", "class", "show", "dev", dev])?;
        Ok(parse_tc_classes(&String::from_utf8_lossy(&out.stdout)))
    }

    /// Per-client shaping classes (download on the tun, upload on the IFB): every class
    /// except the parent `1:1`.
    pub fn client_classes(&self) -> Result<(Vec<TcClass>, Vec<TcClass>)> {
        let per_client = |v: Vec<TcClass>| v.into_iter().filter(|c| c.id != "1:1").collect();
        Ok((
            per_client(self.tc_classes_of(&self.tun)?),
            per_client(self.tc_classes_of(&self.ifb)?),
        ))
    }

    /// Whether a network device exists in the agent namespace.
    pub fn has_device(&self, dev: &str) -> Result<bool> {
        Ok(self
            .ns
            .output(&["ip", "link", "show", "dev", dev])?
            .status
            .success())
    }

    /// SIGKILLs the agent core (no chance to flush or say goodbye).
    pub fn kill_core(&self) -> Result<()> {
        let mut slot = lock(&self.core_proc)?;
        let old = slot.take().context("the agent core is not running")?;
        old.signal(Signal::SIGKILL)?;
        let status = old.wait_exit(PAIR_TIMEOUT)?;
        ensure!(
            status.signal() == Some(libc::SIGKILL),
            "agent core ended with {status}, not by SIGKILL"
        );
        Ok(())
    }

    /// Starts the agent core again on the same data dir; returns once its Service API and
    /// market API accept connections.
    pub fn start_core(&self) -> Result<()> {
        let mut slot = lock(&self.core_proc)?;
        ensure!(slot.is_none(), "the agent core already runs");
        *slot = Some(spawn_agent_core(
            self.env,
            &self.ns,
            &self.core,
            self.public,
            &self.opts.agent_args,
        )?);
        Ok(())
    }

    /// `kill_core` + `start_core`.
    pub fn restart_core(&self) -> Result<()> {
        self.kill_core()?;
        self.start_core()
    }

    /// Stops the OpenVPN server (SIGTERM) and starts it again with the same config; returns
    /// once it has initialized.
    pub fn restart_openvpn(&self) -> Result<()> {
        lock(&self.server)?.proc.terminate(STOP_GRACE)?;
        self.start_openvpn()
    }

    /// SIGKILLs the OpenVPN server (no exit notification to its clients); start it again
    /// with `start_openvpn`.
    pub fn kill_openvpn(&self) -> Result<()> {
        let server = lock(&self.server)?;
        server.proc.signal(Signal::SIGKILL)?;
        server.proc.wait_exit(PAIR_TIMEOUT)?;
        Ok(())
    }

    /// Starts the (stopped) OpenVPN server again with the same config; returns once it has
    /// initialized.
    pub fn start_openvpn(&self) -> Result<()> {
        let mut server = lock(&self.server)?;
        ensure!(!server.proc.is_running(), "the OpenVPN server still runs");
        let proc = ProcBuilder::new("openvpn")
            .arg("--config")
            .arg(server.config_path())
            .netns(&self.ns)
            .label("openvpn-server")
            .current_dir(self.env.dir())
            .spawn(self.env)?;
        server.proc = proc;
        server
            .proc
            .wait_for_line(INIT_COMPLETED, PAIR_TIMEOUT)
            .context("restarting the OpenVPN server")?;
        Ok(())
    }

    /// An iperf3 server bound to the server's tunnel address inside the agent namespace.
    pub fn iperf_server(&self, port: u16) -> Result<Proc> {
        iperf3_server(self.env, &self.ns, self.tunnel_ip, port)
    }

    /// A TCP echo server on the server's tunnel address inside the agent namespace.
    pub fn echo_server(&self, port: u16) -> Result<TcpEcho> {
        self.ns
            .tcp_echo(SocketAddr::V4(SocketAddrV4::new(self.tunnel_ip, port)))
    }

    /// A plain OpenVPN client (no adapter) in `ns` with the given credentials, for tests of
    /// refused logins.
    pub fn raw_client(
        &self,
        ns: &Netns,
        user: &str,
        password: &str,
    ) -> Result<OpenVpnClientHandle> {
        OpenVpnClient::new(self.env, ns, &self.pki, self.public, VPN_PORT)
            .credentials(user, password)
            .start()
    }

    /// The underlay resolver on the public address (`PairOptions::dns`).
    pub fn dns_underlay(&self) -> Result<&DnsResponder> {
        self.dns
            .first()
            .context("the pair runs without DNS (PairOptions::dns)")
    }

    /// The DNS responder on the tunnel address, the one the server pushes.
    pub fn dns_tunnel(&self) -> Result<&DnsResponder> {
        self.dns
            .get(1)
            .context("the pair runs without DNS (PairOptions::dns)")
    }

    /// The internet host (`PairOptions::internet`).
    pub fn internet(&self) -> Result<&Internet> {
        self.internet
            .as_ref()
            .context("the pair runs without an internet host (PairOptions::internet)")
    }

    /// The agent core's process (for its log).
    pub fn with_core_proc<R>(&self, f: impl FnOnce(&Proc) -> R) -> Result<R> {
        let slot = lock(&self.core_proc)?;
        Ok(f(slot.as_ref().context("agent core not running")?))
    }
}

/// "The internet": a namespace behind the agent (`10.97.X.2`, veth to the agent's
/// `10.97.X.1`) whose default route leads back through the agent, which forwards.
/// A client reaches it only through the agent: over the tunnel (source = its VPN address)
/// or, without a tunnel, routed by the agent from its underlay address.
pub struct Internet {
    pub whoami: WhoAmI,
    pub echo: TcpEcho,
    pub link: Veth,
    pub ns: Netns,
}

impl Internet {
    fn start(env: &TestEnv, agent_ns: &Netns) -> Result<Internet> {
        let ns = env.netns()?;
        let x = env.next_subnet();
        let name = env.unique_name('v');
        let link = Veth::create(
            agent_ns,
            &format!("{name}a"),
            &format!("10.97.{x}.1/24"),
            &ns,
            &format!("{name}b"),
            &format!("10.97.{x}.2/24"),
        )?;
        agent_ns.run(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"])?;
        // Everything back through the agent: the VPN subnet and the clients' underlay.
        ns.run(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &link.addr_a().to_string(),
        ])?;
        let host = link.addr_b();
        let whoami = WhoAmI::start(&ns, SocketAddr::from((host, INTERNET_WHOAMI_PORT)))?;
        let echo = ns.tcp_echo(SocketAddr::from((host, INTERNET_ECHO_PORT)))?;
        Ok(Internet {
            whoami,
            echo,
            link,
            ns,
        })
    }

    /// The host's address (outside the VPN subnet, reachable only through the agent).
    pub fn addr(&self) -> Ipv4Addr {
        self.link.addr_b()
    }
}

fn spawn_agent_core(
    env: &TestEnv,
    ns: &Netns,
    core: &CoreLite,
    public: Ipv4Addr,
    extra: &[String],
) -> Result<Proc> {
    let listen = SocketAddr::from(([127, 0, 0, 1], AGENT_CORE_PORT));
    let market = SocketAddr::from((public, MARKET_PORT));
    let proc = ns
        .spawn(core.bin())
        .env("RUST_LOG", "info")
        .arg("--data-dir")
        .arg(core.data_dir())
        .args(["serve", "--role", "agent", "--tick-ms", "200", "--listen"])
        .arg(listen.to_string())
        .arg("--market-listen")
        .arg(market.to_string())
        .args(extra)
        .label("core-lite-agent")
        .spawn(env)?;
    for addr in [listen, market] {
        ns.wait_for_tcp(addr, PAIR_TIMEOUT)
            .with_context(|| format!("agent core did not come up\n{}", proc.log_tail(30)))?;
    }
    Ok(proc)
}

// ---------------------------------------------------------------------------------------
// Client.

/// One client host: namespace, veth to the agent, core-lite `--role client`, and (after
/// `accept` + `connect`) `adapter-client connect`. Drop order: adapter (SIGTERM: final
/// StopSession), core, veth, namespace.
pub struct ClientHost<'e> {
    env: &'e TestEnv,
    adapter: Mutex<Option<Proc>>,
    core_proc: Proc,
    /// The namespace's own resolv.conf (`PairOptions::dns`).
    resolv_conf: Option<NetnsResolvConf>,
    pub link: Veth,
    pub ns: Netns,
    pub core: CoreLite,
    index: usize,
    shaping: bool,
    token_file: PathBuf,
    state_file: PathBuf,
    runtime_dir: PathBuf,
    tun_dev: String,
    ifb_dev: String,
    client_key: Mutex<Option<String>>,
}

impl<'e> ClientHost<'e> {
    fn start(
        env: &'e TestEnv,
        ns: Netns,
        link: Veth,
        agent: &Agent<'e>,
        index: usize,
        opts: &PairOptions,
    ) -> Result<ClientHost<'e>> {
        // Before anything runs in the namespace: `ip netns exec` mounts it from now on.
        let resolv_conf = if opts.dns {
            Some(NetnsResolvConf::create(
                &ns,
                &format!(
                    "# the client host's own resolver (the agent's public address)\n\
                     nameserver {}\noptions timeout:1 attempts:1\n",
                    agent.public_addr()
                ),
            )?)
        } else {
            None
        };
        if opts.full_tunnel {
            ns.run(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &link.addr_a().to_string(),
            ])?;
        }
        let core = CoreLite::new(env, &format!("client{index}-core"))?;
        let module_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../templates/vpn");
        core.cli(&["module", "register", utf8(&module_dir)?])?;
        let token_file = env.path(&format!("client{index}.token"));
        core.cli(&[
            "token",
            "create",
            "--role",
            "client",
            "--out",
            utf8(&token_file)?,
        ])?;
        let listen = SocketAddr::from(([127, 0, 0, 1], CLIENT_CORE_PORT));
        let core_proc = ns
            .spawn(core.bin())
            .env("RUST_LOG", "info")
            .arg("--data-dir")
            .arg(core.data_dir())
            .args([
                "serve",
                "--role",
                "client",
                "--tick-ms",
                "200",
                "--pay-interval-ms",
                "500",
            ])
            .arg("--listen")
            .arg(listen.to_string())
            .label(&format!("core-lite-client{index}"))
            .spawn(env)?;
        ns.wait_for_tcp(listen, PAIR_TIMEOUT)
            .with_context(|| format!("client core did not come up\n{}", core_proc.log_tail(30)))?;
        Ok(ClientHost {
            env,
            adapter: Mutex::new(None),
            core_proc,
            resolv_conf,
            link,
            ns,
            core,
            index,
            shaping: opts.shaping,
            token_file,
            state_file: env.path(&format!("client{index}.state.json")),
            runtime_dir: env.path(&format!("client{index}-rt")),
            tun_dev: env.unique_name('t'),
            ifb_dev: env.unique_name('i'),
            client_key: Mutex::new(None),
        })
    }

    /// Over the market: `offering fetch http://AGENT:MARKET_PORT`, then `offering accept
    /// HASH --deposit N` (default: the deposit for all maxUnits of `spec`... given as
    /// `deposit`, else 10 PRIX). Returns the client key; later calls use it.
    pub fn accept(
        &self,
        agent: &Agent<'_>,
        offering_hash: &str,
        deposit: Option<u64>,
    ) -> Result<String> {
        let fetched = core_cli_in(
            &self.ns,
            &self.core,
            &["offering", "fetch", &agent.market_url()],
        )?;
        ensure!(
            fetched.to_string().contains(offering_hash),
            "offering {offering_hash} not among the fetched ones: {fetched}"
        );
        let deposit = deposit.unwrap_or(1_000_000_000).to_string();
        let accepted = core_cli_in(
            &self.ns,
            &self.core,
            &["offering", "accept", offering_hash, "--deposit", &deposit],
        )?;
        let key = accepted
            .get("clientKey")
            .and_then(Value::as_str)
            .with_context(|| format!("offering accept printed no clientKey: {accepted}"))?
            .to_string();
        *lock(&self.client_key)? = Some(key.clone());
        Ok(key)
    }

    /// The client key of the accepted offering.
    pub fn client_key(&self) -> Result<String> {
        lock(&self.client_key)?
            .clone()
            .context("no offering accepted on this client host yet")
    }

    /// Starts `adapter-client connect` (again) for the accepted channel. Does not wait.
    pub fn connect(&self) -> Result<()> {
        self.connect_with(&[])
    }

    /// `connect` with further `connect` flags (e.g. `--lockdown`).
    pub fn connect_with(&self, extra: &[&str]) -> Result<()> {
        let key = self.client_key()?;
        let mut slot = lock(&self.adapter)?;
        ensure!(
            slot.as_ref().is_none_or(|p| !p.is_running()),
            "adapter-client already runs on client host {}",
            self.index
        );
        let _ = std::fs::remove_file(&self.state_file);
        let mut b = self
            .ns
            .spawn(bin_path("adapter-client")?)
            .args([
                "--log",
                "info,adapter_client=debug,openvpn=debug",
                "connect",
            ])
            .args(["--client-key", &key])
            .arg("--core-url")
            .arg(format!("http://127.0.0.1:{CLIENT_CORE_PORT}"))
            .arg("--token-file")
            .arg(&self.token_file)
            .arg("--runtime-dir")
            .arg(&self.runtime_dir)
            .arg("--state-file")
            .arg(&self.state_file)
            .arg("--tun-dev")
            .arg(&self.tun_dev)
            .args(["--report-interval", "1"])
            .args(["--backoff-initial-ms", "200", "--backoff-max", "2"])
            .args(["--stop-timeout", "5"])
            .args(extra)
            .label(&format!("adapter-client{}", self.index));
        if self.shaping {
            b = b.arg("--ifb-dev").arg(&self.ifb_dev);
        } else {
            b = b.arg("--no-shaping");
        }
        *slot = Some(b.spawn(self.env)?);
        Ok(())
    }

    /// `accept` + `connect` + `wait_connected`; the client key.
    pub fn accept_and_connect(
        &self,
        agent: &Agent<'_>,
        offering_hash: &str,
        deposit: Option<u64>,
    ) -> Result<String> {
        let key = self.accept(agent, offering_hash, deposit)?;
        self.connect()?;
        self.wait_connected(PAIR_TIMEOUT)?;
        Ok(key)
    }

    /// The adapter's state file (JSON), `None` before it exists.
    pub fn state(&self) -> Result<Option<Value>> {
        match std::fs::read_to_string(&self.state_file) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(v) => Ok(Some(v)),
                Err(_) => Ok(None), // being rewritten (it is renamed atomically, but be lenient)
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", self.state_file.display())),
        }
    }

    /// Waits for phase `connected` with at least `connections` connections made in this run;
    /// returns the state. Fails early when the adapter exits.
    pub fn wait_connections(&self, connections: u64, timeout: Duration) -> Result<Value> {
        let res = wait_for(
            timeout,
            &format!(
                "adapter-client {} connected (connection #{connections})",
                self.index
            ),
            || {
                if let Some(st) = self.adapter_exit()? {
                    bail!("adapter-client exited ({st})");
                }
                Ok(self.state()?.filter(|s| {
                    s.get("phase").and_then(Value::as_str) == Some("connected")
                        && s.get("connections").and_then(Value::as_u64).unwrap_or(0) >= connections
                }))
            },
        );
        res.with_context(|| self.adapter_log_tail(40))
    }

    /// Waits for phase `connected`.
    pub fn wait_connected(&self, timeout: Duration) -> Result<Value> {
        self.wait_connections(1, timeout)
    }

    /// The VPN address from the state file.
    pub fn vpn_ip(&self) -> Result<Ipv4Addr> {
        let st = self.state()?.context("no adapter state yet")?;
        st.get("vpnAddress")
            .and_then(Value::as_str)
            .context("state has no vpnAddress")?
            .parse()
            .context("vpnAddress is not an IPv4 address")
    }

    /// The exit status of the adapter once it exited.
    pub fn adapter_exit(&self) -> Result<Option<ExitStatus>> {
        match lock(&self.adapter)?.as_ref() {
            Some(p) => p.exit_status(),
            None => Ok(None),
        }
    }

    /// Waits for the adapter to exit by itself.
    pub fn wait_adapter_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let slot = lock(&self.adapter)?;
        slot.as_ref()
            .context("adapter not started")?
            .wait_exit(timeout)
    }

    /// SIGTERM to the adapter (graceful stop: final StopSession); its exit status.
    pub fn stop(&self) -> Result<ExitStatus> {
        let slot = lock(&self.adapter)?;
        slot.as_ref()
            .context("adapter not started")?
            .terminate(STOP_GRACE)
    }

    /// The adapter's last log lines (for messages).
    pub fn adapter_log_tail(&self, n: usize) -> String {
        match lock(&self.adapter) {
            Ok(slot) => slot.as_ref().map(|p| p.log_tail(n)).unwrap_or_default(),
            Err(e) => e.to_string(),
        }
    }

    /// Runs `f` with the adapter's `Proc`.
    pub fn with_adapter<R>(&self, f: impl FnOnce(&Proc) -> R) -> Result<R> {
        let slot = lock(&self.adapter)?;
        Ok(f(slot.as_ref().context("adapter not started")?))
    }

    /// `core-lite channel show KEY` on the client core.
    pub fn channel(&self) -> Result<ChannelInfo> {
        let key = self.client_key()?;
        channel_from(self.core.cli(&["channel", "show", &key])?)
    }

    /// Polls the client core's channel until `pred` holds.
    pub fn wait_channel(
        &self,
        what: &str,
        timeout: Duration,
        mut pred: impl FnMut(&ChannelInfo) -> bool,
    ) -> Result<ChannelInfo> {
        let mut last = None;
        let res = wait_for(timeout, what, || {
            let ch = self.channel()?;
            let ok = pred(&ch);
            last = Some(ch.clone());
            Ok(ok.then_some(ch))
        });
        res.with_context(|| format!("client channel: last seen {last:?}"))
    }

    /// iperf3 from this client to `server_port` on the agent's tunnel address (`reverse`:
    /// the agent sends, i.e. the client's download).
    pub fn iperf(
        &self,
        agent: &Agent<'_>,
        server_port: u16,
        seconds: u32,
        reverse: bool,
    ) -> Result<Iperf3Result> {
        Iperf3Run {
            server: agent.tunnel_ip(),
            port: server_port,
            seconds,
            reverse,
        }
        .run(&self.ns)
    }

    /// Sends `bytes` through the tunnel to an echo server on the agent's tunnel address
    /// and back; see `pump`.
    pub fn pump(
        &self,
        agent: &Agent<'_>,
        echo_port: u16,
        bytes: u64,
        tolerate_cut: bool,
    ) -> Result<u64> {
        let addr = SocketAddr::V4(SocketAddrV4::new(agent.tunnel_ip(), echo_port));
        self.ns.wait_for_tcp(addr, PAIR_TIMEOUT)?;
        pump(&self.ns, addr, bytes, Duration::from_secs(15), tolerate_cut)
    }

    /// The client core process (for its log).
    pub fn core_proc(&self) -> &Proc {
        &self.core_proc
    }

    /// The namespace's own resolv.conf (`PairOptions::dns`).
    pub fn resolv_conf(&self) -> Result<&NetnsResolvConf> {
        self.resolv_conf
            .as_ref()
            .context("the pair runs without DNS (PairOptions::dns)")
    }

    /// The adapter's tun device name.
    pub fn tun_dev(&self) -> &str {
        &self.tun_dev
    }

    /// The adapter's IFB device name (download shaping).
    pub fn ifb_dev(&self) -> &str {
        &self.ifb_dev
    }
}

/// `Some(code)` of an exit status (None when ended by a signal).
pub fn exit_code(status: &ExitStatus) -> Option<i32> {
    status.code()
}

/// The status names of a channel's history, oldest first.
pub fn history(ch: &ChannelInfo) -> Vec<ServiceStatus> {
    ch.history.iter().map(|h| h.status).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_counters_are_parsed() -> Result<()> {
        let c = parse_final_counters("abc 100 200\n\nxyz 1 2\n")?;
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].common_name, "abc");
        assert_eq!(c[0].total(), 300);
        assert!(parse_final_counters("abc 1\n").is_err());
        assert!(parse_final_counters("abc x 2\n").is_err());
        Ok(())
    }

    #[test]
    fn tc_classes_are_parsed() {
        let out = "class htb 1:1 root rate 1Gbit ceil 1Gbit burst 1375b cburst 1375b \n\
                   class htb 1:2 parent 1:1 prio 0 rate 1Mbit ceil 8Mbit burst 1600b cburst 1600b \n\
                   class htb 1:3 parent 1:1 prio 0 rate 8Kbit ceil 4Mbit burst 1600b cburst 1600b \n";
        let c = parse_tc_classes(out);
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].id, "1:1");
        assert_eq!(c[0].parent, None);
        assert_eq!(c[1].parent.as_deref(), Some("1:1"));
        assert_eq!(c[1].rate_bps, 1_000_000);
        assert_eq!(c[1].ceil_bps, 8_000_000);
        assert_eq!(c[2].rate_bps, 8_000);
        assert!(parse_tc_classes("").is_empty());
        for (s, want) in [
            ("8Mbit", Some(8_000_000)),
            ("1.5Mbit", Some(1_500_000)),
            ("8000bit", Some(8000)),
            ("1Gbit", Some(1_000_000_000)),
            ("x", None),
            ("8Mbps", None),
        ] {
            assert_eq!(parse_tc_rate(s), want, "{s}");
        }
    }

    #[test]
    fn offering_input_has_the_terms() {
        let spec = OfferingSpec::new(42, "8", "4").with(serde_json::json!({"billingInterval": 5}));
        let v = spec.input();
        assert_eq!(v["maxUnits"], 42);
        assert_eq!(v["additionalParams"]["maxDownloadSpeed"], "8");
        assert_eq!(v["additionalParams"]["maxUploadSpeed"], "4");
        assert_eq!(v["billingInterval"], 5);
        assert_eq!(spec.full_deposit(), 42 * UNIT_PRICE_BASE);
    }
}
