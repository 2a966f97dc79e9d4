//! SetProductConfig: the server adapter pushes its product's configuration (the service
//! endpoint and what access messages carry).

use service_api::{SetProductConfigRequest, SetProductConfigResponse};

use super::state::{now_ms, Caller, Core};
use crate::error::{CoreError, Result};
use crate::store::products;

impl Core {
    /// Stores the product's config. Its rules ([`service_api::rules::check_config`]) are
    /// checked where the request is read (HTTP 422), the one place they are enforced.
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
        let changed = self
            .db
            .write(|tx| products::set_config(tx, product_id, &req.config, now_ms()))?;
        Ok(SetProductConfigResponse {
            product_id: product_id.clone(),
            changed,
        })
    }
}
