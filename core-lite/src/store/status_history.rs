//! `status_history`: every status a channel entered, when and why.

use service_api::{ServiceStatus, StatusChange};

use super::codec::status;
use super::db::{args, Tx};
use super::error::StoreError;

pub fn insert(
    tx: &Tx<'_>,
    channel_id: &str,
    status: ServiceStatus,
    now: i64,
    reason: &str,
) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO status_history (channel_id, status, at_ms, reason) VALUES (?1, ?2, ?3, ?4)",
        args![channel_id, status.as_str(), now, reason],
    )?;
    Ok(())
}

/// A channel's history, oldest first.
pub fn of_channel(tx: &Tx<'_>, channel_id: &str) -> Result<Vec<StatusChange>, StoreError> {
    let rows: Vec<(String, i64, String)> = tx.rows(
        "SELECT status, at_ms, reason FROM status_history WHERE channel_id = ?1 ORDER BY id",
        args![channel_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    rows.into_iter()
        .map(|(s, at_ms, reason)| {
            Ok(StatusChange {
                status: status("status_history.status", &s)?,
                at_ms,
                reason,
            })
        })
        .collect()
}
