//! `modules`: the registered service modules and their two templates.

use std::collections::BTreeMap;

use serde_json::Value;

use super::codec::{from_json, to_json};
use super::db::{args, Tx};
use super::error::StoreError;

/// A registered module (without its templates).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModuleRow {
    pub name: String,
    pub version: String,
    pub offering_hash: String,
    pub access_hash: String,
}

/// A module to register.
pub struct NewModule<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub offering_template: &'a Value,
    pub offering_hash: &'a str,
    pub access_template: &'a Value,
    pub access_hash: &'a str,
    pub registered_at_ms: i64,
}

/// A template with its hash.
pub struct Template {
    pub hash: String,
    pub body: Value,
}

pub fn by_name(tx: &Tx<'_>, name: &str) -> Result<Option<ModuleRow>, StoreError> {
    tx.opt_row(
        "SELECT name, version, offering_hash, access_hash FROM modules WHERE name = ?1",
        args![name],
        |r| {
            Ok(ModuleRow {
                name: r.get(0)?,
                version: r.get(1)?,
                offering_hash: r.get(2)?,
                access_hash: r.get(3)?,
            })
        },
    )
}

/// The module that already has one of these templates.
pub fn name_by_template_hashes(
    tx: &Tx<'_>,
    offering_hash: &str,
    access_hash: &str,
) -> Result<Option<String>, StoreError> {
    tx.opt_row(
        "SELECT name FROM modules WHERE offering_hash = ?1 OR access_hash = ?2",
        args![offering_hash, access_hash],
        |r| r.get(0),
    )
}

pub fn insert(tx: &Tx<'_>, m: &NewModule<'_>) -> Result<(), StoreError> {
    let offering_template = to_json("modules.offering_template", m.offering_template)?;
    let access_template = to_json("modules.access_template", m.access_template)?;
    tx.exec(
        "INSERT INTO modules VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        args![
            m.name,
            m.version,
            offering_template,
            m.offering_hash,
            access_template,
            m.access_hash,
            m.registered_at_ms
        ],
    )?;
    Ok(())
}

/// Every module, by name.
pub fn list(tx: &Tx<'_>) -> Result<Vec<ModuleRow>, StoreError> {
    tx.rows(
        "SELECT name, version, offering_hash, access_hash FROM modules ORDER BY name",
        args![],
        |r| {
            Ok(ModuleRow {
                name: r.get(0)?,
                version: r.get(1)?,
                offering_hash: r.get(2)?,
                access_hash: r.get(3)?,
            })
        },
    )
}

/// The offering template of a registered module (an error when the module is unknown).
pub fn offering_template(tx: &Tx<'_>, module: &str) -> Result<Template, StoreError> {
    let (body, hash): (String, String) = tx.row(
        "SELECT offering_template, offering_hash FROM modules WHERE name = ?1",
        args![module],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Template {
        body: from_json("modules.offering_template", &body)?,
        hash,
    })
}

/// The access template of a registered module (an error when the module is unknown).
pub fn access_template(tx: &Tx<'_>, module: &str) -> Result<Template, StoreError> {
    let (hash, body): (String, String) = tx.row(
        "SELECT access_hash, access_template FROM modules WHERE name = ?1",
        args![module],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(Template {
        body: from_json("modules.access_template", &body)?,
        hash,
    })
}

/// The access template with this hash, when registered.
pub fn access_template_by_hash(tx: &Tx<'_>, hash: &str) -> Result<Option<Value>, StoreError> {
    let body: Option<String> = tx.opt_row(
        "SELECT access_template FROM modules WHERE access_hash = ?1",
        args![hash],
        |r| r.get(0),
    )?;
    body.map(|b| from_json("modules.access_template", &b))
        .transpose()
}

/// Every registered offering template by its hash (a template whose stored text does not
/// parse is left out).
pub fn offering_templates(tx: &Tx<'_>) -> Result<BTreeMap<String, Value>, StoreError> {
    let rows = tx.rows(
        "SELECT offering_hash, offering_template FROM modules",
        args![],
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
    )?;
    Ok(rows
        .into_iter()
        .filter_map(|(h, b)| serde_json::from_str(&b).ok().map(|v| (h, v)))
        .collect())
}
