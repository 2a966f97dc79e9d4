//! The server's plan against the real kernel, IPv4 and IPv6, with real packets: the test
//! thread unshares its own network namespace (gone with the thread, with every device in
//! it), makes a veth pair whose far end lives in a second namespace (a client at
//! 10.9.0.6 / fd09::6), installs the setup and a client's limits on the near end, sends
//! IPv6 datagrams to the client and checks that both the download class (veth egress,
//! matched on the IPv6 destination) and the upload class (IFB, the client's ICMPv6 answers
//! matched on the IPv6 source) counted them. Needs root, iproute2, and the HTB / u32 /
//! mirred / IFB kernel modules.

use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use service_api::SpeedLimits;
use tc_shaper::{ipv6_cleanup_commands, run_each, ClientAddrs, Shaper, ShapingConfig, Tools};

fn sh(program: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .with_context(|| program.to_string())?;
    if !out.status.success() {
        bail!(
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The far namespace, removed on drop (also on panic).
struct Peer(String);

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// Packets counted by class `classid` on `dev` (`tc -s class show`).
fn class_packets(dev: &str, classid: &str) -> Result<u64> {
    let out = sh("tc", &["-s", "class", "show", "dev", dev])?;
    let mut lines = out.lines();
    while let Some(l) = lines.next() {
        if l.starts_with(&format!("class htb {classid} ")) {
            for l in lines.by_ref() {
                if let Some(rest) = l.trim_start().strip_prefix("Sent ") {
                    // "Sent 1234 bytes 5 pkt (dropped ..."
                    let pkts = rest.split_whitespace().nth(2).context("no packet count")?;
                    return Ok(pkts.parse()?);
                }
            }
        }
    }
    bail!("class {classid} not on {dev}: {out}")
}

fn in_private_netns() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .context("unshare(CLONE_NEWNET) (needs root)")?;
    let peer = Peer(format!("tcsh-peer-{}", std::process::id()));
    sh("ip", &["netns", "add", &peer.0])?;
    sh("ip", &["link", "set", "lo", "up"])?;
    sh(
        "ip",
        &[
            "link", "add", "vtc0", "type", "veth", "peer", "name", "vtc1",
        ],
    )?;
    sh("ip", &["link", "set", "vtc1", "netns", &peer.0])?;
    sh("ip", &["addr", "add", "10.9.0.1/24", "dev", "vtc0"])?;
    sh(
        "ip",
        &["-6", "addr", "add", "fd09::1/64", "dev", "vtc0", "nodad"],
    )?;
    sh("ip", &["link", "set", "vtc0", "up"])?;
    let p = |args: &[&str]| {
        let mut full = vec!["-n", peer.0.as_str()];
        full.extend_from_slice(args);
        sh("ip", &full)
    };
    p(&["link", "set", "lo", "up"])?;
    p(&["addr", "add", "10.9.0.6/24", "dev", "vtc1"])?;
    p(&["-6", "addr", "add", "fd09::6/64", "dev", "vtc1", "nodad"])?;
    p(&["link", "set", "vtc1", "up"])?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cfg = ShapingConfig {
            tun: "vtc0".into(),
            ifb: "ifb-vtc0".into(),
            link_bps: 1_000_000_000,
            max_clients: 4,
            netns: None,
        };
        let mut shaper = Shaper::new(cfg.clone());
        shaper.setup().await?;
        let speed = SpeedLimits {
            min_download_bps: Some(1_000_000),
            max_download_bps: Some(8_000_000),
            min_upload_bps: Some(1_000_000),
            max_upload_bps: Some(4_000_000),
        };
        let client = ClientAddrs {
            v4: Ipv4Addr::new(10, 9, 0, 6),
            v6: Some(Ipv6Addr::new(0xfd09, 0, 0, 0, 0, 0, 0, 6)),
        };
        shaper.apply(1, client, &speed).await?;
        // A second client, IPv4 only, in the next slot.
        shaper.apply(2, Ipv4Addr::new(10, 9, 0, 7), &speed).await?;
        assert_eq!(shaper.installed(), 2);
        let f = sh("tc", &["filter", "show", "dev", "vtc0", "parent", "1:"])?;
        assert!(f.contains("fh 2:6:1") && f.contains("fh 2:7:2"), "{f}");
        assert!(f.contains("protocol ipv6") && f.contains("fh 3:6:1"), "{f}");
        assert!(f.contains("match 00000006/ffffffff at 36"), "{f}");
        assert!(f.contains("hash mask 000000ff at 36"), "{f}");
        let f = sh("tc", &["filter", "show", "dev", "ifb-vtc0", "parent", "1:"])?;
        assert!(
            f.contains("fh 3:6:1") && f.contains("hash mask 000000ff at 20"),
            "{f}"
        );
        assert!(f.contains("match 00000006/ffffffff at 20"), "{f}");

        // IPv6 traffic to the client: the veth egress classifies it by destination, and
        // the client's ICMPv6 answers (nothing listens) come back through the IFB,
        // classified by source.
        assert_eq!(class_packets("vtc0", "1:2")?, 0);
        let sock = UdpSocket::bind("[fd09::1]:0")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            sock.send_to(b"hello", "[fd09::6]:9")?;
            let down = class_packets("vtc0", "1:2")?;
            let up = class_packets("ifb-vtc0", "1:2")?;
            if down > 0 && up > 0 {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "IPv6 not classified: download {down}, upload {up} packets"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(class_packets("vtc0", "1:3")?, 0, "the other client's class");

        // Removing client 1 removes its IPv4 and IPv6 filters and nothing else.
        shaper.remove(1).await;
        let f = sh("tc", &["filter", "show", "dev", "vtc0", "parent", "1:"])?;
        assert!(!f.contains("fh 2:6:1") && !f.contains("fh 3:6:1"), "{f}");
        assert!(
            f.contains("fh 2:7:2") && f.contains("fh 3: ht divisor 256"),
            "{f}"
        );
        // The IPv6 classification can be removed on its own; IPv4 stays.
        let errs = run_each(&ipv6_cleanup_commands(&cfg, &Tools::default())).await;
        assert!(errs.is_empty(), "{errs:?}");
        let f = sh("tc", &["filter", "show", "dev", "vtc0", "parent", "1:"])?;
        assert!(!f.contains("ipv6") && f.contains("fh 2:7:2"), "{f}");

        shaper.teardown().await;
        let q = sh("tc", &["qdisc", "show", "dev", "vtc0"])?;
        assert!(!q.contains("htb") && !q.contains("ingress"), "{q}");
        assert!(
            sh("ip", &["link", "show", "ifb-vtc0"]).is_err(),
            "IFB removed"
        );
        Ok(())
    })
}

#[test]
fn per_client_plan_classifies_ipv4_and_ipv6_in_a_private_netns() -> Result<()> {
    // A dedicated thread: unshare only changes this thread's namespace (and the processes
    // it starts), and the namespace disappears when the thread ends, even on a panic.
    std::thread::spawn(in_private_netns)
        .join()
        .map_err(|_| anyhow::anyhow!("the netns thread panicked"))?
}
