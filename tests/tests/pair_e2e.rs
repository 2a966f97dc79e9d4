//! The whole module pair end to end (issue 5): agent host (core-lite --role agent, OpenVPN
//! server, adapter-server hook + monitor with shaping) and client hosts (core-lite --role
//! client, offering fetched and accepted over the market, adapter-client connect), each in
//! its own network namespace. Fixture: `e2e::pair`.
//!
//! Bounds are generous (other e2e tests share the 2-core machine); no timing asserts except
//! the bandwidth bounds of the shaping tests.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use e2e::pair::*;
use service_api::ServiceStatus;

/// Traffic of the accounting tests, through a TCP echo (so the same amount goes each way).
const PUMP_BYTES: u64 = 3_000_000;
const ECHO_PORT: u16 = 7007;

/// Allowed difference between the client core's bytes and OpenVPN's final counters on the
/// server: the client counts its own side of the link (its OpenVPN's counters at its last
/// report), so the last keepalive / exit-notify packets and the control channel around the
/// disconnect may differ. 1 % of the traffic plus 16 KiB.
fn client_delta(total: u64) -> u64 {
    total / 100 + 16 * 1024
}

/// Test 1 with the monitor authenticating logins (`management-client-auth`).
#[test]
fn connect_and_usage_accounted_on_both_cores() -> Result<()> {
    accounting(AuthMode::ManagementClientAuth)
}

/// Test 1 with the deferred `auth-user-pass-verify` hook. Without
/// `management-client-auth` OpenVPN 2.6 never sends `>CLIENT:DISCONNECT` (manage.c:
/// management_notify_client_close needs DAF_INITIAL_AUTH, which only
/// management_notify_client_needing_auth sets), so the monitor must notice disconnects some
/// other way (it polls the client list since 47a5516; before that the agent session stayed
/// open and the client's tc classes stayed).
#[test]
fn connect_and_usage_accounted_on_both_cores_with_the_auth_hook() -> Result<()> {
    accounting(AuthMode::Hook)
}

/// Test 1 with the hook also wired as client-connect / client-disconnect (the operator's
/// way to close sessions with OpenVPN's final counters when logins go through the hook).
/// The hook closes the session with the final counters; the monitor must still notice the
/// disconnect to remove the shaping classes (see above).
#[test]
fn connect_and_usage_accounted_on_both_cores_with_hook_session_scripts() -> Result<()> {
    accounting(AuthMode::HookWithSessionScripts)
}

/// Test 1 with the small `adapter-server-hook` handing auth, client-connect and
/// client-disconnect to the monitor (issue 12, item 1): the hand-off is used for every event
/// (the full `adapter-server` never starts) and the agent's bytes equal OpenVPN's own final
/// counters to the byte.
#[test]
fn connect_and_usage_accounted_on_both_cores_with_the_handoff_hook() -> Result<()> {
    accounting(AuthMode::Handoff)
}

fn accounting(auth: AuthMode) -> Result<()> {
    run_pair_test("pair_accounting", |env| {
        let opts = PairOptions {
            auth,
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let agent = &pair.agent;
        let client = pair.client(0)?;
        let hash = agent.publish(&OfferingSpec::new(10_000, "16", "16"))?;
        let key = client.accept_and_connect(agent, &hash, None)?;

        // The agent sees the session open and the channel active.
        let ch = agent.wait_channel(&key, "an open session on the agent", PAIR_TIMEOUT, |c| {
            c.open_session.is_some() && c.status == ServiceStatus::Active
        })?;
        ensure!(
            ch.bytes_total < 1_000_000,
            "fresh channel already has {} bytes",
            ch.bytes_total
        );

        let _echo = agent.echo_server(ECHO_PORT)?;
        let echoed = client.pump(agent, ECHO_PORT, PUMP_BYTES, false)?;
        ensure!(echoed == PUMP_BYTES, "echoed {echoed}");
        // Usage is reported while the client is connected (not only at the end).
        agent.wait_channel(&key, "live usage on the agent", PAIR_TIMEOUT, |c| {
            c.bytes_total >= 2 * PUMP_BYTES
        })?;

        let status = client.stop()?;
        ensure!(
            status.code() == Some(0),
            "adapter-client stopped with {status}"
        );
        let finals = agent.wait_final_counters(&key, 1, PAIR_TIMEOUT)?;
        ensure!(
            finals.len() == 1,
            "one connection expected, recorded {finals:?}"
        );
        let openvpn_total = finals[0].total();
        ensure!(
            openvpn_total >= 2 * PUMP_BYTES,
            "OpenVPN counted only {openvpn_total}"
        );

        // Agent: exactly OpenVPN's own final counters, session closed. With the hook doing
        // auth only, nothing hands OpenVPN's final counters to the adapters (no
        // >CLIENT:DISCONNECT, no client-disconnect hook): the session closes with the last
        // bytecount, at most one report interval behind.
        let ch = agent.wait_channel(&key, "the agent session closed", PAIR_TIMEOUT, |c| {
            c.open_session.is_none()
        })?;
        if auth == AuthMode::Hook {
            ensure!(
                ch.bytes_total <= openvpn_total && openvpn_total - ch.bytes_total <= 64 * 1024,
                "agent bytesTotal {} vs OpenVPN's final counters {openvpn_total} ({:?})",
                ch.bytes_total,
                finals[0]
            );
        } else {
            ensure!(
                ch.bytes_total == openvpn_total,
                "agent bytesTotal {} != OpenVPN's final counters {openvpn_total} ({:?})",
                ch.bytes_total,
                finals[0]
            );
        }
        ensure!(
            ch.units_used == ch.bytes_total / BYTES_PER_UNIT,
            "units {}",
            ch.units_used
        );
        ensure!(ch.status == ServiceStatus::Active, "status {:?}", ch.status);

        // The monitor noticed the disconnect: the client's shaping classes are gone.
        e2e::wait_until(PAIR_TIMEOUT, "the client's shaping classes removed", || {
            agent
                .client_classes()
                .is_ok_and(|(d, u)| d.is_empty() && u.is_empty())
        })?;

        if auth == AuthMode::Handoff {
            // Every event went through the monitor; the big binary never ran.
            let runs = agent.fallback_runs()?;
            ensure!(runs.is_empty(), "the full adapter-server ran for {runs:?}");
            let log = agent.with_monitor(|m| m.log())?;
            for event in ["user-pass-verify", "client-connect", "client-disconnect"] {
                ensure!(
                    log.lines()
                        .any(|l| l.contains("hand-off received") && l.contains(event)),
                    "no {event} hand-off in the monitor's log"
                );
            }
            let server_log = agent.with_server(|s| s.proc.log())?;
            ensure!(
                server_log.contains("handed off to the monitor")
                    && !server_log.contains("running the full hook"),
                "the hook's lines in OpenVPN's log do not show the hand-off"
            );
        }

        // Client core: its own count, close to the server's.
        let cch = client.wait_channel("the client session closed", PAIR_TIMEOUT, |c| {
            c.open_session.is_none() && c.bytes_total > 0
        })?;
        let diff = cch.bytes_total.abs_diff(openvpn_total);
        eprintln!(
            "accounting: OpenVPN final {openvpn_total} (rx {} tx {}), agent {}, client {} (diff {diff})",
            finals[0].bytes_received, finals[0].bytes_sent, ch.bytes_total, cch.bytes_total
        );
        ensure!(
            diff <= client_delta(openvpn_total),
            "client core {} vs OpenVPN {openvpn_total}: diff {diff} > {}",
            cch.bytes_total,
            client_delta(openvpn_total)
        );
        Ok(())
    })
}

/// Test 2: a login with the right client key and a wrong password is refused (AUTH_FAILED)
/// and the channel stays usable.
#[test]
fn wrong_password_is_refused_and_the_channel_stays_usable() -> Result<()> {
    wrong_password(AuthMode::Hook)
}

/// Test 2 with the monitor authenticating logins.
#[test]
fn wrong_password_is_refused_by_the_monitor() -> Result<()> {
    wrong_password(AuthMode::ManagementClientAuth)
}

fn wrong_password(auth: AuthMode) -> Result<()> {
    run_pair_test("pair_wrong_password", |env| {
        let opts = PairOptions {
            auth,
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let agent = &pair.agent;
        let client = pair.client(0)?;
        let hash = agent.publish(&OfferingSpec::new(10_000, "16", "16"))?;
        let key = client.accept_and_connect(agent, &hash, None)?;
        let _echo = agent.echo_server(ECHO_PORT)?;
        client.pump(agent, ECHO_PORT, 100_000, false)?;

        let bad = agent.raw_client(&client.ns, &key, "not-the-password")?;
        bad.wait_auth_failed(PAIR_TIMEOUT)?;
        ensure!(
            bad.proc.count_lines(e2e::INIT_COMPLETED) == 0,
            "refused client initialized:\n{}",
            bad.proc.log_tail(20)
        );

        // The channel and the real client are unaffected.
        let ch = agent.channel(&key)?;
        ensure!(
            ch.status == ServiceStatus::Active,
            "status after the refusal: {:?}",
            ch.status
        );
        ensure!(client.adapter_exit()?.is_none(), "adapter-client exited");
        let st = client.state()?.unwrap_or_default();
        ensure!(
            st["phase"] == "connected" && st["connections"] == 1,
            "state {st}"
        );
        client.pump(agent, ECHO_PORT, 200_000, false)?;
        // A fresh login with the real password still works (the key is not locked out).
        client.stop()?;
        client.connect()?;
        client.wait_connected(PAIR_TIMEOUT)?;
        client.pump(agent, ECHO_PORT, 100_000, false)?;
        Ok(())
    })
}

fn mbit(bps: f64) -> f64 {
    bps / 1e6
}

/// Asserts max·0.5 ≤ measured ≤ max·1.15.
fn within_limit(what: &str, measured_bps: f64, max_mbit: f64) -> Result<()> {
    let m = mbit(measured_bps);
    eprintln!("shaping: {what}: {m:.2} Mbit/s (max {max_mbit})");
    ensure!(
        m <= max_mbit * 1.15 && m >= max_mbit * 0.5,
        "{what}: {m:.2} Mbit/s is outside [{:.2}, {:.2}] for a max of {max_mbit} Mbit/s",
        max_mbit * 0.5,
        max_mbit * 1.15
    );
    Ok(())
}

const IPERF_SECONDS: u32 = 5;

/// Test 3: download and upload are each limited to the offering's max.
#[test]
fn download_and_upload_are_limited_to_the_offering() -> Result<()> {
    run_pair_test("pair_shaping", |env| {
        let opts = PairOptions {
            auth: AuthMode::Hook,
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let agent = &pair.agent;
        let client = pair.client(0)?;
        let hash = agent.publish(&OfferingSpec::new(10_000, "8", "4"))?;
        client.accept_and_connect(agent, &hash, None)?;

        // The monitor's classes carry the offering's limits.
        let (down, up) = e2e::wait_for(PAIR_TIMEOUT, "the client's shaping classes", || {
            let (d, u) = agent.client_classes()?;
            Ok((d.len() == 1 && u.len() == 1).then_some((d, u)))
        })?;
        ensure!(
            down[0].ceil_bps == 8_000_000 && up[0].ceil_bps == 4_000_000,
            "{down:?} {up:?}"
        );

        let _iperf = agent.iperf_server(5201)?;
        let dl = client.iperf(agent, 5201, IPERF_SECONDS, true)?;
        let ul = client.iperf(agent, 5201, IPERF_SECONDS, false)?;
        within_limit("download (max 8)", dl.received_bps, 8.0)?;
        within_limit("upload (max 4)", ul.received_bps, 4.0)?;
        Ok(())
    })
}

/// Test 4: a second client with other limits is not held to the first one's.
#[test]
fn a_second_client_with_other_limits_is_unaffected() -> Result<()> {
    run_pair_test("pair_two_clients", |env| {
        let opts = PairOptions {
            clients: 2,
            auth: AuthMode::ManagementClientAuth,
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let agent = &pair.agent;
        let (a, b) = (pair.client(0)?, pair.client(1)?);
        let slow = agent.publish(&OfferingSpec::new(10_000, "4", "2"))?;
        let fast = agent.publish(&OfferingSpec::new(10_000, "16", "8"))?;
        a.accept_and_connect(agent, &slow, None)?;
        b.accept_and_connect(agent, &fast, None)?;
        e2e::wait_until(PAIR_TIMEOUT, "two shaped clients", || {
            agent
                .client_classes()
                .is_ok_and(|(d, u)| d.len() == 2 && u.len() == 2)
        })?;

        let _iperf_a = agent.iperf_server(5201)?;
        let _iperf_b = agent.iperf_server(5202)?;
        for reverse in [true, false] {
            // Both at once.
            let (ra, rb) = std::thread::scope(|s| {
                let ta = s.spawn(|| a.iperf(agent, 5201, IPERF_SECONDS, reverse));
                let tb = s.spawn(|| b.iperf(agent, 5202, IPERF_SECONDS, reverse));
                (ta.join(), tb.join())
            });
            let ra = ra.map_err(|_| anyhow::anyhow!("iperf thread A panicked"))??;
            let rb = rb.map_err(|_| anyhow::anyhow!("iperf thread B panicked"))??;
            let (dir, max_a, max_b) = if reverse {
                ("download", 4.0, 16.0)
            } else {
                ("upload", 2.0, 8.0)
            };
            within_limit(
                &format!("client A {dir} (max {max_a})"),
                ra.received_bps,
                max_a,
            )?;
            within_limit(
                &format!("client B {dir} (max {max_b})"),
                rb.received_bps,
                max_b,
            )?;
            ensure!(
                mbit(rb.received_bps) > max_a * 1.5,
                "client B's {dir} {:.2} Mbit/s is not well above A's limit {max_a}",
                mbit(rb.received_bps)
            );
        }
        Ok(())
    })
}

/// Test 5: maxUnits used up → terminating → terminated; the client is cut off for good and
/// cannot log in again.
#[test]
fn max_units_exhaustion_terminates_and_cuts_the_client_off() -> Result<()> {
    run_pair_test("pair_max_units", |env| {
        // The hook also as client-connect / client-disconnect (docs/openvpn-server.conf.example,
        // mode A): the disconnect hook is where OpenVPN's exact final counters come from.
        // With the auth hook alone the monitor knows only its last `status` poll, which can
        // miss the last control packets of the killed client (a CI run counted 1,464 bytes
        // less than OpenVPN).
        let opts = PairOptions {
            auth: AuthMode::HookWithSessionScripts,
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let agent = &pair.agent;
        let client = pair.client(0)?;
        let spec = OfferingSpec::new(3, "20", "20");
        let hash = agent.publish(&spec)?;
        let key = client.accept_and_connect(agent, &hash, Some(spec.full_deposit()))?;
        let access = agent.access(&key)?;
        let password = access["password"]
            .as_str()
            .ok_or_else(|| anyhow::anyhow!("no password in the access message {access}"))?
            .to_string();

        // Traffic through the echo until the agent ends the service; the tunnel is cut on
        // the way (short I/O timeouts: a stall means the cut).
        let _echo = agent.echo_server(ECHO_PORT)?;
        let echo = SocketAddr::V4(SocketAddrV4::new(agent.tunnel_ip(), ECHO_PORT));
        client.ns.wait_for_tcp(echo, PAIR_TIMEOUT)?;
        let deadline = Instant::now() + PAIR_TIMEOUT;
        let mut echoed = 0;
        loop {
            let status = agent.channel(&key)?.status;
            if matches!(
                status,
                ServiceStatus::Terminating | ServiceStatus::Terminated
            ) || client.adapter_exit()?.is_some()
            {
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "the service did not end after {echoed} bytes echoed (status {status:?})"
            );
            echoed += pump(
                &client.ns,
                echo,
                BYTES_PER_UNIT,
                Duration::from_secs(5),
                true,
            )?;
        }
        let ch = agent.wait_channel(&key, "the channel terminated", PAIR_TIMEOUT, |c| {
            c.status == ServiceStatus::Terminated
        })?;
        let h = history(&ch);
        ensure!(
            h.ends_with(&[ServiceStatus::Terminating, ServiceStatus::Terminated]),
            "history {h:?}"
        );
        ensure!(ch.units_used >= 3 && ch.open_session.is_none(), "{ch:?}");

        let status = client.wait_adapter_exit(PAIR_TIMEOUT)?;
        ensure!(
            matches!(status.code(), Some(3) | Some(4)),
            "adapter-client exited with {status}, not 3/4 (for good)\n{}",
            client.adapter_log_tail(30)
        );
        eprintln!(
            "max units: echoed {echoed} bytes; agent {} bytes, {} units; adapter exit {status}",
            ch.bytes_total, ch.units_used
        );
        // Accounting of the killed client is still exact.
        // The status turns `terminated` with the first StopSession (the monitor's, with its
        // last bytecount); OpenVPN's exact final counters arrive with the client-disconnect
        // hook just after, and the higher counts win: wait for them, then demand equality.
        let finals = agent.wait_final_counters(&key, 1, PAIR_TIMEOUT)?;
        let total: u64 = finals.iter().map(FinalCounters::total).sum();
        let ch = agent
            .wait_channel(&key, "the exact final counts", PAIR_TIMEOUT, |c| {
                c.bytes_total >= total
            })
            .with_context(|| format!("OpenVPN's final counters: {total}"))?;
        ensure!(
            ch.bytes_total == total,
            "agent {} != OpenVPN {total}",
            ch.bytes_total
        );
        // The client core learns the end over the market.
        client.wait_channel("the client core to mirror terminated", PAIR_TIMEOUT, |c| {
            matches!(
                c.status,
                ServiceStatus::Terminating | ServiceStatus::Terminated
            )
        })?;

        client.wait_channel("the client session closed", PAIR_TIMEOUT, |c| {
            c.open_session.is_none()
        })?;
        // The adapter started again gives up for good (the core refuses the service).
        client.connect()?;
        let again = client.wait_adapter_exit(PAIR_TIMEOUT)?;
        ensure!(
            matches!(again.code(), Some(3) | Some(5)),
            "adapter-client restarted after termination exited with {again}\n{}",
            client.adapter_log_tail(30)
        );

        // The real credentials no longer get in.
        let again = agent.raw_client(&client.ns, &key, &password)?;
        again.wait_auth_failed(PAIR_TIMEOUT)?;
        ensure!(
            again.proc.count_lines(e2e::INIT_COMPLETED) == 0,
            "{}",
            again.proc.log_tail(20)
        );
        Ok(())
    })
}

/// Test 6: the agent core is SIGKILLed while traffic flows and restarted: no acknowledged
/// usage is lost; after the session the agent has exactly OpenVPN's final counters.
#[test]
fn agent_core_killed_mid_session_loses_no_usage() -> Result<()> {
    run_pair_test("pair_core_restart", |env| {
        let opts = PairOptions {
            auth: AuthMode::ManagementClientAuth,
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let agent = &pair.agent;
        let client = pair.client(0)?;
        let hash = agent.publish(&OfferingSpec::new(10_000, "8", "8"))?;
        let key = client.accept_and_connect(agent, &hash, None)?;
        let _echo = agent.echo_server(ECHO_PORT)?;

        // 5 MB each way at 8 Mbit/s: about 5 s of traffic; the core dies in the middle.
        let bytes = 5 * BYTES_PER_UNIT;
        let before_kill = std::thread::scope(|s| -> Result<u64> {
            let pumping = s.spawn(|| client.pump(agent, ECHO_PORT, bytes, false));
            let seen = agent.wait_channel(&key, "usage flowing", PAIR_TIMEOUT, |c| {
                c.bytes_total >= BYTES_PER_UNIT
            })?;
            // Down long enough that the monitor fails a report and has to buffer it.
            let failed = agent.with_monitor(|m| m.count_lines("core unreachable"))?;
            agent.kill_core()?;
            agent.with_monitor(|m| {
                m.wait_for_line_count("core unreachable", failed + 1, PAIR_TIMEOUT)
            })??;
            agent.start_core()?;
            let echoed = pumping
                .join()
                .map_err(|_| anyhow::anyhow!("pump thread panicked"))??;
            ensure!(echoed == bytes, "echoed {echoed}");
            Ok(seen.bytes_total)
        })?;
        // The restarted core keeps what it had acknowledged and gets the rest replayed.
        let ch = agent.wait_channel(&key, "usage after the restart", PAIR_TIMEOUT, |c| {
            c.bytes_total >= 2 * bytes
        })?;
        ensure!(
            ch.bytes_total >= before_kill,
            "{} < {before_kill}",
            ch.bytes_total
        );

        let status = client.stop()?;
        ensure!(
            status.code() == Some(0),
            "adapter-client stopped with {status}"
        );
        let finals = agent.wait_final_counters(&key, 1, PAIR_TIMEOUT)?;
        let total: u64 = finals.iter().map(FinalCounters::total).sum();
        let ch = agent.wait_channel(&key, "the session closed", PAIR_TIMEOUT, |c| {
            c.open_session.is_none()
        })?;
        eprintln!(
            "core restart: {before_kill} bytes seen before the kill; agent {} vs OpenVPN {total} ({} connection(s))",
            ch.bytes_total,
            finals.len()
        );
        ensure!(
            ch.bytes_total == total,
            "agent bytesTotal {} != OpenVPN's final counters {total} ({finals:?})",
            ch.bytes_total
        );
        Ok(())
    })
}

/// Test 7: the OpenVPN server restarts; the monitor reconnects to the management socket,
/// the client reconnects, new usage is reported and the shaping classes exist again.
#[test]
fn openvpn_server_restart_is_recovered() -> Result<()> {
    run_pair_test("pair_openvpn_restart", |env| {
        let opts = PairOptions {
            auth: AuthMode::Hook,
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let agent = &pair.agent;
        let client = pair.client(0)?;
        let hash = agent.publish(&OfferingSpec::new(10_000, "16", "8"))?;
        let key = client.accept_and_connect(agent, &hash, None)?;
        let classes = |d: usize, u: usize| {
            agent
                .client_classes()
                .is_ok_and(|(a, b)| a.len() == d && b.len() == u)
        };
        e2e::wait_until(PAIR_TIMEOUT, "shaping classes", || classes(1, 1))?;
        {
            let _echo = agent.echo_server(ECHO_PORT)?;
            client.pump(agent, ECHO_PORT, 1_000_000, false)?;
        }
        let before = agent
            .wait_channel(&key, "first usage", PAIR_TIMEOUT, |c| {
                c.bytes_total >= 2_000_000
            })?
            .bytes_total;

        agent.restart_openvpn()?;
        agent.with_monitor(|m| {
            m.wait_for_line_count("connected to OpenVPN management", 2, PAIR_TIMEOUT)
        })??;
        client.wait_connections(2, PAIR_TIMEOUT)?;
        e2e::wait_until(PAIR_TIMEOUT, "shaping classes after the restart", || {
            classes(1, 1)
        })?;
        let (down, up) = agent.client_classes()?;
        ensure!(
            down[0].ceil_bps == 16_000_000 && up[0].ceil_bps == 8_000_000,
            "{down:?} {up:?}"
        );

        let _echo = agent.echo_server(ECHO_PORT + 1)?;
        client.pump(agent, ECHO_PORT + 1, 1_000_000, false)?;
        let after = agent.wait_channel(&key, "new usage after the restart", PAIR_TIMEOUT, |c| {
            c.bytes_total >= before + 2_000_000 && c.open_session.is_some()
        })?;
        let started = agent.with_monitor(|m| m.count_lines("session started"))?;
        ensure!(started >= 2, "monitor started {started} session(s)");

        client.stop()?;
        let ch = agent.wait_channel(&key, "the session closed", PAIR_TIMEOUT, |c| {
            c.open_session.is_none()
        })?;
        let finals = agent.final_counters_of(&key)?;
        let last = finals.last().map(FinalCounters::total).unwrap_or(0);
        let all: u64 = finals.iter().map(FinalCounters::total).sum();
        eprintln!(
            "openvpn restart: agent {} bytes before, {} live after, {} final; OpenVPN finals {finals:?}",
            before, after.bytes_total, ch.bytes_total
        );
        // The first session ended with the server (closed with its last known counts); the
        // second one exactly.
        ensure!(
            ch.bytes_total >= before + last && ch.bytes_total <= all.max(before + last),
            "agent {} vs OpenVPN finals {finals:?} (before {before})",
            ch.bytes_total
        );
        Ok(())
    })
}

/// Test 8: after a full run (connect, traffic, shaping, stop) and teardown nothing is left:
/// no namespace, veth, IFB, tc class or process (`run_pair_test` checks the scope after
/// the fixture is dropped; the tc and device checks run before, inside the namespaces).
#[test]
fn nothing_is_left_behind() -> Result<()> {
    run_pair_test("pair_leaks", |env| {
        let leaks = leak_checker(env);
        {
            let opts = PairOptions {
                auth: AuthMode::Hook,
                ..PairOptions::default()
            };
            let pair = Pair::start(env, opts)?;
            let agent = &pair.agent;
            let client = pair.client(0)?;
            let hash = agent.publish(&OfferingSpec::new(10_000, "8", "4"))?;
            client.accept_and_connect(agent, &hash, None)?;
            e2e::wait_until(PAIR_TIMEOUT, "shaping classes", || {
                agent
                    .client_classes()
                    .is_ok_and(|(d, u)| d.len() == 1 && u.len() == 1)
            })?;
            let _echo = agent.echo_server(ECHO_PORT)?;
            client.pump(agent, ECHO_PORT, 500_000, false)?;

            // While it runs, the checker sees it all (so "clean" below means something).
            let alive = leaks.find()?;
            for want in ["namespace", "process"] {
                ensure!(
                    alive.iter().any(|l| l.starts_with(want)),
                    "leak checker missed a live {want}: {alive:?}"
                );
            }
            let client_link = |dev: &str| {
                client
                    .ns
                    .output(&["ip", "link", "show", "dev", dev])
                    .map(|o| o.status.success())
            };
            ensure!(
                client_link(client.tun_dev())?,
                "client tun missing while connected"
            );

            // The client stops: its classes on the agent go, its own tun and IFB go.
            client.stop()?;
            e2e::wait_until(PAIR_TIMEOUT, "the client's classes removed", || {
                agent
                    .client_classes()
                    .is_ok_and(|(d, u)| d.is_empty() && u.is_empty())
            })?;
            ensure!(
                !client_link(client.tun_dev())?,
                "client tun left after stop"
            );
            let client_links = client.ns.run(&["ip", "-o", "link", "show"])?;
            ensure!(
                !client_links.contains(client.ifb_dev()),
                "client IFB {} left after stop: {client_links}",
                client.ifb_dev()
            );

            // The monitor stops: its IFB and the qdiscs on the tun go.
            let status = agent.stop_monitor()?;
            ensure!(status.success(), "monitor exited with {status}");
            ensure!(
                !agent.has_device(agent.ifb())?,
                "monitor IFB left after stop"
            );
            let qdiscs = agent.ns.run(&["tc", "qdisc", "show", "dev", agent.tun()])?;
            ensure!(
                !qdiscs.contains("htb") && !qdiscs.contains("ingress"),
                "qdiscs left on the tun: {qdiscs}"
            );
        }
        // The fixture is gone: namespaces (with their veths and IFBs), processes.
        leaks.wait_clean(PAIR_TIMEOUT)?;
        Ok(())
    })
}
