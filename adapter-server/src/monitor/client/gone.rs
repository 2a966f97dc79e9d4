//! A client OpenVPN dropped: its session is stopped with the final counts (found by its
//! connection id first when the connection was unknown here), and final counts that arrive
//! later and are higher (OpenVPN's exact counters after the last bytecount) are sent too,
//! so the core ends with the highest counts of every report of the connection.

use service_api::{ApiError, ErrorCode, SessionId, StartSessionResponse, StopSessionResponse};
use tracing::{info, warn};

use super::{is_transient, max2, Action, Client, Closing, Counts, Phase, Session};
use crate::script_env::ClientIdentity;

impl Client {
    /// A connection that is gone and was not (or no longer) in the table: with `session`
    /// (it was stopped here before) StopSession follows; without, FindSession by its
    /// connection id first. Call [`Client::finish_gone`] next.
    pub fn departed(
        serial: u64,
        id: ClientIdentity,
        fin: Counts,
        session: Option<SessionId>,
    ) -> Self {
        let mut c = Client::new(serial, None, id, fin);
        c.phase = Phase::Gone {
            fin,
            closing: match session {
                Some(id) => Closing::Stopping { id, sending: None },
                None => Closing::Finding { in_flight: false },
            },
        };
        c
    }

    /// OpenVPN dropped the client; `fin` are its final counts. Drives the session towards
    /// StopSession. For a client already gone, the final counts are raised to the higher of
    /// the two (and sent once the StopSession in flight returns).
    pub fn disconnect(&mut self, fin: Counts) -> Vec<Action> {
        self.counts = max2(self.counts, fin);
        let mut out = self.unshape();
        let closing = match &mut self.phase {
            Phase::Connected { session, .. } => match session {
                Session::Starting { in_flight: true } => Closing::AwaitStart,
                Session::Starting { in_flight: false } => {
                    // No session is known and none is started for a departed client
                    // (docs/INTERFACES.md): its usage cannot be reported.
                    warn!(connection = %self.conn_id, bytes_in = fin.0, bytes_out = fin.1, "client left before its session was opened; no session is started for it");
                    out.push(Action::Forget);
                    return out;
                }
                Session::Open {
                    id,
                    sending: Some(_),
                    ..
                } => Closing::AwaitUpdate { id: id.clone() },
                Session::Open { id, .. } => Closing::Stopping {
                    id: id.clone(),
                    sending: None,
                },
            },
            Phase::Gone { fin: old, .. } => {
                *old = max2(*old, fin);
                out.extend(self.finish_gone());
                return out;
            }
        };
        self.phase = Phase::Gone { fin, closing };
        out.extend(self.finish_gone());
        out
    }

    /// A departed client's next call: StopSession (or FindSession) once nothing is in
    /// flight.
    pub(in crate::monitor) fn finish_gone(&mut self) -> Vec<Action> {
        let Phase::Gone { fin, closing } = &mut self.phase else {
            return vec![];
        };
        match closing {
            Closing::Stopping { id, sending } if sending.is_none() => {
                *sending = Some(*fin);
                vec![Action::Stop {
                    session: id.clone(),
                    fin: *fin,
                }]
            }
            Closing::Finding { in_flight } if !*in_flight => {
                *in_flight = true;
                vec![Action::Find]
            }
            _ => vec![],
        }
    }

    /// The StopSession answer.
    pub fn on_stopped(&mut self, result: Result<StopSessionResponse, ApiError>) -> Vec<Action> {
        let conn_id = self.conn_id.clone();
        let Phase::Gone {
            fin,
            closing: Closing::Stopping { sending, .. },
        } = &mut self.phase
        else {
            return vec![];
        };
        let sent = sending.take();
        match result {
            Ok(r) => {
                info!(connection = %conn_id, session = %r.session_id, bytes_in = r.bytes_in, bytes_out = r.bytes_out, status = %r.status, "session stopped");
                if sent == Some(*fin) {
                    vec![Action::Forget]
                } else {
                    // Higher final counts came in meanwhile.
                    self.finish_gone()
                }
            }
            Err(e) if is_transient(&e) => vec![],
            Err(e) => {
                warn!(connection = %conn_id, "StopSession refused: {e}");
                vec![Action::Forget]
            }
        }
    }

    /// The FindSession answer of a connection that was unknown here.
    pub fn on_found(&mut self, result: Result<StartSessionResponse, ApiError>) -> Vec<Action> {
        let conn_id = self.conn_id.clone();
        let Phase::Gone {
            fin,
            closing: closing @ Closing::Finding { .. },
        } = &mut self.phase
        else {
            return vec![];
        };
        match result {
            Ok(found) => {
                info!(connection = %conn_id, session = %found.session_id, "session of this connection found by its connection id");
                *closing = Closing::Stopping {
                    id: found.session_id,
                    sending: None,
                };
                self.finish_gone()
            }
            Err(e) if e.code() == Some(ErrorCode::NotFound) => {
                warn!(connection = %conn_id, bytes_in = fin.0, bytes_out = fin.1, "no session of this connection; none is started at disconnect");
                vec![Action::Forget]
            }
            Err(e) if is_transient(&e) => {
                *closing = Closing::Finding { in_flight: false };
                vec![]
            }
            Err(e) => {
                warn!(connection = %conn_id, "FindSession refused: {e}");
                vec![Action::Forget]
            }
        }
    }
}
