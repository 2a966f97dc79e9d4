//! `adapter-client down`: stops a running `up` or `connect` cleanly — SIGTERM to the
//! process its state file names, then a wait until it has exited (openvpn stopped, the
//! final StopSession sent) — and reports the final counts from its state file.
//!
//! Running connections are found by their state files (`*.state.json`) in the run
//! directory; a process counts only when it is alive, its phase is not final and it is an
//! `adapter-client` (so a pid reused by another program is never signalled).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::json;

use super::args::DownArgs;
use super::UpError;
use crate::runtime;
use crate::state::{self, human_bytes, Status};

/// A connection's state file and what it says.
#[derive(Debug, Clone)]
pub struct Local {
    pub path: PathBuf,
    pub status: Status,
    /// The process runs and has not ended its connection.
    pub running: bool,
}

/// Whether `pid` is a live process (a zombie, exited but not yet reaped by its parent,
/// is not).
pub fn alive(pid: u32) -> bool {
    let exists = i32::try_from(pid).is_ok_and(|p| p > 0 && kill(Pid::from_raw(p), None).is_ok());
    exists && !zombie(pid)
}

/// Whether `/proc/PID/stat` says the process is a zombie (state `Z`, after the `(comm)`).
fn zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].trim_start().chars().next())
        })
        == Some('Z')
}

/// Whether `pid` is an `adapter-client` process.
fn is_adapter(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|c| c.trim().starts_with("adapter-client"))
}

/// Every state file in `run_dir`, sorted by path.
pub fn locals(run_dir: &Path) -> Vec<Local> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(run_dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.ends_with(".state.json"))
                })
                .collect()
        })
        .unwrap_or_default();
    paths.sort();
    paths
        .into_iter()
        .filter_map(|path| {
            let status = state::read(&path).ok()?;
            let running = !status.phase.is_final() && alive(status.pid) && is_adapter(status.pid);
            Some(Local {
                path,
                status,
                running,
            })
        })
        .collect()
}

/// The running connections `a` names.
fn targets(a: &DownArgs, running: Vec<Local>) -> Result<Vec<Local>, UpError> {
    if a.all {
        return Ok(running);
    }
    match &a.client_key {
        Some(k) => {
            let exact: Vec<Local> = running
                .iter()
                .filter(|l| l.status.client_key == *k)
                .cloned()
                .collect();
            if !exact.is_empty() {
                return Ok(exact);
            }
            let prefixed: Vec<Local> = running
                .into_iter()
                .filter(|l| l.status.client_key.starts_with(k.as_str()))
                .collect();
            if prefixed.len() > 1 {
                return Err(UpError::Usage(format!(
                    "{k:?} is the start of {} running client keys: give more of it",
                    prefixed.len()
                )));
            }
            Ok(prefixed)
        }
        None if running.len() > 1 => Err(UpError::Usage(format!(
            "{} connections run ({}): name one, or give --all",
            running.len(),
            running
                .iter()
                .map(|l| l.status.client_key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
        None => Ok(running),
    }
}

/// Stops one connection and returns its final state.
async fn stop(l: &Local, timeout: Duration) -> Result<Status, UpError> {
    let key = l.status.client_key.clone();
    let pid = i32::try_from(l.status.pid).unwrap_or(0);
    kill(Pid::from_raw(pid), Signal::SIGTERM).map_err(|source| UpError::Signal {
        client_key: key.clone(),
        pid,
        source,
    })?;
    let deadline = Instant::now() + timeout;
    while alive(l.status.pid) {
        if Instant::now() >= deadline {
            return Err(UpError::StopTimeout {
                client_key: key,
                pid,
                secs: timeout.as_secs(),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(state::read(&l.path).unwrap_or_else(|_| l.status.clone()))
}

/// Runs `down`; the exit code (0 stopped, 6 nothing running that matches).
pub async fn run_down(a: DownArgs) -> Result<u8, UpError> {
    let run_dir = a.run_dir.clone().unwrap_or_else(runtime::default_base_dir);
    let running: Vec<Local> = locals(&run_dir).into_iter().filter(|l| l.running).collect();
    let chosen = targets(&a, running)?;
    if chosen.is_empty() {
        return Err(UpError::Nothing(match &a.client_key {
            Some(k) => format!("no running connection of {k} (in {})", run_dir.display()),
            None => format!("no running connection (in {})", run_dir.display()),
        }));
    }
    let mut out = Vec::new();
    for l in &chosen {
        if !a.json {
            eprintln!("stopping {} (pid {})…", l.status.client_key, l.status.pid);
        }
        let s = stop(l, Duration::from_secs(a.timeout)).await?;
        if !a.json {
            println!(
                "{}: {}{}; down {} / up {} in {} connection(s)",
                s.client_key,
                s.phase.as_str(),
                s.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default(),
                human_bytes(s.total_bytes_in),
                human_bytes(s.total_bytes_out),
                s.connections
            );
        }
        out.push(json!({
            "clientKey": s.client_key,
            "pid": s.pid,
            "phase": s.phase,
            "reason": s.reason,
            "bytesIn": s.total_bytes_in,
            "bytesOut": s.total_bytes_out,
            "connections": s.connections,
        }));
    }
    if a.json {
        println!("{}", serde_json::Value::Array(out));
    }
    Ok(0)
}
