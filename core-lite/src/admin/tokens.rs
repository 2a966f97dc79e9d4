//! API tokens: the admin token file and client tokens (stored as keyed hashes only).

use std::path::PathBuf;

use service_api::Secret;

use super::files::{read_bounded, write_private_file};
use crate::error::{CoreError, Result};
use crate::keys;
use crate::service::{now_ms, Core};
use crate::store::tokens::{self, TokenOwner};

/// Shortest admin token accepted.
const MIN_ADMIN_TOKEN_LEN: usize = 16;

impl Core {
    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir().join("admin.token")
    }

    /// Reads `admin.token` (creating it, 0600, on first use) and makes sure it is valid.
    pub fn ensure_admin_token(&self) -> Result<Secret> {
        let path = self.admin_token_path();
        let token = if path.exists() {
            let raw = read_bounded(&path)?;
            let s = String::from_utf8(raw)
                .map_err(|_| CoreError::Invalid(format!("{}: not UTF-8", path.display())))?;
            Secret(s.trim().to_string())
        } else {
            let t = keys::random_token();
            write_private_file(&path, format!("{}\n", t.expose()).as_bytes())?;
            t
        };
        if token.expose().len() < MIN_ADMIN_TOKEN_LEN {
            return Err(CoreError::Invalid(format!(
                "{}: admin token too short",
                path.display()
            )));
        }
        self.store_token(&token, &TokenOwner::Admin)?;
        Ok(token)
    }

    /// A new token for the client adapter.
    pub fn create_client_token(&self) -> Result<Secret> {
        let t = keys::random_token();
        self.store_token(&t, &TokenOwner::Client)?;
        Ok(t)
    }

    /// Stores the hash of a token (idempotent for admin and client tokens).
    pub(crate) fn store_token(&self, token: &Secret, owner: &TokenOwner) -> Result<()> {
        let hash = self.keys.hash_secret(token.expose());
        self.db
            .write(|tx| tokens::insert(tx, &hash, owner, now_ms()))?;
        Ok(())
    }
}
