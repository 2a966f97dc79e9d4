//! The agent's side of the market: offerings with supply left, accepts (a channel bound to
//! the client's key, answered with the signed access message), cheques and the channel's
//! status as its client sees it.

use service_api::market::{
    AcceptRequest, AccessEnvelope, ChannelStatus, Cheque, ChequeReceipt, OfferingList,
};

use crate::billing;
use crate::error::{CoreError, Result};
use crate::service::status::apply_billing;
use crate::service::{now_ms, Core};
use crate::signing::{check_sig, to_value};
use crate::store::{market, offerings, Tx};
use crate::{jcs, keys, offering};

/// Longest channel id a cheque may name.
const MAX_CHANNEL_ID: usize = 64;

impl Core {
    /// Offerings with supply left, for the market.
    pub fn market_offerings(&self) -> Result<OfferingList> {
        let offerings = self.db.read(offerings::signed_with_supply_left)?;
        Ok(OfferingList { offerings })
    }

    /// Agent: a client accepts an offering. Creates the channel (supply, minimum deposit)
    /// bound to the client's key and answers the access message signed by the agent.
    /// With `clientSealKey`, the answer is sealed to it ([`super::sealed`]).
    pub fn market_accept(&self, req: &AcceptRequest) -> Result<AccessEnvelope> {
        if !jcs::is_hash_hex(&req.offering_hash) {
            return Err(CoreError::Invalid(
                "offeringHash: 64 lowercase hex digits".into(),
            ));
        }
        if !offering::is_uuid_v4(&req.nonce) {
            return Err(CoreError::Invalid("nonce: a uuid v4".into()));
        }
        keys::parse_public_key(&req.client_public_key)
            .map_err(|e| CoreError::Invalid(format!("clientPublicKey: {e}")))?;
        if let Some(k) = &req.client_seal_key {
            service_api::seal::check_public(k).map_err(|e| CoreError::Invalid(e.to_string()))?;
        }
        check_sig(
            "accept",
            &to_value(req)?,
            &req.client_public_key,
            &req.signature,
        )?;
        let existing = self.db.read(|tx| market::by_accept_nonce(tx, &req.nonce))?;
        let channel_id = match existing {
            Some(ch) if ch.client_public_key == req.client_public_key => ch.id,
            Some(_) => {
                return Err(CoreError::Conflict(
                    "nonce already used by another client key".into(),
                ))
            }
            None => {
                let (id, _) = self.create_channel(&req.offering_hash, Some(req.deposit))?;
                let deadline = self.claim_deadline(now_ms());
                self.db.write(|tx| {
                    market::bind_client_key(tx, &id, &req.client_public_key, &req.nonce)?;
                    crate::store::claims::set_deadline(tx, &id, deadline)
                })?;
                tracing::info!(channel = %id, offering = %req.offering_hash, deposit = req.deposit, "offering accepted over the market");
                id
            }
        };
        let signed = self.export_signed_access(&channel_id)?;
        match &req.client_seal_key {
            Some(k) => Ok(AccessEnvelope::Sealed(super::sealed::seal_access(
                &self.keys, &signed, k,
            )?)),
            None => Ok(AccessEnvelope::Signed(signed)),
        }
    }

    /// Agent: checks a signed read of a channel (`method path`, the headers in `auth`)
    /// against the channel's client key.
    pub fn check_market_read(
        &self,
        channel_id: &str,
        auth: &super::guard::ReadAuth,
        method: &str,
        path: &str,
    ) -> Result<()> {
        let key = self
            .db
            .read(|tx| market::payments(tx, channel_id))?
            .and_then(|p| p.client_public_key);
        // An unknown channel is refused like a wrong key: nobody learns which ids exist.
        let Some(key) = key else {
            return Err(CoreError::UnsignedRead(
                "no channel with that id takes reads signed by this key".into(),
            ));
        };
        let now = u64::try_from(now_ms() / 1000).unwrap_or(0);
        self.market_guard.check_read(auth, method, path, &key, now)
    }

    /// Agent: a payment cheque. Verified (signature by the channel's client key, amount
    /// above the best one so far, at most the deposit), stored, then billing re-evaluated.
    pub fn market_cheque(&self, cheque: &Cheque) -> Result<ChequeReceipt> {
        if cheque.channel_id.len() > MAX_CHANNEL_ID {
            return Err(CoreError::Invalid("channelId: at most 64 bytes".into()));
        }
        let p = self
            .db
            .read(|tx| market::payments(tx, &cheque.channel_id))?
            .ok_or_else(|| CoreError::NotFound(format!("no channel {}", cheque.channel_id)))?;
        let key = p.client_public_key.ok_or_else(|| {
            CoreError::Conflict(format!(
                "channel {} was not accepted over the market: it takes no cheques",
                cheque.channel_id
            ))
        })?;
        check_sig("cheque", &to_value(cheque)?, &key, &cheque.signature)?;
        let (best, deposit) = (p.amount_paid, p.deposit);
        if cheque.amount > deposit {
            return Err(CoreError::Invalid(format!(
                "cheque of {} is above the deposit {deposit}",
                cheque.amount
            )));
        }
        if cheque.amount <= best {
            return Err(CoreError::Conflict(format!(
                "cheque of {} is not above the best one received ({best}): replayed or older",
                cheque.amount
            )));
        }
        self.db.write(|tx| {
            let now = now_ms();
            // Re-check under the write lock: a concurrent better cheque wins.
            let cur = market::amount_paid(tx, &cheque.channel_id)?;
            if cheque.amount <= cur {
                return Err(CoreError::Conflict(format!(
                    "cheque of {} is not above the best one received ({cur}): replayed or older",
                    cheque.amount
                )));
            }
            market::record_cheque(tx, cheque, now)?;
            apply_billing(tx, &cheque.channel_id, now)?;
            Ok(())
        })?;
        self.market_channel_status(&cheque.channel_id)
    }

    /// Agent: the channel as the market shows it to its client.
    pub fn market_channel_status(&self, channel_id: &str) -> Result<ChannelStatus> {
        self.db.read(|tx| market_status(tx, channel_id))
    }
}

fn market_status(tx: &Tx<'_>, channel_id: &str) -> Result<ChannelStatus> {
    let ch = market::agent_channel(tx, channel_id)?
        .ok_or_else(|| CoreError::NotFound(format!("no market channel {channel_id}")))?;
    let terms = offerings::terms(tx, &ch.offering_hash)?.ok_or_else(|| CoreError::Missing {
        what: "offering",
        key: ch.offering_hash.clone(),
    })?;
    let units = billing::units_used(ch.bytes_total);
    Ok(ChannelStatus {
        channel_id: channel_id.into(),
        status: ch.status,
        bytes_total: ch.bytes_total,
        units_used: units,
        deposit: ch.deposit,
        amount_paid: ch.amount_paid,
        amount_due: billing::amount_for_units(&terms, units, ch.deposit),
    })
}
