//! `adapter-server push-config` (the binary) against an in-process core.

mod common;

use common::fixture;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_config_binary_sets_product_config() -> anyhow::Result<()> {
    let f = fixture(None).await?;
    let dir = tempfile::tempdir()?;
    let ca = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
    let ta = "-----BEGIN OpenVPN Static key V1-----\nabcd\n-----END OpenVPN Static key V1-----\n";
    std::fs::write(dir.path().join("ca.crt"), ca)?;
    std::fs::write(dir.path().join("ta.key"), ta)?;
    std::fs::write(
        dir.path().join("server.key"),
        "-----BEGIN PRIVATE KEY-----\nsecret\n-----END PRIVATE KEY-----\n",
    )?;
    let conf = dir.path().join("server.conf");
    std::fs::write(
        &conf,
        "proto tcp-server\nport 443\ndev tun\ncipher AES-256-GCM\nca ca.crt\ncert server.crt\nkey server.key\ntls-auth ta.key 0\n",
    )?;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{}\n", f.token.expose()))?;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_adapter-server"))
        .arg(format!("--core-url={}", f.core.url))
        .arg(format!("--token-file={}", token_file.display()))
        .arg("push-config")
        .arg(format!("--server-config={}", conf.display()))
        .arg("--endpoint=vpn.example.net:443")
        .env_clear()
        .output()
        .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    assert_eq!(stdout["changed"], true);
    let p = f.core.core().show_product("vpn-test")?;
    let get = |k: &str| p.config.get(k).cloned().unwrap_or_default();
    assert_eq!(get("proto"), "tcp");
    assert_eq!(get("port"), "443");
    assert_eq!(get("cipher"), "AES-256-GCM");
    assert_eq!(get("ca"), ca);
    assert_eq!(get("tlsAuth"), ta);
    assert_eq!(get("keyDirection"), "1");
    assert_eq!(get("serviceEndpointAddress"), "vpn.example.net:443");
    assert!(
        !p.config.values().any(|v| v.contains("PRIVATE KEY")),
        "private key exported"
    );
    // The access message carries it to the client.
    let access = f.core.export_access(&f.channel_id)?;
    assert_eq!(
        access.additional_params.get("port").map(String::as_str),
        Some("443")
    );

    // Unreadable config: clear error, nonzero exit, nothing sent.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_adapter-server"))
        .arg(format!("--core-url={}", f.core.url))
        .arg(format!("--token-file={}", token_file.display()))
        .arg("push-config")
        .arg("--server-config=/nonexistent/server.conf")
        .env_clear()
        .output()
        .await?;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/server.conf"));
    Ok(())
}
