//! Proves the harness with a real OpenVPN server and a plain client in two namespaces.

use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::*;

const TIMEOUT: Duration = Duration::from_secs(60);
const ECHO_PORT: u16 = 7007;

#[test]
fn client_reaches_the_server_through_the_tunnel_and_a_wrong_password_is_refused() -> Result<()> {
    let Some(env) = TestEnv::new("openvpn_smoke")? else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    {
        let hosts = TwoHosts::new(&env)?;
        let (srv_ns, cli_ns) = (&hosts.server_ns, &hosts.client_ns);
        let script = write_auth_script(&env, "alice", "correct horse")?;
        let script = script.to_str().context("script path is not UTF-8")?;
        let server = OpenVpnServer::new(&env, srv_ns, &hosts.pki)
            .local(hosts.server_addr())
            .auth_user_pass_verify(script, AuthVia::File)
            .status_file(env.path("status"), 1)
            .start()?;
        let tunnel_addr = server.tunnel_ip().to_string();

        // An echo server on the server's tunnel address; without the tunnel the client
        // namespace has no route to it at all.
        let echo_addr = SocketAddr::new(server.tunnel_ip().into(), ECHO_PORT);
        let _echo = srv_ns.tcp_echo(echo_addr)?;
        let before = cli_ns.output(&["ip", "route", "get", &tunnel_addr])?;
        ensure!(
            !before.status.success(),
            "client namespace routes to the tunnel address before connecting: {}",
            String::from_utf8_lossy(&before.stdout)
        );

        let client = OpenVpnClient::new(&env, cli_ns, &hosts.pki, hosts.server_addr(), 1194)
            .credentials("alice", "correct horse")
            .start()?;
        client.wait_connected(TIMEOUT)?;
        let tunnel_ip = client.tunnel_ip()?;
        ensure!(
            tunnel_ip.octets()[..3] == server.tunnel_ip().octets()[..3]
                && tunnel_ip != server.tunnel_ip(),
            "client got {tunnel_ip}, not an address of the server's /24"
        );
        let route = cli_ns.run(&["ip", "route", "get", &tunnel_addr])?;
        ensure!(
            route.contains(&format!("dev {}", client.dev())),
            "route to the server's tunnel address is not via the tun device: {route}"
        );

        // Data through the tunnel both ways (64 KiB, many packets).
        cli_ns.wait_for_tcp(echo_addr, TIMEOUT)?;
        let payload: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
        tcp_echo_roundtrip(cli_ns.tcp_connect(echo_addr, TIMEOUT)?, &payload, TIMEOUT)?;

        // iperf3 through the tunnel, both directions (a short run: this proves the helper;
        // shaping tests measure longer).
        let _iperf = iperf3_server(&env, srv_ns, server.tunnel_ip(), 5201)?;
        for reverse in [false, true] {
            let run = Iperf3Run {
                server: server.tunnel_ip(),
                port: 5201,
                seconds: 1,
                reverse,
            };
            let r = run.run(cli_ns)?;
            ensure!(
                r.received_bps > 0.0,
                "nothing arrived (reverse={reverse}): {r:?}"
            );
        }

        // The server knows the client by its username (username-as-common-name).
        let listed = wait_for(TIMEOUT, "alice in the status file", || {
            Ok(Some(server.clients()?).filter(|c| !c.is_empty()))
        })?;
        ensure!(
            listed.len() == 1
                && listed[0].common_name == "alice"
                && listed[0].virtual_address == tunnel_ip.to_string(),
            "status file: {listed:?}"
        );

        // The wrong password: AUTH_FAILED, the client exits, and never completes init.
        let bad = OpenVpnClient::new(&env, cli_ns, &hosts.pki, hosts.server_addr(), 1194)
            .credentials("alice", "wrong")
            .start()?;
        bad.wait_auth_failed(TIMEOUT)?;
        ensure!(
            bad.proc.count_lines(INIT_COMPLETED) == 0,
            "refused client completed initialization:\n{}",
            bad.proc.log_tail(20)
        );
        server
            .proc
            .wait_for_line("Auth Username/Password verification failed", TIMEOUT)?;

        // The good client is unaffected.
        tcp_echo_roundtrip(
            cli_ns.tcp_connect(echo_addr, TIMEOUT)?,
            b"still up",
            TIMEOUT,
        )?;
        ensure!(client.proc.is_running(), "good client exited");

        // While everything is alive the checker does see it (so "clean" below means something).
        let alive = leaks.find()?;
        for want in ["namespace", "process"] {
            ensure!(
                alive.iter().any(|l| l.starts_with(want)),
                "leak checker missed a live {want}: {alive:?}"
            );
        }

        // A client that stops says goodbye (explicit-exit-notify): the server drops it.
        client.proc.terminate(TIMEOUT)?;
        wait_until(TIMEOUT, "the server to drop the stopped client", || {
            server.clients().is_ok_and(|c| c.is_empty())
        })?;
    }
    leaks.wait_clean(TIMEOUT)?;
    Ok(())
}

#[test]
fn guards_clean_up_when_the_test_panics() -> Result<()> {
    let Some(env) = TestEnv::new("guards_on_panic")? else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    // A process started with a bare `Command` inside the namespace: only the namespace's
    // drop can stop it. Kept outside the closure so it can be reaped and inspected.
    let mut stray: Option<std::process::Child> = None;
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<()> {
        let a = env.netns()?;
        let b = env.netns()?;
        let _link = env.veth(&a, &b)?;
        let _sleeper = a.spawn("sleep").arg("600").label("sleeper").spawn(&env)?;
        stray = Some(b.command(&["sleep", "600"]).spawn()?);
        let alive = leaks.find()?;
        ensure!(
            alive.iter().filter(|l| l.starts_with("namespace")).count() == 2
                && alive.iter().filter(|l| l.starts_with("process")).count() >= 2,
            "leak checker does not see the live resources: {alive:?}"
        );
        panic!("deliberate panic to test the guards");
    }));
    match outcome {
        Err(_) => {}
        Ok(Ok(())) => bail!("the closure did not panic"),
        Ok(Err(e)) => return Err(e.context("setting up before the deliberate panic")),
    }
    let mut stray = stray.context("stray process was not started")?;
    let status = stray.wait()?;
    ensure!(
        status.signal().is_some(),
        "stray process was not ended by a signal: {status}"
    );
    leaks.wait_clean(TIMEOUT)?;
    Ok(())
}
