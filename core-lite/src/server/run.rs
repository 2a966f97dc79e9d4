//! Running the API: bind, serve until asked to stop (with the listener's limits, see
//! [`ServerLimits`]), and run the billing timers beside it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::listen::{serve, ServerLimits};
use super::router::router;
use crate::service::{now_ms, Core};

/// A server running in the background (used by `serve` and by the testkit).
pub struct RunningServer {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    ticker: JoinHandle<()>,
    core: Arc<Core>,
}

impl RunningServer {
    /// Graceful stop: no new connections, running requests finish, and the usage series
    /// waiting in memory is written.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.stop.send(true);
        self.ticker.abort();
        let _ = self.ticker.await;
        let r = match self.server.await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        flush_series(self.core).await;
        r
    }

    /// Waits until the server ends (it ends only on error or after [`stop`](Self::stop)),
    /// then writes the usage series waiting in memory.
    pub async fn wait(&mut self) -> std::io::Result<()> {
        let r = match (&mut self.server).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        };
        flush_series(self.core.clone()).await;
        r
    }

    pub fn stopper(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }

    /// Turns true when the server is asked to stop (for companion tasks).
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stop.subscribe()
    }
}

/// Writes the usage series waiting in memory (at a stop).
async fn flush_series(core: Arc<Core>) {
    let r = tokio::task::spawn_blocking(move || core.flush_usage_series(now_ms(), true)).await;
    if let Ok(Err(e)) = r {
        tracing::warn!(error = %format!("{e:#}"), "writing the usage series at the stop failed");
    }
}

/// Binds `listen` and serves the API with `limits`; the billing timers run every `tick`.
pub async fn start(
    core: Arc<Core>,
    listen: SocketAddr,
    tick: Duration,
    limits: ServerLimits,
) -> std::io::Result<RunningServer> {
    start_tls(core, listen, tick, limits, None).await
}

/// [`start`], over TLS with `tls` when given.
pub async fn start_tls(
    core: Arc<Core>,
    listen: SocketAddr,
    tick: Duration,
    limits: ServerLimits,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> std::io::Result<RunningServer> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = watch::channel(false);
    let app = router(core.clone());
    let server = tokio::spawn(serve(listener, app, limits, tls, stopped));
    let ticker_core = core.clone();
    let ticker = tokio::spawn(async move {
        let core = ticker_core;
        let mut iv = tokio::time::interval(tick);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            iv.tick().await;
            let c = core.clone();
            let timers = move || {
                let now = now_ms();
                let changed = c.tick(now);
                if let Err(e) = c.flush_usage_series(now, false) {
                    tracing::warn!(error = %format!("{e:#}"), "writing the usage series failed (kept for the next try)");
                }
                changed
            };
            match tokio::task::spawn_blocking(timers).await {
                Ok(Ok(changed)) => {
                    for (ch, st) in changed {
                        tracing::info!(channel = %ch, status = %st, "timer changed channel status");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "billing timer failed"),
                Err(e) => tracing::warn!(error = %e, "billing timer task failed"),
            }
        }
    });
    Ok(RunningServer {
        addr,
        stop,
        server,
        ticker,
        core,
    })
}
