//! All client connections of the monitor, by connection id and by OpenVPN client id, and
//! the events that concern them as a whole: a client established, gone, listed by `status`
//! or no longer listed. Pure: every operation returns the [`Todo`]s for the actor.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;
use std::time::Duration;

use openvpn_mgmt::StatusClient;
use service_api::SessionId;
use tracing::{debug, info, warn};

use super::client::{acceptable, max2, Action, Client, Closing, Counts, Ctx, Phase};
use crate::script_env::{self, ClientIdentity, EnvError};

/// An action for the connection `conn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Todo {
    pub conn: String,
    pub action: Action,
}

/// How many stopped connection ids are remembered (a late event of one is ignored, or
/// brings higher final counts to its stopped session).
const RECENTLY_STOPPED: usize = 4096;
/// How long a client known only from a client-connect hand-off may be missing from the
/// client list before it counts as gone (OpenVPN lists it once its connect completes).
pub const HANDOFF_CONNECT_PENDING: Duration = Duration::from_secs(60);

/// The clients, by connection id; `by_cid` maps the current management connection's client
/// ids to them.
#[derive(Debug, Default)]
pub struct ClientTable {
    clients: HashMap<String, Client>,
    by_cid: HashMap<u64, String>,
    /// Forgotten connections with the session they stopped and its final counts.
    recently_stopped: VecDeque<(String, Option<(SessionId, Counts)>)>,
    next_serial: u64,
}

impl ClientTable {
    pub fn is_empty(&self) -> bool {
        self.clients.is_empty()
    }

    pub fn get(&self, conn: &str) -> Option<&Client> {
        self.clients.get(conn)
    }

    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.clients.values()
    }

    /// The connection ids of the connected clients of a client key.
    pub fn connected_of(&self, key: &service_api::ClientKey) -> Vec<String> {
        self.clients
            .values()
            .filter(|c| !c.is_gone() && c.id.username == *key)
            .map(|c| c.conn_id.clone())
            .collect()
    }

    /// Runs `f` on one client and collects its actions; [`Action::Forget`] is carried out
    /// here (with the unshaping it needs) and not passed on.
    pub fn with<F>(&mut self, conn: &str, f: F) -> Vec<Todo>
    where
        F: FnOnce(&mut Client) -> Vec<Action>,
    {
        let Some(c) = self.clients.get_mut(conn) else {
            return vec![];
        };
        let actions = f(c);
        let mut out = Vec::new();
        for action in actions {
            if action == Action::Forget {
                out.extend(self.forget(conn));
            } else {
                out.push(Todo {
                    conn: conn.to_string(),
                    action,
                });
            }
        }
        out
    }

    fn forget(&mut self, conn: &str) -> Vec<Todo> {
        let Some(mut c) = self.clients.remove(conn) else {
            return vec![];
        };
        if let Some(cid) = c.cid {
            if self.by_cid.get(&cid).map(String::as_str) == Some(conn) {
                self.by_cid.remove(&cid);
            }
        }
        let out = c
            .unshape()
            .into_iter()
            .map(|action| Todo {
                conn: conn.to_string(),
                action,
            })
            .collect();
        let stopped = match &c.phase {
            Phase::Gone {
                fin,
                closing: Closing::Stopping { id, .. },
            } => Some((id.clone(), *fin)),
            _ => None,
        };
        self.recently_stopped.push_back((c.conn_id, stopped));
        while self.recently_stopped.len() > RECENTLY_STOPPED {
            self.recently_stopped.pop_front();
        }
        out
    }

    fn insert(&mut self, cid: Option<u64>, id: ClientIdentity, counts: Counts) -> String {
        self.next_serial += 1;
        let c = Client::new(self.next_serial, cid, id, counts);
        let conn = c.conn_id.clone();
        self.clients.insert(conn.clone(), c);
        if let Some(cid) = cid {
            self.by_cid.insert(cid, conn.clone());
        }
        conn
    }

    /// Whether `conn` was forgotten lately; with the session it stopped.
    fn stopped(&self, conn: &str) -> Option<&Option<(SessionId, Counts)>> {
        self.recently_stopped
            .iter()
            .rev()
            .find(|(k, _)| k == conn)
            .map(|(_, s)| s)
    }

    /// `>CLIENT:ESTABLISHED`: a new client gets a session; a known one its new client id.
    pub fn established(&mut self, cid: u64, id: ClientIdentity) -> Vec<Todo> {
        let conn = id.connection_id();
        if let Some(c) = self.clients.get_mut(&conn) {
            c.cid = Some(cid);
            c.announced = None;
            self.by_cid.insert(cid, conn);
            return vec![];
        }
        info!(cid, connection = %conn, vpn_addr = ?id.vpn_addr, "client established");
        let conn = self.insert(Some(cid), id, (0, 0));
        self.with(&conn, Client::start)
    }

    /// `>BYTECOUNT_CLI`; None when the client id is unknown.
    pub fn bytecount(&mut self, cid: u64, counts: Counts, ctx: &Ctx) -> Option<Vec<Todo>> {
        let conn = self.by_cid.get(&cid)?.clone();
        Some(self.with(&conn, |c| c.on_counts(counts, ctx)))
    }

    /// `>CLIENT:ADDRESS`: the VPN address of a client that had none.
    pub fn address(&mut self, cid: u64, addr: Ipv4Addr) {
        if let Some(c) = self.by_cid.get(&cid).and_then(|k| self.clients.get_mut(k)) {
            if c.id.vpn_addr.is_none() {
                c.id.vpn_addr = Some(addr);
            }
        }
    }

    /// `>CLIENT:DISCONNECT` with its environment (identity, final counters).
    pub fn disconnect(
        &mut self,
        cid: u64,
        identity: Result<ClientIdentity, EnvError>,
        final_counts: Result<Counts, EnvError>,
    ) -> Vec<Todo> {
        let conn = match self.by_cid.remove(&cid) {
            Some(k) => k,
            None => {
                // Missed the ESTABLISHED (monitor started in between): no session of this
                // connection is known here, and a departed client never gets a
                // StartSession (it would open and bill a session).
                match identity {
                    Ok(id) if self.clients.contains_key(&id.connection_id()) => id.connection_id(),
                    Ok(id) => return self.gone_unknown(id, final_counts, false),
                    Err(_) => {
                        debug!(cid, "disconnect of an unknown client without identity");
                        return vec![];
                    }
                }
            }
        };
        info!(cid, connection = %conn, "client disconnected");
        self.depart(&conn, final_counts)
    }

    /// A known connection left with `final_counts`: stopped with the higher of those and
    /// what the core has (a refused or missing count falls back to the last bytecount).
    fn depart(&mut self, conn: &str, final_counts: Result<Counts, EnvError>) -> Vec<Todo> {
        let Some(c) = self.clients.get(conn) else {
            return vec![];
        };
        let fin = match final_counts {
            Ok(f) if acceptable(f) => max2(f, c.reported()),
            Ok(f) => {
                warn!(connection = %conn, bytes_in = f.0, bytes_out = f.1, "final counters above the largest the core accepts; using the last good count");
                c.counts
            }
            Err(e) => {
                warn!(connection = %conn, "disconnect without final counters ({e}); using the last bytecount");
                c.counts
            }
        };
        info!(connection = %conn, bytes_in = fin.0, bytes_out = fin.1, "final counts");
        self.with(conn, |c| c.disconnect(fin))
    }

    /// A departed connection that is not in the table. One stopped here lately gets its
    /// session stopped again when the counts are higher than those it was stopped with;
    /// with `find` (a client-disconnect hand-off, which must not lose OpenVPN's exact
    /// counters) an unknown one is looked up by its connection id and stopped; otherwise it
    /// is only logged. A departed connection never gets a StartSession.
    fn gone_unknown(
        &mut self,
        id: ClientIdentity,
        final_counts: Result<Counts, EnvError>,
        find: bool,
    ) -> Vec<Todo> {
        let conn = id.connection_id();
        let fin = match final_counts {
            Ok(f) if acceptable(f) => f,
            Ok(_) | Err(_) => {
                warn!(connection = %conn, "disconnect of an unknown connection without usable final counters; ignored");
                return vec![];
            }
        };
        let session = match self.stopped(&conn) {
            Some(Some((sid, sent))) if max2(*sent, fin) != *sent => {
                info!(connection = %conn, session = %sid, bytes_in = fin.0, bytes_out = fin.1, "higher final counts of a stopped session");
                Some((sid.clone(), max2(*sent, fin)))
            }
            Some(_) => return vec![],
            None if find => None,
            None => {
                warn!(connection = %conn, "disconnect of a client without a known session; no session is started for it");
                return vec![];
            }
        };
        self.recently_stopped.retain(|(k, _)| *k != conn);
        self.next_serial += 1;
        let (fin, sid) = match session {
            Some((sid, fin)) => (fin, Some(sid)),
            None => (fin, None),
        };
        let c = Client::departed(self.next_serial, id, fin, sid);
        self.clients.insert(conn.clone(), c);
        self.with(&conn, Client::finish_gone)
    }

    /// A client-connect hand-off: the connection gets its session now (the management
    /// interface's ESTABLISHED or client list later gives its client id); one known already
    /// is left as it is.
    pub fn handoff_connect(&mut self, id: ClientIdentity, ctx: &Ctx) -> Vec<Todo> {
        let conn = id.connection_id();
        if self.clients.contains_key(&conn) {
            debug!(connection = %conn, "client-connect hand-off of a known connection");
            return vec![];
        }
        if self.stopped(&conn).is_some() {
            warn!(connection = %conn, "client-connect hand-off of a connection already stopped; ignored");
            return vec![];
        }
        info!(connection = %conn, vpn_addr = ?id.vpn_addr, "client connecting (hand-off)");
        let conn = self.insert(None, id, (0, 0));
        if let Some(c) = self.clients.get_mut(&conn) {
            c.announced = Some(ctx.now);
        }
        self.with(&conn, Client::start)
    }

    /// A client-disconnect hand-off with OpenVPN's final counters: merged with the
    /// management events of the same connection (by connection id), so the core gets one
    /// StopSession with the highest counts.
    pub fn handoff_disconnect(
        &mut self,
        id: ClientIdentity,
        final_counts: Result<Counts, EnvError>,
    ) -> Vec<Todo> {
        let conn = id.connection_id();
        let Some(c) = self.clients.get(&conn) else {
            return self.gone_unknown(id, final_counts, true);
        };
        if let Some(cid) = c.cid {
            if self.by_cid.get(&cid) == Some(&conn) {
                self.by_cid.remove(&cid);
            }
        }
        info!(connection = %conn, "client disconnected (hand-off)");
        self.depart(&conn, final_counts)
    }

    /// The answer to `status 3`: learns clients it did not know (a restarted monitor, a
    /// missed event), refreshes client ids and counts, and closes the sessions of clients
    /// OpenVPN no longer lists.
    pub fn reconcile(&mut self, rows: Vec<StatusClient>, ctx: &Ctx) -> Vec<Todo> {
        let mut out = Vec::new();
        let mut listed = HashSet::new();
        for row in rows {
            let (Some(user), Some(vpn)) = (row.username.as_deref(), row.virtual_address) else {
                continue; // still authenticating, or no username to bill
            };
            let Ok(username) = script_env::validate_username("username", user) else {
                continue;
            };
            let conn = script_env::connection_id(&username, &row.real_address, row.connected_since);
            listed.insert(conn.clone());
            let counts = (row.bytes_received, row.bytes_sent);
            if let Some(c) = self.clients.get_mut(&conn) {
                if c.is_gone() {
                    continue;
                }
                c.cid = Some(row.cid);
                c.announced = None;
                c.merge_counts(counts, ctx.now);
                self.by_cid.insert(row.cid, conn.clone());
                let v6 = row.virtual_ipv6_address;
                out.extend(self.with(&conn, |c| match v6 {
                    Some(a) if c.id.vpn_addr6.is_none() => c.learn_vpn_addr6(a, ctx),
                    _ => c.shape(ctx),
                }));
                continue;
            }
            if self.stopped(&conn).is_some() {
                continue;
            }
            info!(cid = row.cid, connection = %conn, "learned connected client from status");
            let id = ClientIdentity {
                username,
                client_addr: row.real_address.clone(),
                time_unix: row.connected_since,
                vpn_addr: Some(vpn),
                vpn_addr6: row.virtual_ipv6_address,
            };
            let counts = if acceptable(counts) { counts } else { (0, 0) };
            let conn = self.insert(Some(row.cid), id, counts);
            out.extend(self.with(&conn, Client::start));
        }
        // Clients we knew that OpenVPN no longer lists went away while we were not looking
        // (a client announced by a client-connect hand-off is listed once its connect has
        // completed: it is given some time).
        let pending = |c: &Client| {
            c.announced
                .is_some_and(|t| ctx.now.duration_since(t) < HANDOFF_CONNECT_PENDING)
        };
        let vanished: Vec<String> = self
            .clients
            .values()
            .filter(|c| !c.is_gone() && !listed.contains(&c.conn_id) && !pending(c))
            .map(|c| c.conn_id.clone())
            .collect();
        for k in vanished {
            info!(connection = %k, "client no longer connected; stopping its session with the last counts");
            if let Some(cid) = self.clients.get(&k).and_then(|c| c.cid) {
                if self.by_cid.get(&cid) == Some(&k) {
                    self.by_cid.remove(&cid);
                }
            }
            out.extend(self.with(&k, |c| c.disconnect(c.counts)));
        }
        out
    }

    /// A new management connection set the shaping up anew: nothing is installed.
    pub fn forget_shaping(&mut self) {
        for c in self.clients.values_mut() {
            c.forget_shaping();
        }
    }

    /// Housekeeping of every client.
    pub fn tick(&mut self, ctx: &Ctx) -> Vec<Todo> {
        let keys: Vec<String> = self.clients.keys().cloned().collect();
        keys.into_iter()
            .flat_map(|k| self.with(&k, |c| c.tick(ctx)))
            .collect()
    }
}

#[cfg(test)]
mod tests;
