//! Choosing an offering and a deposit: the filters of `up` (`--offering`, `--max-price`,
//! `--country`), the order offerings are shown in (cheapest first), the table a user picks
//! from, and amounts in PRIX. Pure functions.

use service_api::OfferingSummary;

/// Base units per PRIX.
pub const BASE_UNITS_PER_PRIX: u64 = 100_000_000;

/// The filters of `up`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filters {
    /// An offering hash or a prefix of it (at least 8 hex digits).
    pub offering: Option<String>,
    /// Highest unit price, base units.
    pub max_price: Option<u64>,
    /// ISO 3166-1 alpha-2, any case.
    pub country: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PickError {
    #[error("--offering {0:?}: give the offering's hash or at least its first 8 hex digits")]
    BadPrefix(String),
    #[error("--offering {prefix:?} matches {count} offerings: give more of the hash")]
    Ambiguous { prefix: String, count: usize },
    #[error("--deposit {0:?}: give base units (an integer), `min` or `full`")]
    BadDeposit(String),
    #[error("the deposit {deposit} is below the offering's minimum deposit {min} ({})", prix(*min))]
    BelowMinimum { deposit: u64, min: u64 },
}

/// The offerings that pass the filters, cheapest first (unit price, then setup price, then
/// hash, so the order never depends on the agent's list).
pub fn matching<'a>(
    offers: &'a [OfferingSummary],
    f: &Filters,
) -> Result<Vec<&'a OfferingSummary>, PickError> {
    if let Some(p) = &f.offering {
        let p = p.to_ascii_lowercase();
        if p.len() < 8 || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(PickError::BadPrefix(p));
        }
    }
    let mut v: Vec<&OfferingSummary> = offers
        .iter()
        .filter(|o| {
            f.offering
                .as_ref()
                .is_none_or(|p| o.offering_hash.starts_with(&p.to_ascii_lowercase()))
        })
        .filter(|o| f.max_price.is_none_or(|m| o.unit_price <= m))
        .filter(|o| {
            f.country
                .as_ref()
                .is_none_or(|c| o.country.eq_ignore_ascii_case(c.trim()))
        })
        .collect();
    v.sort_by(|a, b| {
        (a.unit_price, a.setup_price, &a.offering_hash).cmp(&(
            b.unit_price,
            b.setup_price,
            &b.offering_hash,
        ))
    });
    v.dedup_by(|a, b| a.offering_hash == b.offering_hash);
    if let Some(p) = &f.offering {
        if v.len() > 1 {
            return Err(PickError::Ambiguous {
                prefix: p.clone(),
                count: v.len(),
            });
        }
    }
    Ok(v)
}

/// Reads a deposit as given to `--deposit` or at the prompt: base units, `min` or `full`
/// (an empty answer is `full`); never below the offering's minimum deposit.
pub fn parse_deposit(text: &str, o: &OfferingSummary) -> Result<u64, PickError> {
    let t = text.trim();
    let deposit = match t.to_ascii_lowercase().as_str() {
        "" | "full" => o.full_deposit,
        "min" => o.min_deposit,
        _ => t
            .parse::<u64>()
            .map_err(|_| PickError::BadDeposit(t.to_string()))?,
    };
    if deposit < o.min_deposit {
        return Err(PickError::BelowMinimum {
            deposit,
            min: o.min_deposit,
        });
    }
    Ok(deposit)
}

/// An amount in base units as PRIX (`0.001 PRIX`, `12 PRIX`): exact, no float.
pub fn prix(base_units: u64) -> String {
    format!("{} PRIX", prix_number(base_units))
}

/// The number of [`prix`] without the unit (`0.001`, `12`).
pub fn prix_number(base_units: u64) -> String {
    let whole = base_units / BASE_UNITS_PER_PRIX;
    let frac = base_units % BASE_UNITS_PER_PRIX;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = format!("{frac:08}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// The first 8 hex digits of an offering hash: what the table shows and the shortest
/// prefix `--offering` takes.
pub fn short(hash: &str) -> &str {
    hash.get(..8).unwrap_or(hash)
}

/// Speeds as `down / up Mbit/s` (`-` for a direction the offering does not bound).
pub fn speeds(o: &OfferingSummary) -> String {
    format!(
        "{} / {}",
        o.max_download_mbps.as_deref().unwrap_or("-"),
        o.max_upload_mbps.as_deref().unwrap_or("-")
    )
}

/// The table a user picks from: one numbered row per offering, in the given order.
pub fn table(offers: &[&OfferingSummary]) -> String {
    let header = [
        "#",
        "OFFERING",
        "COUNTRY",
        "PRICE",
        "SETUP",
        "DOWN/UP Mbit/s",
        "UNITS",
        "BILLING",
        "MIN DEPOSIT",
    ];
    let rows: Vec<[String; 9]> = offers
        .iter()
        .enumerate()
        .map(|(i, o)| {
            [
                (i + 1).to_string(),
                short(&o.offering_hash).to_string(),
                o.country.clone(),
                format!("{}/{}", prix(o.unit_price), o.unit_name),
                prix(o.setup_price),
                speeds(o),
                format!("{}-{} {}", o.min_units, o.max_units, o.unit_name),
                format!("{}/{}", o.billing_type, o.billing_interval),
                prix(o.min_deposit),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, (c, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  "));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for r in &rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn offer(hash: char, price: u64, setup: u64, country: &str) -> OfferingSummary {
        OfferingSummary {
            offering_hash: hash.to_string().repeat(64),
            market_url: "http://10.77.0.1:7710".into(),
            service_name: "Privatix VPN".into(),
            country: country.into(),
            unit_name: "MB".into(),
            unit_price: price,
            setup_price: setup,
            min_units: 1,
            max_units: 100,
            free_units: 0,
            billing_type: "prepaid".into(),
            billing_interval: 10,
            min_deposit: setup + price,
            full_deposit: setup + 100 * price,
            min_download_mbps: Some("1".into()),
            max_download_mbps: Some("8".into()),
            min_upload_mbps: Some("1".into()),
            max_upload_mbps: Some("4".into()),
        }
    }

    fn hashes(v: &[&OfferingSummary]) -> String {
        v.iter().map(|o| &o.offering_hash[..1]).collect()
    }

    #[test]
    fn filters_and_order() {
        let offers = [
            offer('a', 300, 0, "DE"),
            offer('b', 100, 50, "NL"),
            offer('c', 100, 0, "de"),
            offer('d', 200, 0, "DE"),
        ];
        let all = Filters::default();
        for (f, want) in [
            (all.clone(), Ok("cbda")),
            (
                Filters {
                    max_price: Some(200),
                    ..all.clone()
                },
                Ok("cbd"),
            ),
            (
                Filters {
                    country: Some(" de".into()),
                    ..all.clone()
                },
                Ok("cda"),
            ),
            (
                Filters {
                    offering: Some("DDDDDDDD".into()),
                    ..all.clone()
                },
                Ok("d"),
            ),
            (
                Filters {
                    offering: Some("dddddddd".into()),
                    country: Some("NL".into()),
                    ..all.clone()
                },
                Ok(""),
            ),
            (
                Filters {
                    offering: Some("ddd".into()),
                    ..all.clone()
                },
                Err(PickError::BadPrefix("ddd".into())),
            ),
            (
                Filters {
                    offering: Some("dddddddx".into()),
                    ..all.clone()
                },
                Err(PickError::BadPrefix("dddddddx".into())),
            ),
        ] {
            assert_eq!(
                matching(&offers, &f).map(|v| hashes(&v)),
                want.map(str::to_string),
                "{f:?}"
            );
        }
        let mut twins = offers.to_vec();
        twins.push(offer('e', 1, 0, "DE"));
        twins[4].offering_hash = format!("{}{}", "d".repeat(8), "e".repeat(56));
        assert_eq!(
            matching(
                &twins,
                &Filters {
                    offering: Some("dddddddd".into()),
                    ..all
                }
            )
            .map(|v| v.len()),
            Err(PickError::Ambiguous {
                prefix: "dddddddd".into(),
                count: 2
            })
        );
    }

    #[test]
    fn deposits() {
        let o = offer('a', 100_000, 500, "DE");
        assert_eq!(parse_deposit("", &o), Ok(10_000_500));
        assert_eq!(parse_deposit(" FULL ", &o), Ok(10_000_500));
        assert_eq!(parse_deposit("min", &o), Ok(100_500));
        assert_eq!(parse_deposit("200000", &o), Ok(200_000));
        assert_eq!(
            parse_deposit("100", &o),
            Err(PickError::BelowMinimum {
                deposit: 100,
                min: 100_500
            })
        );
        assert_eq!(
            parse_deposit("0.5", &o),
            Err(PickError::BadDeposit("0.5".into()))
        );
        assert_eq!(
            parse_deposit("-1", &o),
            Err(PickError::BadDeposit("-1".into()))
        );
    }

    #[test]
    fn prix_is_exact() {
        for (b, want) in [
            (0, "0 PRIX"),
            (100_000, "0.001 PRIX"),
            (1, "0.00000001 PRIX"),
            (250_000_000, "2.5 PRIX"),
            (u64::MAX, "184467440737.09551615 PRIX"),
        ] {
            assert_eq!(prix(b), want);
        }
    }

    #[test]
    fn table_lists_what_a_buyer_compares() {
        let a = offer('a', 100_000, 0, "DE");
        let b = offer('b', 200_000, 100_000_000, "NL");
        let t = table(&[&a, &b]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(lines[0].starts_with("#  OFFERING  COUNTRY  PRICE"), "{t}");
        assert!(
            lines[1].starts_with("1  aaaaaaaa  DE       0.001 PRIX/MB"),
            "{t}"
        );
        assert!(lines[2].contains("1 PRIX"), "setup price: {t}");
        assert!(lines[1].contains("8 / 4"), "speeds: {t}");
        assert!(
            lines.iter().all(|l| l.len() < 98),
            "fits a 100-column terminal: {t}"
        );
        assert!(lines[1].contains("prepaid/10"), "billing: {t}");
        assert!(lines[1].contains("1-100 MB"), "units: {t}");
    }
}
