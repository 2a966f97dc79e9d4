//! All client connections of the monitor, by connection id and by OpenVPN client id, and
//! the events that concern them as a whole: a client established, gone, listed by `status`
//! or no longer listed. Pure: every operation returns the [`Todo`]s for the actor.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::Ipv4Addr;

use openvpn_mgmt::StatusClient;
use tracing::{debug, info, warn};

use super::client::{acceptable, max2, Action, Client, Counts, Ctx};
use crate::script_env::{self, ClientIdentity, EnvError};

/// An action for the connection `conn`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Todo {
    pub conn: String,
    pub action: Action,
}

/// How many stopped connection ids are remembered (a late event of one is ignored).
const RECENTLY_STOPPED: usize = 4096;

/// The clients, by connection id; `by_cid` maps the current management connection's client
/// ids to them.
#[derive(Debug, Default)]
pub struct ClientTable {
    clients: HashMap<String, Client>,
    by_cid: HashMap<u64, String>,
    recently_stopped: VecDeque<String>,
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
        if self.by_cid.get(&c.cid).map(String::as_str) == Some(conn) {
            self.by_cid.remove(&c.cid);
        }
        let out = c
            .unshape()
            .into_iter()
            .map(|action| Todo {
                conn: conn.to_string(),
                action,
            })
            .collect();
        self.recently_stopped.push_back(c.conn_id);
        while self.recently_stopped.len() > RECENTLY_STOPPED {
            self.recently_stopped.pop_front();
        }
        out
    }

    fn insert(&mut self, cid: u64, id: ClientIdentity, counts: Counts) -> String {
        self.next_serial += 1;
        let c = Client::new(self.next_serial, cid, id, counts);
        let conn = c.conn_id.clone();
        self.clients.insert(conn.clone(), c);
        self.by_cid.insert(cid, conn.clone());
        conn
    }

    /// `>CLIENT:ESTABLISHED`: a new client gets a session; a known one its new client id.
    pub fn established(&mut self, cid: u64, id: ClientIdentity) -> Vec<Todo> {
        let conn = id.connection_id();
        if let Some(c) = self.clients.get_mut(&conn) {
            c.cid = cid;
            self.by_cid.insert(cid, conn);
            return vec![];
        }
        info!(cid, connection = %conn, vpn_addr = ?id.vpn_addr, "client established");
        let conn = self.insert(cid, id, (0, 0));
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
                    Ok(id) => {
                        let k = id.connection_id();
                        if !self.recently_stopped.contains(&k) {
                            warn!(cid, connection = %k, "disconnect of a client without a known session; no session is started for it");
                        }
                        return vec![];
                    }
                    Err(_) => {
                        debug!(cid, "disconnect of an unknown client without identity");
                        return vec![];
                    }
                }
            }
        };
        let Some(c) = self.clients.get(&conn) else {
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
        info!(cid, connection = %conn, bytes_in = fin.0, bytes_out = fin.1, "client disconnected");
        self.with(&conn, |c| c.disconnect(fin))
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
                c.cid = row.cid;
                c.merge_counts(counts, ctx.now);
                self.by_cid.insert(row.cid, conn.clone());
                let v6 = row.virtual_ipv6_address;
                out.extend(self.with(&conn, |c| match v6 {
                    Some(a) if c.id.vpn_addr6.is_none() => c.learn_vpn_addr6(a, ctx),
                    _ => c.shape(ctx),
                }));
                continue;
            }
            if self.recently_stopped.contains(&conn) {
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
            let conn = self.insert(row.cid, id, counts);
            out.extend(self.with(&conn, Client::start));
        }
        // Clients we knew that OpenVPN no longer lists went away while we were not looking.
        let vanished: Vec<String> = self
            .clients
            .values()
            .filter(|c| !c.is_gone() && !listed.contains(&c.conn_id))
            .map(|c| c.conn_id.clone())
            .collect();
        for k in vanished {
            info!(connection = %k, "client no longer connected; stopping its session with the last counts");
            if let Some(c) = self.clients.get(&k) {
                if self.by_cid.get(&c.cid) == Some(&k) {
                    self.by_cid.remove(&c.cid);
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
