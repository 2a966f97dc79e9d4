//! DNS through the tunnel: the servers the VPN server pushes (`dhcp-option DNS`, OpenVPN
//! 2.6's `dns server`) are applied while the tunnel is up and the host's settings restored
//! exactly afterwards — through systemd-resolved when `/etc/resolv.conf` is its stub,
//! otherwise by managing `/etc/resolv.conf` itself.
//!
//! - [`push`]: reading the pushed options from OpenVPN's log (pure, validated).
//! - [`resolv_conf`]: the file's text, in-place writes, the restore decision.
//! - [`resolved`]: the `resolvectl` calls.
//! - here: choosing the backend ([`choose_backend`], pure, from [`HostFacts`]), and
//!   applying ([`prepare`] + [`commit`]) and restoring ([`restore`]) an [`AppliedDns`],
//!   which is what the recovery journal (`crate::journal`) records so a killed adapter's
//!   changes are undone at the next start.
//!
//! A network namespace made with `ip netns exec NS` sees `/etc/netns/NS/resolv.conf` as its
//! `/etc/resolv.conf` when that file exists; without it the namespace shares the host's
//! file, and the adapter refuses to change it (a tunnel of one namespace must not change
//! the DNS of the whole host).

pub mod push;
pub mod resolv_conf;
pub mod resolved;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use push::{DnsConfig, PushCollector, PushedDns};
use resolv_conf::{ResolvConfError, RestoreAction};

use crate::tool::ToolError;

/// How pushed DNS servers are applied (`--dns`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsMode {
    /// systemd-resolved when /etc/resolv.conf is its stub, else /etc/resolv.conf.
    #[default]
    Auto,
    /// Always through systemd-resolved (`resolvectl`).
    Resolved,
    /// Always by managing /etc/resolv.conf.
    ResolvConf,
    /// Pushed DNS servers are not applied.
    Off,
}

/// Programs and files of the DNS code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsTools {
    pub resolvectl: PathBuf,
    pub resolv_conf: PathBuf,
}

impl Default for DnsTools {
    fn default() -> Self {
        Self {
            resolvectl: PathBuf::from("resolvectl"),
            resolv_conf: PathBuf::from(resolv_conf::RESOLV_CONF),
        }
    }
}

/// Where the DNS settings go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Resolved,
    ResolvConf(PathBuf),
}

/// What the backend choice depends on (gathered by [`host_facts`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostFacts {
    /// The resolv.conf path is a symlink into `/run/systemd/resolve/` (resolved's stub or
    /// its resolv.conf).
    pub resolved_stub: bool,
    pub resolvectl_found: bool,
    /// This process is in the network namespace of PID 1 (`None`: unknown).
    pub init_netns: Option<bool>,
    /// The resolv.conf this process sees is the very file PID 1 sees (`None`: unknown).
    pub shares_init_file: Option<bool>,
}

/// Chooses the backend for `mode`, or says why DNS cannot be applied here.
pub fn choose_backend(mode: DnsMode, facts: &HostFacts, path: &Path) -> Result<Backend, String> {
    if mode == DnsMode::Off {
        return Err("--dns off".into());
    }
    if facts.init_netns == Some(false) && facts.shares_init_file == Some(true) {
        return Err(format!(
            "this network namespace shares {} with the host; a namespace's tunnel must not \
             change the host's DNS (with `ip netns exec NS`, create /etc/netns/NS/resolv.conf)",
            path.display()
        ));
    }
    let resolved_ok = || -> Result<Backend, String> {
        if !facts.resolvectl_found {
            return Err("resolvectl was not found".into());
        }
        if facts.init_netns == Some(false) {
            return Err("systemd-resolved serves another network namespace than this one".into());
        }
        Ok(Backend::Resolved)
    };
    match (mode, facts.resolved_stub) {
        (DnsMode::Resolved, _) | (DnsMode::Auto, true) => resolved_ok(),
        (DnsMode::ResolvConf, true) => Err(format!(
            "{} belongs to systemd-resolved (use --dns resolved or auto)",
            path.display()
        )),
        _ => Ok(Backend::ResolvConf(path.to_path_buf())),
    }
}

fn same_file(a: &Path, b: &Path) -> Option<bool> {
    let (a, b) = (std::fs::metadata(a).ok()?, std::fs::metadata(b).ok()?);
    Some(a.dev() == b.dev() && a.ino() == b.ino())
}

/// Looks at the host: where resolv.conf leads, resolvectl, the network namespace.
pub fn host_facts(tools: &DnsTools) -> HostFacts {
    let resolved_stub = std::fs::symlink_metadata(&tools.resolv_conf)
        .is_ok_and(|m| m.file_type().is_symlink())
        && std::fs::canonicalize(&tools.resolv_conf)
            .is_ok_and(|t| t.starts_with("/run/systemd/resolve/"));
    let init_file = Path::new("/proc/1/root").join(
        tools
            .resolv_conf
            .strip_prefix("/")
            .unwrap_or(&tools.resolv_conf),
    );
    HostFacts {
        resolved_stub,
        resolvectl_found: crate::tool::available(&tools.resolvectl),
        init_netns: same_file(Path::new("/proc/self/ns/net"), Path::new("/proc/1/ns/net")),
        shares_init_file: same_file(&tools.resolv_conf, &init_file),
    }
}

/// DNS settings that are in place (or about to be): what undoing them needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "backend", rename_all = "camelCase")]
pub enum AppliedDns {
    /// `resolvectl` settings on a link.
    #[serde(rename_all = "camelCase")]
    Resolved { link: String },
    /// resolv.conf rewritten: its original text (`None`: it did not exist) and ours.
    #[serde(rename_all = "camelCase")]
    ResolvConf {
        path: PathBuf,
        original: Option<String>,
        written: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error(transparent)]
    ResolvConf(#[from] ResolvConfError),
    #[error("systemd-resolved: {0}")]
    Resolvectl(#[from] ToolError),
}

/// What applying `cfg` on `link` will change (reads the current resolv.conf); record it in
/// the journal before [`commit`].
pub fn prepare(backend: &Backend, cfg: &DnsConfig, link: &str) -> Result<AppliedDns, DnsError> {
    Ok(match backend {
        Backend::Resolved => AppliedDns::Resolved {
            link: link.to_string(),
        },
        Backend::ResolvConf(path) => {
            let original = resolv_conf::read(path)?;
            let written = resolv_conf::render(original.as_deref(), cfg);
            AppliedDns::ResolvConf {
                path: path.clone(),
                original,
                written,
            }
        }
    })
}

/// Makes the change.
pub async fn commit(
    applied: &AppliedDns,
    cfg: &DnsConfig,
    tools: &DnsTools,
) -> Result<(), DnsError> {
    match applied {
        AppliedDns::Resolved { link } => {
            for c in resolved::apply_commands(&tools.resolvectl, link, cfg) {
                c.run().await?;
            }
            Ok(())
        }
        AppliedDns::ResolvConf { path, written, .. } => {
            Ok(resolv_conf::write_in_place(path, written)?)
        }
    }
}

/// How a restore went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The original is back (resolv.conf written or removed, or the link reverted).
    Done,
    /// Nothing to do: already the original, or the link is gone.
    AlreadyClean,
    /// resolv.conf was changed by someone else after the adapter wrote it: left alone.
    ChangedByOthers,
}

/// Undoes `applied` (also one from the journal of a killed adapter). Blocking: a file
/// write or one short `resolvectl` call.
pub fn restore(applied: &AppliedDns, tools: &DnsTools) -> Result<Restored, DnsError> {
    match applied {
        AppliedDns::Resolved { link } => {
            let link_exists = Path::new("/sys/class/net").join(link).exists();
            if !link_exists {
                return Ok(Restored::AlreadyClean);
            }
            resolved::revert_command(&tools.resolvectl, link).run_blocking()?;
            Ok(Restored::Done)
        }
        AppliedDns::ResolvConf {
            path,
            original,
            written,
        } => {
            let current = resolv_conf::read(path)?;
            let action =
                resolv_conf::restore_action(current.as_deref(), original.as_deref(), written);
            resolv_conf::apply_restore(path, &action)?;
            Ok(match action {
                RestoreAction::Write(_) | RestoreAction::Remove => Restored::Done,
                RestoreAction::Nothing => Restored::AlreadyClean,
                RestoreAction::ChangedByOthers => Restored::ChangedByOthers,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_choice_table() {
        let p = Path::new("/etc/resolv.conf");
        let facts = |stub, found, init: Option<bool>, shares: Option<bool>| HostFacts {
            resolved_stub: stub,
            resolvectl_found: found,
            init_netns: init,
            shares_init_file: shares,
        };
        let file = Some(Backend::ResolvConf(p.to_path_buf()));
        let res = Some(Backend::Resolved);
        let cases: Vec<(DnsMode, HostFacts, Option<Backend>)> = vec![
            // Host namespace, plain file: resolv.conf.
            (
                DnsMode::Auto,
                facts(false, true, Some(true), Some(true)),
                file.clone(),
            ),
            // Host namespace, resolved's stub: resolved.
            (
                DnsMode::Auto,
                facts(true, true, Some(true), Some(true)),
                res.clone(),
            ),
            // Stub but no resolvectl: nothing.
            (
                DnsMode::Auto,
                facts(true, false, Some(true), Some(true)),
                None,
            ),
            // A namespace with its own file (ip netns exec + /etc/netns/NS/resolv.conf).
            (
                DnsMode::Auto,
                facts(false, true, Some(false), Some(false)),
                file.clone(),
            ),
            // A namespace sharing the host's file: never touched, whatever the mode.
            (
                DnsMode::Auto,
                facts(false, true, Some(false), Some(true)),
                None,
            ),
            (
                DnsMode::ResolvConf,
                facts(false, true, Some(false), Some(true)),
                None,
            ),
            (
                DnsMode::Resolved,
                facts(true, true, Some(false), Some(true)),
                None,
            ),
            // resolved runs in the host namespace, not in this one.
            (
                DnsMode::Resolved,
                facts(false, true, Some(false), Some(false)),
                None,
            ),
            // Forced modes.
            (
                DnsMode::Resolved,
                facts(false, true, Some(true), Some(true)),
                res.clone(),
            ),
            (
                DnsMode::ResolvConf,
                facts(true, true, Some(true), Some(true)),
                None,
            ),
            (
                DnsMode::ResolvConf,
                facts(false, false, None, None),
                file.clone(),
            ),
            (
                DnsMode::Off,
                facts(false, true, Some(true), Some(true)),
                None,
            ),
        ];
        for (i, (mode, f, want)) in cases.into_iter().enumerate() {
            let got = choose_backend(mode, &f, p).ok();
            assert_eq!(got, want, "case {i}: {mode:?} {f:?}");
        }
    }

    #[test]
    fn applied_dns_round_trips_through_json() {
        let a = AppliedDns::ResolvConf {
            path: "/etc/resolv.conf".into(),
            original: Some("nameserver 192.0.2.53\n".into()),
            written: "nameserver 10.8.0.1\n".into(),
        };
        let j = serde_json::to_string(&a).expect("json");
        assert!(j.contains("\"backend\":\"resolvConf\""), "{j}");
        assert_eq!(serde_json::from_str::<AppliedDns>(&j).expect("back"), a);
        let r = AppliedDns::Resolved {
            link: "tunac1".into(),
        };
        let j = serde_json::to_string(&r).expect("json");
        assert_eq!(serde_json::from_str::<AppliedDns>(&j).expect("back"), r);
    }

    #[tokio::test]
    async fn prepare_commit_restore_on_a_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("resolv.conf");
        let original = "nameserver 192.0.2.53\n";
        std::fs::write(&path, original).expect("write");
        let cfg = DnsConfig {
            servers: vec!["10.8.0.1".parse().expect("ip")],
            search: vec![],
        };
        let tools = DnsTools {
            resolvectl: "/nonexistent/resolvectl".into(),
            resolv_conf: path.clone(),
        };
        let applied = prepare(&Backend::ResolvConf(path.clone()), &cfg, "tunac1").expect("prepare");
        commit(&applied, &cfg, &tools).await.expect("commit");
        assert!(std::fs::read_to_string(&path)
            .expect("read")
            .contains("nameserver 10.8.0.1"));
        assert_eq!(restore(&applied, &tools).expect("restore"), Restored::Done);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), original);
        assert_eq!(
            restore(&applied, &tools).expect("again"),
            Restored::AlreadyClean
        );
        // A link that is gone needs no revert (and resolvectl is not even run).
        let gone = AppliedDns::Resolved {
            link: "nosuchlink0".into(),
        };
        assert_eq!(
            restore(&gone, &tools).expect("gone"),
            Restored::AlreadyClean
        );
    }
}
