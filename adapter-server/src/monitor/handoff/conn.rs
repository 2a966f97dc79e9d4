//! One hand-off connection: peer check, bounded request, event to the actor. Everything
//! the peer sends is hostile until parsed. The hook has exited by the time most requests
//! are read (it never waits for the monitor), so nothing is written back.

use std::time::Duration;

use adapter_server_hook::wire::{self, Kind, Request, WireError, HEADER_LEN};
use tokio::io::AsyncReadExt;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, error, warn};

use super::HandoffEvent;
use crate::monitor::event::Ev;

/// How long the request may take to arrive (the hook writes it right after connecting).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Why a hand-off was dropped.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("reading the request: {0}")]
    Read(#[source] std::io::Error),
    #[error("the request did not arrive within {0:?}")]
    Timeout(Duration),
    #[error("invalid request: {0}")]
    Invalid(#[source] WireError),
}

/// Serves one connection: the event goes to the actor, waiting for room in its queue (the
/// accept loop holds a slot for this connection meanwhile, so a full queue stops the
/// accepting and new hooks fall back instead of waiting).
pub(super) async fn serve(mut stream: UnixStream, allowed: [u32; 2], tx: mpsc::Sender<Ev>) {
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            warn!("hand-off: reading the peer's credentials: {e}");
            return;
        }
    };
    if !allowed.contains(&uid) {
        warn!(
            uid,
            "hand-off refused: the peer is neither root nor OpenVPN's user"
        );
        return;
    }
    let req = match read_request(&mut stream).await {
        Ok(req) => req,
        Err(ConnError::Invalid(WireError::Version(v))) => {
            error!(
                uid,
                "hand-off dropped: the hook speaks protocol version {v}, this monitor {}; \
                 restart the monitor after an upgrade (until then such logins time out)",
                wire::VERSION
            );
            return;
        }
        Err(e) => {
            warn!(uid, "hand-off dropped: {e}");
            return;
        }
    };
    let kind: Kind = req.kind;
    match tx.send(Ev::Handoff(HandoffEvent::new(req, uid))).await {
        Ok(()) => debug!(uid, kind = kind.script_type(), "hand-off taken"),
        Err(_) => warn!(
            uid,
            kind = kind.script_type(),
            "hand-off dropped: the monitor has stopped"
        ),
    }
}

/// Reads and parses the one request of a connection.
async fn read_request(stream: &mut UnixStream) -> Result<Request, ConnError> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut header = [0u8; HEADER_LEN];
    timeout_at(deadline, stream.read_exact(&mut header))
        .await
        .map_err(|_| ConnError::Timeout(REQUEST_TIMEOUT))?
        .map_err(ConnError::Read)?;
    let len = wire::body_len(&header).map_err(ConnError::Invalid)?;
    let mut body = vec![0u8; len];
    timeout_at(deadline, stream.read_exact(&mut body))
        .await
        .map_err(|_| ConnError::Timeout(REQUEST_TIMEOUT))?
        .map_err(ConnError::Read)?;
    wire::decode_body(&body).map_err(ConnError::Invalid)
}
