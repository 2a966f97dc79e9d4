//! `offering publish`, `list`, `show` (agent) and `offering verify` (client).

use serde::Serialize;
use serde_json::Value;

use crate::error::{CoreError, Result};
use crate::offering::{self, OfferingTerms, SignedOffering};
use crate::service::{now_ms, Core};
use crate::store::offerings::{self, NewOffering};
use crate::store::{channels, modules};

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferingInfo {
    pub offering_hash: String,
    pub product_id: String,
    pub supply: u64,
    pub channels_open: u64,
    pub signed: Value,
}

impl Core {
    /// Builds, validates, signs and stores an offering from the agent's input.
    pub fn publish_offering(
        &self,
        product: &str,
        input: &Value,
    ) -> Result<(String, SignedOffering)> {
        let p = self.show_product(product)?;
        let template = self
            .db
            .read(|tx| modules::offering_template(tx, &p.module))?;
        // The market's self-signed TLS key, when `serve` made one (server::tls).
        let pin = crate::server::tls::read_pin(self.data_dir())?;
        let (signed, hash, terms) = offering::build_offering(
            &template.body,
            &template.hash,
            &p.product_id,
            &self.keys,
            input,
            pin.as_deref(),
        )
        .map_err(CoreError::OfferingRejected)?;
        self.db.write(|tx| {
            offerings::insert(
                tx,
                &NewOffering {
                    hash: &hash,
                    product_id: &p.product_id,
                    template_hash: &template.hash,
                    signed: &signed,
                    terms: &terms,
                    created_at_ms: now_ms(),
                },
            )
        })?;
        Ok((hash, signed))
    }

    pub fn show_offering(&self, hash: &str) -> Result<OfferingInfo> {
        self.db
            .read(|tx| {
                let Some(o) = offerings::by_hash(tx, hash)? else {
                    return Ok(None);
                };
                let channels_open = channels::count_not_terminated(tx, &o.hash)?;
                Ok::<_, CoreError>(Some(OfferingInfo {
                    offering_hash: o.hash,
                    product_id: o.product_id,
                    supply: o.supply,
                    channels_open,
                    signed: o.signed,
                }))
            })?
            .ok_or_else(|| CoreError::NotFound(format!("no offering {hash:?}")))
    }

    pub fn list_offerings(&self) -> Result<Vec<OfferingInfo>> {
        let hashes = self.db.read(offerings::hashes)?;
        hashes.iter().map(|h| self.show_offering(h)).collect()
    }

    /// Client-side check of a signed offering against the registered templates.
    pub fn verify_offering(&self, signed: &Value) -> Result<(String, OfferingTerms)> {
        let signed: SignedOffering = serde_json::from_value(signed.clone()).map_err(|e| {
            CoreError::Invalid(format!(
                "not a signed offering ({{\"offering\":…,\"signature\":…}}): {e}"
            ))
        })?;
        let templates = self.db.read(modules::offering_templates)?;
        offering::verify_offering(&signed, |h| templates.get(h).cloned())
            .map_err(|e| CoreError::Invalid(format!("offering rejected: {e}")))
    }
}
