//! Errors of the wire format: stable [`ErrorCode`]s with their HTTP status, the error body,
//! and [`ApiError`], what the typed client returns.
//!
//! No [`ApiError`] holds any part of a response body the client could not read: bodies can
//! carry secrets (GetAccess answers with the VPN password). See [`crate::body`].

use serde::{Deserialize, Serialize};

use crate::body::BodyError;
use crate::ServiceStatus;

/// Stable error codes of the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: body is not JSON or does not match the request type (a field breaks its rule,
    /// [`crate::rules`]).
    BadRequest,
    /// 413: body larger than [`MAX_BODY_BYTES`](crate::MAX_BODY_BYTES).
    PayloadTooLarge,
    /// 415: the body is not declared as JSON (`Content-Type: application/json`).
    UnsupportedMediaType,
    /// 401: missing or unknown bearer token.
    Unauthorized,
    /// 403: the token may not call this operation (e.g. product token on GetAccess).
    Forbidden,
    /// 403: unknown client key or wrong password (deliberately not told apart).
    AuthFailed,
    /// 403: the channel exists but its status does not admit service (message says which).
    ChannelInactive,
    /// 404: unknown session / channel / client key.
    NotFound,
    /// 409: conflicting state (e.g. session already stopped with other counts).
    Conflict,
    /// 422: semantically invalid input (validation errors name JSON pointers;
    /// [`Validate`](crate::rules::Validate)).
    Invalid,
    /// 422: a usage report would take the channel's byte total beyond
    /// [`MAX_CHANNEL_BYTES`](crate::rules::MAX_CHANNEL_BYTES); nothing was recorded. Counts
    /// of the session above what is recorded are refused the same way every time.
    UsageOverflow,
    /// 429: too many failed attempts; retry later.
    RateLimited,
    /// 503: storage unavailable.
    Unavailable,
    /// 502: another core this one had to ask (an agent's market) could not be reached, or
    /// did not answer as a market (the message says which URL and why).
    BadGateway,
    /// 500: a bug; never caused by input.
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::AuthFailed | Self::ChannelInactive => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::Invalid | Self::UsageOverflow => 422,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
            Self::BadGateway => 502,
            Self::Internal => 500,
        }
    }
}

/// The body of every error answer: `{"error":{"code":…,"message":…}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Error))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// For `channel_inactive`: the channel's status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ServiceStatus>,
}

/// Errors of the typed client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("core at {url} unreachable or timed out: {source}")]
    Transport {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("core answered HTTP {http_status} {code:?}: {message}")]
    Api {
        http_status: u16,
        code: ErrorCode,
        message: String,
        status: Option<ServiceStatus>,
    },
    /// The answer's body did not read as the expected type (or, for an error status, as an
    /// error body). The [`BodyError`] names the field and the kind of problem; no part of
    /// the body is kept (it may hold a password).
    #[error("core answered HTTP {http_status} with a body that could not be read: {source}")]
    UnreadableBody {
        http_status: u16,
        #[source]
        source: BodyError,
    },
    /// Kept so that code matching on it still compiles; the [`Client`](crate::Client) never
    /// returns it any more (it returns [`ApiError::UnreadableBody`]). `body` is never shown.
    #[error("core answered HTTP {http_status} with an unreadable body")]
    BadResponse { http_status: u16, body: String },
    #[error("invalid core URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
}

impl ApiError {
    /// The error code, when the core answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
    /// True when the core could not be reached (worth retrying / buffering).
    pub fn is_transport(&self) -> bool {
        matches!(self, Self::Transport { .. })
            || matches!(
                self,
                Self::Api {
                    code: ErrorCode::Unavailable | ErrorCode::Internal,
                    ..
                }
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_code_wire_names() {
        let b = ErrorBody {
            error: ErrorDetail {
                code: ErrorCode::AuthFailed,
                message: "m".into(),
                status: None,
            },
        };
        assert_eq!(
            serde_json::to_string(&b).expect("ser"),
            r#"{"error":{"code":"auth_failed","message":"m"}}"#
        );
    }
}
