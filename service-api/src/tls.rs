//! TLS for every client of a core (rustls only, no OpenSSL): the market client of a client's
//! core, adapter-server and adapter-client talking to a remote core's Service API.
//!
//! How a server is trusted ([`Trust`]):
//! - **pinned**: the server's certificate must carry the public key whose SHA-256 over the
//!   DER SubjectPublicKeyInfo ([`spki_sha256`]) is the pin. An agent puts that fingerprint
//!   into every offering it signs (`agentTlsSpkiSha256`), so a client that checked the
//!   offering's signature needs no certificate authority; names and dates are not checked
//!   (the key is what is trusted), the TLS handshake signature still is;
//! - **roots**: the usual web PKI check (name, dates, chain) against the system's roots, or
//!   against the certificates of a `--ca-file` only;
//! - **observe** (fetching offerings from an agent not yet known): any certificate is taken
//!   for the handshake, and [`Observed`] tells afterwards which key the server presented and
//!   whether the roots vouched for it; the caller then checks the key against the pins of
//!   the signed offerings it received over that connection.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use sha2::{Digest, Sha256};

/// The offering field (and the name used in messages) of the agent's TLS key pin.
pub const PIN_FIELD: &str = "agentTlsSpkiSha256";

/// Errors of setting up TLS.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading CA file {path}: {source}")]
    CaFile {
        path: PathBuf,
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    #[error("CA file {path} holds no usable certificate")]
    EmptyCaFile { path: PathBuf },
    #[error("no trusted root certificates: the system has none (install ca-certificates) and no --ca-file was given")]
    NoRoots,
    #[error("not a usable certificate: {0}")]
    BadCertificate(String),
    #[error("{PIN_FIELD} must be 64 lowercase hex digits, got {0:?}")]
    BadPin(String),
    #[error("TLS setup: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("building the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Lowercase hex SHA-256 of a certificate's DER SubjectPublicKeyInfo (its public key).
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Result<String, TlsError> {
    let ee = webpki::EndEntityCert::try_from(cert)
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    let spki = ee.subject_public_key_info();
    Ok(hex::encode(Sha256::digest(spki.as_ref())))
}

/// Is `s` a well-formed pin (64 lowercase hex digits)?
pub fn is_pin(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// How a server's certificate is trusted (see the module doc).
#[derive(Clone, Debug)]
pub enum Trust {
    /// The server's key must have this SPKI SHA-256 (hex).
    Pinned(String),
    /// Web PKI against the system's roots, or only the certificates of this CA file.
    Roots { ca_file: Option<PathBuf> },
    /// Take any certificate and record it (see [`Observed`]).
    Observe(Observed),
}

/// What the server of an observed connection presented.
#[derive(Clone, Debug, Default)]
pub struct Observed(Arc<Mutex<Option<Seen>>>);

/// The key a server presented and whether the roots vouched for its certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub spki_sha256: String,
    /// `None`: the roots vouched for it; `Some(why)`: they did not.
    pub roots_refused: Option<String>,
}

impl Observed {
    /// The last server seen (`None` before a TLS handshake).
    pub fn seen(&self) -> Option<Seen> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
    fn set(&self, s: Seen) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }
}

/// The certificate's key is not the pinned one: a man in the middle, or an agent that
/// changed its TLS key since it signed the offering.
#[derive(Clone, Debug)]
pub struct PinMismatch {
    pub pinned: String,
    pub presented: String,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TLS fingerprint mismatch: the agent's signed offering pins {PIN_FIELD} {} but the \
             server presented a key with SHA-256 {} (a man in the middle, or the agent changed \
             its TLS key: fetch its offerings again)",
            self.pinned, self.presented
        )
    }
}

impl std::error::Error for PinMismatch {}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The root store: the certificates of `ca_file` only, or the system's roots.
pub fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|source| TlsError::CaFile {
                    path: path.to_path_buf(),
                    source,
                })?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                return Err(TlsError::EmptyCaFile {
                    path: path.to_path_buf(),
                });
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(found.certs);
        }
    }
    Ok(roots)
}

#[derive(Debug)]
struct PinnedVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
struct ObservingVerifier {
    roots: Option<Arc<WebPkiServerVerifier>>,
    observed: Observed,
    provider: Arc<CryptoProvider>,
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> rustls::Error {
    rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(Arc::new(e))))
}

fn presented_pin(cert: &CertificateDer<'_>) -> Result<String, rustls::Error> {
    spki_sha256(cert).map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))
}

macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.provider.signature_verification_algorithms,
            )
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = presented_pin(end_entity)?;
        if presented == self.pin {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(other(PinMismatch {
                pinned: self.pin.clone(),
                presented,
            }))
        }
    }
    handshake_signatures!();
}

impl ServerCertVerifier for ObservingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let spki_sha256 = presented_pin(end_entity)?;
        let roots_refused = match &self.roots {
            Some(v) => v
                .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                .err()
                .map(|e| e.to_string()),
            None => Some("no trusted roots".into()),
        };
        self.observed.set(Seen {
            spki_sha256,
            roots_refused,
        });
        Ok(ServerCertVerified::assertion())
    }
    handshake_signatures!();
}

/// The rustls client configuration for `trust`.
pub fn client_config(trust: &Trust) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match trust {
        Trust::Pinned(pin) => {
            if !is_pin(pin) {
                return Err(TlsError::BadPin(pin.clone()));
            }
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                    pin: pin.clone(),
                    provider,
                }))
                .with_no_client_auth()
        }
        Trust::Roots { ca_file } => {
            let roots = root_store(ca_file.as_deref())?;
            if roots.is_empty() {
                return Err(TlsError::NoRoots);
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Observe(observed) => {
            let roots = root_store(None).ok().filter(|r| !r.is_empty());
            let roots = match roots {
                Some(r) => {
                    WebPkiServerVerifier::builder_with_provider(Arc::new(r), provider.clone())
                        .build()
                        .ok()
                }
                None => None,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ObservingVerifier {
                    roots,
                    observed: observed.clone(),
                    provider,
                }))
                .with_no_client_auth()
        }
    };
    Ok(config)
}

/// An observing configuration (see [`Trust::Observe`]) whose roots are `roots` (`None`:
/// nothing is vouched for).
pub fn observing_config(
    roots: Option<Arc<WebPkiServerVerifier>>,
    observed: Observed,
) -> Result<ClientConfig, TlsError> {
    let provider = provider();
    Ok(ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(ObservingVerifier {
            roots,
            observed,
            provider,
        }))
        .with_no_client_auth())
}

/// A reqwest client builder whose `https://` connections use `trust` (and no proxy).
pub fn http_builder(trust: &Trust) -> Result<reqwest::ClientBuilder, TlsError> {
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(client_config(trust)?)
        .no_proxy())
}

static DEFAULT_CA_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Sets, once per process, the CA file [`crate::Client`] trusts for `https://` cores
/// (the adapters' `--ca-file`); without it, the system's roots.
pub fn set_default_ca_file(path: PathBuf) {
    let _ = DEFAULT_CA_FILE.set(path);
}

/// The CA file set with [`set_default_ca_file`].
pub fn default_ca_file() -> Option<PathBuf> {
    DEFAULT_CA_FILE.get().cloned()
}

/// The [`PinMismatch`] behind an error (reqwest → hyper → io → rustls), if that is what
/// it is.
pub fn pin_mismatch_in(e: &(dyn std::error::Error + 'static)) -> Option<PinMismatch> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = cur {
        if let Some(rustls::Error::InvalidCertificate(CertificateError::Other(o))) =
            s.downcast_ref::<rustls::Error>()
        {
            if let Some(m) = o.0.downcast_ref::<PinMismatch>() {
                return Some(m.clone());
            }
        }
        if let Some(m) = s.downcast_ref::<PinMismatch>() {
            return Some(m.clone());
        }
        // An io::Error's source() skips the error it wraps: look inside.
        if let Some(inner) = s
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            let inner: &(dyn std::error::Error + 'static) = inner;
            if let Some(m) = pin_mismatch_in(inner) {
                return Some(m);
            }
        }
        cur = s.source();
    }
    None
}

/// An error with all its causes, `outer: cause: cause` (reqwest hides the TLS reason, such
/// as a [`PinMismatch`], in its sources).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_64_lowercase_hex() {
        assert!(is_pin(&"a".repeat(64)));
        assert!(!is_pin(&"A".repeat(64)));
        assert!(!is_pin(&"a".repeat(63)));
        assert!(matches!(
            client_config(&Trust::Pinned("xyz".into())),
            Err(TlsError::BadPin(_))
        ));
    }

    #[test]
    fn the_mismatch_names_both_fingerprints() {
        let m = PinMismatch {
            pinned: "aa".into(),
            presented: "bb".into(),
        };
        let text = m.to_string();
        assert!(
            text.contains("fingerprint mismatch") && text.contains("aa") && text.contains("bb")
        );
        assert!(text.contains(PIN_FIELD));
    }

    #[test]
    fn a_ca_file_without_certificates_is_refused() {
        let dir = std::env::temp_dir().join(format!("tls-ca-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("empty.pem");
        std::fs::write(&f, "nothing here\n").expect("write");
        assert!(matches!(
            root_store(Some(&f)),
            Err(TlsError::EmptyCaFile { .. })
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
