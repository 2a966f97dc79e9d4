//! Requests and responses of the Service API operations. JSON field names are camelCase;
//! requests refuse unknown fields.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{ClientKey, Secret, ServiceStatus, SessionId, SpeedLimits};

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
