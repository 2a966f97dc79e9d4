//! Sealing to a client (RFC 9180 HPKE, base mode, DHKEM(X25519, HKDF-SHA256), HKDF-SHA256,
//! ChaCha20-Poly1305): the agent seals the access message to the X25519 key the client sent
//! with its accept, so only that client's core can read the VPN password, even behind a
//! logging proxy or relay. The client's X25519 key is its own, distinct from its ed25519
//! key that signs cheques.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hpke::aead::ChaCha20Poly1305;
use hpke::kdf::HkdfSha256;
use hpke::kem::X25519HkdfSha256;
use hpke::{Deserializable, Kem, OpModeR, OpModeS, Serializable};
use zeroize::{Zeroize, Zeroizing};

/// The suite name carried in a sealed message.
pub const SUITE: &str = "HPKE-base/X25519-HKDF-SHA256/HKDF-SHA256/ChaCha20-Poly1305";

type PublicKey = <X25519HkdfSha256 as Kem>::PublicKey;
type PrivateKey = <X25519HkdfSha256 as Kem>::PrivateKey;
type EncappedKey = <X25519HkdfSha256 as Kem>::EncappedKey;

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("{what}: not base64 of {len} bytes")]
    Encoding { what: &'static str, len: usize },
    #[error("{what}: not an X25519 key or encapsulation")]
    Key { what: &'static str },
    #[error("sealing failed")]
    Seal,
    #[error(
        "cannot open the sealed message: it was not sealed to this core's key, or it was changed"
    )]
    Open,
    #[error("unsupported sealing suite {0:?} (this core knows {SUITE})")]
    Suite(String),
}

/// A client's X25519 secret key. Zeroized when dropped; never shown by `Debug`.
pub struct SealSecret(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for SealSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealSecret(<redacted>)")
    }
}

impl SealSecret {
    /// A fresh key pair's secret.
    pub fn generate() -> SealSecret {
        let (sk, _) = X25519HkdfSha256::gen_keypair(&mut rand::rngs::OsRng);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&sk.to_bytes());
        SealSecret(Zeroizing::new(bytes))
    }

    /// From its 32 bytes (the caller zeroizes its own copy).
    pub fn from_bytes(bytes: &[u8]) -> Result<SealSecret, SealError> {
        let arr: [u8; 32] = bytes.try_into().map_err(|_| SealError::Encoding {
            what: "seal secret key",
            len: 32,
        })?;
        PrivateKey::from_bytes(&arr).map_err(|_| SealError::Key {
            what: "seal secret key",
        })?;
        Ok(SealSecret(Zeroizing::new(arr)))
    }

    /// The secret's 32 bytes (to store it).
    pub fn expose(&self) -> &[u8; 32] {
        &self.0
    }

    fn private(&self) -> Result<PrivateKey, SealError> {
        PrivateKey::from_bytes(&self.0[..]).map_err(|_| SealError::Key {
            what: "seal secret key",
        })
    }

    /// The public key, base64 (what the client sends with its accept).
    pub fn public_b64(&self) -> Result<String, SealError> {
        let pk = X25519HkdfSha256::sk_to_pk(&self.private()?);
        Ok(B64.encode(pk.to_bytes()))
    }

    /// Opens what [`seal`] sealed to this key with the same `info` and `aad`.
    pub fn open(
        &self,
        info: &[u8],
        aad: &[u8],
        enc_b64: &str,
        ciphertext_b64: &str,
    ) -> Result<Zeroizing<Vec<u8>>, SealError> {
        let enc = decode(enc_b64, "enc", 32)?;
        let enc = EncappedKey::from_bytes(&enc).map_err(|_| SealError::Key { what: "enc" })?;
        let ct = B64
            .decode(ciphertext_b64)
            .map_err(|_| SealError::Encoding {
                what: "ciphertext",
                len: 0,
            })?;
        hpke::single_shot_open::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256>(
            &OpModeR::Base,
            &self.private()?,
            &enc,
            info,
            &ct,
            aad,
        )
        .map(Zeroizing::new)
        .map_err(|_| SealError::Open)
    }
}

fn decode(b64: &str, what: &'static str, len: usize) -> Result<Vec<u8>, SealError> {
    match B64.decode(b64) {
        Ok(v) if v.len() == len => Ok(v),
        _ => Err(SealError::Encoding { what, len }),
    }
}

/// Checks a base64 X25519 public key (an accept's `clientSealKey`).
pub fn check_public(public_b64: &str) -> Result<(), SealError> {
    let raw = decode(public_b64, "clientSealKey", 32)?;
    PublicKey::from_bytes(&raw).map_err(|_| SealError::Key {
        what: "clientSealKey",
    })?;
    Ok(())
}

/// Seals `plaintext` to the base64 X25519 `recipient`: (enc, ciphertext), both base64.
pub fn seal(
    recipient_b64: &str,
    info: &[u8],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<(String, String), SealError> {
    let raw = decode(recipient_b64, "clientSealKey", 32)?;
    let pk = PublicKey::from_bytes(&raw).map_err(|_| SealError::Key {
        what: "clientSealKey",
    })?;
    let (enc, ct) = hpke::single_shot_seal::<ChaCha20Poly1305, HkdfSha256, X25519HkdfSha256, _>(
        &OpModeS::Base,
        &pk,
        info,
        plaintext,
        aad,
        &mut rand::rngs::OsRng,
    )
    .map_err(|_| SealError::Seal)?;
    Ok((B64.encode(enc.to_bytes()), B64.encode(ct)))
}

/// Zeroizes a byte buffer that held a secret (for callers without `zeroize`).
pub fn wipe(buf: &mut [u8]) {
    buf.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_opens_only_with_the_key_and_the_same_context() {
        let sk = SealSecret::generate();
        let pk = sk.public_b64().expect("pk");
        check_public(&pk).expect("valid key");
        let (enc, ct) = seal(&pk, b"info", b"aad", b"the password").expect("seal");
        assert!(!ct.contains("password"));
        let pt = sk.open(b"info", b"aad", &enc, &ct).expect("open");
        assert_eq!(&pt[..], b"the password");
        // Another key, another context, a changed ciphertext: refused.
        let other = SealSecret::generate();
        assert!(matches!(
            other.open(b"info", b"aad", &enc, &ct),
            Err(SealError::Open)
        ));
        assert!(matches!(
            sk.open(b"info", b"other", &enc, &ct),
            Err(SealError::Open)
        ));
        let mut raw = B64.decode(&ct).expect("b64");
        raw[0] ^= 1;
        assert!(matches!(
            sk.open(b"info", b"aad", &enc, &B64.encode(raw)),
            Err(SealError::Open)
        ));
        // The secret round-trips through its bytes and is never shown.
        let again = SealSecret::from_bytes(sk.expose()).expect("bytes");
        assert_eq!(again.public_b64().expect("pk"), pk);
        assert_eq!(format!("{sk:?}"), "SealSecret(<redacted>)");
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(check_public("not base64!").is_err());
        assert!(check_public(&B64.encode([1u8; 31])).is_err());
        assert!(seal("AAAA", b"", b"", b"x").is_err());
    }
}
