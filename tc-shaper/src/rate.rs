//! Rates, device names and the HTB rate/ceil rules of both plans.

use crate::error::ShapingError;

/// Smallest rate given to tc (bits/s).
pub const MIN_RATE_BPS: u64 = 8_000;

/// HTB rate (guarantee) and ceil (maximum) in bit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub rate_bps: u64,
    pub ceil_bps: u64,
}

impl Rate {
    /// The client's rule, from (min, max): None when there is no max (a minimum alone
    /// limits nothing on a single tunnel); the rate is the min (or the max) capped at the
    /// max.
    pub fn from_min_max(min: Option<u64>, max: Option<u64>) -> Option<Self> {
        let ceil = max?;
        Some(Self {
            rate_bps: min.unwrap_or(ceil).min(ceil),
            ceil_bps: ceil,
        })
    }

    /// rate = ceil = `bps` (a parent class).
    pub fn flat(bps: u64) -> Self {
        Self {
            rate_bps: bps,
            ceil_bps: bps,
        }
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mbit = |b: u64| format!("{}.{:03}", b / 1_000_000, (b % 1_000_000) / 1_000);
        write!(f, "{}-{} Mbit/s", mbit(self.rate_bps), mbit(self.ceil_bps))
    }
}

/// The server's rule for one direction of one client: rate (guarantee) and ceil
/// (maximum), or None when unlimited. The ceil is capped at the link capacity; without a
/// minimum the rate is 1/1000 of the ceil; both are at least [`MIN_RATE_BPS`] and
/// rate ≤ ceil.
pub fn class_rates(min: Option<u64>, max: Option<u64>, link_bps: u64) -> Option<(u64, u64)> {
    match (min, max) {
        (None, None) => None,
        (min, max) => {
            let ceil = max.unwrap_or(link_bps).min(link_bps).max(MIN_RATE_BPS);
            let rate = min.unwrap_or(ceil / 1000).clamp(MIN_RATE_BPS, ceil);
            Some((rate, ceil))
        }
    }
}

/// Parses a tc-style rate: `<n>[bit|kbit|mbit|gbit]` (SI, as tc uses) into bits/s.
pub fn parse_rate(s: &str) -> Result<u64, ShapingError> {
    let bad = || ShapingError::BadRate(s.chars().take(32).collect());
    let lower = s.trim().to_ascii_lowercase();
    let digits_end = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (n, unit) = lower.split_at(digits_end);
    let n: u64 = n.parse().map_err(|_| bad())?;
    let mul: u64 = match unit {
        "" | "bit" => 1,
        "kbit" => 1_000,
        "mbit" => 1_000_000,
        "gbit" => 1_000_000_000,
        _ => return Err(bad()),
    };
    let v = n.checked_mul(mul).ok_or_else(bad)?;
    if v == 0 {
        return Err(bad());
    }
    Ok(v)
}

/// Checks a network device name (IFNAMSIZ - 1 = 15).
pub fn check_dev(name: &str) -> Result<(), ShapingError> {
    if name.is_empty()
        || name.len() > 15
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
    {
        return Err(ShapingError::BadDevice(name.chars().take(32).collect()));
    }
    Ok(())
}

/// Default IFB name for a tun device: `ifb-<tun>`, cut to 15 characters.
pub fn default_ifb(tun: &str) -> String {
    let mut n = format!("ifb-{tun}");
    n.truncate(15);
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Moved from adapter-server's shaping.
    #[test]
    fn rates() {
        let ok = [
            ("1gbit", 1_000_000_000),
            ("100mbit", 100_000_000),
            ("512kbit", 512_000),
            ("1000bit", 1000),
            ("42", 42),
            ("10MBit", 10_000_000),
        ];
        for (s, want) in ok {
            assert_eq!(parse_rate(s).expect(s), want);
        }
        for s in [
            "",
            "0",
            "gbit",
            "1.5gbit",
            "1gbps",
            "-1bit",
            "99999999999999gbit",
        ] {
            assert!(parse_rate(s).is_err(), "{s:?}");
        }
    }

    /// Moved from adapter-server's shaping.
    #[test]
    fn devices() {
        assert!(check_dev("tun0").is_ok());
        assert!(check_dev("ifb-tun0").is_ok());
        for bad in ["", "a b", "sixteen-chars-xx", "tun0;rm"] {
            assert!(check_dev(bad).is_err(), "{bad:?}");
        }
        assert_eq!(default_ifb("tun0"), "ifb-tun0");
        assert_eq!(default_ifb("averylongtun123"), "ifb-averylongtu");
        assert!(check_dev(&default_ifb("averylongtun123")).is_ok());
    }

    /// Moved from adapter-server's shaping.
    #[test]
    fn class_rate_rules() {
        let link = 1_000_000_000;
        assert_eq!(class_rates(None, None, link), None);
        assert_eq!(
            class_rates(Some(1_000_000), Some(8_000_000), link),
            Some((1_000_000, 8_000_000))
        );
        assert_eq!(
            class_rates(None, Some(8_000_000), link),
            Some((8_000, 8_000_000))
        );
        assert_eq!(
            class_rates(None, Some(100_000_000), link),
            Some((100_000, 100_000_000))
        );
        // min only: ceil = link capacity
        assert_eq!(
            class_rates(Some(5_000_000), None, link),
            Some((5_000_000, link))
        );
        // max above link capacity is capped
        assert_eq!(
            class_rates(None, Some(2 * link), link),
            Some((link / 1000, link))
        );
        // min above max (core validates, but never give tc rate > ceil)
        assert_eq!(
            class_rates(Some(9_000_000), Some(8_000_000), link),
            Some((8_000_000, 8_000_000))
        );
    }

    /// Moved from adapter-client's shaping.
    #[test]
    fn rate_from_min_max() {
        assert_eq!(Rate::from_min_max(Some(1), None), None);
        assert_eq!(
            Rate::from_min_max(None, Some(8)),
            Some(Rate {
                rate_bps: 8,
                ceil_bps: 8
            })
        );
        assert_eq!(
            Rate::from_min_max(Some(2), Some(8)),
            Some(Rate {
                rate_bps: 2,
                ceil_bps: 8
            })
        );
        assert_eq!(
            Rate::from_min_max(Some(9), Some(8)),
            Some(Rate {
                rate_bps: 8,
                ceil_bps: 8
            })
        );
    }
}
