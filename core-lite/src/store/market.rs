//! The market's tables: `market_offerings` (offerings a client fetched), `cheques` (every
//! cheque an agent accepted) and the market columns of `channels` (the client's key, the
//! accept nonce, the best cheque; on the client side where the agent's market is).

use service_api::market::{Cheque, SignedAccess, SignedOffering};
use service_api::ServiceStatus;

use super::codec::{from_json, from_sql_u64, status, to_json, to_sql_u64};
use super::db::{args, Tx};
use super::error::StoreError;
use crate::offering::OfferingTerms;

// ------------------------------------------------------------------------- agent side

/// An agent channel created by an accept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptedChannel {
    pub id: String,
    pub client_public_key: String,
}

/// The channel an accept with this nonce created.
pub fn by_accept_nonce(tx: &Tx<'_>, nonce: &str) -> Result<Option<AcceptedChannel>, StoreError> {
    tx.opt_row(
        "SELECT id, client_public_key FROM channels WHERE side = 'agent' AND accept_nonce = ?1",
        args![nonce],
        |r| {
            Ok(AcceptedChannel {
                id: r.get(0)?,
                client_public_key: r.get(1)?,
            })
        },
    )
}

/// Binds a new agent channel to the client's key and the accept's nonce (paid: nothing).
pub fn bind_client_key(
    tx: &Tx<'_>,
    channel_id: &str,
    client_public_key: &str,
    nonce: &str,
) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE channels SET client_public_key = ?1, accept_nonce = ?2, amount_paid = 0 WHERE id = ?3",
        args![client_public_key, nonce, channel_id],
    )?;
    Ok(())
}

/// What checking a cheque needs of an agent channel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Payments {
    /// `None`: the channel was not accepted over the market.
    pub client_public_key: Option<String>,
    pub amount_paid: u64,
    pub deposit: u64,
}

pub fn payments(tx: &Tx<'_>, channel_id: &str) -> Result<Option<Payments>, StoreError> {
    // In a write, the channel is locked first: two cores taking cheques for it take turns
    // (a lower cheque never replaces a higher one).
    tx.lock(
        "SELECT id FROM channels WHERE side = 'agent' AND id = ?1",
        args![channel_id],
    )?;
    tx.opt_row(
        "SELECT client_public_key, amount_paid, deposit FROM channels WHERE side = 'agent' AND id = ?1",
        args![channel_id],
        |r| {
            Ok(Payments {
                client_public_key: r.get(0)?,
                amount_paid: from_sql_u64(r.get(1)?),
                deposit: from_sql_u64(r.get(2)?),
            })
        },
    )
}

/// The total of the best cheque of a channel (an error when the channel is unknown).
pub fn amount_paid(tx: &Tx<'_>, channel_id: &str) -> Result<u64, StoreError> {
    let paid: i64 = tx.row(
        "SELECT amount_paid FROM channels WHERE id = ?1",
        args![channel_id],
        |r| r.get(0),
    )?;
    Ok(from_sql_u64(paid))
}

/// Stores an accepted cheque as the channel's best one and in the cheque log.
pub fn record_cheque(tx: &Tx<'_>, cheque: &Cheque, now: i64) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE channels SET amount_paid = ?1, cheque = ?2 WHERE id = ?3",
        args![
            to_sql_u64(cheque.amount),
            to_json("channels.cheque", cheque)?,
            cheque.channel_id
        ],
    )?;
    tx.exec(
        "INSERT INTO cheques (channel_id, amount, signature, at_ms) VALUES (?1, ?2, ?3, ?4)",
        args![
            cheque.channel_id,
            to_sql_u64(cheque.amount),
            cheque.signature,
            now
        ],
    )?;
    Ok(())
}

/// An agent channel accepted over the market, as its client may see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketChannel {
    pub status: ServiceStatus,
    pub bytes_total: u64,
    pub deposit: u64,
    pub amount_paid: u64,
    pub offering_hash: String,
}

pub fn agent_channel(tx: &Tx<'_>, channel_id: &str) -> Result<Option<MarketChannel>, StoreError> {
    let row: Option<(String, i64, i64, i64, String)> = tx.opt_row(
        "SELECT status, bytes_total, deposit, amount_paid, offering_hash FROM channels
         WHERE side = 'agent' AND id = ?1 AND client_public_key IS NOT NULL",
        args![channel_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    row.map(|(st, bytes, deposit, paid, offering_hash)| {
        Ok(MarketChannel {
            status: status("channels.status", &st)?,
            bytes_total: from_sql_u64(bytes),
            deposit: from_sql_u64(deposit),
            amount_paid: from_sql_u64(paid),
            offering_hash,
        })
    })
    .transpose()
}

// ------------------------------------------------------------------------- client side

/// A verified offering fetched from an agent's market.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MarketOffering {
    pub hash: String,
    pub market_url: String,
    pub terms: OfferingTerms,
    /// The agent's TLS key the signed offering pins (`agentTlsSpkiSha256`).
    pub pin: Option<String>,
}

/// Stores a fetched offering (a known one gets the new URL and fetch time).
pub fn upsert_offering(
    tx: &Tx<'_>,
    market_url: &str,
    signed: &SignedOffering,
    hash: &str,
    terms: &OfferingTerms,
    now: i64,
) -> Result<(), StoreError> {
    let signed = to_json("market_offerings.signed", signed)?;
    let terms = to_json("market_offerings.terms", terms)?;
    tx.exec(
        "INSERT INTO market_offerings (hash, market_url, signed, terms, fetched_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(hash) DO UPDATE SET market_url = excluded.market_url, fetched_at_ms = excluded.fetched_at_ms",
        args![hash, market_url, signed, terms, now],
    )?;
    Ok(())
}

/// The fetched offerings, in the order they were fetched.
pub fn offerings(tx: &Tx<'_>) -> Result<Vec<MarketOffering>, StoreError> {
    type Row = (String, String, String, String);
    let rows: Vec<Row> = tx.rows(
        "SELECT hash, market_url, terms, signed FROM market_offerings ORDER BY fetched_at_ms, hash",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    rows.into_iter()
        .map(|(hash, market_url, terms, pin)| {
            Ok(MarketOffering {
                hash,
                market_url,
                terms: from_json("market_offerings.terms", &terms)?,
                pin: pin_of(&pin),
            })
        })
        .collect()
}

pub fn offering(tx: &Tx<'_>, hash: &str) -> Result<Option<MarketOffering>, StoreError> {
    let row: Option<(String, String, String)> = tx.opt_row(
        "SELECT market_url, terms, signed FROM market_offerings WHERE hash = ?1",
        args![hash],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    row.map(|(market_url, terms, pin)| {
        Ok(MarketOffering {
            hash: hash.to_string(),
            market_url,
            terms: from_json("market_offerings.terms", &terms)?,
            pin: pin_of(&pin),
        })
    })
    .transpose()
}

/// A client channel for an offering accepted over the market, `activating`.
pub struct NewAcceptedChannel<'a> {
    pub id: &'a str,
    pub offering_hash: &'a str,
    pub market_url: &'a str,
    pub deposit: u64,
    pub signed: &'a SignedAccess,
    pub created_at_ms: i64,
}

pub fn insert_accepted(tx: &Tx<'_>, c: &NewAcceptedChannel<'_>) -> Result<(), StoreError> {
    let body = to_json("channels.access_message", c.signed)?;
    tx.exec(
        "INSERT INTO channels (id, side, client_key, access_message, deposit, status, status_since_ms,
                               created_at_ms, market_url, remote_channel_id, market_offering)
         VALUES (?1, 'client', ?2, ?3, ?4, 'activating', ?5, ?5, ?6, ?7, ?8)",
        args![
            c.id,
            c.signed.access.username.0,
            body,
            to_sql_u64(c.deposit),
            c.created_at_ms,
            c.market_url,
            c.signed.channel_id,
            c.offering_hash
        ],
    )?;
    Ok(())
}

/// Pauses or resumes paying a client channel accepted over the market (by id or client
/// key); returns the number of channels changed.
pub fn set_payments_paused(
    tx: &Tx<'_>,
    id_or_key: &str,
    paused: bool,
) -> Result<usize, StoreError> {
    tx.exec(
        "UPDATE channels SET payments_paused = ?1
         WHERE side = 'client' AND market_url IS NOT NULL AND (id = ?2 OR client_key = ?2)",
        args![paused, id_or_key],
    )
}

/// A client-side channel accepted over the market, as the payer sees it.
#[derive(Clone, Debug)]
pub struct ClientMarketChannel {
    pub local_id: String,
    pub remote_id: String,
    pub market_url: String,
    pub terms: OfferingTerms,
    pub deposit: u64,
    pub bytes_total: u64,
    pub paid: u64,
    pub status: ServiceStatus,
    pub paused: bool,
    /// The agent's TLS key its signed offering pins (`agentTlsSpkiSha256`).
    pub pin: Option<String>,
}

/// The client's market channels that are not terminated.
pub fn client_channels(tx: &Tx<'_>) -> Result<Vec<ClientMarketChannel>, StoreError> {
    type Row = (
        String,
        String,
        String,
        String,
        i64,
        i64,
        i64,
        String,
        bool,
        String,
    );
    let rows: Vec<Row> = tx.rows(
        "SELECT ch.id, ch.remote_channel_id, ch.market_url, m.terms, ch.deposit, ch.bytes_total,
                ch.amount_paid, ch.status, ch.payments_paused,
                m.signed
         FROM channels ch JOIN market_offerings m ON m.hash = ch.market_offering
         WHERE ch.side = 'client' AND ch.status != 'terminated'",
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
            ))
        },
    )?;
    rows.into_iter()
        .map(
            |(local_id, remote_id, market_url, terms, dep, bytes, paid, st, paused, pin)| {
                Ok(ClientMarketChannel {
                    local_id,
                    remote_id,
                    market_url,
                    terms: from_json("market_offerings.terms", &terms)?,
                    deposit: from_sql_u64(dep),
                    bytes_total: from_sql_u64(bytes),
                    paid: from_sql_u64(paid),
                    status: status("channels.status", &st)?,
                    paused,
                    pin: pin_of(&pin),
                })
            },
        )
        .collect()
}

/// A client channel's status and the total the agent acknowledged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientPayments {
    pub status: ServiceStatus,
    pub amount_paid: u64,
}

/// (An error when the channel is unknown.)
pub fn client_payments(tx: &Tx<'_>, channel_id: &str) -> Result<ClientPayments, StoreError> {
    let (st, paid): (String, i64) = tx.row(
        "SELECT status, amount_paid FROM channels WHERE id = ?1",
        args![channel_id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(ClientPayments {
        status: status("channels.status", &st)?,
        amount_paid: from_sql_u64(paid),
    })
}

/// Records the total the agent acknowledged and the cheque that paid it, if sent now.
pub fn set_client_paid(
    tx: &Tx<'_>,
    channel_id: &str,
    amount_paid: u64,
    cheque: Option<&Cheque>,
) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE channels SET amount_paid = ?1, cheque = ?2 WHERE id = ?3",
        args![
            to_sql_u64(amount_paid),
            cheque.and_then(|c| serde_json::to_string(c).ok()),
            channel_id
        ],
    )?;
    Ok(())
}

/// The agent's TLS key a stored signed offering pins (`offering.agentTlsSpkiSha256`), read
/// in Rust: the same on SQLite and PostgreSQL.
fn pin_of(signed: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(signed)
        .ok()?
        .pointer("/offering/agentTlsSpkiSha256")?
        .as_str()
        .map(str::to_string)
}
