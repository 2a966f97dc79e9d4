//! The Service API's router: one handler per operation of DESIGN §3, an admin read
//! endpoint, the OpenAPI document and a health check. Every handler runs its database work
//! on the blocking pool.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;
use service_api::{self as api, paths};

use super::extract::{ApiJson, Authed};
use crate::error::CoreError;
use crate::service::{Caller, Core};

/// Runs `f` on the blocking pool.
pub(super) async fn call<T: Serialize + Send + 'static>(
    core: Arc<Core>,
    caller: Caller,
    f: impl FnOnce(&Core, &Caller) -> Result<T, CoreError> + Send + 'static,
) -> Result<Json<T>, CoreError> {
    let out = tokio::task::spawn_blocking(move || f(&core, &caller))
        .await
        .map_err(|source| CoreError::Task {
            what: "handler",
            source,
        })??;
    Ok(Json(out))
}

pub(super) type St = State<Arc<Core>>;

async fn auth_client(
    State(core): St,
    Authed(who): Authed,
    ApiJson(req): ApiJson<api::AuthClientRequest>,
) -> Result<Json<api::AuthClientResponse>, CoreError> {
    let key = req.client_key.clone();
    let r = call(core, who, move |c, who| c.auth_client(who, &req)).await;
    match &r {
        Ok(_) => tracing::info!(client_key = %key, "AuthClient: accepted"),
        Err(e) => tracing::info!(client_key = %key, code = ?e.code(), "AuthClient: denied"),
    }
    r
}

async fn set_product_config(
    State(core): St,
    Authed(who): Authed,
    ApiJson(req): ApiJson<api::SetProductConfigRequest>,
) -> Result<Json<api::SetProductConfigResponse>, CoreError> {
    call(core, who, move |c, who| c.set_product_config(who, &req)).await
}

async fn start_session(
    State(core): St,
    Authed(who): Authed,
    ApiJson(req): ApiJson<api::StartSessionRequest>,
) -> Result<Json<api::StartSessionResponse>, CoreError> {
    call(core, who, move |c, who| c.start_session(who, &req)).await
}

async fn update_session(
    State(core): St,
    Authed(who): Authed,
    ApiJson(req): ApiJson<api::UpdateSessionRequest>,
) -> Result<Json<api::UpdateSessionResponse>, CoreError> {
    call(core, who, move |c, who| c.update_session(who, &req)).await
}

async fn stop_session(
    State(core): St,
    Authed(who): Authed,
    ApiJson(req): ApiJson<api::StopSessionRequest>,
) -> Result<Json<api::StopSessionResponse>, CoreError> {
    call(core, who, move |c, who| c.stop_session(who, &req)).await
}

async fn get_access(
    State(core): St,
    Authed(who): Authed,
    ApiJson(req): ApiJson<api::GetAccessRequest>,
) -> Result<Json<api::AccessMessage>, CoreError> {
    call(core, who, move |c, who| c.get_access(who, &req)).await
}

async fn admin_channel(
    State(core): St,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<api::ChannelInfo>, CoreError> {
    call(core, who, move |c, who| {
        if *who != Caller::Admin {
            return Err(CoreError::Forbidden("admin token required".into()));
        }
        c.channel_info(&id)
    })
    .await
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

pub(super) async fn health() -> &'static str {
    "ok\n"
}

async fn not_found() -> CoreError {
    CoreError::NotFound("no such endpoint (see /openapi.json)".into())
}

/// What every router gets: JSON 404 for unknown paths, a panic turned into a JSON 500 (the
/// process keeps serving), and the body limit.
pub(super) fn harden(r: Router<Arc<Core>>, core: Arc<Core>) -> Router {
    r.fallback(not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| CoreError::Panicked.into_response(),
        ))
        .layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY_BYTES))
        .with_state(core)
}

/// The router of the whole API.
pub fn router(core: Arc<Core>) -> Router {
    harden(
        Router::new()
            .route(paths::AUTH_CLIENT, post(auth_client))
            .route(paths::SET_PRODUCT_CONFIG, post(set_product_config))
            .route(paths::START_SESSION, post(start_session))
            .route(paths::UPDATE_SESSION, post(update_session))
            .route(paths::STOP_SESSION, post(stop_session))
            .route(paths::GET_ACCESS, post(get_access))
            .route(
                &format!("{}/:id", paths::ADMIN_CHANNELS),
                get(admin_channel),
            )
            .route(paths::OPENAPI, get(openapi))
            .route(paths::HEALTH, get(health)),
        core,
    )
}
