//! The auth-user-pass-verify run: credentials from the via-file file or the environment,
//! then a deferred answer through a detached worker (when OpenVPN offers
//! `auth_control_file`) or a synchronous one.

use service_api::{ClientKey, Secret};
use tracing::{info, warn};

use super::decision::{auth_call, log_decision, Decision};
use super::worker::{spawn_worker, WorkerJob};
use super::{runtime, HookError, HookOptions, HookOutcome};
use crate::script_env::{self, AuthFiles, RawEnv, MAX_AUTH_FILE};
use crate::settings::CoreSettings;

fn deny_with_reason(files: &AuthFiles, log_reason: String) -> HookOutcome {
    let d = Decision::Deny {
        log_reason,
        client_reason: "authentication unavailable".into(),
    };
    if let Decision::Deny { log_reason, .. } = &d {
        warn!(reason = %log_reason, "auth deny");
    }
    if let Some(r) = &files.failed_reason {
        if let Err(e) = crate::files::write_existing(r, b"authentication unavailable") {
            warn!("writing {}: {e}", r.display());
        }
    }
    HookOutcome::Deny
}

fn read_credentials(opts: &HookOptions, env: &RawEnv) -> Result<(ClientKey, Secret), HookError> {
    match &opts.trailing_path {
        Some(p) => {
            let bytes =
                crate::files::read_bounded_nofollow(p, MAX_AUTH_FILE as u64).map_err(|e| {
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

/// Answers one login; every failure is a deny.
pub(super) fn run_auth(
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
                if let Err(e) = crate::files::write_existing(r, client_reason.as_bytes()) {
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
