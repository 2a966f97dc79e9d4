//! Agent keys and secrets: the ed25519 key that signs offerings, the secret that derives
//! channel passwords, the key that hashes passwords and tokens at rest, and random tokens
//! and client keys.
//!
//! The key file (`agent.key` in the data dir, mode 0600) is a small TOML document:
//!
//! ```toml
//! version = 1
//! signing_key = "<base64 of the 32-byte ed25519 seed>"
//! password_secret = "<base64 of 32 random bytes>"
//! hash_key = "<base64 of 32 random bytes>"
//! ```
//!
//! Passwords and tokens are ≥ 128-bit random values, so a fast keyed hash (BLAKE3 keyed with
//! `hash_key`) is the right way to store them (DESIGN §7); comparisons are constant time.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use service_api::{ClientKey, Secret};

/// Largest key file accepted.
const MAX_KEY_FILE_BYTES: u64 = 4096;
/// Version written into new key files.
const KEY_FILE_VERSION: u32 = 1;
/// Domain separation of derived channel passwords.
const PASSWORD_CONTEXT: &[u8] = b"core-lite/channel-password/v1\0";

/// Errors of loading keys and of checking signatures.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading key file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing key file {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "key file {path} has mode {mode:04o}: it must not be accessible by group or others \
         (run `chmod 600 {path}`)"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("key file {path} is not a regular file")]
    NotRegularFile { path: PathBuf },
    #[error("key file {path} is larger than {MAX_KEY_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("parsing key file {path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("key file {path}: field `{field}`: {reason}")]
    BadField {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
    #[error("bad public key: {reason}")]
    BadPublicKey { reason: String },
    #[error("bad signature: {reason}")]
    BadSignature { reason: String },
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    version: u32,
    signing_key: String,
    password_secret: String,
    hash_key: String,
}

/// The agent's keys. `Debug` shows only the public key.
pub struct AgentKeys {
    signing: SigningKey,
    password_secret: [u8; 32],
    hash_key: [u8; 32],
}

/// The secrets are wiped when the keys are dropped (the ed25519 signing key wipes itself).
impl Drop for AgentKeys {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.password_secret);
        zeroize::Zeroize::zeroize(&mut self.hash_key);
    }
}

impl fmt::Debug for AgentKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentKeys")
            .field("public_key", &self.public_key_b64())
            .finish_non_exhaustive()
    }
}

impl AgentKeys {
    /// Fresh random keys (from the OS random source).
    pub fn generate() -> AgentKeys {
        let mut password_secret = [0u8; 32];
        let mut hash_key = [0u8; 32];
        OsRng.fill_bytes(&mut password_secret);
        OsRng.fill_bytes(&mut hash_key);
        AgentKeys {
            signing: SigningKey::generate(&mut OsRng),
            password_secret,
            hash_key,
        }
    }

    /// Loads the key file at `path`, or creates it (mode 0600, atomically: a concurrent
    /// creator never sees a half-written file) when it does not exist. A file readable or
    /// writable by group or others is refused.
    pub fn load_or_create(path: &Path) -> Result<AgentKeys, KeyError> {
        match Self::load(path) {
            Err(KeyError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                let keys = Self::generate();
                match keys.write_new(path) {
                    Ok(()) => Ok(keys),
                    // Somebody else created it first: theirs wins.
                    Err(KeyError::Write { source, .. })
                        if source.kind() == std::io::ErrorKind::AlreadyExists =>
                    {
                        Self::load(path)
                    }
                    Err(e) => Err(e),
                }
            }
            other => other,
        }
    }

    /// Loads an existing key file (see [`AgentKeys::load_or_create`] for the checks).
    pub fn load(path: &Path) -> Result<AgentKeys, KeyError> {
        let read_err = |source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(read_err)?;
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(KeyError::NotRegularFile {
                path: path.to_path_buf(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(KeyError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
        if meta.len() > MAX_KEY_FILE_BYTES {
            return Err(KeyError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        let mut text = String::new();
        file.take(MAX_KEY_FILE_BYTES + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_KEY_FILE_BYTES {
            return Err(KeyError::TooLarge {
                path: path.to_path_buf(),
            });
        }
        Self::parse(&text, path)
    }

    fn parse(text: &str, path: &Path) -> Result<AgentKeys, KeyError> {
        let kf: KeyFile = toml::from_str(text).map_err(|source| KeyError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        if kf.version != KEY_FILE_VERSION {
            return Err(KeyError::BadField {
                path: path.to_path_buf(),
                field: "version",
                reason: format!(
                    "unsupported version {} (expected {KEY_FILE_VERSION})",
                    kf.version
                ),
            });
        }
        let field32 = |field: &'static str, v: &str| -> Result<[u8; 32], KeyError> {
            let bad = |reason: String| KeyError::BadField {
                path: path.to_path_buf(),
                field,
                reason,
            };
            let bytes = STANDARD
                .decode(v.trim())
                .map_err(|e| bad(format!("not base64: {e}")))?;
            <[u8; 32]>::try_from(bytes.as_slice())
                .map_err(|_| bad(format!("{} bytes, expected 32", bytes.len())))
        };
        let seed = field32("signing_key", &kf.signing_key)?;
        Ok(AgentKeys {
            signing: SigningKey::from_bytes(&seed),
            password_secret: field32("password_secret", &kf.password_secret)?,
            hash_key: field32("hash_key", &kf.hash_key)?,
        })
    }

    fn write_new(&self, path: &Path) -> Result<(), KeyError> {
        let write_err = |source| KeyError::Write {
            path: path.to_path_buf(),
            source,
        };
        let text = self.to_toml();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| {
                write_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the key file path has no file name",
                ))
            })?;
        let tmp = dir.join(format!(
            ".{file_name}.tmp-{}-{:016x}",
            std::process::id(),
            OsRng.next_u64()
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            drop(f);
            // link() fails with AlreadyExists instead of replacing a file created meanwhile.
            std::fs::hard_link(&tmp, path)?;
            if let Ok(d) = File::open(&dir) {
                let _ = d.sync_all();
            }
            Ok(())
        })();
        let _ = std::fs::remove_file(&tmp);
        result.map_err(write_err)
    }

    fn to_toml(&self) -> String {
        format!(
            "# core-lite agent keys: keep secret (mode 0600)\n\
             version = {KEY_FILE_VERSION}\n\
             signing_key = \"{}\"\n\
             password_secret = \"{}\"\n\
             hash_key = \"{}\"\n",
            STANDARD.encode(self.signing.to_bytes()),
            STANDARD.encode(self.password_secret),
            STANDARD.encode(self.hash_key),
        )
    }

    /// The ed25519 public key: base64 (standard, padded) of its 32 bytes.
    pub fn public_key_b64(&self) -> String {
        STANDARD.encode(self.signing.verifying_key().to_bytes())
    }

    /// ed25519 signature of `msg`, base64 (standard, padded).
    pub fn sign(&self, msg: &[u8]) -> String {
        STANDARD.encode(self.signing.sign(msg).to_bytes())
    }

    /// The password of a channel: keyed BLAKE3 of the channel id with the password secret,
    /// 256 bits, URL-safe base64 without padding (43 characters). Deterministic, so
    /// `access export` can recompute it while only its hash is stored.
    pub fn derive_password(&self, channel_id: &str) -> Secret {
        let mut hasher = blake3::Hasher::new_keyed(&self.password_secret);
        hasher.update(PASSWORD_CONTEXT);
        hasher.update(channel_id.as_bytes());
        Secret(URL_SAFE_NO_PAD.encode(hasher.finalize().as_bytes()))
    }

    /// Lowercase hex keyed BLAKE3 of a secret (password or token) for storage.
    pub fn hash_secret(&self, secret: &str) -> String {
        blake3::keyed_hash(&self.hash_key, secret.as_bytes())
            .to_hex()
            .to_string()
    }

    /// True when `secret` hashes to `stored_hash_hex` (compared in constant time).
    pub fn verify_secret(&self, secret: &str, stored_hash_hex: &str) -> bool {
        let mut stored = [0u8; 32];
        if hex::decode_to_slice(stored_hash_hex, &mut stored).is_err() {
            return false;
        }
        let computed = blake3::keyed_hash(&self.hash_key, secret.as_bytes());
        computed.as_bytes().ct_eq(&stored).into()
    }
}

/// Checks an ed25519 signature (base64) of `msg` by the public key (base64 of 32 bytes).
/// Uses strict verification (rejects small-order keys and non-canonical signatures).
pub fn verify_signature(
    public_key_b64: &str,
    msg: &[u8],
    signature_b64: &str,
) -> Result<(), KeyError> {
    let key = parse_public_key(public_key_b64)?;
    let sig_bytes = STANDARD
        .decode(signature_b64)
        .map_err(|e| KeyError::BadSignature {
            reason: format!("not base64: {e}"),
        })?;
    let sig_arr =
        <[u8; 64]>::try_from(sig_bytes.as_slice()).map_err(|_| KeyError::BadSignature {
            reason: format!("{} bytes, expected 64", sig_bytes.len()),
        })?;
    key.verify_strict(msg, &Signature::from_bytes(&sig_arr))
        .map_err(|_| KeyError::BadSignature {
            reason: "does not verify with the agent's public key".into(),
        })
}

/// Parses a public key: base64 (standard, padded) of 32 bytes that is a valid ed25519 point.
pub fn parse_public_key(public_key_b64: &str) -> Result<VerifyingKey, KeyError> {
    let bytes = STANDARD
        .decode(public_key_b64)
        .map_err(|e| KeyError::BadPublicKey {
            reason: format!("not base64: {e}"),
        })?;
    let arr = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::BadPublicKey {
        reason: format!("{} bytes, expected 32", bytes.len()),
    })?;
    let key = VerifyingKey::from_bytes(&arr).map_err(|_| KeyError::BadPublicKey {
        reason: "not an ed25519 public key".into(),
    })?;
    if key.is_weak() {
        return Err(KeyError::BadPublicKey {
            reason: "weak (small-order) ed25519 key".into(),
        });
    }
    Ok(key)
}

/// A random token (256 bits), URL-safe base64 without padding (43 characters).
pub fn random_token() -> Secret {
    let mut b = [0u8; 32];
    OsRng.fill_bytes(&mut b);
    Secret(URL_SAFE_NO_PAD.encode(b))
}

/// A random client key, safe as an OpenVPN username: `c-` + 20 lowercase hex digits (80 bits).
pub fn random_client_key() -> ClientKey {
    let mut b = [0u8; 10];
    OsRng.fill_bytes(&mut b);
    ClientKey(format!("c-{}", hex::encode(b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_file_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.key");
        let a = AgentKeys::load_or_create(&path).expect("create");
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = AgentKeys::load_or_create(&path).expect("reload");
        assert_eq!(a.public_key_b64(), b.public_key_b64());
        assert_eq!(a.derive_password("ch-1"), b.derive_password("ch-1"));
        assert_eq!(a.hash_secret("x"), b.hash_secret("x"));
        // No temporary files left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("readdir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("agent.key")]);
        // Debug never shows the secrets.
        let dbg = format!("{a:?}");
        assert!(dbg.contains(&a.public_key_b64()));
        let text = std::fs::read_to_string(&path).expect("read");
        for line in text.lines().filter(|l| l.starts_with("password_secret")) {
            let v = line.split('"').nth(1).expect("value");
            assert!(!dbg.contains(v));
        }
    }

    #[test]
    fn key_file_with_loose_permissions_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.key");
        AgentKeys::load_or_create(&path).expect("create");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).expect("chmod");
        let err = AgentKeys::load_or_create(&path).expect_err("refused");
        assert!(
            matches!(err, KeyError::InsecurePermissions { mode: 0o640, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }

    #[test]
    fn key_file_parse_errors_name_the_field() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("agent.key");
        let good = AgentKeys::generate().to_toml();
        let cases: Vec<(String, &str)> = vec![
            (format!("{good}extra = 1\n"), "extra"),
            (good.replace("version = 1", "version = 2"), "version"),
            (
                good.lines()
                    .map(|l| {
                        if l.starts_with("hash_key") {
                            "hash_key = \"AAAA\"".to_string()
                        } else {
                            l.to_string()
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("\n"),
                "hash_key",
            ),
            (
                good.replace("signing_key = \"", "signing_key = \"!!"),
                "signing_key",
            ),
            ("not toml at all".to_string(), "parsing"),
        ];
        for (text, want) in cases {
            let _ = std::fs::remove_file(&path);
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .expect("create");
            f.write_all(text.as_bytes()).expect("write");
            drop(f);
            let err = AgentKeys::load_or_create(&path).expect_err("bad file refused");
            assert!(
                err.to_string().contains(want),
                "{err} does not mention {want}"
            );
        }
    }

    #[test]
    fn sign_and_verify() {
        let a = AgentKeys::generate();
        let b = AgentKeys::generate();
        let sig = a.sign(b"hello");
        verify_signature(&a.public_key_b64(), b"hello", &sig).expect("verifies");
        assert!(matches!(
            verify_signature(&a.public_key_b64(), b"hellO", &sig),
            Err(KeyError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_signature(&b.public_key_b64(), b"hello", &sig),
            Err(KeyError::BadSignature { .. })
        ));
        assert!(matches!(
            verify_signature("AAAA", b"hello", &sig),
            Err(KeyError::BadPublicKey { .. })
        ));
        assert!(matches!(
            verify_signature(&a.public_key_b64(), b"hello", "not base64!"),
            Err(KeyError::BadSignature { .. })
        ));
        // The identity point is a small-order key: refused.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(matches!(
            verify_signature(&STANDARD.encode(identity), b"hello", &sig),
            Err(KeyError::BadPublicKey { .. })
        ));
        assert_eq!(STANDARD.decode(a.public_key_b64()).expect("b64").len(), 32);
    }

    #[test]
    fn derived_passwords_are_stable_long_and_distinct() {
        let a = AgentKeys::generate();
        let p1 = a.derive_password("channel-1");
        assert_eq!(p1, a.derive_password("channel-1"));
        assert_ne!(p1, a.derive_password("channel-2"));
        assert_ne!(p1, AgentKeys::generate().derive_password("channel-1"));
        let raw = URL_SAFE_NO_PAD.decode(p1.expose()).expect("url-safe b64");
        assert!(raw.len() * 8 >= 128);
        assert!(p1.expose().len() >= 22);
        assert!(p1
            .expose()
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    }

    #[test]
    fn secret_hash_verification() {
        let a = AgentKeys::generate();
        let h = a.hash_secret("password-1");
        assert_eq!(h.len(), 64);
        assert!(a.verify_secret("password-1", &h));
        assert!(!a.verify_secret("password-2", &h));
        assert!(!a.verify_secret("password-1", "zz"));
        assert!(!a.verify_secret("password-1", &h[..62]));
        // Another agent's hash key gives another hash.
        assert!(!AgentKeys::generate().verify_secret("password-1", &h));
    }

    #[test]
    fn random_tokens_and_client_keys() {
        let t1 = random_token();
        assert_ne!(t1, random_token());
        assert_eq!(URL_SAFE_NO_PAD.decode(t1.expose()).expect("b64").len(), 32);
        for _ in 0..100 {
            let k = random_client_key();
            assert_eq!(k.0.len(), 22, "{k}");
            assert!(k.0.starts_with("c-"));
            assert!(k
                .0
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
            assert!(k.0[2..].bytes().all(|b| b.is_ascii_hexdigit()));
        }
        assert_ne!(random_client_key(), random_client_key());
    }
}
