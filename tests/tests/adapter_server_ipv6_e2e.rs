//! Issue 11, item 17: speed limits hold over IPv6. A real `openvpn` server that pushes IPv6
//! (`server-ipv6`), the server adapter's monitor (`--client-auth`, tc shaping), an agent
//! core, and a real OpenVPN client, in two network namespaces: iperf3 over IPv6 through the
//! tunnel, download and upload, measures the offering's maximum speeds within ±5 %.
//!
//! HTB limits the IP packets inside the tunnel, iperf3 reports TCP goodput: each packet of
//! `mss` payload bytes carries 72 more (IPv6 40, TCP 20, timestamps 12), so the rate compared
//! with the offering is the goodput × (mss + 72) / mss, with iperf3's own MSS (1,428 of 1,500
//! bytes here: goodput alone is 4.8 % below the IP rate).
//! (Before the fix only the client's IPv4 address was classified, so its IPv6 traffic ran
//! at the link's speed.)

use std::net::Ipv6Addr;
use std::time::Duration;

use anyhow::{ensure, Result};
use e2e::adapters::{client_classes, tc, AgentCore};
use e2e::*;
use service_api::ServiceStatus;

const TIMEOUT: Duration = Duration::from_secs(30);
/// The agent core, on the server namespace's own loopback.
const AGENT_LISTEN: &str = "127.0.0.1:7700";
const PORT: u16 = 1194;
const IPERF_PORT: u16 = 5201;
/// The IPv6 pool; OpenVPN's server takes its first address.
const POOL6: &str = "fd00:8:17::/64";
const SERVER6: Ipv6Addr = Ipv6Addr::new(0xfd00, 8, 0x17, 0, 0, 0, 0, 1);
const IPERF_SECONDS: &str = "6";
/// The offering's limits, Mbit/s.
const MAX_DOWN: f64 = 8.0;
const MAX_UP: f64 = 4.0;

/// IPv6 + TCP + timestamp option header bytes per packet.
const HEADERS: f64 = 72.0;

/// One measurement: goodput and the IP-level rate inside the tunnel, bits per second.
struct Measured {
    goodput_bps: f64,
    ip_bps: f64,
}

/// iperf3 from the client namespace to the server's tunnel IPv6 address.
fn iperf6(ns: &Netns, reverse: bool) -> Result<Measured> {
    let port = IPERF_PORT.to_string();
    let server = SERVER6.to_string();
    let mut argv = vec![
        "timeout",
        "60",
        "iperf3",
        "-6",
        "-c",
        &server,
        "-p",
        &port,
        "-t",
        IPERF_SECONDS,
        // The first second (TCP slow start) is left out of the totals.
        "-O",
        "1",
        "-J",
        "--connect-timeout",
        "5000",
    ];
    if reverse {
        argv.push("-R");
    }
    let out = ns.output(&argv)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "iperf3 {argv:?} failed ({}): {} {}",
        out.status,
        stdout.trim(),
        String::from_utf8_lossy(&out.stderr).trim()
    );
    let totals = parse_iperf3_json(&stdout)?;
    let json: serde_json::Value = serde_json::from_str(&stdout)?;
    let mss = json
        .pointer("/start/tcp_mss_default")
        .and_then(serde_json::Value::as_f64)
        .filter(|m| *m > 0.0)
        .ok_or_else(|| anyhow::anyhow!("iperf3 JSON has no start.tcp_mss_default"))?;
    let goodput_bps = totals.received_bps;
    Ok(Measured {
        goodput_bps,
        ip_bps: goodput_bps * (mss + HEADERS) / mss,
    })
}

/// Asserts max·0.95 ≤ the IP-level rate ≤ max·1.05.
fn within_5_percent(what: &str, measured: &Measured, max_mbit: f64) -> Result<()> {
    let m = measured.ip_bps / 1e6;
    eprintln!(
        "shaping over IPv6: {what}: {m:.2} Mbit/s of IP packets, {:.2} Mbit/s goodput (max {max_mbit})",
        measured.goodput_bps / 1e6
    );
    ensure!(
        m <= max_mbit * 1.05 && m >= max_mbit * 0.95,
        "{what}: {m:.2} Mbit/s is outside [{:.2}, {:.2}] for a max of {max_mbit} Mbit/s",
        max_mbit * 0.95,
        max_mbit * 1.05
    );
    Ok(())
}

#[test]
fn ipv6_traffic_is_limited_to_the_offering() -> Result<()> {
    let Some(env) =
        TestEnv::with_bins("adapter_server_ipv6_e2e", &["core-lite", "adapter-server"])?
    else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    {
        let hosts = TwoHosts::new(&env)?;
        let (srv_ns, cli_ns) = (&hosts.server_ns, &hosts.client_ns);
        let endpoint = format!("{}:{PORT}", hosts.server_addr());
        let agent = AgentCore::create(
            &env,
            AGENT_LISTEN.parse()?,
            &endpoint,
            1000,
            Some(("8", "4")),
        )?;
        let channel = agent.new_channel(&env)?;
        let _agent_serve = agent.core.serve(&env, Some(srv_ns), agent.listen)?;

        let mgmt = env.path("mgmt.sock");
        let server = OpenVpnServer::new(&env, srv_ns, &hosts.pki)
            .local(hosts.server_addr())
            .port(PORT)
            .management_unix(&mgmt)
            .management_client_auth(true)
            .extra(&format!("server-ipv6 {POOL6}"))
            .start()?;
        let tun = server.dev().to_string();
        let ifb = env.unique_name('i');
        let args = [
            "--tun",
            &tun,
            "--ifb",
            &ifb,
            "--link-capacity",
            "100mbit",
            "--max-clients",
            "16",
            "--client-auth",
        ];
        let monitor = agent.monitor(&env, srv_ns, &mgmt, &args)?;
        monitor.wait_for_line("shaping set up", TIMEOUT)?;

        let client = OpenVpnClient::new(&env, cli_ns, &hosts.pki, hosts.server_addr(), PORT)
            .credentials(&channel.key, &channel.password)
            .start()?;
        client.wait_connected(TIMEOUT)?;
        wait_for(TIMEOUT, "the channel to be active with a session", || {
            let i = agent.channel(&channel.key)?;
            Ok((i.status == ServiceStatus::Active && i.open_session.is_some()).then_some(()))
        })?;
        // The client's classes, with IPv6 filters on both devices (destination on the tun,
        // source on the IFB).
        wait_until(TIMEOUT, "the client's classes and IPv6 filters", || {
            let shown = |dev: &str| tc(srv_ns, &["filter", "show", "dev", dev, "parent", "1:"]);
            client_classes(srv_ns, &tun).is_ok_and(|c| c.len() == 1)
                && client_classes(srv_ns, &ifb).is_ok_and(|c| c.len() == 1)
                && shown(&tun).is_ok_and(|f| f.contains("fd000008/ffffffff at 24"))
                && shown(&ifb).is_ok_and(|f| f.contains("fd000008/ffffffff at 8"))
        })?;

        let iperf = srv_ns
            .spawn("iperf3")
            .args([
                "-s",
                "--forceflush",
                "-B",
                &SERVER6.to_string(),
                "-p",
                &IPERF_PORT.to_string(),
            ])
            .label("iperf3-server-v6")
            .spawn(&env)?;
        iperf.wait_for_line("Server listening", TIMEOUT)?;
        let down = iperf6(cli_ns, true)?;
        let up = iperf6(cli_ns, false)?;
        within_5_percent("download", &down, MAX_DOWN)?;
        within_5_percent("upload", &up, MAX_UP)?;

        client.proc.terminate(TIMEOUT)?;
        let status = monitor.terminate(TIMEOUT)?;
        ensure!(status.success(), "monitor exited with {status}");
    }
    leaks.wait_clean(TIMEOUT)?;
    Ok(())
}
