//! An auth decision: the core's AuthClient answer mapped to accept or deny (fail closed),
//! its log line, and the answer files of deferred auth.

use std::path::Path;

use service_api::{ApiError, AuthClientRequest, Client, ClientKey, ErrorCode, Secret};
use tracing::{info, warn};

use super::HookError;

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

/// Asks the core and decides.
pub(super) async fn auth_call(
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

/// The decision's log line (`mode`: sync, deferred or hand-off).
pub(crate) fn log_decision(user: &ClientKey, addr: Option<&str>, d: &Decision, mode: &str) {
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
    write_answer_as(control, reason_file, decision, None)
}

/// [`write_answer`] for files that must belong to user `owner` (the monitor answering a
/// login handed off by a hook of that user).
pub fn write_answer_as(
    control: &Path,
    reason_file: Option<&Path>,
    decision: &Decision,
    owner: Option<u32>,
) -> Result<(), HookError> {
    // Both files exist (OpenVPN made them): never created, never written through a link.
    let write = |p: &Path, data: &[u8]| -> Result<(), HookError> {
        match owner {
            Some(uid) => crate::files::write_existing_owned_by(p, data, uid),
            None => crate::files::write_existing(p, data),
        }
        .map_err(|e| HookError::WriteFile {
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
        // OpenVPN creates both files before it runs the script.
        std::fs::write(&acf, b"").expect("acf");
        std::fs::write(&arf, b"").expect("arf");
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
}
