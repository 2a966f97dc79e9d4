//! Logins handed off by `adapter-server-hook`: one AuthClient call each (like
//! `--client-auth`), answered through OpenVPN's `auth_control_file` and
//! `auth_failed_reason_file` (like the full hook's deferred worker) with the same rules:
//! fail closed, files never created, never written through a link, and here also only
//! when they belong to the user whose hook handed the login over.
//!
//! A login whose answer cannot be written (no control file, or it is refused) is denied by
//! OpenVPN when its deferred-auth time (`hand-window`, 60 s by default) runs out. At
//! shutdown every login still waiting for the core is denied with a "try again" reason.

use std::collections::HashMap;
use std::path::PathBuf;

use service_api::{ApiError, AuthClientRequest, AuthClientResponse, ClientKey};
use tokio::sync::mpsc;
use tracing::{error, Instrument};

use super::HandoffEvent;
use crate::hook::{decide, log_decision, write_answer_as, Decision};
use crate::monitor::core_calls::BoundedCore;
use crate::monitor::event::Ev;
use crate::script_env::{self, AuthFiles};

/// What the client is told when the monitor stops before the core answered.
const STOPPING_REASON: &str = "TEMP[backoff 10]: service restarting";

/// Where and for whom one login is answered.
#[derive(Debug, Clone)]
struct Answer {
    user: Option<ClientKey>,
    addr: Option<String>,
    control: PathBuf,
    reason: Option<PathBuf>,
    owner: u32,
}

impl Answer {
    /// Logs the decision and writes the answer files (in a blocking task: file I/O).
    fn write(self, decision: Decision) -> tokio::task::JoinHandle<()> {
        tokio::task::spawn_blocking(move || {
            let unknown = ClientKey("-".into());
            log_decision(
                self.user.as_ref().unwrap_or(&unknown),
                self.addr.as_deref(),
                &decision,
                "hand-off",
            );
            if let Err(e) = write_answer_as(
                &self.control,
                self.reason.as_deref(),
                &decision,
                Some(self.owner),
            ) {
                error!("answering a handed-off login: {e:#}; OpenVPN denies it when its deferred-auth time runs out");
            }
        })
    }
}

fn unavailable(log_reason: String) -> Decision {
    Decision::Deny {
        log_reason,
        client_reason: "authentication unavailable".into(),
    }
}

/// The handed-off logins waiting for the core's answer.
#[derive(Debug, Default)]
pub struct PendingLogins {
    waiting: HashMap<u64, Answer>,
    next_id: u64,
}

impl PendingLogins {
    /// Where a handed-off login is answered; None (logged) when it cannot be.
    fn answer_of(ev: &HandoffEvent) -> Option<Answer> {
        let (control, reason) = match AuthFiles::from_env(&ev.env) {
            Ok(AuthFiles {
                control: Some(control),
                failed_reason,
                ..
            }) => (control, failed_reason),
            Ok(_) => {
                error!("handed-off login without auth_control_file; OpenVPN denies it when its deferred-auth time runs out");
                return None;
            }
            Err(e) => {
                error!("handed-off login without usable answer files ({e}); OpenVPN denies it when its deferred-auth time runs out");
                return None;
            }
        };
        Some(Answer {
            user: None,
            addr: None,
            control,
            reason,
            owner: ev.peer_uid,
        })
    }

    /// Starts the AuthClient call of a handed-off login (answered by
    /// [`Ev::HandoffAuthDone`]); a login without usable credentials is denied at once.
    pub fn start(&mut self, core: &BoundedCore, tx: &mpsc::Sender<Ev>, ev: HandoffEvent) {
        let Some(mut answer) = Self::answer_of(&ev) else {
            return;
        };
        // The same reading of the credentials as the full hook: the via-file file when the
        // hook sent it, else the environment.
        let creds = match &ev.credentials {
            Some(bytes) => script_env::parse_auth_file(bytes),
            None => script_env::credentials_from_env(&ev.env),
        };
        let (user, password) = match creds {
            Ok(c) => c,
            Err(e) => {
                answer.write(unavailable(format!("credentials: {e}")));
                return;
            }
        };
        answer.user = Some(user.clone());
        match script_env::peer_addr(&ev.env) {
            Ok(a) => answer.addr = a.map(|(ip, port)| script_env::format_addr(ip, port)),
            Err(e) => {
                answer.write(unavailable(format!("{e}")));
                return;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let req = AuthClientRequest {
            client_key: user,
            password,
            client_addr: answer.addr.clone(),
        };
        self.waiting.insert(id, answer);
        let (core, tx) = (core.clone(), tx.clone());
        tokio::spawn(
            async move {
                let result = core.auth_client(&req).await;
                let _ = tx.send(Ev::HandoffAuthDone { id, result }).await;
            }
            .in_current_span(),
        );
    }

    /// The core's answer to login `id`: the answer files.
    pub fn done(&mut self, id: u64, result: Result<AuthClientResponse, ApiError>) {
        if let Some(answer) = self.waiting.remove(&id) {
            answer.write(decide(result));
        }
    }

    /// Denies every login still waiting and the handed-off logins `unstarted` (taken
    /// but not handled before the monitor stopped), so their clients may retry at once;
    /// waits for the writes.
    pub async fn deny_all(&mut self, unstarted: Vec<HandoffEvent>) {
        let stopping = || Decision::Deny {
            log_reason: "the monitor stopped before the core answered".into(),
            client_reason: STOPPING_REASON.into(),
        };
        let mut writes: Vec<_> = self
            .waiting
            .drain()
            .map(|(_, a)| a.write(stopping()))
            .collect();
        for ev in unstarted {
            if let Some(a) = Self::answer_of(&ev) {
                writes.push(a.write(stopping()));
            }
        }
        for w in writes {
            let _ = w.await;
        }
    }
}
