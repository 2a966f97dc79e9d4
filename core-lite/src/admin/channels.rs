//! `channel create`, `list`, `show`, `set-status`: channels on the agent side (a sale under
//! an offering) and, for show and set-status, on the client side too.

use service_api::{ChannelInfo, ClientKey, ServiceStatus, SessionId};

use crate::billing;
use crate::error::{CoreError, Result};
use crate::keys;
use crate::service::status::{apply_billing, set_status};
use crate::service::{new_id, now_ms, Core};
use crate::store::channels::{self, NewAgentChannel};
use crate::store::{offerings, sessions, status_history, Tx};

/// The channel with this id or client key (the agent's first), with its history.
pub(crate) fn channel_info(tx: &Tx<'_>, id_or_key: &str) -> Result<ChannelInfo> {
    let ch = channels::by_id_or_key(tx, id_or_key)?
        .ok_or_else(|| CoreError::NotFound(format!("no channel {id_or_key:?}")))?;
    let open = sessions::open_id(tx, &ch.id)?;
    let history = status_history::of_channel(tx, &ch.id)?;
    Ok(ChannelInfo {
        channel_id: ch.id,
        client_key: ClientKey(ch.client_key),
        offering_hash: ch.offering_hash.unwrap_or_default(),
        status: ch.status,
        deposit: ch.deposit,
        bytes_total: ch.bytes_total,
        units_used: billing::units_used(ch.bytes_total),
        open_session: open.map(SessionId),
        history,
    })
}

impl Core {
    /// Creates a channel under an offering; returns (channel id, client key).
    /// `deposit` in base units; `None` = enough for the offering's maxUnits.
    pub fn create_channel(
        &self,
        offering_hash: &str,
        deposit: Option<u64>,
    ) -> Result<(String, ClientKey)> {
        let id = new_id("ch-");
        let client_key = keys::random_client_key();
        let password = self.keys.derive_password(&id);
        let password_hash = self.keys.hash_secret(password.expose());
        self.db.write(|tx| {
            let Some(terms) = offerings::terms(tx, offering_hash)? else {
                return Err(CoreError::NotFound(format!("no offering {offering_hash:?}")));
            };
            let supply = offerings::supply(tx, offering_hash)?;
            let open = channels::count_not_terminated(tx, offering_hash)?;
            if open >= supply {
                return Err(CoreError::Conflict(format!(
                    "offering {offering_hash} is sold out: supply {supply}, {open} channels not terminated"
                )));
            }
            let (Some(min), Some(full)) =
                (billing::min_deposit(&terms), billing::full_deposit(&terms))
            else {
                return Err(CoreError::Invalid(
                    "the offering's full deposit does not fit 64 bits".into(),
                ));
            };
            let deposit = deposit.unwrap_or(full);
            if deposit < min {
                return Err(CoreError::Invalid(format!(
                    "deposit {deposit} is below the minimum {min} (the cost of max(minUnits, 1) units: setupPrice + the units beyond freeUnits · unitPrice, base units)"
                )));
            }
            let now = now_ms();
            channels::insert_agent(
                tx,
                &NewAgentChannel {
                    id: &id,
                    offering_hash,
                    client_key: &client_key.0,
                    password_hash: &password_hash,
                    deposit,
                    created_at_ms: now,
                },
            )?;
            status_history::insert(tx, &id, ServiceStatus::Pending, now, "channel created")?;
            set_status(
                tx,
                &id,
                ServiceStatus::Activating,
                now,
                "deposit covers the minimum deposit",
            )?;
            Ok(())
        })?;
        Ok((id, client_key))
    }

    /// Channel by id or client key (agent side first, then client side).
    pub fn channel_info(&self, id_or_key: &str) -> Result<ChannelInfo> {
        self.db.read(|tx| channel_info(tx, id_or_key))
    }

    pub fn list_channels(&self) -> Result<Vec<ChannelInfo>> {
        self.db.read(|tx| {
            let ids = channels::ids(tx)?;
            ids.iter().map(|id| channel_info(tx, id)).collect()
        })
    }

    /// Admin: force a status (for operators: e.g. terminate a channel by hand).
    pub fn set_channel_status(
        &self,
        id_or_key: &str,
        status: ServiceStatus,
        reason: &str,
    ) -> Result<ChannelInfo> {
        self.db.write(|tx| {
            let info = channel_info(tx, id_or_key)?;
            if info.status != status {
                set_status(tx, &info.channel_id, status, now_ms(), reason)?;
                // Billing rules are the agent's; a client-side channel just takes the status.
                if !info.offering_hash.is_empty() {
                    apply_billing(tx, &info.channel_id, now_ms())?;
                }
            }
            channel_info(tx, &info.channel_id)
        })
    }
}
