//! `adapter-server hook`: the one executable OpenVPN runs for `auth-user-pass-verify`
//! (via-file and via-env), `client-connect` and `client-disconnect`.
//!
//! Auth is deferred when OpenVPN offers `auth_control_file` (unless sync mode is asked
//! for): the hook starts a detached worker (this binary, hidden subcommand
//! [`WORKER_SUBCOMMAND`]) that receives the job on its stdin, calls AuthClient and writes
//! the answer; the hook itself exits 2 at once. Everything fails closed: any error means
//! deny, with a reason in `auth_failed_reason_file` when OpenVPN gave one.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use service_api::{
    ApiError, AuthClientRequest, Client, ClientKey, ErrorCode, Secret, StartSessionRequest,
    StopSessionRequest,
};
use tracing::{error, info, warn};

use crate::script_env::{
    self, AuthFiles, ClientIdentity, EnvError, RawEnv, ScriptType, MAX_AUTH_FILE,
};
use crate::settings::CoreSettings;

/// Hidden subcommand name of the deferred-auth worker.
pub const WORKER_SUBCOMMAND: &str = "__auth-worker";
/// Largest job the worker reads from stdin.
const MAX_JOB_BYTES: u64 = 16 * 1024;

/// What the hook tells OpenVPN (its exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookOutcome {
    /// exit 0
    Accept,
    /// exit 1
    Deny,
    /// exit 2 (auth answered later through `auth_control_file`)
    Deferred,
}

impl HookOutcome {
    pub fn exit_code(self) -> u8 {
        match self {
            Self::Accept => 0,
            Self::Deny => 1,
            Self::Deferred => 2,
        }
    }
}

/// Errors of the hook (all of them end in a deny).
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("reading the script environment: {0}")]
    Env(#[from] EnvError),
    #[error("reading the credentials file {path}: {source}")]
    ReadCredentials {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("loading settings: {0}")]
    Settings(#[from] crate::settings::SettingsError),
    #[error("starting the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("starting the deferred-auth worker: {0}")]
    SpawnWorker(#[source] std::io::Error),
    #[error("core call {call} failed: {source}")]
    Core {
        call: &'static str,
        #[source]
        source: ApiError,
    },
    #[error("writing {path}: {source}")]
    WriteFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("hook state {path}: {source}")]
    StateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the worker job from stdin: {0}")]
    ReadJob(String),
}

/// Options of one hook run.
#[derive(Debug, Clone)]
pub struct HookOptions {
    /// Answer auth synchronously (exit 0/1) even when deferred auth is offered.
    pub sync: bool,
    /// Path OpenVPN appended to the command line (credentials file for via-file auth,
    /// dynamic config file for client-connect).
    pub trailing_path: Option<PathBuf>,
    /// Where client-connect records the session id for client-disconnect.
    pub state_dir: PathBuf,
}

/// Default of [`HookOptions::state_dir`].
pub const DEFAULT_STATE_DIR: &str = "/tmp/adapter-server-hook";

/// An auth decision with the reason logged and the one told to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Accept {
        channel_id: String,
        status: String,
    },
    Deny {
        log_reason: String,
        client_reason: String,
    },
}

/// Maps a core answer to a decision (pure; fails closed).
pub fn decide(result: Result<service_api::AuthClientResponse, ApiError>) -> Decision {
    match result {
        Ok(r) if r.status.admits_login() => Decision::Accept {
            channel_id: r.channel_id,
            status: r.status.to_string(),
        },
        Ok(r) => Decision::Deny {
            log_reason: format!("channel {} is {}", r.channel_id, r.status),
            client_reason: format!("service {}", r.status),
        },
        Err(e) => {
            let client_reason = match &e {
                ApiError::Api {
                    code: ErrorCode::AuthFailed,
                    ..
                } => "authentication failed".to_string(),
                ApiError::Api {
                    code: ErrorCode::ChannelInactive,
                    status,
                    ..
                } => match status {
                    Some(s) => format!("service {s}"),
                    None => "service inactive".to_string(),
                },
                ApiError::Api {
                    code: ErrorCode::RateLimited,
                    ..
                } => "TEMP[backoff 30]: too many failed attempts".to_string(),
                e if e.is_transport() => {
                    "TEMP[backoff 10]: service temporarily unavailable".to_string()
                }
                _ => "authentication unavailable".to_string(),
            };
            Decision::Deny {
                log_reason: format!("{e}"),
                client_reason,
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, HookError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HookError::Runtime)
}

async fn auth_call(
    client: &Client,
    user: &ClientKey,
    password: &Secret,
    client_addr: Option<String>,
) -> Decision {
    decide(
        client
            .auth_client(&AuthClientRequest {
                client_key: user.clone(),
                password: password.clone(),
                client_addr,
            })
            .await,
    )
}

fn log_decision(user: &ClientKey, addr: Option<&str>, d: &Decision, mode: &str) {
    match d {
        Decision::Accept { channel_id, status } => info!(
            user = %user, addr = addr.unwrap_or("-"), mode, channel = %channel_id, %status,
            "auth accept"
        ),
        Decision::Deny {
            log_reason,
            client_reason,
        } => warn!(
            user = %user, addr = addr.unwrap_or("-"), mode, reason = %log_reason,
            client_reason = %client_reason, "auth deny"
        ),
    }
}

/// Writes the reason (when denied and a reason file exists) and then the control file.
pub fn write_answer(
    control: &Path,
    reason_file: Option<&Path>,
    decision: &Decision,
) -> Result<(), HookError> {
    let write = |p: &Path, data: &[u8]| -> Result<(), HookError> {
        let mut f = std::fs::File::create(p).map_err(|e| HookError::WriteFile {
            path: p.to_path_buf(),
            source: e,
        })?;
        f.write_all(data).map_err(|e| HookError::WriteFile {
            path: p.to_path_buf(),
            source: e,
        })
    };
    match decision {
        Decision::Accept { .. } => write(control, b"1"),
        Decision::Deny { client_reason, .. } => {
            if let Some(r) = reason_file {
                // Best effort: a missing reason must not turn a deny into silence.
                if let Err(e) = write(r, client_reason.as_bytes()) {
                    warn!("{e:#}");
                }
            }
            write(control, b"0")
        }
    }
}

fn deny_with_reason(files: &AuthFiles, log_reason: String) -> HookOutcome {
    let d = Decision::Deny {
        log_reason,
        client_reason: "authentication unavailable".into(),
    };
    if let Decision::Deny { log_reason, .. } = &d {
        warn!(reason = %log_reason, "auth deny");
    }
    if let Some(r) = &files.failed_reason {
        if let Err(e) = std::fs::write(r, b"authentication unavailable") {
            warn!("writing {}: {e}", r.display());
        }
    }
    HookOutcome::Deny
}

/// Runs the hook for the given environment. Never panics; every failure is a deny.
pub fn run(opts: &HookOptions, core: Result<CoreSettings, HookError>, env: &RawEnv) -> HookOutcome {
    let script = match ScriptType::from_env(env) {
        Ok(s) => s,
        Err(e) => {
            error!("{e}; is this binary wired as auth-user-pass-verify, client-connect or client-disconnect?");
            return HookOutcome::Deny;
        }
    };
    match script {
        ScriptType::AuthUserPassVerify => run_auth(opts, core, env),
        ScriptType::ClientConnect => match core.and_then(|c| run_connect(&c, env, &opts.state_dir))
        {
            Ok(o) => o,
            Err(e) => {
                error!("client-connect: {e:#}");
                HookOutcome::Deny
            }
        },
        ScriptType::ClientDisconnect => {
            if let Err(e) = core.and_then(|c| run_disconnect(&c, env, &opts.state_dir)) {
                error!("client-disconnect: {e:#}");
            }
            // OpenVPN ignores the exit status of client-disconnect.
            HookOutcome::Accept
        }
    }
}

fn read_credentials(opts: &HookOptions, env: &RawEnv) -> Result<(ClientKey, Secret), HookError> {
    match &opts.trailing_path {
        Some(p) => {
            let bytes = crate::settings::read_bounded(p, MAX_AUTH_FILE as u64).map_err(|e| {
                HookError::ReadCredentials {
                    path: p.clone(),
                    source: e,
                }
            })?;
            Ok(script_env::parse_auth_file(&bytes)?)
        }
        None => Ok(script_env::credentials_from_env(env)?),
    }
}

fn run_auth(
    opts: &HookOptions,
    core: Result<CoreSettings, HookError>,
    env: &RawEnv,
) -> HookOutcome {
    let files = match AuthFiles::from_env(env) {
        Ok(f) => f,
        Err(e) => return deny_with_reason(&AuthFiles::default(), format!("{e}")),
    };
    let (user, password) = match read_credentials(opts, env) {
        Ok(c) => c,
        Err(e) => return deny_with_reason(&files, format!("{e:#}")),
    };
    let addr = match script_env::peer_addr(env) {
        Ok(a) => a.map(|(ip, port)| script_env::format_addr(ip, port)),
        Err(e) => return deny_with_reason(&files, format!("{e}")),
    };
    let core = match core {
        Ok(c) => c,
        Err(e) => return deny_with_reason(&files, format!("{e:#}")),
    };
    match (&files.control, opts.sync) {
        (Some(control), false) => {
            let job = WorkerJob {
                core_url: core.url.clone(),
                token: core.token.clone(),
                timeout_ms: u64::try_from(core.timeout.as_millis()).unwrap_or(u64::MAX),
                username: user.clone(),
                password,
                client_addr: addr.clone(),
                control_file: control.clone(),
                reason_file: files.failed_reason.clone(),
            };
            match spawn_worker(&job) {
                Ok(()) => {
                    info!(user = %user, addr = addr.as_deref().unwrap_or("-"), "auth deferred");
                    HookOutcome::Deferred
                }
                Err(e) => deny_with_reason(&files, format!("{e:#}")),
            }
        }
        _ => {
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => return deny_with_reason(&files, format!("{e:#}")),
            };
            let decision = match core.client() {
                Ok(client) => rt.block_on(auth_call(&client, &user, &password, addr.clone())),
                Err(e) => Decision::Deny {
                    log_reason: format!("{e:#}"),
                    client_reason: "authentication unavailable".into(),
                },
            };
            log_decision(&user, addr.as_deref(), &decision, "sync");
            if let (Decision::Deny { client_reason, .. }, Some(r)) =
                (&decision, &files.failed_reason)
            {
                if let Err(e) = std::fs::write(r, client_reason.as_bytes()) {
                    warn!("writing {}: {e}", r.display());
                }
            }
            match decision {
                Decision::Accept { .. } => HookOutcome::Accept,
                Decision::Deny { .. } => HookOutcome::Deny,
            }
        }
    }
}

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

fn spawn_worker(job: &WorkerJob) -> Result<(), HookError> {
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

/// File name of a connection's state file (FNV-1a 64 of the connection id).
pub fn state_file_name(conn_id: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in conn_id.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("session-{h:016x}")
}

/// Creates the state dir (0700) or checks that an existing one is ours and private.
fn ensure_state_dir(dir: &Path) -> Result<(), HookError> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let err = |e: std::io::Error| HookError::StateDir {
        path: dir.to_path_buf(),
        source: e,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let m = std::fs::symlink_metadata(dir).map_err(err)?;
            if !m.is_dir()
                || m.uid() != nix::unistd::getuid().as_raw()
                || m.permissions().mode() & 0o077 != 0
            {
                return Err(err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    "not a private (0700) directory owned by this user",
                )));
            }
            Ok(())
        }
        Err(e) => Err(err(e)),
    }
}

fn run_connect(
    core: &CoreSettings,
    env: &RawEnv,
    state_dir: &Path,
) -> Result<HookOutcome, HookError> {
    let id = ClientIdentity::from_env(env)?;
    let client = core.client()?;
    let rt = runtime()?;
    let resp = rt
        .block_on(client.start_session(&StartSessionRequest {
            client_key: id.username.clone(),
            connection_id: Some(id.connection_id()),
            client_addr: Some(id.client_addr.clone()),
            vpn_addr: id.vpn_addr.map(|a| a.to_string()),
        }))
        .map_err(|e| HookError::Core {
            call: "StartSession",
            source: e,
        })?;
    if resp.status.must_disconnect() {
        warn!(user = %id.username, connection = %id.connection_id(), status = %resp.status,
            "client-connect refused: channel not in service");
        return Ok(HookOutcome::Deny);
    }
    ensure_state_dir(state_dir)?;
    let conn_id = id.connection_id();
    let path = state_dir.join(state_file_name(&conn_id));
    std::fs::write(&path, format!("{}\n{}\n", resp.session_id, conn_id)).map_err(|e| {
        HookError::WriteFile {
            path: path.clone(),
            source: e,
        }
    })?;
    info!(user = %id.username, connection = %conn_id, session = %resp.session_id,
        status = %resp.status, "session started");
    Ok(HookOutcome::Accept)
}

fn run_disconnect(core: &CoreSettings, env: &RawEnv, state_dir: &Path) -> Result<(), HookError> {
    let id = ClientIdentity::from_env(env)?;
    let (rx, tx) = script_env::final_counts(env)?;
    let conn_id = id.connection_id();
    let path = state_dir.join(state_file_name(&conn_id));
    let client = core.client()?;
    let rt = runtime()?;
    // The session: the one client-connect recorded, else the one the core knows for this
    // connection id (the monitor opened it; the core answers a StartSession with a known
    // connection id with that session, open or already stopped, so nothing is billed twice).
    let recorded = match crate::settings::read_bounded(&path, 4096) {
        Ok(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(HookError::StateDir { path, source: e }),
    };
    let session_id = match recorded {
        Some(text) => {
            let mut lines = text.lines();
            let (Some(sid), Some(recorded)) = (lines.next(), lines.next()) else {
                let _ = std::fs::remove_file(&path);
                return Err(HookError::StateDir {
                    path,
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "malformed state file",
                    ),
                });
            };
            if recorded != conn_id {
                return Err(HookError::StateDir {
                    path,
                    source: std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "state file of another connection",
                    ),
                });
            }
            service_api::SessionId(sid.to_string())
        }
        None => {
            let found = rt
                .block_on(client.start_session(&StartSessionRequest {
                    client_key: id.username.clone(),
                    connection_id: Some(conn_id.clone()),
                    client_addr: Some(id.client_addr.clone()),
                    vpn_addr: id.vpn_addr.map(|a| a.to_string()),
                }))
                .map_err(|e| HookError::Core {
                    call: "StartSession (finding the connection's session)",
                    source: e,
                })?;
            info!(user = %id.username, connection = %conn_id, session = %found.session_id,
                "session of this connection found by its connection id");
            found.session_id
        }
    };
    let stopped = rt
        .block_on(client.stop_session(&StopSessionRequest {
            session_id,
            bytes_in: rx,
            bytes_out: tx,
        }))
        .map_err(|e| HookError::Core {
            call: "StopSession",
            source: e,
        });
    match stopped {
        Ok(r) => {
            let _ = std::fs::remove_file(&path);
            info!(user = %id.username, connection = %conn_id, session = %r.session_id,
                bytes_in = rx, bytes_out = tx, stopped = r.stopped, status = %r.status,
                "session stopped");
            Ok(())
        }
        Err(e) => {
            // Keep the state file only for transient failures is pointless (no retry
            // happens here); remove it and report.
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_api::{AuthClientResponse, ServiceStatus, SpeedLimits};

    fn api(code: ErrorCode, status: Option<ServiceStatus>) -> ApiError {
        ApiError::Api {
            http_status: code.http_status(),
            code,
            message: "m".into(),
            status,
        }
    }

    #[test]
    fn decisions_fail_closed() {
        let ok = |status| {
            Ok(AuthClientResponse {
                client_key: ClientKey("k".into()),
                channel_id: "ch".into(),
                status,
                speed: SpeedLimits::default(),
            })
        };
        assert!(matches!(
            decide(ok(ServiceStatus::Active)),
            Decision::Accept { .. }
        ));
        assert!(matches!(
            decide(ok(ServiceStatus::Activating)),
            Decision::Accept { .. }
        ));
        for s in [
            ServiceStatus::Suspended,
            ServiceStatus::Terminating,
            ServiceStatus::Pending,
        ] {
            assert!(matches!(decide(ok(s)), Decision::Deny { .. }), "{s}");
        }
        let cases = [
            (api(ErrorCode::AuthFailed, None), "authentication failed"),
            (
                api(ErrorCode::ChannelInactive, Some(ServiceStatus::Suspended)),
                "service suspended",
            ),
            (api(ErrorCode::RateLimited, None), "TEMP[backoff 30]"),
            (api(ErrorCode::Unavailable, None), "TEMP[backoff 10]"),
            (
                api(ErrorCode::Unauthorized, None),
                "authentication unavailable",
            ),
            (
                ApiError::BadResponse {
                    http_status: 200,
                    body: "x".into(),
                },
                "authentication unavailable",
            ),
        ];
        for (e, want) in cases {
            match decide(Err(e)) {
                Decision::Deny { client_reason, .. } => {
                    assert!(client_reason.contains(want), "{client_reason} vs {want}")
                }
                d => panic!("accepted: {d:?}"),
            }
        }
    }

    #[test]
    fn answer_files_written_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let acf = dir.path().join("acf");
        let arf = dir.path().join("arf");
        write_answer(
            &acf,
            Some(&arf),
            &Decision::Deny {
                log_reason: "x".into(),
                client_reason: "service suspended".into(),
            },
        )
        .expect("write");
        assert_eq!(std::fs::read_to_string(&acf).expect("acf"), "0");
        assert_eq!(
            std::fs::read_to_string(&arf).expect("arf"),
            "service suspended"
        );
        write_answer(
            &acf,
            None,
            &Decision::Accept {
                channel_id: "c".into(),
                status: "active".into(),
            },
        )
        .expect("write");
        assert_eq!(std::fs::read_to_string(&acf).expect("acf"), "1");
        assert!(write_answer(
            &dir.path().join("no/such/dir"),
            None,
            &Decision::Accept {
                channel_id: "c".into(),
                status: "active".into(),
            }
        )
        .is_err());
    }

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
