//! Signed messages between cores. Every signed object is signed (ed25519) over the SHA-256
//! of the JCS form of the object *without* its `signature` field and *with* a `"type"` member
//! naming what it is, so a signature of one kind of message can never pass for another.
//!
//! The kinds: `accept` and `cheque` (the market, signed by the client's key, see
//! [`crate::market`]) and `access`: the agent's signed access message ([`SignedAccess`]),
//! the one format of the market's accept answer and of `access export` / `access import`.
//! [`sign_access`] signs one, [`check_signed_access`] checks one on its own (the offering it
//! carries and the signature by that offering's agent key).

use serde::Serialize;
use serde_json::{json, Value};
use service_api::market::SignedAccess;

use crate::jcs::{self, JcsError};
use crate::keys::{self, AgentKeys, KeyError};

/// Errors of signing and checking signed messages.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("encoding {what} as JSON: {source}")]
    Json {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("hashing a signed message: {0}")]
    Hash(#[from] JcsError),
    /// A signature that does not verify.
    #[error("{kind}: signature rejected: {source}")]
    Rejected {
        kind: &'static str,
        #[source]
        source: Box<KeyError>,
    },
    /// A signed access message whose carried offering is not the one it names.
    #[error(
        "access message refused: the offering it carries has hash {found}, not its \
         offeringHash {claimed}"
    )]
    OfferingHash { claimed: String, found: String },
    #[error("access message refused: the offering it carries has no agentPublicKey")]
    NoAgentKey,
    #[error(
        "access message refused: the signature of the offering it carries does not verify: {0}"
    )]
    OfferingSignature(#[source] Box<KeyError>),
    /// The agent's signature of an access message does not verify.
    #[error(
        "access message refused: it is not signed by the offering's agent (it was changed \
         after the agent signed it, or another key signed it): {0}"
    )]
    AccessSignature(#[source] Box<KeyError>),
}

impl SigningError {
    /// A refusal of what was presented (as opposed to a failure to encode or hash it).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, SigningError::Json { .. } | SigningError::Hash(_))
    }
}

type Result<T, E = SigningError> = std::result::Result<T, E>;

/// What a signature of `kind` covers.
pub(crate) fn signing_bytes(kind: &str, v: &Value) -> Result<[u8; 32]> {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("signature");
        o.insert("type".into(), json!(kind));
    }
    Ok(jcs::sha256_jcs(&v)?)
}

/// A message as JSON, to sign or check.
pub(crate) fn to_value<T: Serialize>(t: &T) -> Result<Value> {
    serde_json::to_value(t).map_err(|source| SigningError::Json {
        what: "a signed message",
        source,
    })
}

/// Checks the signature `sig` of `what` as a message of `kind` by `key_b64`.
pub(crate) fn check_sig(kind: &'static str, what: &Value, key_b64: &str, sig: &str) -> Result<()> {
    let msg = signing_bytes(kind, what)?;
    keys::verify_signature(key_b64, &msg, sig).map_err(|e| SigningError::Rejected {
        kind,
        source: Box::new(e),
    })
}

/// What the signature of an access message covers: `channelId`, `offeringHash` and
/// `access` (the signed offering beside it has its own signature).
fn access_digest(signed: &SignedAccess) -> Result<[u8; 32]> {
    let mut v = to_value(signed)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("offering");
    }
    signing_bytes("access", &v)
}

/// Signs an access message with the agent's key.
pub fn sign_access(keys: &AgentKeys, signed: &mut SignedAccess) -> Result<()> {
    signed.signature = keys.sign(&access_digest(signed)?);
    Ok(())
}

/// Checks the agent's signature of a signed access message against a known agent key.
pub fn verify_access(signed: &SignedAccess, agent_public_key: &str) -> Result<()> {
    keys::verify_signature(agent_public_key, &access_digest(signed)?, &signed.signature)
        .map_err(|e| SigningError::AccessSignature(Box::new(e)))
}

/// Checks a signed access message on its own: the carried offering has `offeringHash` and a
/// valid signature by its `agentPublicKey`, and that key signed the access message. (The
/// offering's terms are checked against its template where the message is imported.)
/// Returns the agent's key.
pub fn check_signed_access(signed: &SignedAccess) -> Result<String> {
    let digest = jcs::sha256_jcs(&signed.offering.offering)?;
    let found = hex::encode(digest);
    if found != signed.offering_hash {
        return Err(SigningError::OfferingHash {
            claimed: signed.offering_hash.clone(),
            found,
        });
    }
    let key = signed
        .offering
        .offering
        .get("agentPublicKey")
        .and_then(Value::as_str)
        .ok_or(SigningError::NoAgentKey)?;
    keys::verify_signature(key, &digest, &signed.offering.signature)
        .map_err(|e| SigningError::OfferingSignature(Box::new(e)))?;
    verify_access(signed, key)?;
    Ok(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_api::market::SignedOffering;
    use service_api::{AccessMessage, ClientKey, Secret};

    fn signed_offering(agent: &AgentKeys, n: u64) -> (SignedOffering, String) {
        let offering = json!({ "agentPublicKey": agent.public_key_b64(), "n": n });
        let digest = jcs::sha256_jcs(&offering).expect("hash");
        (
            SignedOffering {
                signature: agent.sign(&digest),
                offering,
            },
            hex::encode(digest),
        )
    }

    fn signed(agent: &AgentKeys) -> SignedAccess {
        let (offering, offering_hash) = signed_offering(agent, 1);
        let mut s = SignedAccess {
            channel_id: "ch-1".into(),
            offering_hash,
            access: AccessMessage {
                template_hash: "t".into(),
                username: ClientKey("c-1".into()),
                password: Secret("p".into()),
                service_endpoint_address: "192.0.2.1:1194".into(),
                additional_params: [("proto".to_string(), "udp".to_string())].into(),
            },
            offering,
            signature: String::new(),
        };
        sign_access(agent, &mut s).expect("sign");
        s
    }

    #[test]
    fn a_signed_access_message_checks_out_and_any_change_is_caught() {
        let agent = AgentKeys::generate();
        let s = signed(&agent);
        assert_eq!(
            check_signed_access(&s).expect("valid"),
            agent.public_key_b64()
        );
        assert!(verify_access(&s, &agent.public_key_b64()).is_ok());
        type Change = Box<dyn Fn(&mut SignedAccess)>;
        let changes: Vec<(&str, Change)> = vec![
            (
                "endpoint",
                Box::new(|s| s.access.service_endpoint_address = "203.0.113.9:1194".into()),
            ),
            (
                "password",
                Box::new(|s| s.access.password = Secret("mine".into())),
            ),
            (
                "proto",
                Box::new(|s| {
                    s.access
                        .additional_params
                        .insert("proto".into(), "tcp".into());
                }),
            ),
            (
                "username",
                Box::new(|s| s.access.username = ClientKey("c-2".into())),
            ),
            ("channel", Box::new(|s| s.channel_id = "ch-2".into())),
        ];
        for (what, change) in changes {
            let mut t = s.clone();
            change(&mut t);
            assert!(
                matches!(
                    check_signed_access(&t),
                    Err(SigningError::AccessSignature(_))
                ),
                "{what}: {:?}",
                check_signed_access(&t)
            );
        }
    }

    #[test]
    fn the_carried_offering_must_be_the_signed_ones_and_its_key_must_have_signed() {
        let agent = AgentKeys::generate();
        let s = signed(&agent);
        // Another offering of the same agent: the hash no longer matches.
        let mut t = s.clone();
        (t.offering, _) = signed_offering(&agent, 2);
        assert!(matches!(
            check_signed_access(&t),
            Err(SigningError::OfferingHash { .. })
        ));
        // A forger's own offering and hash: the agent's signature does not verify with it.
        let forger = AgentKeys::generate();
        let mut t = s.clone();
        (t.offering, t.offering_hash) = signed_offering(&forger, 1);
        assert!(matches!(
            check_signed_access(&t),
            Err(SigningError::AccessSignature(_))
        ));
        // The offering's own signature is checked.
        let mut t = s.clone();
        t.offering.signature = forger.sign(&[0; 32]);
        assert!(matches!(
            check_signed_access(&t),
            Err(SigningError::OfferingSignature(_))
        ));
        // The access signature does not pass for a cheque's or an accept's.
        let v = to_value(&s).expect("v");
        assert!(check_sig("cheque", &v, &agent.public_key_b64(), &s.signature).is_err());
    }
}
