use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use super::*;
use crate::rules::{Validate, CONFIG_VALUE_MAX_LEN, MAX_AMOUNT};
use crate::*;

/// A validator of one component schema of the document (JSON Schema 2020-12).
fn schema_of(name: &str) -> jsonschema::Validator {
    let doc = document_json();
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    jsonschema::draft202012::new(&schema).expect("the document's schema compiles")
}

/// What the server does with a body: read it (400 when that fails), then check its rules
/// (422 when one fails).
fn server_accepts<T: DeserializeOwned + Validate>(body: &Value) -> bool {
    serde_json::from_str::<T>(&body.to_string()).is_ok_and(|r| r.validate().is_ok())
}

/// The document accepts exactly the bodies the server accepts.
fn agree<T: DeserializeOwned + Validate>(name: &str, bodies: &[Value]) {
    let schema = schema_of(name);
    for body in bodies {
        assert_eq!(
            schema.is_valid(body),
            server_accepts::<T>(body),
            "{name}: document and server disagree on {}",
            body.to_string().chars().take(200).collect::<String>()
        );
    }
}

#[test]
fn document_is_openapi_3_1_with_every_operation() {
    let d = document_json();
    assert_eq!(d["openapi"], "3.1.0");
    let mut ids = Vec::new();
    for (_, item) in d["paths"].as_object().expect("paths") {
        for (_, op) in item.as_object().expect("item") {
            ids.push(op["operationId"].as_str().expect("operationId").to_string());
        }
    }
    for want in [
        "AuthClient",
        "SetProductConfig",
        "StartSession",
        "UpdateSession",
        "StopSession",
        "GetAccess",
        "GetChannel",
        "FetchOfferings",
        "ListOfferings",
        "AcceptOffering",
        "ListChannels",
        "Health",
    ] {
        assert!(ids.iter().any(|i| i == want), "{want} missing from {ids:?}");
    }
}

#[test]
fn every_error_answer_carries_codes_of_its_status() {
    let d = document_json();
    let codes = d["components"]["schemas"]["ErrorCode"]["enum"]
        .as_array()
        .expect("ErrorCode enum")
        .clone();
    assert!(
        codes.contains(&json!("unsupported_media_type")),
        "{codes:?}"
    );
    let mut statuses = std::collections::BTreeSet::new();
    for op in OPS {
        let path = &d["paths"][op.path];
        let method = path.as_object().expect("item").values().next().expect("op");
        for (status, answer) in method["responses"].as_object().expect("responses") {
            statuses.insert(status.clone());
            if status == "200" {
                continue;
            }
            let allowed = &answer["content"]["application/json"]["schema"]["allOf"][1]
                ["properties"]["error"]["properties"]["code"]["enum"];
            for code in allowed.as_array().expect("codes") {
                let code: ErrorCode = serde_json::from_value(code.clone()).expect("code");
                assert_eq!(
                    code.http_status().to_string(),
                    *status,
                    "{} {code:?}",
                    op.id
                );
            }
        }
        // Every operation answers the transport-level errors.
        for s in ["401", "500", "503"] {
            assert!(method["responses"].get(s).is_some(), "{} lacks {s}", op.id);
        }
        if op.request.is_some() {
            for s in ["400", "413", "415"] {
                assert!(method["responses"].get(s).is_some(), "{} lacks {s}", op.id);
            }
        }
    }
    for s in ["409", "429", "422", "404", "403", "502"] {
        // 409 (a sold-out offering) and 502 (an agent's market out of reach) come from
        // the client-role operations that call an agent; every status is answered by some
        // operation.
        assert!(statuses.contains(s), "{s}");
    }
}

fn key(n: usize) -> String {
    "k".repeat(n)
}

#[test]
fn auth_client_document_matches_the_server() {
    agree::<AuthClientRequest>(
        "AuthClientRequest",
        &[
            json!({"clientKey": "c-1", "password": "p"}),
            json!({"clientKey": "c-1", "password": ""}),
            json!({"clientKey": "", "password": "p"}),
            json!({"clientKey": key(256), "password": "p"}),
            json!({"clientKey": key(257), "password": "p"}),
            json!({"clientKey": "c", "password": key(256)}),
            json!({"clientKey": "c", "password": key(257)}),
            json!({"clientKey": "c\n", "password": "p"}),
            json!({"clientKey": "c\u{7f}", "password": "p"}),
            json!({"clientKey": "c\u{85}", "password": "p"}),
            json!({"clientKey": "ключ", "password": "p"}),
            json!({"clientKey": "c", "password": "p\u{0}"}),
            json!({"clientKey": "c", "password": "p", "clientAddr": null}),
            json!({"clientKey": "c", "password": "p", "clientAddr": "1.2.3.4:5"}),
            json!({"clientKey": "c", "password": "p", "clientAddr": "1.2.3.4\t"}),
            json!({"clientKey": "c", "password": "p", "extra": 1}),
            json!({"clientKey": "c"}),
            json!({"clientKey": 1, "password": "p"}),
            json!({"clientKey": null, "password": "p"}),
            json!([]),
        ],
    );
}

#[test]
fn start_session_and_get_access_documents_match_the_server() {
    agree::<StartSessionRequest>(
        "StartSessionRequest",
        &[
            json!({"clientKey": "c"}),
            json!({"clientKey": ""}),
            json!({"clientKey": "c", "connectionId": "u|1.2.3.4:5|6", "vpnAddr": "10.8.0.2"}),
            json!({"clientKey": "c", "connectionId": null, "clientAddr": null, "vpnAddr": null}),
            json!({"clientKey": "c", "connectionId": key(257)}),
            json!({"clientKey": "c", "vpnAddr": "x\r"}),
            json!({"clientKey": "c", "clientAddr": 5}),
            json!({"clientKey": "c", "sessionId": "s"}),
        ],
    );
    agree::<GetAccessRequest>(
        "GetAccessRequest",
        &[
            json!({"clientKey": "c"}),
            json!({"clientKey": ""}),
            json!({"clientKey": "c\u{1b}[0m"}),
            json!({"clientKey": key(256)}),
            json!({"clientKey": "c", "password": "p"}),
            json!({}),
        ],
    );
}

#[test]
fn usage_report_documents_match_the_server() {
    let bodies = [
        json!({"sessionId": "s-1", "bytesIn": 0, "bytesOut": 0}),
        json!({"sessionId": "", "bytesIn": 0, "bytesOut": 0}),
        json!({"sessionId": key(257), "bytesIn": 0, "bytesOut": 0}),
        json!({"sessionId": "s\n", "bytesIn": 0, "bytesOut": 0}),
        json!({"sessionId": "s\u{0}", "bytesIn": 0, "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": 1.0, "bytesOut": 2e3}),
        json!({"sessionId": "s", "bytesIn": 1.5, "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": -1, "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": -0.0, "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": MAX_BYTE_COUNT, "bytesOut": MAX_BYTE_COUNT}),
        json!({"sessionId": "s", "bytesIn": MAX_BYTE_COUNT + 1, "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": 0, "bytesOut": u64::MAX}),
        json!({"sessionId": "s", "bytesIn": 1e19, "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": 1e30, "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": 2.3e18, "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": 2.4e18, "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": "1", "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": true, "bytesOut": 0}),
        json!({"sessionId": "s", "bytesIn": 1}),
        json!({"sessionId": "s", "bytesIn": 1, "bytesOut": 1, "x": 1}),
    ];
    agree::<UpdateSessionRequest>("UpdateSessionRequest", &bodies);
    agree::<StopSessionRequest>("StopSessionRequest", &bodies);
}

#[test]
fn product_config_document_matches_the_server() {
    let many: serde_json::Map<_, _> = (0..65).map(|i| (format!("k{i}"), json!("v"))).collect();
    let most: serde_json::Map<_, _> = (0..64).map(|i| (format!("k{i}"), json!("v"))).collect();
    agree::<SetProductConfigRequest>(
        "SetProductConfigRequest",
        &[
            json!({"config": {}}),
            json!({"config": {"proto": "udp", "port": "1194", "ca": "-----BEGIN\r\nX\n\t"}}),
            json!({"config": {"unknown.but_well-formed": "x"}}),
            json!({"config": {"bad key": "x"}}),
            json!({"config": {"": "x"}}),
            json!({"config": {key(64): "x"}}),
            json!({"config": {key(65): "x"}}),
            json!({"config": {"k": "x".repeat(CONFIG_VALUE_MAX_LEN)}}),
            json!({"config": {"k": "x".repeat(CONFIG_VALUE_MAX_LEN + 1)}}),
            json!({"config": {"k": "é"}}),
            json!({"config": {"k": 1}}),
            json!({"config": {"k": null}}),
            json!({"config": many}),
            json!({"config": most}),
            json!({"config": {"serviceEndpointAddress": "vpn.example.org:1194"}}),
            json!({"config": {"serviceEndpointAddress": "[2001:db8::1]:1194"}}),
            json!({"config": {"serviceEndpointAddress": ""}}),
            json!({"config": {"serviceEndpointAddress": "a b"}}),
            json!({"config": {"serviceEndpointAddress": "x\nremote evil"}}),
            json!({"config": {"serviceEndpointAddress": "x".repeat(256)}}),
            json!({"config": {"serviceEndpointAddress": "x".repeat(255)}}),
            json!({"config": []}),
            json!({"config": {}, "product": "p"}),
        ],
    );
}

#[test]
fn health_and_usage_overflow_are_documented() {
    let d = document_json();
    let health = &d["paths"][paths::HEALTH]["get"]["responses"];
    assert_eq!(
        health["200"]["content"]["text/plain"]["schema"]["enum"],
        json!(["ok\n"])
    );
    let codes = &health["503"]["content"]["application/json"]["schema"]["allOf"][1]["properties"]
        ["error"]["properties"]["code"]["enum"];
    assert_eq!(codes, &json!(["unavailable"]));
    // UpdateSession and StopSession answer usage_overflow with 422, saying the bound.
    for path in [paths::UPDATE_SESSION, paths::STOP_SESSION] {
        let r = &d["paths"][path]["post"]["responses"]["422"];
        let codes = &r["content"]["application/json"]["schema"]["allOf"][1]["properties"]["error"]
            ["properties"]["code"]["enum"];
        assert_eq!(codes, &json!(["invalid", "usage_overflow"]), "{path}");
        let text = r["description"].as_str().expect("description");
        assert!(
            text.contains(&crate::MAX_CHANNEL_BYTES.to_string()),
            "{text}"
        );
    }
}

#[test]
fn client_role_documents_match_the_server() {
    let hash = "0123456789abcdef".repeat(4);
    agree::<FetchOfferingsRequest>(
        "FetchOfferingsRequest",
        &[
            json!({"url": "http://10.77.0.1:7710"}),
            json!({"url": "https://agent.example.org"}),
            json!({"url": "http://x"}),
            json!({"url": "http://"}),
            json!({"url": "ftp://x"}),
            json!({"url": "HTTP://x"}),
            json!({"url": "http://a b"}),
            json!({"url": "http://x\n"}),
            json!({"url": "http://é"}),
            json!({"url": format!("http://{}", "x".repeat(249))}),
            json!({"url": format!("http://{}", "x".repeat(250))}),
            json!({"url": ""}),
            json!({"url": 1}),
            json!({}),
            json!({"url": "http://x", "extra": true}),
        ],
    );
    agree::<AcceptOfferingRequest>(
        "AcceptOfferingRequest",
        &[
            json!({"offeringHash": hash, "deposit": 0}),
            json!({"offeringHash": hash, "deposit": 1e3}),
            json!({"offeringHash": hash, "deposit": 1.5}),
            json!({"offeringHash": hash, "deposit": -1}),
            json!({"offeringHash": hash, "deposit": MAX_AMOUNT}),
            json!({"offeringHash": hash, "deposit": MAX_AMOUNT + 1}),
            json!({"offeringHash": hash, "deposit": u64::MAX}),
            json!({"offeringHash": hash.to_uppercase(), "deposit": 1}),
            json!({"offeringHash": &hash[1..], "deposit": 1}),
            json!({"offeringHash": format!("{hash}0"), "deposit": 1}),
            json!({"offeringHash": hash.replace('a', "g"), "deposit": 1}),
            json!({"offeringHash": hash}),
            json!({"offeringHash": hash, "deposit": 1, "nonce": "n"}),
        ],
    );
    for name in ["ListOfferingsRequest", "ListChannelsRequest"] {
        let bodies = [
            json!({}),
            json!({"x": 1}),
            json!([]),
            json!(null),
            json!(""),
        ];
        if name == "ListOfferingsRequest" {
            agree::<ListOfferingsRequest>(name, &bodies);
        } else {
            agree::<ListChannelsRequest>(name, &bodies);
        }
    }
}
