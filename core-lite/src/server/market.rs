//! The agent's market API (meant to be reachable by clients; no bearer token: accepts are
//! signed by the client's key, cheques by the channel's client key).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, Uri};
use axum::routing::{get, post};
use axum::{Json, Router};
use service_api::market::{
    read_auth, AcceptRequest, AccessEnvelope, ChannelStatus, Cheque, ChequeReceipt, OfferingList,
};
use service_api::paths;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::extract::ApiJson;
use super::listen::{serve, ServerLimits};
use super::router::{call, harden, health, St};
use crate::error::CoreError;
use crate::market::guard::ReadAuth;
use crate::service::{Caller, Core};

async fn market_offerings(State(core): St) -> Result<Json<OfferingList>, CoreError> {
    call(core, Caller::Admin, |c, _| c.market_offerings()).await
}

async fn market_accept(
    State(core): St,
    peer: Option<ConnectInfo<SocketAddr>>,
    ApiJson(req): ApiJson<AcceptRequest>,
) -> Result<Json<AccessEnvelope>, CoreError> {
    if let Some(ConnectInfo(peer)) = peer {
        let now = u64::try_from(crate::service::now_ms() / 1000).unwrap_or(0);
        if let Err(e) = core.market_guard.admit_accept(peer.ip(), now) {
            tracing::info!(peer = %peer, "accept refused: rate limit");
            return Err(e);
        }
    }
    call(core, Caller::Admin, move |c, _| c.market_accept(&req)).await
}

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
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

/// A channel's status: only for a request signed by the channel's client key (401).
async fn market_channel(
    State(core): St,
    headers: HeaderMap,
    uri: Uri,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<ChannelStatus>, CoreError> {
    let id = super::extract::path_param(id)?;
    let auth = ReadAuth {
        key: header(&headers, read_auth::KEY),
        ts: header(&headers, read_auth::TS),
        sig: header(&headers, read_auth::SIG),
        nonce: header(&headers, read_auth::NONCE),
    };
    let path = uri.path().to_string();
    call(core, Caller::Admin, move |c, _| {
        c.check_market_read(&id, &auth, "GET", &path)?;
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

/// Serves the market API on its own address, with `limits`, until `stop` turns true (over
/// TLS with `tls` when given).
pub async fn start_market(
    core: Arc<Core>,
    listen: SocketAddr,
    limits: ServerLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = market_router(core);
    let task = tokio::spawn(serve(listener, app, limits, tls, stop));
    Ok((addr, task))
}
