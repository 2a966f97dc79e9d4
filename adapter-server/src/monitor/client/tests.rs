//! Transitions of one client, without any I/O.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use service_api::{
    ApiError, ClientKey, ErrorCode, ServiceStatus, SessionId, SpeedLimits, StartSessionResponse,
    StopSessionResponse, UpdateSessionResponse,
};

use super::*;

pub(crate) fn identity(vpn: Option<Ipv4Addr>) -> ClientIdentity {
    ClientIdentity {
        username: ClientKey("ck-1".into()),
        client_addr: "192.0.2.7:50123".into(),
        time_unix: 1_700_000_000,
        vpn_addr: vpn,
        vpn_addr6: None,
    }
}

pub(crate) fn ctx() -> Ctx {
    Ctx {
        now: Instant::now(),
        gen: 1,
        mgmt_up: true,
        core_callable: true,
        grace: Duration::from_secs(60),
        shaping: true,
    }
}

fn limits() -> SpeedLimits {
    SpeedLimits {
        max_download_bps: Some(8_000_000),
        max_upload_bps: Some(4_000_000),
        ..SpeedLimits::default()
    }
}

pub(crate) fn started(status: ServiceStatus) -> Result<StartSessionResponse, ApiError> {
    Ok(StartSessionResponse {
        session_id: SessionId("s-1".into()),
        channel_id: "ch".into(),
        status,
        speed: limits(),
        bytes_in: 0,
        bytes_out: 0,
        remaining_bytes: None,
    })
}

pub(crate) fn updated(status: ServiceStatus) -> Result<UpdateSessionResponse, ApiError> {
    Ok(UpdateSessionResponse {
        session_id: SessionId("s-1".into()),
        status,
        bytes_in: 0,
        bytes_out: 0,
        channel_bytes: 0,
        units_used: 0,
        remaining_bytes: None,
        closed: false,
    })
}

pub(crate) fn stopped() -> Result<StopSessionResponse, ApiError> {
    Ok(StopSessionResponse {
        session_id: SessionId("s-1".into()),
        status: ServiceStatus::Active,
        bytes_in: 0,
        bytes_out: 0,
        channel_bytes: 0,
        units_used: 0,
        stopped: true,
    })
}

pub(crate) fn api(code: ErrorCode) -> ApiError {
    ApiError::Api {
        http_status: code.http_status(),
        code,
        message: "m".into(),
        status: None,
    }
}

fn sid() -> SessionId {
    SessionId("s-1".into())
}

/// A connected client with an open session and its limits installed.
fn active() -> Client {
    let mut c = Client::new(
        1,
        Some(7),
        identity(Some(Ipv4Addr::new(10, 8, 0, 6))),
        (0, 0),
    );
    assert_eq!(c.start(), vec![Action::Start]);
    c.on_started(started(ServiceStatus::Active), &ctx());
    c
}

#[test]
fn start_once_then_shape_and_report() {
    let mut c = Client::new(
        1,
        Some(7),
        identity(Some(Ipv4Addr::new(10, 8, 0, 6))),
        (0, 0),
    );
    assert_eq!(c.start(), vec![Action::Start]);
    assert_eq!(
        c.start(),
        vec![],
        "a second StartSession while one is in flight"
    );
    let got = c.on_started(started(ServiceStatus::Active), &ctx());
    assert_eq!(
        got,
        vec![
            Action::Shape {
                key: 1,
                addrs: Ipv4Addr::new(10, 8, 0, 6).into(),
                speed: limits()
            },
            Action::Update {
                session: sid(),
                counts: (0, 0)
            },
        ]
    );
    // One report in flight at a time: new counts wait for the answer.
    assert_eq!(c.on_counts((10, 20), &ctx()), vec![]);
    let got = c.on_updated((0, 0), updated(ServiceStatus::Active), &ctx());
    assert_eq!(
        got,
        vec![Action::Update {
            session: sid(),
            counts: (10, 20)
        }]
    );
    assert_eq!(
        c.on_updated((10, 20), updated(ServiceStatus::Active), &ctx()),
        vec![]
    );
    assert_eq!(c.reported(), (10, 20));
    // Counters only grow.
    c.on_counts((5, 5), &ctx());
    assert_eq!(c.counts, (10, 20));
}

#[test]
fn no_shaping_without_vpn_address_or_limits() {
    let mut c = Client::new(1, Some(7), identity(None), (0, 0));
    c.start();
    let got = c.on_started(started(ServiceStatus::Active), &ctx());
    assert!(!got.iter().any(|a| matches!(a, Action::Shape { .. })));
    let mut c = Client::new(
        2,
        Some(8),
        identity(Some(Ipv4Addr::new(10, 8, 0, 7))),
        (0, 0),
    );
    c.start();
    let mut r = started(ServiceStatus::Active).expect("ok");
    r.speed = SpeedLimits::default();
    let got = c.on_started(Ok(r), &ctx());
    assert!(!got.iter().any(|a| matches!(a, Action::Shape { .. })));
}

#[test]
fn core_says_stop_kills_once_per_management_connection() {
    let mut c = active();
    c.on_counts((1, 1), &ctx());
    let got = c.on_updated((0, 0), updated(ServiceStatus::Suspending), &ctx());
    assert_eq!(
        got,
        vec![Action::Kill {
            cid: 7,
            why: "channel suspended or terminated"
        }]
    );
    // Accounting goes on until OpenVPN drops the client; the kill is not repeated.
    assert_eq!(
        c.tick(&ctx()),
        vec![Action::Update {
            session: sid(),
            counts: (1, 1)
        }],
        "kill repeated on the same connection"
    );
    // A new management connection: the pending kill is sent again.
    let next = Ctx { gen: 2, ..ctx() };
    assert_eq!(
        c.tick(&next),
        vec![Action::Kill {
            cid: 7,
            why: "kill pending"
        }]
    );
}

#[test]
fn kill_waits_for_a_management_connection() {
    let mut c = Client::new(1, Some(7), identity(None), (0, 0));
    c.start();
    let down = Ctx {
        mgmt_up: false,
        ..ctx()
    };
    assert_eq!(
        c.on_started(started(ServiceStatus::Suspended), &down),
        vec![]
    );
    assert_eq!(
        c.tick(&ctx()),
        vec![Action::Kill {
            cid: 7,
            why: "kill pending"
        }]
    );
}

#[test]
fn failing_reports_cut_the_client_after_the_grace_period() {
    let mut c = active();
    let t0 = ctx();
    c.on_counts((5, 5), &t0);
    let transport = api(ErrorCode::Unavailable);
    assert_eq!(c.on_updated((5, 5), Err(transport), &t0), vec![]);
    let within = Ctx {
        now: t0.now + t0.grace,
        core_callable: false,
        ..t0
    };
    assert_eq!(c.tick(&within), vec![]);
    let after = Ctx {
        now: t0.now + t0.grace + Duration::from_millis(1),
        core_callable: false,
        ..t0
    };
    assert_eq!(
        c.tick(&after),
        vec![Action::Kill {
            cid: 7,
            why: "no successful report to the core within the grace period"
        }]
    );
}

#[test]
fn a_session_the_core_says_is_closed_kills() {
    let mut c = active();
    c.on_counts((1, 1), &ctx());
    let mut answer = updated(ServiceStatus::Active);
    if let Ok(r) = &mut answer {
        r.closed = true;
    }
    assert_eq!(
        c.on_updated((1, 1), answer, &ctx()),
        vec![Action::Kill {
            cid: 7,
            why: "session replaced by a newer login"
        }]
    );
}

#[test]
fn refused_session_kills() {
    let mut c = active();
    c.on_counts((1, 1), &ctx());
    let got = c.on_updated((1, 1), Err(api(ErrorCode::NotFound)), &ctx());
    assert_eq!(
        got,
        vec![Action::Kill {
            cid: 7,
            why: "session refused by core"
        }]
    );
    let mut c = Client::new(1, Some(7), identity(None), (0, 0));
    c.start();
    let got = c.on_started(Err(api(ErrorCode::ChannelInactive)), &ctx());
    assert_eq!(
        got,
        vec![Action::Kill {
            cid: 7,
            why: "StartSession refused"
        }]
    );
}

#[test]
fn disconnect_unshapes_waits_for_the_update_then_stops() {
    let mut c = active();
    c.on_counts((100, 200), &ctx());
    // The update of (0,0) from the start is in flight.
    let got = c.disconnect((150, 250));
    assert_eq!(got, vec![Action::Unshape { key: 1 }]);
    assert!(matches!(
        c.phase,
        Phase::Gone {
            closing: Closing::AwaitUpdate { .. },
            ..
        }
    ));
    assert_eq!(
        c.kill("x", &ctx()),
        vec![],
        "a departed client is not killed"
    );
    let got = c.on_updated((0, 0), updated(ServiceStatus::Active), &ctx());
    assert_eq!(
        got,
        vec![Action::Stop {
            session: sid(),
            fin: (150, 250)
        }]
    );
    // A transient failure of the stop is retried at the next tick, once.
    assert_eq!(c.on_stopped(Err(api(ErrorCode::Unavailable))), vec![]);
    assert_eq!(
        c.tick(&ctx()),
        vec![Action::Stop {
            session: sid(),
            fin: (150, 250)
        }]
    );
    assert_eq!(c.tick(&ctx()), vec![]);
    assert_eq!(c.on_stopped(stopped()), vec![Action::Forget]);
}

#[test]
fn disconnect_before_the_session_is_known() {
    let mut c = Client::new(1, Some(7), identity(None), (0, 0));
    c.start();
    assert_eq!(
        c.disconnect((10, 10)),
        vec![],
        "StartSession still in flight"
    );
    let got = c.on_started(started(ServiceStatus::Active), &ctx());
    assert_eq!(
        got,
        vec![Action::Stop {
            session: sid(),
            fin: (10, 10)
        }]
    );
}

#[test]
fn no_calls_while_the_core_backs_off() {
    let mut c = active();
    c.on_updated((0, 0), updated(ServiceStatus::Active), &ctx());
    let off = Ctx {
        core_callable: false,
        ..ctx()
    };
    assert_eq!(c.on_counts((9, 9), &off), vec![]);
    assert_eq!(c.tick(&off), vec![]);
    assert_eq!(
        c.tick(&ctx()),
        vec![Action::Update {
            session: sid(),
            counts: (9, 9)
        }]
    );
}

#[test]
fn shaping_reset_reapplies() {
    let mut c = active();
    assert_eq!(c.shape(&ctx()), vec![], "already shaped");
    c.forget_shaping();
    assert_eq!(c.shape(&ctx()).len(), 1);
    let off = Ctx {
        shaping: false,
        ..ctx()
    };
    c.forget_shaping();
    assert_eq!(c.shape(&off), vec![]);
}

/// Issue 11, item 16.
#[test]
fn counts_the_core_refuses_are_dropped_and_never_raise_the_watermark() {
    let mut c = active();
    c.on_updated((0, 0), updated(ServiceStatus::Active), &ctx());
    // Locally: above MAX_BYTE_COUNT, never sent.
    let t0 = ctx();
    assert_eq!(c.on_counts((u64::MAX, u64::MAX), &t0), vec![]);
    assert_eq!(c.counts, (0, 0));
    // A good count is reported and ends the grace timer.
    let got = c.on_counts((100, 200), &t0);
    assert_eq!(
        got,
        vec![Action::Update {
            session: sid(),
            counts: (100, 200)
        }]
    );
    // The core refuses a count (422): dropped, the watermark stays, the timer runs.
    let got = c.on_updated((100, 200), Err(api(ErrorCode::Invalid)), &t0);
    assert_eq!(got, vec![]);
    assert_eq!(c.counts, (0, 0));
    assert_eq!(c.reported(), (0, 0));
    assert_eq!(c.on_counts((150, 250), &t0).len(), 1, "good counts go on");
    assert_eq!(
        c.on_updated((150, 250), Err(api(ErrorCode::Invalid)), &t0),
        vec![]
    );
    let after = Ctx {
        now: t0.now + t0.grace + Duration::from_millis(1),
        ..t0
    };
    assert_eq!(
        c.tick(&after),
        vec![Action::Kill {
            cid: 7,
            why: "no successful report to the core within the grace period"
        }]
    );
}

#[test]
fn a_good_count_after_an_absurd_one_ends_the_grace_timer() {
    let mut c = active();
    c.on_counts((10, 10), &ctx());
    c.on_updated((10, 10), updated(ServiceStatus::Active), &ctx());
    let t0 = ctx();
    c.on_counts((u64::MAX, 0), &t0);
    // The same (accepted) count again: nothing refused any more (each byte count is
    // reported, as before).
    assert_eq!(c.on_counts((10, 10), &t0).len(), 1);
    let after = Ctx {
        now: t0.now + t0.grace * 2,
        ..t0
    };
    assert_eq!(c.tick(&after), vec![]);
}

/// Issue 11, item 17: the IPv6 address is shaped too, also when it is learned later.
#[test]
fn ipv6_address_is_shaped() {
    let v6: std::net::Ipv6Addr = "fd00:8::1000".parse().expect("v6");
    let mut id = identity(Some(Ipv4Addr::new(10, 8, 0, 6)));
    id.vpn_addr6 = Some(v6);
    let mut c = Client::new(1, Some(7), id, (0, 0));
    c.start();
    let got = c.on_started(started(ServiceStatus::Active), &ctx());
    let addrs = tc_shaper::ClientAddrs {
        v4: Ipv4Addr::new(10, 8, 0, 6),
        v6: Some(v6),
    };
    assert!(got.contains(&Action::Shape {
        key: 1,
        addrs,
        speed: limits()
    }));
    let mut c = active();
    assert_eq!(
        c.learn_vpn_addr6(v6, &ctx()),
        vec![Action::Shape {
            key: 1,
            addrs,
            speed: limits()
        }]
    );
    assert_eq!(c.learn_vpn_addr6(v6, &ctx()), vec![]);
}

/// Issue 11, item 15: a departed client never gets a StartSession.
#[test]
fn a_departed_client_never_starts_a_session() {
    let mut c = Client::new(1, Some(7), identity(None), (0, 0));
    c.start();
    // The start failed (core down); the client leaves before a retry.
    c.on_started(Err(api(ErrorCode::Unavailable)), &ctx());
    assert_eq!(c.disconnect((10, 10)), vec![Action::Forget]);
    // A StartSession in flight when it left: a failure is not retried.
    let mut c = Client::new(1, Some(7), identity(None), (0, 0));
    c.start();
    assert_eq!(c.disconnect((10, 10)), vec![]);
    assert_eq!(c.tick(&ctx()), vec![]);
    assert_eq!(
        c.on_started(Err(api(ErrorCode::Unavailable)), &ctx()),
        vec![Action::Forget]
    );
}
