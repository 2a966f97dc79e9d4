//! Handlers of the client-role operations (`crate::market::buyer`): FetchOfferings and
//! AcceptOffering call an agent's market, ListOfferings and ListChannels read the database.

use axum::extract::State;
use axum::Json;
use service_api as api;

use super::extract::{Authed, Valid};
use super::router::{call, St};
use crate::error::CoreError;
use crate::market::buyer;

pub(super) async fn fetch_offerings(
    State(core): St,
    Authed(who): Authed,
    Valid(req): Valid<api::FetchOfferingsRequest>,
) -> Result<Json<api::FetchOfferingsResponse>, CoreError> {
    let r = buyer::fetch_offerings(core, &who, &req).await;
    if let Err(e) = &r {
        tracing::info!(url = %req.url, code = ?e.code(), error = %e, "FetchOfferings failed");
    }
    r.map(Json)
}

pub(super) async fn list_offerings(
    State(core): St,
    Authed(who): Authed,
    Valid(_req): Valid<api::ListOfferingsRequest>,
) -> Result<Json<api::ListOfferingsResponse>, CoreError> {
    call(core, who, buyer::list_offerings).await
}

pub(super) async fn accept_offering(
    State(core): St,
    Authed(who): Authed,
    Valid(req): Valid<api::AcceptOfferingRequest>,
) -> Result<Json<api::AcceptOfferingResponse>, CoreError> {
    let r = buyer::accept_offering(core, &who, &req).await;
    if let Err(e) = &r {
        tracing::info!(offering = %req.offering_hash, code = ?e.code(), error = %e, "AcceptOffering failed");
    }
    r.map(Json)
}

pub(super) async fn list_channels(
    State(core): St,
    Authed(who): Authed,
    Valid(_req): Valid<api::ListChannelsRequest>,
) -> Result<Json<api::ListChannelsResponse>, CoreError> {
    call(core, who, buyer::list_channels).await
}
