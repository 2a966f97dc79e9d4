//! The client-role operations of the Service API (`service_api::buyer`): FetchOfferings,
//! ListOfferings, AcceptOffering and ListChannels, for the client token (or the admin
//! token). The network half of fetch and accept runs on the async runtime, the database
//! half on the blocking pool.
//!
//! An agent that cannot be reached, or answers something that is not a market answer or
//! does not verify, is 502 `bad_gateway`. Of the agent's own refusals of an accept,
//! `not_found` (the offering is gone), `conflict` (sold out) and `invalid` (the deposit) are
//! passed on as they are; any other is 502 as well.

use std::sync::Arc;
use std::time::Duration;

use service_api::{
    AcceptOfferingRequest, AcceptOfferingResponse, ClientChannel, ClientKey, ErrorCode,
    FetchOfferingsRequest, FetchOfferingsResponse, ListChannelsResponse, ListOfferingsResponse,
    OfferingSummary, RejectedOffering, ServiceStatus, SessionId,
};

use super::client::verify_and_store;
use super::http::MarketClient;
use crate::billing;
use crate::error::{CoreError, MarketCallError, Result};
use crate::offering::OfferingTerms;
use crate::service::{Caller, Core};
use crate::store::{buyer, market};

/// Bound of one call to an agent's market.
const MARKET_TIMEOUT: Duration = Duration::from_secs(8);

/// Client-role operations take the client token or the admin token.
fn check_caller(caller: &Caller, op: &str) -> Result<()> {
    match caller {
        Caller::Admin | Caller::Client => Ok(()),
        Caller::Product(_) => Err(CoreError::Forbidden(format!(
            "{op} is a client operation: use the client token"
        ))),
    }
}

/// Runs `f` on the blocking pool.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|source| CoreError::Task {
            what: "client operation",
            source,
        })?
}

/// An error of the agent's market as this core's answer: the agent's own refusal when
/// `passed_on` lists its code, else 502.
fn from_agent(url: &str, e: CoreError, passed_on: &[ErrorCode]) -> CoreError {
    match e {
        CoreError::Remote { code, message } if passed_on.contains(&code) => {
            CoreError::Remote { code, message }
        }
        CoreError::Remote { code, message } => CoreError::MarketUnreachable {
            url: url.to_string(),
            source: MarketCallError::Answered { code, message },
        },
        other => other,
    }
}

/// An offering's terms as a buyer compares them.
pub fn summary(hash: &str, market_url: &str, t: &OfferingTerms) -> OfferingSummary {
    let b = t.billing_terms();
    let param = |k: &str| t.additional_params.get(k).cloned();
    OfferingSummary {
        offering_hash: hash.to_string(),
        market_url: market_url.to_string(),
        service_name: t.service_name.clone(),
        country: t.country.clone(),
        unit_name: t.unit_name.clone(),
        unit_price: t.unit_price,
        setup_price: t.setup_price,
        min_units: t.min_units,
        max_units: t.max_units,
        free_units: t.free_units,
        billing_type: t.billing_type.as_str().to_string(),
        billing_interval: t.billing_interval,
        min_deposit: billing::min_deposit(&b).unwrap_or(u64::MAX),
        full_deposit: billing::full_deposit(&b).unwrap_or(u64::MAX),
        min_download_mbps: param("minDownloadSpeed"),
        max_download_mbps: param("maxDownloadSpeed"),
        min_upload_mbps: param("minUploadSpeed"),
        max_upload_mbps: param("maxUploadSpeed"),
    }
}

/// FetchOfferings: the agent's list over the network, then verified and stored.
pub async fn fetch_offerings(
    core: Arc<Core>,
    caller: &Caller,
    req: &FetchOfferingsRequest,
) -> Result<FetchOfferingsResponse> {
    check_caller(caller, "FetchOfferings")?;
    let url = req.url.trim_end_matches('/').to_string();
    let list = MarketClient::with_ca_file(MARKET_TIMEOUT, core.market_ca_file())?
        .offerings(&url)
        .await
        .map_err(|e| from_agent(&url, e, &[]))?;
    blocking(move || {
        let report = verify_and_store(&core, &url, &list.offerings)?;
        let mut accepted = Vec::new();
        for o in &report.accepted {
            let stored = core
                .db
                .read(|tx| market::offering(tx, &o.offering_hash))?
                .ok_or_else(|| CoreError::Missing {
                    what: "fetched offering",
                    key: o.offering_hash.clone(),
                })?;
            accepted.push(summary(&stored.hash, &url, &stored.terms));
        }
        Ok(FetchOfferingsResponse {
            accepted,
            rejected: report
                .rejected
                .into_iter()
                .map(|(offering, reason)| RejectedOffering { offering, reason })
                .collect(),
        })
    })
    .await
}

/// ListOfferings: the offerings fetched so far, in the order they were fetched.
pub fn list_offerings(core: &Core, caller: &Caller) -> Result<ListOfferingsResponse> {
    check_caller(caller, "ListOfferings")?;
    let rows = core.db.read(market::offerings)?;
    Ok(ListOfferingsResponse {
        offerings: rows
            .iter()
            .map(|o| summary(&o.hash, &o.market_url, &o.terms))
            .collect(),
    })
}

/// AcceptOffering: the accept signed here, sent to the offering's market, its answer
/// verified and stored.
pub async fn accept_offering(
    core: Arc<Core>,
    caller: &Caller,
    req: &AcceptOfferingRequest,
) -> Result<AcceptOfferingResponse> {
    check_caller(caller, "AcceptOffering")?;
    let (hash, deposit) = (req.offering_hash.clone(), req.deposit);
    let c = core.clone();
    let prepared = blocking(move || {
        let p = c.prepare_accept(&hash, Some(deposit))?;
        let min = billing::min_deposit(&p.terms.billing_terms()).unwrap_or(u64::MAX);
        if deposit < min {
            return Err(CoreError::Invalid(format!(
                "/deposit: {deposit} is below the offering's minimum deposit {min} (base units)"
            )));
        }
        Ok(p)
    })
    .await?;
    let url = prepared.url.clone();
    let answer = MarketClient::with_ca_file(MARKET_TIMEOUT, core.market_ca_file())?
        .accept(&url, prepared.pin.as_deref(), &prepared.request)
        .await
        .map_err(|e| {
            from_agent(
                &url,
                e,
                &[ErrorCode::NotFound, ErrorCode::Conflict, ErrorCode::Invalid],
            )
        })?;
    let offering_hash = prepared.offering_hash.clone();
    let (channel_id, client_key) = blocking(move || {
        core.finish_accept(&prepared, &answer).map_err(|e| match e {
            CoreError::Forbidden(m) | CoreError::Invalid(m) => CoreError::MarketUnreachable {
                url: prepared.url.clone(),
                source: MarketCallError::Unverified(m),
            },
            other => other,
        })
    })
    .await?;
    tracing::info!(channel = %channel_id, offering = %offering_hash, deposit, "offering accepted (AcceptOffering)");
    Ok(AcceptOfferingResponse {
        channel_id,
        client_key,
        offering_hash,
        deposit,
        status: ServiceStatus::Activating,
    })
}

/// ListChannels: every client channel with usage, status and money.
pub fn list_channels(core: &Core, caller: &Caller) -> Result<ListChannelsResponse> {
    check_caller(caller, "ListChannels")?;
    let rows = core.db.read(buyer::channels)?;
    Ok(ListChannelsResponse {
        channels: rows
            .into_iter()
            .map(|ch| {
                let units_used = billing::units_used(ch.bytes_total);
                let amount_used = ch.offering.as_ref().map(|(_, _, t)| {
                    billing::amount_for_units(&t.billing_terms(), units_used, ch.deposit)
                });
                ClientChannel {
                    channel_id: ch.id,
                    client_key: ClientKey(ch.client_key),
                    status: ch.status,
                    status_since_ms: ch.status_since_ms,
                    created_at_ms: ch.created_at_ms,
                    deposit: ch.deposit,
                    bytes_total: ch.bytes_total,
                    units_used,
                    open_session: ch.open_session.map(SessionId),
                    amount_paid: ch.amount_paid,
                    offering: ch.offering.as_ref().map(|(h, u, t)| summary(h, u, t)),
                    amount_used,
                    payments_paused: ch.payments_paused,
                }
            })
            .collect(),
    })
}
