//! `products`: what an agent sells through a module, with the configuration its server
//! adapter pushes.

use std::collections::BTreeMap;

use super::codec::{from_json, to_json};
use super::db::{args, Tx};
use super::error::StoreError;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductRow {
    pub id: String,
    pub name: String,
    pub module: String,
    pub endpoint: Option<String>,
    pub config: BTreeMap<String, String>,
}

/// A product to create (with an empty configuration).
pub struct NewProduct<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub module: &'a str,
    pub endpoint: Option<&'a str>,
    pub created_at_ms: i64,
}

pub fn id_by_name(tx: &Tx<'_>, name: &str) -> Result<Option<String>, StoreError> {
    tx.opt_row(
        "SELECT id FROM products WHERE name = ?1",
        args![name],
        |r| r.get(0),
    )
}

pub fn insert(tx: &Tx<'_>, p: &NewProduct<'_>) -> Result<(), StoreError> {
    tx.exec(
        "INSERT INTO products (id, name, module, endpoint, config, created_at_ms) VALUES (?1, ?2, ?3, ?4, '{}', ?5)",
        args![p.id, p.name, p.module, p.endpoint, p.created_at_ms],
    )?;
    Ok(())
}

/// The product with this id, else the one with this name.
pub fn by_id_or_name(tx: &Tx<'_>, id_or_name: &str) -> Result<Option<ProductRow>, StoreError> {
    let row: Option<(String, String, String, Option<String>, String)> = tx.opt_row(
        "SELECT id, name, module, endpoint, config FROM products WHERE id = ?1 OR name = ?1",
        args![id_or_name],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
    )?;
    row.map(|(id, name, module, endpoint, config)| {
        Ok(ProductRow {
            id,
            name,
            module,
            endpoint,
            config: from_json("products.config", &config)?,
        })
    })
    .transpose()
}

/// Every product id, oldest first.
pub fn ids(tx: &Tx<'_>) -> Result<Vec<String>, StoreError> {
    tx.rows(
        "SELECT id FROM products ORDER BY created_at_ms, id",
        args![],
        |r| r.get(0),
    )
}

/// Replaces a product's configuration; false when it was the same already (an error when
/// the product is unknown).
pub fn set_config(
    tx: &Tx<'_>,
    product_id: &str,
    config: &BTreeMap<String, String>,
    now: i64,
) -> Result<bool, StoreError> {
    let json = to_json("products.config", config)?;
    let old: String = tx.row(
        "SELECT config FROM products WHERE id = ?1",
        args![product_id],
        |r| r.get(0),
    )?;
    if old == json {
        return Ok(false);
    }
    tx.exec(
        "UPDATE products SET config = ?1, config_at_ms = ?2 WHERE id = ?3",
        args![json, now, product_id],
    )?;
    Ok(true)
}
