//! Per-client speed limits with `tc` on the server's tun device.
//!
//! Layout (identical on the tun egress for download and on the IFB for upload):
//!
//! ```text
//! qdisc htb 1: default 0           unclassified traffic is not shaped
//!   class 1:1 rate=ceil=LINK       parent, so client classes can borrow up to their ceil
//!     class 1:<slot+2> rate=MIN ceil=MAX      one per shaped client and direction
//! filter parent 1: prio 1 u32 hash table 2: (divisor 256), linked from 800:: keyed on the
//!   last octet of the ip dst (tun egress, offset 16) / ip src (IFB, offset 12)
//!   filter handle 2:<octet>:<slot+1> match ip dst|src ADDR/32 flowid 1:<slot+2>
//! ```
//!
//! Upload: ingress qdisc `ffff:` on the tun with a u32 match-all filter whose action
//! `mirred egress redirect` sends every packet to the IFB. When a client has no minimum,
//! its class rate (guarantee) is 1/1000 of its maximum, at least 8 kbit.

use std::net::Ipv4Addr;
use std::process::Output;

use service_api::SpeedLimits;
use tracing::{debug, warn};

/// Largest slot count (u32 item handles are 12 bits, minus the reserved 0).
pub const MAX_SLOTS: u32 = 4094;
/// Smallest rate given to tc (bits/s).
pub const MIN_RATE_BPS: u64 = 8_000;

/// Errors of shaping.
#[derive(Debug, thiserror::Error)]
pub enum ShapingError {
    #[error("invalid rate {0:?}: expected e.g. 1gbit, 100mbit, 512kbit, 1000000bit")]
    BadRate(String),
    #[error("device name {0:?} invalid (1..=15 chars of [A-Za-z0-9_.-])")]
    BadDevice(String),
    #[error("running {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{cmd} failed ({status}): {stderr}")]
    Failed {
        cmd: String,
        status: String,
        stderr: String,
    },
    #[error("all {0} shaping slots are in use (raise --max-clients)")]
    NoSlot(u32),
}

/// Parses a tc-style rate: `<n>[bit|kbit|mbit|gbit]` (SI, as tc uses) into bits/s.
pub fn parse_rate(s: &str) -> Result<u64, ShapingError> {
    let bad = || ShapingError::BadRate(s.chars().take(32).collect());
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (n, unit) = lower.split_at(digits_end);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let mul: u64 = match unit {
        "" | "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        _ => return Err(bad()),
    };
    let v = n.checked_mul(mul).ok_or_else(bad)?;
    if v == 0 {
        return Err(bad());
    }
    Ok(v)
}

/// Checks a network device name (IFNAMSIZ - 1 = 15).
pub fn check_dev(name: &str) -> Result<(), ShapingError> {
    if name.is_empty()
        || name.len() > 15
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(ShapingError::BadDevice(name.to_string()));
    }
    Ok(())
}

/// Default IFB name for a tun device: `ifb-<tun>`, cut to 15 characters.
pub fn default_ifb(tun: &str) -> String {
    let mut n = format!("ifb-{tun}");
    n.truncate(15);
    n
}

/// An external command (program + argument list), built without running anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcCommand {
    pub program: &'static str,
    pub args: Vec<String>,
}

impl std::fmt::Display for TcCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.program, self.args.join(" "))
    }
}

fn v(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// Which side a tree lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// tun egress: traffic to the client, matched on `ip dst`.
    Download,
    /// IFB (fed from tun ingress): traffic from the client, matched on `ip src`.
    Upload,
}

impl Direction {
    fn match_kw(self) -> &'static str {
        match self {
            Self::Download => "dst",
            Self::Upload => "src",
        }
    }
    fn hash_offset(self) -> &'static str {
        match self {
            Self::Download => "16",
            Self::Upload => "12",
        }
    }
}

/// Class minor (hex in tc syntax) of a slot.
pub fn class_minor(slot: u32) -> u32 {
    slot + 2
}

/// u32 item handle of a slot (nonzero, ≤ 0xfff).
pub fn filter_item(slot: u32) -> u32 {
    slot + 1
}

impl TcCommand {
    /// Runs the command in a network namespace (`ip -n NS ...`, `tc -n NS ...`).
    pub fn in_netns(mut self, netns: Option<&str>) -> Self {
        if let Some(ns) = netns {
            self.args.splice(0..0, ["-n".to_string(), ns.to_string()]);
        }
        self
    }

    fn tc(args: Vec<String>) -> Self {
        Self {
            program: "tc",
            args,
        }
    }
    fn ip(args: Vec<String>) -> Self {
        Self {
            program: "ip",
            args,
        }
    }

    pub fn ifb_add(ifb: &str) -> Self {
        Self::ip(v(&["link", "add", "name", ifb, "type", "ifb"]))
    }
    pub fn ifb_up(ifb: &str) -> Self {
        Self::ip(v(&["link", "set", "dev", ifb, "up"]))
    }
    pub fn ifb_del(ifb: &str) -> Self {
        Self::ip(v(&["link", "del", "dev", ifb]))
    }
    pub fn root_del(dev: &str) -> Self {
        Self::tc(v(&["qdisc", "del", "dev", dev, "root"]))
    }
    pub fn ingress_del(dev: &str) -> Self {
        Self::tc(v(&["qdisc", "del", "dev", dev, "ingress"]))
    }
    pub fn ingress_add(dev: &str) -> Self {
        Self::tc(v(&[
            "qdisc", "add", "dev", dev, "handle", "ffff:", "ingress",
        ]))
    }
    /// Match-all redirect of the tun ingress to the IFB.
    pub fn ingress_redirect(dev: &str, ifb: &str) -> Self {
        Self::tc(v(&[
            "filter", "add", "dev", dev, "parent", "ffff:", "protocol", "all", "prio", "1", "u32",
            "match", "u32", "0", "0", "action", "mirred", "egress", "redirect", "dev", ifb,
        ]))
    }
    pub fn htb_root(dev: &str) -> Self {
        Self::tc(v(&[
            "qdisc", "add", "dev", dev, "root", "handle", "1:", "htb", "default", "0",
        ]))
    }
    pub fn parent_class(dev: &str, link_bps: u64) -> Self {
        let r = format!("{link_bps}bit");
        Self::tc(v(&[
            "class", "add", "dev", dev, "parent", "1:", "classid", "1:1", "htb", "rate", &r,
            "ceil", &r,
        ]))
    }
    /// The 256-bucket hash table `2:`.
    pub fn hash_table(dev: &str) -> Self {
        Self::tc(v(&[
            "filter", "add", "dev", dev, "parent", "1:", "prio", "1", "handle", "2:", "protocol",
            "ip", "u32", "divisor", "256",
        ]))
    }
    /// Link from the root table 800:: to table 2:, hashing the last octet of dst/src.
    pub fn hash_link(dev: &str, dir: Direction) -> Self {
        Self::tc(v(&[
            "filter",
            "add",
            "dev",
            dev,
            "parent",
            "1:",
            "prio",
            "1",
            "protocol",
            "ip",
            "u32",
            "ht",
            "800::",
            "match",
            "u32",
            "0",
            "0",
            "hashkey",
            "mask",
            "0x000000ff",
            "at",
            dir.hash_offset(),
            "link",
            "2:",
        ]))
    }
    pub fn client_class(dev: &str, slot: u32, rate_bps: u64, ceil_bps: u64) -> Self {
        Self::tc(v(&[
            "class",
            "add",
            "dev",
            dev,
            "parent",
            "1:1",
            "classid",
            &format!("1:{:x}", class_minor(slot)),
            "htb",
            "rate",
            &format!("{rate_bps}bit"),
            "ceil",
            &format!("{ceil_bps}bit"),
            "quantum",
            "1514",
        ]))
    }
    pub fn client_class_del(dev: &str, slot: u32) -> Self {
        Self::tc(v(&[
            "class",
            "del",
            "dev",
            dev,
            "classid",
            &format!("1:{:x}", class_minor(slot)),
        ]))
    }
    fn filter_handle(addr: Ipv4Addr, slot: u32) -> String {
        format!("2:{:x}:{:x}", addr.octets()[3], filter_item(slot))
    }
    pub fn client_filter(dev: &str, dir: Direction, addr: Ipv4Addr, slot: u32) -> Self {
        Self::tc(v(&[
            "filter",
            "add",
            "dev",
            dev,
            "parent",
            "1:",
            "prio",
            "1",
            "handle",
            &Self::filter_handle(addr, slot),
            "protocol",
            "ip",
            "u32",
            "ht",
            &format!("2:{:x}:", addr.octets()[3]),
            "match",
            "ip",
            dir.match_kw(),
            &format!("{addr}/32"),
            "flowid",
            &format!("1:{:x}", class_minor(slot)),
        ]))
    }
    pub fn client_filter_del(dev: &str, addr: Ipv4Addr, slot: u32) -> Self {
        Self::tc(v(&[
            "filter",
            "del",
            "dev",
            dev,
            "parent",
            "1:",
            "prio",
            "1",
            "handle",
            &Self::filter_handle(addr, slot),
            "protocol",
            "ip",
            "u32",
        ]))
    }
}

/// Hands out slot numbers `0..capacity`; released slots are reused (lowest first).
#[derive(Debug, Clone)]
pub struct SlotAllocator {
    capacity: u32,
    next: u32,
    free: std::collections::BTreeSet<u32>,
}

impl SlotAllocator {
    pub fn new(capacity: u32) -> Self {
        Self {
            capacity: capacity.min(MAX_SLOTS),
            next: 0,
            free: Default::default(),
        }
    }
    pub fn alloc(&mut self) -> Option<u32> {
        if let Some(s) = self.free.pop_first() {
            return Some(s);
        }
        if self.next < self.capacity {
            self.next += 1;
            return Some(self.next - 1);
        }
        None
    }
    /// Returns false when the slot was not allocated (double release).
    pub fn release(&mut self, slot: u32) -> bool {
        if slot >= self.next || self.free.contains(&slot) {
            return false;
        }
        self.free.insert(slot);
        true
    }
    pub fn in_use(&self) -> u32 {
        self.next - self.free.len() as u32
    }
}

/// Rate (guarantee) and ceil (maximum) of one direction, or None when unlimited.
pub fn class_rates(min: Option<u64>, max: Option<u64>, link_bps: u64) -> Option<(u64, u64)> {
    match (min, max) {
        (None, None) => None,
        (min, max) => {
            let ceil = max.unwrap_or(link_bps).min(link_bps).max(MIN_RATE_BPS);
            let rate = min.unwrap_or(ceil / 1000).clamp(MIN_RATE_BPS, ceil);
            Some((rate, ceil))
        }
    }
}

/// Static settings of the shaper.
#[derive(Debug, Clone)]
pub struct ShapingConfig {
    pub tun: String,
    pub ifb: String,
    pub link_bps: u64,
    pub max_clients: u32,
    /// Network namespace of the tun device (None = our own).
    pub netns: Option<String>,
}

/// The commands that (re)create the whole setup; the first ones remove leftovers and may
/// fail harmlessly (see [`setup_cleanup_commands`]).
pub fn setup_commands(c: &ShapingConfig) -> Vec<TcCommand> {
    let mut out = vec![
        TcCommand::ifb_add(&c.ifb),
        TcCommand::ifb_up(&c.ifb),
        TcCommand::ingress_add(&c.tun),
        TcCommand::ingress_redirect(&c.tun, &c.ifb),
    ];
    for (dev, dir) in [(&c.tun, Direction::Download), (&c.ifb, Direction::Upload)] {
        out.push(TcCommand::htb_root(dev));
        out.push(TcCommand::parent_class(dev, c.link_bps));
        out.push(TcCommand::hash_table(dev));
        out.push(TcCommand::hash_link(dev, dir));
    }
    out
}

/// Removal of everything this module creates (errors ignored: parts may be absent).
pub fn setup_cleanup_commands(c: &ShapingConfig) -> Vec<TcCommand> {
    vec![
        TcCommand::root_del(&c.tun),
        TcCommand::ingress_del(&c.tun),
        TcCommand::ifb_del(&c.ifb),
    ]
}

/// What is installed for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientShape {
    pub slot: u32,
    pub addr: Ipv4Addr,
    pub download: bool,
    pub upload: bool,
}

/// Commands that install a client's classes and filters.
pub fn client_add_commands(
    c: &ShapingConfig,
    slot: u32,
    addr: Ipv4Addr,
    speed: &SpeedLimits,
) -> (Vec<TcCommand>, ClientShape) {
    let mut cmds = Vec::new();
    let mut shape = ClientShape {
        slot,
        addr,
        download: false,
        upload: false,
    };
    if let Some((rate, ceil)) =
        class_rates(speed.min_download_bps, speed.max_download_bps, c.link_bps)
    {
        cmds.push(TcCommand::client_class(&c.tun, slot, rate, ceil));
        cmds.push(TcCommand::client_filter(
            &c.tun,
            Direction::Download,
            addr,
            slot,
        ));
        shape.download = true;
    }
    if let Some((rate, ceil)) = class_rates(speed.min_upload_bps, speed.max_upload_bps, c.link_bps)
    {
        cmds.push(TcCommand::client_class(&c.ifb, slot, rate, ceil));
        cmds.push(TcCommand::client_filter(
            &c.ifb,
            Direction::Upload,
            addr,
            slot,
        ));
        shape.upload = true;
    }
    (cmds, shape)
}

/// Commands that remove exactly what [`client_add_commands`] installed (filters first).
pub fn client_remove_commands(c: &ShapingConfig, s: &ClientShape) -> Vec<TcCommand> {
    let mut cmds = Vec::new();
    if s.download {
        cmds.push(TcCommand::client_filter_del(&c.tun, s.addr, s.slot));
        cmds.push(TcCommand::client_class_del(&c.tun, s.slot));
    }
    if s.upload {
        cmds.push(TcCommand::client_filter_del(&c.ifb, s.addr, s.slot));
        cmds.push(TcCommand::client_class_del(&c.ifb, s.slot));
    }
    cmds
}

/// Runs one command, keeping stderr in the error.
pub async fn run_command(cmd: &TcCommand) -> Result<(), ShapingError> {
    debug!(%cmd, "running");
    let out: Output = tokio::process::Command::new(cmd.program)
        .args(&cmd.args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| ShapingError::Spawn {
            cmd: cmd.to_string(),
            source: e,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(ShapingError::Failed {
            cmd: cmd.to_string(),
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr)
                .trim()
                .chars()
                .take(512)
                .collect(),
        })
    }
}

/// Owns the tc state: the allocator and what is installed per client key.
#[derive(Debug)]
pub struct Shaper {
    cfg: ShapingConfig,
    slots: SlotAllocator,
    clients: std::collections::HashMap<u64, ClientShape>,
    ready: bool,
}

impl Shaper {
    async fn run(&self, cmd: TcCommand) -> Result<(), ShapingError> {
        run_command(&cmd.in_netns(self.cfg.netns.as_deref())).await
    }

    pub fn new(cfg: ShapingConfig) -> Self {
        let slots = SlotAllocator::new(cfg.max_clients);
        Self {
            cfg,
            slots,
            clients: Default::default(),
            ready: false,
        }
    }

    /// Removes leftovers and builds the trees. Forgets every client (callers re-apply).
    pub async fn setup(&mut self) -> Result<(), ShapingError> {
        for c in setup_cleanup_commands(&self.cfg) {
            let _ = self.run(c).await;
        }
        self.slots = SlotAllocator::new(self.cfg.max_clients);
        self.clients.clear();
        self.ready = false;
        for c in setup_commands(&self.cfg) {
            self.run(c).await?;
        }
        self.ready = true;
        Ok(())
    }

    /// Installs a client's limits (replacing what the same key had).
    pub async fn apply(
        &mut self,
        key: u64,
        addr: Ipv4Addr,
        speed: &SpeedLimits,
    ) -> Result<(), ShapingError> {
        self.remove(key).await;
        if !self.ready
            || class_rates(speed.min_download_bps, speed.max_download_bps, 1).is_none()
                && class_rates(speed.min_upload_bps, speed.max_upload_bps, 1).is_none()
        {
            return Ok(());
        }
        let slot = self
            .slots
            .alloc()
            .ok_or(ShapingError::NoSlot(self.cfg.max_clients))?;
        let (cmds, shape) = client_add_commands(&self.cfg, slot, addr, speed);
        for c in cmds {
            if let Err(e) = self.run(c).await {
                // Undo the part that was installed, then give the slot back.
                for r in client_remove_commands(&self.cfg, &shape) {
                    let _ = self.run(r).await;
                }
                self.slots.release(slot);
                return Err(e);
            }
        }
        self.clients.insert(key, shape);
        Ok(())
    }

    /// Removes a client's classes and filters; logs failures.
    pub async fn remove(&mut self, key: u64) {
        if let Some(shape) = self.clients.remove(&key) {
            for c in client_remove_commands(&self.cfg, &shape) {
                if let Err(e) = self.run(c).await {
                    warn!("removing shaping: {e:#}");
                }
            }
            self.slots.release(shape.slot);
        }
    }

    /// Removes the whole setup.
    pub async fn teardown(&mut self) {
        for c in setup_cleanup_commands(&self.cfg) {
            let _ = self.run(c).await;
        }
        self.clients.clear();
        self.slots = SlotAllocator::new(self.cfg.max_clients);
        self.ready = false;
    }

    pub fn installed(&self) -> usize {
        self.clients.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ShapingConfig {
        ShapingConfig {
            tun: "tun0".into(),
            ifb: "ifb-tun0".into(),
            link_bps: 1_000_000_000,
            max_clients: 10,
            netns: None,
        }
    }

    fn argv(c: &TcCommand) -> String {
        format!("{} {}", c.program, c.args.join(" "))
    }

    #[test]
    fn rates() {
        let ok = [
            ("1gbit", 1_000_000_000),
            ("100mbit", 100_000_000),
            ("512kbit", 512_000),
            ("1000bit", 1000),
            ("42", 42),
            ("10MBit", 10_000_000),
        ];
        for (s, want) in ok {
            assert_eq!(parse_rate(s).expect(s), want);
        }
        for s in [
            "",
            "0",
            "gbit",
            "1.5gbit",
            "1gbps",
            "-1bit",
            "99999999999999gbit",
        ] {
            assert!(parse_rate(s).is_err(), "{s:?}");
        }
    }

    #[test]
    fn devices() {
        assert!(check_dev("tun0").is_ok());
        assert!(check_dev("ifb-tun0").is_ok());
        for bad in ["", "a b", "sixteen-chars-xx", "tun0;rm"] {
            assert!(check_dev(bad).is_err(), "{bad:?}");
        }
        assert_eq!(default_ifb("tun0"), "ifb-tun0");
        assert_eq!(default_ifb("averylongtun123"), "ifb-averylongtu");
        assert!(check_dev(&default_ifb("averylongtun123")).is_ok());
    }

    #[test]
    fn setup_argv_exact() {
        let got: Vec<String> = setup_commands(&cfg()).iter().map(argv).collect();
        let want = [
            "ip link add name ifb-tun0 type ifb",
            "ip link set dev ifb-tun0 up",
            "tc qdisc add dev tun0 handle ffff: ingress",
            "tc filter add dev tun0 parent ffff: protocol all prio 1 u32 match u32 0 0 action mirred egress redirect dev ifb-tun0",
            "tc qdisc add dev tun0 root handle 1: htb default 0",
            "tc class add dev tun0 parent 1: classid 1:1 htb rate 1000000000bit ceil 1000000000bit",
            "tc filter add dev tun0 parent 1: prio 1 handle 2: protocol ip u32 divisor 256",
            "tc filter add dev tun0 parent 1: prio 1 protocol ip u32 ht 800:: match u32 0 0 hashkey mask 0x000000ff at 16 link 2:",
            "tc qdisc add dev ifb-tun0 root handle 1: htb default 0",
            "tc class add dev ifb-tun0 parent 1: classid 1:1 htb rate 1000000000bit ceil 1000000000bit",
            "tc filter add dev ifb-tun0 parent 1: prio 1 handle 2: protocol ip u32 divisor 256",
            "tc filter add dev ifb-tun0 parent 1: prio 1 protocol ip u32 ht 800:: match u32 0 0 hashkey mask 0x000000ff at 12 link 2:",
        ];
        assert_eq!(got, want);
        let clean: Vec<String> = setup_cleanup_commands(&cfg()).iter().map(argv).collect();
        assert_eq!(
            clean,
            [
                "tc qdisc del dev tun0 root",
                "tc qdisc del dev tun0 ingress",
                "ip link del dev ifb-tun0"
            ]
        );
    }

    #[test]
    fn client_argv_exact() {
        let speed = SpeedLimits {
            min_download_bps: Some(1_000_000),
            max_download_bps: Some(8_000_000),
            min_upload_bps: None,
            max_upload_bps: Some(4_000_000),
        };
        let addr = Ipv4Addr::new(10, 8, 0, 254);
        let (cmds, shape) = client_add_commands(&cfg(), 13, addr, &speed);
        let got: Vec<String> = cmds.iter().map(argv).collect();
        let want = [
            "tc class add dev tun0 parent 1:1 classid 1:f htb rate 1000000bit ceil 8000000bit quantum 1514",
            "tc filter add dev tun0 parent 1: prio 1 handle 2:fe:e protocol ip u32 ht 2:fe: match ip dst 10.8.0.254/32 flowid 1:f",
            "tc class add dev ifb-tun0 parent 1:1 classid 1:f htb rate 8000bit ceil 4000000bit quantum 1514",
            "tc filter add dev ifb-tun0 parent 1: prio 1 handle 2:fe:e protocol ip u32 ht 2:fe: match ip src 10.8.0.254/32 flowid 1:f",
        ];
        assert_eq!(got, want);
        let rm: Vec<String> = client_remove_commands(&cfg(), &shape)
            .iter()
            .map(argv)
            .collect();
        let want_rm = [
            "tc filter del dev tun0 parent 1: prio 1 handle 2:fe:e protocol ip u32",
            "tc class del dev tun0 classid 1:f",
            "tc filter del dev ifb-tun0 parent 1: prio 1 handle 2:fe:e protocol ip u32",
            "tc class del dev ifb-tun0 classid 1:f",
        ];
        assert_eq!(rm, want_rm);
        assert_eq!(
            argv(&TcCommand::client_class_del("tun0", 0).in_netns(Some("ns1"))),
            "tc -n ns1 class del dev tun0 classid 1:2"
        );
        assert_eq!(
            argv(&TcCommand::ifb_add("ifb0").in_netns(Some("ns1"))),
            "ip -n ns1 link add name ifb0 type ifb"
        );
        assert_eq!(
            argv(&TcCommand::ifb_add("ifb0").in_netns(None)),
            "ip link add name ifb0 type ifb"
        );

        // Download only: nothing on the IFB; unlimited: nothing at all.
        let dl_only = SpeedLimits {
            max_download_bps: Some(2_000_000),
            ..Default::default()
        };
        let (cmds, shape) = client_add_commands(&cfg(), 0, Ipv4Addr::new(10, 8, 0, 2), &dl_only);
        assert_eq!(cmds.len(), 2);
        assert!(shape.download && !shape.upload);
        assert_eq!(client_remove_commands(&cfg(), &shape).len(), 2);
        let (cmds, _) = client_add_commands(
            &cfg(),
            0,
            Ipv4Addr::new(10, 8, 0, 2),
            &SpeedLimits::default(),
        );
        assert!(cmds.is_empty());
    }

    #[test]
    fn class_rate_rules() {
        let link = 1_000_000_000;
        assert_eq!(class_rates(None, None, link), None);
        assert_eq!(
            class_rates(Some(1_000_000), Some(8_000_000), link),
            Some((1_000_000, 8_000_000))
        );
        assert_eq!(
            class_rates(None, Some(8_000_000), link),
            Some((8_000, 8_000_000))
        );
        assert_eq!(
            class_rates(None, Some(100_000_000), link),
            Some((100_000, 100_000_000))
        );
        // min only: ceil = link capacity
        assert_eq!(
            class_rates(Some(5_000_000), None, link),
            Some((5_000_000, link))
        );
        // max above link capacity is capped
        assert_eq!(
            class_rates(None, Some(2 * link), link),
            Some((link / 1000, link))
        );
        // min above max (core validates, but never give tc rate > ceil)
        assert_eq!(
            class_rates(Some(9_000_000), Some(8_000_000), link),
            Some((8_000_000, 8_000_000))
        );
    }

    #[test]
    fn allocator() {
        let mut a = SlotAllocator::new(3);
        assert_eq!(a.alloc(), Some(0));
        assert_eq!(a.alloc(), Some(1));
        assert_eq!(a.alloc(), Some(2));
        assert_eq!(a.alloc(), None);
        assert_eq!(a.in_use(), 3);
        assert!(a.release(1));
        assert!(!a.release(1), "double release accepted");
        assert!(!a.release(7), "never allocated slot released");
        assert_eq!(a.in_use(), 2);
        assert_eq!(a.alloc(), Some(1));
        assert_eq!(a.alloc(), None);
        assert!(a.release(2));
        assert!(a.release(0));
        assert_eq!(a.alloc(), Some(0), "lowest free first");
        assert_eq!(a.alloc(), Some(2));
        // capacity bounded by the u32 item field
        let mut big = SlotAllocator::new(u32::MAX);
        for _ in 0..MAX_SLOTS {
            assert!(big.alloc().is_some());
        }
        assert_eq!(big.alloc(), None);
        assert!(filter_item(MAX_SLOTS - 1) <= 0xfff);
        assert!(class_minor(MAX_SLOTS - 1) <= 0xffff);
    }
}
