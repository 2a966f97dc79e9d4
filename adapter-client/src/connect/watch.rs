//! The client core's status changes, pushed (WatchStatus long-poll): a channel that becomes
//! suspending/terminating stops the tunnel at once, one that comes back resumes at once,
//! instead of at the next usage report or status check. Resumes from the last cursor after
//! any failure (backoff); the reports and checks stay the fallback (a core without
//! WatchStatus is not asked again).

use std::time::Duration;

use service_api::{ApiError, Client, ClientKey, ErrorCode, WatchStatusRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::actor::Event;

/// How long one WatchStatus call waits for a change.
const WAIT: Duration = Duration::from_secs(10);
const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Starts the subscription for `key`'s channel; it ends with `cancel` or the actor.
pub(crate) fn spawn(
    api: &Client,
    key: ClientKey,
    tx: mpsc::Sender<Event>,
    cancel: CancellationToken,
) {
    let client = match api.with_timeout(WAIT + Duration::from_secs(10)) {
        Ok(c) => c,
        Err(e) => {
            warn!("no status watch (usage reports stay the only source): {e}");
            return;
        }
    };
    tokio::spawn(
        async move {
            tokio::select! {
                _ = cancel.cancelled() => {}
                _ = watch(client, key, tx) => {}
            }
        }
        .in_current_span(),
    );
}

fn unsupported(e: &ApiError) -> bool {
    matches!(
        e,
        ApiError::Api {
            http_status: 404 | 405,
            ..
        } | ApiError::Api {
            code: ErrorCode::Unauthorized | ErrorCode::Forbidden,
            ..
        }
    )
}

async fn watch(client: Client, key: ClientKey, tx: mpsc::Sender<Event>) {
    let mut cursor = None;
    let mut backoff = Duration::ZERO;
    loop {
        let req = WatchStatusRequest {
            cursor,
            wait_ms: Some(u64::try_from(WAIT.as_millis()).unwrap_or(10_000)),
        };
        match client.watch_status(&req).await {
            Ok(r) => {
                if cursor.is_none() {
                    info!("watching the core's status changes of the channel");
                }
                backoff = Duration::ZERO;
                cursor = Some(r.cursor);
                for ch in r.changes.into_iter().filter(|c| c.client_key == key) {
                    debug!(status = %ch.status, "status change pushed");
                    if tx.send(Event::Pushed(ch.status)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) if unsupported(&e) => {
                warn!("the core offers no WatchStatus ({e}); the status comes with the usage reports only");
                return;
            }
            Err(e) => {
                backoff = (backoff * 2).clamp(BACKOFF_MIN, BACKOFF_MAX);
                debug!(retry_in = ?backoff, "status watch failed: {e}");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}
