//! `--client-auth`: the monitor answers `>CLIENT:CONNECT` / `>CLIENT:REAUTH` itself
//! (OpenVPN `--management-client-auth`) with one AuthClient call per login, in its own task.

use openvpn_mgmt::Command;
use service_api::{ApiError, AuthClientRequest, AuthClientResponse, ClientKey};
use tokio::sync::mpsc;
use tracing::{info, warn, Instrument};

use super::core_calls::BoundedCore;
use super::event::Ev;
use crate::hook::{decide, Decision};
use crate::script_env::{self, RawEnv};

/// Starts the AuthClient call of a login (answered by [`Ev::AuthDone`]); a login without
/// usable credentials is denied at once with the returned command.
pub fn start(
    core: &BoundedCore,
    tx: &mpsc::Sender<Ev>,
    gen: u64,
    cid: u64,
    kid: u64,
    env: &RawEnv,
) -> Option<Command> {
    let addr = script_env::peer_addr(env)
        .ok()
        .flatten()
        .map(|(ip, port)| script_env::format_addr(ip, port));
    let (user, password) = match script_env::credentials_from_env(env) {
        Ok(c) => c,
        Err(e) => {
            warn!(cid, "auth deny: {e}");
            return Some(Command::ClientDeny {
                cid,
                kid,
                reason: format!("bad credentials: {e}"),
                client_reason: Some("authentication failed".into()),
            });
        }
    };
    let (core, tx) = (core.clone(), tx.clone());
    tokio::spawn(
        async move {
            let result = core
                .auth_client(&AuthClientRequest {
                    client_key: user.clone(),
                    password,
                    client_addr: addr,
                })
                .await;
            let _ = tx
                .send(Ev::AuthDone {
                    gen,
                    cid,
                    kid,
                    user,
                    result,
                })
                .await;
        }
        .in_current_span(),
    );
    None
}

/// The command that answers a login, from the core's answer (fails closed).
pub fn answer(
    cid: u64,
    kid: u64,
    user: &ClientKey,
    result: Result<AuthClientResponse, ApiError>,
) -> Command {
    match decide(result) {
        Decision::Accept { channel_id, status } => {
            info!(cid, user = %user, channel = %channel_id, %status, "auth accept");
            Command::ClientAuthNt { cid, kid }
        }
        Decision::Deny {
            log_reason,
            client_reason,
        } => {
            warn!(cid, user = %user, reason = %log_reason, "auth deny");
            Command::ClientDeny {
                cid,
                kid,
                reason: log_reason,
                client_reason: Some(client_reason),
            }
        }
    }
}
