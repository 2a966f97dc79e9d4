//! The HTTP listener under both routers (the Service API and the market API): an accept loop
//! with a cap on open connections, HTTP/1.1 connections (hyper) with a header-read timeout
//! and an idle timeout, and graceful shutdown.
//!
//! The rules, for every connection of a listener ([`ServerLimits`]):
//! - **idle timeout** (default 5 s): while the server waits for a request (the connection is
//!   new, or its previous answer was sent), a connection on which the client sends nothing
//!   for this long is closed;
//! - **header timeout** (default 10 s): a request head must be complete within this time from
//!   the moment the server starts waiting for it, however slowly its bytes trickle in; and a
//!   request body must be complete within the same time after its head;
//! - **connection cap** (default 1024, and never more than the process's descriptor limit
//!   allows, see [`fd_budget`]): at the cap the listener stops accepting, new connections wait
//!   in the kernel's accept queue until one closes, and the core logs it (at most one line
//!   every 10 s).
//!
//! So a client that opens connections and sends nothing, or half a request, holds each for
//! at most the header timeout, and the process never runs out of descriptors: a normal
//! request is answered while thousands of idle sockets are open.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// Limits of one listener's connections: a connection that sends nothing for
/// `idle_timeout` while the server waits for a request is closed; a request head must be
/// complete `header_timeout` after the server starts waiting for it (and a body as long after
/// its head); at `max_connections` open, new connections wait until one closes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerLimits {
    /// Most connections open at once.
    pub max_connections: usize,
    /// Time allowed for a request head, from the moment the server waits for it; also for a
    /// request body after its head.
    pub header_timeout: Duration,
    /// Time a connection may send nothing while the server waits for a request.
    pub idle_timeout: Duration,
}

impl ServerLimits {
    pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
    pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            max_connections: Self::DEFAULT_MAX_CONNECTIONS,
            header_timeout: Self::DEFAULT_HEADER_TIMEOUT,
            idle_timeout: Self::DEFAULT_IDLE_TIMEOUT,
        }
    }
}

/// The time a request body may take after its head (a request extension set by the
/// listener; [`ApiJson`](super::ApiJson) reads it).
#[derive(Clone, Copy, Debug)]
pub struct BodyTimeout(pub Duration);

/// Descriptors kept free for everything that is not a connection (database, listeners, logs).
const RESERVED_FDS: u64 = 64;

/// Raises the soft limit on open descriptors to the hard limit (so the connection cap can be
/// honoured), and returns how many connections `listeners` listeners may hold together
/// without running the process out of descriptors (`None` when the limit is unknown).
pub fn fd_budget(listeners: usize) -> Option<usize> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() {
        hard
    } else {
        soft
    };
    let per = soft.saturating_sub(RESERVED_FDS) / u64::try_from(listeners.max(1)).ok()?;
    Some(usize::try_from(per).unwrap_or(usize::MAX).max(1))
}

/// Logs at most one line per period, counting what it held back.
struct LogLimiter {
    period: Duration,
    last: Option<Instant>,
    held: u64,
}

impl LogLimiter {
    fn new(period: Duration) -> Self {
        LogLimiter {
            period,
            last: None,
            held: 0,
        }
    }

    /// `Some(n)` when a line may be logged now (`n` lines were held back since the last one).
    fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < self.period => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// What the idle timer of one connection needs to know.
struct ConnTimes {
    /// Requests being answered.
    in_flight: u32,
    /// When the server started waiting for the next request (or the last byte arrived).
    waiting_since: Instant,
}

/// A connection's socket with the idle timeout: while no request is being answered, a read
/// that sees no byte for `idle` fails with `TimedOut` (hyper then closes the connection).
struct IdleStream {
    inner: TcpStream,
    times: Arc<Mutex<ConnTimes>>,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
}

impl IdleStream {
    fn times(&self) -> std::sync::MutexGuard<'_, ConnTimes> {
        self.times.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl AsyncRead for IdleStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                if buf.filled().len() > before {
                    self.times().waiting_since = Instant::now();
                }
                Poll::Ready(r)
            }
            Poll::Pending => {
                let deadline = {
                    let t = self.times();
                    (t.in_flight == 0).then(|| t.waiting_since + self.idle)
                };
                let Some(deadline) = deadline else {
                    return Poll::Pending;
                };
                if self.timer.deadline() != deadline {
                    self.timer.as_mut().reset(deadline);
                }
                match self.timer.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle connection: no request",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for IdleStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Marks a request in flight for the idle timer; when it ends, the wait for the next one
/// starts.
struct InFlight(Arc<Mutex<ConnTimes>>);

impl InFlight {
    fn begin(times: &Arc<Mutex<ConnTimes>>) -> InFlight {
        times.lock().unwrap_or_else(|e| e.into_inner()).in_flight += 1;
        InFlight(times.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        t.in_flight = t.in_flight.saturating_sub(1);
        t.waiting_since = Instant::now();
    }
}

/// Serves `app` on `listener` with `limits` until `stop` turns true; then stops accepting
/// and waits for the open connections to finish their requests. With `tls`, every
/// connection is TLS (the handshake must end within the header timeout). Each request
/// carries its peer's address (`ConnectInfo<SocketAddr>`).
pub(super) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ServerLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let tls = tls.map(tokio_rustls::TlsAcceptor::from);
    let addr = listener.local_addr()?;
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    let mut at_cap_log = LogLimiter::new(Duration::from_secs(10));
    let mut accept_error_log = LogLimiter::new(Duration::from_secs(10));
    loop {
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if let Some(held) = at_cap_log.admit(Instant::now()) {
                    tracing::warn!(
                        listen = %addr,
                        max_connections = limits.max_connections,
                        times_since_last_message = held,
                        "connection limit reached: new connections wait until one closes \
                         (idle ones are closed after the idle/header timeouts; see --max-connections)"
                    );
                }
                tokio::select! {
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => p,
                        Err(_) => break,
                    },
                    _ = stop.wait_for(|s| *s) => break,
                }
            }
        };
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                if let Some(held) = accept_error_log.admit(Instant::now()) {
                    tracing::warn!(listen = %addr, error = %e, times_since_last_message = held, "accept failed");
                }
                // Out of descriptors or memory: give closing connections time.
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = stop.wait_for(|s| *s) => break,
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let times = Arc::new(Mutex::new(ConnTimes {
            in_flight: 0,
            waiting_since: Instant::now(),
        }));
        let io = IdleStream {
            inner: stream,
            times: times.clone(),
            idle: limits.idle_timeout,
            timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
        };
        let app = app.clone();
        let body_timeout = BodyTimeout(limits.header_timeout);
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            let guard = InFlight::begin(&times);
            req.extensions_mut().insert(body_timeout);
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            let answer = app.clone().oneshot(req.map(Body::new));
            async move {
                let r: Result<_, Infallible> = answer.await;
                drop(guard);
                r
            }
        });
        let watcher = graceful.watcher();
        let http = http.clone();
        let tls = tls.clone();
        let handshake_timeout = limits.header_timeout;
        tokio::spawn(async move {
            let r = match tls {
                None => {
                    watcher
                        .watch(http.serve_connection(TokioIo::new(io), service))
                        .await
                }
                Some(acceptor) => {
                    match tokio::time::timeout(handshake_timeout, acceptor.accept(io)).await {
                        Ok(Ok(stream)) => {
                            watcher
                                .watch(http.serve_connection(TokioIo::new(stream), service))
                                .await
                        }
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                            Ok(())
                        }
                        Err(_) => {
                            tracing::debug!(peer = %peer, "TLS handshake timed out");
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "connection closed");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_limiter_logs_once_per_period_and_counts_the_rest() {
        let t0 = Instant::now();
        let mut l = LogLimiter::new(Duration::from_secs(10));
        assert_eq!(l.admit(t0), Some(0));
        assert_eq!(l.admit(t0 + Duration::from_secs(1)), None);
        assert_eq!(l.admit(t0 + Duration::from_secs(9)), None);
        assert_eq!(l.admit(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(l.admit(t0 + Duration::from_secs(11)), None);
    }

    #[test]
    fn fd_budget_leaves_room_for_the_rest() {
        let one = fd_budget(1).expect("limit");
        let two = fd_budget(2).expect("limit");
        assert!(one >= 1 && two >= 1 && two <= one, "{one} {two}");
    }
}
