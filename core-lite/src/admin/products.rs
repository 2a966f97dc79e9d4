//! `product create`, `product list`, `product show`: what an agent sells through a module.

use std::collections::BTreeMap;

use serde::Serialize;
use service_api::Secret;

use crate::error::{CoreError, Result};
use crate::keys;
use crate::service::{new_id, now_ms, Core};
use crate::store::products::{self, NewProduct, ProductRow};
use crate::store::tokens::{self, TokenOwner};
use crate::store::{modules, Tx};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductInfo {
    pub product_id: String,
    pub name: String,
    pub module: String,
    pub endpoint: Option<String>,
    pub config: BTreeMap<String, String>,
}

impl From<ProductRow> for ProductInfo {
    fn from(p: ProductRow) -> ProductInfo {
        ProductInfo {
            product_id: p.id,
            name: p.name,
            module: p.module,
            endpoint: p.endpoint,
            config: p.config,
        }
    }
}

/// The product with this id or name.
pub(crate) fn product(tx: &Tx<'_>, id_or_name: &str) -> Result<Option<ProductInfo>> {
    Ok(products::by_id_or_name(tx, id_or_name)?.map(ProductInfo::from))
}

impl Core {
    /// Creates a product; returns it and its adapter token (shown only now; stored hashed).
    pub fn create_product(
        &self,
        name: &str,
        module: &str,
        endpoint: Option<&str>,
    ) -> Result<(ProductInfo, Secret)> {
        if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
            return Err(CoreError::Invalid(
                "product name: 1..=128 characters, no control characters".into(),
            ));
        }
        if let Some(e) = endpoint {
            service_api::rules::check_endpoint("--endpoint", e)
                .map_err(|e| CoreError::Invalid(e.to_string()))?;
        }
        let id = new_id("p-");
        let token = keys::random_token();
        let hash = self.keys.hash_secret(token.expose());
        self.db.write(|tx| {
            if modules::by_name(tx, module)?.is_none() {
                return Err(CoreError::NotFound(format!(
                    "module {module:?} is not registered (core-lite module register DIR)"
                )));
            }
            if let Some(other) = products::id_by_name(tx, name)? {
                return Err(CoreError::Conflict(format!(
                    "a product named {name:?} exists already ({other})"
                )));
            }
            let now = now_ms();
            products::insert(
                tx,
                &NewProduct {
                    id: &id,
                    name,
                    module,
                    endpoint,
                    created_at_ms: now,
                },
            )?;
            tokens::insert(tx, &hash, &TokenOwner::Product(id.clone()), now)?;
            Ok(())
        })?;
        Ok((self.show_product(&id)?, token))
    }

    pub fn show_product(&self, id_or_name: &str) -> Result<ProductInfo> {
        self.db
            .read(|tx| product(tx, id_or_name))?
            .ok_or_else(|| CoreError::NotFound(format!("no product {id_or_name:?}")))
    }

    pub fn list_products(&self) -> Result<Vec<ProductInfo>> {
        let ids = self.db.read(products::ids)?;
        ids.iter().map(|id| self.show_product(id)).collect()
    }
}
