//! `status_history`: every status a channel entered, when and why.

use service_api::{ChannelStatusChange, ClientKey, ServiceStatus, StatusChange};

use super::codec::status;
use super::db::{args, Row, Tx};
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

/// Who a watch is for: a product's channels (agent side), the client side's channels, or
/// every channel (admin).
pub enum WatchScope<'a> {
    Product(&'a str),
    Client,
    All,
}

/// The newest change's position (0 when there is none).
pub fn last_id(tx: &Tx<'_>) -> Result<u64, StoreError> {
    let id: i64 = tx.row(
        "SELECT COALESCE(MAX(id), 0) FROM status_history",
        args![],
        |r| r.get(0),
    )?;
    Ok(u64::try_from(id).unwrap_or(0))
}

/// Status changes after position `after` in `scope`, oldest first, at most `limit`.
pub fn after(
    tx: &Tx<'_>,
    scope: &WatchScope<'_>,
    after: u64,
    limit: usize,
) -> Result<Vec<ChannelStatusChange>, StoreError> {
    let after = i64::try_from(after).unwrap_or(i64::MAX);
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let map = |r: &Row<'_>| -> Result<(i64, String, String, String, i64), StoreError> {
        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
    };
    const COLS: &str = "SELECT h.id, h.channel_id, c.client_key, h.status, h.at_ms \
                        FROM status_history h JOIN channels c ON c.id = h.channel_id";
    let rows = match scope {
        WatchScope::Product(p) => tx.rows(
            &format!(
                "{COLS} JOIN offerings o ON o.hash = c.offering_hash \
                 WHERE h.id > ?1 AND o.product_id = ?2 ORDER BY h.id LIMIT ?3"
            ),
            args![after, p, limit],
            map,
        )?,
        WatchScope::Client => tx.rows(
            &format!("{COLS} WHERE h.id > ?1 AND c.side = 'client' ORDER BY h.id LIMIT ?2"),
            args![after, limit],
            map,
        )?,
        WatchScope::All => tx.rows(
            &format!("{COLS} WHERE h.id > ?1 ORDER BY h.id LIMIT ?2"),
            args![after, limit],
            map,
        )?,
    };
    rows.into_iter()
        .map(|(id, channel_id, key, s, at_ms)| {
            Ok(ChannelStatusChange {
                cursor: u64::try_from(id).unwrap_or(0),
                channel_id,
                client_key: ClientKey(key),
                status: status("status_history.status", &s)?,
                at_ms,
            })
        })
        .collect()
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
