//! service-api: the wire contract between the parts of the VPN service module pair.
//!
//! It holds what crosses a process boundary, and nothing that needs a database or a server:
//! - the Service API (DESIGN §3): request and response types ([`messages`]), identifiers
//!   and secrets ([`ids`]), the service status ([`status`]), speed limits ([`speed`]),
//!   stable error codes ([`error`]) and a typed HTTP client ([`Client`]) whose errors never
//!   repeat a response body ([`body`]: field path and kind, never a value);
//! - the client-role operations ([`buyer`]): fetch, list and accept an agent's offerings
//!   through the client's own core, and list the client's channels with usage and money;
//! - the market protocol between an agent's and a client's core ([`market`]);
//! - the rules of the request fields ([`rules`]) and, with the feature `openapi`, the
//!   OpenAPI 3.1 document generated from these types (`openapi::document`).
//!
//! Both adapters and core-lite depend on this crate; the adapters never depend on core-lite.
//!
//! Every Service API operation is a `POST` with a JSON body to the path in [`paths`];
//! callers send `Authorization: Bearer <token>` (a product token for the server adapter, a
//! client token for the client adapter, or the admin token). Errors come back as
//! `{ "error": { "code": "...", "message": "..." } }` with a stable [`ErrorCode`].

pub mod body;
pub mod buyer;
pub mod client;
pub mod error;
pub mod ids;
pub mod market;
pub mod messages;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod rules;
pub mod seal;
pub mod speed;
pub mod status;
pub mod tls;

pub use body::BodyError;
pub use buyer::*;
pub use client::Client;
pub use error::{ApiError, ErrorBody, ErrorCode, ErrorDetail};
pub use ids::{ClientKey, Secret, SessionId};
pub use messages::*;
pub use rules::{Invalid, Validate, MAX_BYTE_COUNT, MAX_CHANNEL_BYTES, MAX_FIELD_LEN};
pub use speed::{parse_mbps, speed_keys, SpeedError, SpeedLimits};
pub use status::ServiceStatus;

/// Request paths, one per operationId of the OpenAPI document.
pub mod paths {
    pub const AUTH_CLIENT: &str = "/v1/AuthClient";
    pub const SET_PRODUCT_CONFIG: &str = "/v1/SetProductConfig";
    pub const START_SESSION: &str = "/v1/StartSession";
    pub const FIND_SESSION: &str = "/v1/FindSession";
    pub const UPDATE_SESSION: &str = "/v1/UpdateSession";
    pub const STOP_SESSION: &str = "/v1/StopSession";
    pub const GET_ACCESS: &str = "/v1/GetAccess";
    pub const FETCH_OFFERINGS: &str = "/v1/FetchOfferings";
    pub const LIST_OFFERINGS: &str = "/v1/ListOfferings";
    pub const ACCEPT_OFFERING: &str = "/v1/AcceptOffering";
    pub const LIST_CHANNELS: &str = "/v1/ListChannels";
    /// Admin: `GET /v1/admin/channels/{channel-id-or-client-key}` → [`ChannelInfo`](crate::ChannelInfo).
    pub const ADMIN_CHANNELS: &str = "/v1/admin/channels";
    pub const OPENAPI: &str = "/openapi.json";
    pub const HEALTH: &str = "/health";
}

/// Largest request body the server accepts (bytes).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// One unit of the VPN module (`MB`) in bytes.
pub const BYTES_PER_UNIT: u64 = 1_000_000;
