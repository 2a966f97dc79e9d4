//! Calls to the client's core, spawned as tasks whose answers come back to the actor as
//! [`CoreReply`] events, so a slow core never holds up the management connection or a
//! signal.
//!
//! Three lanes, each with at most one call in flight:
//! - **sessions**: StartSession and StopSession, in order (a FIFO queue): a session's
//!   StopSession goes after its StartSession, and earlier sessions are stopped before a new
//!   one starts (the core closes a stale open session when a new one starts);
//! - **usage**: UpdateSession (a report that comes due while one is in flight is skipped:
//!   the next one carries the newer cumulative counts);
//! - **status**: the status check while suspended or after a server halt (replaying the
//!   last StopSession, else an empty StartSession + StopSession), started only while the
//!   sessions lane is idle.
//!
//! StopSession reports the core could not take (unreachable) are kept and put back in the
//! sessions lane with the next usage report, status check, connect, and once before exit.

use std::collections::VecDeque;
use std::future::Future;

use service_api::{
    ApiError, Client, ClientKey, ErrorCode, ServiceStatus, SessionId, StartSessionRequest,
    StartSessionResponse, StopSessionRequest, StopSessionResponse, UpdateSessionRequest,
    UpdateSessionResponse,
};
use tokio::sync::mpsc;
use tracing::{error, warn, Instrument};

use super::actor::Event;
use super::usage::Counts;

/// Most unacknowledged StopSession reports kept for retry.
pub(crate) const MAX_PENDING_STOPS: usize = 64;

/// The Service API calls the actor makes (the real [`Client`], or a fake in unit tests).
pub(crate) trait CoreApi: Clone + Send + Sync + 'static {
    fn start_session(
        &self,
        req: StartSessionRequest,
    ) -> impl Future<Output = Result<StartSessionResponse, ApiError>> + Send;
    fn update_session(
        &self,
        req: UpdateSessionRequest,
    ) -> impl Future<Output = Result<UpdateSessionResponse, ApiError>> + Send;
    fn stop_session(
        &self,
        req: StopSessionRequest,
    ) -> impl Future<Output = Result<StopSessionResponse, ApiError>> + Send;
}

impl CoreApi for Client {
    async fn start_session(
        &self,
        req: StartSessionRequest,
    ) -> Result<StartSessionResponse, ApiError> {
        Client::start_session(self, &req).await
    }
    async fn update_session(
        &self,
        req: UpdateSessionRequest,
    ) -> Result<UpdateSessionResponse, ApiError> {
        Client::update_session(self, &req).await
    }
    async fn stop_session(&self, req: StopSessionRequest) -> Result<StopSessionResponse, ApiError> {
        Client::stop_session(self, &req).await
    }
}

/// The answer of a spawned core call.
#[derive(Debug)]
pub(crate) enum CoreReply {
    Started {
        connection_id: String,
        result: Result<StartSessionResponse, ApiError>,
    },
    Updated {
        session_id: SessionId,
        sent: Counts,
        result: Result<UpdateSessionResponse, ApiError>,
    },
    Stopped {
        req: StopSessionRequest,
        result: Result<StopSessionResponse, ApiError>,
    },
    StatusChecked {
        status: Option<ServiceStatus>,
        last_stop: LastStop,
        /// [`Calls::last_stop_seq`] when the check started.
        seq: u64,
    },
}

/// What a status check learned about the StopSession to replay next time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LastStop {
    Keep,
    /// The core does not know the session (any more).
    Forget,
    /// The empty session the check opened and stopped.
    Set(StopSessionRequest),
}

enum SessionCall {
    Start(StartSessionRequest),
    Stop(StopSessionRequest),
}

/// The lanes of core calls and what they keep between calls.
pub(crate) struct Calls<C> {
    core: C,
    tx: mpsc::Sender<Event>,
    client_key: ClientKey,
    queue: VecDeque<SessionCall>,
    session_busy: bool,
    update_busy: bool,
    status_busy: bool,
    /// StopSession reports the core did not acknowledge (unreachable).
    pending: Vec<StopSessionRequest>,
    /// The last StopSession sent: replaying it answers the channel status without side
    /// effects (a stopped session's counts are final).
    last_stop: Option<StopSessionRequest>,
    /// Counts changes of `last_stop`, so a check's answer about an older one is ignored.
    last_stop_seq: u64,
    probe_seq: u32,
}

impl<C: CoreApi> Calls<C> {
    pub(crate) fn new(core: C, tx: mpsc::Sender<Event>, client_key: ClientKey) -> Self {
        Self {
            core,
            tx,
            client_key,
            queue: VecDeque::new(),
            session_busy: false,
            update_busy: false,
            status_busy: false,
            pending: Vec::new(),
            last_stop: None,
            last_stop_seq: 0,
            probe_seq: 0,
        }
    }

    /// Nothing in flight and nothing queued.
    pub(crate) fn idle(&self) -> bool {
        self.sessions_idle() && !self.update_busy && !self.status_busy
    }

    /// The sessions lane has nothing in flight or queued.
    pub(crate) fn sessions_idle(&self) -> bool {
        !self.session_busy && self.queue.is_empty()
    }

    pub(crate) fn status_busy(&self) -> bool {
        self.status_busy
    }

    pub(crate) fn pending_stops(&self) -> &[StopSessionRequest] {
        &self.pending
    }

    /// Queues a StartSession behind what the sessions lane already holds.
    pub(crate) fn start(&mut self, req: StartSessionRequest) {
        self.queue.push_back(SessionCall::Start(req));
        self.pump();
    }

    /// Queues a StopSession behind what the sessions lane already holds.
    pub(crate) fn stop(&mut self, req: StopSessionRequest) {
        self.queue.push_back(SessionCall::Stop(req));
        self.pump();
    }

    /// Puts the unacknowledged StopSession reports back in the sessions lane (not while a
    /// status check runs: the next report or check puts them back).
    pub(crate) fn retry_pending_stops(&mut self) {
        if self.status_busy {
            return;
        }
        for req in std::mem::take(&mut self.pending) {
            self.queue.push_back(SessionCall::Stop(req));
        }
        self.pump();
    }

    /// A StopSession the core could not take: kept for a later retry.
    pub(crate) fn keep_for_retry(&mut self, req: StopSessionRequest) {
        if self.pending.len() < MAX_PENDING_STOPS {
            self.pending.push(req);
        } else {
            error!(
                "too many unacknowledged StopSession reports; dropping the one of {}",
                req.session_id
            );
        }
    }

    /// UpdateSession with the session's cumulative counts, unless one is in flight (then
    /// false: the next report carries newer counts).
    pub(crate) fn update(&mut self, session_id: SessionId, sent: Counts) -> bool {
        if self.update_busy {
            return false;
        }
        self.update_busy = true;
        let core = self.core.clone();
        let req = UpdateSessionRequest {
            session_id: session_id.clone(),
            bytes_in: sent.bytes_in,
            bytes_out: sent.bytes_out,
        };
        self.spawn(async move {
            let result = core.update_session(req).await;
            CoreReply::Updated {
                session_id,
                sent,
                result,
            }
        });
        true
    }

    /// Starts a status check when none runs and the sessions lane is idle; false when it
    /// cannot start now.
    pub(crate) fn check_status(&mut self) -> bool {
        if self.status_busy || !self.sessions_idle() {
            return false;
        }
        self.status_busy = true;
        self.probe_seq = self.probe_seq.wrapping_add(1);
        let probe = StartSessionRequest {
            client_key: self.client_key.clone(),
            connection_id: Some(format!(
                "status-check:{}:{}",
                std::process::id(),
                self.probe_seq
            )),
            client_addr: None,
            vpn_addr: None,
        };
        let core = self.core.clone();
        let last_stop = self.last_stop.clone();
        let seq = self.last_stop_seq;
        self.spawn(async move {
            let (status, last_stop) = ask_status(core, last_stop, probe).await;
            CoreReply::StatusChecked {
                status,
                last_stop,
                seq,
            }
        });
        true
    }

    /// Bookkeeping of an answer; call before acting on it. Starts the next queued call.
    pub(crate) fn answered(&mut self, reply: &CoreReply) {
        match reply {
            CoreReply::Started { .. } | CoreReply::Stopped { .. } => self.session_busy = false,
            CoreReply::Updated { .. } => self.update_busy = false,
            CoreReply::StatusChecked { last_stop, seq, .. } => {
                self.status_busy = false;
                if *seq == self.last_stop_seq {
                    match last_stop {
                        LastStop::Keep => {}
                        LastStop::Forget => self.last_stop = None,
                        LastStop::Set(req) => self.set_last_stop(req.clone()),
                    }
                }
            }
        }
        self.pump();
    }

    fn set_last_stop(&mut self, req: StopSessionRequest) {
        self.last_stop = Some(req);
        self.last_stop_seq = self.last_stop_seq.wrapping_add(1);
    }

    /// Sends the next queued session call when the lane is free.
    fn pump(&mut self) {
        if self.session_busy {
            return;
        }
        let Some(call) = self.queue.pop_front() else {
            return;
        };
        self.session_busy = true;
        let core = self.core.clone();
        match call {
            SessionCall::Start(req) => {
                let connection_id = req.connection_id.clone().unwrap_or_default();
                self.spawn(async move {
                    let result = core.start_session(req).await;
                    CoreReply::Started {
                        connection_id,
                        result,
                    }
                });
            }
            SessionCall::Stop(req) => {
                self.set_last_stop(req.clone());
                self.spawn(async move {
                    let result = core.stop_session(req.clone()).await;
                    CoreReply::Stopped { req, result }
                });
            }
        }
    }

    fn spawn(&self, call: impl Future<Output = CoreReply> + Send + 'static) {
        let tx = self.tx.clone();
        tokio::spawn(
            async move {
                let reply = call.await;
                let _ = tx.send(Event::Core(reply)).await;
            }
            .in_current_span(),
        );
    }
}

/// Asks the core for the channel status without side effects: replays the last
/// StopSession; without one, StartSession (its `channel_inactive` error names the status; a
/// session it opens is stopped again at once, empty).
async fn ask_status<C: CoreApi>(
    core: C,
    last_stop: Option<StopSessionRequest>,
    probe: StartSessionRequest,
) -> (Option<ServiceStatus>, LastStop) {
    let mut learned = LastStop::Keep;
    if let Some(req) = last_stop {
        match core.stop_session(req).await {
            Ok(r) => return (Some(r.status), learned),
            Err(ApiError::Api {
                status: Some(st), ..
            }) => return (Some(st), learned),
            Err(e) if e.code() == Some(ErrorCode::NotFound) => learned = LastStop::Forget,
            Err(e) => {
                warn!("asking the core for the channel status failed (will retry): {e}");
                return (None, learned);
            }
        }
    }
    match core.start_session(probe).await {
        Ok(resp) => {
            let stop = StopSessionRequest {
                session_id: resp.session_id,
                bytes_in: 0,
                bytes_out: 0,
            };
            match core.stop_session(stop.clone()).await {
                Ok(_) => learned = LastStop::Set(stop),
                Err(e) => warn!(
                    "could not stop the empty status-check session {}: {e}",
                    stop.session_id
                ),
            }
            (Some(resp.status), learned)
        }
        Err(ApiError::Api {
            status: Some(st), ..
        }) => (Some(st), learned),
        Err(e) => {
            warn!("asking the core for the channel status failed (will retry): {e}");
            (None, learned)
        }
    }
}
