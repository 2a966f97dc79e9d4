//! Finds what a test scope left behind: namespaces, host network devices and processes.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, Result};

use crate::env::SCOPE_ENV;
use crate::netns::run_cmd;
use crate::proc::wait_for;

/// Checks one `TestEnv`'s prefix (get it with `TestEnv::leak_checker`). A leftover is:
/// a namespace named `<prefix>*` (or its directory `/etc/netns/<prefix>*`); a device in the host namespace named `<prefix>*` (veth,
/// ifb, tun); a live process whose command line contains the prefix, whose environment has
/// `E2E_SCOPE=<prefix>`, or that still sits in one of the scope's (deleted) namespaces.
#[derive(Clone)]
pub struct LeakChecker {
    prefix: String,
    netns_inodes: Arc<Mutex<Vec<u64>>>,
}

impl LeakChecker {
    pub(crate) fn new(prefix: String, netns_inodes: Arc<Mutex<Vec<u64>>>) -> LeakChecker {
        LeakChecker {
            prefix,
            netns_inodes,
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// One human-readable line per leftover (empty when clean).
    pub fn find(&self) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let netns = run_cmd(Command::new("ip").args(["netns", "list"]))?;
        for name in parse_netns_list(&netns) {
            if name.starts_with(&self.prefix) {
                found.push(format!("namespace {name}"));
            }
        }
        // A namespace's own files (`/etc/netns/NAME/resolv.conf`).
        for entry in std::fs::read_dir("/etc/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&self.prefix) {
                found.push(format!("/etc/netns/{name}"));
            }
        }
        let links = run_cmd(Command::new("ip").args(["-o", "link", "show"]))?;
        for name in parse_link_names(&links) {
            if name.starts_with(&self.prefix) {
                found.push(format!("host network device {name}"));
            }
        }
        found.extend(self.find_processes());
        Ok(found)
    }

    fn find_processes(&self) -> Vec<String> {
        let ours: Vec<u64> = self
            .netns_inodes
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default();
        // Inodes of namespaces that exist now under other names (an inode may be reused).
        let named: HashMap<u64, String> = std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let ino = e.metadata().ok()?.ino();
                Some((ino, e.file_name().to_string_lossy().into_owned()))
            })
            .collect();
        let scope_entry = format!("{SCOPE_ENV}={}", self.prefix);
        let me = std::process::id();
        let mut found = Vec::new();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return found;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            if pid == me {
                continue;
            }
            let dir = entry.path();
            let Some(stat) = read_lossy(&dir.join("stat")) else {
                continue; // exited meanwhile
            };
            if proc_state(&stat) == Some('Z') {
                continue; // a zombie holds nothing; its parent reaps it
            }
            let cmdline = read_lossy(&dir.join("cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            let environ = read_lossy(&dir.join("environ")).unwrap_or_default();
            let in_our_netns = net_inode(&dir).is_some_and(|ino| {
                let reused = match named.get(&ino) {
                    Some(name) => !name.starts_with(&self.prefix),
                    None => false,
                };
                ours.contains(&ino) && !reused
            });
            if cmdline.contains(&self.prefix)
                || environ.split('\0').any(|e| e == scope_entry)
                || in_our_netns
            {
                found.push(format!("process {pid}: {}", cmdline.trim()));
            }
        }
        found
    }

    /// An error listing every leftover, or `Ok(())`.
    pub fn assert_clean(&self) -> Result<()> {
        let found = self.find()?;
        if found.is_empty() {
            return Ok(());
        }
        bail!(
            "scope {} left behind:\n  {}",
            self.prefix,
            found.join("\n  ")
        )
    }

    /// Polls until nothing is left (processes being reaped, devices going away), then the
    /// same error as `assert_clean`.
    pub fn wait_clean(&self, timeout: Duration) -> Result<()> {
        let what = format!("scope {} to be clean", self.prefix);
        let waited = wait_for(timeout, &what, || Ok(self.find()?.is_empty().then_some(())));
        match waited {
            Ok(()) => Ok(()),
            Err(_) => self.assert_clean(),
        }
    }
}

fn read_lossy(path: &Path) -> Option<String> {
    std::fs::read(path)
        .ok()
        .map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// The state letter of `/proc/PID/stat` (after the parenthesised command name).
fn proc_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

fn net_inode(proc_dir: &Path) -> Option<u64> {
    std::fs::metadata(proc_dir.join("ns/net"))
        .ok()
        .map(|m| m.ino())
}

/// Names from `ip netns list` ("name" or "name (id: 3)").
fn parse_netns_list(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// Device names from `ip -o link show` ("3: name@peer: <...> ...").
fn parse_link_names(out: &str) -> Vec<&str> {
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|n| n.trim_end_matches(':'))
        .map(|n| n.split('@').next().unwrap_or(n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn netns_list_is_parsed() {
        assert_eq!(
            parse_netns_list("e00012300n1 (id: 3)\nother\n\n"),
            vec!["e00012300n1", "other"]
        );
        assert!(parse_netns_list("").is_empty());
    }

    #[test]
    fn link_names_are_parsed() {
        let out = "1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue\n\
                   7: e00012300v0a@if6: <BROADCAST> mtu 1500\n\
                   9: ifb0: <BROADCAST,NOARP> mtu 1500\n";
        assert_eq!(parse_link_names(out), vec!["lo", "e00012300v0a", "ifb0"]);
    }

    #[test]
    fn proc_state_skips_odd_command_names() {
        assert_eq!(proc_state("42 (a) b) S 1 42"), Some('S'));
        assert_eq!(proc_state("43 (openvpn) Z 1"), Some('Z'));
        assert_eq!(proc_state("garbage"), None);
    }

    #[test]
    fn a_scoped_process_is_found_until_it_exits() -> Result<()> {
        let env = crate::env::TestEnv::new_unchecked("leaks-unit")?;
        let leaks = env.leak_checker();
        let p = crate::proc::ProcBuilder::new("sleep")
            .arg("600")
            .spawn(&env)?;
        let found = leaks.find_processes();
        assert!(
            found.iter().any(|l| l.contains(&p.pid().to_string())),
            "{found:?}"
        );
        drop(p);
        assert!(leaks.find_processes().is_empty());
        Ok(())
    }
}
