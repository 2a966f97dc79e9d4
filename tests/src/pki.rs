//! A throw-away PKI made with the `openssl` and `openvpn` command line tools (EC P-256, so
//! it takes a fraction of a second).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};

use crate::env::TestEnv;
use crate::netns::run_cmd;

const OPENSSL_CNF: &str = "\
[req]
distinguished_name = dn
prompt = no
[dn]
CN = e2e
[v3_ca]
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign
subjectKeyIdentifier = hash
[v3_server]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = serverAuth
nsCertType = server
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[v3_client]
basicConstraints = CA:FALSE
keyUsage = critical,digitalSignature,keyAgreement
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Validity of the generated certificates.
const DAYS: &str = "3";

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
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let cnf = dir.join("openssl.cnf");
        std::fs::write(&cnf, OPENSSL_CNF).with_context(|| format!("writing {}", cnf.display()))?;
        let pki = Pki {
            dir: dir.to_path_buf(),
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            tls_crypt: dir.join("tls-crypt.key"),
            tls_auth: dir.join("tls-auth.key"),
        };
        gen_ec_key(&pki.ca_key)?;
        run_cmd(
            Command::new("openssl")
                .args(["req", "-x509", "-new", "-config"])
                .arg(&cnf)
                .args(["-extensions", "v3_ca", "-key"])
                .arg(&pki.ca_key)
                .args(["-sha256", "-days", DAYS, "-subj", "/CN=e2e-test-ca", "-out"])
                .arg(&pki.ca_cert),
        )?;
        pki.issue(
            &cnf,
            "server",
            "v3_server",
            &pki.server_key,
            &pki.server_cert,
        )?;
        run_cmd(
            Command::new("openvpn")
                .args(["--genkey", "tls-crypt"])
                .arg(&pki.tls_crypt),
        )?;
        run_cmd(
            Command::new("openvpn")
                .args(["--genkey", "secret"])
                .arg(&pki.tls_auth),
        )?;
        for key in [&pki.tls_crypt, &pki.tls_auth] {
            restrict(key)?;
        }
        Ok(pki)
    }

    /// Issues a client certificate (clientAuth EKU) with common name `cn`; returns
    /// (certificate, key) paths.
    pub fn issue_client_cert(&self, cn: &str) -> Result<(PathBuf, PathBuf)> {
        let cert = self.dir.join(format!("client-{cn}.crt"));
        let key = self.dir.join(format!("client-{cn}.key"));
        self.issue(&self.dir.join("openssl.cnf"), cn, "v3_client", &key, &cert)?;
        Ok((cert, key))
    }

    fn issue(&self, cnf: &Path, cn: &str, ext: &str, key: &Path, cert: &Path) -> Result<()> {
        gen_ec_key(key)?;
        let csr = cert.with_extension("csr");
        run_cmd(
            Command::new("openssl")
                .args(["req", "-new", "-config"])
                .arg(cnf)
                .arg("-key")
                .arg(key)
                .args(["-subj", &format!("/CN={cn}"), "-out"])
                .arg(&csr),
        )?;
        let serial = format!("0x{:016x}", rand_serial());
        run_cmd(
            Command::new("openssl")
                .args(["x509", "-req", "-sha256", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&self.ca_cert)
                .arg("-CAkey")
                .arg(&self.ca_key)
                .args(["-set_serial", &serial, "-days", DAYS, "-extfile"])
                .arg(cnf)
                .args(["-extensions", ext, "-out"])
                .arg(cert),
        )?;
        Ok(())
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

fn gen_ec_key(path: &Path) -> Result<()> {
    run_cmd(
        Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(path),
    )?;
    restrict(path)
}

fn restrict(path: &Path) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))
}

/// A serial that differs between certificates of one run (uniqueness, not secrecy).
fn rand_serial() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() >> 1
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
        let (cert, _key) = pki.issue_client_cert("alice")?;
        run_cmd(
            Command::new("openssl")
                .args(["verify", "-purpose", "sslclient", "-CAfile"])
                .arg(&pki.ca_cert)
                .arg(&cert),
        )?;
        Ok(())
    }
}
