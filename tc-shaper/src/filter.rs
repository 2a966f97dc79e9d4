//! `u32` filters that classify one client's packets into its HTB class, IPv4 and IPv6.
//!
//! Each address family has its own filter priority (the kernel keeps one classifier
//! instance per priority and protocol) and its own 256-bucket hash table, linked from the
//! classifier's root table with a hash key on the last octet of the address the direction
//! matches:
//!
//! | family | prio | table | download (tun egress, dst) | upload (IFB, src) | match |
//! |---|---|---|---|---|---|
//! | IPv4 | 1 | `2:` | `at 16` | `at 12` | `ip dst\|src A/32` |
//! | IPv6 | 2 | `3:` | `at 36` | `at 20` | `ip6 dst\|src A/128` |
//!
//! (offsets into the IP header: the IPv4 addresses are at 12 and 16, the last 32-bit word
//! of the IPv6 source at 20 and of the destination at 36.) A client's filter lives in
//! bucket `T:<octet>:` with item `<slot + 1>`, so its handle `T:<octet>:<item>` is known
//! and it is removed exactly.
//!
//! The IPv4 link names the root table `800::` explicitly: the IPv4 classifier is the first
//! `u32` instance on the qdisc, so its root is `800:`. The IPv6 link names no table and
//! goes to the root of its own instance, whatever number the kernel gave it.

use std::net::IpAddr;

use crate::command::{TcCommand, Tools};

/// Which side a tree lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// tun egress: traffic to the client, matched on the destination address.
    Download,
    /// IFB (fed from tun ingress): traffic from the client, matched on the source.
    Upload,
}

impl Direction {
    fn match_kw(self) -> &'static str {
        match self {
            Self::Download => "dst",
            Self::Upload => "src",
        }
    }
}

/// An address family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of an address.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }
    fn protocol(self) -> &'static str {
        match self {
            Self::V4 => "ip",
            Self::V6 => "ipv6",
        }
    }
    fn prio(self) -> &'static str {
        match self {
            Self::V4 => "1",
            Self::V6 => "2",
        }
    }
    /// The hash table's id (`2:` / `3:`).
    pub fn table(self) -> u32 {
        match self {
            Self::V4 => 2,
            Self::V6 => 3,
        }
    }
    fn hash_offset(self, dir: Direction) -> &'static str {
        match (self, dir) {
            (Self::V4, Direction::Download) => "16",
            (Self::V4, Direction::Upload) => "12",
            (Self::V6, Direction::Download) => "36",
            (Self::V6, Direction::Upload) => "20",
        }
    }
    fn match_kw(self) -> &'static str {
        match self {
            Self::V4 => "ip",
            Self::V6 => "ip6",
        }
    }
}

/// The hash bucket of an address: its last octet.
fn bucket(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(a) => a.octets()[3],
        IpAddr::V6(a) => a.octets()[15],
    }
}

fn prefix(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(a) => format!("{a}/32"),
        IpAddr::V6(a) => format!("{a}/128"),
    }
}

/// u32 item of a slot (nonzero, ≤ 0xfff for the slots [`crate::MAX_SLOTS`] allows).
pub(crate) fn item(slot: u32) -> u32 {
    slot + 1
}

fn filter_handle(addr: IpAddr, slot: u32) -> String {
    format!(
        "{:x}:{:x}:{:x}",
        Family::of(addr).table(),
        bucket(addr),
        item(slot)
    )
}

impl TcCommand {
    /// The 256-bucket hash table of a family:
    /// `tc filter add dev DEV parent 1: prio P handle T: protocol PROTO u32 divisor 256`.
    pub fn hash_table(t: &Tools, dev: &str, f: Family) -> Self {
        let h = format!("{:x}:", f.table());
        Self::tc(
            t,
            &[
                "filter",
                "add",
                "dev",
                dev,
                "parent",
                "1:",
                "prio",
                f.prio(),
                "handle",
                &h,
                "protocol",
                f.protocol(),
                "u32",
                "divisor",
                "256",
            ],
        )
    }

    /// The link from the family's root table to its hash table, hashing the last octet of
    /// the address the direction matches.
    pub fn hash_link(t: &Tools, dev: &str, f: Family, dir: Direction) -> Self {
        let link = format!("{:x}:", f.table());
        let mut a = vec![
            "filter",
            "add",
            "dev",
            dev,
            "parent",
            "1:",
            "prio",
            f.prio(),
            "protocol",
            f.protocol(),
            "u32",
        ];
        if f == Family::V4 {
            a.extend(["ht", "800::"]);
        }
        a.extend([
            "match",
            "u32",
            "0",
            "0",
            "hashkey",
            "mask",
            "0x000000ff",
            "at",
            f.hash_offset(dir),
            "link",
            &link,
        ]);
        Self::tc(t, &a)
    }

    /// The filter sending one client's packets (by address) to its class `1:<classid>`.
    pub fn client_filter(
        t: &Tools,
        dev: &str,
        dir: Direction,
        addr: IpAddr,
        slot: u32,
        class_minor: u32,
    ) -> Self {
        let f = Family::of(addr);
        let ht = format!("{:x}:{:x}:", f.table(), bucket(addr));
        let flow = format!("1:{class_minor:x}");
        Self::tc(
            t,
            &[
                "filter",
                "add",
                "dev",
                dev,
                "parent",
                "1:",
                "prio",
                f.prio(),
                "handle",
                &filter_handle(addr, slot),
                "protocol",
                f.protocol(),
                "u32",
                "ht",
                &ht,
                "match",
                f.match_kw(),
                dir.match_kw(),
                &prefix(addr),
                "flowid",
                &flow,
            ],
        )
    }

    /// Removes exactly the filter [`TcCommand::client_filter`] installed.
    pub fn client_filter_del(t: &Tools, dev: &str, addr: IpAddr, slot: u32) -> Self {
        let f = Family::of(addr);
        Self::tc(
            t,
            &[
                "filter",
                "del",
                "dev",
                dev,
                "parent",
                "1:",
                "prio",
                f.prio(),
                "handle",
                &filter_handle(addr, slot),
                "protocol",
                f.protocol(),
                "u32",
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;

    /// Every filter's argv, both families and both directions.
    #[test]
    fn filters_argv_exact() {
        let t = Tools::default();
        let v4 = IpAddr::V4(Ipv4Addr::new(10, 8, 0, 254));
        let v6: IpAddr = "fd00:8::10fe".parse().expect("addr");
        let table: Vec<(TcCommand, &str)> = vec![
            (
                TcCommand::hash_table(&t, "tun0", Family::V4),
                "tc filter add dev tun0 parent 1: prio 1 handle 2: protocol ip u32 divisor 256",
            ),
            (
                TcCommand::hash_table(&t, "tun0", Family::V6),
                "tc filter add dev tun0 parent 1: prio 2 handle 3: protocol ipv6 u32 divisor 256",
            ),
            (
                TcCommand::hash_link(&t, "tun0", Family::V4, Direction::Download),
                "tc filter add dev tun0 parent 1: prio 1 protocol ip u32 ht 800:: match u32 0 0 hashkey mask 0x000000ff at 16 link 2:",
            ),
            (
                TcCommand::hash_link(&t, "ifb0", Family::V4, Direction::Upload),
                "tc filter add dev ifb0 parent 1: prio 1 protocol ip u32 ht 800:: match u32 0 0 hashkey mask 0x000000ff at 12 link 2:",
            ),
            (
                TcCommand::hash_link(&t, "tun0", Family::V6, Direction::Download),
                "tc filter add dev tun0 parent 1: prio 2 protocol ipv6 u32 match u32 0 0 hashkey mask 0x000000ff at 36 link 3:",
            ),
            (
                TcCommand::hash_link(&t, "ifb0", Family::V6, Direction::Upload),
                "tc filter add dev ifb0 parent 1: prio 2 protocol ipv6 u32 match u32 0 0 hashkey mask 0x000000ff at 20 link 3:",
            ),
            (
                TcCommand::client_filter(&t, "tun0", Direction::Download, v4, 13, 15),
                "tc filter add dev tun0 parent 1: prio 1 handle 2:fe:e protocol ip u32 ht 2:fe: match ip dst 10.8.0.254/32 flowid 1:f",
            ),
            (
                TcCommand::client_filter(&t, "ifb0", Direction::Upload, v4, 13, 15),
                "tc filter add dev ifb0 parent 1: prio 1 handle 2:fe:e protocol ip u32 ht 2:fe: match ip src 10.8.0.254/32 flowid 1:f",
            ),
            (
                TcCommand::client_filter(&t, "tun0", Direction::Download, v6, 13, 15),
                "tc filter add dev tun0 parent 1: prio 2 handle 3:fe:e protocol ipv6 u32 ht 3:fe: match ip6 dst fd00:8::10fe/128 flowid 1:f",
            ),
            (
                TcCommand::client_filter(&t, "ifb0", Direction::Upload, v6, 13, 15),
                "tc filter add dev ifb0 parent 1: prio 2 handle 3:fe:e protocol ipv6 u32 ht 3:fe: match ip6 src fd00:8::10fe/128 flowid 1:f",
            ),
            (
                TcCommand::client_filter_del(&t, "tun0", v4, 13),
                "tc filter del dev tun0 parent 1: prio 1 handle 2:fe:e protocol ip u32",
            ),
            (
                TcCommand::client_filter_del(&t, "tun0", v6, 13),
                "tc filter del dev tun0 parent 1: prio 2 handle 3:fe:e protocol ipv6 u32",
            ),
        ];
        for (c, want) in table {
            assert_eq!(c.display(), want);
            assert!(!c.ignores_missing(), "{want}");
        }
    }

    /// The bucket is the last octet of either family; IPv4-mapped IPv6 stays IPv6.
    #[test]
    fn buckets_and_families() {
        let cases: [(IpAddr, u8, Family); 4] = [
            (Ipv4Addr::new(10, 8, 0, 6).into(), 6, Family::V4),
            (Ipv4Addr::new(10, 8, 1, 0).into(), 0, Family::V4),
            (
                Ipv6Addr::new(0xfd00, 8, 0, 0, 0, 0, 0, 0x1001).into(),
                1,
                Family::V6,
            ),
            (
                "::ffff:10.8.0.7".parse::<Ipv6Addr>().expect("addr").into(),
                7,
                Family::V6,
            ),
        ];
        for (a, b, f) in cases {
            assert_eq!((bucket(a), Family::of(a)), (b, f), "{a}");
        }
    }
}
