//! Prometheus metrics of the monitor, served on their own address (`--metrics-listen`,
//! loopback only: the answer is plain HTTP) as OpenMetrics text to Prometheus (which asks
//! for it in `Accept`) and as the text format 0.0.4 to everyone else.
//!
//! | metric | what |
//! |---|---|
//! | `adapter_server_clients_connected` | clients OpenVPN has connected (the monitor's table) |
//! | `adapter_server_sessions_open` | of those, with a session open in the core |
//! | `adapter_server_clients_shaped` | of those, with their speed limits installed |
//! | `adapter_server_clients_closing` | departed clients whose StopSession is pending |
//! | `adapter_server_reports_unsent` | clients whose latest byte counts the core has not accepted yet (buffered while it is down) |
//! | `adapter_server_core_calls_in_flight{call}` | core calls under way |
//! | `adapter_server_core_calls_total{call,result}` | answered calls: `ok`, the core's error code, or `unreachable` |
//! | `adapter_server_core_errors_total{call,kind}` | failed calls: `unreachable` (retried) or `refused` |
//! | `adapter_server_kills_total` | `client-kill` sent |
//! | `adapter_server_tc_commands_total`, `adapter_server_tc_failures_total` | `tc`/`ip` commands run for shaping, and failed |
//! | `adapter_server_management_connected` | 1 while connected to OpenVPN's management interface |
//! | `adapter_server_management_connects_total`, `…_disconnects_total`, `…_connect_failures_total` | management (re)connections |
//! | `adapter_server_config_pushes_total{result}` | SetProductConfig pushes |
//!
//! Gauges about the client table are refreshed at every tick of the monitor (1 s); the
//! counters move as things happen. No metric names a client.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use service_api::ApiError;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

use super::client::{Client, Phase, Session};
use super::core_calls::is_transient;

/// Connections the metrics listener serves at once.
const MAX_CONNECTIONS: usize = 16;
/// A request head must arrive within this time.
const HEADER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    call: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    call: &'static str,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    call: &'static str,
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PushLabels {
    result: &'static str,
}

/// Errors of the metrics listener.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("--metrics-listen {0}: the metrics are served over plain HTTP, so only a loopback address is allowed (scrape through a local agent or a TLS proxy)")]
    NotLoopback(SocketAddr),
    #[error("listening for metrics on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// The monitor's metrics; cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct MonitorMetrics {
    registry: Arc<Registry>,
    clients_connected: Gauge,
    sessions_open: Gauge,
    clients_shaped: Gauge,
    clients_closing: Gauge,
    reports_unsent: Gauge,
    in_flight: Family<CallLabels, Gauge>,
    calls: Family<ResultLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    kills: Counter,
    tc_commands: Counter,
    tc_failures: Counter,
    mgmt_connected: Gauge,
    mgmt_connects: Counter,
    mgmt_disconnects: Counter,
    mgmt_connect_failures: Counter,
    pushes: Family<PushLabels, Counter>,
}

/// The core calls the monitor makes (label values).
pub const CALLS: [&str; 4] = ["StartSession", "UpdateSession", "StopSession", "AuthClient"];

impl Default for MonitorMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl MonitorMetrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("adapter_server");
        let m = MonitorMetrics {
            registry: Arc::new(Registry::default()),
            clients_connected: Gauge::default(),
            sessions_open: Gauge::default(),
            clients_shaped: Gauge::default(),
            clients_closing: Gauge::default(),
            reports_unsent: Gauge::default(),
            in_flight: Family::default(),
            calls: Family::default(),
            errors: Family::default(),
            kills: Counter::default(),
            tc_commands: Counter::default(),
            tc_failures: Counter::default(),
            mgmt_connected: Gauge::default(),
            mgmt_connects: Counter::default(),
            mgmt_disconnects: Counter::default(),
            mgmt_connect_failures: Counter::default(),
            pushes: Family::default(),
        };
        r.register(
            "clients_connected",
            "Clients OpenVPN has connected",
            m.clients_connected.clone(),
        );
        r.register(
            "sessions_open",
            "Connected clients with a session open in the core",
            m.sessions_open.clone(),
        );
        r.register(
            "clients_shaped",
            "Connected clients with their speed limits installed (tc)",
            m.clients_shaped.clone(),
        );
        r.register(
            "clients_closing",
            "Departed clients whose StopSession is still pending",
            m.clients_closing.clone(),
        );
        r.register(
            "reports_unsent",
            "Connected clients whose latest byte counts the core has not accepted yet \
             (in flight, or buffered while the core is unreachable)",
            m.reports_unsent.clone(),
        );
        r.register(
            "core_calls_in_flight",
            "Core calls under way, by call",
            m.in_flight.clone(),
        );
        r.register(
            "core_calls",
            "Core calls answered or failed, by call and result (ok, the core's error code, \
             or unreachable)",
            m.calls.clone(),
        );
        r.register(
            "core_errors",
            "Core calls that failed, by call and kind (unreachable: retried; refused)",
            m.errors.clone(),
        );
        r.register(
            "kills",
            "client-kill commands sent (suspended or terminated channels, unusable clients, \
             the grace period)",
            m.kills.clone(),
        );
        r.register(
            "tc_commands",
            "tc/ip commands run for shaping",
            m.tc_commands.clone(),
        );
        r.register(
            "tc_failures",
            "tc/ip commands for shaping that failed",
            m.tc_failures.clone(),
        );
        r.register(
            "management_connected",
            "1 while connected to OpenVPN's management interface",
            m.mgmt_connected.clone(),
        );
        r.register(
            "management_connects",
            "Connections made to OpenVPN's management interface",
            m.mgmt_connects.clone(),
        );
        r.register(
            "management_disconnects",
            "Management connections lost (each is followed by a reconnect)",
            m.mgmt_disconnects.clone(),
        );
        r.register(
            "management_connect_failures",
            "Attempts to connect to the management interface that failed",
            m.mgmt_connect_failures.clone(),
        );
        r.register(
            "config_pushes",
            "Product config pushes (SetProductConfig), by result",
            m.pushes.clone(),
        );
        for call in CALLS {
            let _ = m.in_flight.get_or_create(&CallLabels { call });
            for kind in ["unreachable", "refused"] {
                let _ = m.errors.get_or_create(&ErrorLabels { call, kind });
            }
        }
        for result in ["ok", "failed"] {
            let _ = m.pushes.get_or_create(&PushLabels { result });
        }
        MonitorMetrics {
            registry: Arc::new(r),
            ..m
        }
    }

    /// A core call was started.
    pub fn call_started(&self, call: &'static str) {
        self.in_flight.get_or_create(&CallLabels { call }).inc();
    }

    /// A core call came back (for calls counted by [`MonitorMetrics::call_started`]).
    pub fn call_done<T>(&self, call: &'static str, result: &Result<T, ApiError>) {
        self.in_flight.get_or_create(&CallLabels { call }).dec();
        self.call_answered(call, result);
    }

    /// The result of a core call (also for calls not counted in flight).
    pub fn call_answered<T>(&self, call: &'static str, result: &Result<T, ApiError>) {
        let label = match result {
            Ok(_) => "ok".to_string(),
            Err(e) => {
                let kind = if is_transient(e) {
                    "unreachable"
                } else {
                    "refused"
                };
                self.errors.get_or_create(&ErrorLabels { call, kind }).inc();
                match e.code() {
                    Some(code) if !e.is_transport() => serde_json::to_value(code)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_else(|| "error".into()),
                    _ => "unreachable".to_string(),
                }
            }
        };
        self.calls
            .get_or_create(&ResultLabels {
                call,
                result: label,
            })
            .inc();
    }

    pub fn killed(&self) {
        self.kills.inc();
    }

    pub fn management_up(&self) {
        self.mgmt_connected.set(1);
        self.mgmt_connects.inc();
    }

    pub fn management_down(&self) {
        self.mgmt_connected.set(0);
        self.mgmt_disconnects.inc();
    }

    pub fn management_connect_failed(&self) {
        self.mgmt_connect_failures.inc();
    }

    pub fn pushed(&self, ok: bool) {
        let result = if ok { "ok" } else { "failed" };
        self.pushes.get_or_create(&PushLabels { result }).inc();
    }

    /// The shaper's running totals of commands run and failed.
    pub fn tc_totals(&self, run: u64, failed: u64) {
        let add = |c: &Counter, total: u64| {
            let now = c.get();
            if total > now {
                c.inc_by(total - now);
            }
        };
        add(&self.tc_commands, run);
        add(&self.tc_failures, failed);
    }

    /// Refreshes the gauges about the client table.
    pub fn table<'a>(&self, clients: impl Iterator<Item = &'a Client>) {
        let (mut connected, mut open, mut shaped, mut closing, mut unsent) = (0, 0, 0, 0, 0);
        for c in clients {
            match &c.phase {
                Phase::Connected {
                    session, shaped: s, ..
                } => {
                    connected += 1;
                    shaped += i64::from(*s);
                    if let Session::Open { reported, .. } = session {
                        open += 1;
                        unsent += i64::from(c.counts != *reported);
                    }
                }
                Phase::Gone { .. } => closing += 1,
            }
        }
        self.clients_connected.set(connected);
        self.sessions_open.set(open);
        self.clients_shaped.set(shaped);
        self.clients_closing.set(closing);
        self.reports_unsent.set(unsent);
    }

    /// The exposition: OpenMetrics when `accept` names it, else the text format 0.0.4.
    pub fn render(&self, accept: Option<&str>) -> Result<(String, &'static str), std::fmt::Error> {
        let mut out = String::with_capacity(4096);
        let openmetrics = accept.is_some_and(|a| {
            a.to_ascii_lowercase()
                .contains("application/openmetrics-text")
        });
        if openmetrics {
            prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
            Ok((
                out,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            ))
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
            Ok((
                out,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            ))
        }
    }
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

fn handle(metrics: &MonitorMetrics, req: &Request<Incoming>) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return answer(StatusCode::NOT_FOUND, "text/plain", "see /metrics\n".into());
    }
    if req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD {
        return answer(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "GET /metrics\n".into(),
        );
    }
    let accept = req
        .headers()
        .get(hyper::header::ACCEPT)
        .and_then(|v| v.to_str().ok());
    match metrics.render(accept) {
        Ok((body, ct)) => answer(StatusCode::OK, ct, body),
        Err(_) => answer(
            StatusCode::INTERNAL_SERVER_ERROR,
            "text/plain",
            "encoding failed\n".into(),
        ),
    }
}

/// Binds `addr` (loopback only) and serves `GET /metrics` until `cancel` fires; at most
/// 16 connections at once, a request head within 5 s.
pub async fn serve(
    addr: SocketAddr,
    metrics: MonitorMetrics,
    cancel: CancellationToken,
) -> Result<SocketAddr, MetricsError> {
    if !addr.ip().is_loopback() {
        return Err(MetricsError::NotLoopback(addr));
    }
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| MetricsError::Bind { addr, source })?;
    info!(listen = %local, "metrics served at /metrics");
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(
        async move {
            loop {
                let permit = tokio::select! {
                    _ = cancel.cancelled() => return,
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
                };
                let (stream, peer) = tokio::select! {
                    _ = cancel.cancelled() => return,
                    r = listener.accept() => match r {
                        Ok(s) => s,
                        Err(e) => {
                            warn!("metrics listener: accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                };
                let metrics = metrics.clone();
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let resp = handle(&metrics, &req);
                        async move { Ok::<_, Infallible>(resp) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(HEADER_TIMEOUT)
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(stream), service);
                    tokio::select! {
                        r = conn => if let Err(e) = r {
                            debug!(peer = %peer, "metrics connection: {e}");
                        },
                        _ = cancel.cancelled() => {}
                    }
                    drop(permit);
                });
            }
        }
        .in_current_span(),
    );
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_served() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let cancel = CancellationToken::new();
        let m = MonitorMetrics::new();
        for bad in ["0.0.0.0:0", "192.0.2.1:9100", "[::]:0"] {
            let r = rt.block_on(serve(bad.parse().expect("addr"), m.clone(), cancel.clone()));
            assert!(
                matches!(r, Err(MetricsError::NotLoopback(_))),
                "{bad}: {r:?}"
            );
        }
        let r = rt.block_on(serve(
            "127.0.0.1:0".parse().expect("addr"),
            m,
            cancel.clone(),
        ));
        assert!(r.is_ok(), "{r:?}");
        cancel.cancel();
    }

    #[test]
    fn formats_follow_accept_and_counters_move() {
        let m = MonitorMetrics::new();
        m.call_started("UpdateSession");
        m.call_done::<()>("UpdateSession", &Ok(()));
        m.killed();
        m.tc_totals(5, 1);
        m.tc_totals(7, 1);
        let (text, ct) = m.render(None).expect("render");
        assert!(ct.starts_with("text/plain"), "{ct}");
        assert!(text.contains("adapter_server_kills_total 1"), "{text}");
        assert!(
            text.contains("adapter_server_tc_commands_total 7"),
            "{text}"
        );
        assert!(
            text.contains("adapter_server_tc_failures_total 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "adapter_server_core_calls_total{call=\"UpdateSession\",result=\"ok\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("adapter_server_core_calls_in_flight{call=\"UpdateSession\"} 0"),
            "{text}"
        );
        let (om, ct) = m
            .render(Some(
                "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
            ))
            .expect("render");
        assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
        assert!(om.ends_with("# EOF\n"), "{om}");
    }
}
