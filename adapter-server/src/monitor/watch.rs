//! The monitor's subscription to the core's status changes (WatchStatus long-poll): a
//! channel that becomes suspending/terminating is cut at once instead of at its next usage
//! report. It resumes from the last cursor after any failure (backoff between
//! `reconnect_min` and `reconnect_max`), so no change is missed; the usage reports' answers
//! stay the fallback (a core without WatchStatus is polled that way only).

use std::time::Duration;

use service_api::{ApiError, Client as CoreClient, ErrorCode, WatchStatusRequest};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::event::Ev;

/// How long one WatchStatus call waits for a change.
const WAIT: Duration = Duration::from_secs(10);

/// Starts the subscription task.
pub fn spawn(
    core: &CoreClient,
    tx: mpsc::Sender<Ev>,
    min: Duration,
    max: Duration,
    cancel: CancellationToken,
) {
    let client = match core.with_timeout(WAIT + Duration::from_secs(10)) {
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
                _ = watch(client, tx, min, max) => {}
            }
        }
        .in_current_span(),
    );
}

/// The watch is not offered by this core (an older one): stop asking.
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

async fn watch(client: CoreClient, tx: mpsc::Sender<Ev>, min: Duration, max: Duration) {
    let mut cursor: Option<u64> = None;
    let mut backoff = Duration::ZERO;
    let mut up = false;
    loop {
        let req = WatchStatusRequest {
            cursor,
            wait_ms: Some(u64::try_from(WAIT.as_millis()).unwrap_or(10_000)),
        };
        match client.watch_status(&req).await {
            Ok(r) => {
                if !up {
                    info!(cursor = r.cursor, "watching the core's status changes");
                    up = true;
                }
                backoff = Duration::ZERO;
                cursor = Some(r.cursor);
                for ch in r.changes {
                    debug!(client_key = %ch.client_key, status = %ch.status, "status change pushed");
                    if tx
                        .send(Ev::StatusPushed {
                            client_key: ch.client_key,
                            status: ch.status,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
            Err(e) if unsupported(&e) => {
                warn!("the core offers no WatchStatus ({e}); status changes come with the usage reports only");
                return;
            }
            Err(e) => {
                backoff = (backoff * 2).max(min).min(max);
                if up {
                    warn!(retry_in = ?backoff, "status watch lost: {e}; resuming from the last cursor");
                    up = false;
                } else {
                    debug!(retry_in = ?backoff, "status watch failed: {e}");
                }
                tokio::time::sleep(backoff).await;
            }
        }
    }
}
