//! Request extractors: the JSON body (bounded, with errors in the API's format) and the
//! bearer token's caller.

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use serde::de::DeserializeOwned;
use service_api as api;

use crate::error::CoreError;
use crate::service::{Caller, Core};

/// A JSON body of at most [`api::MAX_BODY_BYTES`], with errors in the API's format.
pub struct ApiJson<T>(pub T);

#[axum::async_trait]
impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = CoreError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > api::MAX_BODY_BYTES as u64) {
            return Err(CoreError::PayloadTooLarge);
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
            .map_err(|source| CoreError::Task {
                what: "auth",
                source,
            })??;
        Ok(Authed(caller))
    }
}
