//! Request extractors: the JSON body (bounded, with errors in the API's format) and the
//! bearer token's caller.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use service_api::{self as api, ErrorCode, ErrorDetail, Validate};

use super::error::error_response;
use super::listen::{BodyTimeout, ServerLimits};

use crate::error::CoreError;
use crate::service::{Caller, Core};

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

/// A JSON body (declared as JSON, else 415) of at most [`api::MAX_BODY_BYTES`], complete
/// within the listener's [`BodyTimeout`] of its head (else 400), with errors in the API's
/// format.
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
        let within = req
            .extensions()
            .get::<BodyTimeout>()
            .map_or(ServerLimits::DEFAULT_HEADER_TIMEOUT, |t| t.0);
        let read = axum::body::to_bytes(req.into_body(), api::MAX_BODY_BYTES);
        let bytes = tokio::time::timeout(within, read)
            .await
            .map_err(|_| {
                CoreError::BadRequest(format!(
                    "the request body was not complete within {} ms of its head",
                    within.as_millis()
                ))
            })?
            .map_err(|e| {
                if format!("{e:#}").contains("length limit") {
                    CoreError::PayloadTooLarge
                } else {
                    CoreError::BadRequest(format!("could not read the request body: {e}"))
                }
            })?;
        // Every request of the API is a JSON object (a struct of only optional fields would
        // otherwise also read from an array).
        if let Some(&first) = bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            if first != b'{' {
                return Err(
                    CoreError::BadRequest("the request body must be a JSON object".into()).into(),
                );
            }
        }
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
pub fn path_param(p: Result<Path<String>, PathRejection>) -> Result<String, CoreError> {
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
            .map_err(|source| CoreError::Task {
                what: "auth",
                source,
            })??;
        Ok(Authed(caller))
    }
}
