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
