//! What the DNS, kill-switch and full-tunnel tests observe with: a tiny UDP DNS responder
//! that records who asked, a namespace's own `/etc/resolv.conf` (`/etc/netns/NS/`), an
//! nftables accounting table of counters by comment, a TCP server that answers with the
//! caller's address, and name lookups with `getent` inside a namespace.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::netns::Netns;

/// One query a [`DnsResponder`] answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DnsQuery {
    pub from: SocketAddr,
    pub name: String,
    pub qtype: u16,
}

/// A DNS server on one UDP address inside a namespace: answers every A query with
/// `answer` (AAAA and others: no data) and records each query. Stopped on drop.
pub struct DnsResponder {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    queries: Arc<Mutex<Vec<DnsQuery>>>,
    addr: SocketAddr,
}

/// The name in a DNS question starting at byte 12, and the offset after it.
fn parse_qname(msg: &[u8]) -> Option<(String, usize)> {
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*msg.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None; // no compression in questions
        }
        labels.push(String::from_utf8_lossy(msg.get(i..i + len)?).into_owned());
        i += len;
    }
    Some((labels.join("."), i))
}

/// The answer to `query`, when it is a one-question standard query.
pub fn dns_answer(query: &[u8], answer: Ipv4Addr) -> Option<(Vec<u8>, String, u16)> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    let (name, end) = parse_qname(query)?;
    let qtype = u16::from_be_bytes([*query.get(end)?, *query.get(end + 1)?]);
    let question = query.get(12..end + 4)?;
    let is_a = qtype == 1;
    let mut r = Vec::with_capacity(64);
    r.extend_from_slice(&query[0..2]); // id
    r.extend_from_slice(&[0x81, 0x80]); // response, recursion desired + available, NOERROR
    r.extend_from_slice(&[0, 1, 0, u8::from(is_a), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if is_a {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        r.extend_from_slice(&answer.octets());
    }
    Some((r, name, qtype))
}

impl DnsResponder {
    /// Serves `addr` (e.g. `10.8.X.1:53`) inside `ns`.
    pub fn start(ns: &Netns, addr: SocketAddr, answer: Ipv4Addr) -> Result<DnsResponder> {
        let socket = ns
            .enter(|| UdpSocket::bind(addr))?
            .with_context(|| format!("binding the DNS responder to {addr} in {}", ns.name()))?;
        socket.set_read_timeout(Some(Duration::from_millis(100)))?;
        let stop = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(Mutex::new(Vec::new()));
        let (stop2, queries2) = (stop.clone(), queries.clone());
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop2.load(Ordering::Relaxed) {
                let Ok((n, from)) = socket.recv_from(&mut buf) else {
                    continue;
                };
                if let Some((reply, name, qtype)) = dns_answer(&buf[..n], answer) {
                    if let Ok(mut q) = queries2.lock() {
                        q.push(DnsQuery { from, name, qtype });
                    }
                    let _ = socket.send_to(&reply, from);
                }
            }
        });
        Ok(DnsResponder {
            stop,
            thread: Some(thread),
            queries,
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every query answered so far.
    pub fn queries(&self) -> Vec<DnsQuery> {
        self.queries.lock().map(|q| q.clone()).unwrap_or_default()
    }

    /// The queries for `name`.
    pub fn queries_for(&self, name: &str) -> Vec<DnsQuery> {
        self.queries()
            .into_iter()
            .filter(|q| q.name.eq_ignore_ascii_case(name))
            .collect()
    }
}

impl Drop for DnsResponder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `/etc/netns/NS/resolv.conf`: what `ip netns exec NS` shows as `/etc/resolv.conf` (a
/// bind mount), so nothing run in the namespace can touch the host's file. Removed (with
/// the directory) on drop.
pub struct NetnsResolvConf {
    dir: PathBuf,
    file: PathBuf,
}

impl NetnsResolvConf {
    pub fn create(ns: &Netns, text: &str) -> Result<NetnsResolvConf> {
        let dir = PathBuf::from("/etc/netns").join(ns.name());
        // Another test's guard may remove an empty /etc/netns at the same moment: retry.
        let mut made = std::fs::create_dir_all(&dir);
        for _ in 0..3 {
            if made.is_ok() {
                break;
            }
            made = std::fs::create_dir_all(&dir);
        }
        made.with_context(|| format!("creating {}", dir.display()))?;
        let file = dir.join("resolv.conf");
        let guard = NetnsResolvConf { dir, file };
        std::fs::write(&guard.file, text)
            .with_context(|| format!("writing {}", guard.file.display()))?;
        Ok(guard)
    }

    /// The file as the host sees it (the namespace's `/etc/resolv.conf`).
    pub fn path(&self) -> &std::path::Path {
        &self.file
    }

    pub fn read(&self) -> Result<String> {
        std::fs::read_to_string(&self.file)
            .with_context(|| format!("reading {}", self.file.display()))
    }
}

impl Drop for NetnsResolvConf {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let _ = std::fs::remove_dir(&self.dir);
        // /etc/netns itself goes too when no other namespace uses it.
        let _ = std::fs::remove_dir("/etc/netns");
    }
}

/// An nftables table of the test in a namespace (`inet e2e_acct`), one postrouting chain at
/// priority 300 — after every filter, so a counter counts only packets that really leave —
/// whose rules are `MATCH counter accept comment "NAME"`. The table goes with the
/// namespace.
pub struct NftCounters<'a> {
    ns: &'a Netns,
}

pub const ACCT_TABLE: &str = "e2e_acct";

impl<'a> NftCounters<'a> {
    /// `rules`: `(name, match)` pairs, e.g. `("leak", "oifname \"veth\"")`; the first
    /// matching rule counts a packet.
    pub fn install(ns: &'a Netns, rules: &[(&str, &str)]) -> Result<NftCounters<'a>> {
        let mut script = format!(
            "table inet {ACCT_TABLE} {{\n chain post {{\n  type filter hook postrouting priority 300; policy accept;\n"
        );
        for (name, m) in rules {
            if name.contains('"') {
                bail!("bad counter name {name:?}");
            }
            script.push_str(&format!("  {m} counter accept comment \"{name}\"\n"));
        }
        script.push_str(" }\n}\n");
        let path = std::env::temp_dir().join(format!("{}.{ACCT_TABLE}.nft", ns.name()));
        std::fs::write(&path, &script)?;
        let res = ns.run(&["nft", "-f", path.to_str().context("temp path")?]);
        let _ = std::fs::remove_file(&path);
        res.with_context(|| format!("installing the accounting table:\n{script}"))?;
        Ok(NftCounters { ns })
    }

    /// `(packets, bytes)` of the counter `name`.
    pub fn get(&self, name: &str) -> Result<(u64, u64)> {
        let out = self.ns.run(&["nft", "list", "table", "inet", ACCT_TABLE])?;
        parse_counter(&out, name).with_context(|| format!("no counter {name:?} in:\n{out}"))
    }
}

/// `(packets, bytes)` of the rule with `comment "NAME"` in `nft list` output.
pub fn parse_counter(out: &str, name: &str) -> Option<(u64, u64)> {
    let tag = format!("comment \"{name}\"");
    let line = out.lines().find(|l| l.trim_end().ends_with(&tag))?;
    let w: Vec<&str> = line.split_whitespace().collect();
    let after = |k: &str| -> Option<u64> {
        let i = w.iter().position(|x| *x == k)?;
        w.get(i + 1)?.parse().ok()
    };
    Some((after("packets")?, after("bytes")?))
}

/// A TCP server that writes the caller's IP address (as text) and closes: which source
/// address a connection came from shows which way it took. Stopped on drop.
pub struct WhoAmI {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl WhoAmI {
    pub fn start(ns: &Netns, addr: SocketAddr) -> Result<WhoAmI> {
        let listener = ns.tcp_listen(addr)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || serve_whoami(&listener, &stop2));
        Ok(WhoAmI {
            stop,
            thread: Some(thread),
            addr,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

fn serve_whoami(listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((mut s, peer)) => {
                let _ = s.set_nonblocking(false);
                let _ = s.write_all(format!("{}\n", peer.ip()).as_bytes());
                let _ = s.shutdown(Shutdown::Both);
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for WhoAmI {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Asks a [`WhoAmI`] at `addr` from inside `ns`: the source address it saw.
pub fn whoami(ns: &Netns, addr: SocketAddr, timeout: Duration) -> Result<IpAddr> {
    let mut s = ns.tcp_connect(addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    text.trim()
        .parse()
        .with_context(|| format!("whoami answered {text:?}"))
}

/// `getent hosts NAME` inside `ns`: the addresses it resolved to (empty when the lookup
/// failed).
pub fn lookup(ns: &Netns, name: &str) -> Result<Vec<IpAddr>> {
    let out = ns.output(&["getent", "hosts", name])?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
        let mut q = id.to_be_bytes().to_vec();
        q.extend_from_slice(&[1, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn answers_a_queries_and_nothing_else() {
        let ip = Ipv4Addr::new(198, 51, 100, 53);
        let q = query(0x1234, "probe.vpn.test", 1);
        let (r, name, qtype) = dns_answer(&q, ip).expect("answer");
        assert_eq!((name.as_str(), qtype), ("probe.vpn.test", 1));
        assert_eq!(&r[0..2], &[0x12, 0x34]);
        assert_eq!(&r[6..8], &[0, 1], "one answer");
        assert_eq!(&r[r.len() - 4..], &ip.octets());
        let (r, _, qtype) = dns_answer(&query(7, "probe.vpn.test", 28), ip).expect("aaaa");
        assert_eq!(qtype, 28);
        assert_eq!(&r[6..8], &[0, 0], "no AAAA data");
        assert_eq!(r.len(), q.len(), "the question only");
        // A response, or garbage: no answer.
        let mut resp = q.clone();
        resp[2] |= 0x80;
        assert!(dns_answer(&resp, ip).is_none());
        assert!(dns_answer(&[0; 5], ip).is_none());
    }

    #[test]
    fn counters_are_read_by_comment() {
        let out = "table inet e2e_acct {\n\tchain post {\n\t\ttype filter hook postrouting priority 300; policy accept;\n\t\toifname \"v1\" udp dport 53 counter packets 3 bytes 180 accept comment \"dns-veth\"\n\t\toifname \"v1\" counter packets 0 bytes 0 accept comment \"leak\"\n\t}\n}\n";
        assert_eq!(parse_counter(out, "dns-veth"), Some((3, 180)));
        assert_eq!(parse_counter(out, "leak"), Some((0, 0)));
        assert_eq!(parse_counter(out, "other"), None);
    }
}
