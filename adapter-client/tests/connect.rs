//! In-process tests of the connection state machine: a real client core (TestCore) and a
//! fake openvpn whose management socket the test serves.

mod common;

use std::time::Duration;

use adapter_client::connect::{self, Outcome};
use adapter_client::state::Phase;
use anyhow::{Context, Result};
use common::{kill, poll, read_state, settings, Cores, FakeOpenVpn};
use nix::sys::signal::Signal;
use service_api::ServiceStatus;
use tokio_util::sync::CancellationToken;

const CONNECTED_1: &str =
    ">STATE:1700000000,CONNECTED,SUCCESS,10.8.0.6,127.0.0.1,1194,127.0.0.1,40000";

async fn join(
    h: tokio::task::JoinHandle<Result<Outcome, connect::ConnectError>>,
) -> Result<Outcome> {
    Ok(tokio::time::timeout(common::WAIT, h)
        .await
        .context("connect::run did not return")???)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_drop_reconnect_crash_and_graceful_stop() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let s = settings(&cores, &fake, work.path());
    let (runtime_dir, state_file) = (s.runtime_dir.clone(), s.state_file.clone());
    let socket = runtime_dir.join(adapter_client::runtime::MGMT_SOCKET_NAME);
    let cancel = CancellationToken::new();
    let h = tokio::spawn(connect::run(s, cancel.clone()));

    // First openvpn process: argv points at the rendered config in the private dir.
    let (pid1, args) = fake.next_spawn().await?;
    assert!(
        args.contains(&format!("--config {}/client.conf", runtime_dir.display())),
        "{args}"
    );
    let conf = std::fs::read_to_string(runtime_dir.join("client.conf"))?;
    assert!(conf.contains(&format!(
        "auth-user-pass {}/auth.txt",
        runtime_dir.display()
    )));
    assert!(conf.contains(&format!("management {} unix", socket.display())));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &std::path::Path| {
            std::fs::metadata(p)
                .map(|m| m.permissions().mode() & 0o777)
                .unwrap_or(0)
        };
        assert_eq!(mode(&runtime_dir), 0o700);
        assert_eq!(mode(&runtime_dir.join("auth.txt")), 0o600);
        let auth = std::fs::read_to_string(runtime_dir.join("auth.txt"))?;
        assert!(auth.starts_with(&format!("{}\n", cores.client_key.0)));
    }
    let mut m = fake.accept(&socket).await?;

    // Connected: StartSession, then cumulative usage.
    m.send(CONNECTED_1).await?;
    m.send(">BYTECOUNT:1000,2000").await?;
    let s1 = cores.wait_open_session(None, 3000).await?;
    let st = poll("state file: connected", || {
        read_state(&state_file).filter(|s| s.phase == Phase::Connected && s.bytes_in == 1000)
    })
    .await?;
    assert_eq!(st.vpn_address.as_deref(), Some("10.8.0.6"));
    assert_eq!(st.openvpn_pid, Some(u32::try_from(pid1)?));
    assert_eq!(cores.channel()?.status, ServiceStatus::Active);

    m.send(">BYTECOUNT:1500,2500").await?;
    cores.wait_open_session(None, 4000).await?;

    // Drop: the session is closed with its last counts; the next hold is released after
    // the backoff and a new session starts. BYTECOUNT is cumulative per openvpn process.
    m.send(">STATE:1700000010,RECONNECTING,ping-restart,,,,,")
        .await?;
    cores.wait_closed(4000).await?;
    m.send(">HOLD:Waiting for hold release:5").await?;
    m.expect("hold release").await?;
    m.send(">STATE:1700000020,CONNECTED,SUCCESS,10.8.0.6,127.0.0.1,1194,127.0.0.1,40001")
        .await?;
    m.send(">BYTECOUNT:1700,2600").await?;
    let s2 = cores.wait_open_session(Some(&s1), 4300).await?;

    // Crash of openvpn: the session is stopped, openvpn restarted, a fresh session counts
    // from zero again.
    kill(pid1, Signal::SIGKILL);
    cores.wait_closed(4300).await?;
    let (pid2, _) = fake.next_spawn().await?;
    assert_ne!(pid1, pid2);
    let mut m2 = fake.accept(&socket).await?;
    m2.send(">STATE:1700000030,CONNECTED,SUCCESS,10.8.0.10,127.0.0.1,1194,127.0.0.1,40002")
        .await?;
    m2.send(">BYTECOUNT:10,20").await?;
    let s3 = cores.wait_open_session(Some(&s2), 4330).await?;
    assert_ne!(s3, s1);
    m2.send(">BYTECOUNT:20,40").await?;
    cores.wait_open_session(None, 4360).await?;

    // Graceful stop: signal SIGTERM over management, final StopSession, dir removed.
    cancel.cancel();
    m2.expect("signal SIGTERM").await?;
    m2.send(">STATE:1700000040,EXITING,SIGTERM,,,,,").await?;
    kill(pid2, Signal::SIGTERM);
    let outcome = join(h).await?;
    assert_eq!(outcome, Outcome::Stopped);
    assert_eq!(outcome.exit_code(), 0);
    cores.wait_closed(4360).await?;
    assert!(!runtime_dir.exists(), "runtime dir removed");
    let st = read_state(&state_file).context("state file")?;
    assert_eq!(st.phase, Phase::Stopped);
    assert_eq!(st.connections, 3);
    assert_eq!(
        (st.total_bytes_in, st.total_bytes_out),
        (1500 + 200 + 20, 2500 + 100 + 40)
    );
    assert_eq!(fake.spawns().len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_terminating_stops_for_good() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let s = settings(&cores, &fake, work.path());
    let socket = s
        .runtime_dir
        .join(adapter_client::runtime::MGMT_SOCKET_NAME);
    let state_file = s.state_file.clone();
    let h = tokio::spawn(connect::run(s, CancellationToken::new()));
    let (pid, _) = fake.next_spawn().await?;
    let mut m = fake.accept(&socket).await?;
    m.send(CONNECTED_1).await?;
    m.send(">BYTECOUNT:100,200").await?;
    cores.wait_open_session(None, 300).await?;

    cores.set_client_status(ServiceStatus::Terminating)?;
    m.expect("signal SIGTERM").await?;
    m.send(">STATE:1700000005,EXITING,SIGTERM,,,,,").await?;
    kill(pid, Signal::SIGTERM);
    let outcome = join(h).await?;
    match &outcome {
        Outcome::CoreStopped { status, reason } => {
            assert!(status.is_final(), "{status}");
            assert!(reason.contains("terminat"), "{reason}");
        }
        other => panic!("expected CoreStopped, got {other:?}"),
    }
    assert_eq!(outcome.exit_code(), 3);
    cores.wait_closed(300).await?;
    let st = read_state(&state_file).context("state")?;
    assert_eq!(st.phase, Phase::Terminated);
    assert!(st.reason.unwrap_or_default().contains("terminat"));
    assert_eq!(
        fake.spawns().len(),
        1,
        "no reconnect after the core ended the service"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_halt_stops_for_good() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let s = settings(&cores, &fake, work.path());
    let socket = s
        .runtime_dir
        .join(adapter_client::runtime::MGMT_SOCKET_NAME);
    let h = tokio::spawn(connect::run(s, CancellationToken::new()));
    let (pid, _) = fake.next_spawn().await?;
    let mut m = fake.accept(&socket).await?;
    m.send(CONNECTED_1).await?;
    m.send(">BYTECOUNT:5000,7000").await?;
    cores.wait_open_session(None, 12000).await?;

    // What openvpn 2.6 prints when the server pushes HALT (client-kill CID HALT): a
    // NOTIFY, then (with explicit-exit-notify) EXITING with `exit-with-notification`.
    m.send(">NOTIFY:info,server-pushed-halt,channel suspended")
        .await?;
    // The adapter makes sure openvpn goes away at once.
    m.expect("signal SIGTERM").await?;
    m.send(">STATE:1700000009,EXITING,exit-with-notification,,,,,")
        .await?;
    cores.wait_closed(12000).await?;
    kill(pid, Signal::SIGTERM);
    let outcome = join(h).await?;
    match &outcome {
        Outcome::ServerHalted { reason } => {
            assert!(
                reason.contains("server-pushed-halt: channel suspended"),
                "{reason}"
            )
        }
        other => panic!("expected ServerHalted, got {other:?}"),
    }
    assert_eq!(outcome.exit_code(), 4);
    assert_eq!(fake.spawns().len(), 1, "no reconnect after a server halt");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openvpn_that_never_opens_its_socket_is_restarted() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let mut s = settings(&cores, &fake, work.path());
    s.mgmt_connect_timeout = Duration::from_millis(300);
    let socket = s
        .runtime_dir
        .join(adapter_client::runtime::MGMT_SOCKET_NAME);
    let cancel = CancellationToken::new();
    let h = tokio::spawn(connect::run(s, cancel.clone()));
    // First start: nobody serves the socket; the adapter gives up on it and restarts.
    let (pid1, _) = fake.next_spawn().await?;
    let (pid2, _) = fake.next_spawn().await?;
    assert_ne!(pid1, pid2);
    // The second one works.
    let mut m = fake.accept(&socket).await?;
    m.send(CONNECTED_1).await?;
    cores.wait_open_session(None, 0).await?;
    cancel.cancel();
    m.expect("signal SIGTERM").await?;
    kill(pid2, Signal::SIGTERM);
    assert_eq!(join(h).await?, Outcome::Stopped);
    cores.wait_closed(0).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_core_at_start_is_an_error() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let mut s = settings(&cores, &fake, work.path());
    s.core_url = "http://127.0.0.1:1".into();
    let e = connect::run(s.clone(), CancellationToken::new())
        .await
        .expect_err("no core");
    assert!(e.to_string().contains("GetAccess"), "{e}");
    s.core_url = cores.client.url.clone();
    s.token = service_api::Secret("wrong-token".into());
    let e = connect::run(s, CancellationToken::new())
        .await
        .expect_err("bad token");
    assert!(e.to_string().contains("GetAccess"), "{e}");
    assert!(fake.spawns().is_empty(), "openvpn never started");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_reported_only_by_exiting_state_and_auth_failure() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    // EXITING,server-pushed-halt (OpenVPN without explicit-exit-notify).
    {
        let mut fake = FakeOpenVpn::new()?;
        let work = tempfile::tempdir()?;
        let s = settings(&cores, &fake, work.path());
        let socket = s
            .runtime_dir
            .join(adapter_client::runtime::MGMT_SOCKET_NAME);
        let h = tokio::spawn(connect::run(s, CancellationToken::new()));
        let (pid, _) = fake.next_spawn().await?;
        let mut m = fake.accept(&socket).await?;
        m.send(CONNECTED_1).await?;
        cores.wait_open_session(None, 0).await?;
        m.send(">STATE:1700000009,EXITING,server-pushed-halt,,,,,")
            .await?;
        m.expect("signal SIGTERM").await?;
        kill(pid, Signal::SIGTERM);
        assert!(matches!(join(h).await?, Outcome::ServerHalted { .. }));
        cores.wait_closed(0).await?;
        assert_eq!(fake.spawns().len(), 1);
    }
    // The server refuses the credentials before the tunnel is up.
    {
        let mut fake = FakeOpenVpn::new()?;
        let work = tempfile::tempdir()?;
        let s = settings(&cores, &fake, work.path());
        let socket = s
            .runtime_dir
            .join(adapter_client::runtime::MGMT_SOCKET_NAME);
        let h = tokio::spawn(connect::run(s, CancellationToken::new()));
        let (pid, _) = fake.next_spawn().await?;
        let mut m = fake.accept(&socket).await?;
        m.send(">STATE:1700000001,AUTH,,,,,,").await?;
        m.send(">PASSWORD:Verification Failed: 'Auth' ['channel suspended']")
            .await?;
        m.expect("signal SIGTERM").await?;
        m.send(">STATE:1700000002,EXITING,exit-with-notification,,,,,")
            .await?;
        kill(pid, Signal::SIGTERM);
        let outcome = join(h).await?;
        match &outcome {
            Outcome::AuthFailed { reason } => {
                assert!(reason.contains("channel suspended"), "{reason}")
            }
            other => panic!("expected AuthFailed, got {other:?}"),
        }
        assert_eq!(outcome.exit_code(), 5);
        assert_eq!(fake.spawns().len(), 1);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn halt_notice_racing_with_the_exit_still_stops_for_good() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let mut s = settings(&cores, &fake, work.path());
    // The last lines of a dead openvpn are read before the restart is due.
    s.backoff_initial = Duration::from_secs(1);
    let socket = s
        .runtime_dir
        .join(adapter_client::runtime::MGMT_SOCKET_NAME);
    let h = tokio::spawn(connect::run(s, CancellationToken::new()));
    let (pid, _) = fake.next_spawn().await?;
    let mut m = fake.accept(&socket).await?;
    m.send(CONNECTED_1).await?;
    m.send(">BYTECOUNT:10,10").await?;
    cores.wait_open_session(None, 20).await?;
    // openvpn prints the halt notice and dies at once.
    m.send(">NOTIFY:info,server-pushed-halt,bye").await?;
    m.send(">STATE:1700000009,EXITING,server-pushed-halt,,,,,")
        .await?;
    kill(pid, Signal::SIGKILL);
    drop(m);
    let outcome = join(h).await?;
    assert!(
        matches!(outcome, Outcome::ServerHalted { .. }),
        "{outcome:?}"
    );
    cores.wait_closed(20).await?;
    assert_eq!(fake.spawns().len(), 1, "no restart after a halt");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_counts_survive_a_core_outage() -> Result<()> {
    let mut cores = Cores::start("127.0.0.1:1194", None).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let mut s = settings(&cores, &fake, work.path());
    s.api_timeout = Duration::from_millis(500);
    let socket = s
        .runtime_dir
        .join(adapter_client::runtime::MGMT_SOCKET_NAME);
    let cancel = CancellationToken::new();
    let h = tokio::spawn(connect::run(s, cancel.clone()));
    let (pid, _) = fake.next_spawn().await?;
    let mut m = fake.accept(&socket).await?;
    m.send(CONNECTED_1).await?;
    m.send(">BYTECOUNT:100,100").await?;
    let s1 = cores.wait_open_session(None, 200).await?;

    // The core goes away; the connection drops meanwhile: StopSession cannot be delivered.
    cores.client.stop().await?;
    m.send(">BYTECOUNT:300,300").await?;
    m.send(">STATE:1700000010,RECONNECTING,ping-restart,,,,,")
        .await?;
    m.send(">HOLD:Waiting for hold release:5").await?;
    m.expect("hold release").await?;
    cores.client.restart().await?;
    // The kept StopSession is delivered with the final counts, then the new session starts.
    m.send(">STATE:1700000020,CONNECTED,SUCCESS,10.8.0.6,127.0.0.1,1194,127.0.0.1,40001")
        .await?;
    let s2 = cores.wait_open_session(Some(&s1), 600).await?;
    assert_ne!(s1, s2);
    cancel.cancel();
    m.expect("signal SIGTERM").await?;
    kill(pid, Signal::SIGTERM);
    assert_eq!(join(h).await?, Outcome::Stopped);
    cores.wait_closed(600).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_the_core_lost_is_started_again() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let s = settings(&cores, &fake, work.path());
    let socket = s
        .runtime_dir
        .join(adapter_client::runtime::MGMT_SOCKET_NAME);
    let cancel = CancellationToken::new();
    let h = tokio::spawn(connect::run(s, cancel.clone()));
    let (pid, _) = fake.next_spawn().await?;
    let mut m = fake.accept(&socket).await?;
    m.send(CONNECTED_1).await?;
    let s1 = cores.wait_open_session(None, 0).await?;
    cores.client_sql(&format!("DELETE FROM sessions WHERE id = '{s1}';"))?;
    m.send(">BYTECOUNT:70,30").await?;
    // The next UpdateSession gets not_found; a new session carries the counts.
    let s2 = cores.wait_open_session(Some(&s1), 100).await?;
    assert_ne!(s1, s2);
    cancel.cancel();
    m.expect("signal SIGTERM").await?;
    kill(pid, Signal::SIGTERM);
    assert_eq!(join(h).await?, Outcome::Stopped);
    Ok(())
}
