//! [`CoreError`]: the error of every core operation, each case mapped to one stable wire
//! [`ErrorCode`].

use std::path::PathBuf;

use service_api::{self as api, ErrorCode, ServiceStatus};

use crate::jcs::JcsError;
use crate::keys::KeyError;
use crate::offering::OfferingError;
use crate::signing::SigningError;
use crate::store::StoreError;

/// Errors of core operations; each maps to one stable wire [`ErrorCode`] ([`CoreError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request body larger than {} bytes", api::MAX_BODY_BYTES)]
    PayloadTooLarge,
    #[error("missing or unknown bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    /// A market read without a valid signature by the channel's client key (401).
    #[error("signed read refused: {0}")]
    UnsignedRead(String),
    /// Too many accepts from one address (429).
    #[error("too many accepts from {who}; retry in {} s", retry_after.as_millis().div_ceil(1000).max(1))]
    TooManyAccepts {
        who: String,
        retry_after: std::time::Duration,
    },
    /// Unknown client key or wrong password; the answer waits `delay` (the AuthClient
    /// throttle's delay for failures, waited out by the HTTP handler).
    #[error("unknown client key or wrong password")]
    AuthFailed { delay: std::time::Duration },
    #[error("channel {channel} is {status}: service not available")]
    ChannelInactive {
        channel: String,
        status: ServiceStatus,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    /// A usage report would take a channel's byte total beyond [`api::MAX_CHANNEL_BYTES`].
    #[error(
        "usage report refused: channel {channel} has {total} bytes recorded, and {delta} more \
         would exceed {} (nothing was recorded)",
        api::MAX_CHANNEL_BYTES
    )]
    UsageOverflow {
        channel: String,
        total: u64,
        delta: u64,
    },
    #[error(
        "too many failed logins from {who}; retry in {} s (its password was not checked)",
        retry_after.as_millis().div_ceil(1000).max(1)
    )]
    RateLimited {
        who: String,
        retry_after: std::time::Duration,
    },
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("keys: {0}")]
    Keys(#[from] KeyError),
    #[error("encoding {what} as JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Canonicalize(#[from] JcsError),
    /// An offering the agent's input describes is refused (422 `invalid`); its
    /// [`OfferingError::Invalid`] names the JSON pointer of every bad field.
    #[error("offering rejected: {0}")]
    OfferingRejected(#[source] OfferingError),
    /// The metrics could not be encoded.
    #[error("encoding the metrics: {0}")]
    Metrics(#[source] std::fmt::Error),
    /// The offering a signed access message carries is rejected (403).
    #[error("access message refused: the offering it carries is rejected: {0}")]
    AccessOffering(#[source] OfferingError),
    /// A signed message refused (403) or that could not be signed or checked.
    #[error(transparent)]
    Signing(#[from] SigningError),
    /// A row that another one refers to is not there (the database is inconsistent).
    #[error("{what} {key} missing")]
    Missing { what: &'static str, key: String },
    #[error("{what} task failed: {source}")]
    Task {
        what: &'static str,
        #[source]
        source: tokio::task::JoinError,
    },
    #[error("handler panicked")]
    Panicked,
    #[error("http client: {0}")]
    HttpClient(#[source] reqwest::Error),
    /// Another core's market could not be reached or understood.
    #[error("market at {url}: {source}")]
    MarketUnreachable {
        url: String,
        #[source]
        source: MarketCallError,
    },
    /// An error answered by another core (market protocol).
    #[error("the agent answered {code:?}: {message}")]
    Remote { code: ErrorCode, message: String },
    /// TLS set-up of a listener (certificate, key).
    #[error("TLS: {0}")]
    Tls(String),
}

/// What went wrong on the way to another core's market and back.
#[derive(Debug, thiserror::Error)]
pub enum MarketCallError {
    /// With every cause: the TLS reason (such as a fingerprint mismatch) is deep inside.
    #[error("{}", service_api::tls::error_chain(.0))]
    Http(#[from] reqwest::Error),
    /// A plain `http://` URL for an agent whose signed offering pins its TLS key.
    #[error(
        "refusing plain http://: the agent's signed offering pins its TLS key \
         ({} {pin}), so it is reached over https:// only (a downgrade to http:// is refused)",
        service_api::tls::PIN_FIELD
    )]
    Downgrade { pin: String },
    /// The key the server presented is not the one its offerings pin.
    #[error("{0}")]
    PinMismatch(service_api::tls::PinMismatch),
    /// TLS without a pin, and no trusted root vouches for the server's certificate.
    #[error("the server's certificate is not trusted ({0}) and its offerings pin no TLS key: give --ca-file")]
    Untrusted(String),
    #[error("TLS client: {0}")]
    TlsSetup(#[from] service_api::tls::TlsError),
    #[error("answer larger than 4 MiB")]
    TooLarge,
    #[error("unreadable answer: {0}")]
    Unreadable(#[source] serde_json::Error),
    #[error("HTTP {0}")]
    Status(u16),
    /// The other core answered an error that the caller of this core cannot act on as its
    /// own (a client-role operation passes the agent's `not_found`, `conflict` and
    /// `invalid` on, and reports anything else as this).
    #[error("it answered {code:?}: {message}")]
    Answered { code: ErrorCode, message: String },
    /// Its answer came but does not hold (a signature or the access template).
    #[error("its answer does not verify: {0}")]
    Unverified(String),
}

impl CoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::BadRequest(_) => ErrorCode::BadRequest,
            CoreError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            CoreError::Unauthorized | CoreError::UnsignedRead(_) => ErrorCode::Unauthorized,
            CoreError::TooManyAccepts { .. } => ErrorCode::RateLimited,
            CoreError::Forbidden(_) | CoreError::AccessOffering(_) => ErrorCode::Forbidden,
            CoreError::AuthFailed { .. } => ErrorCode::AuthFailed,
            CoreError::ChannelInactive { .. } => ErrorCode::ChannelInactive,
            CoreError::NotFound(_) => ErrorCode::NotFound,
            CoreError::Conflict(_) => ErrorCode::Conflict,
            CoreError::Invalid(_) | CoreError::OfferingRejected(_) => ErrorCode::Invalid,
            CoreError::UsageOverflow { .. } => ErrorCode::UsageOverflow,
            CoreError::RateLimited { .. } => ErrorCode::RateLimited,
            CoreError::MarketUnreachable { .. } => ErrorCode::BadGateway,
            CoreError::Remote { code, .. } => *code,
            CoreError::Store(e) if e.is_unavailable() => ErrorCode::Unavailable,
            CoreError::Signing(e) if e.is_refusal() => ErrorCode::Forbidden,
            CoreError::Store(_)
            | CoreError::Io { .. }
            | CoreError::Keys(_)
            | CoreError::Json { .. }
            | CoreError::Canonicalize(_)
            | CoreError::Signing(_)
            | CoreError::Missing { .. }
            | CoreError::Task { .. }
            | CoreError::Panicked
            | CoreError::Metrics(_)
            | CoreError::HttpClient(_)
            | CoreError::Tls(_) => ErrorCode::Internal,
        }
    }

    /// When a retry may succeed, for [`CoreError::RateLimited`].
    pub fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            CoreError::RateLimited { retry_after, .. }
            | CoreError::TooManyAccepts { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }

    /// The channel's status, for [`CoreError::ChannelInactive`].
    pub fn status(&self) -> Option<ServiceStatus> {
        match self {
            CoreError::ChannelInactive { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
