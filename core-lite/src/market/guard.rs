//! The agent's market guard: signed channel reads (the channel's client key, a time window
//! and no replay) and the rate limit of accepts per source address.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Duration;

use service_api::market::read_auth;

use crate::error::{CoreError, Result};
use crate::keys;

/// Accepts one source address may make per [`ACCEPT_WINDOW`].
pub const ACCEPTS_PER_WINDOW: u32 = 10;
pub const ACCEPT_WINDOW: Duration = Duration::from_secs(60);
/// Most remembered read signatures and accept sources (oldest dropped beyond).
const MAX_ENTRIES: usize = 65_536;

/// See the module doc.
#[derive(Default)]
pub struct MarketGuard {
    /// Read signature → unix seconds until which it is remembered.
    seen: Mutex<HashMap<String, u64>>,
    /// Source address → (window start, unix s; accepts in it).
    accepts: Mutex<HashMap<IpAddr, (u64, u32)>>,
}

/// The headers of a signed read, as received.
#[derive(Clone, Debug, Default)]
pub struct ReadAuth {
    pub key: Option<String>,
    pub ts: Option<String>,
    pub sig: Option<String>,
    pub nonce: Option<String>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MarketGuard {
    /// Checks a signed read of `method path` at `now` (unix s) against the channel's client
    /// key; a signature is taken once.
    pub fn check_read(
        &self,
        auth: &ReadAuth,
        method: &str,
        path: &str,
        channel_key: &str,
        now: u64,
    ) -> Result<()> {
        let refuse = |why: &str| Err(CoreError::UnsignedRead(why.to_string()));
        let (Some(key), Some(ts), Some(sig), Some(nonce)) =
            (&auth.key, &auth.ts, &auth.sig, &auth.nonce)
        else {
            return refuse(&format!(
                "a channel is read with a request signed by its client key (headers {}, {}, {}, {})",
                read_auth::KEY,
                read_auth::TS,
                read_auth::NONCE,
                read_auth::SIG
            ));
        };
        if !(16..=64).contains(&nonce.len()) {
            return refuse("the nonce must be 16 to 64 characters");
        }
        if key != channel_key {
            return refuse("the key is not this channel's client key");
        }
        let Ok(ts) = ts.parse::<u64>() else {
            return refuse("the timestamp is not unix seconds");
        };
        if ts.abs_diff(now) > read_auth::READ_WINDOW_SECS {
            return refuse(&format!(
                "the timestamp is more than {} s away from the agent's clock",
                read_auth::READ_WINDOW_SECS
            ));
        }
        if keys::verify_signature(key, &read_auth::message(ts, nonce, method, path), sig).is_err() {
            return refuse("bad signature");
        }
        let mut seen = lock(&self.seen);
        seen.retain(|_, until| *until >= now);
        if seen.contains_key(sig) {
            return refuse("replayed request");
        }
        if seen.len() >= MAX_ENTRIES {
            return Err(CoreError::TooManyAccepts {
                who: "everyone (signed reads)".into(),
                retry_after: Duration::from_secs(1),
            });
        }
        seen.insert(sig.clone(), ts + read_auth::READ_WINDOW_SECS);
        Ok(())
    }

    /// Counts an accept from `ip` at `now` (unix s); refused beyond the limit.
    pub fn admit_accept(&self, ip: IpAddr, now: u64) -> Result<()> {
        let window = ACCEPT_WINDOW.as_secs();
        let mut a = lock(&self.accepts);
        if a.len() >= MAX_ENTRIES {
            a.retain(|_, (start, _)| now < *start + window);
        }
        let e = a.entry(ip).or_insert((now, 0));
        if now >= e.0 + window {
            *e = (now, 0);
        }
        if e.1 >= ACCEPTS_PER_WINDOW {
            return Err(CoreError::TooManyAccepts {
                who: ip.to_string(),
                retry_after: Duration::from_secs((e.0 + window).saturating_sub(now).max(1)),
            });
        }
        e.1 += 1;
        Ok(())
    }
}

/// Signs a read of `method path` at `ts` with the client's key (a fresh nonce): the four
/// headers.
pub fn sign_read(
    keys: &keys::AgentKeys,
    method: &str,
    path: &str,
    ts: u64,
) -> [(&'static str, String); 4] {
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let sig = keys.sign(&read_auth::message(ts, &nonce, method, path));
    [
        (read_auth::KEY, keys.public_key_b64()),
        (read_auth::TS, ts.to_string()),
        (read_auth::NONCE, nonce),
        (read_auth::SIG, sig),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(h: [(&'static str, String); 4]) -> ReadAuth {
        let [(_, key), (_, ts), (_, nonce), (_, sig)] = h;
        ReadAuth {
            key: Some(key),
            ts: Some(ts),
            sig: Some(sig),
            nonce: Some(nonce),
        }
    }

    #[test]
    fn reads_need_the_channel_key_a_fresh_time_and_no_replay() {
        let g = MarketGuard::default();
        let client = keys::AgentKeys::generate();
        let other = keys::AgentKeys::generate();
        let ck = client.public_key_b64();
        let p = "/market/v1/channels/ch-1";
        let now = 1_000_000;
        let a = auth(sign_read(&client, "GET", p, now));
        g.check_read(&a, "GET", p, &ck, now + 5)
            .expect("signed read");
        // The same request again: a replay.
        assert!(g.check_read(&a, "GET", p, &ck, now + 6).is_err());
        // Another path, another key, too old, nothing at all: refused.
        let b = auth(sign_read(&client, "GET", p, now + 1));
        assert!(g
            .check_read(&b, "GET", "/market/v1/channels/ch-2", &ck, now)
            .is_err());
        let c = auth(sign_read(&other, "GET", p, now));
        assert!(g.check_read(&c, "GET", p, &ck, now).is_err());
        let d = auth(sign_read(&client, "GET", p, now - 120));
        assert!(g.check_read(&d, "GET", p, &ck, now).is_err());
        assert!(matches!(
            g.check_read(&ReadAuth::default(), "GET", p, &ck, now),
            Err(CoreError::UnsignedRead(_))
        ));
    }

    #[test]
    fn accepts_are_limited_per_address() {
        let g = MarketGuard::default();
        let ip: IpAddr = "10.0.0.1".parse().expect("ip");
        let other: IpAddr = "10.0.0.2".parse().expect("ip");
        for _ in 0..ACCEPTS_PER_WINDOW {
            g.admit_accept(ip, 100).expect("within the limit");
        }
        assert!(matches!(
            g.admit_accept(ip, 101),
            Err(CoreError::TooManyAccepts { .. })
        ));
        g.admit_accept(other, 101).expect("another address");
        g.admit_accept(ip, 100 + ACCEPT_WINDOW.as_secs())
            .expect("a new window");
    }
}
