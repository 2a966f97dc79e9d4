//! A recording HTTP proxy between the adapter and a real core (loopback only): it keeps
//! every request body the adapter sent, and can rewrite the core's answers of one path
//! (a hostile or broken core without writing one).

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// Rewrites the JSON answer of a path: `(path, answer) -> answer`.
pub type Rewrite = Arc<dyn Fn(&str, Value) -> Value + Send + Sync>;

/// One request the adapter sent.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub path: String,
    pub body: Value,
}

#[derive(Clone)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<Recorded>>>,
    rewrite: Option<Rewrite>,
}

pub struct Proxy {
    pub url: String,
    log: Arc<Mutex<Vec<Recorded>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    pub async fn start(upstream: &str, rewrite: Option<Rewrite>) -> Result<Self> {
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: reqwest::Client::builder().no_proxy().build()?,
            log: log.clone(),
            rewrite,
        };
        let app = axum::Router::new().fallback(handle).with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { url, log, task })
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// The `(sessionId, bytesIn, bytesOut)` of every UpdateSession and StopSession sent,
    /// in order, with `true` for StopSession.
    pub fn usage_reports(&self) -> Vec<(String, u64, u64, bool)> {
        self.requests()
            .into_iter()
            .filter_map(|r| {
                let stop = match r.path.as_str() {
                    service_api::paths::UPDATE_SESSION => false,
                    service_api::paths::STOP_SESSION => true,
                    _ => return None,
                };
                Some((
                    r.body["sessionId"].as_str()?.to_string(),
                    r.body["bytesIn"].as_u64()?,
                    r.body["bytesOut"].as_u64()?,
                    stop,
                ))
            })
            .collect()
    }
}

async fn handle(State(s): State<Shared>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    match forward(&s, &uri, &headers, body).await {
        Ok(r) => r,
        Err(e) => (StatusCode::BAD_GATEWAY, format!("proxy: {e:#}")).into_response(),
    }
}

async fn forward(s: &Shared, uri: &Uri, headers: &HeaderMap, body: Bytes) -> Result<Response> {
    let path = uri.path().to_string();
    if let Ok(v) = serde_json::from_slice::<Value>(&body) {
        if let Ok(mut l) = s.log.lock() {
            l.push(Recorded {
                path: path.clone(),
                body: v,
            });
        }
    }
    let mut req = s.http.post(format!("{}{}", s.upstream, path)).body(body);
    for h in ["authorization", "content-type"] {
        if let Some(v) = headers.get(h) {
            req = req.header(h, v.as_bytes());
        }
    }
    let resp = req.send().await.context("upstream")?;
    let status = StatusCode::from_u16(resp.status().as_u16())?;
    let bytes = resp.bytes().await?;
    let out = match (&s.rewrite, serde_json::from_slice::<Value>(&bytes)) {
        (Some(f), Ok(v)) => serde_json::to_vec(&f(&path, v))?,
        _ => bytes.to_vec(),
    };
    Ok((status, [("content-type", "application/json")], out).into_response())
}
