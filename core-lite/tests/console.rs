//! Issue 15: the web console's server side on an in-process core: the page and its assets
//! (embedded, with a CSP that forbids remote loads), the admin endpoints (admin token only),
//! publishing with field errors by JSON pointer, and a channel's sessions and usage series.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use core_lite::service::now_ms;
use core_lite::testkit::{vpn_offering_input, TestCore};
use serde_json::{json, Value};
use service_api::{ClientKey, Secret, StartSessionRequest, UpdateSessionRequest};

async fn get(http: &reqwest::Client, url: &str, token: Option<&str>) -> Result<(u16, Value)> {
    let mut req = http.get(url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    Ok((status, resp.json().await.unwrap_or(Value::Null)))
}

#[tokio::test]
async fn console_page_and_admin_endpoints() -> Result<()> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (product, product_token) = core.create_product("vpn-ui", "192.0.2.1:1194")?;
    let admin = core.admin_token.expose().to_string();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;

    // The page: embedded, same origin only.
    let r = http.get(format!("{}/ui", core.url)).send().await?;
    ensure!(r.status().is_redirection(), "/ui: {}", r.status());
    for (path, kind) in [
        ("/ui/", "text/html"),
        ("/ui/app.js", "text/javascript"),
        ("/ui/form.js", "text/javascript"),
        ("/ui/chart.js", "text/javascript"),
        ("/ui/app.css", "text/css"),
    ] {
        let r = http.get(format!("{}{path}", core.url)).send().await?;
        ensure!(r.status() == 200, "{path}: {}", r.status());
        let h = r.headers().clone();
        let header = |n: &str| {
            h.get(n)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string()
        };
        ensure!(header("content-type").starts_with(kind), "{path}: {h:?}");
        let csp = header("content-security-policy");
        ensure!(
            csp.contains("default-src 'none'")
                && csp.contains("script-src 'self'")
                && csp.contains("connect-src 'self'")
                && csp.contains("frame-ancestors 'none'"),
            "{path}: CSP {csp:?}"
        );
        ensure!(header("x-content-type-options") == "nosniff", "{path}");
        // Nothing is loaded from elsewhere (the SVG namespace is a name, not a load).
        let body = r.text().await?.replace("http://www.w3.org/2000/svg", "");
        ensure!(
            !body.contains("http://") && !body.contains("https://") && !body.contains("//cdn"),
            "{path} names a remote URL"
        );
    }

    // The admin endpoints: the admin token only.
    for path in ["modules", "products", "offerings", "channels"] {
        let url = format!("{}/v1/admin/{path}", core.url);
        ensure!(
            get(&http, &url, None).await?.0 == 401,
            "{path} without a token"
        );
        ensure!(
            get(&http, &url, Some(product_token.expose())).await?.0 == 403,
            "{path} with a product token"
        );
        ensure!(get(&http, &url, Some(&admin)).await?.0 == 200, "{path}");
    }
    let (_, modules) = get(
        &http,
        &format!("{}/v1/admin/modules", core.url),
        Some(&admin),
    )
    .await?;
    let vpn = &modules[0];
    ensure!(vpn["module"] == "vpn", "{modules}");
    ensure!(
        vpn.pointer("/offeringTemplate/schema/properties/supply")
            .is_some()
            && vpn
                .pointer("/offeringTemplate/uiSchema/supply/ui:help")
                .is_some(),
        "the template is not served whole: {vpn}"
    );
    ensure!(
        vpn["coreFilled"] == json!(["templateHash", "nonce", "agentPublicKey", "product"]),
        "{vpn}"
    );

    // Publishing: every bad field by its JSON pointer, nothing stored; then stored.
    let publish = |offering: Value| {
        let http = http.clone();
        let url = format!("{}/v1/admin/offerings", core.url);
        let admin = admin.clone();
        let product = product.clone();
        async move {
            let r = http
                .post(url)
                .bearer_auth(admin)
                .json(&json!({ "product": product, "offering": offering }))
                .send()
                .await?;
            let status = r.status().as_u16();
            Ok::<_, anyhow::Error>((status, r.json::<Value>().await?))
        }
    };
    let mut bad = vpn_offering_input(100, Some(("8", "4")));
    bad["supply"] = json!(0);
    bad["country"] = json!("Germany");
    bad["additionalParams"]["maxDownloadSpeed"] = json!("fast");
    let (status, body) = publish(bad).await?;
    ensure!(status == 422, "{status} {body}");
    ensure!(
        body.pointer("/error/code") == Some(&json!("invalid")),
        "{body}"
    );
    let pointers: Vec<&str> = body
        .pointer("/error/fields")
        .and_then(Value::as_array)
        .context("no fields")?
        .iter()
        .filter_map(|f| f["pointer"].as_str())
        .collect();
    for p in ["/supply", "/country", "/additionalParams/maxDownloadSpeed"] {
        ensure!(pointers.contains(&p), "{p} not named: {body}");
    }
    let (_, listed) = get(
        &http,
        &format!("{}/v1/admin/offerings", core.url),
        Some(&admin),
    )
    .await?;
    ensure!(listed == json!([]), "stored although refused: {listed}");
    let (status, body) = publish(vpn_offering_input(100, Some(("8", "4")))).await?;
    ensure!(status == 200, "{status} {body}");
    let hash = body["offeringHash"]
        .as_str()
        .context("offeringHash")?
        .to_string();
    let (_, listed) = get(
        &http,
        &format!("{}/v1/admin/offerings", core.url),
        Some(&admin),
    )
    .await?;
    ensure!(listed[0]["offeringHash"] == hash.as_str(), "{listed}");

    // A channel with a session and usage: its sessions and its usage series.
    let (channel, key) = core.create_channel(&hash, None)?;
    let client = service_api::Client::new(
        &core.url,
        Secret(product_token.expose().to_string()),
        Duration::from_secs(10),
    )?;
    let started = client
        .start_session(&StartSessionRequest::new(
            ClientKey(key.0.clone()),
            Some("ui-1"),
        ))
        .await?;
    for i in 1..=4u64 {
        client
            .update_session(&UpdateSessionRequest {
                session_id: started.session_id.clone(),
                bytes_in: i * 2_000_000,
                bytes_out: i * 1_000_000,
            })
            .await?;
    }
    core.core().flush_usage_series(now_ms(), true)?;
    let base = format!("{}/v1/admin/channels/{channel}", core.url);
    let (status, usage) = get(&http, &format!("{base}/usage"), Some(&admin)).await?;
    ensure!(status == 200, "{status} {usage}");
    ensure!(usage["widthMs"] == 60_000, "{usage}");
    let buckets = usage["buckets"].as_array().context("buckets")?;
    let sum = |k: &str| buckets.iter().filter_map(|b| b[k].as_u64()).sum::<u64>();
    ensure!(
        sum("bytesIn") == 8_000_000 && sum("bytesOut") == 4_000_000,
        "the series does not add up to the usage: {usage}"
    );
    // Written again (nothing new): nothing doubles.
    core.core().flush_usage_series(now_ms(), true)?;
    let (_, again) = get(&http, &format!("{base}/usage"), Some(&admin)).await?;
    ensure!(again["buckets"] == usage["buckets"], "{again} vs {usage}");
    let (status, sessions) = get(&http, &format!("{base}/sessions"), Some(&admin)).await?;
    ensure!(status == 200, "{status} {sessions}");
    ensure!(
        sessions[0]["sessionId"] == started.session_id.0.as_str()
            && sessions[0]["bytesIn"] == 8_000_000
            && sessions[0]["stoppedAtMs"].is_null(),
        "{sessions}"
    );
    let (status, _) = get(
        &http,
        &format!("{}/v1/admin/channels/ch-none/usage", core.url),
        Some(&admin),
    )
    .await?;
    ensure!(status == 404, "unknown channel: {status}");
    let (_, channels) = get(
        &http,
        &format!("{}/v1/admin/channels", core.url),
        Some(&admin),
    )
    .await?;
    ensure!(channels[0]["channelId"] == channel.as_str(), "{channels}");
    Ok(())
}
