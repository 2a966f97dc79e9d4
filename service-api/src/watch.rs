//! WatchStatus: the status changes of the caller's channels, pushed by long-poll. A caller
//! keeps the `cursor` of each answer and sends it with the next call, so no change is missed
//! across calls, reconnects or restarts of the caller.

use serde::{Deserialize, Serialize};

use crate::rules::{Invalid, Validate};
use crate::{ClientKey, ServiceStatus};

/// Longest wait a WatchStatus call may ask for (ms).
pub const MAX_WATCH_WAIT_MS: u64 = 30_000;
/// Most changes in one answer (the rest come with the next call).
pub const MAX_WATCH_CHANGES: usize = 500;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchStatusRequest {
    /// The `cursor` of the previous answer: changes after it are answered. Absent: the call
    /// answers at once with the current cursor and no changes (subscribe, then watch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<u64>,
    /// How long to wait for a change when there is none yet, ms (0 to 30000)
    /// [default: 10000]. The answer comes as soon as there is a change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WatchStatusResponse {
    /// Send it with the next call.
    pub cursor: u64,
    /// Oldest first; empty when the wait ended without a change.
    pub changes: Vec<ChannelStatusChange>,
}

/// A status a channel entered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ChannelStatusChange {
    /// The position of this change (increasing).
    pub cursor: u64,
    pub channel_id: String,
    pub client_key: ClientKey,
    pub status: ServiceStatus,
    /// Unix time in milliseconds.
    pub at_ms: i64,
}

impl Validate for WatchStatusRequest {
    fn validate(&self) -> Result<(), Invalid> {
        if self.wait_ms.is_some_and(|w| w > MAX_WATCH_WAIT_MS) {
            return Err(Invalid {
                pointer: "/waitMs".into(),
                reason: format!("at most {MAX_WATCH_WAIT_MS}"),
            });
        }
        Ok(())
    }
}
