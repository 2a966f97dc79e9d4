//! `usage_buckets`: a channel's usage over time, one row per channel and time bucket of a
//! fixed width (what the console plots). Rows are added to, never overwritten, so writers
//! of several core instances sharing one database add up; old rows are pruned by age.

use super::codec::{from_sql_u64, to_sql_u64};
use super::db::{args, Tx};
use super::error::StoreError;

/// Bytes of one channel in one bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bucket {
    /// Start of the bucket, unix ms (a multiple of `width_ms`).
    pub start_ms: i64,
    pub width_ms: i64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Adds `bytes_in` / `bytes_out` to the channel's bucket (creating it).
pub fn add(tx: &Tx<'_>, channel_id: &str, b: &Bucket) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO usage_buckets (channel_id, start_ms, width_ms, bytes_in, bytes_out)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (channel_id, start_ms) DO UPDATE SET
             bytes_in = usage_buckets.bytes_in + excluded.bytes_in,
             bytes_out = usage_buckets.bytes_out + excluded.bytes_out",
        args![
            channel_id,
            b.start_ms,
            b.width_ms,
            to_sql_u64(b.bytes_in),
            to_sql_u64(b.bytes_out)
        ],
    )?;
    Ok(())
}

/// The channel's buckets from `since_ms` on, oldest first (at most `limit`, the newest).
pub fn of_channel(
    tx: &Tx<'_>,
    channel_id: &str,
    since_ms: i64,
    limit: u32,
) -> Result<Vec<Bucket>, StoreError> {
    let mut rows = tx.rows(
        "SELECT start_ms, width_ms, bytes_in, bytes_out FROM usage_buckets
         WHERE channel_id = ?1 AND start_ms >= ?2 ORDER BY start_ms DESC LIMIT ?3",
        args![channel_id, since_ms, i64::from(limit)],
        |r| {
            Ok(Bucket {
                start_ms: r.get(0)?,
                width_ms: r.get(1)?,
                bytes_in: from_sql_u64(r.get(2)?),
                bytes_out: from_sql_u64(r.get(3)?),
            })
        },
    )?;
    rows.reverse();
    Ok(rows)
}

/// Removes every bucket that started before `before_ms`; returns how many.
pub fn prune(tx: &Tx<'_>, before_ms: i64) -> Result<usize, StoreError> {
    tx.exec(
        "DELETE FROM usage_buckets WHERE start_ms < ?1",
        args![before_ms],
    )
}
