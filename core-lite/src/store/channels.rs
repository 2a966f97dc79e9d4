//! `channels`: on the agent side one sale under an offering (client key, password hash,
//! deposit, usage, status); on the client side one signed access message (imported, or
//! received when accepting over the market). The market's columns are in [`super::market`].

use std::collections::BTreeMap;

use service_api::market::SignedAccess;
use service_api::ServiceStatus;

use super::codec::{from_json, from_sql_u64, status, to_json, to_sql_u64};
use super::db::{args, Tx};
use super::error::StoreError;
use crate::billing::BillingTerms;

/// Which core a channel belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// A sale: the agent's channel.
    Agent,
    /// A purchase: the client's copy with its access message.
    Client,
}

impl Side {
    pub(super) fn parse(s: &str) -> Result<Side, StoreError> {
        match s {
            "agent" => Ok(Side::Agent),
            "client" => Ok(Side::Client),
            other => Err(StoreError::BadValue {
                what: "channels.side",
                reason: format!("unknown side {other:?}"),
            }),
        }
    }
}

/// How an agent channel is looked up.
#[derive(Clone, Copy, Debug)]
pub enum AgentKey<'a> {
    Id(&'a str),
    ClientKey(&'a str),
}

/// An agent channel with the billing terms of its offering.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentChannel {
    pub id: String,
    pub product_id: String,
    pub status: ServiceStatus,
    pub status_since_ms: i64,
    pub created_at_ms: i64,
    /// When the current run of `suspending`/`suspended` began (from the status history);
    /// `None` when the channel is in neither.
    pub suspended_since_ms: Option<i64>,
    pub bytes_total: u64,
    pub deposit: u64,
    pub password_hash: String,
    pub terms: BillingTerms,
    /// The offering's `additionalParams`; `None` when the stored text does not parse.
    pub additional_params: Option<BTreeMap<String, String>>,
    /// Best cheque, for channels paid by cheques (accepted over the market).
    pub amount_paid: Option<u64>,
    pub has_open_session: bool,
    /// Whether any session was ever started on the channel.
    pub had_session: bool,
}

/// The agent channel, when it exists and (with `product`) belongs to that product.
pub fn agent(
    tx: &Tx<'_>,
    key: AgentKey<'_>,
    product: Option<&str>,
) -> Result<Option<AgentChannel>, StoreError> {
    const SELECT: &str = "SELECT ch.id, o.product_id, ch.status, ch.status_since_ms, ch.bytes_total, ch.deposit,
                ch.password_hash, o.additional_params,
                o.unit_price, o.setup_price, o.min_units, o.max_units, o.free_units,
                o.max_billing_unit_lag, o.billing_interval, o.max_suspend_time_s,
                o.max_inactive_time_s, ch.client_public_key IS NOT NULL, ch.amount_paid,
                EXISTS (SELECT 1 FROM sessions s WHERE s.channel_id = ch.id AND s.stopped_at_ms IS NULL),
                EXISTS (SELECT 1 FROM sessions s WHERE s.channel_id = ch.id),
                ch.created_at_ms,
                (SELECT min(h.at_ms) FROM status_history h
                 WHERE h.channel_id = ch.id AND h.status IN ('suspending', 'suspended')
                   AND h.id > (SELECT coalesce(max(h2.id), 0) FROM status_history h2
                               WHERE h2.channel_id = ch.id
                                 AND h2.status NOT IN ('suspending', 'suspended')))
         FROM channels ch JOIN offerings o ON o.hash = ch.offering_hash
         WHERE ch.side = 'agent' AND ";
    let (cond, arg) = match key {
        AgentKey::Id(id) => ("ch.id = ?1", id),
        AgentKey::ClientKey(k) => ("ch.client_key = ?1", k),
    };
    // In a write, the channel row is locked first: what is read below is then the latest.
    tx.lock(
        &format!("SELECT ch.id FROM channels ch WHERE ch.side = 'agent' AND {cond}"),
        args![arg],
    )?;
    let row = tx.opt_row(&format!("{SELECT}{cond}"), args![arg], |r| {
        let u = |i| r.get::<_, i64>(i).map(from_sql_u64);
        let by_cheque: bool = r.get(17)?;
        let paid = u(18)?;
        Ok((
            AgentChannel {
                id: r.get(0)?,
                product_id: r.get(1)?,
                // Parsed below, after the product check.
                status: ServiceStatus::Pending,
                status_since_ms: r.get(3)?,
                created_at_ms: r.get(21)?,
                suspended_since_ms: r.get(22)?,
                bytes_total: u(4)?,
                deposit: u(5)?,
                password_hash: r.get(6)?,
                additional_params: serde_json::from_str(&r.get::<_, String>(7)?).ok(),
                terms: BillingTerms {
                    unit_price: u(8)?,
                    setup_price: u(9)?,
                    min_units: u(10)?,
                    max_units: u(11)?,
                    free_units: u(12)?,
                    max_billing_unit_lag: u(13)?,
                    billing_interval: u(14)?,
                    max_suspend_time_s: u(15)?,
                    max_inactive_time_s: u(16)?,
                },
                // Channels accepted over the market are paid by cheques: the lag rule applies.
                amount_paid: by_cheque.then_some(paid),
                has_open_session: r.get(19)?,
                had_session: r.get(20)?,
            },
            r.get::<_, String>(2)?,
        ))
    })?;
    let Some((mut ch, st)) = row else {
        return Ok(None);
    };
    if product.is_some_and(|p| p != ch.product_id) {
        return Ok(None);
    }
    ch.status = status("channels.status", &st)?;
    Ok(Some(ch))
}

/// A new agent channel, `pending` (the caller records that and moves it on).
pub struct NewAgentChannel<'a> {
    pub id: &'a str,
    pub offering_hash: &'a str,
    pub client_key: &'a str,
    pub password_hash: &'a str,
    pub deposit: u64,
    pub created_at_ms: i64,
}

pub fn insert_agent(tx: &Tx<'_>, c: &NewAgentChannel<'_>) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO channels (id, side, offering_hash, client_key, password_hash, deposit, status, status_since_ms, created_at_ms)
         VALUES (?1, 'agent', ?2, ?3, ?4, ?5, 'pending', ?6, ?6)",
        args![
            c.id,
            c.offering_hash,
            c.client_key,
            c.password_hash,
            to_sql_u64(c.deposit),
            c.created_at_ms
        ],
    )?;
    Ok(())
}

/// Channels of an offering that are not terminated (what its supply bounds).
pub fn count_not_terminated(tx: &Tx<'_>, offering_hash: &str) -> Result<u64, StoreError> {
    let n: i64 = tx.row(
        "SELECT count(*) FROM channels WHERE offering_hash = ?1 AND status NOT IN ('terminated')",
        args![offering_hash],
        |r| r.get(0),
    )?;
    Ok(from_sql_u64(n))
}

/// Sets a channel's status, entered `now` (the caller records it in the history).
pub fn set_status(
    tx: &Tx<'_>,
    channel_id: &str,
    status: ServiceStatus,
    now: i64,
) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE channels SET status = ?1, status_since_ms = ?2 WHERE id = ?3",
        args![status.as_str(), now, channel_id],
    )?;
    Ok(())
}

/// Adds usage to a channel's byte total.
pub fn add_bytes(tx: &Tx<'_>, channel_id: &str, delta: u64) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE channels SET bytes_total = bytes_total + ?1 WHERE id = ?2",
        args![to_sql_u64(delta), channel_id],
    )?;
    Ok(())
}

/// A channel of either side as `channel show` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelRow {
    pub id: String,
    pub client_key: String,
    /// `None` on the client side.
    pub offering_hash: Option<String>,
    pub status: ServiceStatus,
    pub deposit: u64,
    pub bytes_total: u64,
}

/// The channel with this id or client key, the agent's first.
pub fn by_id_or_key(tx: &Tx<'_>, id_or_key: &str) -> Result<Option<ChannelRow>, StoreError> {
    let row: Option<(String, String, Option<String>, String, i64, i64)> = tx.opt_row(
        "SELECT id, client_key, offering_hash, status, deposit, bytes_total FROM channels
         WHERE id = ?1 OR client_key = ?1 ORDER BY side = 'agent' DESC LIMIT 1",
        args![id_or_key],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        },
    )?;
    row.map(|(id, client_key, offering_hash, st, deposit, bytes)| {
        Ok(ChannelRow {
            id,
            client_key,
            offering_hash,
            status: status("channels.status", &st)?,
            deposit: from_sql_u64(deposit),
            bytes_total: from_sql_u64(bytes),
        })
    })
    .transpose()
}

/// Every channel id, oldest first.
pub fn ids(tx: &Tx<'_>) -> Result<Vec<String>, StoreError> {
    tx.rows(
        "SELECT id FROM channels ORDER BY created_at_ms, id",
        args![],
        |r| r.get(0),
    )
}

/// A channel's id and status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChannelStatusRow {
    pub id: String,
    pub status: ServiceStatus,
}

/// Agent channels in a status that a timer can end (activating, suspending, suspended,
/// terminating).
pub fn agent_with_timers(tx: &Tx<'_>) -> Result<Vec<ChannelStatusRow>, StoreError> {
    let rows: Vec<(String, String)> = tx.rows(
        "SELECT id, status FROM channels WHERE side = 'agent'
         AND status IN ('activating', 'suspending', 'suspended', 'terminating')",
        args![],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    rows.into_iter()
        .map(|(id, st)| {
            Ok(ChannelStatusRow {
                id,
                status: status("channels.status", &st)?,
            })
        })
        .collect()
}

/// What an agent channel's access message is made of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessSource {
    pub channel_id: String,
    pub client_key: String,
    pub product_id: String,
    pub offering_hash: String,
    /// The offering's `additionalParams`.
    pub offering_params: BTreeMap<String, String>,
}

/// The agent channel with this id or client key, for its access message.
pub fn access_source(tx: &Tx<'_>, id_or_key: &str) -> Result<Option<AccessSource>, StoreError> {
    let row: Option<(String, String, String, String, String)> = tx.opt_row(
        "SELECT ch.id, ch.client_key, o.product_id, o.hash, o.additional_params
         FROM channels ch JOIN offerings o ON o.hash = ch.offering_hash
         WHERE ch.side = 'agent' AND (ch.id = ?1 OR ch.client_key = ?1)",
        args![id_or_key],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    row.map(
        |(channel_id, client_key, product_id, offering_hash, params)| {
            Ok(AccessSource {
                channel_id,
                client_key,
                product_id,
                offering_hash,
                offering_params: from_json("offerings.additional_params", &params)?,
            })
        },
    )
    .transpose()
}

// ------------------------------------------------------------------------- client side
//
// A client channel's `access_message` holds the agent's signed access message
// ([`SignedAccess`], with the signed offering it was sold under), exactly as it was checked
// when it was imported or received. Rows written before access messages were signed hold a
// bare message: [`StoredAccess::Unsigned`], never served.

/// The access message a client channel stores.
#[derive(Clone, Debug, PartialEq)]
pub enum StoredAccess {
    Signed(Box<SignedAccess>),
    /// Not a signed access message (stored by an older version, or unreadable).
    Unsigned,
}

impl StoredAccess {
    fn parse(text: &str) -> StoredAccess {
        match serde_json::from_str::<SignedAccess>(text) {
            Ok(s) => StoredAccess::Signed(Box::new(s)),
            Err(_) => StoredAccess::Unsigned,
        }
    }
}

/// A client channel as a session sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ClientChannel {
    pub id: String,
    pub status: ServiceStatus,
    pub access: StoredAccess,
}

pub fn client_by_key(tx: &Tx<'_>, client_key: &str) -> Result<Option<ClientChannel>, StoreError> {
    let row: Option<(String, String, String)> = tx.opt_row(
        "SELECT id, status, access_message FROM channels WHERE side = 'client' AND client_key = ?1",
        args![client_key],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    row.map(|(id, st, msg)| {
        Ok(ClientChannel {
            id,
            status: status("channels.status", &st)?,
            access: StoredAccess::parse(&msg),
        })
    })
    .transpose()
}

pub fn client_id_by_key(tx: &Tx<'_>, client_key: &str) -> Result<Option<String>, StoreError> {
    tx.opt_row(
        "SELECT id FROM channels WHERE side = 'client' AND client_key = ?1",
        args![client_key],
        |r| r.get(0),
    )
}

/// The signed access message stored for a client key.
pub fn client_access(tx: &Tx<'_>, client_key: &str) -> Result<Option<StoredAccess>, StoreError> {
    let body: Option<String> = tx.opt_row(
        "SELECT access_message FROM channels WHERE side = 'client' AND client_key = ?1",
        args![client_key],
        |r| r.get(0),
    )?;
    Ok(body.map(|b| StoredAccess::parse(&b)))
}

/// Replaces the signed access message of a client channel.
pub fn set_access(tx: &Tx<'_>, channel_id: &str, signed: &SignedAccess) -> Result<(), StoreError> {
    let body = to_json("channels.access_message", signed)?;
    tx.exec(
        "UPDATE channels SET access_message = ?1 WHERE id = ?2",
        args![body, channel_id],
    )?;
    Ok(())
}

/// A new client channel for an imported signed access message, `activating`.
pub fn insert_client(
    tx: &Tx<'_>,
    id: &str,
    signed: &SignedAccess,
    now: i64,
) -> Result<(), StoreError> {
    let body = to_json("channels.access_message", signed)?;
    tx.exec(
        "INSERT INTO channels (id, side, client_key, access_message, status, status_since_ms, created_at_ms)
         VALUES (?1, 'client', ?2, ?3, 'activating', ?4, ?4)",
        args![id, signed.access.username.0, body, now],
    )?;
    Ok(())
}
