//! Prometheus metrics of the core: `GET /metrics` on the Service API's listener answers
//! OpenMetrics text to Prometheus (which asks for it in `Accept`) and the Prometheus text
//! format 0.0.4 to everyone else ([`Format`]); both from the `prometheus-client` crate.
//!
//! Two kinds of numbers, told apart in each metric's help text:
//! - **this instance**: the HTTP requests it answered ([`track`], one tower layer under
//!   every router: by operation and code, with latency histograms) and its storage's
//!   commits and failed writes (hooks at the store's commit, [`StoreStats`]). Add them up
//!   over instances (`sum`).
//! - **database-wide**, computed at each scrape from the database: channels by side and
//!   status, open sessions, bytes counted, payments, cheques and status changes (the last
//!   two counted incrementally from the last row seen, so a scrape stays cheap). Every
//!   instance on one database reports the same values: aggregate them with `max`.
//!
//! No metric has a per-channel, per-key or per-session label: nothing here names a client.
//!
//! `/metrics` needs a bearer token: the metrics token (`DATA_DIR/metrics.token`, 0600,
//! written on first use; it opens `/metrics` and nothing else, so Prometheus never holds the
//! admin token) or the admin token. Business volumes (channels, bytes, payments) are not
//! for everyone who can reach the API.
//!
//! | module | holds |
//! |---|---|
//! | `http` | [`HttpMetrics`] and the [`track`] layer |
//! | `scrape` | the database-wide numbers, read at each scrape |
//! | `token` | the metrics token |

mod http;
mod scrape;
mod token;

use std::sync::{Arc, Mutex, OnceLock};

use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

pub use http::{track, HttpMetrics};
pub use token::METRICS_TOKEN_FILE;

use crate::error::CoreError;
use crate::service::{Caller, Core};
use crate::store::{Db, StoreError, StoreStats};

/// The media type of the OpenMetrics answer (what Prometheus asks for).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// The media type of the Prometheus text format 0.0.4 answer (for everyone else, e.g.
/// `curl`, `promtool check metrics`).
pub const TEXT_CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The exposition formats of `/metrics`, chosen by the request's `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics text 1.0.0.
    OpenMetrics,
    /// Prometheus text format 0.0.4.
    Text,
}

impl Format {
    /// OpenMetrics when `Accept` names it (as Prometheus does), else the text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a)
                if a.to_ascii_lowercase()
                    .contains("application/openmetrics-text") =>
            {
                Format::OpenMetrics
            }
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => CONTENT_TYPE,
            Format::Text => TEXT_CONTENT_TYPE,
        }
    }
}

/// Metric names start with this (`core_lite_…`).
pub const PREFIX: &str = "core_lite";

/// Errors of a scrape.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("reading the database for the metrics: {0}")]
    Store(#[from] StoreError),
    #[error("encoding the metrics: {0}")]
    Encode(#[source] std::fmt::Error),
}

/// The metrics of one core: its registry (this instance's metrics) and what a scrape needs
/// to count database rows incrementally.
#[derive(Debug)]
pub struct CoreMetrics {
    registry: Registry,
    pub http: HttpMetrics,
    store: StoreStats,
    cursor: Mutex<scrape::Cursor>,
    token_hash: OnceLock<String>,
}

impl CoreMetrics {
    /// The registry of a core over `db` (whose commits it reports).
    pub fn new(db: &Db) -> CoreMetrics {
        let mut registry = Registry::with_prefix(PREFIX);
        let http = HttpMetrics::default();
        http.register(&mut registry);
        let store = db.stats().clone();
        store.register(&mut registry);
        CoreMetrics {
            registry,
            http,
            store,
            cursor: Mutex::new(scrape::Cursor::default()),
            token_hash: OnceLock::new(),
        }
    }

    /// The storage's metrics (also reachable as `core.db.stats()`).
    pub fn store(&self) -> &StoreStats {
        &self.store
    }
}

/// The whole exposition: this instance's registry, then the database-wide numbers read now
/// (then, in OpenMetrics, `# EOF`). Blocking (reads the database).
pub fn render(core: &Core, format: Format) -> Result<String, MetricsError> {
    use prometheus_client::encoding::prometheus_text;
    use prometheus_client::encoding::text::{encode_eof, encode_registry};
    let scraped = {
        let mut cursor = core
            .metrics
            .cursor
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        scrape::read(core, &mut cursor)?
    };
    let mut out = String::with_capacity(8192);
    match format {
        Format::OpenMetrics => {
            encode_registry(&mut out, &core.metrics.registry).map_err(MetricsError::Encode)?;
            encode_registry(&mut out, &scraped).map_err(MetricsError::Encode)?;
            encode_eof(&mut out).map_err(MetricsError::Encode)?;
        }
        Format::Text => {
            prometheus_text::encode(&mut out, &core.metrics.registry)
                .map_err(MetricsError::Encode)?;
            prometheus_text::encode(&mut out, &scraped).map_err(MetricsError::Encode)?;
        }
    }
    Ok(out)
}

/// The bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let t = v
        .strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))?;
    Some(t.trim().to_string())
}

/// `GET /metrics`: with the metrics token or the admin token.
async fn metrics(
    axum::extract::State(core): axum::extract::State<Arc<Core>>,
    headers: HeaderMap,
) -> Result<Response, CoreError> {
    let token = bearer(&headers).ok_or(CoreError::Unauthorized)?;
    let format = Format::negotiate(headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()));
    let c = core.clone();
    let text = tokio::task::spawn_blocking(move || {
        if !c.is_metrics_token(&token) && c.authenticate(&token)? != Caller::Admin {
            return Err(CoreError::Forbidden(
                "/metrics needs the metrics token or the admin token".into(),
            ));
        }
        render(&c, format).map_err(|e| match e {
            MetricsError::Store(s) => CoreError::Store(s),
            MetricsError::Encode(source) => CoreError::Metrics(source),
        })
    })
    .await
    .map_err(|source| CoreError::Task {
        what: "metrics",
        source,
    })??;
    let mut resp = (StatusCode::OK, text).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The `/metrics` route (on the Service API's listener only: never on the market's).
pub fn routes() -> Router<Arc<Core>> {
    Router::new().route("/metrics", get(metrics))
}
