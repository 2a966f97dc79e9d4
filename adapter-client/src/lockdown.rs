//! The kill switch (`--lockdown`): while the adapter runs — connected, reconnecting or
//! suspended — traffic leaves this host only through the tunnel, or to the VPN server's
//! endpoint (its address, transport and port), or to what `--lockdown-allow` names.
//! Everything else is dropped, IPv4 and IPv6; DNS (port 53) leaves only through the tunnel.
//!
//! The rules live in an nftables table of the adapter's own, `inet adapter_client_<pid>`,
//! written in one `nft -f` transaction (so they are in place completely or not at all) and
//! deleted on exit. A killed adapter's table stays — the host stays locked, failing
//! closed — until the next start removes it (from the journal, and any
//! `adapter_client_<pid>` table whose process is gone).
//!
//! [`LockdownPlan::ruleset`] is pure and unit-tested without running `nft`.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use crate::tool::{ToolCommand, ToolError};

/// Prefix of the adapter's table names.
pub const TABLE_PREFIX: &str = "adapter_client_";

/// The transport of an allowed endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    fn keyword(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Tcp => "tcp",
        }
    }
}

/// An address, transport and port traffic may go to outside the tunnel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: u16,
    pub transport: Transport,
}

impl Endpoint {
    pub fn new(addr: SocketAddr, transport: Transport) -> Self {
        Self {
            addr: addr.ip(),
            port: addr.port(),
            transport,
        }
    }
    fn family(&self) -> &'static str {
        match self.addr {
            IpAddr::V4(_) => "ip",
            IpAddr::V6(_) => "ip6",
        }
    }
    /// `ip daddr A udp dport P` (`saddr`/`sport` for the answers).
    fn matcher(&self, outgoing: bool) -> String {
        let (addr, port) = if outgoing {
            ("daddr", "dport")
        } else {
            ("saddr", "sport")
        };
        format!(
            "{} {addr} {} {} {port} {}",
            self.family(),
            self.addr,
            self.transport.keyword(),
            self.port
        )
    }
}

/// The rules of one adapter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockdownPlan {
    /// `adapter_client_<pid>`.
    pub table: String,
    /// The tun device (checked `[A-Za-z0-9_-]`, ≤ 15 characters, by the caller).
    pub tun: String,
    /// The VPN server.
    pub servers: Vec<Endpoint>,
    /// `--lockdown-allow` entries.
    pub allowed: Vec<Endpoint>,
}

/// The table name of the adapter with process id `pid`.
pub fn table_name(pid: u32) -> String {
    format!("{TABLE_PREFIX}{pid}")
}

impl LockdownPlan {
    /// The `nft -f` script: creates (or replaces) the table with its three chains.
    pub fn ruleset(&self) -> String {
        let t = &self.table;
        let tun = &self.tun;
        let v6 = self
            .servers
            .iter()
            .chain(&self.allowed)
            .any(|e| e.addr.is_ipv6());
        let mut s = String::new();
        // Declaring, deleting and re-adding the table makes the script replace an old one.
        let _ = writeln!(s, "table inet {t}");
        let _ = writeln!(s, "delete table inet {t}");
        let _ = writeln!(s, "table inet {t} {{");

        let _ = writeln!(s, "\tchain output {{");
        let _ = writeln!(
            s,
            "\t\ttype filter hook output priority filter; policy drop;"
        );
        let _ = writeln!(s, "\t\toifname \"lo\" accept");
        let _ = writeln!(s, "\t\toifname \"{tun}\" accept");
        for e in &self.servers {
            let _ = writeln!(s, "\t\t{} accept comment \"VPN server\"", e.matcher(true));
        }
        let _ = writeln!(
            s,
            "\t\tudp dport 53 drop comment \"DNS only through the tunnel\""
        );
        let _ = writeln!(
            s,
            "\t\ttcp dport 53 drop comment \"DNS only through the tunnel\""
        );
        for e in &self.allowed {
            let _ = writeln!(
                s,
                "\t\t{} accept comment \"lockdown-allow\"",
                e.matcher(true)
            );
        }
        let _ = writeln!(
            s,
            "\t\tmeta nfproto ipv4 udp sport 68 udp dport 67 accept comment \"DHCP\""
        );
        let _ = writeln!(
            s,
            "\t\tmeta nfproto ipv6 udp sport 546 udp dport 547 accept comment \"DHCPv6\""
        );
        if v6 {
            let _ = writeln!(
                s,
                "\t\ticmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit }} accept"
            );
        }
        let _ = writeln!(s, "\t\tcounter drop comment \"kill switch\"");
        let _ = writeln!(s, "\t}}");

        let _ = writeln!(s, "\tchain input {{");
        let _ = writeln!(
            s,
            "\t\ttype filter hook input priority filter; policy drop;"
        );
        let _ = writeln!(s, "\t\tiifname \"lo\" accept");
        let _ = writeln!(s, "\t\tiifname \"{tun}\" accept");
        for e in &self.servers {
            let _ = writeln!(s, "\t\t{} accept comment \"VPN server\"", e.matcher(false));
        }
        for e in &self.allowed {
            let _ = writeln!(
                s,
                "\t\t{} accept comment \"lockdown-allow\"",
                e.matcher(false)
            );
        }
        let _ = writeln!(
            s,
            "\t\tmeta nfproto ipv4 udp sport 67 udp dport 68 accept comment \"DHCP\""
        );
        let _ = writeln!(
            s,
            "\t\tmeta nfproto ipv6 udp sport 547 udp dport 546 accept comment \"DHCPv6\""
        );
        if v6 {
            let _ = writeln!(
                s,
                "\t\ticmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert, nd-router-advert, nd-redirect }} accept"
            );
        }
        let _ = writeln!(
            s,
            "\t\tct state related accept comment \"ICMP errors of allowed flows\""
        );
        let _ = writeln!(s, "\t\tcounter drop comment \"kill switch\"");
        let _ = writeln!(s, "\t}}");

        let _ = writeln!(s, "\tchain forward {{");
        let _ = writeln!(
            s,
            "\t\ttype filter hook forward priority filter; policy drop;"
        );
        let _ = writeln!(s, "\t\toifname \"{tun}\" accept");
        let _ = writeln!(s, "\t\tiifname \"{tun}\" accept");
        let _ = writeln!(s, "\t\tcounter drop comment \"kill switch\"");
        let _ = writeln!(s, "\t}}");
        let _ = writeln!(s, "}}");
        s
    }

    /// `nft -f -` with [`Self::ruleset`] on stdin.
    pub fn apply_command(&self, nft: &Path) -> ToolCommand {
        ToolCommand::new(nft, &["-f", "-"]).with_stdin(self.ruleset())
    }
}

/// `nft delete table inet TABLE`.
pub fn remove_command(nft: &Path, table: &str) -> ToolCommand {
    ToolCommand::new(nft, &["delete", "table", "inet", table])
}

/// `nft list tables inet`.
pub fn list_command(nft: &Path) -> ToolCommand {
    ToolCommand::new(nft, &["list", "tables", "inet"])
}

/// The adapters' tables (`(name, pid)`) in `nft list tables inet` output.
pub fn parse_tables(out: &str) -> Vec<(String, u32)> {
    out.lines()
        .filter_map(|l| {
            let name = l.trim().strip_prefix("table inet ")?.trim();
            let pid = name.strip_prefix(TABLE_PREFIX)?.parse::<u32>().ok()?;
            Some((name.to_string(), pid))
        })
        .collect()
}

/// Applies the plan (one transaction).
pub async fn apply(plan: &LockdownPlan, nft: &Path) -> Result<(), ToolError> {
    plan.apply_command(nft).run().await.map(|_| ())
}

/// Deletes `table`; `Ok(false)` when it did not exist.
pub fn remove_blocking(nft: &Path, table: &str) -> Result<bool, ToolError> {
    match remove_command(nft, table).run_blocking() {
        Ok(_) => Ok(true),
        Err(e) if e.stderr().contains("No such file or directory") => Ok(false),
        Err(e) => Err(e),
    }
}

/// Deletes the tables of adapters that are gone (`alive(pid)` false), never `own_pid`'s.
/// Returns the names deleted.
pub fn sweep_blocking(
    nft: &Path,
    own_pid: u32,
    alive: impl Fn(u32) -> bool,
) -> Result<Vec<String>, ToolError> {
    let out = list_command(nft).run_blocking()?;
    let mut removed = Vec::new();
    for (name, pid) in parse_tables(&out) {
        if pid != own_pid && !alive(pid) && remove_blocking(nft, &name)? {
            removed.push(name);
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str, t: Transport) -> Endpoint {
        Endpoint::new(s.parse().expect("socket addr"), t)
    }

    #[test]
    fn ruleset_for_an_ipv4_udp_server() {
        let plan = LockdownPlan {
            table: table_name(4242),
            tun: "tunac4242".into(),
            servers: vec![ep("10.99.1.1:1194", Transport::Udp)],
            allowed: vec![ep("10.99.1.1:7710", Transport::Tcp)],
        };
        let r = plan.ruleset();
        let lines: Vec<&str> = r.lines().map(str::trim).collect();
        assert_eq!(
            &lines[..3],
            &[
                "table inet adapter_client_4242",
                "delete table inet adapter_client_4242",
                "table inet adapter_client_4242 {",
            ]
        );
        let chain = |name: &str| -> Vec<&str> {
            let start = lines
                .iter()
                .position(|l| *l == format!("chain {name} {{"))
                .expect("chain");
            let len = lines[start..].iter().position(|l| *l == "}").expect("end");
            lines[start + 1..start + len].to_vec()
        };
        assert_eq!(
            chain("output"),
            [
                "type filter hook output priority filter; policy drop;",
                "oifname \"lo\" accept",
                "oifname \"tunac4242\" accept",
                "ip daddr 10.99.1.1 udp dport 1194 accept comment \"VPN server\"",
                "udp dport 53 drop comment \"DNS only through the tunnel\"",
                "tcp dport 53 drop comment \"DNS only through the tunnel\"",
                "ip daddr 10.99.1.1 tcp dport 7710 accept comment \"lockdown-allow\"",
                "meta nfproto ipv4 udp sport 68 udp dport 67 accept comment \"DHCP\"",
                "meta nfproto ipv6 udp sport 546 udp dport 547 accept comment \"DHCPv6\"",
                "counter drop comment \"kill switch\"",
            ]
        );
        assert_eq!(
            chain("input"),
            [
                "type filter hook input priority filter; policy drop;",
                "iifname \"lo\" accept",
                "iifname \"tunac4242\" accept",
                "ip saddr 10.99.1.1 udp sport 1194 accept comment \"VPN server\"",
                "ip saddr 10.99.1.1 tcp sport 7710 accept comment \"lockdown-allow\"",
                "meta nfproto ipv4 udp sport 67 udp dport 68 accept comment \"DHCP\"",
                "meta nfproto ipv6 udp sport 547 udp dport 546 accept comment \"DHCPv6\"",
                "ct state related accept comment \"ICMP errors of allowed flows\"",
                "counter drop comment \"kill switch\"",
            ]
        );
        assert_eq!(
            chain("forward"),
            [
                "type filter hook forward priority filter; policy drop;",
                "oifname \"tunac4242\" accept",
                "iifname \"tunac4242\" accept",
                "counter drop comment \"kill switch\"",
            ]
        );
        // IPv4 only: no neighbour discovery is let through.
        assert!(!r.contains("icmpv6"));
        let cmd = plan.apply_command(Path::new("nft"));
        assert_eq!(cmd.args, ["-f", "-"]);
        assert_eq!(cmd.stdin.as_deref(), Some(r.as_str()));
    }

    #[test]
    fn ruleset_for_an_ipv6_tcp_server() {
        let plan = LockdownPlan {
            table: table_name(7),
            tun: "tun-x".into(),
            servers: vec![ep("[fd00::1]:443", Transport::Tcp)],
            allowed: vec![],
        };
        let r = plan.ruleset();
        assert!(r.contains("ip6 daddr fd00::1 tcp dport 443 accept comment \"VPN server\""));
        assert!(r.contains("ip6 saddr fd00::1 tcp sport 443 accept comment \"VPN server\""));
        // The server's address must be resolvable on the link: neighbour discovery passes.
        assert!(r.contains(
            "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit } accept"
        ));
        assert!(!r.contains("lockdown-allow"));
        // The VPN server comes before the DNS drop: a server on port 53 still works.
        let plan = LockdownPlan {
            servers: vec![ep("192.0.2.1:53", Transport::Udp)],
            ..plan
        };
        let r = plan.ruleset();
        let server = r.find("udp dport 53 accept").expect("server rule");
        let dns = r.find("udp dport 53 drop").expect("dns drop");
        assert!(server < dns);
    }

    #[test]
    fn commands_and_table_listing() {
        let nft = Path::new("nft");
        assert_eq!(
            remove_command(nft, "adapter_client_9").args,
            ["delete", "table", "inet", "adapter_client_9"]
        );
        assert_eq!(list_command(nft).args, ["list", "tables", "inet"]);
        let out = "table inet filter\ntable inet adapter_client_12\ntable inet adapter_client_x\ntable inet adapter_client_34\n";
        assert_eq!(
            parse_tables(out),
            vec![
                ("adapter_client_12".to_string(), 12),
                ("adapter_client_34".to_string(), 34)
            ]
        );
    }
}
