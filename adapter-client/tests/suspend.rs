//! Suspension by the agent (payment lag) and its end: the client core answers
//! suspending/suspended → openvpn stopped, the adapter waits and polls the core; a payment
//! (activating) → reconnect; terminated → stop for good. A server HALT consults the core.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use adapter_client::connect::{self, ConnectError, ConnectSettings, Outcome};
use adapter_client::state::{Phase, Status};
use anyhow::{Context, Result};
use common::{kill, poll, read_state, settings, Cores, FakeOpenVpn, Mgmt};
use nix::sys::signal::Signal;
use service_api::ServiceStatus;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

type Run = JoinHandle<Result<Outcome, ConnectError>>;

async fn join(h: Run) -> Result<Outcome> {
    Ok(tokio::time::timeout(common::WAIT, h)
        .await
        .context("connect::run did not return")???)
}

/// A running adapter with its fake openvpn.
struct Rig {
    cores: Cores,
    fake: FakeOpenVpn,
    _work: tempfile::TempDir,
    socket: PathBuf,
    runtime_dir: PathBuf,
    state_file: PathBuf,
    cancel: CancellationToken,
    h: Run,
}

impl Rig {
    async fn start(tune: impl FnOnce(&mut ConnectSettings)) -> Result<Self> {
        let cores = Cores::start("127.0.0.1:1194", None).await?;
        let fake = FakeOpenVpn::new()?;
        let work = tempfile::tempdir()?;
        let mut s = settings(&cores, &fake, work.path());
        tune(&mut s);
        let runtime_dir = s.runtime_dir.clone();
        let socket = runtime_dir.join(adapter_client::runtime::MGMT_SOCKET_NAME);
        let state_file = s.state_file.clone();
        let cancel = CancellationToken::new();
        let h = tokio::spawn(connect::run(s, cancel.clone()));
        Ok(Self {
            cores,
            fake,
            _work: work,
            socket,
            runtime_dir,
            state_file,
            cancel,
            h,
        })
    }

    /// Waits for the next openvpn start, serves its management socket and reports
    /// CONNECTED (state time `t`) and the given absolute counts.
    async fn connect(&mut self, t: u64, counts: (u64, u64)) -> Result<(i32, Mgmt)> {
        let (pid, _) = self.fake.next_spawn().await?;
        let mut m = self.fake.accept(&self.socket).await?;
        m.send(&format!(
            ">STATE:{t},CONNECTED,SUCCESS,10.8.0.6,127.0.0.1,1194,127.0.0.1,40000"
        ))
        .await?;
        m.send(&format!(">BYTECOUNT:{},{}", counts.0, counts.1))
            .await?;
        Ok((pid, m))
    }

    async fn wait_state(&self, what: &str, f: impl Fn(&Status) -> bool) -> Result<Status> {
        poll(what, || read_state(&self.state_file).filter(|s| f(s))).await
    }

    /// Waits until the adapter is suspended and has kept waiting (without starting
    /// openvpn again) for at least `secs` seconds.
    async fn wait_suspended_for(&self, secs: u64) -> Result<Status> {
        let st = self
            .wait_state("phase suspended with openvpn stopped", |s| {
                s.phase == Phase::Suspended
                    && s.openvpn_pid.is_none()
                    && s.reason.as_deref().is_some_and(|r| {
                        r.rsplit_once("— ")
                            .and_then(|(_, n)| n.trim_end_matches(" s").parse::<u64>().ok())
                            .is_some_and(|n| n >= secs)
                    })
            })
            .await?;
        let reason = st.reason.clone().unwrap_or_default();
        assert!(
            reason.contains("service suspended by the agent") && reason.contains("payment lag"),
            "{reason}"
        );
        assert!(
            self.runtime_dir.exists(),
            "the runtime dir is kept while waiting"
        );
        Ok(st)
    }
}

/// Plays openvpn's end after `signal SIGTERM`.
async fn openvpn_stops(m: &mut Mgmt, pid: i32, t: u64) -> Result<()> {
    m.expect("signal SIGTERM").await?;
    m.send(&format!(">STATE:{t},EXITING,SIGTERM,,,,,")).await?;
    kill(pid, Signal::SIGTERM);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspending_waits_and_a_payment_reconnects() -> Result<()> {
    let mut rig = Rig::start(|_| {}).await?;
    let (pid1, mut m) = rig.connect(1_700_000_000, (100, 200)).await?;
    let s1 = rig.cores.wait_open_session(None, 300).await?;

    // Payments lag: the agent suspends, the payer mirrors it; UpdateSession answers it.
    m.send(">BYTECOUNT:150,250").await?;
    rig.cores.set_client_status(ServiceStatus::Suspending)?;
    m.expect("signal SIGTERM").await?;
    // openvpn's last counts still reach the core with StopSession.
    m.send(">BYTECOUNT:160,260").await?;
    m.send(">STATE:1700000005,EXITING,SIGTERM,,,,,").await?;
    // Real openvpn exits after its management output; let the adapter read it first (the
    // exit of this fake child is a separate event that could otherwise overtake the line).
    rig.wait_state("the last counts read", |s| {
        (s.bytes_in, s.bytes_out) == (160, 260)
    })
    .await?;
    kill(pid1, Signal::SIGTERM);
    rig.cores.wait_closed(420).await?;
    rig.cores.set_client_status(ServiceStatus::Suspended)?;
    let st = rig.wait_suspended_for(1).await?;
    assert_eq!((st.total_bytes_in, st.total_bytes_out), (160, 260));
    assert_eq!(rig.fake.spawns().len(), 1, "no reconnect while suspended");
    assert!(!rig.h.is_finished(), "still waiting");

    // A payment brings the channel back: a new openvpn and a new session.
    rig.cores.set_client_status(ServiceStatus::Activating)?;
    let (pid2, mut m2) = rig.connect(1_700_000_020, (10, 20)).await?;
    assert_ne!(pid1, pid2);
    let s2 = rig.cores.wait_open_session(Some(&s1), 450).await?;
    assert_ne!(s1, s2);
    let st = rig
        .wait_state("phase connected again", |s| {
            s.phase == Phase::Connected && s.session_id.as_deref() == Some(s2.as_str())
        })
        .await?;
    assert_eq!(st.connections, 2);

    rig.cancel.cancel();
    openvpn_stops(&mut m2, pid2, 1_700_000_030).await?;
    assert_eq!(join(rig.h).await?, Outcome::Stopped);
    rig.cores.wait_closed(450).await?;
    assert_eq!(rig.fake.spawns().len(), 2);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_at_start_session_then_terminated_stops_for_good() -> Result<()> {
    let mut rig = Rig::start(|_| {}).await?;
    // Suspended before the tunnel is up: StartSession answers 403 channel_inactive.
    rig.cores.set_client_status(ServiceStatus::Suspended)?;
    let (pid, mut m) = rig.connect(1_700_000_000, (0, 0)).await?;
    openvpn_stops(&mut m, pid, 1_700_000_001).await?;
    rig.wait_suspended_for(1).await?;
    assert!(rig.cores.channel()?.open_session.is_none());
    assert_eq!(rig.fake.spawns().len(), 1);

    rig.cores.set_client_status(ServiceStatus::Terminated)?;
    let outcome = join(rig.h).await?;
    match &outcome {
        Outcome::CoreStopped { status, reason } => {
            assert_eq!(*status, ServiceStatus::Terminated);
            assert!(reason.contains("terminated"), "{reason}");
        }
        other => panic!("expected CoreStopped, got {other:?}"),
    }
    assert_eq!(outcome.exit_code(), 3);
    let st = read_state(&rig.state_file).context("state")?;
    assert_eq!(st.phase, Phase::Terminated);
    assert_eq!(rig.fake.spawns().len(), 1, "never reconnected");
    assert!(!rig.runtime_dir.exists(), "runtime dir removed at exit");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_until_the_max_wait_gives_up() -> Result<()> {
    let mut rig = Rig::start(|s| s.max_suspend_wait = Some(Duration::from_secs(1))).await?;
    let (pid, mut m) = rig.connect(1_700_000_000, (1, 1)).await?;
    rig.cores.wait_open_session(None, 2).await?;
    rig.cores.set_client_status(ServiceStatus::Suspended)?;
    openvpn_stops(&mut m, pid, 1_700_000_001).await?;
    let outcome = join(rig.h).await?;
    match &outcome {
        Outcome::CoreStopped { status, reason } => {
            assert_eq!(*status, ServiceStatus::Suspended);
            assert!(reason.contains("giving up"), "{reason}");
        }
        other => panic!("expected CoreStopped, got {other:?}"),
    }
    assert_eq!(outcome.exit_code(), 3);
    assert_eq!(
        read_state(&rig.state_file).context("state")?.phase,
        Phase::Suspended
    );
    rig.cores.wait_closed(2).await?;
    Ok(())
}

/// A server HALT; the core says suspended at once (`mirrored_late` = false) or only after
/// the halt (the payer mirrors the agent's status about a second late).
async fn halt_then_suspended_waits_then_resumes(mirrored_late: bool) -> Result<()> {
    // Long report interval: the halt, not an UpdateSession, must be what the adapter sees.
    let mut rig = Rig::start(|s| {
        s.report_interval = Duration::from_secs(600);
        s.halt_grace = Duration::from_secs(10);
    })
    .await?;
    let (pid1, mut m) = rig.connect(1_700_000_000, (500, 700)).await?;
    let s1 = rig.cores.wait_open_session(None, 0).await?;
    if !mirrored_late {
        rig.cores.set_client_status(ServiceStatus::Suspended)?;
    }
    m.send(">NOTIFY:info,server-pushed-halt,channel suspended")
        .await?;
    m.expect("signal SIGTERM").await?;
    m.send(">STATE:1700000009,EXITING,exit-with-notification,,,,,")
        .await?;
    kill(pid1, Signal::SIGTERM);
    rig.cores.wait_closed(1200).await?;
    if mirrored_late {
        rig.wait_state("halt being checked", |s| {
            s.phase == Phase::Stopping
                && s.reason
                    .as_deref()
                    .is_some_and(|r| r.contains("server-pushed-halt"))
        })
        .await?;
        rig.cores.set_client_status(ServiceStatus::Suspended)?;
    }
    rig.wait_suspended_for(1).await?;
    assert_eq!(rig.fake.spawns().len(), 1);

    rig.cores.set_client_status(ServiceStatus::Activating)?;
    let (pid2, mut m2) = rig.connect(1_700_000_020, (5, 5)).await?;
    let s2 = rig.cores.wait_open_session(Some(&s1), 1200).await?;
    assert_ne!(s1, s2);
    rig.wait_state("connected again", |s| s.phase == Phase::Connected)
        .await?;
    rig.cancel.cancel();
    openvpn_stops(&mut m2, pid2, 1_700_000_030).await?;
    assert_eq!(join(rig.h).await?, Outcome::Stopped);
    rig.cores.wait_closed(1210).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_halt_while_suspended_waits_then_resumes() -> Result<()> {
    halt_then_suspended_waits_then_resumes(false).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_halt_before_the_core_learns_of_the_suspension_waits() -> Result<()> {
    halt_then_suspended_waits_then_resumes(true).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_halt_while_the_core_stays_active_stops_after_the_grace() -> Result<()> {
    let mut rig = Rig::start(|s| s.halt_grace = Duration::from_millis(800)).await?;
    let (pid, mut m) = rig.connect(1_700_000_000, (30, 40)).await?;
    rig.cores.wait_open_session(None, 70).await?;
    m.send(">NOTIFY:info,server-pushed-halt,operator").await?;
    m.expect("signal SIGTERM").await?;
    m.send(">STATE:1700000009,EXITING,exit-with-notification,,,,,")
        .await?;
    kill(pid, Signal::SIGTERM);
    let outcome = join(rig.h).await?;
    match &outcome {
        Outcome::ServerHalted { reason } => {
            assert!(reason.contains("server-pushed-halt: operator"), "{reason}");
            assert!(reason.contains("still admits"), "{reason}");
        }
        other => panic!("expected ServerHalted, got {other:?}"),
    }
    assert_eq!(outcome.exit_code(), 4);
    assert_eq!(rig.cores.channel()?.status, ServiceStatus::Active);
    assert_eq!(
        read_state(&rig.state_file).context("state")?.phase,
        Phase::Halted
    );
    assert_eq!(rig.fake.spawns().len(), 1, "no reconnect after a halt");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_halt_and_terminated_stops_for_good_with_3() -> Result<()> {
    let mut rig = Rig::start(|s| {
        s.report_interval = Duration::from_secs(600);
        s.halt_grace = Duration::from_secs(10);
    })
    .await?;
    let (pid, mut m) = rig.connect(1_700_000_000, (1, 2)).await?;
    rig.cores.wait_open_session(None, 0).await?;
    rig.cores.set_client_status(ServiceStatus::Terminating)?;
    m.send(">NOTIFY:info,server-pushed-halt,channel terminated")
        .await?;
    openvpn_stops(&mut m, pid, 1_700_000_001).await?;
    let outcome = join(rig.h).await?;
    assert!(
        matches!(outcome, Outcome::CoreStopped { status, .. } if status.is_final()),
        "{outcome:?}"
    );
    assert_eq!(outcome.exit_code(), 3);
    assert_eq!(rig.fake.spawns().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signal_while_suspended_exits_cleanly() -> Result<()> {
    let mut rig = Rig::start(|_| {}).await?;
    let (pid, mut m) = rig.connect(1_700_000_000, (7, 8)).await?;
    rig.cores.wait_open_session(None, 15).await?;
    rig.cores.set_client_status(ServiceStatus::Suspending)?;
    openvpn_stops(&mut m, pid, 1_700_000_001).await?;
    rig.wait_suspended_for(0).await?;
    rig.cancel.cancel();
    let outcome = join(rig.h).await?;
    assert_eq!(outcome, Outcome::Stopped);
    assert_eq!(outcome.exit_code(), 0);
    let st = read_state(&rig.state_file).context("state")?;
    assert_eq!(st.phase, Phase::Stopped);
    assert!(!rig.runtime_dir.exists(), "runtime dir removed");
    rig.cores.wait_closed(15).await?;
    assert_eq!(rig.fake.spawns().len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_at_start_session_then_a_payment_reconnects() -> Result<()> {
    let mut rig = Rig::start(|_| {}).await?;
    rig.cores.set_client_status(ServiceStatus::Suspended)?;
    let (pid1, mut m) = rig.connect(1_700_000_000, (0, 0)).await?;
    openvpn_stops(&mut m, pid1, 1_700_000_001).await?;
    rig.wait_suspended_for(0).await?;
    // No session was ever acknowledged: the status checks use StartSession, whose
    // channel_inactive error names the status.
    rig.cores.set_client_status(ServiceStatus::Active)?;
    let (pid2, mut m2) = rig.connect(1_700_000_010, (3, 4)).await?;
    let s = rig.cores.wait_open_session(None, 7).await?;
    rig.wait_state("connected", |st| {
        st.phase == Phase::Connected && st.session_id.as_deref() == Some(s.as_str())
    })
    .await?;
    rig.cancel.cancel();
    openvpn_stops(&mut m2, pid2, 1_700_000_020).await?;
    assert_eq!(join(rig.h).await?, Outcome::Stopped);
    rig.cores.wait_closed(7).await?;
    assert_eq!(rig.fake.spawns().len(), 2);
    Ok(())
}
