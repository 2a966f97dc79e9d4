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
    ENDPOINT_MAX_LEN, ENDPOINT_PATTERN, MARKET_URL_MAX_LEN, MARKET_URL_PATTERN, MAX_AMOUNT,
    MAX_BYTE_COUNT, MAX_FIELD_LEN, OFFERING_HASH_PATTERN, PRINTABLE_ASCII_PATTERN,
};
use crate::{ClientKey, ErrorCode, Secret, SessionId};

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

/// Schema of an amount (base units) of a request.
pub fn amount() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
        .minimum(Some(0))
        .maximum(Some(utoipa::Number::UInt(
            usize::try_from(MAX_AMOUNT).unwrap_or(usize::MAX),
        )))
        .description(Some(
            "Base units (1 PRIX = 10^8). A number with a zero fraction (1.0, 1e3) is an \
             integer. Above the maximum: 422 `invalid`.",
        ))
        .build()
        .into()
}

/// Schema of the agent market URL of FetchOfferings.
pub fn market_url() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some("http://x".len()))
        .max_length(Some(MARKET_URL_MAX_LEN))
        .pattern(Some(MARKET_URL_PATTERN))
        .description(Some(
            "The agent's market URL (`https://HOST:PORT`; plain `http://` only for an agent \
             whose offerings pin no TLS key). One the core cannot reach or use, or whose TLS \
             key is not the one its signed offerings pin (`agentTlsSpkiSha256`): 502 \
             `bad_gateway`.",
        ))
        .build()
        .into()
}

/// Schema of an offering hash.
pub fn offering_hash() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(OFFERING_HASH_PATTERN))
        .description(Some(
            "The offering's hash: lowercase hex SHA-256 of its JCS form.",
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

mod ops;

use ops::{Op, OPS};

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
    c = with::<FetchOfferingsRequest>(c);
    c = with::<FetchOfferingsResponse>(c);
    c = with::<ListOfferingsRequest>(c);
    c = with::<ListOfferingsResponse>(c);
    c = with::<AcceptOfferingRequest>(c);
    c = with::<AcceptOfferingResponse>(c);
    c = with::<ListChannelsRequest>(c);
    c = with::<ListChannelsResponse>(c);
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
