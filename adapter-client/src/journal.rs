//! The recovery journal: what the adapter changed on the host outside its runtime
//! directory — the DNS settings ([`AppliedDns`], with resolv.conf's original text) and the
//! kill switch's nftables table — written (0600, atomic rename) **before** each change, so
//! that the next start undoes the changes of an adapter that was killed (SIGKILL, power
//! loss) instead of stopping cleanly. A clean stop undoes them itself and removes the file.
//!
//! The journal names its owner by pid and process start time, so a journal whose adapter
//! still runs is never touched, and a reused pid is not mistaken for it.

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::dns::{self, AppliedDns, DnsTools, Restored};
use crate::lockdown;

/// Largest journal read.
pub const MAX_JOURNAL: u64 = 256 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("could not write the journal {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not read the journal {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the journal {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("the journal {path} is larger than {MAX_JOURNAL} bytes")]
    TooLarge { path: PathBuf },
}

/// The journal's contents.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JournalData {
    /// The adapter that wrote it.
    pub pid: u32,
    /// Its start time (`/proc/PID/stat` field 22), when known.
    pub start_time: Option<u64>,
    /// DNS settings in place.
    pub dns: Option<AppliedDns>,
    /// The kill switch's nftables table (`inet`), when installed.
    pub lockdown_table: Option<String>,
}

impl JournalData {
    fn is_empty(&self) -> bool {
        self.dns.is_none() && self.lockdown_table.is_none()
    }
}

/// The start time of process `pid` (`/proc/PID/stat` field 22, clock ticks since boot).
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold anything: skip past it.
    let after = stat.get(stat.rfind(')')? + 1..)?;
    after.split_whitespace().nth(19)?.parse().ok()
}

/// Whether the adapter that wrote `data` still runs.
pub fn owner_alive(data: &JournalData) -> bool {
    match (process_start_time(data.pid), data.start_time) {
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Reads a journal; `None` when there is none.
pub fn read(path: &Path) -> Result<Option<JournalData>, JournalError> {
    let rerr = |e| JournalError::Read {
        path: path.to_path_buf(),
        source: e,
    };
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(rerr(e)),
    };
    if md.len() > MAX_JOURNAL {
        return Err(JournalError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = fs::read_to_string(path).map_err(rerr)?;
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| JournalError::Parse {
            path: path.to_path_buf(),
            source: e,
        })
}

/// The journal of this adapter.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    data: JournalData,
}

impl Journal {
    pub fn new(path: &Path) -> Self {
        let pid = std::process::id();
        Self {
            path: path.to_path_buf(),
            data: JournalData {
                pid,
                start_time: process_start_time(pid),
                ..JournalData::default()
            },
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn data(&self) -> &JournalData {
        &self.data
    }

    pub fn set_dns(&mut self, dns: Option<AppliedDns>) -> Result<(), JournalError> {
        self.data.dns = dns;
        self.save()
    }

    pub fn set_lockdown(&mut self, table: Option<String>) -> Result<(), JournalError> {
        self.data.lockdown_table = table;
        self.save()
    }

    /// Writes the journal (temporary file, fsync, rename); removes it when empty.
    fn save(&self) -> Result<(), JournalError> {
        let werr = |e| JournalError::Write {
            path: self.path.clone(),
            source: e,
        };
        if self.data.is_empty() {
            return match fs::remove_file(&self.path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(werr(e)),
            };
        }
        if let Some(parent) = self.path.parent() {
            fs::create_dir_all(parent).map_err(werr)?;
        }
        let mut tmp = self.path.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let _ = fs::remove_file(&tmp);
        let text = serde_json::to_vec_pretty(&self.data).map_err(|e| werr(e.into()))?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(werr)?;
        f.write_all(&text).map_err(werr)?;
        f.sync_all().map_err(werr)?;
        fs::rename(&tmp, &self.path).map_err(werr)
    }
}

/// Undoes what the journal at `path` records, when its adapter is gone, and removes the
/// journal; also deletes kill-switch tables of adapters that are gone. Returns what was
/// done (for the log and tests). Errors are logged: recovery never stops a start.
pub fn recover(path: &Path, dns_tools: &DnsTools, nft: &Path) -> Vec<String> {
    let mut done = Vec::new();
    match read(path) {
        Ok(None) => {}
        Ok(Some(data)) if data.pid != std::process::id() && owner_alive(&data) => {
            warn!(
                journal = %path.display(),
                pid = data.pid,
                "the journal belongs to an adapter that still runs; leaving it"
            );
        }
        Ok(Some(data)) => {
            let mut clean = true;
            if let Some(applied) = &data.dns {
                match dns::restore(applied, dns_tools) {
                    Ok(Restored::Done) => {
                        info!(
                            "restored the DNS settings an earlier run left behind ({})",
                            describe(applied)
                        );
                        done.push(format!("dns restored: {}", describe(applied)));
                    }
                    Ok(Restored::AlreadyClean) => {}
                    Ok(Restored::ChangedByOthers) => {
                        warn!("{} was changed by someone else after an earlier run wrote it; left as it is", describe(applied));
                        done.push(format!("dns left alone: {}", describe(applied)));
                    }
                    Err(e) => {
                        warn!("could not restore the DNS settings of an earlier run: {e:#}");
                        clean = false;
                    }
                }
            }
            if let Some(table) = &data.lockdown_table {
                match lockdown::remove_blocking(nft, table) {
                    Ok(true) => {
                        info!("removed the kill-switch table {table} an earlier run left behind");
                        done.push(format!("nft table removed: {table}"));
                    }
                    Ok(false) => {}
                    Err(e) => {
                        warn!("could not remove the kill-switch table {table} of an earlier run: {e:#}");
                        clean = false;
                    }
                }
            }
            if clean {
                if let Err(e) = fs::remove_file(path) {
                    warn!(journal = %path.display(), "could not remove the journal: {e}");
                }
            }
        }
        Err(e) => warn!("{e:#}; ignoring it"),
    }
    if crate::tool::available(nft) {
        let alive = |pid: u32| process_start_time(pid).is_some();
        match lockdown::sweep_blocking(nft, std::process::id(), alive) {
            Ok(removed) => {
                for t in removed {
                    info!("removed the kill-switch table {t} of an adapter that is gone");
                    done.push(format!("nft table removed: {t}"));
                }
            }
            Err(e) => tracing::debug!("listing nftables tables: {e:#}"),
        }
    }
    done
}

fn describe(applied: &AppliedDns) -> String {
    match applied {
        AppliedDns::Resolved { link } => format!("systemd-resolved link {link}"),
        AppliedDns::ResolvConf { path, .. } => path.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_is_known() {
        let me = std::process::id();
        assert!(process_start_time(me).is_some());
        assert_eq!(process_start_time(u32::MAX), None);
        let data = JournalData {
            pid: me,
            start_time: process_start_time(me),
            ..JournalData::default()
        };
        assert!(owner_alive(&data));
        // Same pid, another start time: a reused pid, not the owner.
        let reused = JournalData {
            start_time: data.start_time.map(|t| t + 1),
            ..data.clone()
        };
        assert!(!owner_alive(&reused));
        let gone = JournalData {
            pid: u32::MAX,
            ..data
        };
        assert!(!owner_alive(&gone));
    }

    #[test]
    fn written_before_changes_removed_when_empty() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("j/key.net.json");
        let mut j = Journal::new(&path);
        j.set_lockdown(Some("adapter_client_1".into()))
            .expect("write");
        let back = read(&path).expect("read").expect("present");
        assert_eq!(back.lockdown_table.as_deref(), Some("adapter_client_1"));
        assert_eq!(back.pid, std::process::id());
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).expect("md").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        j.set_lockdown(None).expect("clear");
        assert!(!path.exists(), "an empty journal is removed");
        assert_eq!(read(&path).expect("read"), None);
        fs::write(&path, "{not json").expect("junk");
        assert!(matches!(read(&path), Err(JournalError::Parse { .. })));
    }

    #[test]
    fn recovery_restores_a_dead_adapters_resolv_conf() {
        let dir = tempfile::tempdir().expect("tmp");
        let resolv = dir.path().join("resolv.conf");
        let original = "nameserver 192.0.2.53\n";
        let written = "# ours\nnameserver 10.8.0.1\n";
        fs::write(&resolv, written).expect("write");
        let path = dir.path().join("key.net.json");
        let data = JournalData {
            pid: u32::MAX, // no such process
            start_time: Some(1),
            dns: Some(AppliedDns::ResolvConf {
                path: resolv.clone(),
                original: Some(original.into()),
                written: written.into(),
            }),
            lockdown_table: None,
        };
        fs::write(&path, serde_json::to_vec(&data).expect("json")).expect("journal");
        let tools = DnsTools {
            resolvectl: "/nonexistent/resolvectl".into(),
            resolv_conf: resolv.clone(),
        };
        let done = recover(&path, &tools, Path::new("/nonexistent/nft"));
        assert_eq!(fs::read_to_string(&resolv).expect("read"), original);
        assert!(!path.exists(), "the journal is removed after recovery");
        assert_eq!(done.len(), 1, "{done:?}");
        // A journal whose owner runs (this process, under another pid field check) stays.
        let live = JournalData {
            pid: 1,
            start_time: process_start_time(1),
            ..data
        };
        fs::write(&resolv, written).expect("write");
        fs::write(&path, serde_json::to_vec(&live).expect("json")).expect("journal");
        let done = recover(&path, &tools, Path::new("/nonexistent/nft"));
        assert!(done.is_empty());
        assert!(path.exists());
        assert_eq!(fs::read_to_string(&resolv).expect("read"), written);
    }
}
