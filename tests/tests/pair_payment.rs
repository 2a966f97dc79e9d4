//! Payments over the market in network namespaces (issue 6): a client whose core stops
//! paying is cut off within maxBillingUnitLag + one billing interval of unpaid units, waits,
//! and is let back in when its core pays again. Fixture: `e2e::pair`.

use std::net::{SocketAddr, SocketAddrV4};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use e2e::pair::*;
use serde_json::{json, Value};
use service_api::ServiceStatus;

const ECHO_PORT: u16 = 7009;
const INTERVAL: u64 = 4;
const LAG: u64 = 4;

/// The agent's market view of the channel (`GET /market/v1/channels/ID`), fetched from the
/// client's namespace with a read signed by the client core's key.
fn market_view(pair: &Pair<'_>, key: &str) -> Result<Value> {
    let id = pair.agent.channel(key)?.channel_id;
    pair.agent.market_view(pair.client(0)?, &id)
}

fn field(v: &Value, k: &str) -> Result<u64> {
    v.get(k)
        .and_then(Value::as_u64)
        .with_context(|| format!("market view has no {k}: {v}"))
}

#[test]
fn unpaid_client_is_cut_off_and_let_back_in_after_paying() -> Result<()> {
    run_pair_test("pair_payment", |env| {
        let pair = Pair::start(env, PairOptions::default())?;
        let agent = &pair.agent;
        let client = pair.client(0)?;
        // Postpaid, a cheque every 4 MB, suspension beyond 4 unpaid MB; 2 Mbit/s each way
        // keeps the traffic per usage report (1 s) well below one unit.
        let spec = OfferingSpec::new(1000, "2", "2").with(json!({
            "billingType": "postpaid",
            "billingInterval": INTERVAL,
            "maxBillingUnitLag": LAG,
            "freeUnits": 0,
        }));
        let hash = agent.publish(&spec)?;
        let key = client.accept_and_connect(agent, &hash, None)?;
        let _echo = agent.echo_server(ECHO_PORT)?;
        let addr = SocketAddr::V4(SocketAddrV4::new(agent.tunnel_ip(), ECHO_PORT));
        client.ns.wait_for_tcp(addr, PAIR_TIMEOUT)?;

        // Paying client: 10 MB of tunnel traffic; the payer sends cheques for whole intervals.
        pump(&client.ns, addr, 5_000_000, Duration::from_secs(30), false).with_context(|| {
            format!(
                "paying phase; agent channel {:?}; market view {:?}\n{}",
                agent.channel(&key).ok(),
                market_view(&pair, &key).ok(),
                client.adapter_log_tail(30)
            )
        })?;
        let deadline = Instant::now() + PAIR_TIMEOUT;
        loop {
            let v = market_view(&pair, &key)?;
            if field(&v, "amountPaid")? >= 2 * INTERVAL * UNIT_PRICE_BASE {
                break;
            }
            ensure!(Instant::now() < deadline, "no cheques arrived: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
        ensure!(agent.channel(&key)?.status == ServiceStatus::Active);

        // The client's core stops paying; traffic goes on until the agent suspends.
        client.core.cli(&["channel", "payments", &key, "--pause"])?;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let st = agent.channel(&key)?.status;
            if matches!(st, ServiceStatus::Suspending | ServiceStatus::Suspended) {
                break;
            }
            if Instant::now() > deadline {
                bail!("still {st:?} after 120 s of unpaid traffic");
            }
            // Errors are expected once the cut happens.
            let _ = pump(&client.ns, addr, 250_000, Duration::from_secs(5), true);
        }
        let ch = agent.wait_channel(&key, "suspended on the agent", PAIR_TIMEOUT, |c| {
            c.status == ServiceStatus::Suspended
        })?;
        let v = market_view(&pair, &key)?;
        let paid_units = field(&v, "amountPaid")? / UNIT_PRICE_BASE;
        let unpaid = ch.units_used.saturating_sub(paid_units);
        eprintln!(
            "payment: suspended with {} units used, {paid_units} paid, {unpaid} unpaid (lag {LAG}, interval {INTERVAL})",
            ch.units_used
        );
        ensure!(unpaid > LAG, "suspended with only {unpaid} unpaid units");
        ensure!(
            unpaid <= LAG + INTERVAL,
            "cut off too late: {unpaid} unpaid units > maxBillingUnitLag {LAG} + billingInterval {INTERVAL}"
        );
        ensure!(ch.open_session.is_none(), "the session stays open: {ch:?}");

        // The client adapter waits (it does not give up) and says why.
        let st = wait_for_phase(client, "suspended", PAIR_TIMEOUT)?;
        ensure!(
            client.adapter_exit()?.is_none(),
            "adapter-client gave up: {st}"
        );

        // Payments resume: the payer pays the agent's count; the agent lets the client back in.
        client
            .core
            .cli(&["channel", "payments", &key, "--resume"])?;
        client.wait_connections(2, Duration::from_secs(90))?;
        let ch = agent.wait_channel(&key, "active again on the agent", PAIR_TIMEOUT, |c| {
            c.status == ServiceStatus::Active && c.open_session.is_some()
        })?;
        let statuses: Vec<ServiceStatus> = ch.history.iter().map(|h| h.status).collect();
        for want in [
            ServiceStatus::Suspending,
            ServiceStatus::Suspended,
            ServiceStatus::Activating,
        ] {
            ensure!(
                statuses.contains(&want),
                "history lacks {want:?}: {statuses:?}"
            );
        }
        // And traffic flows again.
        client.ns.wait_for_tcp(addr, PAIR_TIMEOUT)?;
        pump(&client.ns, addr, 200_000, Duration::from_secs(30), false)?;
        let status = client.stop()?;
        ensure!(
            status.code() == Some(0),
            "adapter-client stopped with {status}"
        );
        Ok(())
    })
}

fn wait_for_phase(client: &ClientHost<'_>, phase: &str, timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = client.state()? {
            if st.get("phase").and_then(Value::as_str) == Some(phase) {
                return Ok(st);
            }
            if Instant::now() > deadline {
                bail!(
                    "adapter phase {:?}, wanted {phase}\n{}",
                    st.get("phase"),
                    client.adapter_log_tail(30)
                );
            }
        } else if Instant::now() > deadline {
            bail!("no adapter state\n{}", client.adapter_log_tail(30));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
