//! What the server may push: `pull-filter` lines that accept an allow-list of pushed
//! options and ignore everything else.
//!
//! Accepted: the routes (`route`, `route-ipv6`, `route-gateway`, `route-metric`,
//! `redirect-gateway` — full-tunnel routing, `def1` and `ipv6` included —,
//! `redirect-private`, `block-ipv6`), the DNS settings the adapter applies
//! (`dhcp-option DNS`/`DNS6`/`DOMAIN`/`DOMAIN-SEARCH`, `dns …`), and what a connection
//! needs (`ifconfig`, `ifconfig-ipv6`, `topology`, `ping`, `ping-restart`, `peer-id`,
//! `cipher`, `protocol-flags`, `key-derivation`, `tun-mtu`, `mssfix`, `auth-token`).
//! Ignored: every other option, among them other `dhcp-option`s,
//! `setenv`, `echo`, `inactive`, `ping-exit`, `session-timeout`, `persist-tun`,
//! `explicit-exit-notify` (the adapter sets its own),
//! `socket-flags`, `comp-lzo`/`compress`, and whatever a later OpenVPN makes pushable.
//! (Scripts, `up`/`down` and plugins cannot be pushed at all; OpenVPN refuses them, and the
//! last filter ignores them before that.) `ignore`, not `reject`: a reject makes OpenVPN
//! restart the connection, over and over.
//!
//! OpenVPN compares each pushed option with the filters in order, by prefix; the first
//! match decides. A trailing space keeps `route ` from matching `route-ipv6`.

/// The accepted prefixes, in the order they are written.
pub const ACCEPTED: [&str; 24] = [
    "route ",
    "route-ipv6 ",
    "route-gateway ",
    "route-metric ",
    "redirect-gateway",
    "redirect-private",
    "block-ipv6",
    "dhcp-option DNS ",
    "dhcp-option DNS6 ",
    "dhcp-option DOMAIN ",
    "dhcp-option DOMAIN-SEARCH ",
    "dns ",
    "ifconfig ",
    "ifconfig-ipv6 ",
    "topology ",
    "ping ",
    "ping-restart ",
    "peer-id ",
    "cipher ",
    "protocol-flags ",
    "key-derivation ",
    "tun-mtu ",
    "mssfix ",
    "auth-token",
];

/// The `pull-filter` lines: one `accept` per allowed prefix, then `ignore ""` (matches
/// every option: unmatched options would be accepted otherwise).
pub fn pull_filter_lines() -> Vec<String> {
    ACCEPTED
        .iter()
        .map(|p| format!("pull-filter accept \"{p}\""))
        .chain(std::iter::once("pull-filter ignore \"\"".to_string()))
        .collect()
}

/// What OpenVPN does with a pushed option under [`pull_filter_lines`] (for tests and
/// documentation): true = accepted.
pub fn accepts(option: &str) -> bool {
    ACCEPTED.iter().any(|p| option.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_routes_dns_and_the_connection_and_nothing_else() {
        for ok in [
            "route 10.1.0.0 255.255.0.0",
            "route-ipv6 2000::/3",
            "route-gateway 10.8.0.1",
            "redirect-gateway def1",
            "redirect-gateway ipv6 !ipv4",
            "redirect-gateway def1 bypass-dhcp",
            "block-ipv6",
            "dhcp-option DNS 10.8.0.1",
            "dhcp-option DNS6 fd00::1",
            "dhcp-option DOMAIN vpn.example",
            "dhcp-option DOMAIN-SEARCH vpn.example",
            "dns server 0 address 10.8.0.1",
            "ifconfig 10.8.0.2 255.255.255.0",
            "ifconfig-ipv6 fd00::2/64 fd00::1",
            "topology subnet",
            "ping 10",
            "ping-restart 60",
            "peer-id 0",
            "cipher AES-256-GCM",
            "protocol-flags cc-exit tls-ekm dyn-tls-crypt",
            "key-derivation tls-ekm",
            "tun-mtu 1500",
            "auth-token SESS_ID",
            "auth-token-user dXNlcg==",
        ] {
            assert!(accepts(ok), "{ok}");
        }
        for refused in [
            "setenv FOO bar",
            "setenv-safe FOO bar",
            "up /tmp/x.sh",
            "down /tmp/x.sh",
            "route-up /tmp/x.sh",
            "script-security 3",
            "plugin /tmp/x.so",
            "echo hello",
            "inactive 1",
            "ping-exit 1",
            "session-timeout 1",
            "persist-tun",
            "dhcp-option WINS 10.8.0.1",
            "dhcp-option NTP 10.8.0.1",
            "dhcp-option DNSX 10.8.0.1",
            "comp-lzo yes",
            "compress lz4",
            "socket-flags TCP_NODELAY",
            "routeX 1",
            "route-delay 5",
            "route-noexec",
            "explicit-exit-notify 1",
        ] {
            assert!(!accepts(refused), "{refused}");
        }
    }

    #[test]
    fn lines_end_with_the_catch_all_ignore() {
        let lines = pull_filter_lines();
        assert_eq!(lines.len(), ACCEPTED.len() + 1);
        assert_eq!(lines[0], "pull-filter accept \"route \"");
        assert_eq!(
            lines.last().map(String::as_str),
            Some("pull-filter ignore \"\"")
        );
        // Quoted arguments: no quote or backslash inside.
        assert!(ACCEPTED.iter().all(|p| !p.contains(['"', '\\'])));
    }
}
