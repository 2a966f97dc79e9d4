//! Issue 3 (adapter-server) end to end: a real `openvpn` server with the server adapter's
//! deferred auth hook and its monitor (management socket, tc shaping), an agent core-lite,
//! and real OpenVPN clients, in two network namespaces.
//!
//! Shown here: good credentials connect and bad ones are refused (deferred auth, and the
//! monitor's `--client-auth` mode); usage reaches the core, and the core's final bytes equal
//! OpenVPN's own final counters exactly (recorded by an independent `client-disconnect`
//! script); a terminated channel's client is cut off with HALT and cannot log in again; the
//! client's tc classes exist while it is connected and are gone after it disconnects; the
//! monitor's SIGTERM removes the tc setup; nothing is left behind.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::adapters::{
    client_classes, echo_exchange, link_exists, tc, AgentCore, DisconnectRecorder,
};
use e2e::*;
use service_api::ServiceStatus;

/// Generous: two cores and other e2e tests may share the machine.
const TIMEOUT: Duration = Duration::from_secs(30);
const ECHO_PORT: u16 = 7007;
/// The agent core, on the server namespace's own loopback.
const AGENT_LISTEN: &str = "127.0.0.1:7700";
const PORT: u16 = 1194;

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// `10.8.X.Y` as the hex u32 that `tc filter show` prints in a u32 match.
fn hex_ip(ip: Ipv4Addr) -> String {
    ip.octets().iter().map(|o| format!("{o:02x}")).collect()
}

/// Waits until the core has closed the channel's session and the recorder has `n`
/// connections of it, then checks the core's bytes equal OpenVPN's final counters.
fn assert_core_bytes_equal_openvpn(
    agent: &AgentCore,
    recorder: &DisconnectRecorder,
    key: &str,
    n: usize,
) -> Result<u64> {
    let info = wait_for(
        TIMEOUT,
        "the session closed and the disconnect recorded",
        || {
            let info = agent.channel(key)?;
            let recorded = recorder.connections(key)?.len();
            Ok((info.open_session.is_none() && recorded == n).then_some(info))
        },
    )
    .with_context(|| format!("channel now: {:?}", agent.channel(key)))?;
    let openvpn = recorder.total(key)?;
    ensure!(
        info.bytes_total == openvpn,
        "the agent core recorded {} bytes, OpenVPN's own final counters say {openvpn} ({:?})",
        info.bytes_total,
        recorder.connections(key)?
    );
    Ok(openvpn)
}

/// Who answers the logins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auth {
    /// `auth-user-pass-verify "adapter-server … hook" via-file` (deferred), the monitor
    /// without `--client-auth`.
    DeferredHook,
    /// No script: `management-client-auth` and `monitor --client-auth`.
    MonitorClientAuth,
}

/// How much of the life cycle a test walks through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Extent {
    /// Logins, session start, usage and tc classes while connected; then the monitor's
    /// SIGTERM.
    WhileConnected,
    /// Also: disconnect (exact counts, classes removed), HALT of a terminated channel,
    /// no login afterwards.
    Full,
}

fn server_adapter_life_cycle(test_name: &str, auth: Auth, extent: Extent) -> Result<()> {
    let Some(env) = TestEnv::with_bins(test_name, &["core-lite", "adapter-server"])? else {
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

        // With the auth hook, the hook is also client-disconnect (after the recorder): OpenVPN
        // reports a departure to the management interface only for clients it authenticated
        // there, so the exact final counters come from the script env.
        let hook_state = env.path("hook-state");
        let recorder = match auth {
            Auth::DeferredHook => {
                DisconnectRecorder::then(&env, Some(&agent.hook_command(&hook_state)?))?
            }
            Auth::MonitorClientAuth => DisconnectRecorder::new(&env)?,
        };
        let mgmt = env.path("mgmt.sock");
        let mut builder = OpenVpnServer::new(&env, srv_ns, &hosts.pki)
            .local(hosts.server_addr())
            .port(PORT)
            .client_disconnect(&recorder.command()?)
            .management_unix(&mgmt);
        builder = match auth {
            Auth::DeferredHook => {
                builder.auth_user_pass_verify(&agent.hook_command(&hook_state)?, AuthVia::File)
            }
            Auth::MonitorClientAuth => builder.management_client_auth(true),
        };
        let server = builder.start()?;
        let tun = server.dev().to_string();
        let ifb = env.unique_name('i');
        let mut args = vec![
            "--tun",
            &tun,
            "--ifb",
            &ifb,
            "--link-capacity",
            "100mbit",
            "--max-clients",
            "16",
        ];
        if auth == Auth::MonitorClientAuth {
            args.push("--client-auth");
        }
        let monitor = agent.monitor(&env, srv_ns, &mgmt, &args)?;
        monitor.wait_for_line("shaping set up", TIMEOUT)?;
        let root_qdisc = tc(srv_ns, &["qdisc", "show", "dev", &tun])?;
        ensure!(
            root_qdisc.contains("qdisc htb 1: root") && root_qdisc.contains("ingress"),
            "no shaping setup on {tun}: {root_qdisc}"
        );
        ensure!(link_exists(srv_ns, &ifb)?, "IFB {ifb} not created");

        let echo_addr = SocketAddr::new(server.tunnel_ip().into(), ECHO_PORT);
        let _echo = srv_ns.tcp_echo(echo_addr)?;
        let new_client = |user: &str, password: &str| {
            OpenVpnClient::new(&env, cli_ns, &hosts.pki, hosts.server_addr(), PORT)
                .credentials(user, password)
                .start()
        };

        // --- Good credentials connect. ---
        let client = new_client(&channel.key, &channel.password)?;
        client.wait_connected(TIMEOUT)?;
        match auth {
            Auth::DeferredHook => {
                // The hook exited 2 ("auth deferred"), OpenVPN took the deferred path,
                // and the detached worker's answer in the control file let the client in.
                server.proc.wait_for_line("auth deferred", TIMEOUT)?;
                server
                    .proc
                    .wait_for_line("authentication deferred for username", TIMEOUT)?;
                server.proc.wait_for_line("mode=\"deferred\"", TIMEOUT)?;
            }
            Auth::MonitorClientAuth => {
                monitor.wait_for_line("auth accept", TIMEOUT)?;
                let config = std::fs::read_to_string(server.config_path())?;
                ensure!(
                    !config.contains("auth-user-pass-verify"),
                    "the server has an auth script: {config}"
                );
            }
        }
        let vpn_ip = client.tunnel_ip()?;

        // The monitor opened the session and the channel went active.
        monitor.wait_for_line("session started", TIMEOUT)?;
        let info = wait_for(TIMEOUT, "the channel to be active with a session", || {
            let i = agent.channel(&channel.key)?;
            Ok((i.status == ServiceStatus::Active && i.open_session.is_some()).then_some(i))
        })?;
        ensure!(info.channel_id == channel.id, "{info:?}");

        // tc: the client's download class on the tun, upload class on the IFB (the
        // offering's 1/8 and 1/4 Mbit/s), filters on its VPN address.
        let (down, up) = wait_for(TIMEOUT, "the client's tc classes", || {
            let down = client_classes(srv_ns, &tun)?;
            let up = client_classes(srv_ns, &ifb)?;
            Ok((!down.is_empty() && !up.is_empty()).then_some((down, up)))
        })?;
        ensure!(
            down.len() == 1 && down[0].contains("rate 1Mbit ceil 8Mbit"),
            "download classes on {tun}: {down:?}"
        );
        ensure!(
            up.len() == 1 && up[0].contains("rate 1Mbit ceil 4Mbit"),
            "upload classes on {ifb}: {up:?}"
        );
        let filters = tc(srv_ns, &["filter", "show", "dev", &tun, "parent", "1:"])?;
        ensure!(
            filters.contains(&hex_ip(vpn_ip)),
            "no filter for {vpn_ip} on {tun}: {filters}"
        );

        // --- Bad credentials are refused; the good client stays. ---
        let bad = new_client(&channel.key, "not-the-password")?;
        bad.wait_auth_failed(TIMEOUT)?;
        ensure!(
            bad.proc.count_lines(INIT_COMPLETED) == 0,
            "refused client completed initialization:\n{}",
            bad.proc.log_tail(20)
        );
        let unknown = new_client("c-00000000000000000000", &channel.password)?;
        unknown.wait_auth_failed(TIMEOUT)?;
        let deny_log = match auth {
            Auth::DeferredHook => &server.proc,
            Auth::MonitorClientAuth => &monitor,
        };
        deny_log.wait_for_line_count("auth deny", 2, TIMEOUT)?;
        ensure!(client.proc.is_running(), "the good client exited");

        // --- Usage reaches the core while connected. ---
        cli_ns.wait_for_tcp(echo_addr, TIMEOUT)?;
        let data = payload(1_500_000);
        echo_exchange(cli_ns.tcp_connect(echo_addr, TIMEOUT)?, &data, TIMEOUT)?;
        let growing = wait_for(TIMEOUT, "the core's bytes to cover the echo", || {
            let i = agent.channel(&channel.key)?;
            Ok((i.bytes_total >= 2 * data.len() as u64).then_some(i))
        })?;
        ensure!(
            growing.open_session.is_some(),
            "usage arrived but the session is closed: {growing:?}"
        );

        if extent == Extent::Full {
            // --- Disconnect: exact final counts, the client's classes and filters go. ---
            client.proc.terminate(TIMEOUT)?;
            let total = assert_core_bytes_equal_openvpn(&agent, &recorder, &channel.key, 1)?;
            ensure!(
                total >= 2 * data.len() as u64,
                "OpenVPN counted only {total} bytes"
            );
            wait_until(TIMEOUT, "the client's classes and filters removed", || {
                let gone = |dev: &str| client_classes(srv_ns, dev).is_ok_and(|c| c.is_empty());
                let filters = tc(srv_ns, &["filter", "show", "dev", &tun, "parent", "1:"]);
                gone(&tun) && gone(&ifb) && filters.is_ok_and(|f| !f.contains(&hex_ip(vpn_ip)))
            })?;
            // Only the client's own part went away: the shared setup stays.
            let root_qdisc = tc(srv_ns, &["qdisc", "show", "dev", &tun])?;
            ensure!(root_qdisc.contains("qdisc htb 1: root"), "{root_qdisc}");

            // --- A terminated channel's client is cut off with HALT. ---
            let second = new_client(&channel.key, &channel.password)?;
            second.wait_connected(TIMEOUT)?;
            wait_for(TIMEOUT, "the second connection's session", || {
                Ok(agent.channel(&channel.key)?.open_session)
            })?;
            wait_until(TIMEOUT, "the second client's tc classes", || {
                client_classes(srv_ns, &tun).is_ok_and(|c| c.len() == 1)
                    && client_classes(srv_ns, &ifb).is_ok_and(|c| c.len() == 1)
            })?;
            echo_exchange(
                cli_ns.tcp_connect(echo_addr, TIMEOUT)?,
                &payload(100_000),
                TIMEOUT,
            )?;
            agent.set_status(&channel.key, "terminating")?;
            second.proc.wait_exit(TIMEOUT)?;
            // OpenVPN's own words on both ends: the monitor's `client-kill CID HALT`, the
            // client's "Halt command was pushed by server".
            ensure!(
                second
                    .proc
                    .log()
                    .contains("Halt command was pushed by server"),
                "the client was not halted by the server:\n{}",
                second.proc.log_tail(20)
            );
            let kill = server.proc.wait_for_line("client-kill", TIMEOUT)?;
            ensure!(
                kill.contains("HALT"),
                "the monitor killed without HALT: {kill}"
            );
            monitor.wait_for_line("killing client", TIMEOUT)?;
            let ended = wait_for(TIMEOUT, "the channel to be terminated", || {
                let i = agent.channel(&channel.key)?;
                Ok((i.status == ServiceStatus::Terminated).then_some(i))
            })
            .with_context(|| format!("channel now: {:?}", agent.channel(&channel.key)))?;
            ensure!(
                ended
                    .history
                    .iter()
                    .any(|h| h.status == ServiceStatus::Terminating),
                "no terminating step in the history: {:?}",
                ended.history
            );
            assert_core_bytes_equal_openvpn(&agent, &recorder, &channel.key, 2)?;
            wait_until(TIMEOUT, "the halted client's classes removed", || {
                let gone = |dev: &str| client_classes(srv_ns, dev).is_ok_and(|c| c.is_empty());
                gone(&tun) && gone(&ifb)
            })?;
            // It cannot come back: a terminated channel is refused at login.
            let again = new_client(&channel.key, &channel.password)?;
            again.wait_auth_failed(TIMEOUT)?;
        }

        // --- The monitor's SIGTERM removes the whole tc setup. ---
        let status = monitor.terminate(TIMEOUT)?;
        ensure!(status.success(), "monitor exited with {status}");
        let root_qdisc = tc(srv_ns, &["qdisc", "show", "dev", &tun])?;
        ensure!(
            !root_qdisc.contains("htb") && !root_qdisc.contains("ingress"),
            "the monitor left its tc setup behind: {root_qdisc}"
        );
        ensure!(!link_exists(srv_ns, &ifb)?, "the monitor left {ifb} behind");
    }
    leaks.wait_clean(TIMEOUT)?;
    Ok(())
}

/// Deferred hook auth with the monitor: logins, session, usage and tc classes while
/// connected.
#[test]
fn deferred_hook_admits_good_refuses_bad_and_the_monitor_accounts_and_shapes() -> Result<()> {
    server_adapter_life_cycle(
        "adapter_server_e2e_hook",
        Auth::DeferredHook,
        Extent::WhileConnected,
    )
}

/// The monitor answers the logins (`--client-auth`) and walks the whole life cycle:
/// exact final counts, classes removed at disconnect, HALT of a terminated channel.
#[test]
fn client_auth_monitor_full_life_cycle_with_exact_counts_halt_and_shaping() -> Result<()> {
    server_adapter_life_cycle(
        "adapter_server_e2e_client_auth",
        Auth::MonitorClientAuth,
        Extent::Full,
    )
}

/// The same full life cycle with the deferred hook doing auth, and the hook as
/// client-disconnect for OpenVPN's exact final counters (the monitor notices departures from
/// the client list: without `management-client-auth` OpenVPN sends no `>CLIENT:DISCONNECT`).
#[test]
fn deferred_hook_full_life_cycle_with_exact_counts_halt_and_shaping() -> Result<()> {
    server_adapter_life_cycle(
        "adapter_server_e2e_hook_full",
        Auth::DeferredHook,
        Extent::Full,
    )
}
