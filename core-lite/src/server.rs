//! The HTTP/JSON server: the Service API of DESIGN §3, an admin read endpoint, the OpenAPI
//! document and a health check. Every handler runs its database work on the blocking pool;
//! every error is `{ "error": { "code", "message" } }` with the code's HTTP status.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, MethodRouter};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::service::{now_ms, Caller, Core, CoreError};
use service_api::{self as api, paths, ErrorBody, ErrorCode, ErrorDetail, Validate};

/// An error answer: `{"error":{"code","message"[,"status"]}}` with the code's HTTP status.
fn error_response(detail: ErrorDetail) -> Response {
    let code = detail.code;
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(ErrorBody { error: detail })).into_response();
    if code == ErrorCode::Unauthorized {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
    }
    resp
}

impl IntoResponse for CoreError {
    fn into_response(self) -> Response {
        let code = self.code();
        if matches!(code, ErrorCode::Internal | ErrorCode::Unavailable) {
            tracing::error!(error = %format!("{self:#}"), "request failed");
        }
        let message = match code {
            // Do not leak storage details to callers.
            ErrorCode::Internal => "internal error (see the core's log)".to_string(),
            _ => self.to_string(),
        };
        error_response(ErrorDetail {
            code,
            message,
            status: self.status(),
        })
    }
}

/// Why a request body was refused before it reached the core.
#[derive(Debug, thiserror::Error)]
pub enum BodyRejection {
    /// 415 `unsupported_media_type`: the body is not declared as JSON.
    #[error("{0}")]
    NotJson(String),
    #[error(transparent)]
    Core(#[from] CoreError),
}

impl IntoResponse for BodyRejection {
    fn into_response(self) -> Response {
        match self {
            BodyRejection::NotJson(message) => error_response(ErrorDetail {
                code: ErrorCode::UnsupportedMediaType,
                message,
                status: None,
            }),
            BodyRejection::Core(e) => e.into_response(),
        }
    }
}

/// True when a `Content-Type` value names JSON: `application/json` or
/// `application/<anything>+json`, with optional parameters; a `charset`, when given, must be
/// UTF-8 (RFC 8259).
pub fn is_json_media_type(value: &str) -> bool {
    let mut parts = value.split(';');
    let essence = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let json = match essence.split_once('/') {
        Some(("application", sub)) => {
            sub == "json" || (sub.len() > 5 && sub.ends_with("+json") && !sub.contains('/'))
        }
        _ => false,
    };
    json && parts.all(|p| match p.split_once('=') {
        Some((name, v)) if name.trim().eq_ignore_ascii_case("charset") => {
            let v = v.trim().trim_matches('"');
            v.eq_ignore_ascii_case("utf-8") || v.eq_ignore_ascii_case("utf8")
        }
        Some(_) => true,
        None => p.trim().is_empty(),
    })
}

/// A JSON body (declared as JSON, else 415) of at most [`api::MAX_BODY_BYTES`], with errors
/// in the API's format.
pub struct ApiJson<T>(pub T);

#[axum::async_trait]
impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = BodyRejection;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or(""));
        if !content_type.is_some_and(is_json_media_type) {
            return Err(BodyRejection::NotJson(match content_type {
                None => "no Content-Type: send the body as application/json".into(),
                Some(t) => format!(
                    "Content-Type {:?} is not JSON: send application/json",
                    t.chars().take(64).collect::<String>()
                ),
            }));
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > api::MAX_BODY_BYTES as u64) {
            return Err(CoreError::PayloadTooLarge.into());
        }
        let bytes = axum::body::to_bytes(req.into_body(), api::MAX_BODY_BYTES)
            .await
            .map_err(|e| {
                if format!("{e:#}").contains("length limit") {
                    CoreError::PayloadTooLarge
                } else {
                    CoreError::BadRequest(format!("could not read the request body: {e}"))
                }
            })?;
        let v = serde_json::from_slice(&bytes)
            .map_err(|e| CoreError::BadRequest(format!("invalid request body: {e}")))?;
        Ok(ApiJson(v))
    }
}

/// A Service API request: an [`ApiJson`] body that also keeps the rules of its type
/// ([`Validate`]; 422 `invalid` naming the field otherwise).
pub struct Valid<T>(pub T);

#[axum::async_trait]
impl<S: Send + Sync, T: DeserializeOwned + Validate> FromRequest<S> for Valid<T> {
    type Rejection = BodyRejection;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let ApiJson(v) = ApiJson::<T>::from_request(req, state).await?;
        v.validate()
            .map_err(|e| CoreError::Invalid(e.to_string()))?;
        Ok(Valid(v))
    }
}

/// A path parameter; a value that is not valid percent-encoded UTF-8 is a 400 in the API's
/// format.
fn path_param(p: Result<Path<String>, PathRejection>) -> Result<String, CoreError> {
    p.map(|Path(v)| v)
        .map_err(|e| CoreError::BadRequest(format!("invalid path parameter: {e}")))
}

fn bearer(headers: &HeaderMap) -> Result<String, CoreError> {
    let v = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or(CoreError::Unauthorized)?;
    let t = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .ok_or(CoreError::Unauthorized)?;
    Ok(t.trim().to_string())
}

/// The authenticated caller, checked before the body is read.
pub struct Authed(pub Caller);

#[axum::async_trait]
impl FromRequestParts<Arc<Core>> for Authed {
    type Rejection = CoreError;

    async fn from_request_parts(
        parts: &mut Parts,
        core: &Arc<Core>,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer(&parts.headers)?;
        if let Some(caller) = core.cached_caller(&token) {
            return Ok(Authed(caller));
        }
        let core = core.clone();
        let caller = tokio::task::spawn_blocking(move || core.authenticate(&token))
            .await
            .map_err(|e| CoreError::Internal(format!("auth task failed: {e}")))??;
        Ok(Authed(caller))
    }
}

/// Runs `f` on the blocking pool.
async fn call<T: Serialize + Send + 'static>(
    core: Arc<Core>,
    caller: Caller,
    f: impl FnOnce(&Core, &Caller) -> Result<T, CoreError> + Send + 'static,
) -> Result<Json<T>, CoreError> {
    let out = tokio::task::spawn_blocking(move || f(&core, &caller))
        .await
        .map_err(|e| CoreError::Internal(format!("handler task failed: {e}")))??;
    Ok(Json(out))
}

type St = State<Arc<Core>>;

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

async fn update_session(
    State(core): St,
    Authed(who): Authed,
    Valid(req): Valid<api::UpdateSessionRequest>,
) -> Result<Json<api::UpdateSessionResponse>, CoreError> {
    call(core, who, move |c, who| c.update_session(who, &req)).await
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

async fn health() -> &'static str {
    "ok\n"
}

async fn not_found() -> CoreError {
    CoreError::NotFound("no such endpoint (see /openapi.json)".into())
}

async fn market_offerings(State(core): St) -> Result<Json<crate::market::OfferingList>, CoreError> {
    call(core, Caller::Admin, |c, _| c.market_offerings()).await
}

async fn market_accept(
    State(core): St,
    ApiJson(req): ApiJson<crate::market::AcceptRequest>,
) -> Result<Json<crate::market::SignedAccess>, CoreError> {
    call(core, Caller::Admin, move |c, _| c.market_accept(&req)).await
}

async fn market_cheque(
    State(core): St,
    ApiJson(req): ApiJson<crate::market::Cheque>,
) -> Result<Json<crate::market::ChequeReceipt>, CoreError> {
    let r = call(core, Caller::Admin, move |c, _| c.market_cheque(&req)).await;
    if let Err(e) = &r {
        tracing::info!(code = ?e.code(), error = %e, "cheque refused");
    }
    r
}

async fn market_channel(
    State(core): St,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<crate::market::ChannelStatus>, CoreError> {
    let id = path_param(id)?;
    call(core, Caller::Admin, move |c, _| {
        c.market_channel_status(&id)
    })
    .await
}

/// What every router gets: JSON 404 for unknown paths, a panic turned into a JSON 500 (the
/// process keeps serving), and the body limit.
fn harden(r: Router<Arc<Core>>, core: Arc<Core>) -> Router {
    r.fallback(not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                CoreError::Internal("handler panicked".into()).into_response()
            },
        ))
        .layer(axum::extract::DefaultBodyLimit::max(api::MAX_BODY_BYTES))
        .with_state(core)
}

/// The agent's market API (meant to be reachable by clients; no bearer token: accepts are
/// signed by the client's key, cheques by the channel's client key).
pub fn market_router(core: Arc<Core>) -> Router {
    use crate::market::paths as m;
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

/// Serves the market API on its own address until `stop` turns true.
pub async fn start_market(
    core: Arc<Core>,
    listen: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = market_router(core);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stop.wait_for(|s| *s).await;
            })
            .await
    });
    Ok((addr, task))
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
        (
            Method::POST,
            paths::UPDATE_SESSION.into(),
            post(update_session),
        ),
        (Method::POST, paths::STOP_SESSION.into(), post(stop_session)),
        (Method::POST, paths::GET_ACCESS.into(), post(get_access)),
        (
            Method::GET,
            format!("{}/:id", paths::ADMIN_CHANNELS),
            get(admin_channel),
        ),
        (Method::GET, paths::OPENAPI.into(), get(openapi)),
        (Method::GET, paths::HEALTH.into(), get(health)),
    ]
}

/// The router of the whole API.
pub fn router(core: Arc<Core>) -> Router {
    let r = api_routes()
        .into_iter()
        .fold(Router::new(), |r, (_, path, handler)| {
            r.route(&path, handler)
        });
    harden(r, core)
}

/// A server running in the background (used by `serve` and by the testkit).
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    ticker: JoinHandle<()>,
}

impl RunningServer {
    /// Graceful stop: no new connections, running requests finish.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.ticker.abort();
        let _ = self.ticker.await;
        match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Waits until the server ends (it ends only on error or after [`stop`](Self::stop)).
    pub async fn wait(&mut self) -> std::io::Result<()> {
        match (&mut self.server).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Turns true when the server is asked to stop (for companion tasks).
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// Binds `listen` and serves the API; the billing timers run every `tick`.
pub async fn start(
    core: Arc<Core>,
    listen: SocketAddr,
    tick: Duration,
) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, mut stopped) = watch::channel(false);
    let app = router(core.clone());
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await
    });
    let ticker = tokio::spawn(async move {
        let mut iv = tokio::time::interval(tick);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            iv.tick().await;
            let c = core.clone();
            match tokio::task::spawn_blocking(move || c.tick(now_ms())).await {
                Ok(Ok(changed)) => {
                    for (ch, st) in changed {
                        tracing::info!(channel = %ch, status = %st, "timer changed channel status");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "billing timer failed"),
                Err(e) => tracing::warn!(error = %e, "billing timer task failed"),
            }
        }
    });
    Ok(RunningServer {
        addr,
        stop,
        server,
        ticker,
    })
}
