//! `access export` (agent: a channel's access message, its password re-derived) and
//! `access import` (client: store one so that GetAccess serves it).

use serde_json::Value;
use service_api::{AccessMessage, ClientKey, ServiceStatus, SpeedLimits};

use super::products::product;
use crate::error::{CoreError, Result};
use crate::service::checks::check_client_key;
use crate::service::{new_id, now_ms, Core};
use crate::store::{channels, modules, status_history};
use crate::template;

impl Core {
    /// Agent: the access message of a channel (password re-derived; only its hash is stored).
    pub fn export_access(&self, channel: &str) -> Result<AccessMessage> {
        let (msg, access_template) = self.db.read(|tx| {
            let Some(src) = channels::access_source(tx, channel)? else {
                return Err(CoreError::NotFound(format!("no agent channel {channel:?}")));
            };
            let p = product(tx, &src.product_id)?.ok_or_else(|| CoreError::Missing {
                what: "product",
                key: src.product_id.clone(),
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
            let msg = AccessMessage {
                template_hash: template.hash,
                username: ClientKey(src.client_key),
                password: self.keys.derive_password(&src.channel_id),
                service_endpoint_address: endpoint,
                additional_params: params,
            };
            Ok((msg, template.body))
        })?;
        let v = serde_json::to_value(&msg).map_err(|source| CoreError::Json {
            what: "the access message",
            source,
        })?;
        template::validate_access_message(&access_template, &v).map_err(|e| {
            CoreError::Invalid(format!(
                "the access message does not match the access template: {e}"
            ))
        })?;
        Ok(msg)
    }

    /// Client: stores an access message (replacing an earlier one for the same client key).
    pub fn import_access(&self, raw: &Value) -> Result<ClientKey> {
        let msg: AccessMessage = serde_json::from_value(raw.clone())
            .map_err(|e| CoreError::Invalid(format!("not an access message: {e}")))?;
        check_client_key(&msg.username)?;
        let tpl = self
            .db
            .read(|tx| modules::access_template_by_hash(tx, &msg.template_hash))?
            .ok_or_else(|| {
                CoreError::Invalid(format!(
                    "access message templateHash {:?} is not a registered access template \
                     (core-lite module register DIR first)",
                    msg.template_hash
                ))
            })?;
        template::validate_access_message(&tpl, raw).map_err(|e| {
            CoreError::Invalid(format!("access message does not match its template: {e}"))
        })?;
        SpeedLimits::from_params(&msg.additional_params)
            .map_err(|e| CoreError::Invalid(format!("access message: additionalParams: {e}")))?;
        self.db.write(|tx| {
            let now = now_ms();
            match channels::client_id_by_key(tx, &msg.username.0)? {
                Some(id) => channels::set_access_message(tx, &id, &msg)?,
                None => {
                    let id = new_id("cc-");
                    channels::insert_client(tx, &id, &msg, now)?;
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
        Ok(msg.username)
    }
}
