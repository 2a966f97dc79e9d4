//! `adapter-server hook`: the one executable OpenVPN runs for `auth-user-pass-verify`
//! (via-file and via-env), `client-connect` and `client-disconnect`.
//!
//! Auth is deferred when OpenVPN offers `auth_control_file` (unless sync mode is asked
//! for): the hook starts a detached worker (this binary, hidden subcommand
//! [`WORKER_SUBCOMMAND`]) that receives the job on its stdin, calls AuthClient and writes
//! the answer; the hook itself exits 2 at once. Everything fails closed: any error means
//! deny, with a reason in `auth_failed_reason_file` when OpenVPN gave one.
//!
//! - `decision`: the core's answer → accept / deny, and the answer files;
//! - `auth`: the auth-user-pass-verify run (sync or deferred);
//! - `worker`: the detached deferred-auth worker;
//! - `session`: client-connect / client-disconnect (StartSession / StopSession).

mod auth;
mod decision;
mod session;
mod worker;

use std::path::PathBuf;

use service_api::ApiError;
use tracing::error;

use crate::script_env::{EnvError, RawEnv, ScriptType};
use crate::settings::CoreSettings;

pub(crate) use decision::log_decision;
pub use decision::{decide, write_answer, write_answer_as, Decision};
pub use session::state_file_name;
pub use worker::{run_worker, WorkerJob, WORKER_SUBCOMMAND};

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

/// The single-threaded runtime of one hook run.
fn runtime() -> Result<tokio::runtime::Runtime, HookError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(HookError::Runtime)
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
        ScriptType::AuthUserPassVerify => auth::run_auth(opts, core, env),
        ScriptType::ClientConnect => {
            match core.and_then(|c| session::run_connect(&c, env, &opts.state_dir)) {
                Ok(o) => o,
                Err(e) => {
                    error!("client-connect: {e:#}");
                    HookOutcome::Deny
                }
            }
        }
        ScriptType::ClientDisconnect => {
            if let Err(e) = core.and_then(|c| session::run_disconnect(&c, env, &opts.state_dir)) {
                error!("client-disconnect: {e:#}");
            }
            // OpenVPN ignores the exit status of client-disconnect.
            HookOutcome::Accept
        }
    }
}
