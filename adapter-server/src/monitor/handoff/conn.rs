//! One hand-off connection: peer check, bounded request, reply, commit, event to the actor.
//! Everything the peer sends is hostile until parsed.

use std::time::Duration;

use adapter_server_hook::wire::{self, Kind, Reply, WireError, HEADER_LEN, SHORT_LEN};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::time::{timeout_at, Instant};
use tracing::{debug, warn};

use super::HandoffEvent;
use crate::monitor::event::Ev;

/// How long the request may take to arrive (the hook sends it right after connecting).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the commit may take after the reply. Far longer than the hook's wait for the
/// reply (500 ms), which is the only time the hook spends between the two: an event the
/// hook has committed is not dropped here unless the hook stalls for this long.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a hand-off was not taken.
#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("reading the request: {0}")]
    Read(#[source] std::io::Error),
    #[error("the request did not arrive within {0:?}")]
    Timeout(Duration),
    #[error("invalid request: {0}")]
    Invalid(#[source] WireError),
    #[error("the monitor's event queue is full")]
    Busy,
    #[error("writing the reply: {0}")]
    Write(#[source] std::io::Error),
}

/// Serves one connection (errors are logged: the hook then runs the full hook).
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
    match exchange(&mut stream, uid, &tx).await {
        Ok(Some(kind)) => debug!(uid, kind = kind.script_type(), "hand-off committed"),
        Ok(None) => {}
        Err(e) => warn!(uid, "hand-off not taken: {e}"),
    }
}

async fn refuse(stream: &mut UnixStream) {
    let _ = stream.write_all(&wire::encode_reply(Reply::Refused)).await;
}

/// Request → reply → commit; the event kind when it went to the actor.
async fn exchange(
    stream: &mut UnixStream,
    uid: u32,
    tx: &mpsc::Sender<Ev>,
) -> Result<Option<Kind>, ConnError> {
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    let mut header = [0u8; HEADER_LEN];
    timeout_at(deadline, stream.read_exact(&mut header))
        .await
        .map_err(|_| ConnError::Timeout(REQUEST_TIMEOUT))?
        .map_err(ConnError::Read)?;
    let len = match wire::body_len(&header) {
        Ok(len) => len,
        Err(e) => {
            refuse(stream).await;
            return Err(ConnError::Invalid(e));
        }
    };
    let mut body = vec![0u8; len];
    timeout_at(deadline, stream.read_exact(&mut body))
        .await
        .map_err(|_| ConnError::Timeout(REQUEST_TIMEOUT))?
        .map_err(ConnError::Read)?;
    let req = match wire::decode_body(&body) {
        Ok(r) => r,
        Err(e) => {
            refuse(stream).await;
            return Err(ConnError::Invalid(e));
        }
    };
    // Room in the actor's queue is taken before saying yes, so a committed event is
    // never lost to a full queue.
    let Ok(permit) = tx.try_reserve() else {
        refuse(stream).await;
        return Err(ConnError::Busy);
    };
    let ready = wire::encode_reply(Reply::Ready);
    timeout_at(Instant::now() + REQUEST_TIMEOUT, stream.write_all(&ready))
        .await
        .map_err(|_| ConnError::Write(std::io::ErrorKind::TimedOut.into()))?
        .map_err(ConnError::Write)?;
    let mut commit = [0u8; SHORT_LEN];
    let got = timeout_at(
        Instant::now() + COMMIT_TIMEOUT,
        stream.read_exact(&mut commit),
    )
    .await;
    match got {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => {
            // The hook gave up (no reply in its time) and runs the full hook.
            debug!(uid, "hand-off not committed: {e}");
            return Ok(None);
        }
        Err(_) => {
            warn!(
                uid,
                "hand-off not committed within {COMMIT_TIMEOUT:?}; dropped"
            );
            return Ok(None);
        }
    }
    if let Err(e) = wire::decode_commit(&commit) {
        warn!(uid, "hand-off not committed (bad commit: {e}); dropped");
        return Ok(None);
    }
    let kind = req.kind;
    permit.send(Ev::Handoff(HandoffEvent::new(req, uid)));
    Ok(Some(kind))
}
