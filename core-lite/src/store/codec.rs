//! Rust values in and out of SQLite columns: u64 counters and money as signed integers,
//! service statuses as their wire names, documents as JSON text.

use serde::de::DeserializeOwned;
use serde::Serialize;
use service_api::ServiceStatus;

use super::error::StoreError;

/// SQLite stores signed 64-bit integers; counters and money are u64 in Rust.
pub(super) fn to_sql_u64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The u64 of a stored integer (negative ones read as 0).
pub(super) fn from_sql_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// A stored status; `what` names the column in the error.
pub(super) fn status(what: &'static str, s: &str) -> Result<ServiceStatus, StoreError> {
    s.parse::<ServiceStatus>()
        .map_err(|reason| StoreError::BadValue {
            what,
            reason: reason.to_string(),
        })
}

/// A stored JSON document; `what` names the column in the error.
pub(super) fn from_json<T: DeserializeOwned>(what: &'static str, s: &str) -> Result<T, StoreError> {
    serde_json::from_str(s).map_err(|source| StoreError::Json { what, source })
}

/// A document as the JSON text to store; `what` names the column in the error.
pub(super) fn to_json<T: Serialize + ?Sized>(
    what: &'static str,
    v: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|source| StoreError::Encode { what, source })
}
