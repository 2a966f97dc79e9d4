//! [`MarketClient`]: the HTTP client side of the market protocol (one agent's market API).

use std::time::Duration;

use serde::de::DeserializeOwned;
use service_api::market::{
    paths, AcceptRequest, ChannelStatus, Cheque, ChequeReceipt, OfferingList, SignedAccess,
};
use service_api::ErrorBody;

use crate::error::{CoreError, MarketCallError, Result};

/// Largest answer read from a market.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

fn unreachable(url: &str, source: impl Into<MarketCallError>) -> CoreError {
    CoreError::MarketUnreachable {
        url: url.to_string(),
        source: source.into(),
    }
}

/// HTTP client side of the market protocol.
pub struct MarketClient {
    http: reqwest::Client,
}

impl MarketClient {
    pub fn new(timeout: Duration) -> Result<MarketClient> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .no_proxy()
            .build()
            .map_err(CoreError::HttpClient)?;
        Ok(MarketClient { http })
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

    pub async fn offerings(&self, base: &str) -> Result<OfferingList> {
        let url = format!("{}{}", base.trim_end_matches('/'), paths::OFFERINGS);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        Self::decode(&url, resp).await
    }

    pub async fn accept(&self, base: &str, req: &AcceptRequest) -> Result<SignedAccess> {
        let url = format!("{}{}", base.trim_end_matches('/'), paths::ACCEPT);
        let resp = self
            .http
            .post(&url)
            .json(req)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        Self::decode(&url, resp).await
    }

    pub async fn cheque(&self, base: &str, c: &Cheque) -> Result<ChequeReceipt> {
        let url = format!("{}{}", base.trim_end_matches('/'), paths::CHEQUE);
        let resp = self
            .http
            .post(&url)
            .json(c)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        Self::decode(&url, resp).await
    }

    pub async fn channel(&self, base: &str, id: &str) -> Result<ChannelStatus> {
        let url = format!("{}{}/{}", base.trim_end_matches('/'), paths::CHANNELS, id);
        let resp = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| unreachable(&url, e))?;
        Self::decode(&url, resp).await
    }
}
