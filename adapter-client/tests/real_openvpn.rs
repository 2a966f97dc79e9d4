//! The real `openvpn` 2.6 accepts the rendered config, serves the management socket, holds,
//! is released, and stops on `signal SIGTERM`. No server is needed: the endpoint is a
//! loopback port where nothing listens, so OpenVPN just waits for an answer (traffic stays
//! on loopback).

mod common;

use std::time::Duration;

use adapter_client::connect::{self, Outcome};
use anyhow::{Context, Result};
use common::{poll, read_state, Cores, FakeOpenVpn};
use tokio_util::sync::CancellationToken;

fn openvpn_path() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([std::path::PathBuf::from("/usr/sbin")])
        .map(|d| d.join("openvpn"))
        .find(|p| p.is_file())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_openvpn_accepts_config_holds_and_stops() -> Result<()> {
    let openvpn = openvpn_path().context("openvpn is not installed (needed by this test)")?;
    let cores = Cores::start("127.0.0.1:9", Some(("8", "4"))).await?;
    let fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let mut s = common::settings(&cores, &fake, work.path());
    s.openvpn = openvpn;
    s.stop_timeout = Duration::from_secs(10);
    let state_file = s.state_file.clone();
    let runtime_dir = s.runtime_dir.clone();
    let cancel = CancellationToken::new();
    let h = tokio::spawn(connect::run(s, cancel.clone()));

    // After `hold release` OpenVPN reports its progress states (RESOLVE/WAIT/…).
    let st = poll("openvpn to leave the hold and report a state", || {
        read_state(&state_file).filter(|s| {
            s.openvpn_pid.is_some()
                && matches!(
                    s.openvpn_state.as_deref(),
                    Some("WAIT" | "AUTH" | "RESOLVE" | "CONNECTING" | "RECONNECTING")
                )
        })
    })
    .await
    .with_context(|| format!("state: {:?}", read_state(&state_file)))?;
    let pid = st.openvpn_pid.context("pid")?;
    assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), h)
        .await
        .context("connect::run did not return")???;
    assert_eq!(outcome, Outcome::Stopped);
    // The child was reaped by the adapter: its pid is gone (or reused by someone else,
    // which cannot be an openvpn with our config).
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        !cmdline.contains(&runtime_dir.display().to_string()),
        "openvpn still running"
    );
    assert!(!runtime_dir.exists());
    assert_eq!(
        cores.channel()?.open_session,
        None,
        "never connected: no session"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_openvpn_tcp_connect_failure_is_retried_through_the_hold() -> Result<()> {
    let openvpn = openvpn_path().context("openvpn is not installed (needed by this test)")?;
    // Nothing listens on loopback port 9: every TCP connect is refused and OpenVPN
    // restarts internally (RECONNECTING), holds, and waits for the adapter's release.
    let cores = Cores::start_proto("127.0.0.1:9", None, "tcp").await?;
    let fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let mut s = common::settings(&cores, &fake, work.path());
    s.openvpn = openvpn;
    let state_file = s.state_file.clone();
    let cancel = CancellationToken::new();
    let h = tokio::spawn(connect::run(s, cancel.clone()));

    let first = poll("openvpn to start", || {
        read_state(&state_file).and_then(|s| s.openvpn_pid)
    })
    .await?;
    // A drop was seen (the reason is recorded) and the same process went on trying after
    // the adapter released the hold again: its states, as the adapter saw them, show a
    // TCP_CONNECT after a RECONNECTING (OpenVPN holds after every RECONNECTING and only
    // connects again once released). The state history stays in the state file, so the
    // transient TCP_CONNECT cannot be missed between two polls.
    let st = poll("a reconnect of the same openvpn process", || {
        read_state(&state_file).filter(|s| {
            let states = &s.openvpn_states;
            let reconnected = states
                .iter()
                .position(|x| x == "RECONNECTING")
                .is_some_and(|i| states[i..].iter().any(|x| x == "TCP_CONNECT"));
            s.openvpn_pid == Some(first) && s.reason.is_some() && reconnected
        })
    })
    .await
    .with_context(|| format!("state: {:?}", read_state(&state_file)))?;
    assert_eq!(st.connections, 0);

    cancel.cancel();
    let outcome = tokio::time::timeout(Duration::from_secs(30), h)
        .await
        .context("connect::run did not return")???;
    assert_eq!(outcome, Outcome::Stopped);
    Ok(())
}
