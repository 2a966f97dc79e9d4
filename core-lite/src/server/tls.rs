//! TLS of the listeners (rustls, no OpenSSL): a certificate and key given as PEM files, or,
//! for a market on a network address with none given, a self-signed certificate the agent
//! makes once and keeps in its data dir (key 0600, written atomically). The SHA-256 of that
//! certificate's public key (SPKI) is written to `market-tls.pin`; every offering the agent
//! signs from then on carries it as `agentTlsSpkiSha256`, so a client that checked the
//! offering's signature pins the agent's TLS key without any certificate authority.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use zeroize::Zeroizing;

use crate::admin::write_private_file;
use crate::error::{CoreError, Result};

/// Self-signed market certificate and key in the data dir.
pub const SELF_SIGNED_CERT: &str = "market-tls.crt";
pub const SELF_SIGNED_KEY: &str = "market-tls.key";
/// The pin of the self-signed market certificate (hex SPKI SHA-256), read when offerings
/// are signed.
pub const PIN_FILE: &str = "market-tls.pin";

fn tls_err(what: String) -> CoreError {
    CoreError::Tls(what)
}

/// A TLS server configuration from PEM files (the certificate chain, leaf first, and its
/// private key), and the leaf's SPKI SHA-256.
pub fn load_server_config(cert: &Path, key: &Path) -> Result<(Arc<ServerConfig>, String)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| tls_err(format!("reading certificate {}: {e}", cert.display())))?;
    let leaf = chain
        .first()
        .ok_or_else(|| tls_err(format!("{} holds no certificate", cert.display())))?;
    let pin = service_api::tls::spki_sha256(leaf)
        .map_err(|e| tls_err(format!("{}: {e}", cert.display())))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| tls_err(format!("reading private key {}: {e}", key.display())))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| tls_err(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| {
                tls_err(format!(
                    "certificate {} and its key do not fit together: {e}",
                    cert.display()
                ))
            })?;
    Ok((Arc::new(config), pin))
}

/// The self-signed market certificate of `data_dir` (made on first use, for `ip` and the
/// name `core-lite-agent`): its paths.
pub fn self_signed(data_dir: &Path, ip: IpAddr) -> Result<(PathBuf, PathBuf)> {
    let cert = data_dir.join(SELF_SIGNED_CERT);
    let key = data_dir.join(SELF_SIGNED_KEY);
    if cert.exists() && key.exists() {
        return Ok((cert, key));
    }
    let mut names = vec!["core-lite-agent".to_string()];
    if !ip.is_unspecified() {
        names.push(ip.to_string());
    }
    let made = rcgen::generate_simple_self_signed(names)
        .map_err(|e| tls_err(format!("making a self-signed certificate: {e}")))?;
    let key_pem = Zeroizing::new(made.key_pair.serialize_pem());
    write_private_file(&key, key_pem.as_bytes())?;
    write_private_file(&cert, made.cert.pem().as_bytes())?;
    tracing::info!(cert = %cert.display(), "made a self-signed market certificate");
    Ok((cert, key))
}

/// Records the pin offerings carry from now on (`None`: offerings carry none).
pub fn set_pin(data_dir: &Path, pin: Option<&str>) -> Result<()> {
    let path = data_dir.join(PIN_FILE);
    match pin {
        Some(p) => write_private_file(&path, format!("{p}\n").as_bytes()),
        None => match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(CoreError::Io { path, source }),
        },
    }
}

/// The pin offerings carry (`agentTlsSpkiSha256`), if the market uses a self-signed
/// certificate.
pub fn read_pin(data_dir: &Path) -> Result<Option<String>> {
    let path = data_dir.join(PIN_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let pin = s.trim().to_string();
            if !service_api::tls::is_pin(&pin) {
                return Err(tls_err(format!(
                    "{} does not hold a SPKI SHA-256 (64 hex digits)",
                    path.display()
                )));
            }
            Ok(Some(pin))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CoreError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_self_signed_certificate_is_made_once_with_a_private_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let ip: IpAddr = "10.1.2.3".parse()?;
        let (cert, key) = self_signed(dir.path(), ip)?;
        let mode = std::fs::metadata(&key)?.permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (_, pin) = load_server_config(&cert, &key)?;
        assert!(service_api::tls::is_pin(&pin));
        let before = std::fs::read(&cert)?;
        self_signed(dir.path(), ip)?;
        assert_eq!(std::fs::read(&cert)?, before, "made again");
        set_pin(dir.path(), Some(&pin))?;
        assert_eq!(read_pin(dir.path())?, Some(pin));
        set_pin(dir.path(), None)?;
        assert_eq!(read_pin(dir.path())?, None);
        Ok(())
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() -> anyhow::Result<()> {
        let a = tempfile::tempdir()?;
        let b = tempfile::tempdir()?;
        let ip: IpAddr = "127.0.0.1".parse()?;
        let (cert, _) = self_signed(a.path(), ip)?;
        let (_, key) = self_signed(b.path(), ip)?;
        let e = load_server_config(&cert, &key).err().map(|e| e.to_string());
        assert!(
            e.as_deref().is_some_and(|e| e.contains("do not fit")),
            "{e:?}"
        );
        Ok(())
    }
}
