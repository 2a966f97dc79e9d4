//! Regression tests of issue 11, item 12 (adapter part): the usage the adapter sends to
//! the core never goes backwards — not when OpenVPN reports a lower count, not across a
//! reconnect where the session's baseline changes — and the final StopSession never carries
//! a half-written number. A recording proxy sits between the adapter and the real core, so
//! the test sees every count that was sent (the core itself keeps the per-field maximum and
//! would hide a lower one).

mod common;

use std::collections::BTreeMap;

use adapter_client::connect::{self, Outcome};
use anyhow::{Context, Result};
use common::proxy::Proxy;
use common::{kill, poll, read_state, settings, Cores, FakeOpenVpn};
use nix::sys::signal::Signal;
use tokio_util::sync::CancellationToken;

/// Per session, the counts sent never decrease; returns the reports grouped by session.
fn assert_monotonic(reports: &[(String, u64, u64, bool)]) -> BTreeMap<String, Vec<(u64, u64)>> {
    let mut by_session: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
    for (sid, i, o, _) in reports {
        let v = by_session.entry(sid.clone()).or_default();
        if let Some(&(pi, po)) = v.last() {
            assert!(
                *i >= pi && *o >= po,
                "session {sid}: ({i}, {o}) sent after ({pi}, {po}); all reports: {reports:?}"
            );
        }
        v.push((*i, *o));
    }
    by_session
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_sent_to_the_core_never_goes_backwards() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let proxy = Proxy::start(&cores.client.url, None).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let mut s = settings(&cores, &fake, work.path());
    s.core_url = proxy.url.clone();
    let state_file = s.state_file.clone();
    let socket = s
        .runtime_dir
        .join(adapter_client::runtime::MGMT_SOCKET_NAME);
    let cancel = CancellationToken::new();
    let h = tokio::spawn(connect::run(s, cancel.clone()));
    let (pid, _) = fake.next_spawn().await?;
    let mut m = fake.accept(&socket).await?;

    // Session 1 of this openvpn process.
    m.send(">STATE:1700000000,CONNECTED,SUCCESS,10.8.0.6,127.0.0.1,1194,127.0.0.1,40000")
        .await?;
    m.send(">BYTECOUNT:1000,1000").await?;
    let s1 = cores.wait_open_session(None, 2000).await?;
    // A reconnect inside the same process: session 2's baseline is 1000/1000.
    m.send(">STATE:1700000010,RECONNECTING,ping-restart,,,,,")
        .await?;
    cores.wait_closed(2000).await?;
    m.send(">HOLD:Waiting for hold release:5").await?;
    m.expect("hold release").await?;
    m.send(">STATE:1700000020,CONNECTED,SUCCESS,10.8.0.6,127.0.0.1,1194,127.0.0.1,40001")
        .await?;
    m.send(">BYTECOUNT:1200,1300").await?;
    let s2 = cores.wait_open_session(Some(&s1), 2500).await?;

    // OpenVPN (or a damaged line) reports less than before, even less than the baseline.
    // A state line after it marks when it was read; then a usage report must follow.
    m.send(">BYTECOUNT:100,150").await?;
    m.send(">STATE:1700000021,ADD_ROUTES,,,,,,").await?;
    poll("the lower count to be read", || {
        read_state(&state_file).filter(|s| s.openvpn_state.as_deref() == Some("ADD_ROUTES"))
    })
    .await?;
    let seen = proxy.usage_reports().len();
    poll("a usage report after the lower count", || {
        (proxy.usage_reports().len() >= seen + 2).then_some(())
    })
    .await?;
    m.send(">BYTECOUNT:1250,1350").await?;
    poll("the next count to be reported", || {
        proxy
            .usage_reports()
            .iter()
            .any(|(sid, i, o, _)| *sid == s2 && (*i, *o) == (250, 350))
            .then_some(())
    })
    .await?;

    cancel.cancel();
    m.expect("signal SIGTERM").await?;
    m.send(">STATE:1700000040,EXITING,SIGTERM,,,,,").await?;
    kill(pid, Signal::SIGTERM);
    let outcome = tokio::time::timeout(common::WAIT, h)
        .await
        .context("connect::run did not return")???;
    assert_eq!(outcome, Outcome::Stopped);
    cores.wait_closed(2000 + 600).await?;

    let reports = proxy.usage_reports();
    let by_session = assert_monotonic(&reports);
    assert_eq!(
        by_session.get(&s1).and_then(|v| v.last()),
        Some(&(1000, 1000))
    );
    assert_eq!(
        by_session.get(&s2).and_then(|v| v.last()),
        Some(&(250, 350))
    );
    let stops: Vec<_> = reports.iter().filter(|r| r.3).collect();
    assert_eq!(stops.len(), 2, "{reports:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_final_stop_never_carries_a_half_written_number() -> Result<()> {
    let cores = Cores::start("127.0.0.1:1194", None).await?;
    let proxy = Proxy::start(&cores.client.url, None).await?;
    let mut fake = FakeOpenVpn::new()?;
    let work = tempfile::tempdir()?;
    let mut s = settings(&cores, &fake, work.path());
    s.core_url = proxy.url.clone();
    let socket = s
        .runtime_dir
        .join(adapter_client::runtime::MGMT_SOCKET_NAME);
    let cancel = CancellationToken::new();
    let h = tokio::spawn(connect::run(s, cancel.clone()));
    let (pid, _) = fake.next_spawn().await?;
    let mut m = fake.accept(&socket).await?;
    m.send(">STATE:1700000000,CONNECTED,SUCCESS,10.8.0.6,127.0.0.1,1194,127.0.0.1,40000")
        .await?;
    m.send(">BYTECOUNT:123456,654321").await?;
    let s1 = cores.wait_open_session(None, 777_777).await?;
    // openvpn dies in the middle of writing its last line: `>BYTECOUNT:99` of a longer
    // number, no newline; then the socket closes and the process is gone.
    m.send_raw(b">BYTECOUNT:9999999,99").await?;
    drop(m);
    kill(pid, Signal::SIGKILL);
    cores.wait_closed(777_777).await?;
    let reports = proxy.usage_reports();
    assert_monotonic(&reports);
    let stop = reports
        .iter()
        .find(|r| r.3 && r.0 == s1)
        .with_context(|| format!("no StopSession: {reports:?}"))?;
    assert_eq!((stop.1, stop.2), (123_456, 654_321), "{reports:?}");
    // The restarted openvpn is stopped with the adapter.
    let (pid2, _) = fake.next_spawn().await?;
    let mut m2 = fake.accept(&socket).await?;
    cancel.cancel();
    m2.expect("signal SIGTERM").await?;
    kill(pid2, Signal::SIGTERM);
    let outcome = tokio::time::timeout(common::WAIT, h)
        .await
        .context("connect::run did not return")???;
    assert_eq!(outcome, Outcome::Stopped);
    Ok(())
}
