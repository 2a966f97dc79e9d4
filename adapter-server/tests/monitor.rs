//! The monitor against a fake management socket and a real in-process core-lite.

mod common;

use std::time::Duration;

use adapter_server::monitor::{self, MgmtAddr, MonitorConfig};
use common::{client_block, fixture, status_row, wait_for, FakeMgmt, Fixture};
use service_api::{Client, ServiceStatus};
use tokio_util::sync::CancellationToken;

const IP: &str = "192.0.2.7";
const PORT: &str = "50123";
const TIME: &str = "1700000000";

fn config(fake: &FakeMgmt) -> MonitorConfig {
    let mut c = MonitorConfig::new(MgmtAddr::Unix(fake.path.clone()));
    c.tick = Duration::from_millis(100);
    c.reconnect_min = Duration::from_millis(50);
    c.reconnect_max = Duration::from_millis(200);
    c
}

struct Running {
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<Result<(), monitor::MonitorError>>,
}

impl Running {
    async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.task.await??;
        Ok(())
    }
}

fn start(f: &Fixture, cfg: MonitorConfig) -> anyhow::Result<Running> {
    let client = Client::new(&f.core.url, f.token.clone(), Duration::from_secs(2))?;
    let cancel = CancellationToken::new();
    let task = tokio::spawn(monitor::run(cfg, client, cancel.clone()));
    Ok(Running { cancel, task })
}

fn identity_env(f: &Fixture) -> Vec<(&str, &str)> {
    vec![
        ("username", f.key.0.as_str()),
        ("common_name", "client1"),
        ("untrusted_ip", IP),
        ("untrusted_port", PORT),
        ("time_unix", TIME),
        ("ifconfig_pool_remote_ip", "10.8.0.6"),
    ]
}

async fn wait_bytes(f: &Fixture, total: u64) -> anyhow::Result<()> {
    wait_for(&format!("channel bytes_total == {total}"), || {
        f.channel()
            .ok()
            .filter(|c| c.bytes_total == total)
            .map(|_| ())
    })
    .await
}

async fn connected(fake: &FakeMgmt, n: usize) -> anyhow::Result<()> {
    wait_for("monitor connected and asked for status", || {
        (fake.connections() >= n && fake.count("status 3") >= n).then_some(())
    })
    .await?;
    assert!(fake.count("bytecount 1") >= n, "bytecount not enabled");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_reported_kill_on_suspend_and_final_counts() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mon = start(&f, config(&fake))?;
    connected(&fake, 1).await?;

    fake.send(&client_block("ESTABLISHED,7", &identity_env(&f)))?;
    wait_for("session opened", || f.channel().ok()?.open_session).await?;
    fake.send(&[">BYTECOUNT_CLI:7,1000,2000".into()])?;
    wait_bytes(&f, 3000).await?;
    fake.send(&[">BYTECOUNT_CLI:7,5000,7000".into()])?;
    wait_bytes(&f, 12000).await?;
    assert_eq!(
        fake.count("client-kill 7 HALT"),
        0,
        "killed an active client"
    );

    // Billing suspends the channel: the next report's answer makes the monitor kill.
    f.core
        .set_channel_status(&f.channel_id, ServiceStatus::Suspending, "test")?;
    fake.send(&[">BYTECOUNT_CLI:7,5100,7100".into()])?;
    fake.wait_command("client-kill 7 HALT").await?;

    // OpenVPN disconnects it: final counts from the env end the session.
    let mut env = identity_env(&f);
    env.push(("bytes_received", "6000"));
    env.push(("bytes_sent", "8000"));
    fake.send(&client_block("DISCONNECT,7", &env))?;
    wait_for("session closed with final counts", || {
        let c = f.channel().ok()?;
        (c.open_session.is_none() && c.bytes_total == 14000).then_some(())
    })
    .await?;
    assert_eq!(
        fake.count("client-kill 7 HALT"),
        1,
        "kill sent more than once"
    );
    mon.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_after_socket_drop_and_relearns_clients() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mon = start(&f, config(&fake))?;
    connected(&fake, 1).await?;
    fake.send(&client_block("ESTABLISHED,3", &identity_env(&f)))?;
    fake.send(&[">BYTECOUNT_CLI:3,100,100".into()])?;
    wait_bytes(&f, 200).await?;
    let session = f.channel()?.open_session.expect("open session");

    // OpenVPN's socket drops; while away, the client moved more data.
    fake.set_status_rows(vec![status_row(
        &f.key.0,
        &format!("{IP}:{PORT}"),
        "10.8.0.6",
        500,
        600,
        TIME.parse()?,
        3,
    )]);
    fake.hang_up();
    connected(&fake, 2).await?;
    wait_bytes(&f, 1100).await?;
    fake.send(&[">BYTECOUNT_CLI:3,700,800".into()])?;
    wait_bytes(&f, 1500).await?;
    assert_eq!(
        f.channel()?.open_session,
        Some(session.clone()),
        "session changed"
    );
    mon.stop().await?;

    // A restarted monitor re-learns the client from `status 3` and resumes the same session.
    let mon = start(&f, config(&fake))?;
    fake.set_status_rows(vec![status_row(
        &f.key.0,
        &format!("{IP}:{PORT}"),
        "10.8.0.6",
        900,
        900,
        TIME.parse()?,
        3,
    )]);
    connected(&fake, 3).await?;
    wait_bytes(&f, 1800).await?;
    assert_eq!(
        f.channel()?.open_session,
        Some(session),
        "restart opened a new session"
    );

    // A client that vanished while the monitor was away is stopped with its last counts.
    fake.set_status_rows(vec![]);
    fake.hang_up();
    connected(&fake, 4).await?;
    wait_for("vanished client's session closed", || {
        f.channel().ok()?.open_session.is_none().then_some(())
    })
    .await?;
    assert_eq!(f.channel()?.bytes_total, 1800);
    mon.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffers_while_core_down_then_replays() -> anyhow::Result<()> {
    let mut f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mon = start(&f, config(&fake))?;
    connected(&fake, 1).await?;
    fake.send(&client_block("ESTABLISHED,4", &identity_env(&f)))?;
    fake.send(&[">BYTECOUNT_CLI:4,10,10".into()])?;
    wait_bytes(&f, 20).await?;

    f.core.stop().await?;
    fake.send(&[">BYTECOUNT_CLI:4,2000,2000".into()])?;
    f.core.restart().await?;
    wait_bytes(&f, 4000).await?;
    assert_eq!(
        fake.count("client-kill 4 HALT"),
        0,
        "killed within the grace period"
    );
    mon.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cuts_client_after_grace_period_without_core() -> anyhow::Result<()> {
    let mut f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mut cfg = config(&fake);
    cfg.grace = Duration::from_millis(500);
    let mon = start(&f, cfg)?;
    connected(&fake, 1).await?;
    fake.send(&client_block("ESTABLISHED,5", &identity_env(&f)))?;
    fake.send(&[">BYTECOUNT_CLI:5,10,10".into()])?;
    wait_bytes(&f, 20).await?;
    f.core.stop().await?;
    fake.send(&[">BYTECOUNT_CLI:5,20,20".into()])?;
    fake.wait_command("client-kill 5 HALT").await?;
    mon.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_auth_answers_connect() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mut cfg = config(&fake);
    cfg.client_auth = true;
    let mon = start(&f, cfg)?;
    connected(&fake, 1).await?;
    let good = vec![
        ("username", f.key.0.as_str()),
        ("password", f.password.expose()),
        ("untrusted_ip", IP),
        ("untrusted_port", PORT),
    ];
    fake.send(&client_block("CONNECT,9,0", &good))?;
    fake.wait_command("client-auth-nt 9 0").await?;
    let bad = vec![
        ("username", f.key.0.as_str()),
        ("password", "wrong-password"),
        ("untrusted_ip", IP),
        ("untrusted_port", "50124"),
    ];
    fake.send(&client_block("CONNECT,10,0", &bad))?;
    wait_for("client-deny 10 0", || {
        fake.commands()
            .into_iter()
            .find(|c| c.starts_with("client-deny 10 0 "))
    })
    .await?;
    let no_password = vec![("username", f.key.0.as_str())];
    fake.send(&client_block("REAUTH,9,1", &no_password))?;
    wait_for("client-deny 9 1", || {
        fake.commands()
            .into_iter()
            .find(|c| c.starts_with("client-deny 9 1 "))
    })
    .await?;
    assert!(
        !fake
            .commands()
            .iter()
            .any(|c| c.contains(f.password.expose())),
        "password echoed to OpenVPN"
    );
    mon.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_lines_do_not_break_the_monitor() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mon = start(&f, config(&fake))?;
    connected(&fake, 1).await?;
    fake.send(&[
        ">BYTECOUNT_CLI:x,y,z".into(),
        ">CLIENT:ENV,stray=1".into(),
        "\u{0}\u{1}binary".into(),
        ">CLIENT:ESTABLISHED,8".into(),
        ">CLIENT:ENV,username=".into(),
        ">CLIENT:ENV,END".into(),
        "x".repeat(20_000),
    ])?;
    // The ESTABLISHED without identity is cut (cannot be billed).
    fake.wait_command("client-kill 8 HALT").await?;
    fake.send(&client_block("ESTABLISHED,2", &identity_env(&f)))?;
    fake.send(&[">BYTECOUNT_CLI:2,1,2".into()])?;
    wait_bytes(&f, 3).await?;
    mon.stop().await
}

const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
fn static_key(body: &str) -> String {
    format!("-----BEGIN OpenVPN Static key V1-----\n{body}\n-----END OpenVPN Static key V1-----\n")
}

fn product_config(f: &Fixture) -> Option<std::collections::BTreeMap<String, String>> {
    f.core
        .core()
        .show_product("vpn-test")
        .ok()
        .map(|p| p.config)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_product_config_and_repushes_on_change() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let dir = tempfile::tempdir()?;
    let conf = dir.path().join("server.conf");
    std::fs::write(dir.path().join("ca.crt"), CA)?;
    std::fs::write(dir.path().join("tc.key"), static_key("aaaa"))?;
    std::fs::write(
        &conf,
        "proto udp\nport 1194\ndev tun0\nca ca.crt\ntls-crypt tc.key\nkey server.key\n",
    )?;
    let mut cfg = config(&fake);
    cfg.server_config = Some(conf.clone());
    cfg.endpoint = Some("vpn.example.net:1194".into());
    let mon = start(&f, cfg)?;
    wait_for("first push", || {
        product_config(&f).filter(|c| c.get("port").map(String::as_str) == Some("1194"))
    })
    .await?;
    let c = product_config(&f).unwrap_or_default();
    assert_eq!(c.get("ca").map(String::as_str), Some(CA));
    assert_eq!(c.get("proto").map(String::as_str), Some("udp"));
    assert_eq!(
        c.get("serviceEndpointAddress").map(String::as_str),
        Some("vpn.example.net:1194")
    );

    // The config file changes: pushed again.
    std::fs::write(
        &conf,
        "proto udp\nport 1195\ndev tun0\nca ca.crt\ntls-crypt tc.key\n",
    )?;
    wait_for("re-push after config change", || {
        product_config(&f).filter(|c| c.get("port").map(String::as_str) == Some("1195"))
    })
    .await?;
    // A referenced key file changes (replaced by rename, as editors do): pushed again.
    let tmp = dir.path().join("tc.key.new");
    std::fs::write(&tmp, static_key("bbbb"))?;
    std::fs::rename(&tmp, dir.path().join("tc.key"))?;
    let want = static_key("bbbb");
    wait_for("re-push after key change", || {
        product_config(&f).filter(|c| c.get("tlsCrypt") == Some(&want))
    })
    .await?;
    mon.stop().await
}

/// With the auth hook (no `--management-client-auth`) OpenVPN never sends
/// `>CLIENT:DISCONNECT`: the monitor must notice from the client list that a client left,
/// stop its session with the last counts and forget it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_a_client_that_left_without_a_disconnect_event() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mon = start(&f, config(&fake))?;
    connected(&fake, 1).await?;
    fake.set_status_rows(vec![status_row(
        &f.key.0,
        &format!("{IP}:{PORT}"),
        "10.8.0.6",
        100,
        100,
        TIME.parse()?,
        8,
    )]);
    fake.send(&client_block("ESTABLISHED,8", &identity_env(&f)))?;
    fake.send(&[">BYTECOUNT_CLI:8,300,400".into()])?;
    wait_bytes(&f, 700).await?;
    assert!(f.channel()?.open_session.is_some());
    // The client goes away; no DISCONNECT event comes, only the list changes.
    fake.set_status_rows(vec![]);
    wait_for("session closed after the client left", || {
        f.channel().ok()?.open_session.is_none().then_some(())
    })
    .await?;
    assert_eq!(
        f.channel()?.bytes_total,
        700,
        "stopped with the last counts"
    );
    mon.stop().await
}

/// Issue 11, item 16: one absurd `>BYTECOUNT_CLI` (the largest u64, above what the core
/// accepts) is dropped; the client's good counts after it keep reaching the core.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absurd_byte_count_is_dropped_and_good_counts_keep_flowing() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mon = start(&f, config(&fake))?;
    connected(&fake, 1).await?;
    fake.send(&client_block("ESTABLISHED,7", &identity_env(&f)))?;
    fake.send(&[">BYTECOUNT_CLI:7,1000,2000".into()])?;
    wait_bytes(&f, 3000).await?;
    let max = u64::MAX;
    fake.send(&[format!(">BYTECOUNT_CLI:7,{max},{max}")])?;
    fake.send(&[format!(">BYTECOUNT_CLI:7,{max},{max}")])?;
    fake.send(&[">BYTECOUNT_CLI:7,5000,7000".into()])?;
    wait_bytes(&f, 12000).await?;
    fake.send(&[">BYTECOUNT_CLI:7,6000,8000".into()])?;
    wait_bytes(&f, 14000).await?;
    assert_eq!(fake.count("client-kill 7 HALT"), 0, "a good client was cut");
    mon.stop().await
}

/// Issue 11, item 16: a client whose counts are refused for the grace period is cut off
/// (fail closed), like one whose reports fail.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_counts_are_refused_for_the_grace_period_is_cut() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mut cfg = config(&fake);
    cfg.grace = Duration::from_millis(500);
    let mon = start(&f, cfg)?;
    connected(&fake, 1).await?;
    fake.send(&client_block("ESTABLISHED,5", &identity_env(&f)))?;
    fake.send(&[">BYTECOUNT_CLI:5,10,10".into()])?;
    wait_bytes(&f, 20).await?;
    let max = u64::MAX;
    fake.send(&[format!(">BYTECOUNT_CLI:5,{max},{max}")])?;
    fake.wait_command("client-kill 5 HALT").await?;
    assert_eq!(f.channel()?.bytes_total, 20, "a refused count was billed");
    mon.stop().await
}

/// Issue 11, item 15: a `>CLIENT:DISCONNECT` of a connection the monitor has no session for
/// (it missed the ESTABLISHED) never starts a session: no session is opened or billed and the
/// channel does not go active. Probe: the same connection reported established afterwards
/// is a fresh connection whose usage is accounted (before the fix the DISCONNECT had opened
/// and stopped a session with its counts, and the connection stayed "gone").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disconnect_without_a_session_never_starts_one() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mut cfg = config(&fake);
    cfg.client_auth = true;
    let mon = start(&f, cfg)?;
    connected(&fake, 1).await?;
    let before = f.channel()?;
    let mut env = identity_env(&f);
    env.push(("bytes_received", "1000"));
    env.push(("bytes_sent", "2000"));
    fake.send(&client_block("DISCONNECT,6", &env))?;
    // The actor has handled the DISCONNECT once it answers this login (denied at once:
    // no password).
    fake.send(&client_block(
        "CONNECT,11,0",
        &[("username", f.key.0.as_str())],
    ))?;
    wait_for("client-deny 11 0", || {
        fake.commands()
            .into_iter()
            .find(|c| c.starts_with("client-deny 11 0 "))
    })
    .await?;
    let after = f.channel()?;
    assert_eq!(after.status, before.status, "the channel changed status");
    assert_eq!(after.bytes_total, 0, "usage billed without a session");
    fake.send(&client_block("ESTABLISHED,6", &identity_env(&f)))?;
    fake.send(&[">BYTECOUNT_CLI:6,100,100".into()])?;
    wait_bytes(&f, 200).await?;
    mon.stop().await
}

/// Issue 12 item 5: the monitor's usage reports go to the core as UpdateSessions (one call
/// per tick for every changed session), never as single UpdateSession calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_go_to_the_core_batched_per_tick() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mon = start(&f, config(&fake))?;
    connected(&fake, 1).await?;
    fake.send(&client_block("ESTABLISHED,7", &identity_env(&f)))?;
    wait_for("session opened", || f.channel().ok()?.open_session).await?;
    fake.send(&[">BYTECOUNT_CLI:7,1000,2000".into()])?;
    wait_bytes(&f, 3000).await?;
    fake.send(&[">BYTECOUNT_CLI:7,4000,5000".into()])?;
    wait_bytes(&f, 9000).await?;
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", f.core.url))
        .bearer_auth(f.core.admin_token.expose())
        .send()
        .await?
        .error_for_status()?
        .text()
        .await?;
    let count = |op: &str| -> f64 {
        let prefix = format!("core_lite_http_requests_total{{operation=\"{op}\",code=\"ok\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    };
    assert!(
        count("UpdateSessions") >= 2.0,
        "no batched reports:\n{text}"
    );
    assert_eq!(
        count("UpdateSession"),
        0.0,
        "single reports were sent:\n{text}"
    );
    mon.stop().await
}

/// Issue 12 item 2: a status change in the core reaches the monitor by WatchStatus: the
/// client is cut without waiting for a usage report (none is sent here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_status_change_kills_without_a_report() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let fake = FakeMgmt::start()?;
    let mon = start(&f, config(&fake))?;
    connected(&fake, 1).await?;
    fake.send(&client_block("ESTABLISHED,7", &identity_env(&f)))?;
    wait_for("session opened", || f.channel().ok()?.open_session).await?;
    fake.send(&[">BYTECOUNT_CLI:7,1000,2000".into()])?;
    wait_bytes(&f, 3000).await?;
    // Several ticks without new counts: no report goes out any more.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fake.count("client-kill 7 HALT"),
        0,
        "killed an active client"
    );
    f.core
        .set_channel_status(&f.channel_id, ServiceStatus::Terminating, "test")?;
    fake.wait_command("client-kill 7 HALT").await?;
    mon.stop().await
}
