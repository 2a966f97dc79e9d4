//! The whole module pair end to end (issue 5): agent host (core-lite --role agent, OpenVPN
//! server, adapter-server hook + monitor with shaping) and client hosts (core-lite --role
//! client, offering fetched and accepted over the market, adapter-client connect), each in
//! its own network namespace. Fixture: `e2e::pair`.
//!
//! Bounds are generous (other e2e tests share the 2-core machine); no timing asserts except
//! the bandwidth bounds of the shaping tests.

use anyhow::{ensure, Result};
use core_lite::api::ServiceStatus;
use e2e::pair::*;

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
/// `management-client-auth` OpenVPN 2.6 never sends `>CLIENT:DISCONNECT` (manage.c sets
/// DAF_INITIAL_AUTH only in management_notify_client_needing_auth), so the monitor must
/// notice disconnects some other way.
#[test]
fn connect_and_usage_accounted_on_both_cores_with_the_auth_hook() -> Result<()> {
    accounting(AuthMode::Hook)
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
        ensure!(ch.bytes_total < 1_000_000, "fresh channel already has {} bytes", ch.bytes_total);

        let _echo = agent.echo_server(ECHO_PORT)?;
        let echoed = client.pump(agent, ECHO_PORT, PUMP_BYTES, false)?;
        ensure!(echoed == PUMP_BYTES, "echoed {echoed}");
        // Usage is reported while the client is connected (not only at the end).
        agent.wait_channel(&key, "live usage on the agent", PAIR_TIMEOUT, |c| {
            c.bytes_total >= 2 * PUMP_BYTES
        })?;

        let status = client.stop()?;
        ensure!(status.code() == Some(0), "adapter-client stopped with {status}");
        let finals = agent.wait_final_counters(&key, 1, PAIR_TIMEOUT)?;
        ensure!(finals.len() == 1, "one connection expected, recorded {finals:?}");
        let openvpn_total = finals[0].total();
        ensure!(openvpn_total >= 2 * PUMP_BYTES, "OpenVPN counted only {openvpn_total}");

        // Agent: exactly OpenVPN's own final counters, session closed.
        let ch = agent.wait_channel(&key, "the agent session closed", PAIR_TIMEOUT, |c| {
            c.open_session.is_none()
        })?;
        ensure!(
            ch.bytes_total == openvpn_total,
            "agent bytesTotal {} != OpenVPN's final counters {openvpn_total} ({:?})",
            ch.bytes_total,
            finals[0]
        );
        ensure!(ch.units_used == openvpn_total / BYTES_PER_UNIT, "units {}", ch.units_used);
        ensure!(ch.status == ServiceStatus::Active, "status {:?}", ch.status);

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
