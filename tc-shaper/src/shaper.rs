//! [`Shaper`]: runs the per-client plan and remembers what each client has installed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};

use service_api::SpeedLimits;
use tracing::warn;

use crate::command::{TcCommand, Tools};
use crate::error::ShapingError;
use crate::per_client::{
    client_add_commands, client_remove_commands, ipv6_cleanup_commands, ipv6_setup_commands,
    setup_cleanup_commands, setup_commands, ClientAddrs, ClientShape, ShapingConfig,
};
use crate::rate::class_rates;
use crate::slots::SlotAllocator;

/// Owns the tc state of a server: the slot allocator and what is installed per client key.
/// Commands run one after the other; the caller serialises calls (one task owns it).
#[derive(Debug)]
pub struct Shaper {
    cfg: ShapingConfig,
    tools: Tools,
    slots: SlotAllocator,
    clients: HashMap<u64, ClientShape>,
    ready: bool,
    /// The IPv6 classification is installed (made on the first client with IPv6).
    v6_ready: bool,
    /// Commands run and failed so far ([`Shaper::command_counts`]).
    commands_run: AtomicU64,
    commands_failed: AtomicU64,
}

impl Shaper {
    pub fn new(cfg: ShapingConfig) -> Self {
        let slots = SlotAllocator::new(cfg.max_clients);
        Self {
            cfg,
            tools: Tools::default(),
            slots,
            clients: HashMap::new(),
            ready: false,
            v6_ready: false,
            commands_run: AtomicU64::new(0),
            commands_failed: AtomicU64::new(0),
        }
    }

    async fn run(&self, cmd: TcCommand) -> Result<(), ShapingError> {
        self.commands_run.fetch_add(1, Ordering::Relaxed);
        let r = cmd.in_netns(self.cfg.netns.as_deref()).run().await;
        if r.is_err() {
            self.commands_failed.fetch_add(1, Ordering::Relaxed);
        }
        r
    }

    /// Runs a command whose failure is expected and ignored (removing leftovers that may
    /// not be there, undoing a half-made change): counted as run, never as failed.
    async fn run_best_effort(&self, cmd: TcCommand) {
        self.commands_run.fetch_add(1, Ordering::Relaxed);
        let _ = cmd.in_netns(self.cfg.netns.as_deref()).run().await;
    }

    /// `tc`/`ip` commands run so far, and how many of them failed (not counting a removal of
    /// something already gone, nor best-effort cleanup whose failure is expected), for the
    /// monitor's metrics.
    pub fn command_counts(&self) -> (u64, u64) {
        (
            self.commands_run.load(Ordering::Relaxed),
            self.commands_failed.load(Ordering::Relaxed),
        )
    }

    fn forget_all(&mut self) {
        self.slots = SlotAllocator::new(self.cfg.max_clients);
        self.clients.clear();
        self.ready = false;
        self.v6_ready = false;
    }

    /// Removes leftovers and builds the trees. Forgets every client (callers re-apply).
    pub async fn setup(&mut self) -> Result<(), ShapingError> {
        for c in setup_cleanup_commands(&self.cfg, &self.tools) {
            self.run_best_effort(c).await;
        }
        self.forget_all();
        for c in setup_commands(&self.cfg, &self.tools) {
            self.run(c).await?;
        }
        self.ready = true;
        Ok(())
    }

    /// Adds the IPv6 classification once; on failure removes what was made of it.
    async fn ensure_ipv6(&mut self) -> Result<(), ShapingError> {
        if self.v6_ready {
            return Ok(());
        }
        for c in ipv6_setup_commands(&self.cfg, &self.tools) {
            if let Err(e) = self.run(c).await {
                for r in ipv6_cleanup_commands(&self.cfg, &self.tools) {
                    self.run_best_effort(r).await;
                }
                return Err(e);
            }
        }
        self.v6_ready = true;
        Ok(())
    }

    /// Installs a client's limits for all its addresses (replacing what the same key had).
    /// All or nothing: on an error nothing of this client stays installed.
    pub async fn apply(
        &mut self,
        key: u64,
        addrs: impl Into<ClientAddrs>,
        speed: &SpeedLimits,
    ) -> Result<(), ShapingError> {
        let addrs = addrs.into();
        self.remove(key).await;
        if !self.ready
            || class_rates(speed.min_download_bps, speed.max_download_bps, 1).is_none()
                && class_rates(speed.min_upload_bps, speed.max_upload_bps, 1).is_none()
        {
            return Ok(());
        }
        if addrs.v6.is_some() {
            self.ensure_ipv6().await?;
        }
        let slot = self
            .slots
            .alloc()
            .ok_or(ShapingError::NoSlot(self.cfg.max_clients))?;
        let (cmds, shape) = client_add_commands(&self.cfg, &self.tools, slot, addrs, speed);
        for c in cmds {
            if let Err(e) = self.run(c).await {
                // Undo the part that was installed, then give the slot back.
                for r in client_remove_commands(&self.cfg, &self.tools, &shape) {
                    self.run_best_effort(r).await;
                }
                self.slots.release(slot);
                return Err(e);
            }
        }
        self.clients.insert(key, shape);
        Ok(())
    }

    /// Removes a client's classes and filters; logs failures.
    pub async fn remove(&mut self, key: u64) {
        if let Some(shape) = self.clients.remove(&key) {
            for c in client_remove_commands(&self.cfg, &self.tools, &shape) {
                if let Err(e) = self.run(c).await {
                    warn!("removing shaping: {e:#}");
                }
            }
            self.slots.release(shape.slot);
        }
    }

    /// Removes the whole setup.
    pub async fn teardown(&mut self) {
        for c in setup_cleanup_commands(&self.cfg, &self.tools) {
            self.run_best_effort(c).await;
        }
        self.forget_all();
    }

    /// How many clients have limits installed.
    pub fn installed(&self) -> usize {
        self.clients.len()
    }
}
