//! [`MarketClient`]: the HTTP client side of the market protocol (one agent's market API),
//! over TLS with the agent's pinned key when its signed offerings carry one
//! ([`service_api::tls`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use serde::de::DeserializeOwned;
use service_api::market::{
    paths, AcceptRequest, AccessEnvelope, ChannelStatus, Cheque, ChequeReceipt, OfferingList,
};
use service_api::tls::{self as tlsc, Observed, PinMismatch, Trust, PIN_FIELD};
use service_api::ErrorBody;

use crate::error::{CoreError, MarketCallError, Result};
use crate::keys::AgentKeys;

/// Largest answer read from a market.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

fn unreachable(url: &str, source: impl Into<MarketCallError>) -> CoreError {
    let source = match source.into() {
        // A pinned connection refused by the verifier: say so plainly.
        MarketCallError::Http(e) => match tlsc::pin_mismatch_in(&e) {
            Some(m) => MarketCallError::PinMismatch(m),
            None => MarketCallError::Http(e),
        },
        other => other,
    };
    CoreError::MarketUnreachable {
        url: url.to_string(),
        source,
    }
}

fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|s| s.eq_ignore_ascii_case("https://"))
}

/// The pin an offering carries (`agentTlsSpkiSha256`).
pub fn offering_pin(offering: &serde_json::Value) -> Option<&str> {
    offering.get(PIN_FIELD).and_then(serde_json::Value::as_str)
}

/// HTTP client side of the market protocol.
pub struct MarketClient {
    timeout: Duration,
    ca_file: Option<PathBuf>,
    /// Plain http:// URLs.
    plain: reqwest::Client,
    /// https:// clients by trust ("pin:HEX" or "roots").
    tls: Mutex<HashMap<String, reqwest::Client>>,
}

impl MarketClient {
    pub fn new(timeout: Duration) -> Result<MarketClient> {
        Self::with_ca_file(timeout, None)
    }

    /// A client trusting the certificates of `ca_file` (instead of the system's roots) for
    /// agents whose offerings pin no TLS key.
    pub fn with_ca_file(timeout: Duration, ca_file: Option<PathBuf>) -> Result<MarketClient> {
        let plain = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(CoreError::HttpClient)?;
        Ok(MarketClient {
            timeout,
            ca_file,
            plain,
            tls: Mutex::new(HashMap::new()),
        })
    }

    fn build(&self, url: &str, trust: &Trust) -> Result<reqwest::Client> {
        tlsc::http_builder(trust)
            .map_err(|e| unreachable(url, e))?
            .timeout(self.timeout)
            .build()
            .map_err(CoreError::HttpClient)
    }

    /// The client for `url`: plain for http:// (refused when the agent pins a key: a
    /// downgrade), else TLS with the pin, or the roots.
    fn client(&self, url: &str, pin: Option<&str>) -> Result<reqwest::Client> {
        if !is_https(url) {
            if let Some(pin) = pin {
                return Err(unreachable(
                    url,
                    MarketCallError::Downgrade {
                        pin: pin.to_string(),
                    },
                ));
            }
            return Ok(self.plain.clone());
        }
        let (key, trust) = match pin {
            Some(p) => (format!("pin:{p}"), Trust::Pinned(p.to_string())),
            None => (
                "roots".to_string(),
                Trust::Roots {
                    ca_file: self.ca_file.clone(),
                },
            ),
        };
        let mut map = self.tls.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(&key) {
            return Ok(c.clone());
        }
        let c = self.build(url, &trust)?;
        map.insert(key, c.clone());
        Ok(c)
    }

    async fn decode<T: DeserializeOwned>(url: &str, resp: reqwest::Response) -> Result<T> {
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(|e| unreachable(url, e))?;
        if bytes.len() > MAX_ANSWER_BYTES {
            return Err(unreachable(url, MarketCallError::TooLarge));
        }
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes)
                .map_err(|e| unreachable(url, MarketCallError::Unreadable(e)));
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => Err(CoreError::Remote {
                code: b.error.code,
                message: b.error.message,
            }),
            Err(_) => Err(unreachable(url, MarketCallError::Status(status))),
        }
    }

    /// The agent's offerings. Over https, the key the server presented must be the one its
    /// offerings pin (else a man in the middle: refused), and offerings that pin no key need
    /// a certificate the roots (or --ca-file) vouch for. Offerings that pin a key are
    /// refused over plain http (a downgrade).
    pub async fn offerings(&self, base: &str) -> Result<OfferingList> {
        let url = format!("{}{}", base.trim_end_matches('/'), paths::OFFERINGS);
        let observed = Observed::default();
        let http = if is_https(&url) {
            self.observing(&url, &observed)?
        } else {
            self.plain.clone()
        };
        let resp = http
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        let list: OfferingList = Self::decode(&url, resp).await?;
        let seen = observed.seen();
        for o in &list.offerings {
            let pin = offering_pin(&o.offering);
            match (pin, &seen) {
                (Some(p), _) if !is_https(&url) => {
                    return Err(unreachable(
                        &url,
                        MarketCallError::Downgrade { pin: p.to_string() },
                    ))
                }
                (Some(p), Some(s)) if s.spki_sha256 != p => {
                    return Err(unreachable(
                        &url,
                        MarketCallError::PinMismatch(PinMismatch {
                            pinned: p.to_string(),
                            presented: s.spki_sha256.clone(),
                        }),
                    ))
                }
                (None, Some(s)) => {
                    if let Some(why) = &s.roots_refused {
                        return Err(unreachable(&url, MarketCallError::Untrusted(why.clone())));
                    }
                }
                _ => {}
            }
        }
        Ok(list)
    }

    /// A client that takes any certificate and records it in `observed`, with whether the
    /// roots (--ca-file's, else the system's) vouch for it.
    fn observing(&self, url: &str, observed: &Observed) -> Result<reqwest::Client> {
        let roots = tlsc::root_store(self.ca_file.as_deref()).map_err(|e| unreachable(url, e))?;
        let verifier = if roots.is_empty() {
            None
        } else {
            let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .ok()
        };
        let config =
            tlsc::observing_config(verifier, observed.clone()).map_err(|e| unreachable(url, e))?;
        reqwest::Client::builder()
            .use_preconfigured_tls(config)
            .no_proxy()
            .timeout(self.timeout)
            .build()
            .map_err(CoreError::HttpClient)
    }

    /// Accepts an offering; `pin`: the key its signed offering pins.
    pub async fn accept(
        &self,
        base: &str,
        pin: Option<&str>,
        req: &AcceptRequest,
    ) -> Result<AccessEnvelope> {
        let url = format!("{}{}", base.trim_end_matches('/'), paths::ACCEPT);
        let resp = self
            .client(&url, pin)?
            .post(&url)
            .json(req)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        Self::decode(&url, resp).await
    }

    pub async fn cheque(&self, base: &str, pin: Option<&str>, c: &Cheque) -> Result<ChequeReceipt> {
        let url = format!("{}{}", base.trim_end_matches('/'), paths::CHEQUE);
        let resp = self
            .client(&url, pin)?
            .post(&url)
            .json(c)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        Self::decode(&url, resp).await
    }

    /// The channel's status, read with a request signed by the channel's client key.
    pub async fn channel(
        &self,
        base: &str,
        pin: Option<&str>,
        id: &str,
        keys: &AgentKeys,
    ) -> Result<ChannelStatus> {
        let path = format!("{}/{}", paths::CHANNELS, id);
        let url = format!("{}{}", base.trim_end_matches('/'), path);
        let ts = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut req = self.client(&url, pin)?.get(&url);
        for (name, value) in super::guard::sign_read(keys, "GET", &path, ts) {
            req = req.header(name, value);
        }
        let resp = req.send().await.map_err(|e| unreachable(&url, e))?;
        Self::decode(&url, resp).await
    }
}
