//! `offerings`: the agent's published offerings: the signed document and its terms in
//! columns (billing reads them on every usage report).

use serde_json::Value;
use service_api::market::SignedOffering;

use super::codec::{from_json, from_sql_u64, to_json, to_sql_u64};
use super::db::{args, Tx};
use super::error::StoreError;
use crate::billing::BillingTerms;
use crate::offering::OfferingTerms;

#[derive(Clone, Debug, PartialEq)]
pub struct OfferingRow {
    pub hash: String,
    pub product_id: String,
    pub supply: u64,
    pub signed: Value,
}

/// A signed offering to store.
pub struct NewOffering<'a> {
    pub hash: &'a str,
    pub product_id: &'a str,
    pub template_hash: &'a str,
    pub signed: &'a SignedOffering,
    pub terms: &'a OfferingTerms,
    pub created_at_ms: i64,
}

pub fn insert(tx: &Tx<'_>, o: &NewOffering<'_>) -> Result<(), StoreError> {
    let signed = to_json("offerings.signed", o.signed)?;
    let additional_params = to_json("offerings.additional_params", &o.terms.additional_params)?;
    let t = o.terms;
    tx.exec(
        "INSERT INTO offerings VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
        args![
            o.hash,
            o.product_id,
            o.template_hash,
            signed,
            to_sql_u64(t.supply),
            to_sql_u64(t.unit_price),
            to_sql_u64(t.setup_price),
            to_sql_u64(t.min_units),
            to_sql_u64(t.max_units),
            to_sql_u64(t.free_units),
            t.billing_type.as_str(),
            to_sql_u64(t.billing_interval),
            to_sql_u64(t.max_billing_unit_lag),
            to_sql_u64(t.max_suspend_time_s),
            to_sql_u64(t.max_inactive_time_s),
            additional_params,
            o.created_at_ms
        ],
    )?;
    Ok(())
}

pub fn by_hash(tx: &Tx<'_>, hash: &str) -> Result<Option<OfferingRow>, StoreError> {
    let row: Option<(String, String, i64, String)> = tx.opt_row(
        "SELECT hash, product_id, supply, signed FROM offerings WHERE hash = ?1",
        args![hash],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    row.map(|(hash, product_id, supply, signed)| {
        Ok(OfferingRow {
            hash,
            product_id,
            supply: from_sql_u64(supply),
            signed: from_json("offerings.signed", &signed)?,
        })
    })
    .transpose()
}

/// Every offering hash, oldest first.
pub fn hashes(tx: &Tx<'_>) -> Result<Vec<String>, StoreError> {
    tx.rows(
        "SELECT hash FROM offerings ORDER BY created_at_ms, hash",
        args![],
        |r| r.get(0),
    )
}

/// The supply of an offering (an error when it is unknown).
pub fn supply(tx: &Tx<'_>, hash: &str) -> Result<u64, StoreError> {
    let supply: i64 = tx.row(
        "SELECT supply FROM offerings WHERE hash = ?1",
        args![hash],
        |r| r.get(0),
    )?;
    Ok(from_sql_u64(supply))
}

/// The billing terms of an offering.
pub fn terms(tx: &Tx<'_>, hash: &str) -> Result<Option<BillingTerms>, StoreError> {
    tx.opt_row(
        "SELECT unit_price, setup_price, min_units, max_units, free_units, max_billing_unit_lag,
                billing_interval, max_suspend_time_s, max_inactive_time_s
         FROM offerings WHERE hash = ?1",
        args![hash],
        |r| {
            Ok(BillingTerms {
                unit_price: from_sql_u64(r.get(0)?),
                setup_price: from_sql_u64(r.get(1)?),
                min_units: from_sql_u64(r.get(2)?),
                max_units: from_sql_u64(r.get(3)?),
                free_units: from_sql_u64(r.get(4)?),
                max_billing_unit_lag: from_sql_u64(r.get(5)?),
                billing_interval: from_sql_u64(r.get(6)?),
                max_suspend_time_s: from_sql_u64(r.get(7)?),
                max_inactive_time_s: from_sql_u64(r.get(8)?),
            })
        },
    )
}

/// The signed offerings with supply left (channels not terminated below the supply),
/// oldest first: what the market lists.
pub fn signed_with_supply_left(tx: &Tx<'_>) -> Result<Vec<SignedOffering>, StoreError> {
    let rows: Vec<String> = tx.rows(
        "SELECT o.signed FROM offerings o
         WHERE o.supply > (SELECT count(*) FROM channels ch
                           WHERE ch.offering_hash = o.hash AND ch.status != 'terminated')
         ORDER BY o.created_at_ms, o.hash",
        args![],
        |r| r.get(0),
    )?;
    rows.iter()
        .map(|s| from_json("offerings.signed", s))
        .collect()
}
