//! The typed HTTP client of the Service API.
//!
//! Its errors never carry a response body: an answer that does not read as the expected
//! type is reported by field path and kind only ([`crate::body`]).

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::body;
use crate::*;

/// Typed client of the Service API.
///
/// It may know several cores of one agent (a comma-separated list of base URLs, several
/// `core-lite serve` on one PostgreSQL database): a call goes to the core that answered
/// last, and when that one cannot be reached, times out or answers 503/500
/// ([`ApiError::is_transport`]), to the next ones in the list's order, wrapping around; the
/// first that answers becomes the one calls go to. Every Service API write is idempotent
/// (cumulative counters, connection ids), so a call repeated on another core after a
/// timeout counts once. When none answers, the last error is returned (what the adapters
/// buffer and retry).
#[derive(Clone)]
pub struct Client {
    bases: Arc<Vec<String>>,
    /// Index in `bases` of the core that answered last.
    current: Arc<AtomicUsize>,
    token: Secret,
    http: reqwest::Client,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("bases", &self.bases)
            .finish()
    }
}

/// The base URLs of a comma-separated list (`http://a:7700,http://b:7700`).
fn parse_bases(list: &str) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for base in list.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ApiError::BadUrl {
                url: base,
                reason: "must start with http:// or https://".into(),
            });
        }
        out.push(base);
    }
    if out.is_empty() {
        return Err(ApiError::BadUrl {
            url: list.to_string(),
            reason: "no core URL".into(),
        });
    }
    Ok(out)
}

impl Client {
    /// `base` like `http://127.0.0.1:7700`, or several cores of one agent separated by
    /// commas (tried in order, see [`Client`]); `timeout` bounds each call to one core.
    pub fn new(base: &str, token: Secret, timeout: Duration) -> Result<Self, ApiError> {
        let bases = parse_bases(base)?;
        let base = bases.join(",");
        // https: the system's roots, or the CA file of the process (`--ca-file`).
        let builder = if bases.iter().any(|b| b.starts_with("https://")) {
            crate::tls::http_builder(&crate::tls::Trust::Roots {
                ca_file: crate::tls::default_ca_file(),
            })
            .map_err(|e| ApiError::BadUrl {
                url: base.clone(),
                reason: e.to_string(),
            })?
        } else {
            reqwest::Client::builder()
        };
        let http = builder
            .timeout(timeout)
            .connect_timeout(timeout)
            // Idle keep-alive connections kept for reuse: enough for steady traffic; a burst's
            // extra connections are closed instead of holding buffers and descriptors.
            .pool_max_idle_per_host(16)
            .no_proxy()
            .build()
            .map_err(|e| ApiError::Transport {
                url: base.clone(),
                source: e,
            })?;
        Ok(Self {
            bases: Arc::new(bases),
            current: Arc::new(AtomicUsize::new(0)),
            token,
            http,
        })
    }

    /// The base URL of the core calls go to now (the one that answered last).
    pub fn base_url(&self) -> &str {
        let i = self.current.load(Ordering::Relaxed) % self.bases.len();
        &self.bases[i]
    }

    /// Every core this client knows, in order.
    pub fn base_urls(&self) -> &[String] {
        &self.bases
    }

    /// Runs `call` on the current core, then on the next ones while they cannot be reached
    /// (see [`Client`]).
    async fn failover<T, F, Fut>(&self, call: F) -> Result<T, ApiError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, ApiError>>,
    {
        let n = self.bases.len();
        let first = self.current.load(Ordering::Relaxed) % n;
        let mut last = None;
        for k in 0..n {
            let i = (first + k) % n;
            match call(self.bases[i].clone()).await {
                Err(e) if e.is_transport() => last = Some(e),
                other => {
                    if k > 0 && other.is_ok() {
                        self.current.store(i, Ordering::Relaxed);
                    }
                    return other;
                }
            }
        }
        Err(last.unwrap_or_else(|| ApiError::BadUrl {
            url: String::new(),
            reason: "no core URL".into(),
        }))
    }

    async fn post<Req: Serialize, Resp: for<'de> Deserialize<'de>>(
        &self,
        path: &str,
        req: &Req,
    ) -> Result<Resp, ApiError> {
        self.failover(|base| async move {
            let url = format!("{base}{path}");
            let resp = self
                .http
                .post(&url)
                .bearer_auth(self.token.expose())
                .json(req)
                .send()
                .await
                .map_err(|e| ApiError::Transport {
                    url: url.clone(),
                    source: e,
                })?;
            Self::decode(url, resp).await
        })
        .await
    }

    async fn decode<Resp: for<'de> Deserialize<'de>>(
        url: String,
        resp: reqwest::Response,
    ) -> Result<Resp, ApiError> {
        let http_status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ApiError::Transport { url, source: e })?;
        if (200..300).contains(&http_status) {
            body::from_slice(&bytes).map_err(|source| ApiError::UnreadableBody {
                http_status,
                source,
            })
        } else {
            match body::from_slice::<ErrorBody>(&bytes) {
                Ok(b) => Err(ApiError::Api {
                    http_status,
                    code: b.error.code,
                    message: b.error.message,
                    status: b.error.status,
                }),
                Err(source) => Err(ApiError::UnreadableBody {
                    http_status,
                    source,
                }),
            }
        }
    }

    pub async fn auth_client(
        &self,
        req: &AuthClientRequest,
    ) -> Result<AuthClientResponse, ApiError> {
        self.post(paths::AUTH_CLIENT, req).await
    }
    pub async fn set_product_config(
        &self,
        req: &SetProductConfigRequest,
    ) -> Result<SetProductConfigResponse, ApiError> {
        self.post(paths::SET_PRODUCT_CONFIG, req).await
    }
    pub async fn start_session(
        &self,
        req: &StartSessionRequest,
    ) -> Result<StartSessionResponse, ApiError> {
        self.post(paths::START_SESSION, req).await
    }
    /// The session of a connection id, never opening one (404 when there is none).
    pub async fn find_session(
        &self,
        req: &FindSessionRequest,
    ) -> Result<StartSessionResponse, ApiError> {
        self.post(paths::FIND_SESSION, req).await
    }
    pub async fn update_session(
        &self,
        req: &UpdateSessionRequest,
    ) -> Result<UpdateSessionResponse, ApiError> {
        self.post(paths::UPDATE_SESSION, req).await
    }
    /// A copy of this client whose calls may take `timeout` (a WatchStatus long-poll waits
    /// longer than a usage report may).
    pub fn with_timeout(&self, timeout: Duration) -> Result<Self, ApiError> {
        let mut c = Self::new(&self.bases.join(","), self.token.clone(), timeout)?;
        // The same cores, and the same one that answered last.
        c.current = self.current.clone();
        Ok(c)
    }
    /// The status changes of the caller's channels after `req.cursor` (long-poll).
    pub async fn watch_status(
        &self,
        req: &WatchStatusRequest,
    ) -> Result<WatchStatusResponse, ApiError> {
        self.post(paths::WATCH_STATUS, req).await
    }
    /// Many usage reports in one call (one answer per report, in order).
    pub async fn update_sessions(
        &self,
        req: &UpdateSessionsRequest,
    ) -> Result<UpdateSessionsResponse, ApiError> {
        self.post(paths::UPDATE_SESSIONS, req).await
    }
    pub async fn stop_session(
        &self,
        req: &StopSessionRequest,
    ) -> Result<StopSessionResponse, ApiError> {
        self.post(paths::STOP_SESSION, req).await
    }
    pub async fn get_access(&self, req: &GetAccessRequest) -> Result<AccessMessage, ApiError> {
        self.post(paths::GET_ACCESS, req).await
    }
    /// Client role: fetch and verify an agent's offerings (the core calls the agent).
    pub async fn fetch_offerings(
        &self,
        req: &FetchOfferingsRequest,
    ) -> Result<FetchOfferingsResponse, ApiError> {
        self.post(paths::FETCH_OFFERINGS, req).await
    }
    /// Client role: the offerings fetched so far.
    pub async fn list_offerings(&self) -> Result<ListOfferingsResponse, ApiError> {
        self.post(paths::LIST_OFFERINGS, &ListOfferingsRequest {})
            .await
    }
    /// Client role: accept a fetched offering with a deposit (the core calls the agent).
    pub async fn accept_offering(
        &self,
        req: &AcceptOfferingRequest,
    ) -> Result<AcceptOfferingResponse, ApiError> {
        self.post(paths::ACCEPT_OFFERING, req).await
    }
    /// Client role: the client's channels with usage, status and money.
    pub async fn list_channels(&self) -> Result<ListChannelsResponse, ApiError> {
        self.post(paths::LIST_CHANNELS, &ListChannelsRequest {})
            .await
    }
    /// Admin token only.
    pub async fn channel_info(&self, id_or_client_key: &str) -> Result<ChannelInfo, ApiError> {
        self.failover(|base| async move {
            let url = format!("{base}{}/{}", paths::ADMIN_CHANNELS, id_or_client_key);
            let resp = self
                .http
                .get(&url)
                .bearer_auth(self.token.expose())
                .send()
                .await
                .map_err(|e| ApiError::Transport {
                    url: url.clone(),
                    source: e,
                })?;
            Self::decode(url, resp).await
        })
        .await
    }
}
