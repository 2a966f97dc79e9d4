//! The end user's commands (issue 16, item 1) as a script would run them: `up AGENT_URL
//! --offering … --deposit … --yes --json` against real cores (an agent core with its
//! market API, the client core in-process or started by `up` itself) and a fake openvpn
//! whose management socket the test serves; then `ls` and `down`, the JSON they print and
//! the exit codes.

mod common;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use common::{kill, poll, FakeOpenVpn, Mgmt, CA, TA, WAIT};
use core_lite::testkit::{vpn_offering_input, TestCore};
use nix::sys::signal::Signal;
use serde_json::Value;
use service_api::{Client, SetProductConfigRequest};

const BIN: &str = env!("CARGO_BIN_EXE_adapter-client");
const CONNECTED: &str =
    ">STATE:1700000000,CONNECTED,SUCCESS,10.8.0.6,127.0.0.1,1194,127.0.0.1,40000";

/// Kills the process on drop (a failing test must not leave it running).
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn base_cmd() -> Command {
    let mut c = Command::new(BIN);
    for (k, _) in std::env::vars() {
        if k.starts_with("ADAPTER_CLIENT_") {
            c.env_remove(k);
        }
    }
    c
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The agent: a core with the VPN module, a product whose config carries the CA and the
/// tls-crypt key, one offering, and its market API.
struct Agent {
    core: TestCore,
    market: String,
    offering: String,
}

async fn agent(edit: impl FnOnce(&mut Value)) -> Result<Agent> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (product, token) = core.create_product("vpn-1", "127.0.0.1:1194")?;
    let config: BTreeMap<String, String> = [
        ("proto", "udp"),
        ("port", "1194"),
        ("dev", "tun"),
        ("ca", CA),
        ("tlsCrypt", TA),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Client::new(&core.url, token, Duration::from_secs(5))?
        .set_product_config(&SetProductConfigRequest { config })
        .await?;
    let mut input = vpn_offering_input(1000, Some(("8", "4")));
    edit(&mut input);
    let offering = core.publish_offering(&product, &input)?;
    let market = core.start_market().await?;
    Ok(Agent {
        core,
        market,
        offering,
    })
}

/// The JSON events `up --json` prints, read by a thread.
struct Events {
    rx: std::sync::mpsc::Receiver<Value>,
    seen: Vec<Value>,
}

impl Events {
    fn new(child: &mut Child) -> Result<Events> {
        let out = child.stdout.take().context("stdout piped")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                let v = serde_json::from_str(&line)
                    .unwrap_or_else(|e| Value::String(format!("NOT JSON ({e}): {line}")));
                if tx.send(v).is_err() {
                    break;
                }
            }
        });
        Ok(Events {
            rx,
            seen: Vec::new(),
        })
    }

    /// Waits for the next event named `name` for which `pred` holds.
    async fn wait(&mut self, name: &str, pred: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.rx.try_recv() {
                Ok(v) => {
                    self.seen.push(v.clone());
                    if v["event"] == name && pred(&v) {
                        return Ok(v);
                    }
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    if tokio::time::Instant::now() >= deadline {
                        bail!("no `{name}` event; seen: {:?}", self.names());
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    bail!(
                        "output ended before a `{name}` event; seen: {:#?}",
                        self.seen
                    )
                }
            }
        }
    }

    /// Every event up to the end of the output.
    async fn rest(&mut self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match self.rx.try_recv() {
                Ok(v) => self.seen.push(v),
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return Ok(()),
                Err(std::sync::mpsc::TryRecvError::Empty) => {
                    if tokio::time::Instant::now() >= deadline {
                        bail!("output did not end");
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }

    fn names(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|v| v["event"].as_str().unwrap_or("?").to_string())
            .collect()
    }
}

async fn wait_exit(p: &mut Proc) -> Result<std::process::ExitStatus> {
    poll("the process to exit", || p.0.try_wait().ok().flatten()).await
}

fn stderr_of(p: &mut Proc) -> String {
    let mut s = String::new();
    if let Some(mut e) = p.0.stderr.take() {
        use std::io::Read;
        let _ = e.read_to_string(&mut s);
    }
    s
}

/// `ls --json` (or `down --json`) as parsed JSON, with the exit code.
fn run_json(args: &[&str]) -> Result<(Option<i32>, Value, String)> {
    let out = base_cmd().args(args).stdin(Stdio::null()).output()?;
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let v = serde_json::from_str(stdout.trim()).unwrap_or(Value::Null);
    Ok((out.status.code(), v, stderr))
}

/// The fake openvpn of the channel `key` under `run`: its pid and the management
/// connection, after `hold release`.
async fn openvpn_of(fake: &mut FakeOpenVpn, run: &Path, key: &str) -> Result<(i32, Mgmt)> {
    let (pid, _) = fake.next_spawn().await?;
    let dir = run.join(adapter_client::runtime::safe_name(key));
    let m = fake.accept(&dir.join("mgmt.sock")).await?;
    Ok((pid, m))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_buys_connects_and_down_stops_it_with_final_counts() -> Result<()> {
    let agent = agent(|_| {}).await?;
    let client = TestCore::start().await?;
    client.register_vpn_module()?;
    let work = tempfile::tempdir()?;
    let token = work.path().join("client.token");
    std::fs::write(
        &token,
        format!("{}\n", client.create_client_token()?.expose()),
    )?;
    let run = work.path().join("run");
    let mut fake = FakeOpenVpn::new()?;
    let child = base_cmd()
        .args(["up", &agent.market, "--offering", &agent.offering[..12]])
        .args(["--deposit", "5000000", "--yes", "--json"])
        .args(["--core-url", &client.url, "--token-file", s(&token)])
        .args(["--openvpn", s(&fake.script), "--run-dir", s(&run)])
        .args(["--state-dir", s(&work.path().join("state"))])
        .args([
            "--no-shaping",
            "--report-interval",
            "1",
            "--status-interval",
            "1",
        ])
        .args(["--backoff-initial-ms", "50"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut up = Proc(child);
    let mut ev = Events::new(&mut up.0)?;

    let core = ev.wait("core", |_| true).await?;
    assert_eq!(core["started"], false, "the running client core is reused");
    assert_eq!(core["url"], client.url.as_str());
    let offerings = ev.wait("offerings", |_| true).await?;
    assert_eq!(
        offerings["accepted"][0]["offeringHash"],
        agent.offering.as_str()
    );
    assert_eq!(offerings["accepted"][0]["unitPrice"], 100_000);
    let selected = ev.wait("selected", |_| true).await?;
    assert_eq!(
        selected["offering"]["offeringHash"],
        agent.offering.as_str()
    );
    let accepted = ev.wait("accepted", |_| true).await?;
    let key = accepted["channel"]["clientKey"]
        .as_str()
        .context("clientKey")?
        .to_string();
    assert_eq!(accepted["channel"]["deposit"], 5_000_000);
    assert_eq!(
        agent.core.channel(&key)?.deposit,
        5_000_000,
        "bought at the agent"
    );

    let (ovpn, mut m) = openvpn_of(&mut fake, &run, &key).await?;
    m.send(CONNECTED).await?;
    m.send(">BYTECOUNT:3000000,1000000").await?;
    let connected = ev.wait("connected", |_| true).await?;
    assert_eq!(connected["vpnAddress"], "10.8.0.6");
    // The live status: the run's bytes, and the units and money the core counts.
    let st = ev.wait("status", |v| v["status"]["unitsUsed"] == 4).await?;
    assert_eq!(st["status"]["phase"], "connected");
    assert_eq!(st["status"]["bytesIn"], 3_000_000);
    assert_eq!(st["status"]["bytesOut"], 1_000_000);
    assert_eq!(st["status"]["maxUnits"], 1000);
    assert_eq!(st["status"]["amountUsed"], 400_000);

    // `ls`: the channel with its usage and its running connection.
    let (code, ls, err) = run_json(&[
        "ls",
        "--json",
        "--core-url",
        &client.url,
        "--token-file",
        s(&token),
        "--run-dir",
        s(&run),
    ])?;
    assert_eq!(code, Some(0), "{err}");
    let ch = ls
        .as_array()
        .and_then(|a| a.iter().find(|c| c["clientKey"] == key.as_str()))
        .with_context(|| format!("{key} not in {ls}"))?;
    assert_eq!(ch["unitsUsed"], 4);
    assert_eq!(ch["bytesTotal"], 4_000_000);
    assert_eq!(ch["deposit"], 5_000_000);
    assert_eq!(ch["connection"]["running"], true);
    assert_eq!(ch["connection"]["phase"], "connected");
    assert_eq!(ch["offering"]["offeringHash"], agent.offering.as_str());

    // `down KEY`: SIGTERM to `up`, which stops openvpn and reports the final counts.
    let down = base_cmd()
        .args(["down", &key, "--json", "--run-dir", s(&run)])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let mut down = Proc(down);
    m.expect("signal SIGTERM").await?;
    m.send(">BYTECOUNT:3500000,1500000").await?;
    m.send(">STATE:1700000010,EXITING,SIGTERM,,,,,").await?;
    kill(ovpn, Signal::SIGTERM);
    let down_status = wait_exit(&mut down).await?;
    let mut down_out = String::new();
    if let Some(mut o) = down.0.stdout.take() {
        use std::io::Read;
        o.read_to_string(&mut down_out)?;
    }
    assert_eq!(down_status.code(), Some(0), "{}", stderr_of(&mut down));
    let stopped: Value = serde_json::from_str(down_out.trim())?;
    assert_eq!(stopped[0]["clientKey"], key.as_str());
    assert_eq!(stopped[0]["phase"], "stopped");
    assert_eq!(stopped[0]["bytesIn"], 3_500_000, "final counts: {stopped}");
    assert_eq!(stopped[0]["bytesOut"], 1_500_000);

    let status = wait_exit(&mut up).await?;
    let err = stderr_of(&mut up);
    assert_eq!(status.code(), Some(0), "{err}");
    let end = ev.wait("stopped", |_| true).await?;
    assert_eq!(end["exitCode"], 0);
    assert_eq!(end["status"]["phase"], "stopped");
    assert_eq!(end["status"]["unitsUsed"], 5, "final StopSession: 5 MB");
    assert_eq!(end["status"]["bytesIn"], 3_500_000);
    ev.rest().await?;
    // The steps, in order.
    let names = ev.names();
    let order = [
        "core",
        "offerings",
        "selected",
        "accepted",
        "connecting",
        "connected",
    ];
    let at: Vec<usize> = order
        .iter()
        .map(|n| names.iter().position(|x| x == n).unwrap_or(usize::MAX))
        .collect();
    assert!(at.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    assert_eq!(
        names.last().map(String::as_str),
        Some("stopped"),
        "{names:?}"
    );
    assert!(!err.contains(client.create_client_token()?.expose()));
    assert_eq!(client.channel(&key)?.bytes_total, 5_000_000);
    assert!(client.channel(&key)?.open_session.is_none());

    // Nothing runs any more: `down` has nothing to stop (6).
    let (code, _, _) = run_json(&["down", "--json", "--run-dir", s(&run)])?;
    assert_eq!(code, Some(6));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_codes_of_up_when_nothing_is_bought() -> Result<()> {
    let agent = agent(|_| {}).await?;
    let client = TestCore::start().await?;
    client.register_vpn_module()?;
    let work = tempfile::tempdir()?;
    let token = work.path().join("client.token");
    std::fs::write(
        &token,
        format!("{}\n", client.create_client_token()?.expose()),
    )?;
    let up = |args: &[&str]| -> Result<(Option<i32>, Vec<Value>, String)> {
        let out = base_cmd()
            .arg("up")
            .args(args)
            .args(["--core-url", &client.url, "--token-file", s(&token)])
            .args(["--state-dir", s(&work.path().join("state"))])
            .args(["--run-dir", s(&work.path().join("run"))])
            .args(["--openvpn", "/bin/true"])
            .stdin(Stdio::null())
            .output()?;
        let events = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        Ok((
            out.status.code(),
            events,
            String::from_utf8_lossy(&out.stderr).to_string(),
        ))
    };
    let last_error = |events: &[Value]| -> Value {
        events
            .iter()
            .rev()
            .find(|e| e["event"] == "error")
            .cloned()
            .unwrap_or(Value::Null)
    };
    // No offering matches the filters: 6.
    let (code, events, err) = up(&[&agent.market, "--country", "FR", "--yes", "--json"])?;
    assert_eq!(code, Some(6), "{err}");
    assert_eq!(last_error(&events)["exitCode"], 6);
    let (code, _, err) = up(&[&agent.market, "--max-price", "99999", "--yes", "--json"])?;
    assert_eq!(code, Some(6), "{err}");
    // No terminal to confirm on and no --yes: 2, nothing bought.
    let (code, events, err) = up(&[&agent.market, "--json"])?;
    assert_eq!(code, Some(2), "{err}");
    assert!(
        last_error(&events)["message"]
            .as_str()
            .is_some_and(|m| m.contains("--yes")),
        "{events:?}"
    );
    assert!(
        agent.core.core().list_channels()?.is_empty(),
        "nothing bought"
    );
    // A deposit below the offering's minimum (100000): 2, nothing bought.
    let (code, _, err) = up(&[&agent.market, "--deposit", "5", "--yes"])?;
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("minimum deposit 100000"), "{err}");
    assert!(
        agent.core.core().list_channels()?.is_empty(),
        "nothing bought"
    );
    // A bad agent URL, or none at all: 2.
    let (code, _, err) = up(&["ftp://agent", "--yes"])?;
    assert_eq!(code, Some(2), "{err}");
    let (code, _, err) = up(&["--yes"])?;
    assert_eq!(code, Some(2), "{err}");
    // An agent that does not answer: 1, and the core's 502 is in the message.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        l.local_addr()?
    };
    let (code, events, err) = up(&[&closed.to_string(), "--yes", "--json"])?;
    assert_eq!(code, Some(1), "{err}");
    assert!(
        last_error(&events)["message"]
            .as_str()
            .is_some_and(|m| m.contains("BadGateway") && m.contains(&closed.to_string())),
        "{events:?}"
    );
    // An unknown --client-key: 6.
    let (code, _, err) = up(&["--client-key", "c-unknown", "--json"])?;
    assert_eq!(code, Some(6), "{err}");
    // Plain lines when the output is not a terminal: each step says what it did.
    let (code, events, err) = up(&[&agent.market, "--country", "FR", "--yes"])?;
    assert_eq!(code, Some(6));
    assert!(events.is_empty(), "no JSON without --json");
    assert!(err.contains("[ok] client core at"), "{err}");
    assert!(err.contains("[ok] 1 offering(s) from"), "{err}");
    assert!(err.contains("none of the 1 offering(s) matches"), "{err}");
    Ok(())
}

/// The core-lite binary of this build (built with `cargo build -p core-lite` when it is
/// not there yet).
fn core_lite_bin() -> Result<PathBuf> {
    let dir = Path::new(BIN).parent().context("the binaries' directory")?;
    let bin = dir.join("core-lite");
    if !bin.is_file() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "-p", "core-lite", "--bin", "core-lite"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()?;
        anyhow::ensure!(status.success(), "building core-lite failed");
    }
    anyhow::ensure!(bin.is_file(), "no core-lite at {}", bin.display());
    Ok(bin)
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_starts_its_own_core_and_a_second_up_reuses_the_channel() -> Result<()> {
    let core_lite = core_lite_bin()?;
    let agent = agent(|_| {}).await?;
    let work = tempfile::tempdir()?;
    let state = work.path().join("state");
    let run = work.path().join("run");
    let url = format!("http://127.0.0.1:{}", free_port()?);
    let mut fake = FakeOpenVpn::new()?;
    let script = fake.script.clone();
    let up = |extra: &[&str]| -> Result<Proc> {
        Ok(Proc(
            base_cmd()
                .arg("up")
                .args(extra)
                .args(["--json", "--core-url", &url, "--core-bin", s(&core_lite)])
                .args(["--state-dir", s(&state), "--run-dir", s(&run)])
                .args(["--openvpn", s(&script), "--no-shaping"])
                .args(["--report-interval", "1", "--status-interval", "1"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()?,
        ))
    };
    let mut first = up(&[&agent.market, "--yes"])?;
    let mut ev = Events::new(&mut first.0)?;
    let core = ev.wait("core", |_| true).await?;
    assert_eq!(core["started"], true);
    // The token `up` made for itself: 0600 in the state directory.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("client.token"))?
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let accepted = ev.wait("accepted", |_| true).await?;
    let key = accepted["channel"]["clientKey"]
        .as_str()
        .context("clientKey")?
        .to_string();
    // No --deposit: the full deposit (1000 units at 100000).
    assert_eq!(accepted["channel"]["deposit"], 100_000_000);
    let (ovpn, mut m) = openvpn_of(&mut fake, &run, &key).await?;
    m.send(CONNECTED).await?;
    m.send(">BYTECOUNT:1500000,600000").await?;
    ev.wait("status", |v| v["status"]["unitsUsed"] == 2).await?;
    // Ctrl-C (SIGINT to `up` only: the core is in its own process group).
    kill(i32::try_from(first.0.id())?, Signal::SIGINT);
    m.expect("signal SIGTERM").await?;
    m.send(">STATE:1700000010,EXITING,SIGINT,,,,,").await?;
    kill(ovpn, Signal::SIGTERM);
    let status = wait_exit(&mut first).await?;
    assert_eq!(status.code(), Some(0), "{}", stderr_of(&mut first));
    let end = ev.wait("stopped", |_| true).await?;
    assert_eq!(end["status"]["unitsUsed"], 2);
    // The core `up` started is gone with it.
    assert!(
        reqwest::get(format!("{url}/health")).await.is_err(),
        "the client core still answers"
    );

    // `ls` starts the core for the listing (the state directory has one) and stops it.
    let (code, ls, err) = run_json(&[
        "ls",
        "--json",
        "--core-url",
        &url,
        "--core-bin",
        s(&core_lite),
        "--state-dir",
        s(&state),
        "--run-dir",
        s(&run),
    ])?;
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(ls[0]["clientKey"], key.as_str());
    assert_eq!(ls[0]["unitsUsed"], 2);
    assert_eq!(ls[0]["connection"]["phase"], "stopped");
    assert_eq!(ls[0]["connection"]["running"], false);
    assert!(reqwest::get(format!("{url}/health")).await.is_err());

    // A second `up` of the same offering connects the channel bought before.
    let mut second = up(&[&agent.market, "--yes"])?;
    let mut ev = Events::new(&mut second.0)?;
    let reused = ev.wait("channel", |_| true).await?;
    assert_eq!(reused["reused"], true);
    assert_eq!(reused["channel"]["clientKey"], key.as_str());
    let (ovpn, mut m) = openvpn_of(&mut fake, &run, &key).await?;
    m.send(CONNECTED).await?;
    ev.wait("connected", |_| true).await?;
    kill(i32::try_from(second.0.id())?, Signal::SIGTERM);
    m.expect("signal SIGTERM").await?;
    m.send(">STATE:1700000020,EXITING,SIGTERM,,,,,").await?;
    kill(ovpn, Signal::SIGTERM);
    assert_eq!(wait_exit(&mut second).await?.code(), Some(0));
    assert_eq!(agent.core.core().list_channels()?.len(), 1, "bought once");
    Ok(())
}
