//! The real `tc` / `ip` commands of the shaper, inside a network namespace this test
//! creates (and always deletes). Needs root, iproute2, and the HTB / u32 / mirred / IFB
//! kernel modules.

use std::net::Ipv4Addr;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

mod common;

use std::time::Duration;

use adapter_server::monitor::{self, MgmtAddr, MonitorConfig};
use anyhow::{bail, Context};
use common::{client_block, fixture, wait_for, FakeMgmt};
use service_api::Client;
use service_api::SpeedLimits;
use tc_shaper::{Shaper, ShapingConfig};
use tokio_util::sync::CancellationToken;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A network namespace removed on drop (also on panic).
struct NetNs(String);

impl NetNs {
    fn new() -> anyhow::Result<Self> {
        let name = format!(
            "srvtc-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        sh(&["ip", "netns", "add", &name])?;
        let ns = NetNs(name);
        sh(&[
            "ip", "-n", &ns.0, "tuntap", "add", "mode", "tun", "dev", "tun0",
        ])?;
        sh(&[
            "ip",
            "-n",
            &ns.0,
            "addr",
            "add",
            "10.8.0.1/24",
            "dev",
            "tun0",
        ])?;
        sh(&["ip", "-n", &ns.0, "link", "set", "tun0", "up"])?;
        Ok(ns)
    }
    fn out(&self, args: &[&str]) -> anyhow::Result<String> {
        let mut full = vec![args[0], "-n", &self.0];
        full.extend_from_slice(&args[1..]);
        sh(&full)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn sh(args: &[&str]) -> anyhow::Result<String> {
    let o = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("running {args:?}"))?;
    if !o.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    }
    Ok(String::from_utf8_lossy(&o.stdout).into_owned())
}

fn speed(down: u64, up: u64) -> SpeedLimits {
    SpeedLimits {
        min_download_bps: Some(1_000_000),
        max_download_bps: Some(down),
        min_upload_bps: None,
        max_upload_bps: Some(up),
    }
}

#[tokio::test]
async fn shaper_installs_and_removes_exactly() -> anyhow::Result<()> {
    let ns = NetNs::new()?;
    let cfg = ShapingConfig {
        tun: "tun0".into(),
        ifb: "ifb-tun0".into(),
        link_bps: 1_000_000_000,
        max_clients: 3,
        netns: Some(ns.0.clone()),
    };
    let mut sh = Shaper::new(cfg);
    sh.setup().await?;
    // A second setup replaces the first (stale setup of a crashed run).
    sh.setup().await?;
    let q = ns.out(&["tc", "qdisc", "show", "dev", "tun0"])?;
    assert!(q.contains("qdisc htb 1: root"), "{q}");
    assert!(q.contains("qdisc ingress ffff:"), "{q}");
    let q = ns.out(&["tc", "qdisc", "show", "dev", "ifb-tun0"])?;
    assert!(q.contains("qdisc htb 1: root"), "{q}");

    sh.apply(1, Ipv4Addr::new(10, 8, 0, 6), &speed(8_000_000, 4_000_000))
        .await?;
    sh.apply(2, Ipv4Addr::new(10, 8, 0, 7), &speed(2_000_000, 1_000_000))
        .await?;
    // No limits: no class.
    sh.apply(9, Ipv4Addr::new(10, 8, 0, 9), &SpeedLimits::default())
        .await?;
    assert_eq!(sh.installed(), 2);
    let c = ns.out(&["tc", "class", "show", "dev", "tun0"])?;
    assert!(
        c.contains("class htb 1:2 parent 1:1") && c.contains("ceil 8Mbit"),
        "{c}"
    );
    assert!(
        c.contains("class htb 1:3 parent 1:1") && c.contains("ceil 2Mbit"),
        "{c}"
    );
    let c = ns.out(&["tc", "class", "show", "dev", "ifb-tun0"])?;
    assert!(
        c.contains("class htb 1:2 parent 1:1") && c.contains("ceil 4Mbit"),
        "{c}"
    );
    let f = ns.out(&["tc", "filter", "show", "dev", "tun0", "parent", "1:"])?;
    assert!(f.contains("fh 2:6:1") && f.contains("fh 2:7:2"), "{f}");
    let f = ns.out(&["tc", "filter", "show", "dev", "ifb-tun0", "parent", "1:"])?;
    assert!(f.contains("match 0a080006/ffffffff at 12"), "{f}");

    // Removing client 1 leaves client 2 untouched.
    sh.remove(1).await;
    let c = ns.out(&["tc", "class", "show", "dev", "tun0"])?;
    assert!(!c.contains("class htb 1:2 "), "{c}");
    assert!(c.contains("class htb 1:3 "), "{c}");
    let f = ns.out(&["tc", "filter", "show", "dev", "tun0", "parent", "1:"])?;
    assert!(!f.contains("fh 2:6:1") && f.contains("fh 2:7:2"), "{f}");
    let c = ns.out(&["tc", "class", "show", "dev", "ifb-tun0"])?;
    assert!(
        !c.contains("class htb 1:2 ") && c.contains("class htb 1:3 "),
        "{c}"
    );

    // Its slot is reused; a full allocator refuses without touching others.
    sh.apply(3, Ipv4Addr::new(10, 8, 0, 8), &speed(3_000_000, 3_000_000))
        .await?;
    let c = ns.out(&["tc", "class", "show", "dev", "tun0"])?;
    assert!(
        c.contains("class htb 1:2 ") && c.contains("ceil 3Mbit"),
        "{c}"
    );
    sh.apply(4, Ipv4Addr::new(10, 8, 0, 10), &speed(3_000_000, 3_000_000))
        .await?;
    assert!(sh
        .apply(5, Ipv4Addr::new(10, 8, 0, 11), &speed(3_000_000, 3_000_000))
        .await
        .is_err());
    assert_eq!(sh.installed(), 3);

    sh.teardown().await;
    let q = ns.out(&["tc", "qdisc", "show", "dev", "tun0"])?;
    assert!(!q.contains("htb") && !q.contains("ingress"), "{q}");
    let links = ns.out(&["ip", "link", "show"])?;
    assert!(!links.contains("ifb-tun0"), "{links}");
    Ok(())
}

/// The monitor shapes a client at ESTABLISHED from the offering's speeds and removes
/// exactly that at DISCONNECT; shutdown removes the whole setup.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shapes_from_offering_speeds() -> anyhow::Result<()> {
    let ns = NetNs::new()?;
    let f = fixture(Some(("8", "4"))).await?;
    let fake = FakeMgmt::start()?;
    let mut cfg = MonitorConfig::new(MgmtAddr::Unix(fake.path.clone()));
    cfg.tick = Duration::from_millis(100);
    cfg.shaping = Some(ShapingConfig {
        tun: "tun0".into(),
        ifb: "ifb-tun0".into(),
        link_bps: 100_000_000,
        max_clients: 16,
        netns: Some(ns.0.clone()),
    });
    let client = Client::new(&f.core.url, f.token.clone(), Duration::from_secs(2))?;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(monitor::run(cfg, client, cancel.clone()));
    wait_for("monitor asked for status", || {
        (fake.count("status 3") >= 1).then_some(())
    })
    .await?;
    let env = [
        ("username", f.key.0.as_str()),
        ("untrusted_ip", "192.0.2.7"),
        ("untrusted_port", "50123"),
        ("time_unix", "1700000000"),
        ("ifconfig_pool_remote_ip", "10.8.0.6"),
    ];
    fake.send(&client_block("ESTABLISHED,1", &env))?;
    wait_for("download class on tun0", || {
        let c = ns.out(&["tc", "class", "show", "dev", "tun0"]).ok()?;
        (c.contains("class htb 1:2 parent 1:1") && c.contains("rate 1Mbit ceil 8Mbit"))
            .then_some(())
    })
    .await?;
    wait_for("upload class on the IFB", || {
        let c = ns.out(&["tc", "class", "show", "dev", "ifb-tun0"]).ok()?;
        (c.contains("class htb 1:2 parent 1:1") && c.contains("rate 1Mbit ceil 4Mbit"))
            .then_some(())
    })
    .await?;
    let f_out = ns.out(&["tc", "filter", "show", "dev", "tun0", "parent", "1:"])?;
    assert!(f_out.contains("match 0a080006/ffffffff at 16"), "{f_out}");

    let mut denv = env.to_vec();
    denv.push(("bytes_received", "10"));
    denv.push(("bytes_sent", "20"));
    fake.send(&client_block("DISCONNECT,1", &denv))?;
    wait_for("client classes removed", || {
        let a = ns.out(&["tc", "class", "show", "dev", "tun0"]).ok()?;
        let b = ns.out(&["tc", "class", "show", "dev", "ifb-tun0"]).ok()?;
        let fl = ns
            .out(&["tc", "filter", "show", "dev", "tun0", "parent", "1:"])
            .ok()?;
        (!a.contains("1:2 ") && !b.contains("1:2 ") && !fl.contains("0a080006")).then_some(())
    })
    .await?;
    cancel.cancel();
    task.await??;
    let q = ns.out(&["tc", "qdisc", "show", "dev", "tun0"])?;
    assert!(
        !q.contains("htb") && !q.contains("ingress"),
        "setup left behind: {q}"
    );
    Ok(())
}

/// Issue 11, item 17: a client with an IPv6 VPN address (`server-ipv6`) is shaped on IPv6
/// too, in both directions, and the IPv6 filters go with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_shapes_the_ipv6_address_too() -> anyhow::Result<()> {
    let ns = NetNs::new()?;
    let f = fixture(Some(("8", "4"))).await?;
    let fake = FakeMgmt::start()?;
    let mut cfg = MonitorConfig::new(MgmtAddr::Unix(fake.path.clone()));
    cfg.tick = Duration::from_millis(100);
    cfg.shaping = Some(ShapingConfig {
        tun: "tun0".into(),
        ifb: "ifb-tun0".into(),
        link_bps: 100_000_000,
        max_clients: 16,
        netns: Some(ns.0.clone()),
    });
    let client = Client::new(&f.core.url, f.token.clone(), Duration::from_secs(2))?;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(monitor::run(cfg, client, cancel.clone()));
    wait_for("monitor asked for status", || {
        (fake.count("status 3") >= 1).then_some(())
    })
    .await?;
    let env = [
        ("username", f.key.0.as_str()),
        ("untrusted_ip", "192.0.2.7"),
        ("untrusted_port", "50123"),
        ("time_unix", "1700000000"),
        ("ifconfig_pool_remote_ip", "10.8.0.6"),
        ("ifconfig_pool_remote_ip6", "fd00:8::1000"),
    ];
    fake.send(&client_block("ESTABLISHED,1", &env))?;
    // fd00:8::1000 is the words fd000008 00000000 00000000 00001000: destination (offset
    // 24) on the tun (download), source (offset 8) on the IFB (upload).
    let filters = |dev: &str| ns.out(&["tc", "filter", "show", "dev", dev, "parent", "1:"]);
    wait_for("IPv6 filters on the tun and the IFB", || {
        let down = filters("tun0").ok()?;
        let up = filters("ifb-tun0").ok()?;
        (down.contains("fd000008/ffffffff at 24")
            && down.contains("00001000/ffffffff at 36")
            && up.contains("fd000008/ffffffff at 8")
            && up.contains("00001000/ffffffff at 20"))
        .then_some(())
    })
    .await?;
    let down = filters("tun0")?;
    assert!(down.contains("match 0a080006/ffffffff at 16"), "{down}");

    let mut denv = env.to_vec();
    denv.push(("bytes_received", "10"));
    denv.push(("bytes_sent", "20"));
    fake.send(&client_block("DISCONNECT,1", &denv))?;
    wait_for("the client's IPv6 filters removed", || {
        let down = filters("tun0").ok()?;
        let up = filters("ifb-tun0").ok()?;
        (!down.contains("fd000008") && !up.contains("fd000008")).then_some(())
    })
    .await?;
    cancel.cancel();
    task.await??;
    Ok(())
}
