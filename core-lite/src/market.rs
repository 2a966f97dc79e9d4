//! The market protocol between an agent's core and a client's core (issue 6):
//! offerings fetched over the network, accepted with a deposit and the client's ed25519 key,
//! access messages signed by the agent, and cumulative payment cheques signed by the client.
//!
//! Agent side (`serve --role agent --market-listen ADDR`):
//! - `GET  /market/v1/offerings` → [`OfferingList`] (offerings with supply left)
//! - `POST /market/v1/accept` [`AcceptRequest`] → [`SignedAccess`]
//! - `POST /market/v1/cheque` [`Cheque`] → [`ChequeReceipt`]
//! - `GET  /market/v1/channels/{channelId}` → [`ChannelStatus`]
//!
//! Every signed object is signed over the SHA-256 of the JCS form of the object *without*
//! its `signature` field and *with* a `"type"` member naming what it is, so a signature of
//! one kind of message can never pass for another.
//!
//! Client side (`serve --role client`): [`run_payer`] signs a cheque every `billingInterval`
//! units of the client's own measured usage, sends it, and mirrors the agent's status into
//! the client's channel, so the client adapter learns of a suspension from its own core.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rusqlite::{params, Connection};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::billing::{self, BillingTerms};
use crate::db::{from_sql_u64, opt, to_sql_u64, Cached, DbError};
use crate::keys;
use crate::offering::{self, BillingType, OfferingTerms};
use crate::service::{now_ms, Core, CoreError, Result};
use crate::template;
use service_api::market::SignedOffering;
use service_api::{ErrorBody, ServiceStatus};

pub use service_api::market::{
    paths, AcceptRequest, ChannelStatus, Cheque, ChequeReceipt, OfferingList, SignedAccess,
};

/// Default tolerance (percent) for the agent counting more bytes than the client (tunnel
/// overhead) before the client refuses to pay.
pub const DEFAULT_TOLERANCE_PCT: u64 = 10;

fn signing_bytes(kind: &str, v: &Value) -> Result<[u8; 32]> {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("signature");
        o.insert("type".into(), json!(kind));
    }
    template::sha256_jcs(&v).map_err(|e| CoreError::Internal(format!("canonical JSON: {e}")))
}

fn to_value<T: Serialize>(t: &T) -> Result<Value> {
    serde_json::to_value(t).map_err(|e| CoreError::Internal(e.to_string()))
}

fn check_sig(kind: &str, what: &Value, key_b64: &str, sig: &str) -> Result<()> {
    let msg = signing_bytes(kind, what)?;
    keys::verify_signature(key_b64, &msg, sig)
        .map_err(|e| CoreError::Forbidden(format!("{kind}: signature rejected: {e}")))
}

/// An accept request signed with the client's key (proof that it holds the key).
pub fn signed_accept(
    keys: &keys::AgentKeys,
    offering_hash: &str,
    deposit: u64,
    nonce: &str,
) -> Result<AcceptRequest> {
    let mut r = AcceptRequest {
        offering_hash: offering_hash.into(),
        deposit,
        client_public_key: keys.public_key_b64(),
        nonce: nonce.into(),
        signature: String::new(),
    };
    r.signature = keys.sign(&signing_bytes("accept", &to_value(&r)?)?);
    Ok(r)
}

/// A cheque for the cumulative `amount`, signed with the channel's client key.
pub fn signed_cheque(keys: &keys::AgentKeys, channel_id: &str, amount: u64) -> Result<Cheque> {
    let mut c = Cheque {
        channel_id: channel_id.into(),
        amount,
        signature: String::new(),
    };
    c.signature = keys.sign(&signing_bytes("cheque", &to_value(&c)?)?);
    Ok(c)
}

/// Checks the agent's signature of a signed access message.
pub fn verify_access(signed: &SignedAccess, agent_public_key: &str) -> Result<()> {
    check_sig(
        "access",
        &to_value(signed)?,
        agent_public_key,
        &signed.signature,
    )
}

fn json_col<T: for<'de> Deserialize<'de>>(what: &'static str, s: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|source| CoreError::Db(DbError::Json { what, source }))
}

fn terms_to_billing(t: &OfferingTerms) -> BillingTerms {
    BillingTerms {
        unit_price: t.unit_price,
        setup_price: t.setup_price,
        min_units: t.min_units,
        max_units: t.max_units,
        free_units: t.free_units,
        max_billing_unit_lag: t.max_billing_unit_lag,
        billing_interval: t.billing_interval,
        max_suspend_time_s: t.max_suspend_time_s,
        max_inactive_time_s: t.max_inactive_time_s,
    }
}

/// A fetched offering as the client shows it.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchedOffering {
    pub offering_hash: String,
    pub market_url: String,
    pub country: String,
    pub unit_name: String,
    /// Base units per unit.
    pub unit_price: u64,
    pub setup_price: u64,
    pub min_units: u64,
    pub max_units: u64,
    pub billing_type: String,
    pub billing_interval: u64,
    pub min_deposit: u64,
    pub max_download_mbps: Option<String>,
    pub max_upload_mbps: Option<String>,
}

impl FetchedOffering {
    fn new(hash: &str, url: &str, t: &OfferingTerms) -> FetchedOffering {
        FetchedOffering {
            offering_hash: hash.into(),
            market_url: url.into(),
            country: t.country.clone(),
            unit_name: t.unit_name.clone(),
            unit_price: t.unit_price,
            setup_price: t.setup_price,
            min_units: t.min_units,
            max_units: t.max_units,
            billing_type: t.billing_type.as_str().into(),
            billing_interval: t.billing_interval,
            min_deposit: t.min_deposit().unwrap_or(u64::MAX),
            max_download_mbps: t.additional_params.get("maxDownloadSpeed").cloned(),
            max_upload_mbps: t.additional_params.get("maxUploadSpeed").cloned(),
        }
    }
}

/// What the client's payer decided for one channel (for logs and tests).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PayDecision {
    Nothing,
    Pay(u64),
    /// The agent wants `due` but the client's own measure allows only `allowed`.
    Refuse {
        due: u64,
        allowed: u64,
    },
}

/// The client's rule: how much to have paid in total, given its own measured bytes, the
/// agent's view (`agent_due` when the agent reports a lag), and what is paid already.
pub fn client_payment(
    terms: &OfferingTerms,
    deposit: u64,
    own_bytes: u64,
    paid: u64,
    agent_due: Option<u64>,
    tolerance_pct: u64,
) -> PayDecision {
    let b = terms_to_billing(terms);
    let own_units = billing::units_used(own_bytes);
    let billable = own_units.saturating_sub(terms.free_units);
    let interval = terms.billing_interval.max(1);
    let target_billable = match terms.billing_type {
        // Pay one interval ahead.
        BillingType::Prepaid => (billable / interval + 1).saturating_mul(interval),
        // Pay for whole intervals used.
        BillingType::Postpaid => (billable / interval).saturating_mul(interval),
    };
    let target_units = target_billable
        .saturating_add(terms.free_units)
        .min(terms.max_units);
    let mut target = if target_billable == 0 && terms.billing_type == BillingType::Postpaid {
        0
    } else {
        billing::amount_for_units(&b, target_units, deposit)
    };
    let mut refused = None;
    if let Some(due) = agent_due {
        // The agent counts tunnel overhead the client does not see: honour its count up to
        // the tolerance, never beyond.
        let allowed_units = own_units
            .saturating_add(own_units.saturating_mul(tolerance_pct) / 100)
            .saturating_add(1);
        let allowed = billing::amount_for_units(&b, allowed_units, deposit);
        if due > allowed {
            refused = Some((due, allowed));
            target = target.max(allowed);
        } else {
            target = target.max(due);
        }
    }
    if target > paid {
        return PayDecision::Pay(target);
    }
    match refused {
        Some((due, allowed)) if due > paid => PayDecision::Refuse { due, allowed },
        _ => PayDecision::Nothing,
    }
}

// ------------------------------------------------------------------------- agent side

impl Core {
    /// Offerings with supply left, for the market.
    pub fn market_offerings(&self) -> Result<OfferingList> {
        let rows: Vec<String> = self.db.read(|c| {
            let mut st = c.prepare(
                "SELECT o.signed FROM offerings o
                 WHERE o.supply > (SELECT count(*) FROM channels ch
                                   WHERE ch.offering_hash = o.hash AND ch.status != 'terminated')
                 ORDER BY o.created_at_ms, o.hash",
            )?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok::<_, CoreError>(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })?;
        let offerings = rows
            .iter()
            .map(|s| json_col("offerings.signed", s))
            .collect::<Result<Vec<SignedOffering>>>()?;
        Ok(OfferingList { offerings })
    }

    /// Agent: a client accepts an offering. Creates the channel (supply, minimum deposit)
    /// bound to the client's key and answers the access message signed by the agent.
    pub fn market_accept(&self, req: &AcceptRequest) -> Result<SignedAccess> {
        if !template::is_hash_hex(&req.offering_hash) {
            return Err(CoreError::Invalid(
                "offeringHash: 64 lowercase hex digits".into(),
            ));
        }
        if !offering::is_uuid_v4(&req.nonce) {
            return Err(CoreError::Invalid("nonce: a uuid v4".into()));
        }
        keys::parse_public_key(&req.client_public_key)
            .map_err(|e| CoreError::Invalid(format!("clientPublicKey: {e}")))?;
        check_sig(
            "accept",
            &to_value(req)?,
            &req.client_public_key,
            &req.signature,
        )?;
        let existing: Option<(String, String)> = self.db.read(|c| {
            opt(c.q_row(
                "SELECT id, client_public_key FROM channels WHERE side = 'agent' AND accept_nonce = ?1",
                [&req.nonce],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))
        })?;
        let channel_id = match existing {
            Some((id, key)) if key == req.client_public_key => id,
            Some(_) => {
                return Err(CoreError::Conflict(
                    "nonce already used by another client key".into(),
                ))
            }
            None => {
                let (id, _) = self.create_channel(&req.offering_hash, Some(req.deposit))?;
                self.db.write(|tx| {
                    tx.exec(
                        "UPDATE channels SET client_public_key = ?1, accept_nonce = ?2, amount_paid = 0 WHERE id = ?3",
                        params![req.client_public_key, req.nonce, id],
                    )?;
                    Ok::<_, CoreError>(())
                })?;
                tracing::info!(channel = %id, offering = %req.offering_hash, deposit = req.deposit, "offering accepted over the market");
                id
            }
        };
        let access = self.export_access(&channel_id)?;
        let mut signed = SignedAccess {
            channel_id,
            access,
            signature: String::new(),
        };
        signed.signature = self
            .keys
            .sign(&signing_bytes("access", &to_value(&signed)?)?);
        Ok(signed)
    }

    /// Agent: a payment cheque. Verified (signature by the channel's client key, amount
    /// above the best one so far, at most the deposit), stored, then billing re-evaluated.
    pub fn market_cheque(&self, cheque: &Cheque) -> Result<ChequeReceipt> {
        if cheque.channel_id.len() > 64 {
            return Err(CoreError::Invalid("channelId: at most 64 bytes".into()));
        }
        let row: Option<(Option<String>, i64, i64)> = self.db.read(|c| {
            opt(c.q_row(
                "SELECT client_public_key, amount_paid, deposit FROM channels WHERE side = 'agent' AND id = ?1",
                [&cheque.channel_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            ))
        })?;
        let (key, best, deposit) =
            row.ok_or_else(|| CoreError::NotFound(format!("no channel {}", cheque.channel_id)))?;
        let key = key.ok_or_else(|| {
            CoreError::Conflict(format!(
                "channel {} was not accepted over the market: it takes no cheques",
                cheque.channel_id
            ))
        })?;
        check_sig("cheque", &to_value(cheque)?, &key, &cheque.signature)?;
        let (best, deposit) = (from_sql_u64(best), from_sql_u64(deposit));
        if cheque.amount > deposit {
            return Err(CoreError::Invalid(format!(
                "cheque of {} is above the deposit {deposit}",
                cheque.amount
            )));
        }
        if cheque.amount <= best {
            return Err(CoreError::Conflict(format!(
                "cheque of {} is not above the best one received ({best}): replayed or older",
                cheque.amount
            )));
        }
        self.db.write(|tx| {
            let now = now_ms();
            // Re-check under the write lock: a concurrent better cheque wins.
            let cur: i64 = tx.q_row(
                "SELECT amount_paid FROM channels WHERE id = ?1",
                [&cheque.channel_id],
                |r| r.get(0),
            )?;
            if cheque.amount <= from_sql_u64(cur) {
                return Err(CoreError::Conflict(format!(
                    "cheque of {} is not above the best one received ({}): replayed or older",
                    cheque.amount,
                    from_sql_u64(cur)
                )));
            }
            tx.exec(
                "UPDATE channels SET amount_paid = ?1, cheque = ?2 WHERE id = ?3",
                params![
                    to_sql_u64(cheque.amount),
                    serde_json::to_string(cheque).map_err(|e| CoreError::Internal(e.to_string()))?,
                    cheque.channel_id
                ],
            )?;
            tx.exec(
                "INSERT INTO cheques (channel_id, amount, signature, at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![cheque.channel_id, to_sql_u64(cheque.amount), cheque.signature, now],
            )?;
            crate::service::apply_billing(tx, &cheque.channel_id, now)?;
            Ok(())
        })?;
        self.market_channel_status(&cheque.channel_id)
    }

    /// Agent: the channel as the market shows it to its client.
    pub fn market_channel_status(&self, channel_id: &str) -> Result<ChannelStatus> {
        self.db.read(|c| market_status(c, channel_id))
    }
}

fn market_status(c: &Connection, channel_id: &str) -> Result<ChannelStatus> {
    let row: Option<(String, i64, i64, i64, String)> = opt(c.q_row(
        "SELECT status, bytes_total, deposit, amount_paid, offering_hash FROM channels
         WHERE side = 'agent' AND id = ?1 AND client_public_key IS NOT NULL",
        [channel_id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    ))?;
    let (status, bytes, deposit, paid, offering_hash) =
        row.ok_or_else(|| CoreError::NotFound(format!("no market channel {channel_id}")))?;
    let terms = crate::service::offering_terms(c, &offering_hash)?
        .ok_or_else(|| CoreError::Internal(format!("offering {offering_hash} missing")))?;
    let bytes = from_sql_u64(bytes);
    let deposit = from_sql_u64(deposit);
    let units = billing::units_used(bytes);
    Ok(ChannelStatus {
        channel_id: channel_id.into(),
        status: status.parse().map_err(|e: String| CoreError::Internal(e))?,
        bytes_total: bytes,
        units_used: units,
        deposit,
        amount_paid: from_sql_u64(paid),
        amount_due: billing::amount_for_units(&terms, units, deposit),
    })
}

// ------------------------------------------------------------------------- client side

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
}

impl Core {
    /// Client: stores verified offerings fetched from `market_url`.
    pub fn store_market_offering(
        &self,
        market_url: &str,
        signed: &SignedOffering,
        hash: &str,
        terms: &OfferingTerms,
    ) -> Result<()> {
        let signed_json =
            serde_json::to_string(signed).map_err(|e| CoreError::Internal(e.to_string()))?;
        let terms_json =
            serde_json::to_string(terms).map_err(|e| CoreError::Internal(e.to_string()))?;
        self.db.write(|tx| {
            tx.exec(
                "INSERT INTO market_offerings (hash, market_url, signed, terms, fetched_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT(hash) DO UPDATE SET market_url = excluded.market_url, fetched_at_ms = excluded.fetched_at_ms",
                params![hash, market_url, signed_json, terms_json, now_ms()],
            )?;
            Ok::<_, CoreError>(())
        })
    }

    /// Client: the offerings fetched so far.
    pub fn list_market_offerings(&self) -> Result<Vec<FetchedOffering>> {
        self.db.read(|c| {
            let mut st = c.prepare(
                "SELECT hash, market_url, terms FROM market_offerings ORDER BY fetched_at_ms, hash",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.iter()
                .map(|(h, u, t)| {
                    let terms: OfferingTerms = json_col("market_offerings.terms", t)?;
                    Ok(FetchedOffering::new(h, u, &terms))
                })
                .collect()
        })
    }

    fn market_offering(&self, hash: &str) -> Result<(String, OfferingTerms)> {
        let row: Option<(String, String)> = self.db.read(|c| {
            opt(c.q_row(
                "SELECT market_url, terms FROM market_offerings WHERE hash = ?1",
                [hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))
        })?;
        let (url, terms) = row.ok_or_else(|| {
            CoreError::NotFound(format!(
                "offering {hash} was not fetched (core-lite offering fetch URL)"
            ))
        })?;
        Ok((url, json_col("market_offerings.terms", &terms)?))
    }

    /// Client: stores the verified signed access message of an accepted offering.
    fn store_accepted(
        &self,
        offering_hash: &str,
        market_url: &str,
        deposit: u64,
        signed: &SignedAccess,
    ) -> Result<String> {
        let body = serde_json::to_string(&signed.access)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        self.db.write(|tx| {
            let now = now_ms();
            let existing: Option<String> = opt(tx.q_row(
                "SELECT id FROM channels WHERE side = 'client' AND client_key = ?1",
                [&signed.access.username.0],
                |r| r.get(0),
            ))?;
            if let Some(id) = existing {
                return Ok(id);
            }
            let id = format!("cc-{}", uuid::Uuid::new_v4().simple());
            tx.exec(
                "INSERT INTO channels (id, side, client_key, access_message, deposit, status, status_since_ms,
                                       created_at_ms, market_url, remote_channel_id, market_offering)
                 VALUES (?1, 'client', ?2, ?3, ?4, 'activating', ?5, ?5, ?6, ?7, ?8)",
                params![
                    id,
                    signed.access.username.0,
                    body,
                    to_sql_u64(deposit),
                    now,
                    market_url,
                    signed.channel_id,
                    offering_hash
                ],
            )?;
            crate::service::record_status(
                tx,
                &id,
                ServiceStatus::Activating,
                now,
                "offering accepted; access message received",
            )?;
            Ok::<_, CoreError>(id)
        })
    }

    /// Client: operator switch to stop (or resume) paying a channel.
    pub fn set_payments_paused(&self, id_or_key: &str, paused: bool) -> Result<()> {
        let n = self.db.write(|tx| {
            Ok::<_, CoreError>(tx.exec(
                "UPDATE channels SET payments_paused = ?1
                 WHERE side = 'client' AND market_url IS NOT NULL AND (id = ?2 OR client_key = ?2)",
                params![paused, id_or_key],
            )?)
        })?;
        if n == 0 {
            return Err(CoreError::NotFound(format!(
                "no client channel accepted over the market: {id_or_key:?}"
            )));
        }
        Ok(())
    }

    /// Client: the channels the payer looks after.
    pub fn client_market_channels(&self) -> Result<Vec<ClientMarketChannel>> {
        self.db.read(|c| {
            let mut st = c.prepare(
                "SELECT ch.id, ch.remote_channel_id, ch.market_url, m.terms, ch.deposit, ch.bytes_total,
                        ch.amount_paid, ch.status, ch.payments_paused
                 FROM channels ch JOIN market_offerings m ON m.hash = ch.market_offering
                 WHERE ch.side = 'client' AND ch.status != 'terminated'",
            )?;
            let rows = st
                .query_map([], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                        r.get::<_, String>(7)?,
                        r.get::<_, bool>(8)?,
                    ))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter()
                .map(|(local_id, remote_id, market_url, terms, dep, bytes, paid, status, paused)| {
                    Ok(ClientMarketChannel {
                        local_id,
                        remote_id,
                        market_url,
                        terms: json_col("market_offerings.terms", &terms)?,
                        deposit: from_sql_u64(dep),
                        bytes_total: from_sql_u64(bytes),
                        paid: from_sql_u64(paid),
                        status: status.parse().map_err(|e: String| CoreError::Internal(e))?,
                        paused,
                    })
                })
                .collect()
        })
    }

    /// Client: records what the agent acknowledged and mirrors its status.
    pub fn client_record_agent_view(
        &self,
        local_id: &str,
        view: &ChannelStatus,
        cheque: Option<&Cheque>,
    ) -> Result<()> {
        self.db.write(|tx| {
            let now = now_ms();
            let (status, paid): (String, i64) = tx.q_row(
                "SELECT status, amount_paid FROM channels WHERE id = ?1",
                [local_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if view.amount_paid > from_sql_u64(paid) {
                tx.exec(
                    "UPDATE channels SET amount_paid = ?1, cheque = ?2 WHERE id = ?3",
                    params![
                        to_sql_u64(view.amount_paid),
                        cheque.and_then(|c| serde_json::to_string(c).ok()),
                        local_id
                    ],
                )?;
            }
            if status != view.status.as_str() {
                tx.exec(
                    "UPDATE channels SET status = ?1, status_since_ms = ?2 WHERE id = ?3",
                    params![view.status.as_str(), now, local_id],
                )?;
                crate::service::record_status(
                    tx,
                    local_id,
                    view.status,
                    now,
                    &format!(
                        "agent reports {} ({} units used, {} paid)",
                        view.status, view.units_used, view.amount_paid
                    ),
                )?;
            }
            Ok::<_, CoreError>(())
        })
    }
}

/// HTTP client side of the market protocol.
pub struct MarketClient {
    http: reqwest::Client,
}

fn market_err(url: &str, e: impl std::fmt::Display) -> CoreError {
    CoreError::Unavailable(format!("market at {url}: {e}"))
}

impl MarketClient {
    pub fn new(timeout: Duration) -> Result<MarketClient> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(|e| CoreError::Internal(format!("http client: {e}")))?;
        Ok(MarketClient { http })
    }

    async fn decode<T: for<'de> Deserialize<'de>>(url: &str, resp: reqwest::Response) -> Result<T> {
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| market_err(url, e))?;
        if bytes.len() > 4 * 1024 * 1024 {
            return Err(market_err(url, "answer larger than 4 MiB"));
        }
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes)
                .map_err(|e| market_err(url, format!("unreadable answer: {e}")));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(CoreError::Remote {
                code: b.error.code,
                message: b.error.message,
            }),
            Err(_) => Err(market_err(url, format!("HTTP {status}"))),
        }
    }

    pub async fn offerings(&self, base: &str) -> Result<OfferingList> {
        let url = format!("{}{}", base.trim_end_matches('/'), paths::OFFERINGS);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| market_err(&url, e))?;
        Self::decode(&url, resp).await
    }

    pub async fn accept(&self, base: &str, req: &AcceptRequest) -> Result<SignedAccess> {
        let url = format!("{}{}", base.trim_end_matches('/'), paths::ACCEPT);
        let resp = self
            .http
            .post(&url)
            .json(req)
            .send()
            .await
            .map_err(|e| market_err(&url, e))?;
        Self::decode(&url, resp).await
    }

    pub async fn cheque(&self, base: &str, c: &Cheque) -> Result<ChequeReceipt> {
        let url = format!("{}{}", base.trim_end_matches('/'), paths::CHEQUE);
        let resp = self
            .http
            .post(&url)
            .json(c)
            .send()
            .await
            .map_err(|e| market_err(&url, e))?;
        Self::decode(&url, resp).await
    }

    pub async fn channel(&self, base: &str, id: &str) -> Result<ChannelStatus> {
        let url = format!("{}{}/{}", base.trim_end_matches('/'), paths::CHANNELS, id);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| market_err(&url, e))?;
        Self::decode(&url, resp).await
    }
}

/// Outcome of `offering fetch`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchReport {
    pub accepted: Vec<FetchedOffering>,
    /// (offering hash or index, reason)
    pub rejected: Vec<(String, String)>,
}

/// Client: fetches an agent's offerings, keeps those whose template is registered here and
/// that verify (signature, schema, rules), and stores them.
pub async fn fetch_offerings(core: &Core, market: &MarketClient, url: &str) -> Result<FetchReport> {
    let list = market.offerings(url).await?;
    let registered: BTreeMap<String, Value> = core.db.read(|c| {
        let mut st = c.prepare("SELECT offering_hash, offering_template FROM modules")?;
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok::<_, CoreError>(
            rows.into_iter()
                .filter_map(|(h, b)| serde_json::from_str(&b).ok().map(|v| (h, v)))
                .collect(),
        )
    })?;
    let mut report = FetchReport {
        accepted: Vec::new(),
        rejected: Vec::new(),
    };
    for (i, signed) in list.offerings.iter().enumerate() {
        let label = offering::offering_hash(&signed.offering).unwrap_or_else(|_| format!("#{i}"));
        match offering::verify_offering(signed, |h| registered.get(h).cloned()) {
            Ok((hash, terms)) => {
                core.store_market_offering(url, signed, &hash, &terms)?;
                report
                    .accepted
                    .push(FetchedOffering::new(&hash, url, &terms));
            }
            Err(e) => report.rejected.push((label, e.to_string())),
        }
    }
    Ok(report)
}

/// Client: accepts a fetched offering with `deposit` (default: the minimum deposit).
/// Returns (local channel id, client key).
pub async fn accept_offering(
    core: &Core,
    market: &MarketClient,
    offering_hash: &str,
    deposit: Option<u64>,
) -> Result<(String, service_api::ClientKey)> {
    let (url, terms) = core.market_offering(offering_hash)?;
    let deposit = match deposit {
        Some(d) => d,
        None => terms
            .min_deposit()
            .ok_or_else(|| CoreError::Invalid("minimum deposit overflows".into()))?,
    };
    let nonce = uuid::Uuid::new_v4().to_string();
    let req = signed_accept(&core.keys, offering_hash, deposit, &nonce)?;
    let signed = market.accept(&url, &req).await?;
    verify_access(&signed, &terms.agent_public_key).map_err(|e| {
        CoreError::Forbidden(format!(
            "the access message is not signed by the offering's agent: {e}"
        ))
    })?;
    // The access message must validate against our own copy of the access template.
    let access_value = to_value(&signed.access)?;
    let tpl: Option<String> = core.db.read(|c| {
        opt(c.q_row(
            "SELECT access_template FROM modules WHERE access_hash = ?1",
            [&signed.access.template_hash],
            |r| r.get(0),
        ))
    })?;
    let tpl: Value = json_col(
        "modules.access_template",
        &tpl.ok_or_else(|| {
            CoreError::Invalid(format!(
                "access template {} is not registered here",
                signed.access.template_hash
            ))
        })?,
    )?;
    template::validate_access_message(&tpl, &access_value)
        .map_err(|e| CoreError::Invalid(format!("access message: {e}")))?;
    service_api::SpeedLimits::from_params(&signed.access.additional_params)
        .map_err(|e| CoreError::Invalid(format!("access message: {e}")))?;
    let id = core.store_accepted(offering_hash, &url, deposit, &signed)?;
    Ok((id, signed.access.username))
}

/// One round of the client's payer over every market channel.
pub async fn pay_round(core: &Arc<Core>, market: &MarketClient, tolerance_pct: u64) -> Result<()> {
    let c = core.clone();
    let channels = tokio::task::spawn_blocking(move || c.client_market_channels())
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))??;
    for ch in channels {
        let view = match market.channel(&ch.market_url, &ch.remote_id).await {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(channel = %ch.local_id, error = %e, "cannot reach the agent's market");
                continue;
            }
        };
        let lagging = matches!(
            view.status,
            ServiceStatus::Suspending | ServiceStatus::Suspended
        );
        let decision = if ch.paused {
            PayDecision::Nothing
        } else {
            client_payment(
                &ch.terms,
                ch.deposit,
                ch.bytes_total,
                ch.paid.max(view.amount_paid),
                lagging.then_some(view.amount_due),
                tolerance_pct,
            )
        };
        let mut latest = view;
        let mut sent = None;
        match decision {
            PayDecision::Nothing => {}
            PayDecision::Refuse { due, allowed } => {
                tracing::warn!(
                    channel = %ch.local_id, due, allowed, own_bytes = ch.bytes_total,
                    "refusing to pay: the agent asks for more than our own measured usage allows"
                );
            }
            PayDecision::Pay(amount) => {
                let cheque = signed_cheque(&core.keys, &ch.remote_id, amount)?;
                match market.cheque(&ch.market_url, &cheque).await {
                    Ok(receipt) => {
                        tracing::info!(channel = %ch.local_id, amount, status = %receipt.status, "cheque accepted");
                        latest = receipt;
                        sent = Some(cheque);
                    }
                    Err(e) => {
                        tracing::warn!(channel = %ch.local_id, amount, error = %e, "cheque not accepted")
                    }
                }
            }
        }
        let c = core.clone();
        let local = ch.local_id.clone();
        tokio::task::spawn_blocking(move || {
            c.client_record_agent_view(&local, &latest, sent.as_ref())
        })
        .await
        .map_err(|e| CoreError::Internal(e.to_string()))??;
    }
    Ok(())
}

/// The client's payer: a [`pay_round`] every `every`, until the process ends.
pub async fn run_payer(core: Arc<Core>, every: Duration, tolerance_pct: u64) {
    let market = match MarketClient::new(Duration::from_secs(5)) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "payer cannot start");
            return;
        }
    };
    let mut iv = tokio::time::interval(every);
    iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        iv.tick().await;
        if let Err(e) = pay_round(&core, &market, tolerance_pct).await {
            tracing::warn!(error = %format!("{e:#}"), "payment round failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(billing_type: BillingType) -> OfferingTerms {
        OfferingTerms {
            template_hash: String::new(),
            product: String::new(),
            agent_public_key: String::new(),
            nonce: String::new(),
            service_name: "Privatix VPN".into(),
            supply: 1,
            unit_name: "MB".into(),
            unit_price: 1_000,
            setup_price: 500,
            min_units: 1,
            max_units: 100,
            billing_type,
            billing_interval: 10,
            max_billing_unit_lag: 5,
            max_suspend_time_s: 60,
            max_inactive_time_s: 60,
            free_units: 2,
            country: "DE".into(),
            additional_params: BTreeMap::new(),
            speed: Default::default(),
        }
    }

    const MB: u64 = 1_000_000;

    #[test]
    fn prepaid_pays_one_interval_ahead() {
        let t = terms(BillingType::Prepaid);
        // nothing used: setup + (2 free + 10) units... free units are free: 500 + 10·1000
        assert_eq!(
            client_payment(&t, 1_000_000, 0, 0, None, 10),
            PayDecision::Pay(10_500)
        );
        assert_eq!(
            client_payment(&t, 1_000_000, 11 * MB, 10_500, None, 10),
            PayDecision::Nothing
        );
        assert_eq!(
            client_payment(&t, 1_000_000, 12 * MB, 10_500, None, 10),
            PayDecision::Pay(20_500)
        );
    }

    #[test]
    fn postpaid_pays_whole_intervals_used() {
        let t = terms(BillingType::Postpaid);
        assert_eq!(
            client_payment(&t, 1_000_000, 0, 0, None, 10),
            PayDecision::Nothing
        );
        assert_eq!(
            client_payment(&t, 1_000_000, 11 * MB, 0, None, 10),
            PayDecision::Nothing
        );
        assert_eq!(
            client_payment(&t, 1_000_000, 12 * MB, 0, None, 10),
            PayDecision::Pay(10_500)
        );
    }

    #[test]
    fn never_above_deposit() {
        let t = terms(BillingType::Prepaid);
        assert_eq!(
            client_payment(&t, 3_000, 0, 0, None, 10),
            PayDecision::Pay(3_000)
        );
        assert_eq!(
            client_payment(&t, 3_000, 0, 3_000, None, 10),
            PayDecision::Nothing
        );
    }

    #[test]
    fn agent_due_is_paid_within_tolerance_and_refused_beyond() {
        let t = terms(BillingType::Postpaid);
        // We measured 50 MB; the agent counts 53 (6 % more): pay what it asks.
        let due = billing::amount_for_units(&terms_to_billing(&t), 53, 1_000_000);
        assert_eq!(
            client_payment(&t, 1_000_000, 50 * MB, 40_500, Some(due), 10),
            PayDecision::Pay(due)
        );
        // The agent claims 80: pay only what 50 MB + 10 % allows, and say so.
        let due = billing::amount_for_units(&terms_to_billing(&t), 80, 1_000_000);
        let allowed = billing::amount_for_units(&terms_to_billing(&t), 56, 1_000_000);
        assert_eq!(
            client_payment(&t, 1_000_000, 50 * MB, 40_500, Some(due), 10),
            PayDecision::Pay(allowed)
        );
        assert_eq!(
            client_payment(&t, 1_000_000, 50 * MB, allowed, Some(due), 10),
            PayDecision::Refuse { due, allowed }
        );
    }

    #[test]
    fn signatures_bind_the_kind() {
        let k = keys::AgentKeys::generate();
        let c = signed_cheque(&k, "ch-1", 5).expect("cheque");
        assert!(check_sig(
            "cheque",
            &to_value(&c).expect("v"),
            &k.public_key_b64(),
            &c.signature
        )
        .is_ok());
        // The same bytes do not pass as another kind of message.
        assert!(check_sig(
            "accept",
            &to_value(&c).expect("v"),
            &k.public_key_b64(),
            &c.signature
        )
        .is_err());
        let mut forged = c.clone();
        forged.amount = 6;
        assert!(check_sig(
            "cheque",
            &to_value(&forged).expect("v"),
            &k.public_key_b64(),
            &forged.signature
        )
        .is_err());
    }
}
