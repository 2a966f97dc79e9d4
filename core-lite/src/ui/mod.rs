//! The web console: `GET /ui/` serves a single page (HTML, JavaScript and CSS embedded in
//! the binary, no build step, nothing loaded from elsewhere) on the Service API's listener,
//! with its TLS. The page asks for the admin token once, keeps it in the tab's
//! `sessionStorage` and sends it as a bearer token to the admin endpoints (module `api`); the
//! page itself holds no data, and nothing is shown without the token.
//!
//! What it shows: offerings, products and channels; a channel's status history, sessions
//! and a plot of its usage and speed over time ([`crate::usage_series`]); and the form that
//! publishes an offering, generated from the module's offering template — its JSON Schema
//! for the fields and their types, its `uiSchema` for widgets, order and help texts — with
//! the core's validation errors (JSON pointers) shown next to their fields.
//!
//! Every answer under `/ui` carries a Content-Security-Policy that allows scripts, styles,
//! images and requests from this origin only (`default-src 'none'`), and no framing.

mod api;

use std::sync::Arc;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;

use crate::service::Core;

/// The console's Content-Security-Policy: same origin only, no inline script, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                       img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
                       form-action 'none'; frame-ancestors 'none'";

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const FORM_JS: &str = include_str!("assets/form.js");
const CHART_JS: &str = include_str!("assets/chart.js");
const APP_CSS: &str = include_str!("assets/app.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut r = (StatusCode::OK, body).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// The console's routes: the page, its assets, its admin endpoints.
pub fn routes() -> Router<Arc<Core>> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route(
            "/ui/",
            get(|| async { asset(INDEX_HTML, "text/html; charset=utf-8") }),
        )
        .route(
            "/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/form.js",
            get(|| async { asset(FORM_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/chart.js",
            get(|| async { asset(CHART_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset(APP_CSS, "text/css; charset=utf-8") }),
        )
        .merge(api::routes())
}
