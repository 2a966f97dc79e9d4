//! The server's plan: per-client speed limits on one tun device shared by all clients.
//!
//! Layout (identical on the tun egress for download and on the IFB for upload):
//!
//! ```text
//! qdisc htb 1: default 0           unclassified traffic is not shaped
//!   class 1:1 rate=ceil=LINK       parent, so client classes can borrow up to their ceil
//!     class 1:<slot+2> rate=MIN ceil=MAX      one per shaped client and direction
//! filter parent 1: prio 1 (IPv4) u32 hash table 2: (divisor 256), linked from 800:: keyed
//!   on the last octet of the ip dst (tun egress, offset 16) / ip src (IFB, offset 12)
//!   filter handle 2:<octet>:<slot+1> match ip dst|src ADDR/32 flowid 1:<slot+2>
//! filter parent 1: prio 2 (IPv6, made when the first client with an IPv6 address comes)
//!   u32 hash table 3:, keyed at 36 (dst) / 20 (src)
//!   filter handle 3:<octet>:<slot+1> match ip6 dst|src ADDR/128 flowid 1:<slot+2>
//! ```
//!
//! Upload: ingress qdisc `ffff:` on the tun with a u32 match-all filter whose action
//! `mirred egress redirect` sends every packet to the IFB. When a client has no minimum,
//! its class rate (guarantee) is 1/1000 of its maximum, at least 8 kbit
//! ([`crate::class_rates`]). A client's IPv4 and IPv6 filters lead to the same class, so
//! its limit covers both families together.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use service_api::SpeedLimits;

use crate::command::{Op, TcCommand, Tools};
use crate::filter::{self, Direction, Family};
use crate::rate::{class_rates, Rate};

/// Largest slot count (u32 item handles are 12 bits, minus the reserved 0).
pub const MAX_SLOTS: u32 = 4094;

/// Class minor (hex in tc syntax) of a slot.
pub fn class_minor(slot: u32) -> u32 {
    slot + 2
}

/// u32 item handle of a slot (nonzero, ≤ 0xfff).
pub fn filter_item(slot: u32) -> u32 {
    filter::item(slot)
}

/// Static settings of the server's shaping.
#[derive(Debug, Clone)]
pub struct ShapingConfig {
    pub tun: String,
    pub ifb: String,
    pub link_bps: u64,
    pub max_clients: u32,
    /// Network namespace of the tun device (None = our own).
    pub netns: Option<String>,
}

/// The VPN addresses of one client: its IPv4 address and, on a server that pushes IPv6
/// (`server-ipv6`), its IPv6 address (`ifconfig_pool_remote_ip6`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddrs {
    pub v4: Ipv4Addr,
    pub v6: Option<Ipv6Addr>,
}

impl From<Ipv4Addr> for ClientAddrs {
    fn from(v4: Ipv4Addr) -> Self {
        Self { v4, v6: None }
    }
}

impl ClientAddrs {
    /// Every address, IPv4 first.
    pub fn all(&self) -> impl Iterator<Item = IpAddr> {
        std::iter::once(IpAddr::V4(self.v4)).chain(self.v6.map(IpAddr::V6))
    }
}

/// The commands that (re)create the whole setup (IPv4 classification); run
/// [`setup_cleanup_commands`] first to remove leftovers.
pub fn setup_commands(c: &ShapingConfig, t: &Tools) -> Vec<TcCommand> {
    let mut out = vec![
        TcCommand::ifb_add(t, &c.ifb),
        TcCommand::ifb_up(t, &c.ifb),
        TcCommand::ingress(t, Op::Add, &c.tun),
        TcCommand::redirect_to_ifb(t, Op::Add, &c.tun, &c.ifb),
    ];
    for (dev, dir) in [(&c.tun, Direction::Download), (&c.ifb, Direction::Upload)] {
        out.push(TcCommand::htb_root(t, Op::Add, dev, 0));
        out.push(TcCommand::htb_class(
            t,
            Op::Add,
            dev,
            "1:",
            "1:1",
            Rate::flat(c.link_bps),
            None,
        ));
        out.push(TcCommand::hash_table(t, dev, Family::V4));
        out.push(TcCommand::hash_link(t, dev, Family::V4, dir));
    }
    out
}

/// The IPv6 classification, added to a running setup (after [`setup_commands`], so that
/// the IPv4 classifier keeps the root table `800:`).
pub fn ipv6_setup_commands(c: &ShapingConfig, t: &Tools) -> Vec<TcCommand> {
    let mut out = Vec::new();
    for (dev, dir) in [(&c.tun, Direction::Download), (&c.ifb, Direction::Upload)] {
        out.push(TcCommand::hash_table(t, dev, Family::V6));
        out.push(TcCommand::hash_link(t, dev, Family::V6, dir));
    }
    out
}

/// Removes the IPv6 classification (all IPv6 filters) and nothing else; tolerates its
/// absence.
pub fn ipv6_cleanup_commands(c: &ShapingConfig, t: &Tools) -> Vec<TcCommand> {
    [&c.tun, &c.ifb]
        .into_iter()
        .map(|dev| {
            TcCommand::tc(
                t,
                &[
                    "filter", "del", "dev", dev, "parent", "1:", "prio", "2", "protocol", "ipv6",
                    "u32",
                ],
            )
            .tolerant()
        })
        .collect()
}

/// Removal of everything this module creates (each tolerates its object being gone).
pub fn setup_cleanup_commands(c: &ShapingConfig, t: &Tools) -> Vec<TcCommand> {
    vec![
        TcCommand::root_del(t, &c.tun),
        TcCommand::ingress_del(t, &c.tun),
        TcCommand::ifb_del(t, &c.ifb),
    ]
}

/// What is installed for one client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientShape {
    pub slot: u32,
    pub addrs: ClientAddrs,
    pub download: bool,
    pub upload: bool,
}

fn class_id(slot: u32) -> String {
    format!("1:{:x}", class_minor(slot))
}

/// Commands that install a client's classes and filters (one filter per address and
/// shaped direction).
pub fn client_add_commands(
    c: &ShapingConfig,
    t: &Tools,
    slot: u32,
    addrs: ClientAddrs,
    speed: &SpeedLimits,
) -> (Vec<TcCommand>, ClientShape) {
    let mut cmds = Vec::new();
    let mut shape = ClientShape {
        slot,
        addrs,
        download: false,
        upload: false,
    };
    let dirs = [
        (
            &c.tun,
            Direction::Download,
            class_rates(speed.min_download_bps, speed.max_download_bps, c.link_bps),
        ),
        (
            &c.ifb,
            Direction::Upload,
            class_rates(speed.min_upload_bps, speed.max_upload_bps, c.link_bps),
        ),
    ];
    for (dev, dir, rates) in dirs {
        let Some((rate_bps, ceil_bps)) = rates else {
            continue;
        };
        let r = Rate { rate_bps, ceil_bps };
        cmds.push(TcCommand::htb_class(
            t,
            Op::Add,
            dev,
            "1:1",
            &class_id(slot),
            r,
            Some(1514),
        ));
        for a in addrs.all() {
            cmds.push(TcCommand::client_filter(
                t,
                dev,
                dir,
                a,
                slot,
                class_minor(slot),
            ));
        }
        match dir {
            Direction::Download => shape.download = true,
            Direction::Upload => shape.upload = true,
        }
    }
    (cmds, shape)
}

/// Commands that remove exactly what [`client_add_commands`] installed (filters first).
pub fn client_remove_commands(c: &ShapingConfig, t: &Tools, s: &ClientShape) -> Vec<TcCommand> {
    let mut cmds = Vec::new();
    for (dev, on) in [(&c.tun, s.download), (&c.ifb, s.upload)] {
        if !on {
            continue;
        }
        for a in s.addrs.all() {
            cmds.push(TcCommand::client_filter_del(t, dev, a, s.slot));
        }
        cmds.push(TcCommand::htb_class_del(t, dev, &class_id(s.slot)));
    }
    cmds
}

#[cfg(test)]
mod tests;
