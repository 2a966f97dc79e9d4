//! Tests of the offering module, by topic (the shared VPN template and inputs are here).

use super::decimal::{decimal_text_to_scaled, DecimalError};
use super::*;
use crate::billing;
use crate::keys::AgentKeys;
use crate::template::{load_module, Module};
use serde_json::{json, Value};
use std::path::PathBuf;

fn vpn() -> Module {
    load_module(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../templates/vpn"))
        .expect("templates/vpn loads")
}

/// The agent's part of a VPN offering (the spec example filled in).
fn input() -> Value {
    json!({
        "serviceName": "Privatix VPN",
        "supply": 10,
        "unitName": "MB",
        "unitPrice": 0.001,
        "setupPrice": 0,
        "minUnits": 10,
        "maxUnits": 1000,
        "billingType": "prepaid",
        "billingInterval": 10,
        "billingFrequency": 10,
        "maxBillingUnitLag": 20,
        "maxSuspendTime": 600,
        "maxInactiveTime": 1800,
        "freeUnits": 0,
        "country": "DE",
        "additionalParams": {
            "minUploadSpeed": "1",
            "maxUploadSpeed": "4",
            "minDownloadSpeed": "1",
            "maxDownloadSpeed": "8.5"
        }
    })
}

fn full(m: &Module, keys: &AgentKeys) -> Value {
    let mut v = input();
    v["templateHash"] = json!(m.offering_hash);
    v["nonce"] = json!("0b7c8f1e-3c8a-4d5e-9f10-2a3b4c5d6e7f");
    v["agentPublicKey"] = json!(keys.public_key_b64());
    v["product"] = json!("prod-1");
    v
}

mod amounts;
mod signing;
mod terms;
mod validation;
