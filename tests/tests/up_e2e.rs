//! Issue 16, item 1 end to end: the VPN end user's one command. The agent host of
//! `e2e::pair` (core-lite --role agent with its market API, OpenVPN server with the
//! adapter-server hook and monitor) publishes an offering; in the client namespace
//! `adapter-client up http://AGENT:7710 --offering … --deposit … --yes --json` starts its
//! own client core (on a port of its own, with a state directory of its own), fetches and
//! verifies the offering, buys it and connects with real OpenVPN. Traffic goes through the
//! tunnel to an echo server on the agent's tunnel address; `adapter-client ls` shows the
//! usage; `adapter-client down` stops it with the final counts, and the core `up` started
//! is stopped with it.

use std::net::{SocketAddr, SocketAddrV4};
use std::process::Output;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::pair::*;
use e2e::{bin_path, wait_for};
use serde_json::Value;

const ECHO_PORT: u16 = 7007;
const PUMP_BYTES: u64 = 3_000_000;
/// The client core `up` starts (the pair's own client core listens on 7701).
const UP_CORE: &str = "http://127.0.0.1:7702";

fn json_of(out: &Output) -> Result<Value> {
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!(
            "not JSON: {}\nstderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

#[test]
fn up_buys_and_connects_in_one_command() -> Result<()> {
    run_pair_test("up-e2e", |env| {
        let pair = Pair::start(
            env,
            PairOptions {
                shaping: false,
                ..PairOptions::default()
            },
        )?;
        let hash = pair.agent.publish(&OfferingSpec::new(1000, "8", "4"))?;
        let _echo = pair.agent.echo_server(ECHO_PORT)?;
        let client = pair.client(0)?;
        let adapter = bin_path("adapter-client")?;
        let core_lite = bin_path("core-lite")?;
        let state_dir = env.path("up-state");
        let run_dir = env.path("up-run");
        let tun = env.unique_name('t');
        let s = |p: &std::path::Path| p.to_string_lossy().into_owned();

        let up = client
            .ns
            .spawn(&adapter)
            .args(["--log", "info", "up", &pair.agent.market_url()])
            .args([
                "--offering",
                &hash,
                "--deposit",
                "50000000",
                "--yes",
                "--json",
            ])
            .args(["--core-url", UP_CORE, "--core-bin", &s(&core_lite)])
            .args(["--state-dir", &s(&state_dir), "--run-dir", &s(&run_dir)])
            .args(["--tun-dev", &tun, "--no-shaping"])
            .args(["--report-interval", "1", "--status-interval", "1"])
            .args(["--stop-timeout", "5"])
            .label("adapter-client-up")
            .spawn(env)?;
        let core_line = up.wait_for_line("\"event\":\"core\"", PAIR_TIMEOUT)?;
        let core: Value = serde_json::from_str(&core_line)?;
        ensure!(
            core["started"] == true,
            "up did not start its own core: {core}"
        );
        let accepted: Value =
            serde_json::from_str(&up.wait_for_line("\"event\":\"accepted\"", PAIR_TIMEOUT)?)?;
        let key = accepted["channel"]["clientKey"]
            .as_str()
            .context("clientKey")?
            .to_string();
        ensure!(accepted["channel"]["deposit"] == 50_000_000, "{accepted}");
        let connected: Value = serde_json::from_str(
            &up.wait_for_line("\"event\":\"connected\"", PAIR_TIMEOUT)
                .with_context(|| up.log_tail(40))?,
        )?;
        ensure!(connected["tunDev"] == tun.as_str(), "{connected}");

        // Traffic through the tunnel: the echo server listens on the agent's tunnel address.
        let echo = SocketAddr::V4(SocketAddrV4::new(pair.agent.tunnel_ip(), ECHO_PORT));
        client.ns.wait_for_tcp(echo, PAIR_TIMEOUT)?;
        let back = pump(&client.ns, echo, PUMP_BYTES, Duration::from_secs(15), false)?;
        ensure!(back == PUMP_BYTES, "echoed {back} of {PUMP_BYTES} bytes");
        // The agent counts it too (its own OpenVPN, its own core).
        pair.agent.wait_channel(
            &key,
            "the agent's count of the traffic",
            PAIR_TIMEOUT,
            |c| c.bytes_total >= 2 * PUMP_BYTES,
        )?;

        // `ls`: the channel with its usage and the running connection.
        let ls = |json: bool| -> Result<Output> {
            let mut argv = vec![
                s(&adapter),
                "ls".into(),
                "--core-url".into(),
                UP_CORE.into(),
                "--state-dir".into(),
                s(&state_dir),
                "--run-dir".into(),
                s(&run_dir),
            ];
            if json {
                argv.push("--json".into());
            }
            let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
            client.ns.output(&argv)
        };
        let ch = wait_for(PAIR_TIMEOUT, "ls to show the usage", || {
            let v = json_of(&ls(true)?)?;
            let ch = v
                .as_array()
                .and_then(|a| a.iter().find(|c| c["clientKey"] == key.as_str()))
                .cloned();
            Ok(ch.filter(|c| c["unitsUsed"].as_u64().unwrap_or(0) >= 6))
        })?;
        ensure!(ch["connection"]["running"] == true, "{ch}");
        ensure!(ch["connection"]["phase"] == "connected", "{ch}");
        ensure!(ch["offering"]["offeringHash"] == hash.as_str(), "{ch}");
        let table = ls(false)?;
        let text = String::from_utf8_lossy(&table.stdout);
        eprintln!("adapter-client ls:\n{text}");
        ensure!(text.contains(&key) && text.contains("connected"), "{text}");

        // `down`: the final counts, then `up` ends with 0 and stops its core.
        let down = client.ns.output(&[
            &s(&adapter),
            "down",
            &key,
            "--json",
            "--run-dir",
            &s(&run_dir),
        ])?;
        ensure!(down.status.code() == Some(0), "down: {down:?}");
        let stopped = json_of(&down)?;
        ensure!(stopped[0]["phase"] == "stopped", "{stopped}");
        ensure!(
            stopped[0]["bytesIn"].as_u64().unwrap_or(0) >= PUMP_BYTES
                && stopped[0]["bytesOut"].as_u64().unwrap_or(0) >= PUMP_BYTES,
            "final counts: {stopped}"
        );
        let status = up.wait_exit(PAIR_TIMEOUT)?;
        ensure!(
            status.code() == Some(0),
            "up: {status}\n{}",
            up.log_tail(30)
        );
        let end: Value =
            serde_json::from_str(&up.wait_for_line("\"event\":\"stopped\"", PAIR_TIMEOUT)?)?;
        ensure!(end["exitCode"] == 0, "{end}");
        ensure!(
            end["status"]["unitsUsed"].as_u64().unwrap_or(0) >= 6,
            "{end}"
        );
        ensure!(
            client
                .ns
                .wait_for_tcp("127.0.0.1:7702".parse()?, Duration::from_millis(500))
                .is_err(),
            "the client core up started still answers"
        );
        Ok(())
    })
}
