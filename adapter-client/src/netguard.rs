//! What the connection actor changes on the host besides the tunnel and its speed
//! limits: the pushed DNS servers (applied while the tunnel is up, restored when it goes
//! down) and the kill switch (installed before OpenVPN starts, removed when the adapter
//! exits). Every change is recorded in the journal (`crate::journal`) before it is made,
//! so the next start undoes the changes of a killed adapter.
//!
//! The actor calls the hooks: [`NetGuard::on_log`] for OpenVPN's `>LOG:` lines (the pushed
//! options), [`NetGuard::on_connected`] / [`NetGuard::on_down`] with the tunnel, and
//! [`NetGuard::shutdown`] at the end (also run on drop, so an early error path restores
//! too).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::dns::{self, AppliedDns, Backend, DnsMode, DnsTools, PushCollector, Restored};
use crate::journal::{Journal, JournalError};
use crate::lockdown::{self, LockdownPlan};
use crate::tool::ToolError;

/// The settings of the DNS and kill-switch code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetSettings {
    /// How pushed DNS servers are applied.
    pub dns: DnsMode,
    pub dns_tools: DnsTools,
    /// The kill switch.
    pub lockdown: bool,
    /// TCP destinations allowed outside the tunnel under the kill switch (e.g. the agent's
    /// market API, which the client's core pays over).
    pub lockdown_allow: Vec<SocketAddr>,
    /// The nft program.
    pub nft: PathBuf,
    /// The journal [default: the runtime directory's path + `.net.json`].
    pub journal: Option<PathBuf>,
}

impl Default for NetSettings {
    fn default() -> Self {
        Self {
            dns: DnsMode::Auto,
            dns_tools: DnsTools::default(),
            lockdown: false,
            lockdown_allow: Vec::new(),
            nft: PathBuf::from("nft"),
            journal: None,
        }
    }
}

impl NetSettings {
    /// The journal of an adapter whose runtime directory is `runtime_dir`: next to it, so it
    /// outlives the directory (removed at every start) and is found again by the next run.
    pub fn journal_path(&self, runtime_dir: &Path) -> PathBuf {
        self.journal.clone().unwrap_or_else(|| {
            let mut p = runtime_dir.as_os_str().to_owned();
            p.push(".net.json");
            PathBuf::from(p)
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("could not install the kill switch (nftables table {table}): {source}")]
    Lockdown {
        table: String,
        #[source]
        source: ToolError,
    },
    #[error("the kill switch needs nft, and {0} was not found")]
    NoNft(PathBuf),
    #[error(transparent)]
    Journal(#[from] JournalError),
}

/// The DNS and kill-switch state of one adapter run.
#[derive(Debug)]
pub struct NetGuard {
    journal: Option<Journal>,
    dns_mode: DnsMode,
    tools: DnsTools,
    nft: PathBuf,
    backend: Result<Backend, String>,
    push: PushCollector,
    applied: Option<AppliedDns>,
    lockdown_table: Option<String>,
    lockdown: bool,
}

impl NetGuard {
    /// Does nothing (the actor's unit tests).
    pub fn disabled() -> Self {
        Self {
            journal: None,
            dns_mode: DnsMode::Off,
            tools: DnsTools::default(),
            nft: PathBuf::from("nft"),
            backend: Err("disabled".into()),
            push: PushCollector::default(),
            applied: None,
            lockdown_table: None,
            lockdown: false,
        }
    }

    /// Chooses the DNS backend and installs the kill switch (`plan`, when given). The
    /// caller has run `journal::recover` on `journal_path` first.
    pub async fn start(
        s: &NetSettings,
        journal_path: &Path,
        plan: Option<&LockdownPlan>,
    ) -> Result<Self, NetError> {
        let backend = if s.dns == DnsMode::Off {
            Err("--dns off".to_string())
        } else {
            dns::choose_backend(
                s.dns,
                &dns::host_facts(&s.dns_tools),
                &s.dns_tools.resolv_conf,
            )
        };
        match &backend {
            Ok(Backend::Resolved) => info!("pushed DNS servers go to systemd-resolved"),
            Ok(Backend::ResolvConf(p)) => {
                info!("pushed DNS servers go into {} while connected", p.display())
            }
            Err(why) if s.dns != DnsMode::Off => {
                warn!("pushed DNS servers will not be applied: {why}")
            }
            Err(_) => {}
        }
        let mut guard = Self {
            journal: Some(Journal::new(journal_path)),
            dns_mode: s.dns,
            tools: s.dns_tools.clone(),
            nft: s.nft.clone(),
            backend,
            push: PushCollector::default(),
            applied: None,
            lockdown_table: None,
            lockdown: s.lockdown,
        };
        if let Some(plan) = plan {
            if !crate::tool::available(&s.nft) {
                return Err(NetError::NoNft(s.nft.clone()));
            }
            if let Some(j) = guard.journal.as_mut() {
                j.set_lockdown(Some(plan.table.clone()))?;
            }
            // From here on the guard removes the table (on drop too), applied or not.
            guard.lockdown_table = Some(plan.table.clone());
            lockdown::apply(plan, &s.nft)
                .await
                .map_err(|e| NetError::Lockdown {
                    table: plan.table.clone(),
                    source: e,
                })?;
            info!(
                table = %plan.table,
                "kill switch on: traffic leaves only through {} or to the VPN server",
                plan.tun
            );
        }
        Ok(guard)
    }

    /// OpenVPN's log is needed (to read the pushed options).
    pub fn wants_log(&self) -> bool {
        self.dns_mode != DnsMode::Off && self.journal.is_some()
    }

    /// One `>LOG:` line.
    pub fn on_log(&mut self, text: &str) {
        if self.wants_log() && self.push.observe_log(text) {
            tracing::debug!(
                "pushed options received ({} so far)",
                self.push.options().len()
            );
        }
    }

    /// A new connection attempt: the options of the last one are forgotten.
    pub fn on_restart(&mut self) {
        self.push.reset();
    }

    /// The tunnel is up on `tun`: the pushed DNS servers are applied.
    pub async fn on_connected(&mut self, tun: &str) {
        if !self.wants_log() {
            return;
        }
        let pushed = self.push.dns();
        for w in &pushed.warnings {
            warn!("pushed DNS settings: {w}");
        }
        let cfg = pushed.config;
        if cfg.is_empty() {
            if self.lockdown {
                warn!("the server pushed no DNS server: with the kill switch on, name lookups work only if a resolver is reachable through the tunnel");
            } else {
                info!("the server pushed no DNS server; the host's DNS settings stay");
            }
            return;
        }
        let Ok(backend) = self.backend.clone() else {
            return;
        };
        self.on_down();
        let applied = match dns::prepare(&backend, &cfg, tun) {
            Ok(a) => a,
            Err(e) => {
                error_dns(&e);
                return;
            }
        };
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = j.set_dns(Some(applied.clone())) {
                warn!("{e:#}; the DNS settings are not changed");
                return;
            }
        }
        self.applied = Some(applied.clone());
        match dns::commit(&applied, &cfg, &self.tools).await {
            Ok(()) => {
                let servers: Vec<String> = cfg.servers.iter().map(ToString::to_string).collect();
                info!(
                    servers = %servers.join(" "),
                    search = %cfg.search.join(" "),
                    "DNS through the tunnel"
                );
            }
            Err(e) => {
                error_dns(&e);
                self.on_down();
            }
        }
    }

    /// The tunnel went down: the host's DNS settings are restored.
    pub fn on_down(&mut self) {
        let Some(applied) = self.applied.take() else {
            return;
        };
        match dns::restore(&applied, &self.tools) {
            Ok(Restored::Done) => info!("DNS settings restored"),
            Ok(Restored::AlreadyClean) => {}
            Ok(Restored::ChangedByOthers) => warn!(
                "the DNS settings were changed by someone else while connected; left as they are"
            ),
            Err(e) => {
                // Kept in the journal: the next start tries again.
                warn!("could not restore the DNS settings: {e:#}");
                return;
            }
        }
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = j.set_dns(None) {
                warn!("{e:#}");
            }
        }
    }

    /// The adapter exits: DNS restored, kill switch removed, journal removed.
    pub fn shutdown(&mut self) {
        self.on_down();
        if let Some(table) = self.lockdown_table.take() {
            match lockdown::remove_blocking(&self.nft, &table) {
                Ok(_) => info!(table = %table, "kill switch removed"),
                Err(e) => {
                    warn!("could not remove the kill switch (nftables table {table}): {e:#}");
                    return;
                }
            }
            if let Some(j) = self.journal.as_mut() {
                if let Err(e) = j.set_lockdown(None) {
                    warn!("{e:#}");
                }
            }
        }
    }
}

fn error_dns(e: &dns::DnsError) {
    tracing::error!("could not apply the pushed DNS settings: {e:#}");
}

impl Drop for NetGuard {
    fn drop(&mut self) {
        self.shutdown();
    }
}
