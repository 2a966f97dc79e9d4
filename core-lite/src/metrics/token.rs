//! The metrics token: `DATA_DIR/metrics.token` (0600, written on first use) opens
//! `/metrics` and nothing else. Only its keyed hash is kept in memory; it is compared in
//! constant time.

use service_api::Secret;
use subtle::ConstantTimeEq;

use crate::admin::{read_bounded, write_private_file};
use crate::error::{CoreError, Result};
use crate::keys;
use crate::service::Core;

/// The metrics token's file in the data dir.
pub const METRICS_TOKEN_FILE: &str = "metrics.token";

/// Shortest metrics token accepted.
const MIN_TOKEN_LEN: usize = 16;

impl Core {
    /// Reads `metrics.token` (creating it, 0600, when missing) and keeps its hash for
    /// [`Core::is_metrics_token`].
    pub fn ensure_metrics_token(&self) -> Result<Secret> {
        let path = self.data_dir().join(METRICS_TOKEN_FILE);
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
        if token.expose().len() < MIN_TOKEN_LEN {
            return Err(CoreError::Invalid(format!(
                "{}: metrics token too short",
                path.display()
            )));
        }
        let _ = self
            .metrics
            .token_hash
            .set(self.keys.hash_secret(token.expose()));
        Ok(token)
    }

    /// Whether `token` is the metrics token.
    pub fn is_metrics_token(&self, token: &str) -> bool {
        let Some(known) = self.metrics.token_hash.get() else {
            return false;
        };
        if token.is_empty() || token.len() > 512 {
            return false;
        }
        let hash = self.keys.hash_secret(token);
        bool::from(hash.as_bytes().ct_eq(known.as_bytes()))
    }
}
