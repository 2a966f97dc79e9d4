//! Issue 15: the web console in a real browser (headless Chromium through WebDriver) against
//! the `core-lite` binary on loopback.
//!
//! Shown here: nothing is shown or served without the admin token, and every console answer
//! carries a CSP that forbids remote loads; signing in with the token; another module's
//! template (its own fields, `ui:order`, radio, textarea, hidden field) gets its own form;
//! publishing an
//! offering through the form generated from the module's template — first with a wrong
//! value, whose error appears by its field, then fixed — and seeing it listed; a channel's
//! page whose usage plot grows while the test reports usage through the Service API.
//! Screenshots are saved under `target/test-artifacts/console/` (the path is printed).

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use e2e::adapters::vpn_module_dir;
use e2e::webdriver::{artifacts_dir, free_port, Browser};
use e2e::*;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(20);

/// A Service API or admin call with a bearer token; the JSON answer and its status.
fn call(
    http: &reqwest::blocking::Client,
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> Result<(u16, Value)> {
    let mut req = http.request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().with_context(|| format!("calling {url}"))?;
    let status = resp.status().as_u16();
    let text = resp.text()?;
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    ))
}

#[test]
fn console_publishes_an_offering_and_plots_a_channel() -> Result<()> {
    let Some(env) = TestEnv::with_bins("console_browser", &["core-lite"])? else {
        return Ok(());
    };
    let leaks = env.leak_checker();
    console_session(&env)?;
    // Chromium, chromedriver and the core are gone.
    leaks.wait_clean(WAIT)?;
    Ok(())
}

fn console_session(env: &TestEnv) -> Result<()> {
    let Some(browser) = Browser::start(env)? else {
        return Ok(());
    };
    let shots = artifacts_dir("console");
    let core = CoreLite::new(env, "console-core")?;
    core.cli(&["module", "register", &vpn_module_dir()?])?;
    let token_file = env.path("product.token");
    core.cli(&[
        "product",
        "create",
        "--name",
        "vpn-console",
        "--module",
        "vpn",
        "--endpoint",
        "192.0.2.10:1194",
        "--token-out",
        token_file.to_str().context("path")?,
    ])?;
    let product_token = std::fs::read_to_string(&token_file)?.trim().to_string();
    let demo = demo_module(env)?;
    core.cli(&["module", "register", demo.to_str().context("path")?])?;
    core.cli(&["product", "create", "--name", "demo-1", "--module", "demo"])?;
    let admin = core.admin_token()?;
    let listen: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()?).parse()?;
    // Buckets of 2 s so that the plot grows within the test.
    let _serve = core.serve_with(env, None, listen, &["--usage-bucket-secs", "2"])?;
    let base = format!("http://{listen}");
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;

    // Without the token: the page is an empty shell (with its CSP), the data is refused.
    let page = http.get(format!("{base}/ui/")).send()?;
    let csp = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    ensure!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "CSP {csp:?}"
    );
    let shell = page.text()?;
    ensure!(
        !shell.contains("http://") && !shell.contains("https://"),
        "the page names a remote URL"
    );
    for path in ["offerings", "products", "channels", "modules"] {
        let (status, _) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/v1/admin/{path}"),
            None,
            None,
        )?;
        ensure!(status == 401, "/v1/admin/{path} without a token: {status}");
        let (status, _) = call(
            &http,
            reqwest::Method::GET,
            &format!("{base}/v1/admin/{path}"),
            Some(&product_token),
            None,
        )?;
        ensure!(
            status == 403,
            "/v1/admin/{path} with a product token: {status}"
        );
    }

    // Sign in.
    browser.goto(&format!("{base}/ui/"))?;
    browser.wait_for("#login:not([hidden]) #token", WAIT)?;
    browser.fill("#token", "not-the-token-0123456789")?;
    browser.click(&browser.wait_for("#login-submit", WAIT)?)?;
    let refused = browser.wait_for("#login-error:not([hidden])", WAIT)?;
    ensure!(
        browser.text(&refused)?.contains("refused"),
        "a wrong token: {}",
        browser.text(&refused)?
    );
    browser.screenshot(&shots.join("1-sign-in.png"))?;
    browser.fill("#token", &admin)?;
    browser.click(&browser.wait_for("#login-submit", WAIT)?)?;
    browser.wait_for("table#offerings", WAIT)?;

    // Another module's template gets its own form, with no code change: its fields, the
    // uiSchema's order and widgets.
    browser.goto(&format!("{base}/ui/#/offerings/new"))?;
    browser.wait_for("form.schema-form", WAIT)?;
    browser.exec(
        "const s = document.getElementById('product'); \
         s.value = [...s.options].find((o) => o.text.startsWith('demo-1')).value; \
         s.dispatchEvent(new Event('change'));",
    )?;
    browser.wait_for("[data-pointer=\"/plan\"] input[type=radio]", WAIT)?;
    let order = browser.exec(
        "return [...document.querySelectorAll('form.schema-form > .field')] \
         .map((f) => f.dataset.pointer)",
    )?;
    ensure!(
        order == json!(["/plan", "/seats", "/serviceName", "/notes"]),
        "the demo form's fields: {order}"
    );
    ensure!(
        !browser
            .find_all("[data-pointer=\"/notes\"] textarea")?
            .is_empty()
            && !browser
                .find_all("details.hidden-fields [data-pointer=\"/secretCode\"]")?
                .is_empty()
            && browser
                .find_all("[data-pointer=\"/seats\"] input[type=number][step=\"1\"]")?
                .len()
                == 1,
        "the demo form's widgets: {}",
        browser.page_text()?
    );

    // The VPN module's form: a wrong value first.
    browser.goto(&format!("{base}/ui/#/offerings"))?;
    browser.click(&browser.wait_for("#new-offering", WAIT)?)?;
    browser.wait_for("form.schema-form", WAIT)?;
    browser.exec(
        "const s = document.getElementById('product'); \
         s.value = [...s.options].find((o) => o.text.startsWith('vpn-console')).value; \
         s.dispatchEvent(new Event('change'));",
    )?;
    browser.wait_for("[data-pointer=\"/maxUnits\"]", WAIT)?;
    // The core fills these in: the form does not ask for them.
    for f in ["templateHash", "nonce", "agentPublicKey", "product"] {
        ensure!(
            browser
                .find_all(&format!("[data-pointer=\"/{f}\"]"))?
                .is_empty(),
            "the form asks for /{f}"
        );
    }
    // The uiSchema's help says minutes for the time limits, the schema seconds: seconds.
    let suspend = browser.wait_for("[data-pointer=\"/maxSuspendTime\"]", WAIT)?;
    let suspend_text = browser.text(&suspend)?;
    ensure!(
        suspend_text.contains("seconds") && !suspend_text.contains("minutes"),
        "maxSuspendTime: {suspend_text:?}"
    );
    let fields = [
        ("/supply", "0"),
        ("/unitName", "MB"),
        ("/unitPrice", "0.0001"),
        ("/minUnits", "1"),
        ("/maxUnits", "1000"),
        ("/billingInterval", "10"),
        ("/maxBillingUnitLag", "50"),
        ("/freeUnits", "0"),
        ("/setupPrice", "0"),
        ("/maxSuspendTime", "3600"),
        ("/maxInactiveTime", "86400"),
        ("/country", "DE"),
    ];
    for (pointer, value) in fields {
        browser.fill(&format!("[name=\"{pointer}\"]"), value)?;
    }
    browser.exec(
        "const s = document.querySelector('[name=\"/billingType\"]'); \
         s.value = 'prepaid'; s.dispatchEvent(new Event('change'));",
    )?;
    // The speeds are under additionalParams, which the template hides: in the collapsed part.
    browser.exec("document.querySelector('details.hidden-fields').open = true")?;
    for (pointer, value) in [
        ("/additionalParams/minDownloadSpeed", "1"),
        ("/additionalParams/maxDownloadSpeed", "8"),
        ("/additionalParams/minUploadSpeed", "1"),
        ("/additionalParams/maxUploadSpeed", "4"),
    ] {
        browser.fill(&format!("[name=\"{pointer}\"]"), value)?;
    }
    browser.click(&browser.wait_for("#publish", WAIT)?)?;
    let error = browser.wait_for(".field[data-pointer=\"/supply\"] .field-error", WAIT)?;
    let message = browser.text(&error)?;
    ensure!(!message.is_empty(), "an empty error by /supply");
    ensure!(
        browser.find_all(".field.invalid")?.len() == 1,
        "only /supply is marked: {}",
        browser.page_text()?
    );
    browser.screenshot(&shots.join("2-offering-form-error.png"))?;
    let (_, listed) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}/v1/admin/offerings"),
        Some(&admin),
        None,
    )?;
    ensure!(
        listed.as_array().is_some_and(Vec::is_empty),
        "a refused offering was stored: {listed}"
    );

    // Fixed: published and listed.
    browser.fill("[name=\"/supply\"]", "5")?;
    browser.click(&browser.wait_for("#publish", WAIT)?)?;
    let row = browser.wait_for("table#offerings tr.highlight", WAIT)?;
    let hash = browser
        .attr(&row, "data-hash")?
        .context("the new offering's row has no hash")?;
    let (_, listed) = call(
        &http,
        reqwest::Method::GET,
        &format!("{base}/v1/admin/offerings"),
        Some(&admin),
        None,
    )?;
    let stored = listed
        .as_array()
        .and_then(|a| a.iter().find(|o| o["offeringHash"] == hash.as_str()))
        .with_context(|| format!("offering {hash} not stored: {listed}"))?;
    ensure!(
        stored.pointer("/signed/offering/supply") == Some(&json!(5))
            && stored.pointer("/signed/offering/additionalParams/maxDownloadSpeed")
                == Some(&json!("8")),
        "stored offering: {stored}"
    );
    browser.screenshot(&shots.join("3-offerings.png"))?;

    // A channel and a session; usage reported through the Service API while the page is open.
    let created = core.cli(&["channel", "create", "--offering", &hash])?;
    let channel = created["channelId"]
        .as_str()
        .context("channelId")?
        .to_string();
    let key = created["clientKey"]
        .as_str()
        .context("clientKey")?
        .to_string();
    let (status, started) = call(
        &http,
        reqwest::Method::POST,
        &format!("{base}/v1/StartSession"),
        Some(&product_token),
        Some(
            json!({"clientKey": key, "connectionId": "console-1", "clientAddr": "198.51.100.7:5000", "vpnAddr": "10.8.0.6"}),
        ),
    )?;
    ensure!(status == 200, "StartSession: {status} {started}");
    let session = started["sessionId"]
        .as_str()
        .context("sessionId")?
        .to_string();
    browser.goto(&format!("{base}/ui/#/channels/{channel}"))?;
    browser.wait_for("#usage-chart svg", WAIT)?;
    browser.wait_for("table#sessions td", WAIT)?;

    // Read in one script: the page redraws the chart (a new <svg>) every 2 s.
    let plotted = |b: &Browser| -> Result<(usize, f64)> {
        let v = b.exec(
            "const s = document.querySelector('#usage-chart svg'); \
             return s ? [s.dataset.points, s.dataset.last] : ['0', '0'];",
        )?;
        let field = |i: usize| v[i].as_str().unwrap_or("0").to_string();
        Ok((
            field(0).parse().unwrap_or(0),
            field(1).parse().unwrap_or(0.0),
        ))
    };
    let (mut bytes_in, mut bytes_out) = (0u64, 0u64);
    let mut seen: Vec<(usize, f64)> = Vec::new();
    for _ in 0..12 {
        bytes_in += 3_000_000;
        bytes_out += 1_000_000;
        let (status, answer) = call(
            &http,
            reqwest::Method::POST,
            &format!("{base}/v1/UpdateSession"),
            Some(&product_token),
            Some(json!({"sessionId": session, "bytesIn": bytes_in, "bytesOut": bytes_out})),
        )?;
        ensure!(status == 200, "UpdateSession: {status} {answer}");
        std::thread::sleep(Duration::from_millis(1000));
        let now = plotted(&browser)?;
        if seen.last() != Some(&now) {
            seen.push(now);
        }
    }
    let total_mb = (bytes_in + bytes_out) as f64 / 1e6;
    let final_plot = browser.wait_until("the plot shows all usage reported", WAIT, |b| {
        let p = plotted(b)?;
        Ok(((p.1 - total_mb).abs() < 1e-6).then_some(p))
    })?;
    seen.push(final_plot);
    ensure!(
        seen.windows(2).all(|w| w[1].1 >= w[0].1),
        "the plotted usage went down: {seen:?}"
    );
    let grew = seen.windows(2).filter(|w| w[1].1 > w[0].1).count();
    ensure!(
        grew >= 2 && final_plot.0 >= 2,
        "the plot did not grow while usage was reported: {seen:?}"
    );
    let summary = browser.text(&browser.wait_for("#channel-summary", WAIT)?)?;
    ensure!(
        summary.contains(&format!("{} bytes", bytes_in + bytes_out)) && summary.contains("active"),
        "channel summary: {summary}"
    );
    browser.screenshot(&shots.join("4-channel.png"))?;

    // Signing out forgets the token.
    browser.click(&browser.wait_for("#logout", WAIT)?)?;
    browser.wait_for("#login:not([hidden])", WAIT)?;
    let stored_token = browser.exec("return sessionStorage.getItem('core-lite.adminToken')")?;
    ensure!(stored_token.is_null(), "token kept after sign-out");
    eprintln!("console screenshots: {}", shots.display());
    Ok(())
}

/// A module with a template of its own (not the VPN's): other fields, a `ui:order`, a radio
/// group, a textarea, a hidden field.
fn demo_module(env: &TestEnv) -> Result<std::path::PathBuf> {
    let dir = env.path("demo-module");
    std::fs::create_dir_all(&dir)?;
    let offering = json!({
        "schema": {
            "title": "Demo seats",
            "type": "object",
            "properties": {
                "serviceName": {"title": "service", "type": "string"},
                "notes": {"title": "notes", "type": "string"},
                "plan": {"title": "plan", "type": "string", "enum": ["basic", "pro"]},
                "seats": {"title": "seats", "type": "integer", "description": "How many users"},
                "secretCode": {"title": "secret code", "type": "string"}
            },
            "required": ["serviceName", "plan", "seats"]
        },
        "uiSchema": {
            "ui:order": ["plan", "seats", "*"],
            "plan": {"ui:widget": "radio", "ui:help": "basic or pro"},
            "notes": {"ui:widget": "textarea"},
            "secretCode": {"ui:widget": "hidden"}
        }
    });
    std::fs::write(
        dir.join("offering.json"),
        serde_json::to_vec_pretty(&offering)?,
    )?;
    let mut access: Value = serde_json::from_str(&std::fs::read_to_string(
        std::path::Path::new(&vpn_module_dir()?).join("access.json"),
    )?)?;
    access["title"] = json!("Demo access message");
    std::fs::write(dir.join("access.json"), serde_json::to_vec_pretty(&access)?)?;
    std::fs::write(
        dir.join("module.toml"),
        "name = \"demo\"\nversion = \"0.1.0\"\noffering_template = \"offering.json\"\naccess_template = \"access.json\"\n",
    )?;
    Ok(dir)
}
