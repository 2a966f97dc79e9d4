//! Errors as HTTP answers: `{ "error": { "code", "message" } }` with the code's HTTP status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use service_api::{ErrorBody, ErrorCode, ErrorDetail};

use crate::error::CoreError;

/// An error answer: `{"error":{"code","message"[,"status"]}}` with the code's HTTP status.
pub(super) fn error_response(detail: ErrorDetail) -> Response {
    let code = detail.code;
    let status =
        StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, Json(ErrorBody { error: detail })).into_response();
    // For the metrics' request layer (`code` label).
    resp.extensions_mut().insert(code);
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
        let mut resp = error_response(ErrorDetail {
            code,
            message,
            status: self.status(),
        });
        if let Some(after) = self.retry_after() {
            let secs = after.as_millis().div_ceil(1000).max(1);
            if let Ok(v) = header::HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}
