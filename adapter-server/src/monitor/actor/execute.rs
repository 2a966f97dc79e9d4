//! The actor's executor: carries out the [`Todo`]s the client transitions return (spawned
//! core calls, usage reports for the tick's batch, kills behind an nftables drop, shaping)
//! and sets the byte quotas the core's answers give.

use openvpn_mgmt::Command;
use service_api::{FindSessionRequest, StartSessionRequest};
use tracing::warn;

use super::Actor;
use crate::monitor::client::{Action, Client};
use crate::monitor::event::Ev;
use crate::monitor::fence::FenceAddrs;
use crate::monitor::table::Todo;

impl Actor {
    /// Carries out what the transitions asked for.
    pub(super) fn run(&mut self, todos: Vec<Todo>) {
        for Todo { conn, action } in todos {
            match action {
                Action::Start => {
                    let Some(c) = self.table.get(&conn) else {
                        continue;
                    };
                    let req = start_request(c);
                    self.metrics.call_started("StartSession");
                    self.core.spawn_start(&self.tx, conn, req);
                }
                // Sent with the others at the next tick (one UpdateSessions call).
                Action::Update { session, counts } => {
                    self.metrics.call_started("UpdateSession");
                    self.reports.push((conn, session, counts));
                }
                Action::Stop { session, fin } => {
                    self.metrics.call_started("StopSession");
                    self.core.spawn_stop(&self.tx, conn, session, fin)
                }
                Action::Find => {
                    let Some(c) = self.table.get(&conn) else {
                        continue;
                    };
                    let req = FindSessionRequest {
                        client_key: c.id.username.clone(),
                        connection_id: conn.clone(),
                    };
                    self.metrics.call_started("FindSession");
                    self.core.spawn_find(&self.tx, conn, req);
                }
                Action::Kill { cid, why } => self.kill(conn, cid, why),
                Action::Shape { key, addrs, speed } => {
                    if let Some(s) = &self.shaper {
                        s.apply(key, addrs, speed);
                    }
                }
                Action::Unshape { key } => {
                    if let Some(s) = &self.shaper {
                        s.remove(key);
                    }
                }
                Action::Unfence { key } => {
                    if let Some(f) = &self.fence {
                        f.remove(key);
                    }
                }
                // The table carries out Forget itself.
                Action::Forget => {}
            }
        }
    }

    /// Kills client `cid` (connection `conn`). With nftables the client's traffic is dropped
    /// first and the kill is sent once the drop is in place ([`Ev::Blocked`]).
    fn kill(&mut self, conn: String, cid: u64, why: &'static str) {
        let target = self.table.get(&conn).and_then(|c| {
            c.id.vpn_addr.map(|v4| {
                (
                    c.serial,
                    FenceAddrs {
                        tun: tc_shaper::ClientAddrs {
                            v4,
                            v6: c.id.vpn_addr6,
                        },
                        link: c.id.client_addr.parse().ok(),
                    },
                )
            })
        });
        match (&self.fence, target) {
            (Some(f), Some((key, addrs))) => {
                warn!(cid, connection = %conn, addr = %addrs.tun.v4, "dropping client traffic before the kill: {why}");
                let done = f.block(key, addrs);
                self.table.with(&conn, |c| {
                    c.fenced = true;
                    vec![]
                });
                let (tx, gen) = (self.tx.clone(), self.gen);
                tokio::spawn(async move {
                    let ok = done.await.unwrap_or(false);
                    let _ = tx
                        .send(Ev::Blocked {
                            gen,
                            conn_id: conn,
                            cid,
                            why,
                            ok,
                        })
                        .await;
                });
            }
            _ => {
                warn!(cid, connection = %conn, "killing client: {why}");
                self.send_cmd(Command::ClientKill { cid });
            }
        }
    }

    /// Sets client `conn`'s byte quota: the session's bytes the core has recorded plus what
    /// it says is left.
    pub(super) fn set_quota(&mut self, conn: &str, recorded: u64, left: Option<u64>) {
        let (Some(f), Some(left)) = (&self.fence, left) else {
            return;
        };
        let Some(c) = self.table.get(conn) else {
            return;
        };
        let Some(addrs) = c.quota_addrs() else {
            return;
        };
        let addrs = FenceAddrs {
            tun: addrs,
            link: c.id.client_addr.parse().ok(),
        };
        f.quota(c.serial, addrs, recorded.saturating_add(left));
        self.table.with(conn, |c| {
            c.fenced = true;
            vec![]
        });
    }
}

/// The StartSession of a connection.
fn start_request(c: &Client) -> StartSessionRequest {
    StartSessionRequest {
        client_key: c.id.username.clone(),
        connection_id: Some(c.conn_id.clone()),
        client_addr: Some(c.id.client_addr.clone()),
        vpn_addr: c.id.vpn_addr.map(|a| a.to_string()),
    }
}
