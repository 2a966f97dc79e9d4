//! The deferred-auth worker: a detached copy of this binary that gets its job on stdin
//! (never on the command line), asks the core once and writes the answer files.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_api::{Client, ClientKey, Secret};
use tracing::error;

use super::decision::{auth_call, log_decision, write_answer, Decision};
use super::{runtime, HookError};

/// Hidden subcommand name of the deferred-auth worker.
pub const WORKER_SUBCOMMAND: &str = "__auth-worker";
/// Largest job the worker reads from stdin.
const MAX_JOB_BYTES: u64 = 16 * 1024;

/// The job handed to the detached worker on its stdin (never on the command line).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerJob {
    pub core_url: String,
    pub token: Secret,
    pub timeout_ms: u64,
    pub username: ClientKey,
    pub password: Secret,
    pub client_addr: Option<String>,
    pub control_file: PathBuf,
    pub reason_file: Option<PathBuf>,
}

/// Starts the worker in its own process group and hands it the job.
pub(super) fn spawn_worker(job: &WorkerJob) -> Result<(), HookError> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe().map_err(HookError::SpawnWorker)?;
    let payload =
        serde_json::to_vec(job).map_err(|e| HookError::SpawnWorker(std::io::Error::other(e)))?;
    let mut cmd = Command::new(exe);
    cmd.arg(WORKER_SUBCOMMAND)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        // Inherited so the worker's one decision line reaches OpenVPN's log.
        .stderr(Stdio::inherit())
        .process_group(0);
    if let Some(v) = std::env::var_os("RUST_LOG") {
        cmd.env("RUST_LOG", v);
    }
    let mut child = cmd.spawn().map_err(HookError::SpawnWorker)?;
    let res = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(&payload),
        None => Err(std::io::Error::other("no stdin pipe")),
    };
    if let Err(e) = res {
        let _ = child.kill();
        let _ = child.wait();
        return Err(HookError::SpawnWorker(e));
    }
    // The child is detached (own process group); it is reaped by init when we exit.
    Ok(())
}

/// The worker: reads its job from stdin, asks the core once, writes the answer.
pub fn run_worker() -> u8 {
    let mut buf = Vec::new();
    let read = std::io::stdin()
        .lock()
        .take(MAX_JOB_BYTES + 1)
        .read_to_end(&mut buf);
    let job: WorkerJob = match read {
        Ok(n) if (n as u64) <= MAX_JOB_BYTES => match serde_json::from_slice(&buf) {
            Ok(j) => j,
            Err(e) => {
                error!("{}", HookError::ReadJob(e.to_string()));
                return 1;
            }
        },
        Ok(_) => {
            error!("{}", HookError::ReadJob("job too large".into()));
            return 1;
        }
        Err(e) => {
            error!("{}", HookError::ReadJob(e.to_string()));
            return 1;
        }
    };
    let decision = match runtime().and_then(|rt| {
        let client = Client::new(
            &job.core_url,
            job.token.clone(),
            Duration::from_millis(job.timeout_ms),
        )
        .map_err(|e| HookError::Core {
            call: "AuthClient",
            source: e,
        })?;
        Ok(rt.block_on(auth_call(
            &client,
            &job.username,
            &job.password,
            job.client_addr.clone(),
        )))
    }) {
        Ok(d) => d,
        Err(e) => Decision::Deny {
            log_reason: format!("{e:#}"),
            client_reason: "authentication unavailable".into(),
        },
    };
    log_decision(
        &job.username,
        job.client_addr.as_deref(),
        &decision,
        "deferred",
    );
    match write_answer(&job.control_file, job.reason_file.as_deref(), &decision) {
        Ok(()) => 0,
        Err(e) => {
            error!("{e:#}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_api::{ClientKey, Secret};

    #[test]
    fn worker_job_debug_free_of_secrets() {
        let job = WorkerJob {
            core_url: "http://x".into(),
            token: Secret("tok-123".into()),
            timeout_ms: 1,
            username: ClientKey("u".into()),
            password: Secret("pw-456".into()),
            client_addr: None,
            control_file: "/a".into(),
            reason_file: None,
        };
        let json = serde_json::to_string(&job).expect("json");
        let back: WorkerJob = serde_json::from_str(&json).expect("parse");
        assert_eq!(back.password.expose(), "pw-456");
        assert_eq!(back.token.expose(), "tok-123");
    }
}
