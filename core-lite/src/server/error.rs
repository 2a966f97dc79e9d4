//! Errors as HTTP answers: `{ "error": { "code", "message" } }` with the code's HTTP status.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use service_api::{ErrorBody, ErrorCode, ErrorDetail};

use crate::error::CoreError;

impl IntoResponse for CoreError {
    fn into_response(self) -> Response {
        let code = self.code();
        if matches!(code, ErrorCode::Internal | ErrorCode::Unavailable) {
            tracing::error!(error = %format!("{self:#}"), "request failed");
        }
        let status =
            StatusCode::from_u16(code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let message = match code {
            // Do not leak storage details to callers.
            ErrorCode::Internal => "internal error (see the core's log)".to_string(),
            _ => self.to_string(),
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code,
                message,
                status: self.status(),
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if code == ErrorCode::Unauthorized {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        resp
    }
}
