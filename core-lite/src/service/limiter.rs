//! The AuthClient throttle: password guessing is slowed and bounded, and nobody can lock a
//! client out by failing with its key.
//!
//! The rules (the README states the bound they give):
//! - **Per source address** (the `clientAddr` host the hook and the monitor pass, an IPv6
//!   address counted by its /64; requests without one share one bucket): a budget of
//!   [`ADDRESS_FAILURES`] failed logins, one more every [`ADDRESS_REFILL`]. An address whose
//!   budget is spent is answered 429 `rate_limited` *without its password being looked at*
//!   until the budget refills. A check in flight holds one unit of the budget (given back when
//!   the password is right), so concurrent requests cannot overdraw it.
//! - **Global**: [`GLOBAL_FAILURES`] failed logins, refilled at [`GLOBAL_PER_SECOND`] per
//!   second. A check from an address that failed within [`RECENT_FAILURE_WINDOW`] needs a unit
//!   of it; when it is spent, such addresses get 429 unchecked, and an address with no recent
//!   failure is still checked, one request at a time.
//! - **Per client key**: no limit of its own, so failures with a key never refuse its right
//!   password from another address. A failure is answered after a delay of
//!   [`FAILURE_DELAY_STEP`] × the key's recent failures (one forgotten every
//!   [`ADDRESS_REFILL`]), at most [`FAILURE_DELAY_MAX`]; the right password is answered at
//!   once. The delay is waited out by the HTTP handler, holding no thread and no database
//!   connection.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] addresses and keys each (beyond that, the
//! settled entries are forgotten first, then all).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failed logins an address may make before it is refused (its budget).
pub const ADDRESS_FAILURES: u32 = 10;
/// An address's budget grows by one failure this often (so 10 per minute sustained).
pub const ADDRESS_REFILL: Duration = Duration::from_secs(6);
/// The global budget of failures from addresses that failed recently.
pub const GLOBAL_FAILURES: u32 = 100;
/// The global budget grows by this many failures per second.
pub const GLOBAL_PER_SECOND: u32 = 10;
/// An address that failed within this window needs a unit of the global budget.
pub const RECENT_FAILURE_WINDOW: Duration = Duration::from_secs(600);
/// A failure is delayed by this much per recent failure of its key...
pub const FAILURE_DELAY_STEP: Duration = Duration::from_millis(100);
/// ...and at most this much (below the adapters' 3 s timeout for a core call).
pub const FAILURE_DELAY_MAX: Duration = Duration::from_secs(2);
/// Most addresses and keys tracked.
pub const MAX_TRACKED: usize = 100_000;

/// Where a login attempt comes from, as the throttle counts it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Source(String);

impl Source {
    /// The source of a `clientAddr` (`ip`, `ip:port`, `[v6]:port`; `None`: unknown).
    pub fn of(client_addr: Option<&str>) -> Source {
        let Some(a) = client_addr else {
            return Source(String::new());
        };
        let host = host_of(a);
        Source(match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.to_string(),
            Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => v4.to_string(),
                None => {
                    let s = v6.segments();
                    format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
                }
            },
            Err(_) => host.to_string(),
        })
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("requests without clientAddr")
        } else {
            write!(f, "address {}", self.0)
        }
    }
}

/// Host part of `ip`, `ip:port` or `[v6]:port`.
fn host_of(a: &str) -> &str {
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => a,
    }
}

/// A token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn full(capacity: f64, now: Instant) -> Bucket {
        Bucket {
            tokens: capacity,
            at: now,
        }
    }

    fn refill(&mut self, capacity: f64, per_second: f64, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * per_second).min(capacity);
        self.at = now;
    }

    /// Time until one token is there.
    fn wait_for_one(&self, per_second: f64) -> Duration {
        Duration::from_secs_f64(((1.0 - self.tokens).max(0.0) / per_second).min(3600.0))
    }
}

#[derive(Clone, Copy, Debug)]
struct AddressState {
    budget: Bucket,
    /// Checks in flight, each holding one unit of the budget.
    in_flight: u32,
    last_failure: Option<Instant>,
}

impl AddressState {
    fn failed_recently(&self, now: Instant) -> bool {
        self.last_failure
            .is_some_and(|t| now.saturating_duration_since(t) < RECENT_FAILURE_WINDOW)
    }
}

/// A refusal: 429, with the time until a retry can be looked at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    pub source: Source,
    pub retry_after: Duration,
}

/// An admitted check, to be settled with [`AuthThrottle::passed`] or [`AuthThrottle::failed`].
#[derive(Debug)]
#[must_use = "settle the check with passed() or failed()"]
pub struct Ticket {
    source: Source,
    /// A unit of the global budget is held.
    global: bool,
}

#[derive(Debug)]
struct State {
    addresses: HashMap<Source, AddressState>,
    global: Bucket,
    /// Recent failures of each client key (forgotten one per [`ADDRESS_REFILL`]).
    keys: HashMap<String, Bucket>,
}

/// The throttle of one core (see the [module docs](self)).
#[derive(Debug)]
pub struct AuthThrottle {
    state: Mutex<State>,
}

impl Default for AuthThrottle {
    fn default() -> Self {
        let now = Instant::now();
        AuthThrottle {
            state: Mutex::new(State {
                addresses: HashMap::new(),
                global: Bucket::full(f64::from(GLOBAL_FAILURES), now),
                keys: HashMap::new(),
            }),
        }
    }
}

const ADDR_CAP: f64 = ADDRESS_FAILURES as f64;
const GLOBAL_CAP: f64 = GLOBAL_FAILURES as f64;
const GLOBAL_RATE: f64 = GLOBAL_PER_SECOND as f64;

fn addr_rate() -> f64 {
    1.0 / ADDRESS_REFILL.as_secs_f64()
}

impl AuthThrottle {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// May a login from `source` be checked now? Holds a unit of its budget (and of the
    /// global one when the address failed recently) until the check is settled.
    pub fn admit(&self, source: &Source, now: Instant) -> Result<Ticket, Refused> {
        let mut st = self.lock();
        if !st.addresses.contains_key(source) && st.addresses.len() >= MAX_TRACKED {
            st.addresses.retain(|_, a| {
                a.budget.refill(ADDR_CAP, addr_rate(), now);
                a.in_flight > 0 || a.budget.tokens < ADDR_CAP || a.failed_recently(now)
            });
            if st.addresses.len() >= MAX_TRACKED {
                st.addresses.clear();
            }
        }
        let State {
            addresses, global, ..
        } = &mut *st;
        let a = addresses.entry(source.clone()).or_insert(AddressState {
            budget: Bucket::full(ADDR_CAP, now),
            in_flight: 0,
            last_failure: None,
        });
        a.budget.refill(ADDR_CAP, addr_rate(), now);
        let refuse = |retry_after| Refused {
            source: source.clone(),
            retry_after,
        };
        if a.budget.tokens < 1.0 {
            return Err(refuse(a.budget.wait_for_one(addr_rate())));
        }
        global.refill(GLOBAL_CAP, GLOBAL_RATE, now);
        let recent = a.failed_recently(now);
        if global.tokens < 1.0 && (recent || a.in_flight > 0) {
            // The global budget is spent: only an address with no recent failure is
            // checked, one request at a time.
            return Err(refuse(global.wait_for_one(GLOBAL_RATE)));
        }
        if recent {
            global.tokens -= 1.0;
        }
        a.budget.tokens -= 1.0;
        a.in_flight += 1;
        Ok(Ticket {
            source: source.clone(),
            global: recent,
        })
    }

    /// The check found the right password (or could not be made): what it held is given
    /// back.
    pub fn passed(&self, t: Ticket) {
        let mut st = self.lock();
        if let Some(a) = st.addresses.get_mut(&t.source) {
            a.in_flight = a.in_flight.saturating_sub(1);
            a.budget.tokens = (a.budget.tokens + 1.0).min(ADDR_CAP);
        }
        if t.global {
            st.global.tokens = (st.global.tokens + 1.0).min(GLOBAL_CAP);
        }
    }

    /// The check failed for `client_key`: the units stay spent (an address with no recent
    /// failure spends a global unit now), the address counts as failed recently, and the
    /// answer waits for the returned delay.
    pub fn failed(&self, t: Ticket, client_key: &str, now: Instant) -> Duration {
        let mut st = self.lock();
        if let Some(a) = st.addresses.get_mut(&t.source) {
            a.in_flight = a.in_flight.saturating_sub(1);
            a.last_failure = Some(now);
        }
        if !t.global {
            st.global.refill(GLOBAL_CAP, GLOBAL_RATE, now);
            st.global.tokens = (st.global.tokens - 1.0).max(0.0);
        }
        let cap = f64::from(u32::MAX);
        if !st.keys.contains_key(client_key) && st.keys.len() >= MAX_TRACKED {
            // Key counts go down as time passes: keep those still counting.
            st.keys.retain(|_, k| {
                k.tokens -= now.saturating_duration_since(k.at).as_secs_f64() * addr_rate();
                k.at = now;
                k.tokens > 0.0
            });
            if st.keys.len() >= MAX_TRACKED {
                st.keys.clear();
            }
        }
        let k = st.keys.entry(client_key.to_string()).or_insert(Bucket {
            tokens: 0.0,
            at: now,
        });
        // Recent failures: one forgotten per ADDRESS_REFILL, this one added.
        let dt = now.saturating_duration_since(k.at).as_secs_f64();
        k.tokens = ((k.tokens - dt * addr_rate()).max(0.0) + 1.0).min(cap);
        k.at = now;
        FAILURE_DELAY_STEP
            .mul_f64(k.tokens.ceil())
            .min(FAILURE_DELAY_MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src(s: &str) -> Source {
        Source::of(Some(s))
    }

    #[test]
    fn host_of_strips_port() {
        // (Moved from the former service checks, where it tested `addr_host`.)
        assert_eq!(host_of("10.0.0.1:1194"), "10.0.0.1");
        assert_eq!(host_of("10.0.0.1"), "10.0.0.1");
        assert_eq!(host_of("[::1]:5"), "::1");
        assert_eq!(host_of("::1"), "::1");
    }

    #[test]
    fn sources_are_hosts_and_v6_prefixes() {
        assert_eq!(src("10.0.0.1:1194"), src("10.0.0.1"));
        assert_eq!(src("[2001:db8:1:2::5]:1194"), src("2001:db8:1:2:ffff::9"));
        assert_ne!(src("2001:db8:1:2::5"), src("2001:db8:1:3::5"));
        assert_eq!(src("[::ffff:10.0.0.1]:5"), src("10.0.0.1"));
        assert_eq!(Source::of(None).to_string(), "requests without clientAddr");
        assert_eq!(src("10.0.0.1:5").to_string(), "address 10.0.0.1");
    }

    #[test]
    fn an_address_is_refused_after_its_budget_and_recovers() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        let a = src("198.51.100.1");
        for _ in 0..ADDRESS_FAILURES {
            let ticket = t.admit(&a, now).expect("admitted");
            t.failed(ticket, "c-x", now);
        }
        let r = t.admit(&a, now).expect_err("budget spent");
        assert_eq!(r.retry_after, ADDRESS_REFILL);
        // Another address is checked (the key has no limit of its own).
        let ok = t.admit(&src("198.51.100.2"), now).expect("other address");
        t.passed(ok);
        // One more failure is allowed per ADDRESS_REFILL.
        let later = now + ADDRESS_REFILL;
        let ticket = t.admit(&a, later).expect("refilled");
        t.failed(ticket, "c-x", later);
        assert!(t.admit(&a, later).is_err());
    }

    #[test]
    fn checks_in_flight_hold_the_budget_and_a_pass_gives_it_back() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        let a = src("198.51.100.1");
        let held: Vec<Ticket> = (0..ADDRESS_FAILURES)
            .map(|_| t.admit(&a, now).expect("admitted"))
            .collect();
        assert!(t.admit(&a, now).is_err(), "no overdraw by concurrency");
        for h in held {
            t.passed(h);
        }
        let again = t.admit(&a, now).expect("given back");
        t.passed(again);
    }

    #[test]
    fn the_global_budget_refuses_only_addresses_that_failed() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        // Fresh addresses, one failure each, spend the global budget.
        for i in 0..GLOBAL_FAILURES {
            let a = src(&format!("10.1.{}.{}", i / 250, i % 250));
            let ticket = t.admit(&a, now).expect("fresh");
            t.failed(ticket, "c-x", now);
        }
        // An address that failed (its own budget is not spent) is refused now...
        let r = t
            .admit(&src("10.1.0.0"), now)
            .expect_err("global budget spent");
        assert!(r.retry_after > Duration::ZERO);
        // ...one with no recent failure is still checked, one request at a time.
        let clean = src("192.0.2.77");
        let first = t.admit(&clean, now).expect("clean address");
        assert!(
            t.admit(&clean, now).is_err(),
            "a second one at the same time"
        );
        t.failed(first, "c-x", now);
        assert!(t.admit(&clean, now).is_err(), "it failed: no longer clean");
        let other = t.admit(&src("192.0.2.78"), now).expect("another clean one");
        t.passed(other);
        // The budget refills.
        let later = now + Duration::from_secs(1);
        let ticket = t.admit(&src("10.1.0.0"), later).expect("refilled");
        t.passed(ticket);
        // Long after its last failure an address is clean again: checked even while the
        // global budget is spent (by fresh addresses, again).
        let much_later = now + RECENT_FAILURE_WINDOW;
        for i in 0..GLOBAL_FAILURES {
            let a = src(&format!("10.5.{}.{}", i / 250, i % 250));
            let ticket = t.admit(&a, much_later).expect("fresh");
            t.failed(ticket, "c-y", much_later);
        }
        assert!(t.admit(&src("10.5.0.0"), much_later).is_err());
        let ticket = t.admit(&src("10.1.0.0"), much_later).expect("clean again");
        t.passed(ticket);
    }

    #[test]
    fn failures_of_a_key_are_delayed_more_and_more_up_to_the_maximum() {
        let t = AuthThrottle::default();
        let now = Instant::now();
        let mut delays = Vec::new();
        for i in 0..30u8 {
            let ticket = t.admit(&src(&format!("10.2.0.{i}")), now).expect("fresh");
            delays.push(t.failed(ticket, "c-k", now));
        }
        assert_eq!(delays[0], FAILURE_DELAY_STEP);
        assert_eq!(delays[1], FAILURE_DELAY_STEP * 2);
        assert_eq!(delays[29], FAILURE_DELAY_MAX);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]));
        // Another key starts low; the key's count falls as time passes.
        let ticket = t.admit(&src("10.3.0.1"), now).expect("fresh");
        assert_eq!(t.failed(ticket, "c-other", now), FAILURE_DELAY_STEP);
        let much_later = now + ADDRESS_REFILL * 40;
        let ticket = t.admit(&src("10.3.0.2"), much_later).expect("fresh");
        assert_eq!(t.failed(ticket, "c-k", much_later), FAILURE_DELAY_STEP);
    }
}
