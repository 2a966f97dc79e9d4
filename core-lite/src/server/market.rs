//! The agent's market API (meant to be reachable by clients; no bearer token: accepts are
//! signed by the client's key, cheques by the channel's client key).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use service_api::market::{
    AcceptRequest, ChannelStatus, Cheque, ChequeReceipt, OfferingList, SignedAccess,
};
use service_api::paths;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::extract::ApiJson;
use super::listen::{serve, ServerLimits};
use super::router::{call, harden, health, St};
use crate::error::CoreError;
use crate::service::{Caller, Core};

async fn market_offerings(State(core): St) -> Result<Json<OfferingList>, CoreError> {
    call(core, Caller::Admin, |c, _| c.market_offerings()).await
}

async fn market_accept(
    State(core): St,
    ApiJson(req): ApiJson<AcceptRequest>,
) -> Result<Json<SignedAccess>, CoreError> {
    call(core, Caller::Admin, move |c, _| c.market_accept(&req)).await
}

async fn market_cheque(
    State(core): St,
    ApiJson(req): ApiJson<Cheque>,
) -> Result<Json<ChequeReceipt>, CoreError> {
    let r = call(core, Caller::Admin, move |c, _| c.market_cheque(&req)).await;
    if let Err(e) = &r {
        tracing::info!(code = ?e.code(), error = %e, "cheque refused");
    }
    r
}

async fn market_channel(
    State(core): St,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ChannelStatus>, CoreError> {
    let id = super::extract::path_param(id)?;
    call(core, Caller::Admin, move |c, _| {
        c.market_channel_status(&id)
    })
    .await
}

/// The agent's market API (meant to be reachable by clients; no bearer token: accepts are
/// signed by the client's key, cheques by the channel's client key).
pub fn market_router(core: Arc<Core>) -> Router {
    use service_api::market::paths as m;
    harden(
        Router::new()
            .route(m::OFFERINGS, get(market_offerings))
            .route(m::ACCEPT, post(market_accept))
            .route(m::CHEQUE, post(market_cheque))
            .route(&format!("{}/:id", m::CHANNELS), get(market_channel))
            .route(paths::HEALTH, get(health)),
        core,
    )
}

/// Serves the market API on its own address, with `limits`, until `stop` turns true.
pub async fn start_market(
    core: Arc<Core>,
    listen: SocketAddr,
    limits: ServerLimits,
    stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = market_router(core);
    let task = tokio::spawn(serve(listener, app, limits, stop));
    Ok((addr, task))
}
