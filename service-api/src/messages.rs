//! Requests and responses of the Service API operations. JSON field names are camelCase;
//! requests refuse unknown fields, check their fields' rules while they are read and
//! implement [`Validate`] for the rest ([`crate::rules`]).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::rules::{self, field, Invalid, Validate};
use crate::{ClientKey, Secret, ServiceStatus, SessionId, SpeedLimits};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthClientRequest {
    #[serde(deserialize_with = "field::client_key")]
    pub client_key: ClientKey,
    #[serde(deserialize_with = "field::password")]
    pub password: Secret,
    /// The connecting peer's address (`ip` or `ip:port`), for rate limiting and logs.
    #[serde(
        default,
        deserialize_with = "field::client_addr",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::opt_text))]
    pub client_addr: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct AuthClientResponse {
    pub client_key: ClientKey,
    pub channel_id: String,
    /// `activating` or `active` (anything else is answered with an error).
    pub status: ServiceStatus,
    pub speed: SpeedLimits,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetProductConfigRequest {
    /// The product is the one the bearer token belongs to. Rules: [`rules::check_config`].
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::config))]
    pub config: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SetProductConfigResponse {
    pub product_id: String,
    /// False when the stored config was already identical.
    pub changed: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StartSessionRequest {
    #[serde(deserialize_with = "field::client_key")]
    pub client_key: ClientKey,
    /// Idempotency key of this connection (e.g. `"<user>|<ip>:<port>|<connect-time>"`).
    /// A StartSession whose `connectionId` equals that of a session of the channel (open or
    /// already stopped) returns that session unchanged, whatever the channel's status (so an
    /// adapter that restarts does not double count); FindSession finds it without ever
    /// opening one. Any other StartSession needs a status that admits login
    /// and closes the channel's open session (with its last counts) first.
    #[serde(
        default,
        deserialize_with = "field::connection_id",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::opt_text))]
    pub connection_id: Option<String>,
    /// The client's real address `ip:port`.
    #[serde(
        default,
        deserialize_with = "field::client_addr",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::opt_text))]
    pub client_addr: Option<String>,
    /// The client's address inside the VPN.
    #[serde(
        default,
        deserialize_with = "field::vpn_addr",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::opt_text))]
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

/// Finds the session a StartSession with this `connectionId` opened (open or already
/// stopped), without ever opening one: 404 `not_found` when the connection has none. Answers
/// like StartSession. For a client-disconnect that has no recorded session id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FindSessionRequest {
    #[serde(deserialize_with = "field::client_key")]
    pub client_key: ClientKey,
    #[serde(deserialize_with = "field::required_connection_id")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::connection_id))]
    pub connection_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StartSessionResponse {
    pub session_id: SessionId,
    pub channel_id: String,
    pub status: ServiceStatus,
    pub speed: SpeedLimits,
    /// Counts already recorded for this session (non-zero only when resumed by connectionId).
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Bytes (in + out, as reported) the channel may still use before it ends: until
    /// `maxUnits`, or until the deposit cannot pay the next unit, whichever comes first; 0
    /// when the status does not admit traffic. Absent when the answering core does not know
    /// (a client core). The server adapter turns it into a kernel byte quota per client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_bytes: Option<u64>,
}

/// Cumulative counters of one session, as the reporting side's OpenVPN counts them:
/// `bytesIn` = its `bytes_received`, `bytesOut` = its `bytes_sent`. Billing uses the sum.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSessionRequest {
    #[serde(deserialize_with = "field::session_id")]
    pub session_id: SessionId,
    #[serde(deserialize_with = "field::counter")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::counter))]
    pub bytes_in: u64,
    #[serde(deserialize_with = "field::counter")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::counter))]
    pub bytes_out: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Bytes (in + out, as reported) the channel may still use before it ends: until
    /// `maxUnits`, or until the deposit cannot pay the next unit, whichever comes first; 0
    /// when the status does not admit traffic. Absent when the answering core does not know
    /// (a client core). The server adapter turns it into a kernel byte quota per client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining_bytes: Option<u64>,
    /// True when this session is no longer the channel's open session: it was stopped, or a
    /// newer session replaced it (the client logged in again, on this server or another).
    /// The report is still counted; the adapter must disconnect the client. Absent: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

/// Most reports in one UpdateSessions call.
pub const MAX_BATCH: usize = 500;

/// Many usage reports at once (UpdateSessions): each entry is exactly an UpdateSession.
/// The core applies the batch in one transaction; every entry gets its own answer, in the
/// same order, and an entry the core refuses (unknown session, overflow) does not stop the
/// others.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateSessionsRequest {
    /// 1 to 500 reports.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 500))]
    pub updates: Vec<UpdateSessionRequest>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UpdateSessionsResponse {
    /// One per entry of the request, in its order.
    pub results: Vec<UpdateSessionsResult>,
}

/// The answer to one entry: `update` (what UpdateSession would answer) or `error` (what
/// UpdateSession would have answered as its error body).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UpdateSessionsResult {
    pub session_id: SessionId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateSessionResponse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<crate::ErrorDetail>,
}

/// Final cumulative counts. On a session already stopped, higher counts still win (per-field
/// maximum: the monitor may stop with its last bytecount before the client-disconnect hook
/// brings OpenVPN's exact final counters); lower or equal counts change nothing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopSessionRequest {
    #[serde(deserialize_with = "field::session_id")]
    pub session_id: SessionId,
    #[serde(deserialize_with = "field::counter")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::counter))]
    pub bytes_in: u64,
    #[serde(deserialize_with = "field::counter")]
    #[cfg_attr(feature = "openapi", schema(schema_with = crate::openapi::counter))]
    pub bytes_out: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GetAccessRequest {
    #[serde(deserialize_with = "field::client_key")]
    pub client_key: ClientKey,
}

/// The access message (validated against `templates/vpn/access.json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AccessMessage {
    /// Hash of the access template.
    pub template_hash: String,
    #[serde(deserialize_with = "field::client_key")]
    pub username: ClientKey,
    pub password: Secret,
    /// `host` or `host:port` of the VPN server.
    pub service_endpoint_address: String,
    /// Product config (pushed by the server adapter) + the offering's speed parameters.
    pub additional_params: BTreeMap<String, String>,
}

/// What `GET /v1/admin/channels/{id}` answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct StatusChange {
    pub status: ServiceStatus,
    pub at_ms: i64,
    pub reason: String,
}

impl Validate for AuthClientRequest {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

impl Validate for SetProductConfigRequest {
    fn validate(&self) -> Result<(), Invalid> {
        rules::check_config(&self.config)
    }
}

impl Validate for StartSessionRequest {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

impl Validate for FindSessionRequest {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}

impl Validate for UpdateSessionRequest {
    fn validate(&self) -> Result<(), Invalid> {
        rules::check_counter("/bytesIn", self.bytes_in)?;
        rules::check_counter("/bytesOut", self.bytes_out)
    }
}

impl Validate for UpdateSessionsRequest {
    fn validate(&self) -> Result<(), Invalid> {
        if self.updates.is_empty() || self.updates.len() > MAX_BATCH {
            return Err(Invalid {
                pointer: "/updates".into(),
                reason: format!("1 to {MAX_BATCH} reports"),
            });
        }
        for (i, u) in self.updates.iter().enumerate() {
            rules::check_counter(&format!("/updates/{i}/bytesIn"), u.bytes_in)?;
            rules::check_counter(&format!("/updates/{i}/bytesOut"), u.bytes_out)?;
        }
        Ok(())
    }
}

impl Validate for StopSessionRequest {
    fn validate(&self) -> Result<(), Invalid> {
        rules::check_counter("/bytesIn", self.bytes_in)?;
        rules::check_counter("/bytesOut", self.bytes_out)
    }
}

impl Validate for GetAccessRequest {
    fn validate(&self) -> Result<(), Invalid> {
        Ok(())
    }
}
