//! Issue 15: `GET /metrics` of an in-process core. It needs the metrics token or the admin
//! token; its values move with the requests, sessions, usage and status changes; it names no
//! client; both formats are served; and `promtool check metrics` (Debian's `prometheus`)
//! accepts every scrape.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use core_lite::testkit::prom::{promtool_check, value};
use core_lite::testkit::{vpn_offering_input, TestCore};
use service_api::{ClientKey, Secret, StartSessionRequest, UpdateSessionRequest};

fn must(text: &str, sample: &str) -> Result<f64> {
    value(text, sample).with_context(|| format!("no sample {sample} in\n{text}"))
}

struct Scraper {
    http: reqwest::Client,
    url: String,
}

impl Scraper {
    /// A scrape with `token` (and `accept`); the status, content type and body.
    async fn get(
        &self,
        token: Option<&str>,
        accept: Option<&str>,
    ) -> Result<(u16, String, String)> {
        let mut req = self.http.get(&self.url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Ok((status, ct, resp.text().await?))
    }

    /// A text-format scrape with the metrics token, checked by promtool.
    async fn scrape(&self, token: &str) -> Result<String> {
        let (status, _, text) = self.get(Some(token), None).await?;
        ensure!(status == 200, "scrape: {status} {text}");
        promtool_check(&text)?;
        Ok(text)
    }
}

#[tokio::test]
async fn metrics_need_a_token_move_with_the_traffic_and_pass_promtool() -> Result<()> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (product, product_token) = core.create_product("vpn-metrics", "192.0.2.1:1194")?;
    let offering = core.publish_offering(&product, &vpn_offering_input(100, Some(("8", "4"))))?;
    let (_, key) = core.create_channel(&offering, None)?;
    let key = key.0;
    let metrics_token = std::fs::read_to_string(core.data_dir.join("metrics.token"))?
        .trim()
        .to_string();
    let s = Scraper {
        http: reqwest::Client::new(),
        url: format!("{}/metrics", core.url),
    };

    // Who may scrape.
    let (status, _, _) = s.get(None, None).await?;
    ensure!(status == 401, "no token: {status}");
    let (status, _, _) = s.get(Some("not-a-token-at-all-1234"), None).await?;
    ensure!(status == 401, "unknown token: {status}");
    let (status, _, _) = s.get(Some(product_token.expose()), None).await?;
    ensure!(status == 403, "product token: {status}");
    let (status, _, _) = s.get(Some(core.admin_token.expose()), None).await?;
    ensure!(status == 200, "admin token: {status}");

    // Both formats: OpenMetrics for Prometheus, the text format for the rest.
    let (status, ct, om) = s
        .get(
            Some(&metrics_token),
            Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
        )
        .await?;
    ensure!(
        status == 200 && ct.starts_with("application/openmetrics-text"),
        "{status} {ct}"
    );
    ensure!(om.ends_with("# EOF\n"), "OpenMetrics without # EOF");
    let (_, ct, _) = s.get(Some(&metrics_token), None).await?;
    ensure!(ct.starts_with("text/plain; version=0.0.4"), "{ct}");

    let before = s.scrape(&metrics_token).await?;
    ensure!(must(&before, "core_lite_sessions_open{side=\"agent\"}")? == 0.0);
    ensure!(
        must(
            &before,
            "core_lite_channels{side=\"agent\",status=\"activating\"}"
        )? == 1.0
    );
    let activations = must(
        &before,
        "core_lite_status_changes_total{status=\"activating\"}",
    )?;
    ensure!(activations == 1.0, "activating changes: {activations}");
    ensure!(must(&before, "core_lite_storage_writable")? == 1.0);
    let commits = must(&before, "core_lite_storage_commit_duration_seconds_count")?;

    // A session with usage, through the Service API.
    let client = service_api::Client::new(
        &core.url,
        Secret(product_token.expose().to_string()),
        Duration::from_secs(10),
    )?;
    let started = client
        .start_session(&StartSessionRequest::new(
            ClientKey(key.clone()),
            Some("m-1"),
        ))
        .await?;
    for i in 1..=3u64 {
        client
            .update_session(&UpdateSessionRequest {
                session_id: started.session_id.clone(),
                bytes_in: i * 1_000_000,
                bytes_out: i * 500_000,
            })
            .await?;
    }
    // A refused call is counted under its code.
    let refused = client
        .update_session(&UpdateSessionRequest {
            session_id: service_api::SessionId("s-unknown".into()),
            bytes_in: 1,
            bytes_out: 1,
        })
        .await;
    ensure!(refused.is_err(), "an unknown session was accepted");

    let during = s.scrape(&metrics_token).await?;
    ensure!(
        must(
            &during,
            "core_lite_http_requests_total{operation=\"UpdateSession\",code=\"ok\"}"
        )? == 3.0
    );
    ensure!(
        must(
            &during,
            "core_lite_http_requests_total{operation=\"UpdateSession\",code=\"not_found\"}"
        )? == 1.0
    );
    ensure!(
        must(
            &during,
            "core_lite_http_requests_total{operation=\"StartSession\",code=\"ok\"}"
        )? == 1.0
    );
    ensure!(
        must(
            &during,
            "core_lite_http_request_duration_seconds_count{operation=\"UpdateSession\"}"
        )? == 4.0
    );
    ensure!(must(&during, "core_lite_sessions_open{side=\"agent\"}")? == 1.0);
    ensure!(
        must(
            &during,
            "core_lite_channels{side=\"agent\",status=\"active\"}"
        )? == 1.0
    );
    ensure!(
        must(
            &during,
            "core_lite_channels{side=\"agent\",status=\"activating\"}"
        )? == 0.0
    );
    ensure!(must(&during, "core_lite_usage_bytes_total{side=\"agent\"}")? == 4_500_000.0);
    ensure!(must(&during, "core_lite_status_changes_total{status=\"active\"}")? == 1.0);
    ensure!(
        must(
            &during,
            "core_lite_status_changes_total{status=\"activating\"}"
        )? == 1.0
    );
    ensure!(must(&during, "core_lite_storage_commit_duration_seconds_count")? > commits);

    // Terminated by hand: the status change and the gauges follow; the session closes.
    core.set_channel_status(&key, service_api::ServiceStatus::Terminating, "test")?;
    client
        .stop_session(&service_api::StopSessionRequest {
            session_id: started.session_id.clone(),
            bytes_in: 3_000_000,
            bytes_out: 1_500_000,
        })
        .await?;
    let after = s.scrape(&metrics_token).await?;
    ensure!(must(&after, "core_lite_sessions_open{side=\"agent\"}")? == 0.0);
    ensure!(
        must(
            &after,
            "core_lite_channels{side=\"agent\",status=\"terminated\"}"
        )? == 1.0
    );
    ensure!(
        must(
            &after,
            "core_lite_status_changes_total{status=\"terminating\"}"
        )? == 1.0
    );
    ensure!(
        must(
            &after,
            "core_lite_status_changes_total{status=\"terminated\"}"
        )? == 1.0
    );
    // Counted incrementally: a later scrape does not count the same rows again.
    let again = s.scrape(&metrics_token).await?;
    ensure!(must(&again, "core_lite_status_changes_total{status=\"active\"}")? == 1.0);

    // Nothing names a client.
    for text in [&before, &during, &after, &om] {
        ensure!(!text.contains(&key), "a client key in the metrics");
        ensure!(
            !text.contains(started.session_id.0.as_str()),
            "a session id in the metrics"
        );
    }
    Ok(())
}

#[tokio::test]
async fn payments_and_the_market_api_are_counted() -> Result<()> {
    use core_lite::market::{self, signed_cheque, MarketClient};
    let agent = TestCore::start().await?;
    agent.register_vpn_module()?;
    let (product, _) = agent.create_product("vpn-pay", "192.0.2.1:1194")?;
    let mut input = vpn_offering_input(1000, Some(("8", "4")));
    input["billingType"] = "postpaid".into();
    input["billingInterval"] = 5.into();
    input["maxBillingUnitLag"] = 5.into();
    let offering = agent.publish_offering(&product, &input)?;
    let market_url = agent.start_market().await?;
    let client = TestCore::start().await?;
    client.register_vpn_module()?;
    let mc = MarketClient::new(Duration::from_secs(5))?;
    market::fetch_offerings(client.core(), &mc, &market_url).await?;
    let (_, key) = market::accept_offering(client.core(), &mc, &offering, Some(5_000_000)).await?;
    let remote = agent.channel(&key.0)?.channel_id;
    let ck = &client.core().keys;
    mc.cheque(&market_url, None, &signed_cheque(ck, &remote, 1_000_000)?)
        .await?;
    let replayed = mc
        .cheque(&market_url, None, &signed_cheque(ck, &remote, 1_000_000)?)
        .await;
    ensure!(replayed.is_err(), "a replayed cheque was accepted");

    let s = Scraper {
        http: reqwest::Client::new(),
        url: format!("{}/metrics", agent.url),
    };
    let token = std::fs::read_to_string(agent.data_dir.join("metrics.token"))?
        .trim()
        .to_string();
    let text = s.scrape(&token).await?;
    ensure!(
        must(&text, "core_lite_cheques_total{side=\"agent\"}")? == 1.0,
        "{text}"
    );
    ensure!(
        must(&text, "core_lite_paid_base_units_total{side=\"agent\"}")? == 1_000_000.0,
        "{text}"
    );
    // The market API's requests are counted too, by route and outcome.
    ensure!(
        must(
            &text,
            "core_lite_http_requests_total{operation=\"/market/v1/cheque\",code=\"ok\"}"
        )? == 1.0,
        "{text}"
    );
    ensure!(
        must(
            &text,
            "core_lite_http_requests_total{operation=\"/market/v1/cheque\",code=\"conflict\"}"
        )? == 1.0,
        "{text}"
    );
    ensure!(
        must(
            &text,
            "core_lite_http_requests_total{operation=\"/market/v1/accept\",code=\"ok\"}"
        )? == 1.0,
        "{text}"
    );
    ensure!(!text.contains(&remote), "a channel id in the metrics");
    Ok(())
}
