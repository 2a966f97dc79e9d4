//! `tokens`: the keyed hashes of the API tokens and whom each stands for.

use super::db::{args, Tx};
use super::error::StoreError;

/// Whom a token stands for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TokenOwner {
    Admin,
    /// The server adapter of one product (the product id).
    Product(String),
    Client,
}

impl TokenOwner {
    fn role(&self) -> &'static str {
        match self {
            TokenOwner::Admin => "admin",
            TokenOwner::Product(_) => "product",
            TokenOwner::Client => "client",
        }
    }
}

/// Stores a token's hash. Admin and client tokens already stored are left as they are (the
/// admin token is stored at every start); a product token is always new.
pub fn insert(tx: &Tx<'_>, hash: &str, owner: &TokenOwner, now: i64) -> Result<(), StoreError> {
    match owner {
        TokenOwner::Product(product_id) => tx.exec(
            "INSERT INTO tokens (hash, role, product_id, created_at_ms) VALUES (?1, 'product', ?2, ?3)",
            args![hash, product_id, now],
        ),
        TokenOwner::Admin | TokenOwner::Client => tx.exec(
            "INSERT INTO tokens (hash, role, product_id, created_at_ms) VALUES (?1, ?2, NULL, ?3)
             ON CONFLICT DO NOTHING",
            args![hash, owner.role(), now],
        ),
    }?;
    Ok(())
}

/// The owner of the token with this hash; `None` for an unknown token.
pub fn owner(tx: &Tx<'_>, hash: &str) -> Result<Option<TokenOwner>, StoreError> {
    let row: Option<(String, Option<String>)> = tx.opt_row(
        "SELECT role, product_id FROM tokens WHERE hash = ?1",
        args![hash],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok(match row {
        Some((role, _)) if role == "admin" => Some(TokenOwner::Admin),
        Some((role, Some(p))) if role == "product" => Some(TokenOwner::Product(p)),
        Some((role, _)) if role == "client" => Some(TokenOwner::Client),
        _ => None,
    })
}
