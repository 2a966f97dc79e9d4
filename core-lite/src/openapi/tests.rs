use std::collections::BTreeSet;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tower::ServiceExt;

use super::*;

/// (METHOD, path in OpenAPI syntax) of every operation of the document.
fn documented() -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in document()["paths"].as_object().expect("paths") {
        for (method, _) in item.as_object().expect("item") {
            ops.insert((method.to_ascii_uppercase(), path.clone()));
        }
    }
    ops
}

/// axum's `/:id` segments written as OpenAPI's `/{id}`.
fn openapi_path(axum_path: &str) -> String {
    axum_path
        .split('/')
        .map(|seg| match seg.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => seg.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[test]
fn names_every_service_operation() {
    let d = document();
    let mut ids = Vec::new();
    for (_, item) in d["paths"].as_object().expect("paths") {
        for (_, op) in item.as_object().expect("item") {
            ids.push(op["operationId"].as_str().expect("id").to_string());
        }
    }
    for want in [
        "AuthClient",
        "SetProductConfig",
        "StartSession",
        "FindSession",
        "UpdateSession",
        "StopSession",
        "GetAccess",
        "GetChannel",
        "Health",
    ] {
        assert!(ids.iter().any(|i| i == want), "{want} missing from {ids:?}");
    }
    let version = d["openapi"].as_str().expect("openapi version");
    assert!(version.starts_with("3.1."), "{version}");
}

#[test]
fn documents_exactly_the_routes_the_router_serves() {
    let served: BTreeSet<(String, String)> = crate::server::api_routes()
        .into_iter()
        .map(|(m, p, _)| (m.to_string(), openapi_path(&p)))
        .collect();
    let documented = documented();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty(),
        "served, not documented: {undocumented:?}"
    );
    assert!(unserved.is_empty(), "documented, not served: {unserved:?}");
    assert!(served.iter().filter(|(_, p)| p.starts_with("/v1/")).count() >= 7);
}

/// The real router answers every documented operation (no fallback 404, no 405), and its
/// fallback answers what is not documented.
#[tokio::test]
async fn router_answers_every_documented_operation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let core = Arc::new(crate::service::Core::open(dir.path()).expect("core"));
    let app = crate::server::router(core);
    for (method, path) in documented() {
        let uri = path.replace("{id}", "ch-x");
        let req = Request::builder()
            .method(method.as_str())
            .uri(&uri)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .expect("request");
        let resp = app.clone().oneshot(req).await.expect("answer");
        let want = if path.starts_with("/v1/") {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::OK
        };
        assert_eq!(resp.status(), want, "{method} {uri}");
    }
    let req = Request::builder()
        .method("POST")
        .uri("/v1/Nope")
        .body(Body::empty())
        .expect("request");
    let resp = app.oneshot(req).await.expect("answer");
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}
