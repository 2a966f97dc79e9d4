//! The console's admin endpoints under `/v1/admin/` (admin token only). They are for the
//! console, not part of the Service API's OpenAPI document:
//!
//! | request | answer |
//! |---|---|
//! | `GET /v1/admin/modules` | modules with their offering template (`schema`, `uiSchema`) and the fields the core fills |
//! | `GET /v1/admin/products` | products |
//! | `GET /v1/admin/offerings` | offerings (signed, with supply and open channels) |
//! | `POST /v1/admin/offerings` `{"product","offering"}` | `{"offeringHash","signed"}`; a refused offering is 422 `invalid` with `fields`: `[{"pointer","message"}]` |
//! | `GET /v1/admin/channels` | channels (newest first, at most 500) |
//! | `GET /v1/admin/channels/{id}/sessions` | the channel's sessions (newest first, at most 200) |
//! | `GET /v1/admin/channels/{id}/usage` | the channel's usage series: `{"widthMs","buckets":[{"startMs","widthMs","bytesIn","bytesOut"}]}` |
//!
//! (`GET /v1/admin/channels/{id}`, one channel with its status history, is the Service
//! API's.)

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::error::CoreError;
use crate::offering::{OfferingError, CORE_FILLED_FIELDS};
use crate::server::{ApiJson, Authed};
use crate::service::{now_ms, Caller, Core};
use crate::store::{modules, overview};

/// Most channels listed.
const MAX_CHANNELS: usize = 500;
/// Most sessions listed per channel.
const MAX_SESSIONS: u32 = 200;

type St = State<Arc<Core>>;

/// Runs `f` on the blocking pool for the admin only.
async fn admin<T: Serialize + Send + 'static>(
    core: Arc<Core>,
    who: Caller,
    f: impl FnOnce(&Core) -> Result<T, CoreError> + Send + 'static,
) -> Result<Json<T>, CoreError> {
    if who != Caller::Admin {
        return Err(CoreError::Forbidden("admin token required".into()));
    }
    let out = tokio::task::spawn_blocking(move || f(&core))
        .await
        .map_err(|source| CoreError::Task {
            what: "console",
            source,
        })??;
    Ok(Json(out))
}

fn path_id(p: Result<Path<String>, PathRejection>) -> Result<String, CoreError> {
    p.map(|Path(v)| v)
        .map_err(|e| CoreError::BadRequest(format!("invalid path parameter: {e}")))
}

/// A module as the offering form needs it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModuleView {
    module: String,
    version: String,
    offering_template_hash: String,
    /// `{"schema": …, "uiSchema": …}` as registered.
    offering_template: Value,
    /// Fields the core fills in: never part of the input.
    core_filled: Vec<&'static str>,
}

async fn list_modules(
    State(core): St,
    Authed(who): Authed,
) -> Result<Json<Vec<ModuleView>>, CoreError> {
    admin(core, who, |c| {
        c.db.read(|tx| {
            let rows = modules::list(tx)?;
            rows.into_iter()
                .map(|m| {
                    let t = modules::offering_template(tx, &m.name)?;
                    Ok(ModuleView {
                        module: m.name,
                        version: m.version,
                        offering_template_hash: t.hash,
                        offering_template: t.body,
                        core_filled: CORE_FILLED_FIELDS.to_vec(),
                    })
                })
                .collect::<Result<Vec<_>, CoreError>>()
        })
    })
    .await
}

async fn list_products(
    State(core): St,
    Authed(who): Authed,
) -> Result<Json<Vec<crate::admin::ProductInfo>>, CoreError> {
    admin(core, who, |c| c.list_products()).await
}

async fn list_offerings(
    State(core): St,
    Authed(who): Authed,
) -> Result<Json<Vec<crate::admin::OfferingInfo>>, CoreError> {
    admin(core, who, |c| c.list_offerings()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    /// Product id or name.
    product: String,
    /// The agent's input: the offering's fields without those the core fills.
    offering: Value,
}

/// `POST /v1/admin/offerings`: a refused offering answers 422 with every bad field's JSON
/// pointer in `fields`, so the console shows each error next to its field.
async fn publish_offering(
    State(core): St,
    Authed(who): Authed,
    ApiJson(req): ApiJson<PublishRequest>,
) -> Response {
    let r = admin(core, who, move |c| {
        let (hash, signed) = c.publish_offering(&req.product, &req.offering)?;
        Ok(json!({ "offeringHash": hash, "signed": signed }))
    })
    .await;
    match r {
        Ok(v) => v.into_response(),
        Err(CoreError::OfferingRejected(OfferingError::Invalid(invalid))) => {
            let message = format!("offering rejected: {invalid}");
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({ "error": {
                    "code": "invalid",
                    "message": message,
                    "fields": invalid.0,
                }})),
            )
                .into_response()
        }
        Err(e) => e.into_response(),
    }
}

async fn list_channels(
    State(core): St,
    Authed(who): Authed,
) -> Result<Json<Vec<service_api::ChannelInfo>>, CoreError> {
    admin(core, who, |c| {
        let mut all = c.list_channels()?;
        all.reverse();
        all.truncate(MAX_CHANNELS);
        Ok(all)
    })
    .await
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SessionView {
    session_id: String,
    connection_id: Option<String>,
    client_addr: Option<String>,
    vpn_addr: Option<String>,
    started_at_ms: i64,
    stopped_at_ms: Option<i64>,
    updated_at_ms: i64,
    bytes_in: u64,
    bytes_out: u64,
}

async fn channel_sessions(
    State(core): St,
    Authed(who): Authed,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<Vec<SessionView>>, CoreError> {
    let id = path_id(id)?;
    admin(core, who, move |c| {
        let ch = c.channel_info(&id)?;
        let rows =
            c.db.read(|tx| overview::sessions_of_channel(tx, &ch.channel_id, MAX_SESSIONS))?;
        Ok(rows
            .into_iter()
            .map(|s| SessionView {
                session_id: s.id,
                connection_id: s.connection_id,
                client_addr: s.client_addr,
                vpn_addr: s.vpn_addr,
                started_at_ms: s.started_at_ms,
                stopped_at_ms: s.stopped_at_ms,
                updated_at_ms: s.updated_at_ms,
                bytes_in: s.bytes_in,
                bytes_out: s.bytes_out,
            })
            .collect())
    })
    .await
}

async fn channel_usage(
    State(core): St,
    Authed(who): Authed,
    id: Result<Path<String>, PathRejection>,
) -> Result<Json<crate::usage_series::SeriesView>, CoreError> {
    let id = path_id(id)?;
    admin(core, who, move |c| {
        let ch = c.channel_info(&id)?;
        c.usage_series(&ch.channel_id, now_ms())
    })
    .await
}

/// The console's admin endpoints.
pub(super) fn routes() -> Router<Arc<Core>> {
    use service_api::paths::ADMIN_CHANNELS;
    Router::new()
        .route("/v1/admin/modules", get(list_modules))
        .route("/v1/admin/products", get(list_products))
        .route(
            "/v1/admin/offerings",
            get(list_offerings).post(publish_offering),
        )
        .route(ADMIN_CHANNELS, get(list_channels))
        .route(
            &format!("{ADMIN_CHANNELS}/:id/sessions"),
            get(channel_sessions),
        )
        .route(&format!("{ADMIN_CHANNELS}/:id/usage"), get(channel_usage))
}
