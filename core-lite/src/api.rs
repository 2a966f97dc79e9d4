//! Wire types of the Service API and a typed HTTP client.
//!
//! This module builds without the `server` feature, so the adapters can depend on
//! `core-lite` with `default-features = false` and pull in neither axum nor SQLite.
//!
//! Every operation is a `POST` with a JSON body to the path in [`paths`]; callers send
//! `Authorization: Bearer <token>` (a product token for the server adapter, a client token
//! for the client adapter, or the admin token). Errors come back as
//! `{ "error": { "code": "...", "message": "..." } }` with a stable [`ErrorCode`].

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Request paths, one per operationId of the OpenAPI document.
pub mod paths {
    pub const AUTH_CLIENT: &str = "/v1/AuthClient";
    pub const SET_PRODUCT_CONFIG: &str = "/v1/SetProductConfig";
    pub const START_SESSION: &str = "/v1/StartSession";
    pub const UPDATE_SESSION: &str = "/v1/UpdateSession";
    pub const STOP_SESSION: &str = "/v1/StopSession";
    pub const GET_ACCESS: &str = "/v1/GetAccess";
    /// Admin: `GET /v1/admin/channels/{channel-id-or-client-key}` → [`ChannelInfo`].
    pub const ADMIN_CHANNELS: &str = "/v1/admin/channels";
    pub const OPENAPI: &str = "/openapi.json";
    pub const HEALTH: &str = "/health";
}

/// Largest request body the server accepts (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Longest client key / password / free-text field accepted on the wire (bytes).
pub const MAX_FIELD_LEN: usize = 256;
/// One unit of the VPN module (`MB`) in bytes.
pub const BYTES_PER_UNIT: u64 = 1_000_000;

/// A channel's client key; for the VPN module it is the OpenVPN username.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClientKey(pub String);

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientKey({})", self.0)
    }
}
impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A secret (password or token). `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}
impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}
impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A session id issued by StartSession.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SessionId(pub String);

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({})", self.0)
    }
}
impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Service status of a channel (DESIGN §2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceStatus {
    Pending,
    Activating,
    Active,
    Suspending,
    Suspended,
    Terminating,
    Terminated,
}

impl ServiceStatus {
    pub const ALL: [ServiceStatus; 7] = [
        Self::Pending,
        Self::Activating,
        Self::Active,
        Self::Suspending,
        Self::Suspended,
        Self::Terminating,
        Self::Terminated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Activating => "activating",
            Self::Active => "active",
            Self::Suspending => "suspending",
            Self::Suspended => "suspended",
            Self::Terminating => "terminating",
            Self::Terminated => "terminated",
        }
    }

    /// AuthClient admits only these.
    pub fn admits_login(self) -> bool {
        matches!(self, Self::Activating | Self::Active)
    }

    /// The adapter must cut the client off at once.
    pub fn must_disconnect(self) -> bool {
        matches!(
            self,
            Self::Suspending | Self::Suspended | Self::Terminating | Self::Terminated
        )
    }

    /// No further service will ever be given on this channel.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Terminating | Self::Terminated)
    }
}

impl fmt::Display for ServiceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServiceStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| format!("unknown service status {s:?}"))
    }
}

/// Per-client speed limits in bits per second, from the offering's `additionalParams`.
/// Download = agent → client, upload = client → agent. `None` = no limit given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpeedLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_download_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_download_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_upload_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upload_bps: Option<u64>,
}

/// Keys of the VPN module's speed parameters (in `additionalParams`, decimal Mbit/s).
pub mod speed_keys {
    pub const MIN_UPLOAD: &str = "minUploadSpeed";
    pub const MAX_UPLOAD: &str = "maxUploadSpeed";
    pub const MIN_DOWNLOAD: &str = "minDownloadSpeed";
    pub const MAX_DOWNLOAD: &str = "maxDownloadSpeed";
    pub const ALL: [&str; 4] = [MIN_UPLOAD, MAX_UPLOAD, MIN_DOWNLOAD, MAX_DOWNLOAD];
}

/// Errors of [`parse_mbps`] and [`SpeedLimits::from_params`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeedError {
    #[error("{field}: {value:?} is not a positive decimal number of Mbit/s")]
    NotPositiveDecimal { field: String, value: String },
    #[error("{field}: {value:?} is too large (at most 100000 Mbit/s)")]
    TooLarge { field: String, value: String },
    #[error("{min_field} ({min}) is greater than {max_field} ({max})")]
    MinAboveMax {
        min_field: String,
        min: String,
        max_field: String,
        max: String,
    },
}

/// Parses a decimal Mbit/s string ("8", "0.5", "12.25") into bits per second, exactly
/// (no floats). At most 6 fractional digits (1 bit/s resolution); must be > 0.
pub fn parse_mbps(field: &str, value: &str) -> Result<u64, SpeedError> {
    let bad = || SpeedError::NotPositiveDecimal {
        field: field.to_string(),
        value: value.chars().take(32).collect(),
    };
    if value.is_empty() || value.len() > 24 {
        return Err(bad());
    }
    let (int, frac) = match value.split_once('.') {
        Some((i, f)) => (i, f),
        None => (value, ""),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
        || (value.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let int_v: u64 = int.parse().map_err(|_| bad())?;
    if int_v > 100_000 {
        return Err(SpeedError::TooLarge {
            field: field.to_string(),
            value: value.to_string(),
        });
    }
    let mut frac_v: u64 = 0;
    for i in 0..6 {
        let d = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        frac_v = frac_v * 10 + d;
    }
    let bps = int_v * 1_000_000 + frac_v;
    if bps == 0 {
        return Err(bad());
    }
    Ok(bps)
}

impl SpeedLimits {
    /// Reads the four speed keys from a string map (absent keys = no limit) and checks
    /// min ≤ max for each direction.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, SpeedError> {
        let get = |k: &str| params.get(k).map(|v| parse_mbps(k, v)).transpose();
        let s = SpeedLimits {
            min_upload_bps: get(speed_keys::MIN_UPLOAD)?,
            max_upload_bps: get(speed_keys::MAX_UPLOAD)?,
            min_download_bps: get(speed_keys::MIN_DOWNLOAD)?,
            max_download_bps: get(speed_keys::MAX_DOWNLOAD)?,
        };
        for (min, max, kmin, kmax) in [
            (
                s.min_upload_bps,
                s.max_upload_bps,
                speed_keys::MIN_UPLOAD,
                speed_keys::MAX_UPLOAD,
            ),
            (
                s.min_download_bps,
                s.max_download_bps,
                speed_keys::MIN_DOWNLOAD,
                speed_keys::MAX_DOWNLOAD,
            ),
        ] {
            if let (Some(a), Some(b)) = (min, max) {
                if a > b {
                    return Err(SpeedError::MinAboveMax {
                        min_field: kmin.into(),
                        min: params.get(kmin).cloned().unwrap_or_default(),
                        max_field: kmax.into(),
                        max: params.get(kmax).cloned().unwrap_or_default(),
                    });
                }
            }
        }
        Ok(s)
    }

    pub fn is_unlimited(&self) -> bool {
        self.max_download_bps.is_none()
            && self.max_upload_bps.is_none()
            && self.min_download_bps.is_none()
            && self.min_upload_bps.is_none()
    }
}

// ---------------------------------------------------------------------------------------
// Requests and responses. JSON field names are camelCase.

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthClientRequest {
    pub client_key: ClientKey,
    pub password: Secret,
    /// The connecting peer's address (`ip` or `ip:port`), for rate limiting and logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthClientResponse {
    pub client_key: ClientKey,
    pub channel_id: String,
    /// `activating` or `active` (anything else is answered with an error).
    pub status: ServiceStatus,
    pub speed: SpeedLimits,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetProductConfigRequest {
    /// The product is the one the bearer token belongs to.
    pub config: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SetProductConfigResponse {
    pub product_id: String,
    /// False when the stored config was already identical.
    pub changed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartSessionRequest {
    pub client_key: ClientKey,
    /// Idempotency key of this connection (e.g. `"<user>|<ip>:<port>|<connect-time>"`).
    /// A StartSession whose `connectionId` equals that of a session of the channel (open or
    /// already stopped) returns that session unchanged, whatever the channel's status (so an
    /// adapter that restarts does not double count, and a client-disconnect hook finds the
    /// session the monitor opened); any other StartSession needs a status that admits login
    /// and closes the channel's open session (with its last counts) first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_id: Option<String>,
    /// The client's real address `ip:port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_addr: Option<String>,
    /// The client's address inside the VPN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpn_addr: Option<String>,
}

impl StartSessionRequest {
    /// A StartSession for `client_key` with an optional connection id and no addresses.
    pub fn new(client_key: ClientKey, connection_id: Option<&str>) -> Self {
        StartSessionRequest {
            client_key,
            connection_id: connection_id.map(str::to_string),
            client_addr: None,
            vpn_addr: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StartSessionResponse {
    pub session_id: SessionId,
    pub channel_id: String,
    pub status: ServiceStatus,
    pub speed: SpeedLimits,
    /// Counts already recorded for this session (non-zero only when resumed by connectionId).
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// Cumulative counters of one session, as the reporting side's OpenVPN counts them:
/// `bytesIn` = its `bytes_received`, `bytesOut` = its `bytes_sent`. Billing uses the sum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSessionRequest {
    pub session_id: SessionId,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateSessionResponse {
    pub session_id: SessionId,
    pub status: ServiceStatus,
    /// Recorded cumulative totals after this report (per-field maximum of all reports).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// All bytes of the channel (every session) and the derived units (floor of MB).
    pub channel_bytes: u64,
    pub units_used: u64,
}

/// Final cumulative counts. On a session already stopped, higher counts still win (per-field
/// maximum: the monitor may stop with its last bytecount before the client-disconnect hook
/// brings OpenVPN's exact final counters); lower or equal counts change nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopSessionRequest {
    pub session_id: SessionId,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StopSessionResponse {
    pub session_id: SessionId,
    pub status: ServiceStatus,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub channel_bytes: u64,
    pub units_used: u64,
    /// False when the session had already been stopped (the call changed nothing).
    pub stopped: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetAccessRequest {
    pub client_key: ClientKey,
}

/// The access message (validated against `templates/vpn/access.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessMessage {
    /// Hash of the access template.
    pub template_hash: String,
    pub username: ClientKey,
    pub password: Secret,
    /// `host` or `host:port` of the VPN server.
    pub service_endpoint_address: String,
    /// Product config (pushed by the server adapter) + the offering's speed parameters.
    pub additional_params: BTreeMap<String, String>,
}

/// What `GET /v1/admin/channels/{id}` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChannelInfo {
    pub channel_id: String,
    pub client_key: ClientKey,
    pub offering_hash: String,
    pub status: ServiceStatus,
    pub deposit: u64,
    pub bytes_total: u64,
    pub units_used: u64,
    pub open_session: Option<SessionId>,
    /// Status history, oldest first: (status, unix time in milliseconds).
    pub history: Vec<StatusChange>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub status: ServiceStatus,
    pub at_ms: i64,
    pub reason: String,
}

// ---------------------------------------------------------------------------------------
// Errors.

/// Stable error codes of the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// 400: body is not JSON or does not match the request type.
    BadRequest,
    /// 413: body larger than [`MAX_BODY_BYTES`].
    PayloadTooLarge,
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
    /// 422: semantically invalid input (validation errors name JSON pointers).
    Invalid,
    /// 429: too many failed attempts; retry later.
    RateLimited,
    /// 503: storage unavailable.
    Unavailable,
    /// 500: a bug; never caused by input.
    Internal,
}

impl ErrorCode {
    pub fn http_status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::PayloadTooLarge => 413,
            Self::Unauthorized => 401,
            Self::Forbidden | Self::AuthFailed | Self::ChannelInactive => 403,
            Self::NotFound => 404,
            Self::Conflict => 409,
            Self::Invalid => 422,
            Self::RateLimited => 429,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
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
    #[error("core answered HTTP {http_status} with an unreadable body: {body}")]
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

/// Typed client of the Service API.
#[derive(Clone)]
pub struct Client {
    base: String,
    token: Secret,
    http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("base", &self.base).finish()
    }
}

impl Client {
    /// `base` like `http://127.0.0.1:7700`; `timeout` bounds each whole call.
    pub fn new(base: &str, token: Secret, timeout: Duration) -> Result<Self, ApiError> {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ApiError::BadUrl {
                url: base,
                reason: "must start with http:// or https://".into(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            // Idle keep-alive connections kept for reuse: enough for steady traffic; a burst's
            // extra connections are closed instead of holding buffers and descriptors.
            .pool_max_idle_per_host(16)
            .no_proxy()
            .build()
            .map_err(|e| ApiError::Transport {
                url: base.clone(),
                source: e,
            })?;
        Ok(Self { base, token, http })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    async fn post<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        req: &Req,
    ) -> Result<Resp, ApiError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .http
            .post(&url)
            .bearer_auth(self.token.expose())
            .json(req)
            .send()
            .await
            .map_err(|e| ApiError::Transport {
                url: url.clone(),
                source: e,
            })?;
        Self::decode(url, resp).await
    }

    async fn decode<Resp: for<'de> Deserialize<'de>>(
        url: String,
        resp: reqwest::Response,
    ) -> Result<Resp, ApiError> {
        let http_status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiError::Transport { url, source: e })?;
        if (200..300).contains(&http_status) {
            serde_json::from_slice(&bytes).map_err(|_| ApiError::BadResponse {
                http_status,
                body: String::from_utf8_lossy(&bytes).chars().take(512).collect(),
            })
        } else {
            match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => Err(ApiError::Api {
                    http_status,
                    code: b.error.code,
                    message: b.error.message,
                    status: b.error.status,
                }),
                Err(_) => Err(ApiError::BadResponse {
                    http_status,
                    body: String::from_utf8_lossy(&bytes).chars().take(512).collect(),
                }),
            }
        }
    }

    pub async fn auth_client(
        &self,
        req: &AuthClientRequest,
    ) -> Result<AuthClientResponse, ApiError> {
        self.post(paths::AUTH_CLIENT, req).await
    }
    pub async fn set_product_config(
        &self,
        req: &SetProductConfigRequest,
    ) -> Result<SetProductConfigResponse, ApiError> {
        self.post(paths::SET_PRODUCT_CONFIG, req).await
    }
    pub async fn start_session(
        &self,
        req: &StartSessionRequest,
    ) -> Result<StartSessionResponse, ApiError> {
        self.post(paths::START_SESSION, req).await
    }
    pub async fn update_session(
        &self,
        req: &UpdateSessionRequest,
    ) -> Result<UpdateSessionResponse, ApiError> {
        self.post(paths::UPDATE_SESSION, req).await
    }
    pub async fn stop_session(
        &self,
        req: &StopSessionRequest,
    ) -> Result<StopSessionResponse, ApiError> {
        self.post(paths::STOP_SESSION, req).await
    }
    pub async fn get_access(&self, req: &GetAccessRequest) -> Result<AccessMessage, ApiError> {
        self.post(paths::GET_ACCESS, req).await
    }
    /// Admin token only.
    pub async fn channel_info(&self, id_or_client_key: &str) -> Result<ChannelInfo, ApiError> {
        let url = format!(
            "{}{}/{}",
            self.base,
            paths::ADMIN_CHANNELS,
            id_or_client_key
        );
        let resp = self
            .http
            .get(&url)
            .bearer_auth(self.token.expose())
            .send()
            .await
            .map_err(|e| ApiError::Transport {
                url: url.clone(),
                source: e,
            })?;
        Self::decode(url, resp).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbps_parses_exactly() {
        assert_eq!(parse_mbps("f", "8"), Ok(8_000_000));
        assert_eq!(parse_mbps("f", "0.5"), Ok(500_000));
        assert_eq!(parse_mbps("f", "12.000001"), Ok(12_000_001));
        assert_eq!(parse_mbps("f", "100000"), Ok(100_000_000_000));
        for bad in [
            "",
            "0",
            "0.0",
            "-1",
            "1.",
            ".5",
            "1e3",
            "1.0000001",
            " 1",
            "NaN",
            "1,5",
        ] {
            assert!(parse_mbps("f", bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            parse_mbps("f", "100001"),
            Err(SpeedError::TooLarge { .. })
        ));
    }

    #[test]
    fn speed_limits_min_above_max_named() {
        let mut p = BTreeMap::new();
        p.insert("minDownloadSpeed".to_string(), "10".to_string());
        p.insert("maxDownloadSpeed".to_string(), "8".to_string());
        let e = SpeedLimits::from_params(&p).expect_err("min above max");
        assert!(e.to_string().contains("minDownloadSpeed"), "{e}");
        p.insert("minDownloadSpeed".to_string(), "2".to_string());
        let s = SpeedLimits::from_params(&p).expect("valid");
        assert_eq!(s.max_download_bps, Some(8_000_000));
        assert_eq!(s.min_download_bps, Some(2_000_000));
        assert_eq!(s.max_upload_bps, None);
    }

    #[test]
    fn status_roundtrip_and_rules() {
        for s in ServiceStatus::ALL {
            assert_eq!(s.as_str().parse::<ServiceStatus>(), Ok(s));
            let j = serde_json::to_string(&s).expect("ser");
            assert_eq!(j, format!("\"{}\"", s.as_str()));
        }
        assert!(ServiceStatus::Active.admits_login());
        assert!(!ServiceStatus::Suspended.admits_login());
        assert!(ServiceStatus::Suspending.must_disconnect());
    }

    #[test]
    fn secret_debug_redacts() {
        let s = Secret("hunter2".into());
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }

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
