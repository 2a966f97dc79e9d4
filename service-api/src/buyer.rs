//! The client-role operations of the Service API: what a VPN end user's tools ask of the
//! client's own core to buy service from an agent — fetch and verify an agent's offerings
//! (FetchOfferings), list those fetched (ListOfferings), accept one with a deposit
//! (AcceptOffering: the core signs the accept, the agent answers the signed access message
//! that GetAccess then serves) and list the client's channels with their usage and money
//! (ListChannels). Callers: the client token or the admin token; a product token is
//! refused (403).
//!
//! Amounts are integer base units (1 PRIX = 10^8); prices are per unit (`unitName`, `MB`
//! for the VPN module).

use serde::{Deserialize, Deserializer, Serialize};

use crate::rules::{self, field, Invalid, Validate};
use crate::{ClientKey, ServiceStatus, SessionId};

/// Fetch the offerings an agent publishes on its market API, keep those whose template is
/// registered on this core and that verify (signature, schema, rules).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FetchOfferingsRequest {
    /// The agent's market URL, e.g. `http://203.0.113.7:7710`.
    #[serde(deserialize_with = "field::market_url")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::market_url))]
    pub url: String,
}

/// A verified offering as a buyer compares them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OfferingSummary {
    pub offering_hash: String,
    /// The market it was fetched from (where AcceptOffering sends the accept).
    pub market_url: String,
    pub service_name: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    pub unit_name: String,
    /// Base units per unit.
    pub unit_price: u64,
    /// Base units, paid once.
    pub setup_price: u64,
    pub min_units: u64,
    pub max_units: u64,
    pub free_units: u64,
    /// `prepaid` or `postpaid`.
    pub billing_type: String,
    /// Units per payment cheque.
    pub billing_interval: u64,
    /// The smallest deposit the agent accepts: the cost of `max(minUnits, 1)` units.
    pub min_deposit: u64,
    /// The deposit that buys every unit: the cost of `maxUnits` units.
    pub full_deposit: u64,
    /// Speeds in Mbit/s (decimal strings) from `additionalParams`, when offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_download_mbps: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_download_mbps: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_upload_mbps: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upload_mbps: Option<String>,
}

/// An offering the agent published that this core refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RejectedOffering {
    /// The offering's hash when it could be computed, else `#<index in the list>`.
    pub offering: String,
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FetchOfferingsResponse {
    /// Verified and stored (AcceptOffering can accept them).
    pub accepted: Vec<OfferingSummary>,
    pub rejected: Vec<RejectedOffering>,
}

/// The offerings fetched so far (an empty JSON object as the body).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListOfferingsRequest {}

impl<'de> Deserialize<'de> for ListOfferingsRequest {
    /// Only `{}` (serde's derive would also take `[]`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        field::empty_object(d).map(|()| ListOfferingsRequest {})
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ListOfferingsResponse {
    pub offerings: Vec<OfferingSummary>,
}

/// Accept a fetched offering: the core signs an accept with its key and sends it to the
/// offering's market; the agent creates the channel and answers the signed access message,
/// which is verified and stored for GetAccess.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AcceptOfferingRequest {
    #[serde(deserialize_with = "field::offering_hash")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::offering_hash))]
    pub offering_hash: String,
    /// Base units; at least the offering's `minDeposit` (422 `invalid` below it). The most
    /// the agent can ever be paid on the channel.
    #[serde(deserialize_with = "field::counter")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::amount))]
    pub deposit: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AcceptOfferingResponse {
    /// The channel's id on this core.
    pub channel_id: String,
    /// The channel's client key: GetAccess, the sessions and `adapter-client` use it.
    pub client_key: ClientKey,
    pub offering_hash: String,
    pub deposit: u64,
    pub status: ServiceStatus,
}

/// The client's channels (an empty JSON object as the body).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListChannelsRequest {}

impl<'de> Deserialize<'de> for ListChannelsRequest {
    /// Only `{}` (serde's derive would also take `[]`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        field::empty_object(d).map(|()| ListChannelsRequest {})
    }
}

/// One of the client's channels: usage, status and money.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ClientChannel {
    pub channel_id: String,
    pub client_key: ClientKey,
    pub status: ServiceStatus,
    /// Unix milliseconds of the last status change.
    pub status_since_ms: i64,
    pub created_at_ms: i64,
    pub deposit: u64,
    /// Bytes of every session of the channel (in + out, as the client measured them).
    pub bytes_total: u64,
    /// `floor(bytesTotal / 10^6)`.
    pub units_used: u64,
    pub open_session: Option<SessionId>,
    /// What the agent acknowledged as paid (the best cheque), base units.
    pub amount_paid: u64,
    /// The market channel's terms; absent for a channel whose access message was imported
    /// by hand (`core-lite access import`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offering: Option<OfferingSummary>,
    /// The cost of the units used so far (setup price included, capped at the deposit);
    /// absent without the offering's terms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_used: Option<u64>,
    /// True when the operator paused the payments (`core-lite channel payments --pause`).
    pub payments_paused: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ListChannelsResponse {
    /// Oldest first.
    pub channels: Vec<ClientChannel>,
}

impl Validate for FetchOfferingsRequest {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

impl Validate for ListOfferingsRequest {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

impl Validate for AcceptOfferingRequest {
    fn validate(&self) -> Result<(), Invalid> {
        rules::check_amount("/deposit", self.deposit)
    }
}

impl Validate for ListChannelsRequest {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
