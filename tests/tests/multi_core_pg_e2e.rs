//! Issue 14 end to end: one agent, two VPN servers, two cores on one PostgreSQL database.
//!
//! Two server namespaces, each with a real OpenVPN server, its adapter-server monitor
//! (answering the logins, `--client-auth`) and its own `core-lite serve` (on the namespace's
//! loopback); both cores share one PostgreSQL database and the agent's key. One client
//! connects to server A, moves data, disconnects, then to server B and does the same: the
//! channel's bytes, read on either core, equal OpenVPN's own final counters of both
//! connections to the byte. Then the client logs in on both at once (A, then B while A's
//! connection lives): B's session replaces A's, A's monitor cuts its client at its next
//! report, and every byte of all four connections is counted.
//!
//! Needs PostgreSQL: run under `scripts/pg-test.sh` (it sets `CORE_LITE_TEST_DATABASE`; the
//! cores reach it on its unix socket, which every namespace sees).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::adapters::{echo_exchange, AgentCore, DisconnectRecorder};
use e2e::*;
use service_api::ServiceStatus;

const TIMEOUT: Duration = Duration::from_secs(30);
const ECHO_PORT: u16 = 7007;
const PORT: u16 = 1194;
/// Each core on its server namespace's own loopback.
const CORE_LISTEN: &str = "127.0.0.1:7700";

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[test]
fn one_channel_used_on_two_servers_with_two_cores_on_postgres_is_accounted_exactly() -> Result<()> {
    let Some(env) = TestEnv::with_bins("multi_core_pg_e2e", &["core-lite", "adapter-server"])?
    else {
        return Ok(());
    };
    let base = match std::env::var("CORE_LITE_TEST_DATABASE") {
        Ok(u) if !u.is_empty() => u,
        _ => {
            ensure!(
                std::env::var(REQUIRED_ENV).as_deref() != Ok("1"),
                "CORE_LITE_TEST_DATABASE is not set: run under scripts/pg-test.sh"
            );
            eprintln!("skipped: no PostgreSQL (run under scripts/pg-test.sh)");
            return Ok(());
        }
    };
    let db = tokio::runtime::Runtime::new()?.block_on(core_lite::testkit::fresh_database(&base))?;
    // Every core-lite this test runs (CLI and serve) uses the shared database.
    std::env::set_var("CORE_LITE_DATABASE", &db);

    let leaks = env.leak_checker();
    {
        let pki = Pki::generate(&env)?;
        let client_ns = env.netns()?;
        let ns_a = env.netns()?;
        let ns_b = env.netns()?;
        let link_a = env.veth(&ns_a, &client_ns)?;
        let link_b = env.veth(&ns_b, &client_ns)?;
        let listen: SocketAddr = CORE_LISTEN.parse()?;

        // The agent, set up once (on the database) through core A's data dir.
        let agent_a = AgentCore::create(
            &env,
            listen,
            &format!("{}:{PORT}", link_a.addr_a()),
            1000,
            None,
        )?;
        let channel = agent_a.new_channel(&env)?;
        // Core B: its own data dir with the agent's key; everything else is in the database.
        let core_b = CoreLite::new(&env, "agent-core-b")?;
        std::fs::create_dir_all(core_b.data_dir())?;
        std::fs::copy(
            agent_a.core.data_dir().join("agent.key"),
            core_b.data_dir().join("agent.key"),
        )
        .context("copying the agent key to core B")?;
        let agent_b = AgentCore {
            core: core_b,
            token_file: agent_a.token_file.clone(),
            product: agent_a.product.clone(),
            offering_hash: agent_a.offering_hash.clone(),
            listen,
        };
        let _serve_a = agent_a.core.serve(&env, Some(&ns_a), listen)?;
        let _serve_b = agent_b.core.serve(&env, Some(&ns_b), listen)?;

        // One OpenVPN server, monitor and echo server per server namespace.
        let start_server = |agent: &AgentCore, ns: &Netns, link: &Veth, name: &str| {
            let recorder = DisconnectRecorder::new(&env)?;
            let mgmt = env.path(&format!("{name}.mgmt.sock"));
            let server = OpenVpnServer::new(&env, ns, &pki)
                .local(link.addr_a())
                .port(PORT)
                .client_disconnect(&recorder.command()?)
                .management_unix(&mgmt)
                .management_client_auth(true)
                .start()?;
            let monitor = agent.monitor(&env, ns, &mgmt, &["--no-shaping", "--client-auth"])?;
            let echo_addr = SocketAddr::new(server.tunnel_ip().into(), ECHO_PORT);
            let echo = ns.tcp_echo(echo_addr)?;
            anyhow::Ok((recorder, server, monitor, echo, echo_addr))
        };
        let (rec_a, _srv_a, mon_a, _echo_a, echo_a) = start_server(&agent_a, &ns_a, &link_a, "a")?;
        let (rec_b, _srv_b, mon_b, _echo_b, echo_b) = start_server(&agent_b, &ns_b, &link_b, "b")?;

        let mut expected_min = 0u64;
        for (step, (link, mon, echo, rec)) in [
            (&link_a, &mon_a, echo_a, &rec_a),
            (&link_b, &mon_b, echo_b, &rec_b),
        ]
        .into_iter()
        .enumerate()
        {
            let client = OpenVpnClient::new(&env, &client_ns, &pki, link.addr_a(), PORT)
                .credentials(&channel.key, &channel.password)
                .start()?;
            client.wait_connected(TIMEOUT)?;
            mon.wait_for_line("session started", TIMEOUT)?;
            client_ns.wait_for_tcp(echo, TIMEOUT)?;
            let data = payload(500_000 * (step + 1));
            echo_exchange(client_ns.tcp_connect(echo, TIMEOUT)?, &data, TIMEOUT)?;
            expected_min += 2 * data.len() as u64;
            client.proc.terminate(TIMEOUT)?;
            wait_until(TIMEOUT, "OpenVPN recorded the disconnect", || {
                rec.connections(&channel.key).is_ok_and(|c| c.len() == 1)
            })?;
        }

        // At once: connected on A, the client logs in on B too. B's session replaces A's,
        // A's monitor learns it from its next report's answer (`closed`) and cuts that
        // client; what both connections moved is counted.
        let on_a = OpenVpnClient::new(&env, &client_ns, &pki, link_a.addr_a(), PORT)
            .credentials(&channel.key, &channel.password)
            .start()?;
        on_a.wait_connected(TIMEOUT)?;
        mon_a.wait_for_line_count("session started", 2, TIMEOUT)?;
        client_ns.wait_for_tcp(echo_a, TIMEOUT)?;
        let data = payload(300_000);
        echo_exchange(client_ns.tcp_connect(echo_a, TIMEOUT)?, &data, TIMEOUT)?;
        expected_min += 2 * data.len() as u64;
        let on_b = OpenVpnClient::new(&env, &client_ns, &pki, link_b.addr_a(), PORT)
            .credentials(&channel.key, &channel.password)
            .start()?;
        on_b.wait_connected(TIMEOUT)?;
        mon_b.wait_for_line_count("session started", 2, TIMEOUT)?;
        mon_a.wait_for_line("session replaced by a newer login", TIMEOUT)?;
        on_a.proc
            .wait_exit(TIMEOUT)
            .context("the client on A was not cut")?;
        client_ns.wait_for_tcp(echo_b, TIMEOUT)?;
        let data = payload(200_000);
        echo_exchange(client_ns.tcp_connect(echo_b, TIMEOUT)?, &data, TIMEOUT)?;
        expected_min += 2 * data.len() as u64;
        on_b.proc.terminate(TIMEOUT)?;
        for rec in [&rec_a, &rec_b] {
            wait_until(TIMEOUT, "OpenVPN recorded both disconnects", || {
                rec.connections(&channel.key).is_ok_and(|c| c.len() == 2)
            })?;
        }

        // Both cores see the channel closed, with exactly OpenVPN's counters of both servers.
        let openvpn = rec_a.total(&channel.key)? + rec_b.total(&channel.key)?;
        ensure!(
            openvpn >= expected_min,
            "OpenVPN counted {openvpn} bytes, less than the {expected_min} echoed"
        );
        for agent in [&agent_a, &agent_b] {
            let info = wait_for(
                TIMEOUT,
                "the channel's sessions closed with the final counts",
                || {
                    let i = agent.channel(&channel.key)?;
                    Ok((i.open_session.is_none() && i.bytes_total == openvpn).then_some(i))
                },
            )
            .with_context(|| {
                format!(
                    "OpenVPN: A {:?} B {:?}; channel now: {:?}",
                    rec_a.connections(&channel.key),
                    rec_b.connections(&channel.key),
                    agent.channel(&channel.key)
                )
            })?;
            ensure!(info.status == ServiceStatus::Active, "{info:?}");
        }
    }
    leaks.wait_clean(TIMEOUT)?;
    Ok(())
}
