//! TLS of the listeners with in-process cores: the Service API over https with a given
//! certificate (clients trust it through a CA file), and the market over https with the
//! agent's self-signed certificate pinned by its offerings (a certificate with another key
//! is refused, naming the fingerprint mismatch; plain http to a pinned agent is refused).

use std::time::Duration;

use core_lite::market::{self, MarketClient};
use core_lite::server::{self, tls, ServerLimits};
use core_lite::testkit::{vpn_offering_input, TestCore};
use service_api::{Client, ClientKey, GetAccessRequest};

const T: Duration = Duration::from_secs(5);

#[tokio::test]
async fn service_api_over_https_with_a_ca_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let core = TestCore::start().await?;
    let (cert, key) = tls::self_signed(dir.path(), "127.0.0.1".parse()?)?;
    let (config, _) = tls::load_server_config(&cert, &key)?;
    let running = server::start_tls(
        core.core_arc(),
        "127.0.0.1:0".parse()?,
        Duration::from_millis(200),
        ServerLimits::default(),
        Some(config),
    )
    .await?;
    let url = format!("https://{}", running.addr);
    // Without the CA file the self-signed certificate is not trusted.
    let bare = Client::new(&url, core.create_client_token()?, T)?;
    let e = bare
        .get_access(&GetAccessRequest {
            client_key: ClientKey("c-nobody".into()),
        })
        .await
        .expect_err("untrusted certificate");
    assert!(!e.to_string().contains("no access message"), "{e}");
    // With it, the call goes through (and is answered by the core: no such key).
    service_api::tls::set_default_ca_file(cert.clone());
    let ok = Client::new(&url, core.create_client_token()?, T)?;
    let e = ok
        .get_access(&GetAccessRequest {
            client_key: ClientKey("c-nobody".into()),
        })
        .await
        .expect_err("unknown key");
    assert!(e.to_string().contains("c-nobody"), "{e}");
    running.stop().await?;
    Ok(())
}

#[tokio::test]
async fn the_market_pins_its_self_signed_key() -> anyhow::Result<()> {
    let agent = TestCore::start().await?;
    agent.register_vpn_module()?;
    let (pid, _) = agent.create_product("vpn-1", "192.0.2.1:1194")?;
    // What `serve` does for a market on a network address: a self-signed certificate whose
    // pin the offerings carry.
    let data = agent.core().data_dir().to_path_buf();
    let (cert, key) = tls::self_signed(&data, "127.0.0.1".parse()?)?;
    let (config, pin) = tls::load_server_config(&cert, &key)?;
    tls::set_pin(&data, Some(&pin))?;
    let hash = agent.publish_offering(&pid, &vpn_offering_input(1000, None))?;
    let signed = agent.core().show_offering(&hash)?;
    assert!(
        serde_json::to_string(&signed)?.contains(&pin),
        "offering without the pin"
    );
    let (_stop_tx, stop) = tokio::sync::watch::channel(false);
    let (addr, _task) = server::start_market(
        agent.core_arc(),
        "127.0.0.1:0".parse()?,
        ServerLimits::default(),
        Some(config.clone()),
        stop.clone(),
    )
    .await?;
    let client = TestCore::start().await?;
    client.register_vpn_module()?;
    let mc = MarketClient::new(T)?;
    let url = format!("https://{addr}");
    let report = market::fetch_offerings(client.core(), &mc, &url).await?;
    assert_eq!(report.accepted.len(), 1, "{report:?}");
    // Accept over the pinned connection, sealed to the client.
    let (_, ck) = market::accept_offering(client.core(), &mc, &hash, None).await?;
    let id = agent.channel(&ck.0)?.channel_id;
    let view = mc
        .channel(&url, Some(&pin), &id, &client.core().keys)
        .await?;
    assert_eq!(view.channel_id, id);

    // Another key on the same address: a man in the middle.
    let other = tempfile::tempdir()?;
    let (c2, k2) = tls::self_signed(other.path(), "127.0.0.1".parse()?)?;
    let (mitm_config, mitm_pin) = tls::load_server_config(&c2, &k2)?;
    let (mitm, _t) = server::start_market(
        agent.core_arc(),
        "127.0.0.1:0".parse()?,
        ServerLimits::default(),
        Some(mitm_config),
        stop.clone(),
    )
    .await?;
    let murl = format!("https://{mitm}");
    let e = market::fetch_offerings(client.core(), &mc, &murl)
        .await
        .expect_err("mitm");
    let text = e.to_string();
    assert!(
        text.contains("fingerprint mismatch") && text.contains(&pin) && text.contains(&mitm_pin),
        "{text}"
    );
    let e = mc
        .channel(&murl, Some(&pin), &id, &client.core().keys)
        .await
        .expect_err("pinned read through the mitm");
    assert!(e.to_string().contains("fingerprint mismatch"), "{e}");
    // Plain http for a pinned agent: refused before anything is sent.
    let (plain, _t) = server::start_market(
        agent.core_arc(),
        "127.0.0.1:0".parse()?,
        ServerLimits::default(),
        None,
        stop,
    )
    .await?;
    let e = mc
        .channel(
            &format!("http://{plain}"),
            Some(&pin),
            &id,
            &client.core().keys,
        )
        .await
        .expect_err("downgrade");
    assert!(e.to_string().contains("downgrade"), "{e}");
    Ok(())
}

/// The manual path: `access export --seal-to` and `access import` of the sealed file.
#[tokio::test]
async fn exported_access_sealed_to_a_client_imports_there_only() -> anyhow::Result<()> {
    let agent = TestCore::start().await?;
    agent.register_vpn_module()?;
    let (pid, _) = agent.create_product("vpn-1", "192.0.2.1:1194")?;
    let hash = agent.publish_offering(&pid, &vpn_offering_input(1000, None))?;
    let (channel, key) = agent.create_channel(&hash, None)?;
    let client = TestCore::start().await?;
    client.register_vpn_module()?;
    let other = TestCore::start().await?;
    other.register_vpn_module()?;
    let signed = agent.export_signed_access(&channel)?;
    let sealed = market::sealed::seal_access(
        &agent.core().keys,
        &signed,
        &client.core().seal_public_key()?,
    )?;
    let v = serde_json::to_value(&sealed)?;
    assert!(!v.to_string().contains(signed.access.password.expose()));
    assert!(other.core().import_access(&v, Some(&hash)).is_err());
    assert_eq!(client.core().import_access(&v, Some(&hash))?, key);
    Ok(())
}
