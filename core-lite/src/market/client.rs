//! The client's side of the market: fetching and verifying an agent's offerings,
//! accepting one (the agent answers the signed access message that GetAccess then serves),
//! and the payer, which signs a cheque every `billingInterval` units of the client's own
//! measured usage and mirrors the agent's status into the client's channel, so the client
//! adapter learns of a suspension from its own core.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use service_api::market::{
    AcceptRequest, AccessEnvelope, ChannelStatus, Cheque, SignedAccess, SignedOffering,
};
use service_api::{ClientKey, ServiceStatus};

use super::http::MarketClient;
use super::sign::{signed_accept, signed_cheque};
use crate::billing;
use crate::error::{CoreError, Result};
use crate::offering::{self, BillingType, OfferingTerms};
use crate::service::{new_id, now_ms, Core};
use crate::store::market::{self, ClientMarketChannel, NewAcceptedChannel};
use crate::store::{channels, modules, status_history};

/// Default tolerance (percent) for the agent counting more bytes than the client (tunnel
/// overhead) before the client refuses to pay.
pub const DEFAULT_TOLERANCE_PCT: u64 = 10;

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
            min_deposit: billing::min_deposit(&t.billing_terms()).unwrap_or(u64::MAX),
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
/// Prepaid: the setup price and one interval of billable units ahead; postpaid: the setup
/// price at once, then whole intervals of billable units used. Free units are never paid,
/// and nothing above the deposit ([`billing::amount_for_units`]).
pub fn client_payment(
    terms: &OfferingTerms,
    deposit: u64,
    own_bytes: u64,
    paid: u64,
    agent_due: Option<u64>,
    tolerance_pct: u64,
) -> PayDecision {
    let b = terms.billing_terms();
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
    // The setup price is paid up front in both billing types ("must be paid before starting
    // using a service"): the agent counts an unpaid setup price as lag once a unit is
    // billable, so a postpaid client that waited for its first interval would be suspended.
    let mut target = billing::amount_for_units(&b, target_units, deposit);
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

/// Outcome of `offering fetch`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FetchReport {
    pub accepted: Vec<FetchedOffering>,
    /// (offering hash or index, reason)
    pub rejected: Vec<(String, String)>,
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
        self.db
            .write(|tx| market::upsert_offering(tx, market_url, signed, hash, terms, now_ms()))?;
        Ok(())
    }

    /// Client: the offerings fetched so far.
    pub fn list_market_offerings(&self) -> Result<Vec<FetchedOffering>> {
        let rows = self.db.read(market::offerings)?;
        Ok(rows
            .iter()
            .map(|o| FetchedOffering::new(&o.hash, &o.market_url, &o.terms))
            .collect())
    }

    /// Client: stores the verified signed access message of an accepted offering.
    fn store_accepted(
        &self,
        offering_hash: &str,
        market_url: &str,
        deposit: u64,
        signed: &SignedAccess,
    ) -> Result<String> {
        self.db.write(|tx| {
            let now = now_ms();
            if let Some(id) = channels::client_id_by_key(tx, &signed.access.username.0)? {
                return Ok(id);
            }
            let id = new_id("cc-");
            market::insert_accepted(
                tx,
                &NewAcceptedChannel {
                    id: &id,
                    offering_hash,
                    market_url,
                    deposit,
                    signed,
                    created_at_ms: now,
                },
            )?;
            status_history::insert(
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
        let n = self
            .db
            .write(|tx| market::set_payments_paused(tx, id_or_key, paused))?;
        if n == 0 {
            return Err(CoreError::NotFound(format!(
                "no client channel accepted over the market: {id_or_key:?}"
            )));
        }
        Ok(())
    }

    /// Client: the channels the payer looks after.
    pub fn client_market_channels(&self) -> Result<Vec<ClientMarketChannel>> {
        Ok(self.db.read(market::client_channels)?)
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
            let mine = market::client_payments(tx, local_id)?;
            if view.amount_paid > mine.amount_paid {
                market::set_client_paid(tx, local_id, view.amount_paid, cheque)?;
            }
            if mine.status != view.status {
                channels::set_status(tx, local_id, view.status, now)?;
                status_history::insert(
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

/// Client: fetches an agent's offerings, keeps those whose template is registered here and
/// that verify (signature, schema, rules), and stores them.
pub async fn fetch_offerings(core: &Core, market: &MarketClient, url: &str) -> Result<FetchReport> {
    let list = market.offerings(url).await?;
    verify_and_store(core, url, &list.offerings)
}

/// Client: the second half of [`fetch_offerings`], after the network: verifies each offering
/// of `url`'s list and stores those that verify.
pub(crate) fn verify_and_store(
    core: &Core,
    url: &str,
    offerings: &[SignedOffering],
) -> Result<FetchReport> {
    let registered = core.db.read(modules::offering_templates)?;
    let mut report = FetchReport {
        accepted: Vec::new(),
        rejected: Vec::new(),
    };
    for (i, signed) in offerings.iter().enumerate() {
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
) -> Result<(String, ClientKey)> {
    let prepared = core.prepare_accept(offering_hash, deposit)?;
    let answer = market
        .accept(&prepared.url, prepared.pin.as_deref(), &prepared.request)
        .await?;
    core.finish_accept(&prepared, &answer)
}

/// An accept signed and ready to send ([`Core::prepare_accept`]), with what checking the
/// agent's answer needs ([`Core::finish_accept`]).
pub(crate) struct PreparedAccept {
    /// The offering's market.
    pub url: String,
    pub offering_hash: String,
    pub terms: OfferingTerms,
    pub deposit: u64,
    pub request: AcceptRequest,
    /// The agent's TLS key its signed offering pins.
    pub pin: Option<String>,
}

impl Core {
    /// Client: the first half of an accept, before the network: the fetched offering's
    /// terms and the accept signed with this core's key.
    pub(crate) fn prepare_accept(
        &self,
        offering_hash: &str,
        deposit: Option<u64>,
    ) -> Result<PreparedAccept> {
        let fetched = self
            .db
            .read(|tx| market::offering(tx, offering_hash))?
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "offering {offering_hash} was not fetched (core-lite offering fetch URL)"
                ))
            })?;
        let (url, terms, pin) = (fetched.market_url, fetched.terms, fetched.pin);
        let deposit = match deposit {
            Some(d) => d,
            None => billing::min_deposit(&terms.billing_terms())
                .ok_or_else(|| CoreError::Invalid("minimum deposit overflows".into()))?,
        };
        let nonce = uuid::Uuid::new_v4().to_string();
        let seal_key = self.seal_public_key()?;
        let request = signed_accept(&self.keys, offering_hash, deposit, &nonce, Some(seal_key))?;
        Ok(PreparedAccept {
            url,
            offering_hash: offering_hash.to_string(),
            terms,
            deposit,
            request,
            pin,
        })
    }

    /// Client: the second half of an accept, after the agent answered: the signed access
    /// message is checked like `access import` checks it, then stored (GetAccess serves
    /// it). A sealed answer is opened first ([`Core::open_envelope`]); one in clear is
    /// refused when this core asked for sealing. Returns the local channel id and the
    /// client key.
    pub(crate) fn finish_accept(
        &self,
        prepared: &PreparedAccept,
        answer: &AccessEnvelope,
    ) -> Result<(String, ClientKey)> {
        if prepared.request.client_seal_key.is_some() && matches!(answer, AccessEnvelope::Signed(_))
        {
            return Err(CoreError::Forbidden(
                "access message refused: the agent answered it in clear although this core \
                 sent a key to seal it to"
                    .into(),
            ));
        }
        let signed = &self.open_envelope(answer)?;
        // The same checks as `access import`: the offering it carries is the one accepted
        // (same hash as the one fetched; its signature and terms), and its agent key signed
        // the access message.
        self.verify_signed_access(signed, Some(&prepared.offering_hash))?;
        let id = self.store_accepted(
            &prepared.offering_hash,
            &prepared.url,
            prepared.deposit,
            signed,
        )?;
        Ok((id, signed.access.username.clone()))
    }
}

/// One round of the client's payer over every market channel.
pub async fn pay_round(core: &Arc<Core>, market: &MarketClient, tolerance_pct: u64) -> Result<()> {
    let c = core.clone();
    let channels = tokio::task::spawn_blocking(move || c.client_market_channels())
        .await
        .map_err(|source| CoreError::Task {
            what: "payer",
            source,
        })??;
    for ch in channels {
        let view = match market
            .channel(&ch.market_url, ch.pin.as_deref(), &ch.remote_id, &core.keys)
            .await
        {
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
                match market
                    .cheque(&ch.market_url, ch.pin.as_deref(), &cheque)
                    .await
                {
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
        .map_err(|source| CoreError::Task {
            what: "payer",
            source,
        })??;
    }
    Ok(())
}

/// The client's payer: a [`pay_round`] every `every`, until the process ends.
pub async fn run_payer(core: Arc<Core>, every: Duration, tolerance_pct: u64) {
    let market = match MarketClient::with_ca_file(Duration::from_secs(5), core.market_ca_file()) {
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
#[path = "client_tests.rs"]
mod tests;
