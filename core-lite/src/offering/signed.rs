//! Signed offerings: building and signing one (agent) and verifying one (client). The
//! signature covers the 32 bytes of the offering hash, the SHA-256 of its JCS form.

use serde_json::Value;
use service_api::market::SignedOffering;

use super::rules::validate_offering;
use super::terms::{OfferingTerms, CORE_FILLED_FIELDS, MAX_OFFERING_BYTES};
use crate::jcs::{self, JcsError};
use crate::keys::{self, AgentKeys};
use crate::validation::{FieldError, Invalid};

/// Errors of building and verifying offerings.
#[derive(Debug, thiserror::Error)]
pub enum OfferingError {
    #[error("unknown offering template {hash}: register its module first")]
    UnknownTemplate { hash: String },
    #[error("offering signature rejected: {reason}")]
    BadSignature { reason: String },
    #[error("invalid offering: {0}")]
    Invalid(#[from] Invalid),
    #[error(transparent)]
    Canonicalize(#[from] JcsError),
}

/// Lowercase hex SHA-256 of the offering's JCS form.
pub fn offering_hash(offering: &Value) -> Result<String, JcsError> {
    jcs::hash_hex(offering)
}

/// Agent side: fills the core's fields into the agent's `input` (`templateHash`, a fresh
/// uuid v4 `nonce`, `agentPublicKey`, `product`), validates, hashes (hex SHA-256 of the JCS
/// form) and signs the 32 hash bytes. `input` must not contain the core's fields. With
/// `tls_pin`, the offering also carries the agent's TLS key pin (`agentTlsSpkiSha256`,
/// [`service_api::tls`]).
pub fn build_offering(
    template: &Value,
    template_hash: &str,
    product_id: &str,
    agent: &AgentKeys,
    input: &Value,
    tls_pin: Option<&str>,
) -> Result<(SignedOffering, String, OfferingTerms), OfferingError> {
    let Some(obj) = input.as_object() else {
        return Err(Invalid(vec![FieldError::new(
            "",
            "the offering input must be a JSON object",
        )])
        .into());
    };
    let forbidden: Vec<FieldError> = CORE_FILLED_FIELDS
        .iter()
        .chain(std::iter::once(&service_api::tls::PIN_FIELD))
        .filter(|f| obj.contains_key(**f))
        .map(|f| {
            FieldError::new(
                &format!("/{f}"),
                "filled in by the core; remove it from the input",
            )
        })
        .collect();
    if !forbidden.is_empty() {
        return Err(Invalid(forbidden).into());
    }
    let mut offering = obj.clone();
    offering.insert(
        "templateHash".into(),
        Value::String(template_hash.to_string()),
    );
    offering.insert(
        "nonce".into(),
        Value::String(uuid::Uuid::new_v4().hyphenated().to_string()),
    );
    offering.insert(
        "agentPublicKey".into(),
        Value::String(agent.public_key_b64()),
    );
    offering.insert("product".into(), Value::String(product_id.to_string()));
    if let Some(pin) = tls_pin {
        offering.insert(
            service_api::tls::PIN_FIELD.into(),
            Value::String(pin.to_string()),
        );
    }
    let offering = Value::Object(offering);

    let terms = validate_offering(template, &offering)?;
    let digest = jcs::sha256_jcs(&offering)?;
    let signed = SignedOffering {
        signature: agent.sign(&digest),
        offering,
    };
    Ok((signed, hex::encode(digest), terms))
}

/// Client side: the template must be known (`lookup_template` by `templateHash`), the
/// signature must verify with `agentPublicKey` over the offering hash bytes, and the offering
/// must validate against the template. Returns the offering hash and the terms.
pub fn verify_offering(
    signed: &SignedOffering,
    lookup_template: impl Fn(&str) -> Option<Value>,
) -> Result<(String, OfferingTerms), OfferingError> {
    let invalid = |pointer: &str, msg: &str| {
        OfferingError::Invalid(Invalid(vec![FieldError::new(pointer, msg)]))
    };
    let size = serde_json::to_string(&signed.offering)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_OFFERING_BYTES {
        return Err(invalid(
            "",
            &format!("offering is larger than {MAX_OFFERING_BYTES} bytes"),
        ));
    }
    let Some(obj) = signed.offering.as_object() else {
        return Err(invalid("", "an offering must be a JSON object"));
    };
    let hash = match obj.get("templateHash") {
        Some(Value::String(h)) if jcs::is_hash_hex(h) => h.clone(),
        Some(_) => {
            return Err(invalid(
                "/templateHash",
                "must be 64 lowercase hex digits (SHA-256)",
            ))
        }
        None => return Err(invalid("/templateHash", "required field is missing")),
    };
    let template = lookup_template(&hash).ok_or(OfferingError::UnknownTemplate { hash })?;

    let public_key = match obj.get("agentPublicKey") {
        Some(Value::String(k)) => k.clone(),
        Some(_) => {
            return Err(OfferingError::BadSignature {
                reason: "agentPublicKey is not a string".into(),
            })
        }
        None => {
            return Err(OfferingError::BadSignature {
                reason: "agentPublicKey is missing".into(),
            })
        }
    };
    let digest = jcs::sha256_jcs(&signed.offering)?;
    keys::verify_signature(&public_key, &digest, &signed.signature).map_err(|e| {
        OfferingError::BadSignature {
            reason: e.to_string(),
        }
    })?;
    let terms = validate_offering(&template, &signed.offering)?;
    Ok((hex::encode(digest), terms))
}
