//! The shaping task: owns the [`Shaper`] and runs its `tc` commands in the order the actor
//! sends them, so the actor never waits for `tc`.

use std::time::Duration;

use service_api::SpeedLimits;
use tc_shaper::{ClientAddrs, Shaper, ShapingConfig};
use tokio::sync::{mpsc, oneshot};
use tracing::{error, info, warn, Instrument};

use super::metrics::MonitorMetrics;

/// How long shutdown waits for the tc setup to be removed.
const TEARDOWN_TIMEOUT: Duration = Duration::from_secs(10);

enum ShapeOp {
    Setup,
    Apply {
        key: u64,
        addrs: ClientAddrs,
        speed: SpeedLimits,
    },
    Remove {
        key: u64,
    },
    Teardown(oneshot::Sender<()>),
}

/// The actor's handle on the shaping task.
pub struct ShapingHandle(mpsc::UnboundedSender<ShapeOp>);

impl ShapingHandle {
    /// Starts the task; it reports the commands it runs to `metrics`.
    pub fn spawn(cfg: ShapingConfig, metrics: MonitorMetrics) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(shaper_task(Shaper::new(cfg), rx, metrics).in_current_span());
        Self(tx)
    }

    /// (Re)builds the setup; every client's limits are forgotten.
    pub fn setup(&self) {
        let _ = self.0.send(ShapeOp::Setup);
    }

    pub fn apply(&self, key: u64, addrs: ClientAddrs, speed: SpeedLimits) {
        let _ = self.0.send(ShapeOp::Apply { key, addrs, speed });
    }

    pub fn remove(&self, key: u64) {
        let _ = self.0.send(ShapeOp::Remove { key });
    }

    /// Removes the whole setup and waits (bounded) until it is done.
    pub async fn teardown(self) {
        let (done_tx, done_rx) = oneshot::channel();
        if self.0.send(ShapeOp::Teardown(done_tx)).is_ok() {
            let _ = tokio::time::timeout(TEARDOWN_TIMEOUT, done_rx).await;
        }
    }
}

async fn shaper_task(
    mut shaper: Shaper,
    mut rx: mpsc::UnboundedReceiver<ShapeOp>,
    metrics: MonitorMetrics,
) {
    while let Some(op) = rx.recv().await {
        match op {
            ShapeOp::Setup => match shaper.setup().await {
                Ok(()) => info!("shaping set up"),
                Err(e) => error!("shaping setup failed (clients will not be limited): {e:#}"),
            },
            ShapeOp::Apply { key, addrs, speed } => {
                if let Err(e) = shaper.apply(key, addrs, &speed).await {
                    warn!(addr = %addrs.v4, addr6 = ?addrs.v6, "shaping client failed: {e:#}");
                }
            }
            ShapeOp::Remove { key } => shaper.remove(key).await,
            ShapeOp::Teardown(done) => {
                shaper.teardown().await;
                let _ = done.send(());
            }
        }
        let (run, failed) = shaper.command_counts();
        metrics.tc_totals(run, failed);
    }
}
