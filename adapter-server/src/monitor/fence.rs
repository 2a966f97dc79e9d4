//! The kernel fence (nftables): a byte quota per client for what the core says is left of
//! its budget, and a drop of all its traffic the moment the monitor decides to cut it (before
//! `client-kill`). Everything lives in one table of our own (`inet adapter_server` by
//! default), created at start and removed on exit:
//!
//! ```text
//! table inet adapter_server {
//!   map v4 { type ipv4_addr : verdict }      # client VPN address → jump c<key>
//!   map v6 { type ipv6_addr : verdict }
//!   set over4 { type ipv4_addr . inet_service; flags dynamic }  # real address . port
//!   set over6 { type ipv6_addr . inet_service; flags dynamic }
//!   chain input   { type filter hook input priority -5;
//!                   ip saddr . th sport @over4 drop; ip6 saddr . th sport @over6 drop;
//!                   ip saddr vmap @v4; ip6 saddr vmap @v6 }
//!   chain output  { type filter hook output priority -5;  ip daddr vmap @v4; ip6 daddr vmap @v6 }
//!   chain forward { type filter hook forward priority -5; (saddr and daddr, v4 and v6) }
//!   quota q<key> { over N bytes }
//!   chain c<key> { quota name "q<key>" add @over4 { REAL . PORT } drop }  # blocked: { drop }
//! }
//! ```
//!
//! One quota per client is shared by its IPv4 and IPv6 addresses in both directions. Its
//! limit is the session's cumulative byte count the core last confirmed plus the budget the
//! core answered: the quota counts the tunnel's packets since the session started, which
//! OpenVPN counts (with its own overhead on top) in the same session, so the kernel never
//! stops a client before the core's limit.
//!
//! When the quota runs out, the packet that crossed it also puts the client's real address
//! and port (its OpenVPN link) into `over4`/`over6`, and from then on the packets it sends
//! on its link are dropped before OpenVPN reads them. Without this the packets a fast sender still has in
//! flight would reach OpenVPN, be counted (and charged) there, and only then be dropped at
//! the tunnel. A block (the cut) does the same at once.
//!
//! The task runs `nft -f -` scripts in the order the actor sends them, so the actor never
//! waits for `nft`; a block reports back when it is in place so the kill follows it.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tc_shaper::ClientAddrs;
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn, Instrument};

/// How long one `nft` run may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// A client's addresses as the fence sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FenceAddrs {
    /// Its VPN addresses (the tunnel's packets).
    pub tun: ClientAddrs,
    /// Its real address and port (OpenVPN's link packets), when known.
    pub link: Option<SocketAddr>,
}

/// Settings of the fence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FenceConfig {
    /// The `nft` program.
    pub nft: std::path::PathBuf,
    /// Name of our table (family `inet`).
    pub table: String,
    /// Network namespace to run `nft` in (`ip netns exec NETNS nft …`).
    pub netns: Option<String>,
}

impl Default for FenceConfig {
    fn default() -> Self {
        Self {
            nft: "nft".into(),
            table: "adapter_server".into(),
            netns: None,
        }
    }
}

/// A failed `nft` run (its stderr kept).
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    #[error("running {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error("nft timed out after {0:?}")]
    Timeout(Duration),
    #[error("nft failed ({status}): {stderr}")]
    Failed { status: String, stderr: String },
}

/// The nft scripts (pure: unit-tested without running anything).
#[derive(Debug, Clone)]
pub struct Scripts {
    table: String,
}

impl Scripts {
    pub fn new(table: &str) -> Self {
        Self {
            table: table.to_string(),
        }
    }

    fn t(&self) -> String {
        format!("inet {}", self.table)
    }

    /// Creates the table afresh (an old one of a previous run is removed first).
    pub fn setup(&self) -> String {
        let t = self.t();
        let mut s = String::new();
        let _ = writeln!(s, "add table {t}");
        let _ = writeln!(s, "delete table {t}");
        let _ = writeln!(s, "add table {t}");
        let _ = writeln!(s, "add map {t} v4 {{ type ipv4_addr : verdict; }}");
        let _ = writeln!(s, "add map {t} v6 {{ type ipv6_addr : verdict; }}");
        for (set, ty) in [("over4", "ipv4_addr"), ("over6", "ipv6_addr")] {
            let _ = writeln!(
                s,
                "add set {t} {set} {{ type {ty} . inet_service; flags dynamic; }}"
            );
        }
        for (chain, hook, dirs) in [
            ("input", "input", &["saddr"][..]),
            ("output", "output", &["daddr"][..]),
            ("forward", "forward", &["saddr", "daddr"][..]),
        ] {
            let _ = writeln!(
                s,
                "add chain {t} {chain} {{ type filter hook {hook} priority -5; policy accept; }}"
            );
            // What a client over its quota or cut still sends on its link (OpenVPN's own
            // packets). Only inbound: what OpenVPN sends is counted from the tunnel, which
            // the client's chain drops, and the `client-kill` message must still go out.
            if chain == "input" {
                let _ = writeln!(s, "add rule {t} input ip saddr . th sport @over4 drop");
                let _ = writeln!(s, "add rule {t} input ip6 saddr . th sport @over6 drop");
            }
            for dir in dirs {
                let _ = writeln!(s, "add rule {t} {chain} ip {dir} vmap @v4");
                let _ = writeln!(s, "add rule {t} {chain} ip6 {dir} vmap @v6");
            }
        }
        s
    }

    /// Removes the table.
    pub fn teardown(&self) -> String {
        let t = self.t();
        format!("add table {t}\ndelete table {t}\n")
    }

    /// Sets client `key`'s quota to `limit` bytes (creating its quota, chain and address
    /// entries when `install`; the quota keeps what it counted when only its limit changes).
    pub fn quota(&self, key: u64, addrs: &FenceAddrs, limit: u64, install: bool) -> String {
        let t = self.t();
        let mut s = format!("add quota {t} q{key} {{ over {limit} bytes }}\n");
        if install {
            let over = match link_element(addrs.link) {
                Some((set, elem)) => format!("add @{set} {{ {elem} }} "),
                None => String::new(),
            };
            let _ = writeln!(s, "add chain {t} c{key}");
            let _ = writeln!(s, "flush chain {t} c{key}");
            let _ = writeln!(s, "add rule {t} c{key} quota name \"q{key}\" {over}drop");
            s.push_str(&self.elements("add", key, &addrs.tun));
        }
        s
    }

    /// Drops every packet of client `key`, tunnel and link (creating its chain and entries
    /// if needed).
    pub fn block(&self, key: u64, addrs: &FenceAddrs, installed: bool) -> String {
        let t = self.t();
        let mut s = String::new();
        let _ = writeln!(s, "add chain {t} c{key}");
        let _ = writeln!(s, "flush chain {t} c{key}");
        let _ = writeln!(s, "add rule {t} c{key} drop");
        if !installed {
            s.push_str(&self.elements("add", key, &addrs.tun));
        }
        if let Some((set, elem)) = link_element(addrs.link) {
            let _ = writeln!(s, "add element {t} {set} {{ {elem} }}");
        }
        s
    }

    /// Removes everything of client `key`.
    pub fn remove(&self, key: u64, addrs: &FenceAddrs, has_quota: bool) -> String {
        let t = self.t();
        let mut s = self.elements("delete", key, &addrs.tun);
        let _ = writeln!(s, "flush chain {t} c{key}");
        let _ = writeln!(s, "delete chain {t} c{key}");
        if has_quota {
            let _ = writeln!(s, "delete quota {t} q{key}");
        }
        if let Some((set, elem)) = link_element(addrs.link) {
            // Added first: the quota may or may not have put it there.
            let _ = writeln!(s, "add element {t} {set} {{ {elem} }}");
            let _ = writeln!(s, "delete element {t} {set} {{ {elem} }}");
        }
        s
    }

    fn elements(&self, verb: &str, key: u64, addrs: &ClientAddrs) -> String {
        let t = self.t();
        let value = |v: &str| {
            if verb == "add" {
                format!("{v} : jump c{key}")
            } else {
                v.to_string()
            }
        };
        let mut s = format!(
            "{verb} element {t} v4 {{ {} }}\n",
            value(&addrs.v4.to_string())
        );
        if let Some(v6) = addrs.v6 {
            let _ = writeln!(s, "{verb} element {t} v6 {{ {} }}", value(&v6.to_string()));
        }
        s
    }
}

/// The set and element (`ADDR . PORT`) of a real address; an IPv4-mapped IPv6 address
/// (a dual-stack `udp6` socket) is the IPv4 address it carries on the wire.
fn link_element(link: Option<SocketAddr>) -> Option<(&'static str, String)> {
    let link = link?;
    Some(match link.ip() {
        IpAddr::V4(a) => ("over4", format!("{a} . {}", link.port())),
        IpAddr::V6(a) => match a.to_ipv4_mapped() {
            Some(a) => ("over4", format!("{a} . {}", link.port())),
            None => ("over6", format!("{a} . {}", link.port())),
        },
    })
}

/// Runs one script with `nft -f -`.
async fn run_nft(cfg: &FenceConfig, script: &str) -> Result<(), FenceError> {
    let program = cfg.nft.display().to_string();
    let spawn_err = |source| FenceError::Spawn {
        program: program.clone(),
        source,
    };
    let mut cmd = match &cfg.netns {
        Some(ns) => {
            let mut c = tokio::process::Command::new("ip");
            c.args(["netns", "exec", ns]).arg(&cfg.nft);
            c
        }
        None => tokio::process::Command::new(&cfg.nft),
    };
    let mut child = cmd
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn_err)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(spawn_err)?;
    }
    let out = tokio::time::timeout(NFT_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| FenceError::Timeout(NFT_TIMEOUT))?
        .map_err(spawn_err)?;
    if out.status.success() {
        Ok(())
    } else {
        Err(FenceError::Failed {
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

enum FenceOp {
    Setup,
    Quota {
        key: u64,
        addrs: FenceAddrs,
        limit: u64,
    },
    Block {
        key: u64,
        addrs: FenceAddrs,
        done: oneshot::Sender<bool>,
    },
    Remove {
        key: u64,
    },
    Teardown(oneshot::Sender<()>),
}

/// What is installed for one client.
struct Installed {
    addrs: FenceAddrs,
    has_quota: bool,
    blocked: bool,
}

/// The actor's handle on the fence task.
pub struct FenceHandle(mpsc::UnboundedSender<FenceOp>);

impl FenceHandle {
    pub fn spawn(cfg: FenceConfig) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(fence_task(cfg, rx).in_current_span());
        Self(tx)
    }

    /// (Re)creates the table; every client entry is forgotten.
    pub fn setup(&self) {
        let _ = self.0.send(FenceOp::Setup);
    }

    /// Client `key` may pass `limit` bytes (tunnel packets, both directions, all its
    /// addresses) since its session started.
    pub fn quota(&self, key: u64, addrs: FenceAddrs, limit: u64) {
        let _ = self.0.send(FenceOp::Quota { key, addrs, limit });
    }

    /// Drops all traffic of client `key`; the answer (true: in place) comes once `nft` ran.
    pub fn block(&self, key: u64, addrs: FenceAddrs) -> oneshot::Receiver<bool> {
        let (done, rx) = oneshot::channel();
        let _ = self.0.send(FenceOp::Block { key, addrs, done });
        rx
    }

    /// Removes client `key`'s quota and block.
    pub fn remove(&self, key: u64) {
        let _ = self.0.send(FenceOp::Remove { key });
    }

    /// Removes the table and waits (bounded) until it is done.
    pub async fn teardown(self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.0.send(FenceOp::Teardown(done_tx)).is_ok() {
            let _ = tokio::time::timeout(NFT_TIMEOUT * 2, done_rx).await;
        }
    }
}

/// Which installed key holds an address (a departed client's address may be given to a new
/// one before the departed one is removed).
fn owner_of(installed: &HashMap<u64, Installed>, v4: Ipv4Addr, v6: Option<Ipv6Addr>) -> Vec<u64> {
    installed
        .iter()
        .filter(|(_, i)| i.addrs.tun.v4 == v4 || (v6.is_some() && i.addrs.tun.v6 == v6))
        .map(|(k, _)| *k)
        .collect()
}

async fn fence_task(cfg: FenceConfig, mut rx: mpsc::UnboundedReceiver<FenceOp>) {
    let scripts = Scripts::new(&cfg.table);
    let mut installed: HashMap<u64, Installed> = HashMap::new();
    let mut ready = false;
    while let Some(op) = rx.recv().await {
        match op {
            FenceOp::Setup => {
                installed.clear();
                match run_nft(&cfg, &scripts.setup()).await {
                    Ok(()) => {
                        ready = true;
                        info!(table = %cfg.table, "nftables fence set up");
                    }
                    Err(e) => {
                        ready = false;
                        error!(table = %cfg.table, "nftables fence setup failed (no byte quotas, no drop before kill): {e:#}");
                    }
                }
            }
            FenceOp::Quota { key, addrs, limit } => {
                if !ready {
                    continue;
                }
                let fresh = match installed.get(&key) {
                    Some(i) if i.blocked => continue,
                    Some(i) => i.addrs != addrs,
                    None => true,
                };
                let mut script = String::new();
                if fresh {
                    for other in owner_of(&installed, addrs.tun.v4, addrs.tun.v6) {
                        if let Some(o) = installed.remove(&other) {
                            script.push_str(&scripts.remove(other, &o.addrs, o.has_quota));
                        }
                    }
                }
                script.push_str(&scripts.quota(key, &addrs, limit, fresh));
                match run_nft(&cfg, &script).await {
                    Ok(()) => {
                        info!(addr = %addrs.tun.v4, addr6 = ?addrs.tun.v6, link = ?addrs.link, limit, "client byte quota set");
                        installed.insert(
                            key,
                            Installed {
                                addrs,
                                has_quota: true,
                                blocked: false,
                            },
                        );
                    }
                    Err(e) => {
                        warn!(addr = %addrs.tun.v4, "setting the client's byte quota failed: {e:#}")
                    }
                }
            }
            FenceOp::Block { key, addrs, done } => {
                if !ready {
                    let _ = done.send(false);
                    continue;
                }
                let (has_quota, same) = installed
                    .get(&key)
                    .map_or((false, false), |i| (i.has_quota, i.addrs == addrs));
                let mut script = String::new();
                if !same {
                    if let Some(o) = installed.remove(&key) {
                        script.push_str(&scripts.remove(key, &o.addrs, false));
                    }
                    for other in owner_of(&installed, addrs.tun.v4, addrs.tun.v6) {
                        if let Some(o) = installed.remove(&other) {
                            script.push_str(&scripts.remove(other, &o.addrs, o.has_quota));
                        }
                    }
                }
                script.push_str(&scripts.block(key, &addrs, same));
                let ok = match run_nft(&cfg, &script).await {
                    Ok(()) => {
                        info!(addr = %addrs.tun.v4, addr6 = ?addrs.tun.v6, link = ?addrs.link, "client traffic dropped");
                        installed.insert(
                            key,
                            Installed {
                                addrs,
                                has_quota,
                                blocked: true,
                            },
                        );
                        true
                    }
                    Err(e) => {
                        warn!(addr = %addrs.tun.v4, "dropping the client's traffic failed: {e:#}");
                        false
                    }
                };
                let _ = done.send(ok);
            }
            FenceOp::Remove { key } => {
                let Some(i) = installed.remove(&key) else {
                    continue;
                };
                match run_nft(&cfg, &scripts.remove(key, &i.addrs, i.has_quota)).await {
                    Ok(()) => info!(addr = %i.addrs.tun.v4, "client fence removed"),
                    Err(e) => {
                        warn!(addr = %i.addrs.tun.v4, "removing the client's fence failed: {e:#}")
                    }
                }
            }
            FenceOp::Teardown(done) => {
                if ready {
                    match run_nft(&cfg, &scripts.teardown()).await {
                        Ok(()) => info!(table = %cfg.table, "nftables fence removed"),
                        Err(e) => warn!("removing the nftables fence failed: {e:#}"),
                    }
                }
                ready = false;
                installed.clear();
                let _ = done.send(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(v6: bool) -> FenceAddrs {
        FenceAddrs {
            tun: ClientAddrs {
                v4: Ipv4Addr::new(10, 8, 0, 6),
                v6: v6.then(|| "fd00:8::1000".parse().expect("v6")),
            },
            link: None,
        }
    }

    fn linked(link: &str) -> FenceAddrs {
        FenceAddrs {
            link: Some(link.parse().expect("link")),
            ..addrs(false)
        }
    }

    #[test]
    fn setup_hooks_both_families_and_directions() {
        let s = Scripts::new("adapter_server").setup();
        assert!(s.starts_with("add table inet adapter_server\ndelete table inet adapter_server\n"));
        for line in [
            "add map inet adapter_server v4 { type ipv4_addr : verdict; }",
            "add map inet adapter_server v6 { type ipv6_addr : verdict; }",
            "add rule inet adapter_server input ip saddr vmap @v4",
            "add rule inet adapter_server input ip6 saddr vmap @v6",
            "add rule inet adapter_server output ip daddr vmap @v4",
            "add rule inet adapter_server output ip6 daddr vmap @v6",
            "add rule inet adapter_server forward ip saddr vmap @v4",
            "add rule inet adapter_server forward ip daddr vmap @v4",
            "add rule inet adapter_server forward ip6 saddr vmap @v6",
            "add rule inet adapter_server forward ip6 daddr vmap @v6",
            "add set inet adapter_server over4 { type ipv4_addr . inet_service; flags dynamic; }",
            "add set inet adapter_server over6 { type ipv6_addr . inet_service; flags dynamic; }",
            "add rule inet adapter_server input ip saddr . th sport @over4 drop",
            "add rule inet adapter_server input ip6 saddr . th sport @over6 drop",
        ] {
            assert!(s.lines().any(|l| l == line), "missing {line:?} in\n{s}");
        }
        assert!(!s.contains(" fwd "), "fwd is an nft keyword");
        // The link drop comes before the jump to the client's chain.
        let pos = |l: &str| s.lines().position(|x| x == l).expect(l);
        assert!(
            pos("add rule inet adapter_server input ip saddr . th sport @over4 drop")
                < pos("add rule inet adapter_server input ip saddr vmap @v4")
        );
        // Outbound link packets pass: the kill message must reach the client.
        assert!(!s.contains("th dport"), "{s}");
    }

    #[test]
    fn quota_installs_once_then_only_moves_the_limit() {
        let sc = Scripts::new("t");
        let first = sc.quota(3, &addrs(true), 20_000_000, true);
        assert_eq!(
            first,
            "add quota inet t q3 { over 20000000 bytes }\n\
             add chain inet t c3\n\
             flush chain inet t c3\n\
             add rule inet t c3 quota name \"q3\" drop\n\
             add element inet t v4 { 10.8.0.6 : jump c3 }\n\
             add element inet t v6 { fd00:8::1000 : jump c3 }\n"
        );
        assert_eq!(
            sc.quota(3, &addrs(false), 5, false),
            "add quota inet t q3 { over 5 bytes }\n"
        );
    }

    #[test]
    fn the_quota_puts_the_real_address_into_the_link_drop_set() {
        let sc = Scripts::new("t");
        assert!(sc.quota(3, &linked("192.0.2.7:50123"), 9, true).contains(
            "add rule inet t c3 quota name \"q3\" add @over4 { 192.0.2.7 . 50123 } drop\n"
        ));
        assert!(sc
            .quota(3, &linked("[2001:db8::7]:1194"), 9, true)
            .contains("add @over6 { 2001:db8::7 . 1194 } drop\n"));
        // A dual-stack socket's IPv4-mapped address is IPv4 on the wire.
        assert!(sc
            .quota(3, &linked("[::ffff:192.0.2.7]:5"), 9, true)
            .contains("add @over4 { 192.0.2.7 . 5 } drop\n"));
        let blocked = sc.block(3, &linked("192.0.2.7:50123"), true);
        assert!(blocked.ends_with("add element inet t over4 { 192.0.2.7 . 50123 }\n"));
        assert!(sc.remove(3, &linked("192.0.2.7:50123"), true).ends_with(
            "add element inet t over4 { 192.0.2.7 . 50123 }\n\
             delete element inet t over4 { 192.0.2.7 . 50123 }\n"
        ));
    }

    #[test]
    fn block_replaces_the_quota_rule_and_remove_takes_everything() {
        let sc = Scripts::new("t");
        assert_eq!(
            sc.block(4, &addrs(false), true),
            "add chain inet t c4\nflush chain inet t c4\nadd rule inet t c4 drop\n"
        );
        assert!(sc
            .block(4, &addrs(true), false)
            .ends_with("add element inet t v6 { fd00:8::1000 : jump c4 }\n"));
        assert_eq!(
            sc.remove(4, &addrs(true), true),
            "delete element inet t v4 { 10.8.0.6 }\n\
             delete element inet t v6 { fd00:8::1000 }\n\
             flush chain inet t c4\n\
             delete chain inet t c4\n\
             delete quota inet t q4\n"
        );
        assert_eq!(sc.teardown(), "add table inet t\ndelete table inet t\n");
    }
}
