//! The server and its OpenAPI document refuse exactly the same requests (issue 11 items 9
//! and 10): each case is sent over real HTTP to a real core, and the same body is checked
//! against the schema the served `/openapi.json` gives for it.

use core_lite::testkit::{vpn_offering_input, TestCore};
use serde_json::{json, Value};
use service_api::{ClientKey, Secret, MAX_BYTE_COUNT};

struct Setup {
    core: TestCore,
    product_token: Secret,
    client_token: Secret,
    key: ClientKey,
    password: Secret,
    http: reqwest::Client,
    doc: Value,
}

async fn setup() -> anyhow::Result<Setup> {
    let core = TestCore::start().await?;
    core.register_vpn_module()?;
    let (pid, product_token) = core.create_product("vpn-1", "192.0.2.1:1194")?;
    let offering = core.publish_offering(&pid, &vpn_offering_input(1000, Some(("8", "4"))))?;
    let (_, key) = core.create_channel(&offering, None)?;
    let access = core.export_access(&key.0)?;
    core.import_access(&access)?;
    let client_token = core.create_client_token()?;
    let http = reqwest::Client::new();
    let doc = http
        .get(format!("{}/openapi.json", core.url))
        .send()
        .await?
        .json()
        .await?;
    Ok(Setup {
        core,
        product_token,
        client_token,
        key,
        password: access.password,
        http,
        doc,
    })
}

impl Setup {
    /// POSTs `body` (bytes as given) with an optional Content-Type; (HTTP status, JSON body).
    async fn post(
        &self,
        op: &str,
        token: &Secret,
        content_type: Option<&str>,
        body: &str,
    ) -> anyhow::Result<(u16, Value)> {
        let mut rq = self
            .http
            .post(format!("{}/v1/{op}", self.core.url))
            .bearer_auth(token.expose())
            .body(body.to_string());
        if let Some(t) = content_type {
            rq = rq.header("content-type", t);
        }
        let resp = rq.send().await?;
        let status = resp.status().as_u16();
        let text = resp.text().await?;
        let v = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{op}: non-JSON answer {text:?}: {e}"))?;
        Ok((status, v))
    }

    async fn json(&self, op: &str, token: &Secret, body: &str) -> anyhow::Result<(u16, Value)> {
        self.post(op, token, Some("application/json"), body).await
    }

    /// Whether the served document's request schema of `op` accepts `body`.
    fn documented_valid(&self, op: &str, body: &str) -> bool {
        let path = format!("/v1/{op}");
        let schema_ref = &self.doc["paths"][&path]["post"]["requestBody"]["content"]
            ["application/json"]["schema"]["$ref"];
        let schema = json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": schema_ref,
            "components": self.doc["components"],
        });
        let instance: Value = serde_json::from_str(body).expect("test bodies are JSON");
        jsonschema::draft202012::new(&schema)
            .expect("document schema compiles")
            .is_valid(&instance)
    }

    /// Sends `body` and checks the answer's status and code, and that the document says the
    /// same thing (valid exactly when the server answers 2xx or a refusal about state).
    async fn expect(
        &self,
        op: &str,
        token: &Secret,
        body: &str,
        want: (u16, Option<&str>),
        documented_valid: bool,
    ) -> anyhow::Result<Value> {
        let (status, v) = self.json(op, token, body).await?;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            want,
            "{op} {body} -> {v}"
        );
        assert_eq!(
            self.documented_valid(op, body),
            documented_valid,
            "document on {op} {body}"
        );
        Ok(v)
    }

    async fn start_session(&self) -> anyhow::Result<String> {
        let body = json!({"clientKey": self.key.0}).to_string();
        let (status, v) = self
            .json("StartSession", &self.product_token, &body)
            .await?;
        assert_eq!(status, 200, "{v}");
        Ok(v["sessionId"].as_str().expect("sessionId").to_string())
    }
}

#[tokio::test]
async fn a_body_not_declared_as_json_is_415() -> anyhow::Result<()> {
    let s = setup().await?;
    let body = json!({"clientKey": s.key.0, "password": s.password.expose()}).to_string();
    for ct in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/jsonx"),
        Some("application/json; charset=latin1"),
        Some("json"),
    ] {
        let (status, v) = s.post("AuthClient", &s.product_token, ct, &body).await?;
        assert_eq!(
            (status, v["error"]["code"].as_str()),
            (415, Some("unsupported_media_type")),
            "{ct:?} -> {v}"
        );
    }
    for ct in [
        "application/json",
        "application/json; charset=utf-8",
        "Application/JSON;charset=\"UTF-8\"",
        "application/vnd.api+json",
    ] {
        let (status, v) = s
            .post("AuthClient", &s.product_token, Some(ct), &body)
            .await?;
        assert_eq!(status, 200, "{ct} -> {v}");
    }
    // Authentication comes first, then the media type.
    let (status, _) = s
        .post("AuthClient", &Secret("nope".into()), None, &body)
        .await?;
    assert_eq!(status, 401);
    // The document says which media type is accepted, and lists 415.
    let op = &s.doc["paths"]["/v1/AuthClient"]["post"];
    let types: Vec<&String> = op["requestBody"]["content"]
        .as_object()
        .expect("content")
        .keys()
        .collect();
    assert_eq!(types, ["application/json"]);
    assert!(op["responses"].get("415").is_some());
    Ok(())
}

#[tokio::test]
async fn an_empty_client_key_is_refused_and_documented_as_refused() -> anyhow::Result<()> {
    let s = setup().await?;
    let bad = (400, Some("bad_request"));
    let t = &s.product_token;
    s.expect(
        "AuthClient",
        t,
        r#"{"clientKey":"","password":"p"}"#,
        bad,
        false,
    )
    .await?;
    s.expect("StartSession", t, r#"{"clientKey":""}"#, bad, false)
        .await?;
    s.expect(
        "GetAccess",
        &s.client_token,
        r#"{"clientKey":""}"#,
        bad,
        false,
    )
    .await?;
    // Non-ASCII and control characters: refused as well, and so documented.
    s.expect("StartSession", t, r#"{"clientKey":"c-é"}"#, bad, false)
        .await?;
    s.expect("StartSession", t, r#"{"clientKey":"c\u0085"}"#, bad, false)
        .await?;
    // A well-formed key that does not exist is a 404, valid for the document.
    s.expect(
        "StartSession",
        t,
        r#"{"clientKey":"c-none"}"#,
        (404, Some("not_found")),
        true,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn counters_with_a_zero_fraction_are_integers() -> anyhow::Result<()> {
    let s = setup().await?;
    let sid = s.start_session().await?;
    let t = &s.product_token;
    let v = s
        .expect(
            "UpdateSession",
            t,
            &format!(r#"{{"sessionId":"{sid}","bytesIn":1.0,"bytesOut":2e3}}"#),
            (200, None),
            true,
        )
        .await?;
    assert_eq!(
        (v["bytesIn"].as_u64(), v["bytesOut"].as_u64()),
        (Some(1), Some(2000))
    );
    s.expect(
        "UpdateSession",
        t,
        &format!(r#"{{"sessionId":"{sid}","bytesIn":1.5,"bytesOut":0}}"#),
        (400, Some("bad_request")),
        false,
    )
    .await?;
    s.expect(
        "StopSession",
        t,
        &format!(r#"{{"sessionId":"{sid}","bytesIn":-1.0,"bytesOut":0}}"#),
        (400, Some("bad_request")),
        false,
    )
    .await?;
    let v = s
        .expect(
            "StopSession",
            t,
            &format!(r#"{{"sessionId":"{sid}","bytesIn":10.0,"bytesOut":2000.0}}"#),
            (200, None),
            true,
        )
        .await?;
    assert_eq!(v["channelBytes"].as_u64(), Some(2010));
    Ok(())
}

#[tokio::test]
async fn control_characters_in_a_session_id_are_refused() -> anyhow::Result<()> {
    let s = setup().await?;
    let t = &s.product_token;
    for sid in [
        r"s-1\n",
        r"s-1\u0000",
        r"s\u001b[2J",
        r"s\u007f",
        r"s\u009b",
    ] {
        for op in ["UpdateSession", "StopSession"] {
            let body = format!(r#"{{"sessionId":"{sid}","bytesIn":1,"bytesOut":1}}"#);
            let v = s
                .expect(op, t, &body, (400, Some("bad_request")), false)
                .await?;
            let m = v["error"]["message"].as_str().expect("message");
            assert!(m.contains("sessionId"), "{m}");
        }
    }
    // Printable but unknown: 404, and valid for the document.
    s.expect(
        "UpdateSession",
        t,
        r#"{"sessionId":"s-unknown","bytesIn":1,"bytesOut":1}"#,
        (404, Some("not_found")),
        true,
    )
    .await?;
    Ok(())
}

#[tokio::test]
async fn config_keys_follow_the_documented_rule() -> anyhow::Result<()> {
    let s = setup().await?;
    let t = &s.product_token;
    let rule = &s.doc["components"]["schemas"]["SetProductConfigRequest"]["properties"]["config"];
    assert_eq!(
        rule["propertyNames"]["pattern"],
        service_api::rules::CONFIG_KEY_PATTERN
    );
    assert_eq!(
        rule["maxProperties"].as_u64(),
        Some(service_api::rules::CONFIG_MAX_KEYS as u64)
    );
    // A key the module does not know but that follows the rule is stored.
    s.expect(
        "SetProductConfig",
        t,
        r#"{"config":{"proto":"udp","x-unknown.key_1":"v"}}"#,
        (200, None),
        true,
    )
    .await?;
    let invalid = (422, Some("invalid"));
    for body in [
        r#"{"config":{"bad key":"x"}}"#,
        r#"{"config":{"":"x"}}"#,
        r#"{"config":{"k\n":"x"}}"#,
        r#"{"config":{"ключ":"x"}}"#,
        r#"{"config":{"k":"é"}}"#,
        r#"{"config":{"serviceEndpointAddress":"x y"}}"#,
    ] {
        let v = s
            .expect("SetProductConfig", t, body, invalid, false)
            .await?;
        let m = v["error"]["message"].as_str().expect("message");
        assert!(m.contains("/config"), "{m}");
    }
    let long_key = format!(r#"{{"config":{{"{}":"x"}}}}"#, "k".repeat(65));
    s.expect("SetProductConfig", t, &long_key, invalid, false)
        .await?;
    let many: serde_json::Map<String, Value> =
        (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let many = json!({ "config": many }).to_string();
    s.expect("SetProductConfig", t, &many, invalid, false)
        .await?;
    Ok(())
}

#[tokio::test]
async fn counters_above_the_bound_are_refused_with_the_documented_code() -> anyhow::Result<()> {
    let s = setup().await?;
    let t = &s.product_token;
    let schema = &s.doc["components"]["schemas"]["UpdateSessionRequest"]["properties"]["bytesIn"];
    assert_eq!(schema["maximum"].as_u64(), Some(MAX_BYTE_COUNT));
    let sid = s.start_session().await?;
    for (op, bytes_in, want, valid) in [
        (
            "UpdateSession",
            MAX_BYTE_COUNT + 1,
            (422, Some("invalid")),
            false,
        ),
        ("UpdateSession", u64::MAX, (422, Some("invalid")), false),
        (
            "StopSession",
            MAX_BYTE_COUNT + 1,
            (422, Some("invalid")),
            false,
        ),
        ("UpdateSession", MAX_BYTE_COUNT, (200, None), true),
    ] {
        let body = format!(r#"{{"sessionId":"{sid}","bytesIn":{bytes_in},"bytesOut":0}}"#);
        let v = s.expect(op, t, &body, want, valid).await?;
        if want.0 == 422 {
            let m = v["error"]["message"].as_str().expect("message");
            assert!(
                m.contains("/bytesIn") && m.contains(&MAX_BYTE_COUNT.to_string()),
                "{m}"
            );
        }
    }
    // Beyond 64 bits the number is not a counter at all: 400.
    let body = format!(r#"{{"sessionId":"{sid}","bytesIn":18446744073709551616,"bytesOut":0}}"#);
    s.expect("UpdateSession", t, &body, (400, Some("bad_request")), false)
        .await?;
    Ok(())
}

#[tokio::test]
async fn every_answer_of_the_admin_read_is_json() -> anyhow::Result<()> {
    let s = setup().await?;
    // A path parameter that is not UTF-8 once decoded: 400 in the API's format.
    let resp = s
        .http
        .get(format!("{}/v1/admin/channels/%FF", s.core.url))
        .bearer_auth(s.core.admin_token.expose())
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 400);
    let v: Value = resp.json().await?;
    assert_eq!(v["error"]["code"], "bad_request");
    let resp = s
        .http
        .get(format!("{}/v1/admin/channels/{}", s.core.url, s.key.0))
        .bearer_auth(s.core.admin_token.expose())
        .send()
        .await?;
    assert_eq!(resp.status().as_u16(), 200);
    Ok(())
}
