//! The client table: events by client id, reconciliation with `status`.

use std::net::Ipv4Addr;

use openvpn_mgmt::StatusClient;
use service_api::{ServiceStatus, SessionId};

use super::super::client::tests::{ctx, identity, started};
use super::super::client::Phase;
use super::*;

fn row(cid: u64, rx: u64, tx: u64) -> StatusClient {
    StatusClient {
        common_name: "ck-1".into(),
        real_address: "192.0.2.7:50123".into(),
        virtual_address: Some(Ipv4Addr::new(10, 8, 0, 6)),
        virtual_ipv6_address: None,
        bytes_received: rx,
        bytes_sent: tx,
        connected_since: 1_700_000_000,
        username: Some("ck-1".into()),
        cid,
    }
}

fn actions(todos: &[Todo]) -> Vec<Action> {
    todos.iter().map(|t| t.action.clone()).collect()
}

#[test]
fn established_then_bytecount_by_cid() {
    let mut t = ClientTable::default();
    let todos = t.established(7, identity(None));
    assert_eq!(actions(&todos), vec![Action::Start]);
    let conn = todos[0].conn.clone();
    // The same connection again (a repeated event): no second StartSession.
    assert_eq!(t.established(9, identity(None)), vec![]);
    assert!(t.bytecount(7, (1, 1), &ctx()).is_some());
    assert!(t.bytecount(9, (1, 1), &ctx()).is_some());
    assert!(t.bytecount(8, (1, 1), &ctx()).is_none());
    assert_eq!(t.get(&conn).map(|c| c.counts), Some((1, 1)));
}

#[test]
fn status_learns_and_vanished_clients_are_stopped() {
    let mut t = ClientTable::default();
    let todos = t.reconcile(vec![row(3, 500, 600)], &ctx());
    assert_eq!(actions(&todos), vec![Action::Start]);
    let conn = todos[0].conn.clone();
    let ctx = ctx();
    t.with(&conn, |c| {
        c.on_started(started(ServiceStatus::Active), &ctx)
    });
    t.with(&conn, |c| {
        c.on_updated(
            (500, 600),
            Ok(service_api::UpdateSessionResponse {
                session_id: SessionId("s-1".into()),
                status: ServiceStatus::Active,
                bytes_in: 500,
                bytes_out: 600,
                channel_bytes: 1100,
                units_used: 0,
                remaining_bytes: None,
                closed: false,
            }),
            &ctx,
        )
    });
    // Listed with higher counts: they are taken.
    t.reconcile(vec![row(3, 700, 800)], &ctx);
    assert_eq!(t.get(&conn).map(|c| c.counts), Some((700, 800)));
    // No longer listed: stopped with the last counts, and forgotten once stopped.
    let todos = t.reconcile(vec![], &ctx);
    assert_eq!(
        actions(&todos),
        vec![
            Action::Unshape { key: 1 },
            Action::Stop {
                session: SessionId("s-1".into()),
                fin: (700, 800)
            }
        ]
    );
    let todos = t.with(&conn, |c| {
        c.on_stopped(Ok(service_api::StopSessionResponse {
            session_id: SessionId("s-1".into()),
            status: ServiceStatus::Active,
            bytes_in: 700,
            bytes_out: 800,
            channel_bytes: 1500,
            units_used: 0,
            stopped: true,
        }))
    });
    assert_eq!(todos, vec![]);
    assert!(t.is_empty());
    // A late listing of the stopped connection does not bring it back.
    assert_eq!(t.reconcile(vec![row(3, 700, 800)], &ctx), vec![]);
}

#[test]
fn disconnect_keeps_the_higher_of_final_and_reported_counts() {
    let mut t = ClientTable::default();
    let conn = t.established(7, identity(None))[0].conn.clone();
    let ctx = ctx();
    t.with(&conn, |c| {
        c.on_started(started(ServiceStatus::Active), &ctx)
    });
    let todos = t.disconnect(7, Ok(identity(None)), Ok((40, 50)));
    // The start's first report (0,0) is in flight: the stop waits for it.
    assert_eq!(todos, vec![]);
    match t.get(&conn).map(|c| &c.phase) {
        Some(Phase::Gone { fin, .. }) => assert_eq!(*fin, (40, 50)),
        other => panic!("{other:?}"),
    }
    assert!(t.bytecount(7, (1, 1), &ctx).is_none(), "cid still mapped");
}

/// Issue 11, item 15: the DISCONNECT of a connection without a known session starts none.
#[test]
fn disconnect_of_an_unknown_connection_starts_nothing() {
    let mut t = ClientTable::default();
    assert_eq!(t.disconnect(4, Ok(identity(None)), Ok((10, 20))), vec![]);
    assert!(t.is_empty());
    assert_eq!(t.tick(&ctx()), vec![]);
}

/// A connection whose session is open with nothing in flight.
fn open(t: &mut ClientTable, conn: &str) {
    let ctx = ctx();
    t.with(conn, |c| c.on_started(started(ServiceStatus::Active), &ctx));
    t.with(conn, |c| {
        c.on_updated(
            (0, 0),
            super::super::client::tests::updated(ServiceStatus::Active),
            &ctx,
        )
    });
}

fn stop(session: &str, fin: Counts) -> Action {
    Action::Stop {
        session: SessionId(session.into()),
        fin,
    }
}

fn stops(todos: &[Todo]) -> Vec<Action> {
    actions(todos)
        .into_iter()
        .filter(|a| matches!(a, Action::Stop { .. } | Action::Find))
        .collect()
}

use super::super::client::tests::stopped;

#[test]
fn a_connect_hand_off_opens_the_session_and_established_gives_the_cid() {
    let mut t = ClientTable::default();
    let todos = t.handoff_connect(identity(None), &ctx());
    assert_eq!(actions(&todos), vec![Action::Start]);
    let conn = todos[0].conn.clone();
    assert_eq!(t.get(&conn).and_then(|c| c.cid), None);
    // A repeated hand-off, then the ESTABLISHED of the same connection: no second start.
    assert_eq!(t.handoff_connect(identity(None), &ctx()), vec![]);
    assert_eq!(t.established(7, identity(None)), vec![]);
    assert_eq!(t.get(&conn).and_then(|c| c.cid), Some(7));
    assert!(t.bytecount(7, (5, 6), &ctx()).is_some());
    // The other order: ESTABLISHED first, then the hand-off changes nothing.
    let mut t = ClientTable::default();
    assert_eq!(
        actions(&t.established(7, identity(None))),
        vec![Action::Start]
    );
    assert_eq!(t.handoff_connect(identity(None), &ctx()), vec![]);
}

#[test]
fn a_client_known_only_from_its_connect_hand_off_is_given_time_to_be_listed() {
    let mut t = ClientTable::default();
    let now = ctx();
    let conn = t.handoff_connect(identity(None), &now)[0].conn.clone();
    open(&mut t, &conn);
    // A client list answered while its connect was still running does not list it.
    assert_eq!(stops(&t.reconcile(vec![], &now)), vec![]);
    assert!(t.get(&conn).is_some_and(|c| !c.is_gone()));
    // Listed once: known to the management interface from then on.
    t.reconcile(vec![row(3, 10, 20)], &now);
    assert_eq!(t.get(&conn).and_then(|c| c.cid), Some(3));
    assert_eq!(
        stops(&t.reconcile(vec![], &now)),
        vec![stop("s-1", (10, 20))]
    );
    // Never listed within the bound: gone.
    let mut t = ClientTable::default();
    let conn = t.handoff_connect(identity(None), &now)[0].conn.clone();
    open(&mut t, &conn);
    let mut later = now;
    later.now += HANDOFF_CONNECT_PENDING + std::time::Duration::from_secs(1);
    assert_eq!(
        stops(&t.reconcile(vec![], &later)),
        vec![stop("s-1", (0, 0))]
    );
}

#[test]
fn a_kill_waits_for_the_client_id() {
    let mut t = ClientTable::default();
    let ctx = ctx();
    let conn = t.handoff_connect(identity(None), &ctx)[0].conn.clone();
    let todos = t.with(&conn, |c| {
        c.on_started(started(ServiceStatus::Terminating), &ctx)
    });
    assert_eq!(todos, vec![], "a kill without a client id");
    t.established(9, identity(None));
    let todos = t.tick(&ctx);
    assert!(
        actions(&todos).contains(&Action::Kill {
            cid: 9,
            why: "kill pending"
        }),
        "{todos:?}"
    );
}

/// The client-disconnect hand-off and `>CLIENT:DISCONNECT` of one connection carry the
/// same final counters: whichever comes first, one StopSession.
#[test]
fn disconnect_hand_off_and_disconnect_event_make_one_stop() {
    for handoff_first in [true, false] {
        let mut t = ClientTable::default();
        let conn = t.established(7, identity(None))[0].conn.clone();
        open(&mut t, &conn);
        let fin = Ok((1000, 2000));
        let handoff = |t: &mut ClientTable| t.handoff_disconnect(identity(None), fin.clone());
        let event = |t: &mut ClientTable| t.disconnect(7, Ok(identity(None)), fin.clone());
        let (first, second) = if handoff_first {
            (handoff(&mut t), event(&mut t))
        } else {
            (event(&mut t), handoff(&mut t))
        };
        assert_eq!(stops(&first), vec![stop("s-1", (1000, 2000))]);
        assert_eq!(
            stops(&second),
            vec![],
            "second stop (hand-off first: {handoff_first})"
        );
        assert_eq!(t.with(&conn, |c| c.on_stopped(stopped())), vec![]);
        assert!(t.is_empty());
        // Late: the other one again, after the connection was forgotten: nothing.
        assert_eq!(stops(&handoff(&mut t)), vec![]);
        assert_eq!(stops(&event(&mut t)), vec![]);
    }
}

/// The client list shows the client gone (stopped with the last bytecount), then the
/// client-disconnect hand-off brings OpenVPN's exact counters: they reach the core, while
/// the first StopSession is in flight and after it was answered.
#[test]
fn exact_counts_after_a_stop_with_the_last_bytecount_are_sent() {
    let mut t = ClientTable::default();
    let ctx = ctx();
    let conn = t.established(7, identity(None))[0].conn.clone();
    open(&mut t, &conn);
    t.bytecount(7, (100, 200), &ctx);
    t.with(&conn, |c| {
        c.on_updated(
            (100, 200),
            super::super::client::tests::updated(ServiceStatus::Active),
            &ctx,
        )
    });
    assert_eq!(
        stops(&t.reconcile(vec![], &ctx)),
        vec![stop("s-1", (100, 200))]
    );
    // In flight: the higher counts wait for the answer, then go.
    assert_eq!(
        stops(&t.handoff_disconnect(identity(None), Ok((150, 260)))),
        vec![]
    );
    assert_eq!(
        stops(&t.with(&conn, |c| c.on_stopped(stopped()))),
        vec![stop("s-1", (150, 260))]
    );
    assert_eq!(t.with(&conn, |c| c.on_stopped(stopped())), vec![]);
    assert!(t.is_empty());
    // Forgotten: a still higher count (never lower) stops the same session again.
    assert_eq!(
        stops(&t.handoff_disconnect(identity(None), Ok((150, 260)))),
        vec![]
    );
    assert_eq!(
        stops(&t.handoff_disconnect(identity(None), Ok((10, 10)))),
        vec![]
    );
    let todos = t.handoff_disconnect(identity(None), Ok((151, 260)));
    assert_eq!(stops(&todos), vec![stop("s-1", (151, 260))]);
}

/// A client-disconnect hand-off of a connection the monitor never saw (e.g. it started
/// after the client left): FindSession, then StopSession; none opened when there is none.
#[test]
fn an_unknown_connection_is_found_never_started() {
    let mut t = ClientTable::default();
    let todos = t.handoff_disconnect(identity(None), Ok((5, 6)));
    assert_eq!(stops(&todos), vec![Action::Find]);
    let conn = todos[0].conn.clone();
    let todos = t.with(&conn, |c| c.on_found(started(ServiceStatus::Active)));
    assert_eq!(stops(&todos), vec![stop("s-1", (5, 6))]);
    assert_eq!(t.with(&conn, |c| c.on_stopped(stopped())), vec![]);
    assert!(t.is_empty());

    let mut t = ClientTable::default();
    let conn = t.handoff_disconnect(identity(None), Ok((5, 6)))[0]
        .conn
        .clone();
    let none = Err(super::super::client::tests::api(
        service_api::ErrorCode::NotFound,
    ));
    assert_eq!(t.with(&conn, |c| c.on_found(none)), vec![]);
    assert!(t.is_empty());
    assert!(!actions(&t.tick(&ctx())).contains(&Action::Start));
    // No identity / no counts: nothing at all.
    assert_eq!(
        t.handoff_disconnect(identity(None), Err(EnvError::Missing("bytes_sent"))),
        vec![]
    );
}
