//! SetProductConfig: the server adapter pushes its product's configuration (the service
//! endpoint and what access messages carry).

use service_api::{SetProductConfigRequest, SetProductConfigResponse};

use super::checks::check_endpoint;
use super::state::{now_ms, Caller, Core};
use crate::error::{CoreError, Result};
use crate::store::products;

/// Most keys in a product's configuration.
const MAX_CONFIG_KEYS: usize = 64;
/// Largest configuration value (bytes).
const MAX_CONFIG_VALUE: usize = 16 * 1024;

impl Core {
    pub fn set_product_config(
        &self,
        caller: &Caller,
        req: &SetProductConfigRequest,
    ) -> Result<SetProductConfigResponse> {
        let Caller::Product(product_id) = caller else {
            return Err(CoreError::Forbidden(
                "SetProductConfig needs the product's token".into(),
            ));
        };
        if req.config.len() > MAX_CONFIG_KEYS {
            return Err(CoreError::Invalid("config: at most 64 keys".into()));
        }
        for (k, v) in &req.config {
            if k.is_empty()
                || k.len() > 64
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                return Err(CoreError::Invalid(format!(
                    "config key {:?}: 1..=64 characters of [A-Za-z0-9_.-]",
                    k.chars().take(70).collect::<String>()
                )));
            }
            if v.len() > MAX_CONFIG_VALUE {
                return Err(CoreError::Invalid(format!("config/{k}: at most 16 KiB")));
            }
            if k == "serviceEndpointAddress" {
                check_endpoint(v)?;
            }
        }
        let changed = self
            .db
            .write(|tx| products::set_config(tx, product_id, &req.config, now_ms()))?;
        Ok(SetProductConfigResponse {
            product_id: product_id.clone(),
            changed,
        })
    }
}
