//! The OpenAPI 3.1 document served at `/openapi.json`: generated from the wire types by
//! [`service_api::openapi::document`] (the field rules are the ones the server enforces);
//! computed once. Tests check it against the router's routes.

use std::sync::OnceLock;

use serde_json::Value;

/// The whole document.
pub fn document() -> &'static Value {
    static DOC: OnceLock<Value> = OnceLock::new();
    DOC.get_or_init(service_api::openapi::document_json)
}

#[cfg(test)]
mod tests;
