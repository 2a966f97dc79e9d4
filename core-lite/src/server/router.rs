//! The Service API's router: one handler per operation of DESIGN §3 (the client-role
//! operations' handlers are in `buyer`), an admin read endpoint, the OpenAPI document and a
//! health check (which reports whether the storage takes writes). Every handler runs its
//! database work on the blocking pool.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::Serialize;
use service_api::{self as api, paths, ErrorCode, ErrorDetail};

use super::buyer;
use super::error::error_response;
use super::extract::{path_param, Authed, Valid};
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
    Valid(req): Valid<api::AuthClientRequest>,
) -> Result<Json<api::AuthClientResponse>, CoreError> {
    let key = req.client_key.clone();
    let r = call(core, who, move |c, who| c.auth_client(who, &req)).await;
    match &r {
        Ok(_) => tracing::info!(client_key = %key, "AuthClient: accepted"),
        Err(e) => tracing::info!(client_key = %key, code = ?e.code(), "AuthClient: denied"),
    }
    if let Err(CoreError::AuthFailed { delay }) = &r {
        // The throttle's delay for a failure, waited here: no blocking thread and no
        // database connection is held meanwhile.
        tokio::time::sleep(*delay).await;
    }
    r
}

async fn set_product_config(
    State(core): St,
    Authed(who): Authed,
    Valid(req): Valid<api::SetProductConfigRequest>,
) -> Result<Json<api::SetProductConfigResponse>, CoreError> {
    call(core, who, move |c, who| c.set_product_config(who, &req)).await
}

async fn start_session(
    State(core): St,
    Authed(who): Authed,
    Valid(req): Valid<api::StartSessionRequest>,
) -> Result<Json<api::StartSessionResponse>, CoreError> {
    call(core, who, move |c, who| c.start_session(who, &req)).await
}

async fn find_session(
    State(core): St,
    Authed(who): Authed,
    Valid(req): Valid<api::FindSessionRequest>,
) -> Result<Json<api::StartSessionResponse>, CoreError> {
    call(core, who, move |c, who| c.find_session(who, &req)).await
}

async fn update_session(
    State(core): St,
    Authed(who): Authed,
    Valid(req): Valid<api::UpdateSessionRequest>,
) -> Result<Json<api::UpdateSessionResponse>, CoreError> {
    call(core, who, move |c, who| c.update_session(who, &req)).await
}

async fn update_sessions(
    State(core): St,
    Authed(who): Authed,
    Valid(req): Valid<api::UpdateSessionsRequest>,
) -> Result<Json<api::UpdateSessionsResponse>, CoreError> {
    call(core, who, move |c, who| c.update_sessions(who, &req)).await
}

/// How often a waiting WatchStatus looks for new changes.
const WATCH_POLL: std::time::Duration = std::time::Duration::from_millis(20);
/// How long a WatchStatus waits when the caller does not say.
const WATCH_DEFAULT_WAIT_MS: u64 = 10_000;

/// WatchStatus: long-poll on the status history (a cheap indexed look every
/// [`WATCH_POLL`] while waiting, on the blocking pool like every other call).
async fn watch_status(
    State(core): St,
    stopping: Option<axum::Extension<super::listen::Stopping>>,
    Authed(who): Authed,
    Valid(req): Valid<api::WatchStatusRequest>,
) -> Result<Json<api::WatchStatusResponse>, CoreError> {
    let mut stopping = stopping.map(|s| s.0 .0);
    let wait_ms = req
        .wait_ms
        .unwrap_or(WATCH_DEFAULT_WAIT_MS)
        .min(core.watch_max_wait_ms());
    let wait = std::time::Duration::from_millis(wait_ms);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let cursor = req.cursor;
        let r = call(core.clone(), who.clone(), move |c, who| {
            c.watch_status_once(who, cursor)
        })
        .await?;
        let now = tokio::time::Instant::now();
        let stop = stopping.as_ref().is_some_and(|s| *s.borrow());
        if !r.changes.is_empty() || req.cursor.is_none() || now >= deadline || stop {
            return Ok(r);
        }
        let pause = tokio::time::sleep(WATCH_POLL.min(deadline - now));
        match &mut stopping {
            Some(s) => {
                tokio::select! {
                    _ = pause => {}
                    changed = s.changed() => {
                        // The listener is gone: answer now.
                        if changed.is_err() {
                            return Ok(r);
                        }
                    }
                }
            }
            None => pause.await,
        }
    }
}

async fn stop_session(
    State(core): St,
    Authed(who): Authed,
    Valid(req): Valid<api::StopSessionRequest>,
) -> Result<Json<api::StopSessionResponse>, CoreError> {
    call(core, who, move |c, who| c.stop_session(who, &req)).await
}

async fn get_access(
    State(core): St,
    Authed(who): Authed,
    Valid(req): Valid<api::GetAccessRequest>,
) -> Result<Json<api::AccessMessage>, CoreError> {
    call(core, who, move |c, who| c.get_access(who, &req)).await
}

async fn admin_channel(
    State(core): St,
    Authed(who): Authed,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<api::ChannelInfo>, CoreError> {
    let id = path_param(id)?;
    call(core, who, move |c, who| {
        if *who != Caller::Admin {
            return Err(CoreError::Forbidden("admin token required".into()));
        }
        c.channel_info(&id)
    })
    .await
}

async fn openapi() -> Json<&'static serde_json::Value> {
    Json(crate::openapi::document())
}

/// `GET /health`: `ok` (200, text) while the storage takes writes; 503 `unavailable` (JSON,
/// saying why) from a write that the storage refused (full disk, I/O error) until one
/// succeeds again; meanwhile each call (at most one per second) tries a tiny write.
pub(super) async fn health(State(core): St) -> Response {
    if core.db.fault().is_none() {
        return "ok\n".into_response();
    }
    let c = core.clone();
    match tokio::task::spawn_blocking(move || c.db.check_writable()).await {
        Ok(Ok(())) => "ok\n".into_response(),
        Ok(Err(fault)) => error_response(ErrorDetail {
            code: ErrorCode::Unavailable,
            message: format!(
                "storage not ready: {fault}; writes are answered 503 until one succeeds"
            ),
            status: None,
        }),
        Err(source) => CoreError::Task {
            what: "health",
            source,
        }
        .into_response(),
    }
}

async fn not_found() -> CoreError {
    CoreError::NotFound("no such endpoint (see /openapi.json)".into())
}

/// What every router gets: JSON 404 for unknown paths, a panic turned into a JSON 500 (the
/// process keeps serving), the body limit, and the metrics' request layer (outermost: it
/// counts every answer, also those three).
pub(super) fn harden(r: Router<Arc<Core>>, core: Arc<Core>) -> Router {
    r.fallback(not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| CoreError::Panicked.into_response(),
        ))
        .layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            core.clone(),
            crate::metrics::track,
        ))
        .with_state(core)
}

/// Every route of the Service API: (method, path in axum's syntax, handler). [`router`] is
/// built from this list, and a test checks it against the OpenAPI document both ways.
pub fn api_routes() -> Vec<(Method, String, MethodRouter<Arc<Core>>)> {
    vec![
        (Method::POST, paths::AUTH_CLIENT.into(), post(auth_client)),
        (
            Method::POST,
            paths::SET_PRODUCT_CONFIG.into(),
            post(set_product_config),
        ),
        (
            Method::POST,
            paths::START_SESSION.into(),
            post(start_session),
        ),
        (Method::POST, paths::FIND_SESSION.into(), post(find_session)),
        (
            Method::POST,
            paths::UPDATE_SESSION.into(),
            post(update_session),
        ),
        (
            Method::POST,
            paths::UPDATE_SESSIONS.into(),
            post(update_sessions),
        ),
        (Method::POST, paths::STOP_SESSION.into(), post(stop_session)),
        (Method::POST, paths::WATCH_STATUS.into(), post(watch_status)),
        (Method::POST, paths::GET_ACCESS.into(), post(get_access)),
        (
            Method::POST,
            paths::FETCH_OFFERINGS.into(),
            post(buyer::fetch_offerings),
        ),
        (
            Method::POST,
            paths::LIST_OFFERINGS.into(),
            post(buyer::list_offerings),
        ),
        (
            Method::POST,
            paths::ACCEPT_OFFERING.into(),
            post(buyer::accept_offering),
        ),
        (
            Method::POST,
            paths::LIST_CHANNELS.into(),
            post(buyer::list_channels),
        ),
        (
            Method::GET,
            format!("{}/:id", paths::ADMIN_CHANNELS),
            get(admin_channel),
        ),
        (Method::GET, paths::OPENAPI.into(), get(openapi)),
        (Method::GET, paths::HEALTH.into(), get(health)),
    ]
}

/// The router of the whole API, with `/metrics` and the web console (`/ui`, its admin
/// endpoints), which are not part of the Service API's OpenAPI document.
pub fn router(core: Arc<Core>) -> Router {
    let r = api_routes()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(&path, handler)
        })
        .merge(crate::metrics::routes())
        .merge(crate::ui::routes());
    harden(r, core)
}
