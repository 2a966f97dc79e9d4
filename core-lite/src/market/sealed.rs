//! Access messages sealed to the client ([`SealedAccess`], HPKE: [`service_api::seal`]):
//! the agent seals the JSON of the signed access message to the X25519 key the client sent
//! with its accept and signs the envelope (`"type": "sealed-access"`, covering the
//! ciphertext); the client checks the envelope's signature by the carried offering's agent
//! key, opens it with its own key ([`Core::seal_secret`]) and checks the inner message as
//! any signed access message.

use serde_json::Value;
use service_api::market::{AccessEnvelope, SealedAccess, SignedAccess, SEAL_INFO};
use service_api::seal::{self, SUITE};

use crate::error::{CoreError, Result};
use crate::jcs;
use crate::keys::{self, AgentKeys};
use crate::service::Core;
use crate::signing::{signing_bytes, to_value, SigningError};

/// What the envelope's signature covers: everything but `signature` and the offering.
fn digest(s: &SealedAccess) -> Result<[u8; 32]> {
    let mut v = to_value(s)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("offering");
    }
    Ok(signing_bytes("sealed-access", &v)?)
}

/// Agent: seals `signed` to the client's X25519 key `recipient` (base64) and signs it.
pub fn seal_access(
    keys: &AgentKeys,
    signed: &SignedAccess,
    recipient: &str,
) -> Result<SealedAccess> {
    let plain =
        zeroize::Zeroizing::new(
            serde_json::to_vec(signed).map_err(|source| CoreError::Json {
                what: "signed access message",
                source,
            })?,
        );
    let mut sealed = SealedAccess {
        channel_id: signed.channel_id.clone(),
        offering_hash: signed.offering_hash.clone(),
        suite: SUITE.into(),
        recipient: recipient.into(),
        enc: String::new(),
        ciphertext: String::new(),
        offering: signed.offering.clone(),
        signature: String::new(),
    };
    let (enc, ct) = seal::seal(recipient, SEAL_INFO, &sealed.aad(), &plain)
        .map_err(|e| CoreError::Invalid(format!("clientSealKey: {e}")))?;
    sealed.enc = enc;
    sealed.ciphertext = ct;
    sealed.signature = keys.sign(&digest(&sealed)?);
    Ok(sealed)
}

/// The envelope on its own: the carried offering has `offeringHash` and its agent's
/// signature, and that agent signed the envelope.
fn check_envelope(s: &SealedAccess) -> Result<()> {
    let d = jcs::sha256_jcs(&s.offering.offering)?;
    let found = hex::encode(d);
    if found != s.offering_hash {
        return Err(SigningError::OfferingHash {
            claimed: s.offering_hash.clone(),
            found,
        }
        .into());
    }
    let key = s
        .offering
        .offering
        .get("agentPublicKey")
        .and_then(Value::as_str)
        .ok_or(SigningError::NoAgentKey)?;
    keys::verify_signature(key, &d, &s.offering.signature)
        .map_err(|e| SigningError::OfferingSignature(Box::new(e)))?;
    keys::verify_signature(key, &digest(s)?, &s.signature)
        .map_err(|e| SigningError::AccessSignature(Box::new(e)))?;
    Ok(())
}

impl Core {
    /// Client: the signed access message of an envelope; a sealed one is checked (the
    /// agent's signature of the ciphertext) and opened with this core's seal key.
    pub fn open_envelope(&self, env: &AccessEnvelope) -> Result<SignedAccess> {
        let s = match env {
            AccessEnvelope::Signed(s) => return Ok(s.clone()),
            AccessEnvelope::Sealed(s) => s,
        };
        if s.suite != SUITE {
            return Err(CoreError::Invalid(
                seal::SealError::Suite(s.suite.clone()).to_string(),
            ));
        }
        check_envelope(s)?;
        let secret = self.seal_secret()?;
        let mine = secret
            .public_b64()
            .map_err(|e| CoreError::Invalid(e.to_string()))?;
        if s.recipient != mine {
            return Err(CoreError::Forbidden(format!(
                "the access message is sealed to another key ({}), not this core's ({mine})",
                s.recipient
            )));
        }
        let plain = secret
            .open(SEAL_INFO, &s.aad(), &s.enc, &s.ciphertext)
            .map_err(|e| CoreError::Forbidden(format!("access message refused: {e}")))?;
        let inner: SignedAccess = serde_json::from_slice(&plain).map_err(|e| {
            CoreError::Invalid(format!(
                "the sealed access message is not a signed one: {e}"
            ))
        })?;
        if inner.channel_id != s.channel_id || inner.offering_hash != s.offering_hash {
            return Err(CoreError::Forbidden(
                "access message refused: the sealed message names another channel or offering \
                 than its envelope"
                    .into(),
            ));
        }
        Ok(inner)
    }

    /// Client: this core's X25519 public key (base64) agents seal access messages to.
    pub fn seal_public_key(&self) -> Result<String> {
        self.seal_secret()?
            .public_b64()
            .map_err(|e| CoreError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_api::market::SignedOffering;
    use service_api::{AccessMessage, ClientKey, Secret};

    fn signed(agent: &AgentKeys) -> SignedAccess {
        let offering = serde_json::json!({ "agentPublicKey": agent.public_key_b64(), "n": 1 });
        let d = jcs::sha256_jcs(&offering).expect("hash");
        let mut s = SignedAccess {
            channel_id: "ch-1".into(),
            offering_hash: hex::encode(d),
            access: AccessMessage {
                template_hash: "t".into(),
                username: ClientKey("c-1".into()),
                password: Secret("hunter2-password".into()),
                service_endpoint_address: "203.0.113.1:1194".into(),
                additional_params: Default::default(),
            },
            offering: SignedOffering {
                signature: agent.sign(&d),
                offering,
            },
            signature: String::new(),
        };
        crate::signing::sign_access(agent, &mut s).expect("sign");
        s
    }

    #[test]
    fn a_sealed_access_opens_for_its_client_only_and_is_signed() -> anyhow::Result<()> {
        let agent = AgentKeys::generate();
        let dir = tempfile::tempdir()?;
        let client = Core::open(dir.path())?;
        let other_dir = tempfile::tempdir()?;
        let other = Core::open(other_dir.path())?;
        let inner = signed(&agent);
        let sealed = seal_access(&agent, &inner, &client.seal_public_key()?)?;
        let text = serde_json::to_string(&sealed)?;
        assert!(
            !text.contains("hunter2-password"),
            "password in clear: {text}"
        );
        let env = AccessEnvelope::Sealed(sealed.clone());
        assert_eq!(client.open_envelope(&env)?, inner);
        assert!(other.open_envelope(&env).is_err(), "another core opened it");
        // A changed ciphertext breaks the agent's signature.
        let mut bad = sealed.clone();
        bad.ciphertext = bad.ciphertext.replacen('A', "B", 1);
        assert!(client.open_envelope(&AccessEnvelope::Sealed(bad)).is_err());
        // The key file is private.
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(crate::service::SEAL_KEY_FILE))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // The envelope parses back as sealed (untagged).
        let back: AccessEnvelope = serde_json::from_str(&text)?;
        assert!(matches!(back, AccessEnvelope::Sealed(_)));
        let plain: AccessEnvelope =
            serde_json::to_value(&inner).and_then(serde_json::from_value)?;
        assert!(matches!(plain, AccessEnvelope::Signed(_)));
        Ok(())
    }
}
