//! The DNS settings a server pushes, read from OpenVPN's log over the management interface
//! (`log on`): at verb ≥ 3 OpenVPN logs every control message it receives as
//! `PUSH: Received control message: 'PUSH_REPLY,opt,opt,…'`, which reaches the adapter as
//! `>LOG:TIME,FLAGS,TEXT`. No script runs: the adapter reads the options and applies them
//! itself.
//!
//! Pure functions: [`push_reply_options`] finds the options in a log line, [`PushCollector`]
//! gathers them over the (possibly continued) replies of one connection, and
//! [`dns_from_options`] turns them into a validated [`DnsConfig`]. The server is untrusted:
//! only IP literals are accepted as servers (no names, nothing loopback, multicast or
//! unspecified), domains must be DNS names, and both lists are bounded.

use std::net::{IpAddr, SocketAddr};

/// Most DNS servers taken from one push (more are ignored, with a warning).
pub const MAX_DNS_SERVERS: usize = 8;
/// Most search domains taken from one push.
pub const MAX_SEARCH_DOMAINS: usize = 6;
/// Most pushed options kept for one connection (a PUSH_REPLY is short; continuations too).
pub const MAX_PUSHED_OPTIONS: usize = 256;

/// The marker OpenVPN logs before a received control message.
const PUSH_MARKER: &str = "PUSH: Received control message: '";

/// DNS settings for the tunnel: servers in the server's order, then search domains.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DnsConfig {
    pub servers: Vec<IpAddr>,
    pub search: Vec<String>,
}

impl DnsConfig {
    pub fn is_empty(&self) -> bool {
        self.servers.is_empty()
    }
}

/// What the pushed options say about DNS, with the warnings about what was refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushedDns {
    pub config: DnsConfig,
    pub warnings: Vec<String>,
}

/// The options of a `PUSH_REPLY` in the text of a `>LOG:` line (`TIME,FLAGS,MESSAGE`), or
/// `None` when the line is something else.
pub fn push_reply_options(log_text: &str) -> Option<&str> {
    let mut parts = log_text.splitn(3, ',');
    let (_time, _flags, message) = (parts.next()?, parts.next()?, parts.next()?);
    let start = message.find(PUSH_MARKER)? + PUSH_MARKER.len();
    let quoted = message.get(start..)?;
    let end = quoted.rfind('\'')?;
    quoted.get(..end)?.strip_prefix("PUSH_REPLY,")
}

/// The pushed options of one connection attempt: OpenVPN may split a long reply over
/// several messages (`push-continuation 2` … `1`), so options are gathered until the
/// connection is up, and dropped when it restarts.
#[derive(Debug, Clone, Default)]
pub struct PushCollector {
    options: Vec<String>,
    dropped: usize,
}

impl PushCollector {
    /// Takes the options of one `>LOG:` line, if it is a `PUSH_REPLY`; true when it was.
    pub fn observe_log(&mut self, log_text: &str) -> bool {
        let Some(opts) = push_reply_options(log_text) else {
            return false;
        };
        for o in opts.split(',').map(str::trim).filter(|o| !o.is_empty()) {
            if self.options.len() < MAX_PUSHED_OPTIONS {
                self.options.push(o.to_string());
            } else {
                self.dropped += 1;
            }
        }
        true
    }

    /// The options gathered so far.
    pub fn options(&self) -> &[String] {
        &self.options
    }

    /// Forgets everything (a new connection attempt).
    pub fn reset(&mut self) {
        self.options.clear();
        self.dropped = 0;
    }

    /// The DNS settings of the gathered options.
    pub fn dns(&self) -> PushedDns {
        let mut d = dns_from_options(&self.options);
        if self.dropped > 0 {
            d.warnings.push(format!(
                "{} pushed options beyond the first {MAX_PUSHED_OPTIONS} were not read",
                self.dropped
            ));
        }
        d
    }
}

/// Why a pushed server address is refused, if it is.
fn server_problem(ip: &IpAddr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified address");
    }
    if ip.is_loopback() {
        return Some("loopback address (the server cannot name a resolver on this host)");
    }
    if ip.is_multicast() {
        return Some("multicast address");
    }
    match ip {
        IpAddr::V4(v4) if v4.is_broadcast() => Some("broadcast address"),
        IpAddr::V6(v6) if (v6.segments()[0] & 0xffc0) == 0xfe80 => {
            Some("link-local IPv6 address (needs a scope)")
        }
        _ => None,
    }
}

/// A DNS server address: an IP literal, optionally with port 53 (`ADDR:53`, `[V6]:53`).
fn parse_server(token: &str) -> Result<IpAddr, String> {
    let shown: String = token.chars().take(64).collect();
    let ip = match token.parse::<IpAddr>() {
        Ok(ip) => ip,
        Err(_) => match token.parse::<SocketAddr>() {
            Ok(sa) if sa.port() == 53 => sa.ip(),
            Ok(sa) => {
                return Err(format!(
                    "DNS server {shown:?}: port {} (only port 53 can be configured)",
                    sa.port()
                ))
            }
            Err(_) => return Err(format!("DNS server {shown:?} is not an IP address")),
        },
    };
    match server_problem(&ip) {
        Some(p) => Err(format!("DNS server {ip}: {p}")),
        None => Ok(ip),
    }
}

/// A search domain: a DNS name of `[A-Za-z0-9_-]` labels (a trailing dot allowed),
/// lowercased.
fn parse_domain(token: &str) -> Result<String, String> {
    let shown: String = token.chars().take(64).collect();
    let name = token.strip_suffix('.').unwrap_or(token);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    if ok {
        Ok(name.to_ascii_lowercase())
    } else {
        Err(format!("search domain {shown:?} is not a DNS name"))
    }
}

#[derive(Default)]
struct Lists {
    servers: Vec<IpAddr>,
    search: Vec<String>,
}

fn add_server(l: &mut Lists, token: &str, warnings: &mut Vec<String>) {
    match parse_server(token) {
        Ok(ip) if l.servers.contains(&ip) => {}
        Ok(ip) if l.servers.len() >= MAX_DNS_SERVERS => warnings.push(format!(
            "DNS server {ip} ignored: at most {MAX_DNS_SERVERS} are used"
        )),
        Ok(ip) => l.servers.push(ip),
        Err(w) => warnings.push(format!("{w}; ignored")),
    }
}

fn add_domain(l: &mut Lists, token: &str, warnings: &mut Vec<String>) {
    match parse_domain(token) {
        Ok(d) if l.search.contains(&d) => {}
        Ok(d) if l.search.len() >= MAX_SEARCH_DOMAINS => warnings.push(format!(
            "search domain {d} ignored: at most {MAX_SEARCH_DOMAINS} are used"
        )),
        Ok(d) => l.search.push(d),
        Err(w) => warnings.push(format!("{w}; ignored")),
    }
}

/// The DNS settings of a list of pushed options: `dhcp-option DNS|DNS6 ADDR`,
/// `dhcp-option DOMAIN|DOMAIN-SEARCH|ADAPTER_DOMAIN_SUFFIX NAME`, and OpenVPN 2.6's
/// `dns server N address ADDR…` / `dns search-domains NAME…`. As in OpenVPN, `dns`
/// servers, when there are any, replace the `dhcp-option` ones. Other options are not
/// DNS settings and are skipped.
pub fn dns_from_options<S: AsRef<str>>(options: &[S]) -> PushedDns {
    let mut warnings = Vec::new();
    let mut dhcp = Lists::default();
    let mut dns = Lists::default();
    for opt in options {
        let words: Vec<&str> = opt.as_ref().split_whitespace().collect();
        match words.as_slice() {
            ["dhcp-option", kind, value] if matches!(*kind, "DNS" | "DNS6") => {
                add_server(&mut dhcp, value, &mut warnings)
            }
            ["dhcp-option", kind, value]
                if matches!(*kind, "DOMAIN" | "DOMAIN-SEARCH" | "ADAPTER_DOMAIN_SUFFIX") =>
            {
                add_domain(&mut dhcp, value, &mut warnings)
            }
            ["dns", "server", _n, "address", addrs @ ..] => {
                for a in addrs {
                    add_server(&mut dns, a, &mut warnings);
                }
            }
            ["dns", "search-domains", names @ ..] => {
                for n in names {
                    add_domain(&mut dns, n, &mut warnings);
                }
            }
            ["dhcp-option", "DNS" | "DNS6" | "DOMAIN" | "DOMAIN-SEARCH", ..] => {
                let shown: String = opt.as_ref().chars().take(80).collect();
                warnings.push(format!("malformed pushed option {shown:?}; ignored"));
            }
            _ => {}
        }
    }
    let servers = if dns.servers.is_empty() {
        dhcp.servers
    } else {
        dns.servers
    };
    let mut search = dns.search;
    for d in dhcp.search {
        if !search.contains(&d) && search.len() < MAX_SEARCH_DOMAINS {
            search.push(d);
        }
    }
    PushedDns {
        config: DnsConfig { servers, search },
        warnings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().expect("ip")).collect()
    }

    #[test]
    fn finds_the_options_of_a_push_reply_log_line() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                "1700000000,,PUSH: Received control message: 'PUSH_REPLY,dhcp-option DNS 10.8.0.1,route-gateway 10.8.0.1'",
                Some("dhcp-option DNS 10.8.0.1,route-gateway 10.8.0.1"),
            ),
            (
                "1700000000,I,PUSH: Received control message: 'PUSH_REPLY,ping 10'",
                Some("ping 10"),
            ),
            ("1700000000,,PUSH: Received control message: 'AUTH_FAILED'", None),
            ("1700000000,,PUSH: Received control message: 'RESTART'", None),
            ("1700000000,,SENT CONTROL [server]: 'PUSH_REQUEST' (status=1)", None),
            ("1700000000,,Initialization Sequence Completed", None),
            ("no commas", None),
            ("1,,PUSH: Received control message: 'PUSH_REPLY,unterminated", None),
        ];
        for (line, want) in cases {
            assert_eq!(push_reply_options(line), *want, "{line}");
        }
    }

    #[test]
    fn collects_continued_replies_and_resets() {
        let mut c = PushCollector::default();
        assert!(!c.observe_log("1,,Initialization Sequence Completed"));
        assert!(c.observe_log(
            "1,,PUSH: Received control message: 'PUSH_REPLY,dhcp-option DNS 10.8.0.1,push-continuation 2'"
        ));
        assert!(c.observe_log(
            "1,,PUSH: Received control message: 'PUSH_REPLY,dhcp-option DNS 10.8.0.2,dhcp-option DOMAIN vpn.example,push-continuation 1'"
        ));
        let d = c.dns();
        assert_eq!(d.config.servers, ips(&["10.8.0.1", "10.8.0.2"]));
        assert_eq!(d.config.search, vec!["vpn.example".to_string()]);
        c.reset();
        assert!(c.options().is_empty());
        assert!(c.dns().config.is_empty());
    }

    #[test]
    fn the_number_of_options_is_bounded() {
        let mut c = PushCollector::default();
        let many = vec!["ping 10"; MAX_PUSHED_OPTIONS + 5].join(",");
        c.observe_log(&format!(
            "1,,PUSH: Received control message: 'PUSH_REPLY,{many}'"
        ));
        assert_eq!(c.options().len(), MAX_PUSHED_OPTIONS);
        assert!(c
            .dns()
            .warnings
            .iter()
            .any(|w| w.contains("5 pushed options")));
    }

    #[test]
    fn dns_options_table() {
        struct Case {
            opts: &'static [&'static str],
            servers: &'static [&'static str],
            search: &'static [&'static str],
            warnings: usize,
        }
        let cases = [
            Case {
                opts: &[
                    "dhcp-option DNS 10.8.0.1",
                    "route-gateway 10.8.0.1",
                    "ping 10",
                ],
                servers: &["10.8.0.1"],
                search: &[],
                warnings: 0,
            },
            Case {
                opts: &["dhcp-option DNS6 fd00::1", "dhcp-option DNS 10.8.0.1"],
                servers: &["fd00::1", "10.8.0.1"],
                search: &[],
                warnings: 0,
            },
            // Names, loopback, unspecified, multicast, broadcast, link-local: refused.
            Case {
                opts: &[
                    "dhcp-option DNS dns.example",
                    "dhcp-option DNS 127.0.0.1",
                    "dhcp-option DNS 0.0.0.0",
                    "dhcp-option DNS 224.0.0.1",
                    "dhcp-option DNS 255.255.255.255",
                    "dhcp-option DNS6 fe80::1",
                    "dhcp-option DNS ::1",
                    "dhcp-option DNS 10.8.0.1",
                ],
                servers: &["10.8.0.1"],
                search: &[],
                warnings: 7,
            },
            // Duplicates collapse; extra words make the option malformed.
            Case {
                opts: &[
                    "dhcp-option DNS 10.8.0.1",
                    "dhcp-option DNS 10.8.0.1",
                    "dhcp-option DNS 10.8.0.2 10.8.0.3",
                ],
                servers: &["10.8.0.1"],
                search: &[],
                warnings: 1,
            },
            // Domains: lowercased, trailing dot dropped, bad ones refused.
            Case {
                opts: &[
                    "dhcp-option DOMAIN Corp.Example.",
                    "dhcp-option DOMAIN-SEARCH lab.example",
                    "dhcp-option DOMAIN bad..example",
                    "dhcp-option DOMAIN -x.example",
                    "dhcp-option DOMAIN a;b",
                    "dhcp-option ADAPTER_DOMAIN_SUFFIX x.example",
                ],
                servers: &[],
                search: &["corp.example", "lab.example", "x.example"],
                warnings: 3,
            },
            // `dns server` replaces dhcp-option servers; port 53 is fine, others are not.
            Case {
                opts: &[
                    "dhcp-option DNS 10.8.0.1",
                    "dns server 0 address 10.9.0.1 [fd00::53]:53 10.9.0.2:5353",
                    "dns search-domains a.example b.example",
                    "dhcp-option DOMAIN c.example",
                ],
                servers: &["10.9.0.1", "fd00::53"],
                search: &["a.example", "b.example", "c.example"],
                warnings: 1,
            },
            // Not DNS: untouched.
            Case {
                opts: &[
                    "dhcp-option WINS 10.8.0.1",
                    "dhcp-option NTP 10.8.0.1",
                    "redirect-gateway def1",
                ],
                servers: &[],
                search: &[],
                warnings: 0,
            },
        ];
        for (i, c) in cases.iter().enumerate() {
            let d = dns_from_options(c.opts);
            assert_eq!(
                d.config.servers,
                ips(c.servers),
                "case {i}: {:?}",
                d.warnings
            );
            let search: Vec<String> = c.search.iter().map(|s| s.to_string()).collect();
            assert_eq!(d.config.search, search, "case {i}");
            assert_eq!(d.warnings.len(), c.warnings, "case {i}: {:?}", d.warnings);
        }
    }

    #[test]
    fn lists_are_bounded() {
        let opts: Vec<String> = (1..=20)
            .map(|i| format!("dhcp-option DNS 10.8.0.{i}"))
            .chain((1..=20).map(|i| format!("dhcp-option DOMAIN d{i}.example")))
            .collect();
        let d = dns_from_options(&opts);
        assert_eq!(d.config.servers.len(), MAX_DNS_SERVERS);
        assert_eq!(d.config.search.len(), MAX_SEARCH_DOMAINS);
        assert_eq!(
            d.warnings.len(),
            (20 - MAX_DNS_SERVERS) + (20 - MAX_SEARCH_DOMAINS)
        );
    }
}
