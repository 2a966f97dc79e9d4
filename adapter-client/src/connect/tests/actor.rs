//! The actor's reconnect, suspend, halt and stop logic through the process trait, with an
//! in-memory `openvpn` and core, in virtual time (tokio's paused clock: timers fire as soon
//! as nothing else can run, so the tests are exact and fast).

use std::path::PathBuf;
use std::time::Duration;

use service_api::{ClientKey, Secret, ServiceStatus, SpeedLimits};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::fakes::{state_dir, until, Call, FakeCore, FakeLauncher, Played};
use crate::connect::actor::Actor;
use crate::connect::process::KillSignal;
use crate::connect::{ConnectSettings, Outcome};
use crate::state::{self, Phase, Status};

const BACKOFF: Duration = Duration::from_secs(1);
const REPORT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_secs(2);
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

struct Rig {
    launcher: FakeLauncher,
    core: FakeCore,
    cancel: CancellationToken,
    h: JoinHandle<Outcome>,
    state_file: PathBuf,
    _dir: tempfile::TempDir,
}

fn settings(state_file: PathBuf) -> ConnectSettings {
    let mut s = ConnectSettings::new(
        ClientKey("ck-1".into()),
        "http://core.invalid".into(),
        Secret("token".into()),
    );
    s.state_file = state_file;
    s.shaping = false;
    s.report_interval = REPORT;
    s.backoff_initial = BACKOFF;
    s.backoff_max = Duration::from_secs(8);
    s.stop_timeout = STOP_TIMEOUT;
    s.suspend_poll = POLL;
    s.halt_grace = Duration::from_secs(5);
    s
}

impl Rig {
    fn start(status: ServiceStatus, tune: impl FnOnce(&mut ConnectSettings)) -> Self {
        let (dir, state_file) = state_dir();
        let mut s = settings(state_file.clone());
        tune(&mut s);
        let launcher = FakeLauncher::default();
        let core = FakeCore::new(status);
        let actor = Actor::new(
            s,
            core.clone(),
            launcher.clone(),
            "vpn.example.net:1194".into(),
            SpeedLimits::default(),
        );
        let cancel = CancellationToken::new();
        let h = tokio::spawn(actor.run(cancel.clone()));
        Self {
            launcher,
            core,
            cancel,
            h,
            state_file,
            _dir: dir,
        }
    }

    fn state(&self) -> Option<Status> {
        state::read(&self.state_file).ok()
    }

    async fn wait_state(&self, what: &str, f: impl Fn(&Status) -> bool) -> Status {
        until(what, || self.state().filter(|s| f(s))).await
    }

    async fn wait_calls(&self, what: &str, f: impl Fn(&[Call]) -> bool) -> Vec<Call> {
        until(what, || {
            let c = self.core.session_calls();
            f(&c).then_some(c)
        })
        .await
    }

    /// The next process, released from its first hold, connected with `counts`.
    async fn connected(&self, t: u64, counts: (u64, u64)) -> Played {
        let mut p = self.launcher.next().await;
        p.connect().await;
        p.say(">HOLD:Waiting for hold release:0").await;
        p.expect("hold release").await;
        p.say(&format!(
            ">STATE:{t},CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194,192.0.2.2,40000"
        ))
        .await;
        p.say(&format!(">BYTECOUNT:{},{}", counts.0, counts.1))
            .await;
        p
    }

    async fn outcome(&mut self) -> Outcome {
        tokio::time::timeout(super::fakes::PATIENCE, &mut self.h)
            .await
            .expect("the actor returned")
            .expect("the actor did not panic")
    }
}

fn start(conn: &str) -> Call {
    Call::Start(conn.to_string())
}

#[tokio::test(start_paused = true)]
async fn first_hold_released_at_once_later_holds_after_a_growing_backoff() {
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.launcher.next().await;
    p.connect().await;
    let t0 = Instant::now();
    p.say(">HOLD:Waiting for hold release:0").await;
    assert_eq!(p.expect("hold release").await - t0, Duration::ZERO);
    // Internal restarts: held again, released after 1 s, then 2 s.
    for delay in [BACKOFF, 2 * BACKOFF] {
        p.say(">STATE:1,RECONNECTING,connection-reset,,,,,").await;
        let t = Instant::now();
        p.say(">HOLD:Waiting for hold release:5").await;
        assert!(p.expect("hold release").await - t >= delay, "{delay:?}");
    }
    // A connection resets the backoff: the next drop waits 1 s again.
    p.say(">STATE:2,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194,,")
        .await;
    p.say(">STATE:3,RECONNECTING,ping-restart,,,,,").await;
    let t = Instant::now();
    p.say(">HOLD:Waiting for hold release:5").await;
    let waited = p.expect("hold release").await - t;
    assert!(waited >= BACKOFF && waited < 2 * BACKOFF, "{waited:?}");
    let st = rig.state().expect("state");
    assert_eq!(st.openvpn_pid, Some(p.pid));
    assert_eq!(rig.launcher.spawn_count(), 1, "one process throughout");
    rig.cancel.cancel();
    p.expect("signal SIGTERM").await;
    p.exit("exit status: 0").await;
    assert_eq!(rig.outcome().await, Outcome::Stopped);
}

#[tokio::test(start_paused = true)]
async fn sessions_carry_cumulative_counts_per_process() {
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.connected(100, (1000, 2000)).await;
    rig.wait_calls("Start and an Update", |c| {
        c.contains(&Call::Update("s1".into(), 1000, 2000))
    })
    .await;
    p.say(">BYTECOUNT:1500,2500").await;
    // A drop inside the process: StopSession with the final counts; the next session of
    // the same process counts from there.
    p.say(">STATE:110,RECONNECTING,ping-restart,,,,,").await;
    p.say(">HOLD:Waiting for hold release:5").await;
    p.expect("hold release").await;
    p.say(">STATE:120,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194,,")
        .await;
    p.say(">BYTECOUNT:1600,2700").await;
    let calls = rig
        .wait_calls("the second session's usage", |c| {
            c.contains(&Call::Update("s2".into(), 100, 200))
        })
        .await;
    let pid = p.pid;
    assert_eq!(
        calls[..4],
        [
            start(&format!("{pid}:100")),
            Call::Update("s1".into(), 1000, 2000),
            Call::Stop("s1".into(), 1500, 2500),
            start(&format!("{pid}:120")),
        ]
    );
    // A crash: the session ends with its last counts, openvpn is restarted after the
    // backoff, and the new process counts from zero.
    let t = Instant::now();
    p.exit("signal: 9 (SIGKILL)").await;
    let p2 = rig.connected(200, (10, 20)).await;
    assert!(Instant::now() - t >= BACKOFF);
    assert_ne!(p2.pid, p.pid);
    rig.wait_calls("the new process's session", |c| {
        c.contains(&Call::Update("s3".into(), 10, 20))
    })
    .await;
    assert_eq!(rig.core.session("s2"), Some(((100, 200), true)));
    // Lines of the dead process change nothing.
    p.say(">BYTECOUNT:999999,999999").await;
    rig.cancel.cancel();
    let mut p2 = p2;
    p2.expect("signal SIGTERM").await;
    p2.say(">BYTECOUNT:30,40").await;
    p2.exit("exit status: 0").await;
    assert_eq!(rig.outcome().await, Outcome::Stopped);
    assert_eq!(
        rig.core.calls().last(),
        Some(&Call::Stop("s3".into(), 30, 40))
    );
    let st = rig.state().expect("state");
    assert_eq!(st.phase, Phase::Stopped);
    assert_eq!(
        (st.total_bytes_in, st.total_bytes_out),
        (1500 + 100 + 30, 2500 + 200 + 40)
    );
    assert_eq!(st.connections, 3);
}

#[tokio::test(start_paused = true)]
async fn suspension_stops_openvpn_waits_and_a_payment_reconnects() {
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.connected(100, (10, 20)).await;
    rig.wait_calls("a session", |c| {
        c.contains(&Call::Update("s1".into(), 10, 20))
    })
    .await;
    // The next UpdateSession answers suspending: openvpn is told to exit, the session ends
    // with its final counts, and nothing restarts while suspended.
    rig.core.set_status(ServiceStatus::Suspending);
    p.expect("signal SIGTERM").await;
    p.say(">BYTECOUNT:15,25").await;
    p.say(">STATE:110,EXITING,SIGTERM,,,,,").await;
    p.exit("exit status: 0").await;
    rig.core.set_status(ServiceStatus::Suspended);
    let st = rig
        .wait_state("suspended for 10 s", |s| {
            s.phase == Phase::Suspended
                && s.reason
                    .as_deref()
                    .is_some_and(|r| r.ends_with("— 10 s") || r.ends_with("— 11 s"))
        })
        .await;
    assert!(st.reason.unwrap_or_default().contains("payment lag"));
    assert_eq!(rig.core.session("s1"), Some(((15, 25), true)));
    assert_eq!(rig.launcher.spawn_count(), 1, "no restart while suspended");
    // The checks replay the last StopSession every poll interval.
    let replays = rig
        .core
        .calls()
        .iter()
        .filter(|c| **c == Call::Stop("s1".into(), 15, 25))
        .count();
    assert!(replays >= 10 / POLL.as_secs() as usize, "{replays}");
    // A payment: a new process, a new session.
    rig.core.set_status(ServiceStatus::Activating);
    let p2 = rig.connected(200, (1, 2)).await;
    rig.wait_calls("a new session", |c| {
        c.contains(&Call::Update("s2".into(), 1, 2))
    })
    .await;
    rig.wait_state("connected again", |s| s.phase == Phase::Connected)
        .await;
    assert_ne!(p2.pid, p.pid);
    rig.cancel.cancel();
    let mut p2 = p2;
    p2.expect("signal SIGTERM").await;
    p2.exit("exit status: 0").await;
    assert_eq!(rig.outcome().await, Outcome::Stopped);
}

#[tokio::test(start_paused = true)]
async fn suspended_too_long_gives_up() {
    let mut rig = Rig::start(ServiceStatus::Active, |s| {
        s.max_suspend_wait = Some(Duration::from_secs(7));
    });
    let mut p = rig.connected(100, (1, 1)).await;
    rig.wait_calls("a session", |c| c.len() >= 2).await;
    rig.core.set_status(ServiceStatus::Suspended);
    p.expect("signal SIGTERM").await;
    let t = Instant::now();
    p.exit("exit status: 0").await;
    let outcome = rig.outcome().await;
    assert!(Instant::now() - t >= Duration::from_secs(7));
    match outcome {
        Outcome::CoreStopped { status, reason } => {
            assert_eq!(status, ServiceStatus::Suspended);
            assert!(reason.contains("giving up"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    assert_eq!(rig.state().expect("state").phase, Phase::Suspended);
}

#[tokio::test(start_paused = true)]
async fn a_server_halt_is_checked_with_the_core_before_it_is_final() {
    // The core keeps admitting the channel: after the grace the halt is final.
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.connected(100, (5, 5)).await;
    rig.wait_calls("a session", |c| c.len() >= 2).await;
    let t = Instant::now();
    p.say(">NOTIFY:info,server-pushed-halt,operator").await;
    p.expect("signal SIGTERM").await;
    p.say(">STATE:101,EXITING,exit-with-notification,,,,,")
        .await;
    p.exit("exit status: 0").await;
    match rig.outcome().await {
        Outcome::ServerHalted { reason } => {
            assert!(reason.contains("server-pushed-halt: operator"), "{reason}");
            assert!(reason.contains("still admits"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    assert!(Instant::now() - t >= Duration::from_secs(5), "the grace");
    assert_eq!(rig.launcher.spawn_count(), 1);
    assert_eq!(rig.core.session("s1"), Some(((5, 5), true)));

    // The core learns of the suspension during the grace: the adapter waits for a payment.
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.connected(100, (5, 5)).await;
    rig.wait_calls("a session", |c| c.len() >= 2).await;
    p.say(">PASSWORD:Verification Failed: 'Auth' ['channel suspended']")
        .await;
    p.expect("signal SIGTERM").await;
    p.exit("exit status: 1").await;
    rig.wait_state("checking the halt", |s| s.phase == Phase::Stopping)
        .await;
    rig.core.set_status(ServiceStatus::Suspended);
    rig.wait_state("suspended", |s| s.phase == Phase::Suspended)
        .await;
    rig.core.set_status(ServiceStatus::Terminated);
    match rig.outcome().await {
        Outcome::CoreStopped { status, .. } => assert_eq!(status, ServiceStatus::Terminated),
        o => panic!("{o:?}"),
    }
    assert_eq!(rig.launcher.spawn_count(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_slow_core_holds_up_neither_management_nor_the_stop() {
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.connected(100, (10, 10)).await;
    rig.wait_calls("a session", |c| c.len() >= 2).await;
    // Every core call hangs from now on.
    rig.core.hold_calls(true);
    p.say(">BYTECOUNT:20,20").await;
    p.say(">STATE:110,RECONNECTING,ping-restart,,,,,").await;
    let t = Instant::now();
    p.say(">HOLD:Waiting for hold release:5").await;
    // The hold is released on time although the StopSession hangs…
    let released = p.expect("hold release").await;
    assert!(released - t >= BACKOFF && released - t < 2 * BACKOFF);
    p.say(">STATE:120,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194,,")
        .await;
    p.say(">BYTECOUNT:50,50").await;
    rig.wait_state("the second connection", |s| {
        s.phase == Phase::Connected && s.bytes_in == 30
    })
    .await;
    // … and a stop request is passed on at once.
    let t = Instant::now();
    rig.cancel.cancel();
    assert_eq!(p.expect("signal SIGTERM").await, t);
    p.exit("exit status: 0").await;
    rig.wait_state("stopping", |s| s.phase == Phase::Stopping)
        .await;
    assert!(
        !rig.h.is_finished(),
        "the final reports are still on their way"
    );
    // The core answers again: the first session's stop, then the second session's start
    // and stop with its final counts, in this order.
    rig.core.hold_calls(false);
    assert_eq!(rig.outcome().await, Outcome::Stopped);
    let calls = rig.core.session_calls();
    let pid = p.pid;
    assert_eq!(
        calls[calls.len() - 3..],
        [
            Call::Stop("s1".into(), 20, 20),
            start(&format!("{pid}:120")),
            Call::Stop("s2".into(), 30, 30),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn only_one_update_is_in_flight_and_it_carries_the_latest_counts() {
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.connected(100, (1, 1)).await;
    rig.wait_calls("a session", |c| {
        c.contains(&Call::Update("s1".into(), 1, 1))
    })
    .await;
    rig.core.hold_calls(true);
    for n in 2..6 {
        p.say(&format!(">BYTECOUNT:{n},{n}")).await;
        tokio::time::sleep(REPORT).await;
    }
    rig.core.hold_calls(false);
    rig.wait_calls("the latest counts", |c| {
        c.contains(&Call::Update("s1".into(), 5, 5))
    })
    .await;
    let updates: Vec<_> = rig
        .core
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Update(..)))
        .collect();
    // The one held during the four intervals, then the latest counts.
    assert_eq!(
        updates,
        [
            Call::Update("s1".into(), 1, 1),
            Call::Update("s1".into(), 2, 2),
            Call::Update("s1".into(), 5, 5),
        ]
    );
    rig.cancel.cancel();
    p.expect("signal SIGTERM").await;
    p.exit("exit status: 0").await;
    assert_eq!(rig.outcome().await, Outcome::Stopped);
}

#[tokio::test(start_paused = true)]
async fn unacknowledged_stops_are_retried_before_the_next_start() {
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.connected(100, (100, 100)).await;
    rig.wait_calls("a session", |c| c.len() >= 2).await;
    rig.core.set_down(true);
    p.say(">BYTECOUNT:300,300").await;
    p.say(">STATE:110,RECONNECTING,ping-restart,,,,,").await;
    rig.wait_calls("the failed stop", |c| {
        c.contains(&Call::Stop("s1".into(), 300, 300))
    })
    .await;
    p.say(">HOLD:Waiting for hold release:5").await;
    p.expect("hold release").await;
    rig.core.set_down(false);
    p.say(">STATE:120,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194,,")
        .await;
    let calls = rig
        .wait_calls("the new session", |c| {
            c.iter()
                .any(|c| matches!(c, Call::Start(conn) if conn.ends_with(":120")))
        })
        .await;
    let n = calls.len();
    assert_eq!(calls[n - 2], Call::Stop("s1".into(), 300, 300), "{calls:?}");
    assert_eq!(rig.core.session("s1"), Some(((300, 300), true)));
    rig.cancel.cancel();
    p.expect("signal SIGTERM").await;
    p.exit("exit status: 0").await;
    assert_eq!(rig.outcome().await, Outcome::Stopped);
}

#[tokio::test(start_paused = true)]
async fn an_openvpn_that_ignores_the_stop_is_killed_then_given_up_on() {
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.connected(100, (7, 7)).await;
    rig.wait_calls("a session", |c| c.len() >= 2).await;
    let t = Instant::now();
    rig.cancel.cancel();
    p.expect("signal SIGTERM").await;
    // It never exits.
    let outcome = rig.outcome().await;
    assert_eq!(outcome, Outcome::Stopped);
    assert!(Instant::now() - t >= STOP_TIMEOUT + Duration::from_secs(5));
    assert_eq!(p.signals(), [KillSignal::Kill]);
    assert!(p.stopped_reading());
    assert_eq!(rig.core.session("s1"), Some(((7, 7), true)));
}

#[tokio::test(start_paused = true)]
async fn without_management_the_stop_is_a_signal() {
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.connected(100, (7, 7)).await;
    rig.wait_calls("a session", |c| c.len() >= 2).await;
    p.break_writes();
    rig.cancel.cancel();
    until("SIGTERM", || {
        p.signals().contains(&KillSignal::Term).then_some(())
    })
    .await;
    p.exit("signal: 15 (SIGTERM)").await;
    assert_eq!(rig.outcome().await, Outcome::Stopped);
    assert!(p.pending_commands().is_empty());
}

#[tokio::test(start_paused = true)]
async fn failed_starts_and_a_dead_management_socket_restart_openvpn() {
    let mut rig = Rig::start(ServiceStatus::Active, |s| {
        s.stop_timeout = Duration::from_secs(1);
    });
    // The first process never opens its socket: SIGTERM, and a restart once it exits.
    let p1 = rig.launcher.next().await;
    p1.connect_failed().await;
    until("SIGTERM", || {
        p1.signals().contains(&KillSignal::Term).then_some(())
    })
    .await;
    rig.launcher.fail_spawns(2);
    p1.exit("signal: 15 (SIGTERM)").await;
    // Two starts fail (backoff 1 s, 2 s, 4 s), the fourth works.
    let t = Instant::now();
    let p2 = rig.connected(100, (0, 0)).await;
    assert!(Instant::now() - t >= BACKOFF * 7);
    let st = rig
        .wait_state("connected", |s| s.phase == Phase::Connected)
        .await;
    assert_eq!(st.openvpn_pid, Some(p2.pid));
    rig.cancel.cancel();
    let mut p2 = p2;
    p2.expect("signal SIGTERM").await;
    p2.exit("exit status: 0").await;
    assert_eq!(rig.outcome().await, Outcome::Stopped);
}

/// Issue 11, item 12: a lower count from OpenVPN (a damaged line, a bug) never makes the
/// usage sent to the core go backwards, also after a reconnect moved the baseline.
#[tokio::test(start_paused = true)]
async fn usage_sent_never_goes_backwards() {
    let mut rig = Rig::start(ServiceStatus::Active, |_| {});
    let mut p = rig.connected(100, (1000, 1000)).await;
    rig.wait_calls("session 1", |c| {
        c.contains(&Call::Update("s1".into(), 1000, 1000))
    })
    .await;
    p.say(">STATE:110,RECONNECTING,ping-restart,,,,,").await;
    p.say(">HOLD:Waiting for hold release:5").await;
    p.expect("hold release").await;
    p.say(">STATE:120,CONNECTED,SUCCESS,10.8.0.6,192.0.2.1,1194,,")
        .await;
    p.say(">BYTECOUNT:1200,1300").await;
    rig.wait_calls("session 2", |c| {
        c.contains(&Call::Update("s2".into(), 200, 300))
    })
    .await;
    for lower in ["100,150", "1100,1300", "1200,1299"] {
        p.say(&format!(">BYTECOUNT:{lower}")).await;
        tokio::time::sleep(REPORT).await;
    }
    p.say(">BYTECOUNT:1250,1350").await;
    rig.wait_calls("the next count", |c| {
        c.contains(&Call::Update("s2".into(), 250, 350))
    })
    .await;
    rig.cancel.cancel();
    p.expect("signal SIGTERM").await;
    p.exit("exit status: 0").await;
    assert_eq!(rig.outcome().await, Outcome::Stopped);
    let mut last: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for c in rig.core.calls() {
        if let Call::Update(id, i, o) | Call::Stop(id, i, o) = c {
            let prev = last.insert(id.clone(), (i, o)).unwrap_or((0, 0));
            assert!(
                i >= prev.0 && o >= prev.1,
                "{id}: ({i}, {o}) after {prev:?}"
            );
        }
    }
    assert_eq!(rig.core.session("s2"), Some(((250, 350), true)));
}
