//! `sessions`: one connection's usage on a channel, counted cumulatively; at most one open
//! session per channel.

use service_api::ServiceStatus;

use super::channels::Side;
use super::codec::{from_sql_u64, status, to_sql_u64};
use super::db::{args, Tx};
use super::error::StoreError;
use crate::billing::BillingTerms;

/// A session's counters with what a usage report needs of its channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionUsage {
    pub channel_id: String,
    pub side: Side,
    /// The product of the channel's offering (agent side).
    pub product_id: Option<String>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub stopped: bool,
    pub channel_status: ServiceStatus,
    pub channel_bytes: u64,
    pub channel_deposit: u64,
    /// The billing terms of the channel's offering (agent side).
    pub terms: Option<BillingTerms>,
}

pub fn usage(tx: &Tx<'_>, session_id: &str) -> Result<Option<SessionUsage>, StoreError> {
    // In a write, the session's channel is locked first (as every write to a channel does):
    // the counters read below are then the latest, and two cores add usage in turn.
    tx.lock(
        "SELECT id FROM channels WHERE id = (SELECT channel_id FROM sessions WHERE id = ?1)",
        args![session_id],
    )?;
    let row = tx.opt_row(
        "SELECT s.channel_id, c.side, o.product_id, s.bytes_in, s.bytes_out, s.stopped_at_ms,
                c.status, c.bytes_total, c.deposit,
                o.unit_price, o.setup_price, o.min_units, o.max_units, o.free_units,
                o.max_billing_unit_lag, o.billing_interval, o.max_suspend_time_s,
                o.max_inactive_time_s
         FROM sessions s JOIN channels c ON c.id = s.channel_id
         LEFT JOIN offerings o ON o.hash = c.offering_hash
         WHERE s.id = ?1",
        args![session_id],
        |r| {
            let u = |i| r.get::<_, i64>(i).map(from_sql_u64);
            let ou = |i| r.get::<_, Option<i64>>(i).map(|v| v.map(from_sql_u64));
            let terms = match (ou(9)?, ou(10)?, ou(11)?, ou(12)?, ou(13)?) {
                (
                    Some(unit_price),
                    Some(setup_price),
                    Some(min_units),
                    Some(max_units),
                    Some(free_units),
                ) => Some(BillingTerms {
                    unit_price,
                    setup_price,
                    min_units,
                    max_units,
                    free_units,
                    max_billing_unit_lag: ou(14)?.unwrap_or(0),
                    billing_interval: ou(15)?.unwrap_or(0),
                    max_suspend_time_s: ou(16)?.unwrap_or(0),
                    max_inactive_time_s: ou(17)?.unwrap_or(0),
                }),
                _ => None,
            };
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<String>>(2)?,
                u(3)?,
                u(4)?,
                r.get::<_, Option<i64>>(5)?.is_some(),
                r.get::<_, String>(6)?,
                u(7)?,
                u(8)?,
                terms,
            ))
        },
    )?;
    row.map(
        |(
            channel_id,
            side,
            product_id,
            bytes_in,
            bytes_out,
            stopped,
            st,
            total,
            deposit,
            terms,
        )| {
            Ok(SessionUsage {
                channel_id,
                side: Side::parse(&side)?,
                product_id,
                bytes_in,
                bytes_out,
                stopped,
                channel_status: status("channels.status", &st)?,
                channel_bytes: total,
                channel_deposit: deposit,
                terms,
            })
        },
    )
    .transpose()
}

/// Sets a session's counters (updated `now`); `stop` also closes it `now`.
pub fn set_counts(
    tx: &Tx<'_>,
    session_id: &str,
    bytes_in: u64,
    bytes_out: u64,
    now: i64,
    stop: bool,
) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE sessions SET bytes_in = ?1, bytes_out = ?2, updated_at_ms = ?3,
                stopped_at_ms = CASE WHEN ?4 THEN ?3 ELSE stopped_at_ms END
         WHERE id = ?5",
        args![
            to_sql_u64(bytes_in),
            to_sql_u64(bytes_out),
            now,
            stop,
            session_id
        ],
    )?;
    Ok(())
}

/// A session and its counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownSession {
    pub id: String,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The newest session of a channel opened for this connection id, open or stopped.
pub fn by_connection(
    tx: &Tx<'_>,
    channel_id: &str,
    connection_id: &str,
) -> Result<Option<KnownSession>, StoreError> {
    tx.opt_row(
        "SELECT id, bytes_in, bytes_out FROM sessions WHERE channel_id = ?1 AND connection_id = ?2
         ORDER BY started_at_ms DESC LIMIT 1",
        args![channel_id, connection_id],
        |r| {
            Ok(KnownSession {
                id: r.get(0)?,
                bytes_in: from_sql_u64(r.get(1)?),
                bytes_out: from_sql_u64(r.get(2)?),
            })
        },
    )
}

/// The id of the channel's open session.
pub fn open_id(tx: &Tx<'_>, channel_id: &str) -> Result<Option<String>, StoreError> {
    tx.opt_row(
        "SELECT id FROM sessions WHERE channel_id = ?1 AND stopped_at_ms IS NULL",
        args![channel_id],
        |r| r.get(0),
    )
}

/// Closes a session with its last counts.
pub fn close(tx: &Tx<'_>, session_id: &str, now: i64) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE sessions SET stopped_at_ms = ?1 WHERE id = ?2",
        args![now, session_id],
    )?;
    Ok(())
}

/// A session to open.
pub struct NewSession<'a> {
    pub id: &'a str,
    pub channel_id: &'a str,
    pub connection_id: Option<&'a str>,
    pub client_addr: Option<&'a str>,
    pub vpn_addr: Option<&'a str>,
    pub started_at_ms: i64,
}

pub fn insert(tx: &Tx<'_>, s: &NewSession<'_>) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO sessions (id, channel_id, connection_id, client_addr, vpn_addr, started_at_ms, updated_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
        args![
            s.id,
            s.channel_id,
            s.connection_id,
            s.client_addr,
            s.vpn_addr,
            s.started_at_ms
        ],
    )?;
    Ok(())
}
