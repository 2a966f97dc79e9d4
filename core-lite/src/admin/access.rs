//! Access messages. Agent: `access export` writes a channel's access message signed by the
//! agent, with the signed offering it was sold under ([`SignedAccess`], the same format the
//! market's accept answers). Client: `access import` checks one and stores it so that
//! GetAccess serves it; the market's accept goes through the same check.
//!
//! The check of a signed access message before it is stored ([`Core::verify_signed_access`]):
//! the offering it carries verifies (its template is registered here, its signature by its
//! `agentPublicKey`, its terms), its hash is the message's `offeringHash` (and the one the
//! caller expects, when it says), the access message is signed by that offering's agent key,
//! and the message matches its access template. A bare, unsigned access message is refused.
//! Nothing else is ever stored, and GetAccess checks the signatures again before serving.

use serde_json::Value;
use service_api::market::{SignedAccess, SignedOffering};
use service_api::{AccessMessage, ClientKey, ServiceStatus, SpeedLimits};

use super::products::product;
use crate::error::{CoreError, Result};
use crate::offering;
use crate::service::{new_id, now_ms, Core};
use crate::signing::{check_signed_access, sign_access, to_value};
use crate::store::{channels, modules, offerings, status_history, StoreError};
use crate::template;

impl Core {
    /// Agent: the access message of a channel, unsigned (its password re-derived; only its
    /// hash is stored). [`Core::export_signed_access`] is what leaves the core.
    pub fn export_access(&self, channel: &str) -> Result<AccessMessage> {
        Ok(self.access_of(channel)?.access)
    }

    /// Agent: the access message of a channel signed by the agent, with the signed offering
    /// (what `access export` writes and the market's accept answers).
    pub fn export_signed_access(&self, channel: &str) -> Result<SignedAccess> {
        let mut signed = self.access_of(channel)?;
        sign_access(&self.keys, &mut signed)?;
        Ok(signed)
    }

    /// A channel's access message with its offering, not signed yet.
    fn access_of(&self, channel: &str) -> Result<SignedAccess> {
        let (signed, access_template) = self.db.read(|tx| {
            let Some(src) = channels::access_source(tx, channel)? else {
                return Err(CoreError::NotFound(format!("no agent channel {channel:?}")));
            };
            let p = product(tx, &src.product_id)?.ok_or_else(|| CoreError::Missing {
                what: "product",
                key: src.product_id.clone(),
            })?;
            let stored = offerings::by_hash(tx, &src.offering_hash)?
                .ok_or_else(|| CoreError::Missing {
                    what: "offering",
                    key: src.offering_hash.clone(),
                })?
                .signed;
            let offering: SignedOffering =
                serde_json::from_value(stored).map_err(|source| StoreError::Json {
                    what: "offerings.signed",
                    source,
                })?;
            let template = modules::access_template(tx, &p.module)?;
            let mut params = p.config.clone();
            let endpoint = params
                .remove("serviceEndpointAddress")
                .or(p.endpoint.clone())
                .ok_or_else(|| {
                    CoreError::Invalid(format!(
                        "product {} has no service endpoint: create it with --endpoint or run \
                         adapter-server push-config --endpoint HOST:PORT",
                        p.product_id
                    ))
                })?;
            params.extend(src.offering_params);
            let access = AccessMessage {
                template_hash: template.hash,
                username: ClientKey(src.client_key),
                password: self.keys.derive_password(&src.channel_id),
                service_endpoint_address: endpoint,
                additional_params: params,
            };
            let signed = SignedAccess {
                channel_id: src.channel_id,
                offering_hash: src.offering_hash,
                access,
                offering,
                signature: String::new(),
            };
            Ok((signed, template.body))
        })?;
        template::validate_access_message(&access_template, &to_value(&signed.access)?).map_err(
            |e| {
                CoreError::Invalid(format!(
                    "the access message does not match the access template: {e}"
                ))
            },
        )?;
        Ok(signed)
    }

    /// Client: checks a signed access message before it is stored: the offering it carries
    /// verifies (registered template, its signature, its terms), its hash is `offeringHash`
    /// (and `expected_offering`, when given), its agent key signed the access message, and
    /// the message matches its access template.
    pub fn verify_signed_access(
        &self,
        signed: &SignedAccess,
        expected_offering: Option<&str>,
    ) -> Result<()> {
        if let Some(want) = expected_offering {
            if signed.offering_hash != want {
                return Err(CoreError::Forbidden(format!(
                    "access message refused: it is for offering {}, not {want}",
                    signed.offering_hash
                )));
            }
        }
        let templates = self.db.read(modules::offering_templates)?;
        // The offering: registered template, its signature, its terms.
        offering::verify_offering(&signed.offering, |h| templates.get(h).cloned())
            .map_err(CoreError::AccessOffering)?;
        // Its hash is offeringHash, and its agent key signed the access message.
        check_signed_access(signed)?;
        let tpl = self
            .db
            .read(|tx| modules::access_template_by_hash(tx, &signed.access.template_hash))?
            .ok_or_else(|| {
                CoreError::Invalid(format!(
                    "access message templateHash {:?} is not a registered access template \
                     (core-lite module register DIR first)",
                    signed.access.template_hash
                ))
            })?;
        template::validate_access_message(&tpl, &to_value(&signed.access)?).map_err(|e| {
            CoreError::Invalid(format!("access message does not match its template: {e}"))
        })?;
        SpeedLimits::from_params(&signed.access.additional_params)
            .map_err(|e| CoreError::Invalid(format!("access message: additionalParams: {e}")))?;
        Ok(())
    }

    /// Client: checks a signed access message (the file `access export` writes) and stores
    /// it, replacing an earlier one for the same client key. `expected_offering`: the offering
    /// hash it must be for (`access import --offering`).
    pub fn import_access(&self, raw: &Value, expected_offering: Option<&str>) -> Result<ClientKey> {
        // Sealed to this core (`access export --seal-to`): checked and opened first.
        if let Ok(sealed) = serde_json::from_value::<service_api::market::SealedAccess>(raw.clone())
        {
            let signed =
                self.open_envelope(&service_api::market::AccessEnvelope::Sealed(sealed))?;
            return self.import_access(&to_value(&signed)?, expected_offering);
        }
        let signed: SignedAccess = serde_json::from_value(raw.clone()).map_err(|e| {
            if serde_json::from_value::<AccessMessage>(raw.clone()).is_ok() {
                CoreError::Forbidden(
                    "access message refused: it is not signed (a bare access message); import \
                     the signed file that `core-lite access export` writes"
                        .into(),
                )
            } else {
                CoreError::Invalid(format!(
                    "not a signed access message ({{\"channelId\",\"offeringHash\",\"access\",\
                     \"offering\",\"signature\"}}): {e}"
                ))
            }
        })?;
        self.verify_signed_access(&signed, expected_offering)?;
        self.db.write(|tx| {
            let now = now_ms();
            match channels::client_id_by_key(tx, &signed.access.username.0)? {
                Some(id) => channels::set_access(tx, &id, &signed)?,
                None => {
                    let id = new_id("cc-");
                    channels::insert_client(tx, &id, &signed, now)?;
                    status_history::insert(
                        tx,
                        &id,
                        ServiceStatus::Activating,
                        now,
                        "access message imported",
                    )?;
                }
            }
            Ok::<_, CoreError>(())
        })?;
        Ok(signed.access.username)
    }
}
