//! Read-only summaries for the operator: the numbers behind the core's metrics (channels by
//! status, open sessions, status changes and cheques counted incrementally) and a channel's
//! sessions for the console. Every query here is an aggregate over an index or a scan of
//! `channels`, and never returns a client key to the metrics.

use super::channels::Side;
use super::codec::from_sql_u64;
use super::db::{args, Tx};
use super::error::StoreError;

/// Channels of one side in one status.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusCount {
    pub side: Side,
    /// The stored status name (the wire name).
    pub status: String,
    pub channels: u64,
    /// Sum of the channels' byte totals (a float: the sum of many i64 may not fit one).
    pub bytes: f64,
    /// Sum of the channels' best cheques, base units (received on the agent side, paid on
    /// the client side).
    pub paid: f64,
}

/// A row of [`channels_by_status`]: side, status, count, bytes, paid.
type StatusRow = (String, String, i64, Option<f64>, Option<f64>);

/// Channels grouped by side and status, with their bytes and payments.
pub fn channels_by_status(tx: &Tx<'_>) -> Result<Vec<StatusCount>, StoreError> {
    let rows: Vec<StatusRow> = tx.rows(
        "SELECT side, status, count(*),
                sum(CAST(bytes_total AS DOUBLE PRECISION)),
                sum(CAST(amount_paid AS DOUBLE PRECISION))
         FROM channels GROUP BY side, status",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    rows.into_iter()
        .map(|(side, status, n, bytes, paid)| {
            Ok(StatusCount {
                side: Side::parse(&side)?,
                status,
                channels: from_sql_u64(n),
                bytes: bytes.unwrap_or(0.0),
                paid: paid.unwrap_or(0.0),
            })
        })
        .collect()
}

/// Open sessions by side.
pub fn open_sessions(tx: &Tx<'_>) -> Result<Vec<(Side, u64)>, StoreError> {
    let rows: Vec<(String, i64)> = tx.rows(
        "SELECT c.side, count(*) FROM sessions s JOIN channels c ON c.id = s.channel_id
         WHERE s.stopped_at_ms IS NULL GROUP BY c.side",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    rows.into_iter()
        .map(|(side, n)| Ok((Side::parse(&side)?, from_sql_u64(n))))
        .collect()
}

/// Status changes recorded after row `after_id`: (status name, count) and the highest id
/// seen (`after_id` when there are none). Counting from the last id seen keeps a scrape
/// cheap however long the history is.
pub fn status_changes_since(
    tx: &Tx<'_>,
    after_id: i64,
) -> Result<(Vec<(String, u64)>, i64), StoreError> {
    let rows: Vec<(String, i64, i64)> = tx.rows(
        "SELECT status, count(*), max(id) FROM status_history WHERE id > ?1 GROUP BY status",
        args![after_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let last = rows
        .iter()
        .map(|r| r.2)
        .max()
        .unwrap_or(after_id)
        .max(after_id);
    Ok((
        rows.into_iter()
            .map(|(s, n, _)| (s, from_sql_u64(n)))
            .collect(),
        last,
    ))
}

/// Cheques recorded after row `after_id`, by the side of their channel, and the highest id
/// seen.
pub fn cheques_since(tx: &Tx<'_>, after_id: i64) -> Result<(Vec<(Side, u64)>, i64), StoreError> {
    let rows: Vec<(String, i64, i64)> = tx.rows(
        "SELECT c.side, count(*), max(q.id) FROM cheques q JOIN channels c ON c.id = q.channel_id
         WHERE q.id > ?1 GROUP BY c.side",
        args![after_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let last = rows
        .iter()
        .map(|r| r.2)
        .max()
        .unwrap_or(after_id)
        .max(after_id);
    let counts = rows
        .into_iter()
        .map(|(side, n, _)| Ok((Side::parse(&side)?, from_sql_u64(n))))
        .collect::<Result<_, StoreError>>()?;
    Ok((counts, last))
}

/// One session of a channel, as the console shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub connection_id: Option<String>,
    pub client_addr: Option<String>,
    pub vpn_addr: Option<String>,
    pub started_at_ms: i64,
    pub stopped_at_ms: Option<i64>,
    pub updated_at_ms: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The channel's newest sessions (at most `limit`), newest first.
pub fn sessions_of_channel(
    tx: &Tx<'_>,
    channel_id: &str,
    limit: u32,
) -> Result<Vec<SessionRow>, StoreError> {
    tx.rows(
        "SELECT id, connection_id, client_addr, vpn_addr, started_at_ms, stopped_at_ms,
                updated_at_ms, bytes_in, bytes_out
         FROM sessions WHERE channel_id = ?1 ORDER BY started_at_ms DESC, id LIMIT ?2",
        args![channel_id, i64::from(limit)],
        |r| {
            Ok(SessionRow {
                id: r.get(0)?,
                connection_id: r.get(1)?,
                client_addr: r.get(2)?,
                vpn_addr: r.get(3)?,
                started_at_ms: r.get(4)?,
                stopped_at_ms: r.get(5)?,
                updated_at_ms: r.get(6)?,
                bytes_in: from_sql_u64(r.get(7)?),
                bytes_out: from_sql_u64(r.get(8)?),
            })
        },
    )
}
