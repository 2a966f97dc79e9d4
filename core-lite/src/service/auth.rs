//! Authentication: bearer tokens to callers (with a cache of tokens already seen) and the
//! AuthClient operation (a client's key and password, throttled by [`super::limiter`]).

use std::time::Instant;

use service_api::{AuthClientRequest, AuthClientResponse};

use super::limiter::Source;
use super::state::{speed_of, Caller, Core};
use crate::error::{CoreError, Result};
use crate::store::channels::{self, AgentKey};
use crate::store::tokens::{self, TokenOwner};

/// Longest bearer token looked at.
const MAX_TOKEN_LEN: usize = 512;
/// Most tokens kept in the cache of known callers.
const MAX_CACHED_CALLERS: usize = 10_000;

impl Core {
    /// The caller of a token already seen, without touching the database.
    pub fn cached_caller(&self, token: &str) -> Option<Caller> {
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let hash = self.keys.hash_secret(token);
        self.callers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned()
    }

    pub fn authenticate(&self, token: &str) -> Result<Caller> {
        if let Some(c) = self.cached_caller(token) {
            return Ok(c);
        }
        if token.is_empty() || token.len() > MAX_TOKEN_LEN {
            return Err(CoreError::Unauthorized);
        }
        let hash = self.keys.hash_secret(token);
        let caller = match self.db.read(|tx| tokens::owner(tx, &hash))? {
            Some(TokenOwner::Admin) => Caller::Admin,
            Some(TokenOwner::Product(p)) => Caller::Product(p),
            Some(TokenOwner::Client) => Caller::Client,
            None => return Err(CoreError::Unauthorized),
        };
        let mut cache = self.callers.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() < MAX_CACHED_CALLERS {
            cache.insert(hash, caller.clone());
        }
        Ok(caller)
    }

    /// AuthClient, throttled as [`limiter`](super::limiter) says: a refusal of the throttle
    /// is [`CoreError::RateLimited`]; a wrong password or unknown key is
    /// [`CoreError::AuthFailed`] carrying the delay to wait before answering (the caller
    /// waits, off the blocking pool); the right password is answered at once.
    pub fn auth_client(
        &self,
        caller: &Caller,
        req: &AuthClientRequest,
    ) -> Result<AuthClientResponse> {
        let product = match caller {
            Caller::Product(p) => Some(p.clone()),
            Caller::Admin => None,
            Caller::Client => {
                return Err(CoreError::Forbidden(
                    "AuthClient is an agent operation: use a product token".into(),
                ))
            }
        };
        let source = Source::of(req.client_addr.as_deref());
        let ticket = self
            .auth_throttle
            .admit(&source, Instant::now())
            .map_err(|r| CoreError::RateLimited {
                who: r.source.to_string(),
                retry_after: r.retry_after,
            })?;
        let found = self.db.read(|tx| {
            channels::agent(
                tx,
                AgentKey::ClientKey(&req.client_key.0),
                product.as_deref(),
            )
        });
        let ch = match found {
            Ok(ch) => ch,
            Err(e) => {
                self.auth_throttle.passed(ticket);
                return Err(e.into());
            }
        };
        let ok = match &ch {
            Some(ch) => self
                .keys
                .verify_secret(req.password.expose(), &ch.password_hash),
            None => {
                // Same work as a real check, so timing does not tell keys apart.
                let _ = self
                    .keys
                    .verify_secret(req.password.expose(), &"0".repeat(64));
                false
            }
        };
        let Some(ch) = ch.filter(|_| ok) else {
            let delay = self
                .auth_throttle
                .failed(ticket, &req.client_key.0, Instant::now());
            return Err(CoreError::AuthFailed { delay });
        };
        self.auth_throttle.passed(ticket);
        if !ch.status.admits_login() {
            return Err(CoreError::ChannelInactive {
                channel: ch.id,
                status: ch.status,
            });
        }
        Ok(AuthClientResponse {
            client_key: req.client_key.clone(),
            channel_id: ch.id,
            status: ch.status,
            speed: speed_of(ch.additional_params.as_ref()),
        })
    }
}
