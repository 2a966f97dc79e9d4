//! The operations of the Service API: path, method, operationId, callers, request and
//! response schemas, and every answer besides 200 with the error codes it carries.

use utoipa::openapi::path::HttpMethod;

use crate::{paths, ErrorCode};

/// What an operation may answer besides 200: (status, description, codes).
pub(super) type Answers = &'static [(u16, &'static str, &'static [ErrorCode])];

const BAD_REQUEST: (u16, &str, &[ErrorCode]) = (
    400,
    "The body is not JSON, does not match the request schema, or a field breaks its rule",
    &[ErrorCode::BadRequest],
);
const UNAUTHORIZED: (u16, &str, &[ErrorCode]) = (
    401,
    "Missing or unknown bearer token",
    &[ErrorCode::Unauthorized],
);
const TOO_LARGE: (u16, &str, &[ErrorCode]) = (
    413,
    "The body is larger than 65536 bytes",
    &[ErrorCode::PayloadTooLarge],
);
const NOT_JSON: (u16, &str, &[ErrorCode]) = (
    415,
    "The body is not declared as JSON (Content-Type: application/json)",
    &[ErrorCode::UnsupportedMediaType],
);
const NOT_FOUND: (u16, &str, &[ErrorCode]) = (404, "Unknown", &[ErrorCode::NotFound]);
const INVALID: (u16, &str, &[ErrorCode]) = (
    422,
    "A rule of the request is broken (the message names a JSON pointer)",
    &[ErrorCode::Invalid],
);
const USAGE_INVALID: (u16, &str, &[ErrorCode]) = (
    422,
    "`invalid`: a rule of the request is broken (the message names a JSON pointer); \
     `usage_overflow`: the report would take the channel's byte total beyond \
     9223372036854775807 (nothing is recorded)",
    &[ErrorCode::Invalid, ErrorCode::UsageOverflow],
);
const INTERNAL: (u16, &str, &[ErrorCode]) = (
    500,
    "A bug in the core (never caused by input)",
    &[ErrorCode::Internal],
);
const UNAVAILABLE: (u16, &str, &[ErrorCode]) = (
    503,
    "Storage unavailable; retry later",
    &[ErrorCode::Unavailable],
);

const BAD_GATEWAY: (u16, &str, &[ErrorCode]) = (
    502,
    "The agent's market could not be reached, or did not answer as a market (the message \
     names the URL and why)",
    &[ErrorCode::BadGateway],
);

/// One operation of the Service API.
pub(super) struct Op {
    pub(super) method: HttpMethod,
    pub(super) path: &'static str,
    pub(super) id: &'static str,
    pub(super) summary: &'static str,
    pub(super) callers: &'static str,
    /// Request and response schema names (`None`: no body).
    pub(super) request: Option<&'static str>,
    pub(super) response: &'static str,
    pub(super) answers: Answers,
}

pub(super) const OPS: &[Op] = &[
    Op {
        method: HttpMethod::Post,
        path: paths::AUTH_CLIENT,
        id: "AuthClient",
        summary: "Verify a client key and password",
        callers: "agent (product token, or the admin token)",
        request: Some("AuthClientRequest"),
        response: "AuthClientResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (
                403,
                "`forbidden`: a client token; `auth_failed`: unknown client key or wrong \
                 password; `channel_inactive`: the channel's status (in `status`) admits no login",
                &[
                    ErrorCode::Forbidden,
                    ErrorCode::AuthFailed,
                    ErrorCode::ChannelInactive,
                ],
            ),
            TOO_LARGE,
            NOT_JSON,
            (
                429,
                "Too many failed attempts for this client key or address; retry later",
                &[ErrorCode::RateLimited],
            ),
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::SET_PRODUCT_CONFIG,
        id: "SetProductConfig",
        summary: "Store the product config pushed by the server adapter",
        callers: "agent (the product's token)",
        request: Some("SetProductConfigRequest"),
        response: "SetProductConfigResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (403, "Not a product token", &[ErrorCode::Forbidden]),
            TOO_LARGE,
            NOT_JSON,
            INVALID,
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::START_SESSION,
        id: "StartSession",
        summary: "Open a session of a channel",
        callers: "agent (product token), client (client token)",
        request: Some("StartSessionRequest"),
        response: "StartSessionResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (
                403,
                "The channel's status (in `status`) admits no new session",
                &[ErrorCode::ChannelInactive],
            ),
            (404, "Unknown client key", &[ErrorCode::NotFound]),
            TOO_LARGE,
            NOT_JSON,
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::FIND_SESSION,
        id: "FindSession",
        summary: "Find the session of a connection id; never opens one",
        callers: "agent (product token), client (client token)",
        request: Some("FindSessionRequest"),
        response: "StartSessionResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (
                404,
                "Unknown client key, or no session has this connection id",
                &[ErrorCode::NotFound],
            ),
            TOO_LARGE,
            NOT_JSON,
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::UPDATE_SESSION,
        id: "UpdateSession",
        summary: "Report cumulative usage; answers the service status",
        callers: "agent (product token), client (client token)",
        request: Some("UpdateSessionRequest"),
        response: "UpdateSessionResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (404, "Unknown session", &[ErrorCode::NotFound]),
            TOO_LARGE,
            NOT_JSON,
            USAGE_INVALID,
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::UPDATE_SESSIONS,
        id: "UpdateSessions",
        summary: "Many UpdateSession reports in one call and one transaction; one answer per \
                  report (its UpdateSession answer or its error), in order",
        callers: "agent (product token), client (client token)",
        request: Some("UpdateSessionsRequest"),
        response: "UpdateSessionsResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            TOO_LARGE,
            NOT_JSON,
            (
                422,
                "`invalid`: no reports, more than 500, or a counter above the maximum (the \
                 message names a JSON pointer)",
                &[ErrorCode::Invalid],
            ),
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::WATCH_STATUS,
        id: "WatchStatus",
        summary: "Long-poll: the status changes of the caller's channels after `cursor` (a \
                  product token: its product's channels; a client token: the client's \
                  channels), answered as soon as there is one or when `waitMs` has passed; \
                  without `cursor`, at once with the current cursor",
        callers: "agent (product token), client (client token)",
        request: Some("WatchStatusRequest"),
        response: "WatchStatusResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            TOO_LARGE,
            NOT_JSON,
            (
                422,
                "`invalid`: `waitMs` above 30000",
                &[ErrorCode::Invalid],
            ),
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::STOP_SESSION,
        id: "StopSession",
        summary: "Close a session with final cumulative counts",
        callers: "agent (product token), client (client token)",
        request: Some("StopSessionRequest"),
        response: "StopSessionResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (404, "Unknown session", &[ErrorCode::NotFound]),
            TOO_LARGE,
            NOT_JSON,
            USAGE_INVALID,
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::GET_ACCESS,
        id: "GetAccess",
        summary: "The access message for a client key",
        callers: "client (client token, or the admin token)",
        request: Some("GetAccessRequest"),
        response: "AccessMessage",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (403, "A product token", &[ErrorCode::Forbidden]),
            (
                404,
                "No access message for this client key",
                &[ErrorCode::NotFound],
            ),
            TOO_LARGE,
            NOT_JSON,
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Get,
        path: "/v1/admin/channels/{id}",
        id: "GetChannel",
        summary: "A channel with its status history",
        callers: "the admin token",
        request: None,
        response: "ChannelInfo",
        answers: &[
            (
                400,
                "The id is not valid percent-encoded UTF-8",
                &[ErrorCode::BadRequest],
            ),
            UNAUTHORIZED,
            (403, "Not the admin token", &[ErrorCode::Forbidden]),
            NOT_FOUND,
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::FETCH_OFFERINGS,
        id: "FetchOfferings",
        summary: "Fetch and verify an agent's offerings (the core calls the agent's market)",
        callers: "client (client token, or the admin token)",
        request: Some("FetchOfferingsRequest"),
        response: "FetchOfferingsResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (403, "A product token", &[ErrorCode::Forbidden]),
            TOO_LARGE,
            NOT_JSON,
            INTERNAL,
            BAD_GATEWAY,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::LIST_OFFERINGS,
        id: "ListOfferings",
        summary: "The offerings fetched so far",
        callers: "client (client token, or the admin token)",
        request: Some("ListOfferingsRequest"),
        response: "ListOfferingsResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (403, "A product token", &[ErrorCode::Forbidden]),
            TOO_LARGE,
            NOT_JSON,
            INTERNAL,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::ACCEPT_OFFERING,
        id: "AcceptOffering",
        summary: "Accept a fetched offering with a deposit (the core calls the agent's market)",
        callers: "client (client token, or the admin token)",
        request: Some("AcceptOfferingRequest"),
        response: "AcceptOfferingResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (403, "A product token", &[ErrorCode::Forbidden]),
            (
                404,
                "The offering was not fetched here (FetchOfferings), or the agent no longer \
                 has it",
                &[ErrorCode::NotFound],
            ),
            (
                409,
                "The agent refused: the offering is sold out (its supply is taken)",
                &[ErrorCode::Conflict],
            ),
            TOO_LARGE,
            NOT_JSON,
            (
                422,
                "The deposit is above the largest amount, below the offering's minimum \
                 deposit, or the agent's answer does not verify (signature, access template)",
                &[ErrorCode::Invalid],
            ),
            INTERNAL,
            BAD_GATEWAY,
            UNAVAILABLE,
        ],
    },
    Op {
        method: HttpMethod::Post,
        path: paths::LIST_CHANNELS,
        id: "ListChannels",
        summary: "The client's channels with usage, status and money",
        callers: "client (client token, or the admin token)",
        request: Some("ListChannelsRequest"),
        response: "ListChannelsResponse",
        answers: &[
            BAD_REQUEST,
            UNAUTHORIZED,
            (403, "A product token", &[ErrorCode::Forbidden]),
            TOO_LARGE,
            NOT_JSON,
            INTERNAL,
            UNAVAILABLE,
        ],
    },
];
