//! The client's channels as its owner lists them (ListChannels): every `side = 'client'`
//! channel with its usage, status, the best cheque the agent acknowledged, its open session
//! and, for a channel accepted over the market, the fetched offering's terms.

use super::codec::{from_json, from_sql_u64, status};
use super::db::{args, Tx};
use super::error::StoreError;
use crate::offering::OfferingTerms;
use service_api::ServiceStatus;

/// One client channel (see the module doc).
#[derive(Clone, Debug)]
pub struct BuyerChannel {
    pub id: String,
    pub client_key: String,
    pub status: ServiceStatus,
    pub status_since_ms: i64,
    pub created_at_ms: i64,
    pub deposit: u64,
    pub bytes_total: u64,
    pub amount_paid: u64,
    pub payments_paused: bool,
    pub open_session: Option<String>,
    /// (offering hash, market URL, terms) of a channel accepted over the market.
    pub offering: Option<(String, String, OfferingTerms)>,
}

/// Every client channel, oldest first.
pub fn channels(tx: &Tx<'_>) -> Result<Vec<BuyerChannel>, StoreError> {
    type Row = (
        String,
        String,
        String,
        i64,
        i64,
        i64,
        i64,
        i64,
        bool,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = tx.rows(
        "SELECT ch.id, ch.client_key, ch.status, ch.status_since_ms, ch.created_at_ms,
                ch.deposit, ch.bytes_total, ch.amount_paid, ch.payments_paused,
                (SELECT s.id FROM sessions s WHERE s.channel_id = ch.id AND s.stopped_at_ms IS NULL),
                ch.market_offering, ch.market_url, m.terms
         FROM channels ch LEFT JOIN market_offerings m ON m.hash = ch.market_offering
         WHERE ch.side = 'client'
         ORDER BY ch.created_at_ms, ch.id",
        args![],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
                r.get(7)?,
                r.get(8)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(12)?,
            ))
        },
    )?;
    rows.into_iter()
        .map(
            |(id, key, st, since, created, dep, bytes, paid, paused, open, hash, url, terms)| {
                let offering = match (hash, url, terms) {
                    (Some(h), Some(u), Some(t)) => {
                        Some((h, u, from_json("market_offerings.terms", &t)?))
                    }
                    _ => None,
                };
                Ok(BuyerChannel {
                    id,
                    client_key: key,
                    status: status("channels.status", &st)?,
                    status_since_ms: since,
                    created_at_ms: created,
                    deposit: from_sql_u64(dep),
                    bytes_total: from_sql_u64(bytes),
                    amount_paid: from_sql_u64(paid),
                    payments_paused: paused,
                    open_session: open,
                    offering,
                })
            },
        )
        .collect()
}
