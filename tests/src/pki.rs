//! A throw-away PKI (EC P-256, a fraction of a second), made by `scripts/lib/pki.sh` so the
//! tests and the demo use the same certificates.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::env::TestEnv;
use crate::netns::run_cmd;

/// `scripts/lib/pki.sh` of this workspace.
fn pki_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/lib/pki.sh")
}

/// CA, server certificate (serverAuth EKU + nsCertType server, so a client's
/// `remote-cert-tls server` passes), and the static keys for `tls-crypt` and `tls-auth`.
/// No DH parameters: servers use `dh none` (ECDHE).
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// `openvpn --genkey tls-crypt`
    pub tls_crypt: PathBuf,
    /// `openvpn --genkey secret` (for `tls-auth`)
    pub tls_auth: PathBuf,
}

impl Pki {
    /// Generates everything into `<env dir>/pki`.
    pub fn generate(env: &TestEnv) -> Result<Pki> {
        Self::generate_in(&env.path("pki"))
    }

    /// Generates everything into `dir` (created if missing).
    pub fn generate_in(dir: &Path) -> Result<Pki> {
        run_cmd(Command::new("bash").arg(pki_script()).arg(dir))
            .context("generating the test PKI")?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            tls_crypt: dir.join("tls-crypt.key"),
            tls_auth: dir.join("tls-auth.key"),
        })
    }

    /// Issues a client certificate (clientAuth EKU) with common name `cn` (no `/`);
    /// returns (certificate, key) paths.
    pub fn issue_client_cert(&self, cn: &str) -> Result<(PathBuf, PathBuf)> {
        run_cmd(
            Command::new("bash")
                .arg(pki_script())
                .arg(&self.dir)
                .arg("client")
                .arg(cn),
        )
        .with_context(|| format!("issuing a client certificate for {cn}"))?;
        Ok((
            self.dir.join(format!("client-{cn}.crt")),
            self.dir.join(format!("client-{cn}.key")),
        ))
    }

    /// The CA certificate as PEM text (the `ca` product-config value).
    pub fn ca_pem(&self) -> Result<String> {
        read(&self.ca_cert)
    }

    /// The tls-crypt key file's text (the `tlsCrypt` product-config value).
    pub fn tls_crypt_text(&self) -> Result<String> {
        read(&self.tls_crypt)
    }

    /// The tls-auth key file's text (the `tlsAuth` product-config value).
    pub fn tls_auth_text(&self) -> Result<String> {
        read(&self.tls_auth)
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Needs only `openssl` and `openvpn` (no root).
    #[test]
    fn generated_server_cert_verifies_and_has_server_eku() -> Result<()> {
        if crate::env::check_requirements().is_err()
            && std::env::var(crate::env::REQUIRED_ENV).as_deref() != Ok("1")
        {
            eprintln!("skipped: needs the e2e requirements");
            return Ok(());
        }
        let env = TestEnv::new_unchecked("pki-unit")?;
        let pki = Pki::generate(&env)?;
        run_cmd(
            Command::new("openssl")
                .args(["verify", "-purpose", "sslserver", "-CAfile"])
                .arg(&pki.ca_cert)
                .arg(&pki.server_cert),
        )?;
        let text = run_cmd(
            Command::new("openssl")
                .args(["x509", "-noout", "-text", "-in"])
                .arg(&pki.server_cert),
        )?;
        assert!(text.contains("TLS Web Server Authentication"), "{text}");
        assert!(pki.ca_pem()?.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(pki.tls_crypt_text()?.contains("OpenVPN Static key V1"));
        for key in [&pki.ca_key, &pki.server_key, &pki.tls_crypt] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(key)?.permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{}", key.display());
        }
        let (cert, _key) = pki.issue_client_cert("alice")?;
        assert!(pki.issue_client_cert("../escape").is_err());
        run_cmd(
            Command::new("openssl")
                .args(["verify", "-purpose", "sslclient", "-CAfile"])
                .arg(&pki.ca_cert)
                .arg(&cert),
        )?;
        Ok(())
    }
}
