//! The failed-login limiter of AuthClient: failures counted per client key and per address
//! in a fixed window, in bounded memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed AuthClient attempts per client key or per address within [`FAIL_WINDOW`].
pub const MAX_AUTH_FAILURES: u32 = 10;
pub const FAIL_WINDOW: Duration = Duration::from_secs(60);

/// Counts failed logins per key / address in a fixed window (bounded memory).
#[derive(Default)]
pub(crate) struct FailureLimiter {
    map: Mutex<HashMap<String, (u32, Instant)>>,
}

impl FailureLimiter {
    const MAX_ENTRIES: usize = 100_000;

    pub(crate) fn blocked(&self, key: &str) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .is_some_and(|(n, since)| *n >= MAX_AUTH_FAILURES && since.elapsed() < FAIL_WINDOW)
    }

    pub(crate) fn fail(&self, key: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX_ENTRIES {
            map.retain(|_, (_, since)| since.elapsed() < FAIL_WINDOW);
            if map.len() >= Self::MAX_ENTRIES {
                map.clear();
            }
        }
        let e = map.entry(key.to_string()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= FAIL_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }

    pub(crate) fn reset(&self, key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_blocks_after_max_failures_and_resets() {
        let l = FailureLimiter::default();
        for _ in 0..MAX_AUTH_FAILURES - 1 {
            l.fail("k:x");
        }
        assert!(!l.blocked("k:x"));
        l.fail("k:x");
        assert!(l.blocked("k:x"));
        assert!(!l.blocked("k:y"));
        l.reset("k:x");
        assert!(!l.blocked("k:x"));
    }
}
