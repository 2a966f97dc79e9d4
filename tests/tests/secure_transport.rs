//! Secure transport between the hosts (issue 13), with the real binaries in network
//! namespaces (fixture: `e2e::pair`; the market is https with the agent's self-signed
//! certificate, which its offerings pin):
//! - a capture on the client host's veth during accept, GetAccess (connect) and payments
//!   holds TLS records but neither the VPN password, nor the client key, nor any cheque or
//!   channel id in clear;
//! - a channel read that is not signed by the channel's client key gets 401;
//! - a man in the middle with another certificate is refused, naming the fingerprint
//!   mismatch; a downgrade of the pinned agent to plain http:// is refused.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::pair::*;
use nix::sys::signal::Signal;
use serde_json::{json, Value};

const MITM_PORT: u16 = 7711;
const STRIP_PORT: u16 = 7712;
const ECHO_PORT: u16 = 7009;

fn contains(hay: &[u8], needle: &str) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

fn proxy_script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/tls_proxy.py")
}

/// `core-lite offering fetch URL` in the client's namespace: its stderr, which must fail.
fn failed_fetch(client: &ClientHost<'_>, url: &str) -> Result<String> {
    let bin = client
        .core
        .bin()
        .to_str()
        .context("utf-8 path")?
        .to_string();
    let dir = client
        .core
        .data_dir()
        .to_str()
        .context("utf-8 path")?
        .to_string();
    let out = client
        .ns
        .output(&[&bin, "--data-dir", &dir, "offering", "fetch", url])?;
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ensure!(
        !out.status.success(),
        "offering fetch {url} succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Ok(stderr)
}

#[test]
fn market_traffic_is_private_pinned_and_authenticated() -> Result<()> {
    run_pair_test("secure_transport", |env| {
        let pair = Pair::start(env, PairOptions::default())?;
        let agent = &pair.agent;
        let client = pair.client(0)?;
        let pin = agent.tls_pin()?;
        ensure!(pin.len() == 64, "pin {pin:?}");

        // Capture everything between the hosts on the client's end of the veth.
        let pcap = env.path("market.pcap");
        let capture = client
            .ns
            .spawn("tcpdump")
            .args(["-i", client.link.name_b(), "-U", "-n", "-s", "0", "-w"])
            .arg(&pcap)
            .args(["tcp", "port", &MARKET_PORT.to_string()])
            .label("tcpdump")
            .spawn(env)?;
        capture.wait_for_line("listening on", PAIR_TIMEOUT)?;

        // Prepaid, a cheque every 2 MB.
        let spec = OfferingSpec::new(1000, "8", "8").with(json!({ "billingInterval": 2 }));
        let hash = agent.publish(&spec)?;
        let offering = agent.core.cli(&["offering", "show", &hash])?.to_string();
        ensure!(
            offering.contains(&format!("\"agentTlsSpkiSha256\":\"{pin}\"")),
            "the offering does not pin the agent's TLS key {pin}: {offering}"
        );
        let key = client.accept_and_connect(agent, &hash, None)?;
        let _echo = agent.echo_server(ECHO_PORT)?;
        let addr = std::net::SocketAddr::from((agent.tunnel_ip(), ECHO_PORT));
        client.ns.wait_for_tcp(addr, PAIR_TIMEOUT)?;
        pump(&client.ns, addr, 3_000_000, Duration::from_secs(30), false)?;
        let channel_id = agent.channel(&key)?.channel_id;
        // Cheques went over the market: more than the first interval is paid.
        let mut paid = 0;
        let deadline = std::time::Instant::now() + PAIR_TIMEOUT;
        while std::time::Instant::now() < deadline {
            let v = agent.market_view(client, &channel_id)?;
            paid = v.get("amountPaid").and_then(Value::as_u64).unwrap_or(0);
            if paid > 2 * UNIT_PRICE_BASE {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        ensure!(
            paid > 2 * UNIT_PRICE_BASE,
            "no cheque beyond the first: paid {paid}"
        );
        std::thread::sleep(Duration::from_millis(500));
        capture.signal(Signal::SIGINT)?;
        capture.wait_exit(PAIR_TIMEOUT)?;
        let bytes = std::fs::read(&pcap).with_context(|| format!("reading {}", pcap.display()))?;
        eprintln!("capture: {} bytes, amount paid {paid}", bytes.len());
        ensure!(
            bytes.len() > 20_000,
            "capture too small ({} bytes): nothing seen?",
            bytes.len()
        );
        // TLS handshake records (content type 22, version 3.x) crossed the link.
        ensure!(
            bytes
                .windows(3)
                .any(|w| w[0] == 0x16 && w[1] == 0x03 && w[2] <= 0x04),
            "no TLS record in the capture"
        );
        let access = agent.access(&key)?;
        let password = access
            .get("password")
            .and_then(Value::as_str)
            .context("access message without password")?
            .to_string();
        for (what, needle) in [
            ("the VPN password", password.as_str()),
            ("the client key", key.as_str()),
            ("the channel id (cheques, reads)", channel_id.as_str()),
            ("a cheque path", "/market/v1/cheque"),
            ("a JSON signature field", "\"signature\""),
            ("an HTTP request line", "HTTP/1.1"),
        ] {
            ensure!(
                !contains(&bytes, needle),
                "{what} crossed the link in clear"
            );
        }

        // A third party's channel read: 401, unsigned or signed by another key.
        let url = format!("{}/market/v1/channels/{channel_id}", agent.market_url());
        let code = client.ns.run(&[
            "curl",
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
            &url,
        ])?;
        ensure!(code.trim() == "401", "unsigned read answered {code}");
        let other = core_lite::keys::AgentKeys::generate();
        let path = format!("/market/v1/channels/{channel_id}");
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs();
        let mut argv: Vec<String> = ["curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        for (n, v) in core_lite::market::guard::sign_read(&other, "GET", &path, ts) {
            argv.push("-H".into());
            argv.push(format!("{n}: {v}"));
        }
        argv.push(url.clone());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let code = client.ns.run(&argv)?;
        ensure!(
            code.trim() == "401",
            "read signed by another key answered {code}"
        );
        // The channel's own key reads it.
        agent.market_view(client, &channel_id)?;

        // A man in the middle with its own certificate, relaying to the agent.
        let (cert, keyf) = (env.path("mitm.crt"), env.path("mitm.key"));
        let out = Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
            ])
            .args(["-nodes", "-days", "1", "-subj", "/CN=mitm", "-keyout"])
            .arg(&keyf)
            .arg("-out")
            .arg(&cert)
            .output()?;
        ensure!(
            out.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let public = agent.public_addr().to_string();
        let mitm = agent
            .ns
            .spawn("python3")
            .arg(proxy_script())
            .args(["mitm", &public, &MITM_PORT.to_string(), &public])
            .arg(MARKET_PORT.to_string())
            .arg(&cert)
            .arg(&keyf)
            .label("mitm-proxy")
            .spawn(env)?;
        mitm.wait_for_line("proxy listening", PAIR_TIMEOUT)?;
        let err = failed_fetch(client, &format!("https://{public}:{MITM_PORT}"))?;
        eprintln!("through the MITM: {err}");
        ensure!(
            err.contains("fingerprint mismatch") && err.contains(&pin),
            "the MITM was not refused with a fingerprint mismatch naming the pin: {err}\n{}",
            mitm.log_tail(10)
        );

        // A downgrade: plain http relayed to the agent's TLS market.
        let strip = agent
            .ns
            .spawn("python3")
            .arg(proxy_script())
            .args(["strip", &public, &STRIP_PORT.to_string(), &public])
            .arg(MARKET_PORT.to_string())
            .label("strip-proxy")
            .spawn(env)?;
        strip.wait_for_line("proxy listening", PAIR_TIMEOUT)?;
        let err = failed_fetch(client, &format!("http://{public}:{STRIP_PORT}"))?;
        eprintln!("downgraded: {err}");
        ensure!(
            err.contains("downgrade") && err.contains(&pin),
            "the downgrade to http:// was not refused: {err}\n{}",
            strip.log_tail(10)
        );
        // The channel still works through the real market.
        client.wait_connected(PAIR_TIMEOUT)?;
        Ok(())
    })
}

/// A hoarder that accepts over the market (from another host, with its own key) and never
/// pays: its channel is closed when the agent's claim window passes, and the offering's
/// only unit of supply is for sale again.
#[test]
fn a_never_paying_channel_is_released_and_its_supply_returns() -> Result<()> {
    run_pair_test("claim_window", |env| {
        let opts = PairOptions {
            agent_args: vec!["--claim-window-secs".into(), "3".into()],
            ..PairOptions::default()
        };
        let pair = Pair::start(env, opts)?;
        let agent = &pair.agent;
        let client = pair.client(0)?;
        let spec = OfferingSpec::new(1000, "8", "8").with(json!({ "supply": 1 }));
        let hash = agent.publish(&spec)?;
        let offerings_url = format!("{}/market/v1/offerings", agent.market_url());
        // The agent has this one offering: is it for sale?
        let listed = |ns: &e2e::Netns| -> Result<bool> {
            let out = ns.run(&["curl", "-sSk", "--max-time", "5", &offerings_url])?;
            let v: Value =
                serde_json::from_str(&out).with_context(|| format!("offerings answered {out}"))?;
            let n = v
                .get("offerings")
                .and_then(Value::as_array)
                .map(Vec::len)
                .with_context(|| format!("offerings answered {out}"))?;
            Ok(n == 1)
        };
        ensure!(listed(&client.ns)?, "the offering is not for sale");
        // The hoarder's accept, signed with a key of its own, sent with curl.
        let hoarder = core_lite::keys::AgentKeys::generate();
        let h = rand_hex(32);
        let nonce = format!(
            "{}-{}-4{}-8{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..15],
            &h[15..18],
            &h[18..30]
        );
        let req =
            core_lite::market::signed_accept(&hoarder, &hash, spec.full_deposit(), &nonce, None)?;
        let body = serde_json::to_string(&req)?;
        let url = format!("{}/market/v1/accept", agent.market_url());
        let out = client.ns.run(&[
            "curl",
            "-sSk",
            "--max-time",
            "5",
            "-H",
            "content-type: application/json",
            "-d",
            &body,
            &url,
        ])?;
        let answer: Value =
            serde_json::from_str(&out).with_context(|| format!("accept answered {out}"))?;
        let key = answer
            .pointer("/access/username")
            .and_then(Value::as_str)
            .with_context(|| format!("accept answered {out}"))?
            .to_string();
        ensure!(
            !listed(&client.ns)?,
            "the only unit of supply is still for sale"
        );
        let ch = agent.wait_channel(&key, "the unclaimed channel closed", PAIR_TIMEOUT, |c| {
            c.status == service_api::ServiceStatus::Terminated
        })?;
        ensure!(
            ch.history.iter().any(|c| c.reason.contains("claim window")),
            "closed for another reason: {:?}",
            ch.history
        );
        ensure!(listed(&client.ns)?, "the supply did not return");
        Ok(())
    })
}

/// `n` (at most 64) random lowercase hex digits: the SHA-256 of a fresh key's signature.
fn rand_hex(n: usize) -> String {
    let k = core_lite::keys::AgentKeys::generate();
    let sig = k.sign(b"nonce");
    core_lite::jcs::hash_hex(&Value::String(sig))
        .unwrap_or_default()
        .chars()
        .take(n)
        .collect()
}
