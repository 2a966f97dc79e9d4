//! GetAccess: the client's core serves the access message of a client key, only after the
//! signatures of the stored signed access message check out again (the offering it carries,
//! and the agent's signature by that offering's key).

use service_api::{AccessMessage, ClientKey, GetAccessRequest};

use super::state::{Caller, Core};
use crate::error::{CoreError, Result};
use crate::signing::check_signed_access;
use crate::store::channels::{self, StoredAccess};

/// The access message of a stored signed access message whose signatures check out.
pub(crate) fn verified_access(stored: &StoredAccess, key: &ClientKey) -> Result<AccessMessage> {
    match stored {
        StoredAccess::Signed(s) => match check_signed_access(s) {
            Ok(_) => Ok(s.access.clone()),
            Err(e) => {
                tracing::warn!(client_key = %key, error = %e, "stored access message does not check out");
                Err(CoreError::NotFound(format!(
                    "no valid access message for client key {key}: the stored one does not \
                     check out ({e}); import the signed file again (core-lite access import FILE)"
                )))
            }
        },
        StoredAccess::Unsigned => Err(CoreError::NotFound(format!(
            "no valid access message for client key {key}: the stored one is not signed \
             (imported by an older core-lite); import the signed file of `core-lite access \
             export` again"
        ))),
    }
}

impl Core {
    pub fn get_access(&self, caller: &Caller, req: &GetAccessRequest) -> Result<AccessMessage> {
        if matches!(caller, Caller::Product(_)) {
            return Err(CoreError::Forbidden(
                "GetAccess is a client operation: use a client token".into(),
            ));
        }
        let stored = self
            .db
            .read(|tx| channels::client_access(tx, &req.client_key.0))?
            .ok_or_else(|| {
                CoreError::NotFound(format!(
                    "no access message for client key {} (core-lite access import FILE)",
                    req.client_key
                ))
            })?;
        verified_access(&stored, &req.client_key)
    }
}
