//! The OpenAPI 3.1 document of the Service API, generated from the types of this crate
//! (utoipa): the request and response schemas come from the types' `ToSchema` derives, the
//! field rules from the constants of [`crate::rules`] that the server enforces, and the paths
//! from [`crate::paths`]. `operationId`s are the Service API method names.
//!
//! Every status an operation can answer is listed with the error codes it carries.

use std::borrow::Cow;

use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::schema::{
    AdditionalProperties, AllOfBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat,
    SchemaType, Type,
};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, OpenApiBuilder,
    PathItem, PathsBuilder, Ref, RefOr, Required, Response, ResponseBuilder,
};
use utoipa::{PartialSchema, ToSchema};

use crate::rules::{
    CONFIG_KEY_PATTERN, CONFIG_MAX_KEYS, CONFIG_VALUE_MAX_LEN, CONFIG_VALUE_PATTERN, ENDPOINT_KEY,
    ENDPOINT_MAX_LEN, ENDPOINT_PATTERN, MAX_BYTE_COUNT, MAX_FIELD_LEN, PRINTABLE_ASCII_PATTERN,
};
use crate::{paths, ClientKey, ErrorCode, Secret, SessionId};

const JSON: &str = "application/json";
const BEARER: &str = "bearer";

fn text(min: usize, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length((min > 0).then_some(min))
        .max_length(Some(MAX_FIELD_LEN))
        .pattern(Some(PRINTABLE_ASCII_PATTERN))
        .description(Some(description))
}

impl PartialSchema for ClientKey {
    fn schema() -> RefOr<Schema> {
        text(
            1,
            "A channel's client key (the OpenVPN username): printable ASCII.",
        )
        .build()
        .into()
    }
}
impl ToSchema for ClientKey {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ClientKey")
    }
}

impl PartialSchema for SessionId {
    fn schema() -> RefOr<Schema> {
        text(
            0,
            "A session id issued by StartSession: printable ASCII (unknown ids: 404).",
        )
        .build()
        .into()
    }
}
impl ToSchema for SessionId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("SessionId")
    }
}

impl PartialSchema for Secret {
    fn schema() -> RefOr<Schema> {
        text(0, "A password: printable ASCII.").build().into()
    }
}
impl ToSchema for Secret {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Password")
    }
}

/// Schema of an optional text field of a request (`connectionId`, `clientAddr`, `vpnAddr`).
pub fn opt_text() -> Schema {
    text(0, "Printable ASCII; absent or null when unknown.")
        .schema_type(
            [Type::String, Type::Null]
                .into_iter()
                .collect::<SchemaType>(),
        )
        .build()
        .into()
}

/// Schema of a required `connectionId`.
pub fn connection_id() -> Schema {
    text(
        1,
        "Printable ASCII: the connection id a StartSession was given.",
    )
    .build()
    .into()
}

/// Schema of a byte counter of a usage report.
pub fn counter() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(utoipa::Number::UInt(
            usize::try_from(MAX_BYTE_COUNT).unwrap_or(usize::MAX),
        )))
        .description(Some(
            "Cumulative bytes. A number with a zero fraction (1.0, 1e3) is an integer. \
             Above the maximum: 422 `invalid`.",
        ))
        .build()
        .into()
}

/// Schema of the product config map of SetProductConfig.
pub fn config() -> Schema {
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(CONFIG_VALUE_MAX_LEN))
        .pattern(Some(CONFIG_VALUE_PATTERN))
        .build();
    let endpoint = ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(ENDPOINT_MAX_LEN))
        .pattern(Some(ENDPOINT_PATTERN))
        .description(Some("host or host:port of the VPN server"))
        .build();
    let key = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(CONFIG_KEY_PATTERN))
        .build();
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .max_properties(Some(CONFIG_MAX_KEYS))
        .property_names(Some(key))
        .property(ENDPOINT_KEY, endpoint)
        .additional_properties(Some(AdditionalProperties::RefOr(RefOr::T(value.into()))))
        .description(Some(
            "The product config (OpenVPN server parameters), string to string. \
             A config that breaks a rule: 422 `invalid`.",
        ))
        .build()
        .into()
}

/// An error answer carrying one of `codes`.
fn error(description: &str, codes: &[ErrorCode]) -> Response {
    let names: Vec<serde_json::Value> = codes
        .iter()
        .filter_map(|c| serde_json::to_value(c).ok())
        .collect();
    let narrowed = ObjectBuilder::new().property(
        "error",
        ObjectBuilder::new().property(
            "code",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(names)),
        ),
    );
    let schema = AllOfBuilder::new()
        .item(Ref::from_schema_name("Error"))
        .item(narrowed)
        .build();
    ResponseBuilder::new()
        .description(description)
        .content(
            JSON,
            ContentBuilder::new()
                .schema(Some(Schema::AllOf(schema)))
                .build(),
        )
        .build()
}

/// What an operation may answer besides 200: (status, description, codes).
type Answers = &'static [(u16, &'static str, &'static [ErrorCode])];

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

/// One operation of the Service API.
struct Op {
    method: HttpMethod,
    path: &'static str,
    id: &'static str,
    summary: &'static str,
    callers: &'static str,
    /// Request and response schema names (`None`: no body).
    request: Option<&'static str>,
    response: &'static str,
    answers: Answers,
}

const OPS: &[Op] = &[
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
];

fn operation(op: &Op) -> PathItem {
    let mut b = OperationBuilder::new()
        .operation_id(Some(op.id))
        .summary(Some(op.summary))
        .description(Some(format!("Callers: {}.", op.callers)))
        .security(SecurityRequirement::new::<_, [&str; 0], &str>(BEARER, []))
        .response(
            "200",
            ResponseBuilder::new().description("OK").content(
                JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name(op.response)))
                    .build(),
            ),
        );
    if let Some(req) = op.request {
        b = b.request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    JSON,
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name(req)))
                        .build(),
                )
                .build(),
        ));
    } else {
        b = b.parameter(
            ParameterBuilder::new()
                .name("id")
                .parameter_in(ParameterIn::Path)
                .required(Required::True)
                .description(Some("channel id or client key"))
                .schema(Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .min_length(Some(1)),
                )),
        );
    }
    for (status, description, codes) in op.answers {
        let mut r = error(description, codes);
        if *status == 401 {
            r.headers.insert(
                "WWW-Authenticate".into(),
                HeaderBuilder::new()
                    .schema(ObjectBuilder::new().schema_type(Type::String))
                    .description(Some("`Bearer`"))
                    .build(),
            );
        }
        b = b.response(status.to_string(), r);
    }
    PathItem::new(op.method.clone(), b)
}

fn plain_get(id: &str, summary: &str, content_type: &str, schema: Schema) -> PathItem {
    PathItem::new(
        HttpMethod::Get,
        OperationBuilder::new()
            .operation_id(Some(id))
            .summary(Some(summary))
            .response(
                "200",
                ResponseBuilder::new().description("OK").content(
                    content_type,
                    ContentBuilder::new().schema(Some(schema)).build(),
                ),
            ),
    )
}

/// `GET /health`: `ok` while the storage takes writes, else 503 saying why.
fn health() -> PathItem {
    PathItem::new(
        HttpMethod::Get,
        OperationBuilder::new()
            .operation_id(Some("Health"))
            .summary(Some("Liveness, and whether the storage takes writes"))
            .description(Some(
                "200 `ok` while the storage takes writes. After a write the storage refused \
                 (full disk, I/O error), 503 `unavailable` with the reason, until a write \
                 succeeds again (each call tries a tiny write, at most once per second).",
            ))
            .response(
                "200",
                ResponseBuilder::new().description("OK").content(
                    "text/plain",
                    ContentBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .enum_values(Some(["ok\n"])),
                        ))
                        .build(),
                ),
            )
            .response(
                "503",
                error(
                    "The storage does not take writes (the message says why)",
                    &[ErrorCode::Unavailable],
                ),
            ),
    )
}

/// Adds `T` and every schema it refers to.
fn with<T: ToSchema>(mut c: ComponentsBuilder) -> ComponentsBuilder {
    let mut all = vec![(T::name().into_owned(), T::schema())];
    T::schemas(&mut all);
    for (name, schema) in all {
        c = c.schema(name, schema);
    }
    c
}

/// The whole document.
pub fn document() -> OpenApi {
    use crate::*;
    let mut c = ComponentsBuilder::new().security_scheme(
        BEARER,
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    c = with::<AuthClientRequest>(c);
    c = with::<AuthClientResponse>(c);
    c = with::<SetProductConfigRequest>(c);
    c = with::<SetProductConfigResponse>(c);
    c = with::<StartSessionRequest>(c);
    c = with::<StartSessionResponse>(c);
    c = with::<FindSessionRequest>(c);
    c = with::<UpdateSessionRequest>(c);
    c = with::<UpdateSessionResponse>(c);
    c = with::<StopSessionRequest>(c);
    c = with::<StopSessionResponse>(c);
    c = with::<GetAccessRequest>(c);
    c = with::<AccessMessage>(c);
    c = with::<ChannelInfo>(c);
    c = with::<ErrorBody>(c);

    let mut p = PathsBuilder::new();
    for op in OPS {
        p = p.path(op.path, operation(op));
    }
    p = p.path(paths::HEALTH, health());
    p = p.path(
        paths::OPENAPI,
        plain_get(
            "OpenApi",
            "This document",
            JSON,
            ObjectBuilder::new().schema_type(Type::Object).into(),
        ),
    );
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("core-lite Service API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(format!(
                    "Service API of the VPN service module pair (agent and client roles). \
                     Usage reports carry cumulative totals: a retried or reordered report never \
                     double counts or goes backwards. Every request body is JSON \
                     (`Content-Type: application/json`) of at most {MAX_BODY_BYTES} bytes; \
                     errors are `{{\"error\":{{\"code\",\"message\"}}}}` with a stable code."
                )))
                .build(),
        )
        .paths(p.build())
        .components(Some(c.build()))
        .build()
}

/// The document as JSON (what `GET /openapi.json` serves).
pub fn document_json() -> serde_json::Value {
    serde_json::to_value(document()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
