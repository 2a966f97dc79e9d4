//! Signing and verifying the market's messages. Every signed object is signed over the
//! SHA-256 of the JCS form of the object *without* its `signature` field and *with* a
//! `"type"` member naming what it is, so a signature of one kind of message can never pass
//! for another.

use serde::Serialize;
use serde_json::{json, Value};
use service_api::market::{AcceptRequest, Cheque, SignedAccess};

use crate::error::{CoreError, Result};
use crate::jcs;
use crate::keys::{self, AgentKeys};

/// What a signature of `kind` covers.
fn signing_bytes(kind: &str, v: &Value) -> Result<[u8; 32]> {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("signature");
        o.insert("type".into(), json!(kind));
    }
    Ok(jcs::sha256_jcs(&v)?)
}

/// A message as JSON, to sign or check.
pub(super) fn to_value<T: Serialize>(t: &T) -> Result<Value> {
    serde_json::to_value(t).map_err(|source| CoreError::Json {
        what: "a market message",
        source,
    })
}

/// Checks the signature `sig` of `what` as a message of `kind` by `key_b64`.
pub(super) fn check_sig(kind: &str, what: &Value, key_b64: &str, sig: &str) -> Result<()> {
    let msg = signing_bytes(kind, what)?;
    keys::verify_signature(key_b64, &msg, sig)
        .map_err(|e| CoreError::Forbidden(format!("{kind}: signature rejected: {e}")))
}

/// An accept request signed with the client's key (proof that it holds the key).
pub fn signed_accept(
    keys: &AgentKeys,
    offering_hash: &str,
    deposit: u64,
    nonce: &str,
) -> Result<AcceptRequest> {
    let mut r = AcceptRequest {
        offering_hash: offering_hash.into(),
        deposit,
        client_public_key: keys.public_key_b64(),
        nonce: nonce.into(),
        signature: String::new(),
    };
    r.signature = keys.sign(&signing_bytes("accept", &to_value(&r)?)?);
    Ok(r)
}

/// A cheque for the cumulative `amount`, signed with the channel's client key.
pub fn signed_cheque(keys: &AgentKeys, channel_id: &str, amount: u64) -> Result<Cheque> {
    let mut c = Cheque {
        channel_id: channel_id.into(),
        amount,
        signature: String::new(),
    };
    c.signature = keys.sign(&signing_bytes("cheque", &to_value(&c)?)?);
    Ok(c)
}

/// Signs an access message with the agent's key.
pub(super) fn sign_access(keys: &AgentKeys, signed: &mut SignedAccess) -> Result<()> {
    signed.signature = keys.sign(&signing_bytes("access", &to_value(&*signed)?)?);
    Ok(())
}

/// Checks the agent's signature of a signed access message.
pub fn verify_access(signed: &SignedAccess, agent_public_key: &str) -> Result<()> {
    check_sig(
        "access",
        &to_value(signed)?,
        agent_public_key,
        &signed.signature,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_the_kind() {
        let k = AgentKeys::generate();
        let c = signed_cheque(&k, "ch-1", 5).expect("cheque");
        assert!(check_sig(
            "cheque",
            &to_value(&c).expect("v"),
            &k.public_key_b64(),
            &c.signature
        )
        .is_ok());
        // The same bytes do not pass as another kind of message.
        assert!(check_sig(
            "accept",
            &to_value(&c).expect("v"),
            &k.public_key_b64(),
            &c.signature
        )
        .is_err());
        let mut forged = c.clone();
        forged.amount = 6;
        assert!(check_sig(
            "cheque",
            &to_value(&forged).expect("v"),
            &k.public_key_b64(),
            &forged.signature
        )
        .is_err());
    }
}
