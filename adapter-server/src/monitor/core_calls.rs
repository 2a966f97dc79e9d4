//! Core calls of the monitor: each runs in its own task and comes back as an [`Ev`], so a
//! slow core never blocks the management connection; at most
//! [`MAX_CORE_CALLS_IN_FLIGHT`] run at once. [`CoreHealth`] is the backoff while the core
//! is unreachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use service_api::{
    ApiError, AuthClientRequest, AuthClientResponse, Client as CoreClient, ErrorCode,
    FindSessionRequest, SessionId, StartSessionRequest, StartSessionResponse, StopSessionRequest,
    StopSessionResponse, UpdateSessionRequest, UpdateSessionResponse, UpdateSessionsRequest,
    UpdateSessionsResponse,
};
use tokio::sync::mpsc;
use tracing::{debug, info, warn, Instrument};

use super::client::Counts;
use super::event::Ev;

/// Core calls in flight at once. A burst of 1,000 `>CLIENT:ESTABLISHED` (or of byte counts)
/// would otherwise open one HTTP connection per client, each with its buffers, in the monitor
/// and in the core.
pub const MAX_CORE_CALLS_IN_FLIGHT: usize = 32;

/// A failure worth retrying (the core unreachable, or asking to back off).
pub fn is_transient(e: &ApiError) -> bool {
    e.is_transport() || matches!(e.code(), Some(ErrorCode::RateLimited))
}

/// The core client with a bound on concurrent calls; everything else derefs to the client.
#[derive(Clone)]
pub struct BoundedCore {
    client: CoreClient,
    permits: Arc<tokio::sync::Semaphore>,
}

macro_rules! bounded_calls {
    ($($name:ident($req:ty) -> $resp:ty;)*) => {
        impl BoundedCore {
            $(pub async fn $name(&self, req: &$req) -> Result<$resp, ApiError> {
                // The semaphore is never closed, so acquiring only waits.
                let _permit = self.permits.acquire().await;
                self.client.$name(req).await
            })*
        }
    };
}

/// One usage report of a tick: (connection id, session, cumulative counts).
pub type Report = (String, SessionId, Counts);

/// An answer of the core that does not fit the request.
fn unreadable(what: &str) -> ApiError {
    ApiError::Api {
        http_status: 502,
        code: ErrorCode::Internal,
        message: format!("UpdateSessions answered {what}"),
        status: None,
    }
}

bounded_calls! {
    start_session(StartSessionRequest) -> StartSessionResponse;
    update_session(UpdateSessionRequest) -> UpdateSessionResponse;
    update_sessions(UpdateSessionsRequest) -> UpdateSessionsResponse;
    stop_session(StopSessionRequest) -> StopSessionResponse;
    auth_client(AuthClientRequest) -> AuthClientResponse;
    find_session(FindSessionRequest) -> StartSessionResponse;
}

impl std::ops::Deref for BoundedCore {
    type Target = CoreClient;
    fn deref(&self) -> &CoreClient {
        &self.client
    }
}

impl BoundedCore {
    pub fn new(client: CoreClient) -> Self {
        Self {
            client,
            permits: Arc::new(tokio::sync::Semaphore::new(MAX_CORE_CALLS_IN_FLIGHT)),
        }
    }

    /// StartSession in a task; answers [`Ev::Started`].
    pub fn spawn_start(&self, tx: &mpsc::Sender<Ev>, conn_id: String, req: StartSessionRequest) {
        let (core, tx) = (self.clone(), tx.clone());
        tokio::spawn(
            async move {
                let result = core.start_session(&req).await;
                let _ = tx.send(Ev::Started { conn_id, result }).await;
            }
            .in_current_span(),
        );
    }

    /// FindSession in a task; answers [`Ev::Found`].
    pub fn spawn_find(&self, tx: &mpsc::Sender<Ev>, conn_id: String, req: FindSessionRequest) {
        let (core, tx) = (self.clone(), tx.clone());
        tokio::spawn(
            async move {
                let result = core.find_session(&req).await;
                let _ = tx.send(Ev::Found { conn_id, result }).await;
            }
            .in_current_span(),
        );
    }

    /// UpdateSession in a task; answers [`Ev::Updated`].
    pub fn spawn_update(
        &self,
        tx: &mpsc::Sender<Ev>,
        conn_id: String,
        session: SessionId,
        sent: Counts,
    ) {
        let (core, tx) = (self.clone(), tx.clone());
        tokio::spawn(
            async move {
                let result = core
                    .update_session(&UpdateSessionRequest {
                        session_id: session,
                        bytes_in: sent.0,
                        bytes_out: sent.1,
                    })
                    .await;
                let _ = tx
                    .send(Ev::Updated {
                        conn_id,
                        sent,
                        result,
                    })
                    .await;
            }
            .in_current_span(),
        );
    }

    /// The reports of one tick, in UpdateSessions calls of at most
    /// [`service_api::MAX_BATCH`]; every report is answered with its own [`Ev::Updated`]. A
    /// core that refuses the batch operation itself (an older core) gets the reports one by
    /// one (UpdateSession).
    pub fn spawn_update_batch(&self, tx: &mpsc::Sender<Ev>, reports: Vec<Report>) {
        for chunk in reports.chunks(service_api::MAX_BATCH) {
            let (core, tx, chunk) = (self.clone(), tx.clone(), chunk.to_vec());
            tokio::spawn(
                async move {
                    let req = UpdateSessionsRequest {
                        updates: chunk
                            .iter()
                            .map(|(_, session, sent)| UpdateSessionRequest {
                                session_id: session.clone(),
                                bytes_in: sent.0,
                                bytes_out: sent.1,
                            })
                            .collect(),
                    };
                    let answers = core.update_sessions(&req).await;
                    match answers {
                        Ok(r) if r.results.len() == chunk.len() => {
                            for ((conn_id, _, sent), res) in chunk.into_iter().zip(r.results) {
                                let result = match (res.update, res.error) {
                                    (Some(u), _) => Ok(u),
                                    (None, Some(e)) => Err(ApiError::Api {
                                        http_status: e.code.http_status(),
                                        code: e.code,
                                        message: e.message,
                                        status: e.status,
                                    }),
                                    (None, None) => {
                                        Err(unreadable("an answer without update or error"))
                                    }
                                };
                                let _ = tx
                                    .send(Ev::Updated {
                                        conn_id,
                                        sent,
                                        result,
                                    })
                                    .await;
                            }
                        }
                        Ok(_) => {
                            for (conn_id, _, sent) in chunk {
                                let result = Err(unreadable("not one answer per report"));
                                let _ = tx
                                    .send(Ev::Updated {
                                        conn_id,
                                        sent,
                                        result,
                                    })
                                    .await;
                            }
                        }
                        Err(e) if is_transient(&e) => {
                            for (conn_id, _, sent) in chunk {
                                let result = Err(ApiError::Api {
                                    http_status: 503,
                                    code: ErrorCode::Unavailable,
                                    message: format!("UpdateSessions: {e}"),
                                    status: None,
                                });
                                let _ = tx
                                    .send(Ev::Updated {
                                        conn_id,
                                        sent,
                                        result,
                                    })
                                    .await;
                            }
                        }
                        Err(e) => {
                            debug!("UpdateSessions refused ({e}); reporting one by one");
                            for (conn_id, session, sent) in chunk {
                                core.spawn_update(&tx, conn_id, session, sent);
                            }
                        }
                    }
                }
                .in_current_span(),
            );
        }
    }

    /// StopSession in a task; answers [`Ev::Stopped`].
    pub fn spawn_stop(
        &self,
        tx: &mpsc::Sender<Ev>,
        conn_id: String,
        session: SessionId,
        fin: Counts,
    ) {
        let (core, tx) = (self.clone(), tx.clone());
        tokio::spawn(
            async move {
                let result = core
                    .stop_session(&StopSessionRequest {
                        session_id: session,
                        bytes_in: fin.0,
                        bytes_out: fin.1,
                    })
                    .await;
                let _ = tx.send(Ev::Stopped { conn_id, result }).await;
            }
            .in_current_span(),
        );
    }

    /// StopSession of every `(session, final counts)`, one after the other, for at most
    /// `limit` (at shutdown: final counts are what billing needs).
    pub async fn stop_all(&self, stops: Vec<(SessionId, Counts)>, limit: Duration) {
        if stops.is_empty() {
            return;
        }
        let all = async {
            for (s, f) in stops {
                let _ = self
                    .stop_session(&StopSessionRequest {
                        session_id: s,
                        bytes_in: f.0,
                        bytes_out: f.1,
                    })
                    .await;
            }
        };
        let _ = tokio::time::timeout(limit, all).await;
    }
}

/// Whether the core answers, and when to try again while it does not (exponential backoff
/// between `min` and `max`). No call is made during a backoff: totals are kept and sent
/// later, so a recovering core is not hit by a storm.
#[derive(Debug, Clone)]
pub struct CoreHealth {
    down: bool,
    retry_at: Instant,
    backoff: Duration,
    min: Duration,
    max: Duration,
}

impl CoreHealth {
    pub fn new(min: Duration, max: Duration, now: Instant) -> Self {
        Self {
            down: false,
            retry_at: now,
            backoff: Duration::ZERO,
            min,
            max,
        }
    }

    /// A call succeeded (or was answered).
    pub fn ok(&mut self) {
        if self.down {
            info!("core reachable again");
            self.down = false;
        }
        self.backoff = Duration::ZERO;
    }

    /// A call failed transiently.
    pub fn failed(&mut self, call: &str, e: &ApiError, now: Instant) {
        if !self.down {
            warn!("core unreachable ({call}): {e}; buffering usage");
            self.down = true;
        } else if now < self.retry_at {
            return; // another failure of the same round
        }
        self.backoff = (self.backoff * 2).max(self.min).min(self.max);
        self.retry_at = now + self.backoff;
    }

    /// Feeds a call's result: a success clears the backoff, a transient failure extends
    /// it, a refusal changes nothing.
    pub fn observe<T>(&mut self, call: &str, result: &Result<T, ApiError>, now: Instant) {
        match result {
            Ok(_) => self.ok(),
            Err(e) if is_transient(e) => self.failed(call, e, now),
            Err(_) => {}
        }
    }

    /// False while the core is down and its backoff has not expired.
    pub fn callable(&self, now: Instant) -> bool {
        !self.down || now >= self.retry_at
    }
}
