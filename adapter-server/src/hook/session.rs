//! client-connect and client-disconnect: StartSession at connect (the session id is kept
//! in the state dir) and StopSession with OpenVPN's final counters at disconnect.

use std::path::Path;

use service_api::{FindSessionRequest, StartSessionRequest, StopSessionRequest};
use tracing::{info, warn};

use super::{runtime, HookError, HookOutcome};
use crate::script_env::{self, ClientIdentity, RawEnv};
use crate::settings::CoreSettings;

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

/// client-connect: opens the session (deny when the channel is not in service).
pub(super) fn run_connect(
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
    crate::files::write_private(
        &path,
        format!("{}\n{}\n", resp.session_id, conn_id).as_bytes(),
    )
    .map_err(|e| HookError::WriteFile {
        path: path.clone(),
        source: e,
    })?;
    info!(user = %id.username, connection = %conn_id, session = %resp.session_id,
        status = %resp.status, "session started");
    Ok(HookOutcome::Accept)
}

/// client-disconnect: stops the connection's session with the final counters.
pub(super) fn run_disconnect(
    core: &CoreSettings,
    env: &RawEnv,
    state_dir: &Path,
) -> Result<(), HookError> {
    let id = ClientIdentity::from_env(env)?;
    let (rx, tx) = script_env::final_counts(env)?;
    let conn_id = id.connection_id();
    let path = state_dir.join(state_file_name(&conn_id));
    let client = core.client()?;
    let rt = runtime()?;
    // The session: the one client-connect recorded, else the one the core knows for this
    // connection id (the monitor opened it; open or already stopped, so nothing is billed
    // twice). A session is never started here.
    let recorded = match crate::files::read_bounded_nofollow(&path, 4096) {
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
            // No recorded session: find the one the monitor opened for this connection id,
            // never open one (FindSession: 404 when the connection has none).
            let found = rt.block_on(client.find_session(&FindSessionRequest {
                client_key: id.username.clone(),
                connection_id: conn_id.clone(),
            }));
            match found {
                Ok(found) => {
                    info!(user = %id.username, connection = %conn_id, session = %found.session_id,
                        "session of this connection found by its connection id");
                    found.session_id
                }
                Err(e) if e.code() == Some(service_api::ErrorCode::NotFound) => {
                    warn!(user = %id.username, connection = %conn_id, bytes_in = rx,
                        bytes_out = tx, "no session of this connection; none is started at disconnect");
                    return Ok(());
                }
                Err(e) => {
                    return Err(HookError::Core {
                        call: "FindSession",
                        source: e,
                    })
                }
            }
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
