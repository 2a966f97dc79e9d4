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
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_integer"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub cursor: Option<u64>,
    /// How long to wait for a change when there is none yet, ms (0 to 30000)
    /// [default: 10000]. The answer comes as soon as there is a change.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "opt_integer"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 30000))]
    pub wait_ms: Option<u64>,
}

/// An optional non-negative integer; like JSON Schema, `5.0` is an integer
/// ([`crate::rules::counter`]).
fn opt_integer<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    struct Integer(#[serde(deserialize_with = "crate::rules::counter")] u64);
    Ok(Option::<Integer>::deserialize(d)?.map(|Integer(v)| v))
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
        // The document's int64: no cursor the core hands out is above it.
        if self.cursor.is_some_and(|c| i64::try_from(c).is_err()) {
            return Err(Invalid {
                pointer: "/cursor".into(),
                reason: format!("at most {}", i64::MAX),
            });
        }
        if self.wait_ms.is_some_and(|w| w > MAX_WATCH_WAIT_MS) {
            return Err(Invalid {
                pointer: "/waitMs".into(),
                reason: format!("at most {MAX_WATCH_WAIT_MS}"),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_as_json_schema_reads_them_and_only_objects() {
        let r: WatchStatusRequest =
            serde_json::from_str(r#"{"cursor": 7.0, "waitMs": 1e3}"#).expect("integral floats");
        assert_eq!((r.cursor, r.wait_ms), (Some(7), Some(1000)));
        let r: WatchStatusRequest =
            serde_json::from_str(r#"{"cursor": null}"#).expect("null is absent");
        assert_eq!((r.cursor, r.wait_ms), (None, None));
        assert!(serde_json::from_str::<WatchStatusRequest>(r#"{"waitMs": 1.5}"#).is_err());
        assert!(serde_json::from_str::<WatchStatusRequest>(r#"{"cursor": -1}"#).is_err());
        let too_long = WatchStatusRequest {
            cursor: None,
            wait_ms: Some(MAX_WATCH_WAIT_MS + 1),
        };
        assert!(too_long.validate().is_err());
        let beyond = WatchStatusRequest {
            cursor: Some(1 << 63),
            wait_ms: None,
        };
        assert!(beyond.validate().is_err());
    }
}
