use super::*;

#[test]
fn backoff_is_capped_exponential() {
    let i = Duration::from_secs(1);
    let m = Duration::from_secs(60);
    let got: Vec<u64> = (0..10).map(|a| backoff_delay(a, i, m).as_secs()).collect();
    assert_eq!(got, vec![0, 1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(backoff_delay(u32::MAX, i, m), m);
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn running() -> Running<&'static str> {
    Running::new("proc", 42)
}

#[test]
fn holds_release_at_once_then_after_the_delay() {
    let t0 = Instant::now();
    let mut c: Conn<&str> = Conn::Down { restart_at: None };
    assert_eq!(c.on_hold(false, secs(1), t0), Hold::Ignore, "no process");
    c.started(running());
    assert_eq!(c.on_hold(false, secs(4), t0), Hold::ReleaseNow);
    assert_eq!(c.timer(false), None);
    assert_eq!(c.on_hold(false, secs(4), t0), Hold::ReleaseLater(secs(4)));
    assert_eq!(c.timer(false), Some(t0 + secs(4)));
    assert!(matches!(c.due(t0 + secs(3), false), Due::Nothing));
    assert!(matches!(c.due(t0 + secs(4), false), Due::Release));
    assert_eq!(c.timer(false), None, "released once");
    // Holding off: a hold is only counted.
    assert_eq!(c.on_hold(true, secs(4), t0), Hold::Ignore);
    assert_eq!(c.running().map(|r| r.holds), Some(3));
    c.on_hold(false, secs(1), t0);
    c.hold_off();
    assert_eq!(c.timer(false), None, "a pending release is dropped");
}

#[test]
fn an_exit_request_leads_to_sigkill_then_giving_up() {
    let t0 = Instant::now();
    let mut c: Conn<&str> = Conn::Down { restart_at: None };
    c.started(running());
    c.exit_requested(t0, secs(10), false);
    assert_eq!(c.timer(false), Some(t0 + secs(10)));
    // A second request keeps the deadline unless it resets it.
    c.exit_requested(t0 + secs(3), secs(10), false);
    assert_eq!(c.timer(true), Some(t0 + secs(10)));
    assert_eq!(
        c.on_hold(false, secs(1), t0),
        Hold::Ignore,
        "never released again"
    );
    assert!(matches!(c.due(t0 + secs(9), false), Due::Nothing));
    assert!(matches!(c.due(t0 + secs(10), false), Due::Kill));
    assert_eq!(c.timer(false), Some(t0 + secs(10) + KILL_GRACE));
    c.exit_requested(t0 + secs(11), secs(10), true);
    assert_eq!(c.timer(false), Some(t0 + secs(21)), "reset");
    match c.due(t0 + secs(21), false) {
        Due::GiveUp(r) => assert_eq!(r.pid, 42),
        _ => panic!("given up on"),
    }
    assert!(c.is_down());
    assert!(c.gone().is_none());
}

#[test]
fn restarts_wait_for_their_time_and_not_while_holding_off() {
    let t0 = Instant::now();
    let mut c: Conn<&str> = Conn::Down { restart_at: None };
    c.schedule_restart(t0 + secs(2));
    assert_eq!(c.timer(true), None, "no restart timer while holding off");
    assert!(matches!(c.due(t0 + secs(5), true), Due::Nothing));
    assert!(matches!(c.due(t0 + secs(1), false), Due::Nothing));
    assert!(matches!(c.due(t0 + secs(2), false), Due::Restart));
    assert_eq!(c.timer(false), None);
    c.schedule_restart(t0);
    c.hold_off();
    assert_eq!(c.timer(false), None);
    // With a process there is nothing to restart.
    c.started(running());
    c.schedule_restart(t0);
    assert_eq!(c.timer(false), None);
    assert_eq!(c.gone().map(|r| r.pid), Some(42));
}

#[test]
fn the_goal_decides_what_a_status_means() {
    let t0 = Instant::now();
    let connect = Goal::Connect;
    assert_eq!(
        connect.react(ServiceStatus::Active, "UpdateSession"),
        Reaction::Nothing
    );
    assert_eq!(
        connect.react(ServiceStatus::Suspending, "UpdateSession"),
        Reaction::Suspend
    );
    assert_eq!(
        connect.react(ServiceStatus::Terminated, "StopSession"),
        Reaction::StopForGood(Outcome::CoreStopped {
            status: ServiceStatus::Terminated,
            reason: "the core answered terminated (StopSession)".into()
        })
    );
    let suspended = Goal::Wait(Wait::suspended(ServiceStatus::Suspended, "x", t0, secs(2)));
    assert_eq!(
        suspended.react(ServiceStatus::Activating, "status check"),
        Reaction::Resume
    );
    let check = Goal::Wait(Wait::check(Outcome::Stopped, t0, secs(5)));
    assert_eq!(
        check.react(ServiceStatus::Active, "status check"),
        Reaction::Nothing
    );
    assert_eq!(
        check.react(ServiceStatus::Suspended, "status check"),
        Reaction::Suspend
    );
    let stop = Goal::Stop(Outcome::Stopped);
    assert_eq!(
        stop.react(ServiceStatus::Terminated, "x"),
        Reaction::Nothing
    );
    assert!(stop.holding_off() && check.holding_off() && !connect.holding_off());
}

#[test]
fn a_suspension_polls_shows_the_wait_and_gives_up_at_the_maximum() {
    let t0 = Instant::now();
    let mut w = Wait::suspended(ServiceStatus::Suspended, "UpdateSession", t0, secs(2));
    assert_eq!(w.next_poll(), t0 + secs(2));
    match w.after_check(t0 + secs(2), secs(2), Some(secs(5))) {
        AfterCheck::Waiting {
            reason: Some(r),
            log: false,
        } => assert!(r.ends_with("— 2 s"), "{r}"),
        o => panic!("{o:?}"),
    }
    assert_eq!(w.next_poll(), t0 + secs(4));
    w.after_check(t0 + secs(4), secs(2), Some(secs(5)));
    assert_eq!(w.next_poll(), t0 + secs(5), "the last poll at the maximum");
    match w.after_check(t0 + secs(5), secs(2), Some(secs(5))) {
        AfterCheck::GiveUp(Outcome::CoreStopped { status, reason }) => {
            assert_eq!(status, ServiceStatus::Suspended);
            assert!(reason.contains("no payment within 5 s"), "{reason}");
        }
        o => panic!("{o:?}"),
    }
    // Without a maximum it waits, and logs every 30 s.
    let mut w = Wait::suspended(ServiceStatus::Suspending, "x", t0, secs(2));
    let logged = (1..=20)
        .filter(|n| {
            matches!(
                w.after_check(t0 + secs(2 * n), secs(2), None),
                AfterCheck::Waiting { log: true, .. }
            )
        })
        .count();
    assert_eq!(logged, 1, "once in 40 s");
}

#[test]
fn a_halt_check_polls_at_least_every_second_until_the_grace_ends() {
    let t0 = Instant::now();
    let halted = Outcome::ServerHalted {
        reason: "the server halted the client (server-pushed-halt)".into(),
    };
    let mut w = Wait::check(halted, t0, secs(3));
    assert_eq!(w.next_poll(), t0, "asked at once");
    assert_eq!(
        w.after_check(t0, secs(10), None),
        AfterCheck::Waiting {
            reason: None,
            log: false
        }
    );
    assert_eq!(w.next_poll(), t0 + HALT_CHECK_MAX_INTERVAL);
    w.after_check(t0 + secs(2) + Duration::from_millis(500), secs(10), None);
    assert_eq!(w.next_poll(), t0 + secs(3), "not after the grace");
    match w.after_check(t0 + secs(3), secs(10), None) {
        AfterCheck::GiveUp(Outcome::ServerHalted { reason }) => {
            assert!(
                reason.ends_with("; the core still admits the channel"),
                "{reason}"
            )
        }
        o => panic!("{o:?}"),
    }
    let mut w = Wait::check(Outcome::AuthFailed { reason: "r".into() }, t0, secs(0));
    assert_eq!(
        w.after_check(t0, secs(1), None),
        AfterCheck::GiveUp(Outcome::AuthFailed { reason: "r".into() })
    );
}
