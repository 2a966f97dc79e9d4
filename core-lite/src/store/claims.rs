//! The claim window of agent channels accepted over the market (schema version 5).

use super::db::args;
use super::{StoreError, Tx};

/// Sets when a channel must have been claimed (paid or used, per its billing type).
pub fn set_deadline(tx: &Tx<'_>, channel_id: &str, deadline_ms: i64) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE channels SET claim_deadline_ms = ?1 WHERE id = ?2",
        args![deadline_ms, channel_id],
    )?;
    Ok(())
}

/// The channel was claimed: no deadline any more.
pub fn clear(tx: &Tx<'_>, channel_id: &str) -> Result<(), StoreError> {
    tx.exec(
        "UPDATE channels SET claim_deadline_ms = NULL WHERE id = ?1",
        args![channel_id],
    )?;
    Ok(())
}

/// Agent channels whose claim deadline passed at `now` and that are not closed: (id,
/// billing type of their offering).
pub fn due(tx: &Tx<'_>, now: i64) -> Result<Vec<(String, String)>, StoreError> {
    tx.rows(
        "SELECT ch.id, o.billing_type FROM channels ch JOIN offerings o ON o.hash = ch.offering_hash
         WHERE ch.side = 'agent' AND ch.claim_deadline_ms IS NOT NULL
           AND ch.claim_deadline_ms <= ?1 AND ch.status != 'terminated'",
        args![now],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
}
