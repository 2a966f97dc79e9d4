//! The HTTP requests of this instance, counted in one place: [`track`], a layer under every
//! router (Service API and market API), labels each request with its operation (the route
//! that matched: `UpdateSession` for `/v1/UpdateSession`, else the route's path, or
//! `unmatched`) and its outcome (`ok`, or the error code of the answer).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};
use service_api::ErrorCode;

use crate::service::Core;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: String,
}

type HistogramFamily = Family<OperationLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 250 µs .. ~8 s.
    Histogram::new(exponential_buckets(0.00025, 2.0, 16))
}

/// Requests answered, their latency, and those being answered.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    duration: HistogramFamily,
    in_flight: Gauge,
}

impl Default for HttpMetrics {
    fn default() -> Self {
        HttpMetrics {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
        }
    }
}

impl HttpMetrics {
    pub(super) fn register(&self, registry: &mut Registry) {
        registry.register(
            "http_requests",
            "Requests answered by this instance, by operation and outcome (code: ok or the \
             error code of the answer)",
            self.requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's head to its answer in this instance, by operation",
            Unit::Seconds,
            self.duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests this instance is answering now",
            self.in_flight.clone(),
        );
    }

    /// Counts one answered request.
    pub fn observe(&self, operation: &str, code: &str, seconds: f64) {
        self.requests
            .get_or_create(&RequestLabels {
                operation: operation.to_string(),
                code: code.to_string(),
            })
            .inc();
        self.duration
            .get_or_create(&OperationLabels {
                operation: operation.to_string(),
            })
            .observe(seconds);
    }
}

/// The operation label of a request: the route that matched (bounded by the route table).
fn operation_of(req: &Request) -> String {
    match req.extensions().get::<MatchedPath>() {
        Some(p) => {
            let p = p.as_str();
            match p.strip_prefix("/v1/") {
                Some(op) if !op.is_empty() && !op.contains('/') => op.to_string(),
                _ => p.to_string(),
            }
        }
        None => "unmatched".to_string(),
    }
}

/// The outcome label of an answer: `ok`, the error code the core answered with (the error
/// answer carries it as an extension), or `http_<status>` for an answer made elsewhere.
fn code_of(resp: &Response) -> String {
    if let Some(code) = resp.extensions().get::<ErrorCode>() {
        if let Ok(serde_json::Value::String(s)) = serde_json::to_value(code) {
            return s;
        }
    }
    let status = resp.status();
    if status.is_success() || status.is_redirection() || status.is_informational() {
        "ok".to_string()
    } else {
        format!("http_{}", status.as_u16())
    }
}

/// Lowers the in-flight gauge when the request ends, also when it is dropped unanswered.
struct InFlight(Gauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The layer (`axum::middleware::from_fn_with_state(core, track)`) under every router.
pub async fn track(State(core): State<Arc<Core>>, req: Request, next: Next) -> Response {
    let operation = operation_of(&req);
    let http = &core.metrics.http;
    http.in_flight.inc();
    let _guard = InFlight(http.in_flight.clone());
    let started = Instant::now();
    let resp = next.run(req).await;
    http.observe(&operation, &code_of(&resp), started.elapsed().as_secs_f64());
    resp
}
