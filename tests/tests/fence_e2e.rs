//! Issue 12 items 3 and 4 end to end: the monitor's nftables fence (`--nft`) with a real
//! OpenVPN server and client in two network namespaces and an agent core-lite.
//!
//! Shown here: while a client is connected it has a byte quota in the monitor's own table;
//! a client sending at full speed on a 20 MB channel is stopped by the kernel at its budget,
//! and the core ends with at most 1 MB past `maxUnits` (without the quota the whole second
//! between two reports went through); the monitor drops the client's traffic before it sends
//! `client-kill` (its log order, and the fence's own line first); the client's quota, chain
//! and map entries go with it, and the table goes with the monitor.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::adapters::AgentCore;
use e2e::*;
use service_api::ServiceStatus;

const TIMEOUT: Duration = Duration::from_secs(30);
const AGENT_LISTEN: &str = "127.0.0.1:7700";
const PORT: u16 = 1194;
const SINK_PORT: u16 = 7009;
/// The channel's maxUnits (MB).
const MAX_UNITS: u64 = 20;
const MB: u64 = 1_000_000;

/// `nft list table inet NAME` inside `ns` (None when the table does not exist).
fn nft_table(ns: &Netns, name: &str) -> Result<Option<String>> {
    let out = ns.output(&["nft", "list", "table", "inet", name])?;
    Ok(out
        .status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned()))
}

/// Index of the first line of `log` containing `needle`.
fn line_of(log: &str, needle: &str) -> Option<usize> {
    log.lines().position(|l| l.contains(needle))
}

#[test]
fn nft_quota_stops_a_full_speed_client_at_max_units_and_drop_comes_before_the_kill() -> Result<()> {
    let Some(env) = TestEnv::with_bins("fence_e2e", &["core-lite", "adapter-server"])? else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    {
        let hosts = TwoHosts::new(&env)?;
        let (srv_ns, cli_ns) = (&hosts.server_ns, &hosts.client_ns);
        let endpoint = format!("{}:{PORT}", hosts.server_addr());
        let agent = AgentCore::create(&env, AGENT_LISTEN.parse()?, &endpoint, MAX_UNITS, None)?;
        let channel = agent.new_channel(&env)?;
        let _agent_serve = agent.core.serve(&env, Some(srv_ns), agent.listen)?;
        let mgmt = env.path("mgmt.sock");
        let server = OpenVpnServer::new(&env, srv_ns, &hosts.pki)
            .local(hosts.server_addr())
            .port(PORT)
            .management_unix(&mgmt)
            .management_client_auth(true)
            .start()?;
        let table = format!("t_{}", env.unique_name('f').replace('-', "_"));
        let monitor = agent.monitor(
            &env,
            srv_ns,
            &mgmt,
            &[
                "--client-auth",
                "--no-shaping",
                "--nft",
                "--nft-table",
                &table,
            ],
        )?;
        monitor.wait_for_line("nftables fence set up", TIMEOUT)?;
        ensure!(nft_table(srv_ns, &table)?.is_some(), "no table {table}");

        // A sink on the server's tunnel address that reads everything.
        let sink_addr = SocketAddr::new(server.tunnel_ip().into(), SINK_PORT);
        let listener = srv_ns.tcp_listen(sink_addr)?;
        let sink = std::thread::spawn(move || -> u64 {
            let mut total = 0u64;
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    total += n as u64;
                }
            }
            total
        });

        let client = OpenVpnClient::new(&env, cli_ns, &hosts.pki, hosts.server_addr(), PORT)
            .credentials(&channel.key, &channel.password)
            .start()?;
        client.wait_connected(TIMEOUT)?;
        let vpn_ip = client.tunnel_ip()?;
        monitor.wait_for_line("client byte quota set", TIMEOUT)?;
        let listed = nft_table(srv_ns, &table)?.context("table gone")?;
        ensure!(
            listed.contains(&format!("{vpn_ip} : jump c"))
                && listed.contains(&format!("over {} bytes", MAX_UNITS * MB)),
            "no quota of {} bytes for {vpn_ip}:\n{listed}",
            MAX_UNITS * MB
        );

        // Full speed, far more than the channel holds: the kernel stops it at the budget.
        let mut stream = cli_ns.tcp_connect(sink_addr, TIMEOUT)?;
        stream.set_write_timeout(Some(Duration::from_secs(2)))?;
        let chunk = vec![0x5au8; 1 << 16];
        let mut sent = 0u64;
        let started = Instant::now();
        while sent < 10 * MAX_UNITS * MB && started.elapsed() < TIMEOUT {
            match stream.write(&chunk) {
                Ok(n) => sent += n as u64,
                Err(_) => break,
            }
        }
        ensure!(
            sent < 10 * MAX_UNITS * MB,
            "the client sent {sent} bytes: nothing stopped it"
        );

        let ended = wait_for(TIMEOUT, "the channel to be terminated", || {
            let i = agent.channel(&channel.key)?;
            Ok((i.status == ServiceStatus::Terminated && i.open_session.is_none()).then_some(i))
        })
        .with_context(|| format!("channel now: {:?}", agent.channel(&channel.key)))?;
        eprintln!(
            "counted {} bytes for a {MAX_UNITS} MB channel; the client wrote {sent}",
            ended.bytes_total
        );
        ensure!(
            ended.bytes_total >= MAX_UNITS * MB,
            "terminated before maxUnits: {} bytes",
            ended.bytes_total
        );
        ensure!(
            ended.bytes_total <= (MAX_UNITS + 1) * MB,
            "{} bytes counted: more than 1 MB past maxUnits ({} MB)",
            ended.bytes_total,
            MAX_UNITS
        );
        drop(stream);

        // Drop, then kill: the fence's line and the kill line in that order, then OpenVPN's
        // own `client-kill`.
        client.proc.wait_exit(TIMEOUT)?;
        server.proc.wait_for_line("client-kill", TIMEOUT)?;
        let log = monitor.log();
        let dropped = line_of(&log, "client traffic dropped")
            .with_context(|| format!("no drop in the monitor's log:\n{}", monitor.log_tail(30)))?;
        let killed = line_of(&log, "killing client")
            .with_context(|| format!("no kill in the monitor's log:\n{}", monitor.log_tail(30)))?;
        ensure!(
            dropped < killed,
            "the kill came before the drop:\n{}",
            monitor.log_tail(30)
        );

        // The client's part of the table goes with it; the table stays until exit.
        wait_until(TIMEOUT, "the client's fence removed", || {
            nft_table(srv_ns, &table).is_ok_and(|t| {
                t.is_some_and(|t| !t.contains(&vpn_ip.to_string()) && !t.contains("quota q"))
            })
        })?;
        let status = monitor.terminate(TIMEOUT)?;
        ensure!(status.success(), "monitor exited with {status}");
        ensure!(
            nft_table(srv_ns, &table)?.is_none(),
            "the monitor left its table behind"
        );
        let received = sink.join().map_err(|_| anyhow::anyhow!("sink panicked"))?;
        ensure!(
            received <= MAX_UNITS * MB,
            "the sink got {received} bytes, more than the budget"
        );
    }
    leaks.wait_clean(TIMEOUT)?;
    Ok(())
}
