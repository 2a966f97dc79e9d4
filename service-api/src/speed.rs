//! Per-client speed limits: the VPN module's four `additionalParams` keys (decimal Mbit/s)
//! parsed exactly into bits per second.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Per-client speed limits in bits per second, from the offering's `additionalParams`.
/// Download = agent → client, upload = client → agent. `None` = no limit given.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SpeedLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_download_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_download_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_upload_bps: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_upload_bps: Option<u64>,
}

/// Keys of the VPN module's speed parameters (in `additionalParams`, decimal Mbit/s).
pub mod speed_keys {
    pub const MIN_UPLOAD: &str = "minUploadSpeed";
    pub const MAX_UPLOAD: &str = "maxUploadSpeed";
    pub const MIN_DOWNLOAD: &str = "minDownloadSpeed";
    pub const MAX_DOWNLOAD: &str = "maxDownloadSpeed";
    pub const ALL: [&str; 4] = [MIN_UPLOAD, MAX_UPLOAD, MIN_DOWNLOAD, MAX_DOWNLOAD];
}

/// Errors of [`parse_mbps`] and [`SpeedLimits::from_params`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpeedError {
    #[error("{field}: {value:?} is not a positive decimal number of Mbit/s")]
    NotPositiveDecimal { field: String, value: String },
    #[error("{field}: {value:?} is too large (at most 100000 Mbit/s)")]
    TooLarge { field: String, value: String },
    #[error("{min_field} ({min}) is greater than {max_field} ({max})")]
    MinAboveMax {
        min_field: String,
        min: String,
        max_field: String,
        max: String,
    },
}

/// Parses a decimal Mbit/s string ("8", "0.5", "12.25") into bits per second, exactly
/// (no floats). At most 6 fractional digits (1 bit/s resolution); must be > 0.
pub fn parse_mbps(field: &str, value: &str) -> Result<u64, SpeedError> {
    let bad = || SpeedError::NotPositiveDecimal {
        field: field.to_string(),
        value: value.chars().take(32).collect(),
    };
    if value.is_empty() || value.len() > 24 {
        return Err(bad());
    }
    let (int, frac) = match value.split_once('.') {
        Some((i, f)) => (i, f),
        None => (value, ""),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || frac.len() > 6
        || (value.contains('.') && frac.is_empty())
    {
        return Err(bad());
    }
    let int_v: u64 = int.parse().map_err(|_| bad())?;
    if int_v > 100_000 {
        return Err(SpeedError::TooLarge {
            field: field.to_string(),
            value: value.to_string(),
        });
    }
    let mut frac_v: u64 = 0;
    for i in 0..6 {
        let d = frac.as_bytes().get(i).map_or(0, |b| u64::from(b - b'0'));
        frac_v = frac_v * 10 + d;
    }
    let bps = int_v * 1_000_000 + frac_v;
    if bps == 0 {
        return Err(bad());
    }
    Ok(bps)
}

impl SpeedLimits {
    /// Reads the four speed keys from a string map (absent keys = no limit) and checks
    /// min ≤ max for each direction.
    pub fn from_params(params: &BTreeMap<String, String>) -> Result<Self, SpeedError> {
        let get = |k: &str| params.get(k).map(|v| parse_mbps(k, v)).transpose();
        let s = SpeedLimits {
            min_upload_bps: get(speed_keys::MIN_UPLOAD)?,
            max_upload_bps: get(speed_keys::MAX_UPLOAD)?,
            min_download_bps: get(speed_keys::MIN_DOWNLOAD)?,
            max_download_bps: get(speed_keys::MAX_DOWNLOAD)?,
        };
        for (min, max, kmin, kmax) in [
            (
                s.min_upload_bps,
                s.max_upload_bps,
                speed_keys::MIN_UPLOAD,
                speed_keys::MAX_UPLOAD,
            ),
            (
                s.min_download_bps,
                s.max_download_bps,
                speed_keys::MIN_DOWNLOAD,
                speed_keys::MAX_DOWNLOAD,
            ),
        ] {
            if let (Some(a), Some(b)) = (min, max) {
                if a > b {
                    return Err(SpeedError::MinAboveMax {
                        min_field: kmin.into(),
                        min: params.get(kmin).cloned().unwrap_or_default(),
                        max_field: kmax.into(),
                        max: params.get(kmax).cloned().unwrap_or_default(),
                    });
                }
            }
        }
        Ok(s)
    }

    pub fn is_unlimited(&self) -> bool {
        self.max_download_bps.is_none()
            && self.max_upload_bps.is_none()
            && self.min_download_bps.is_none()
            && self.min_upload_bps.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mbps_parses_exactly() {
        assert_eq!(parse_mbps("f", "8"), Ok(8_000_000));
        assert_eq!(parse_mbps("f", "0.5"), Ok(500_000));
        assert_eq!(parse_mbps("f", "12.000001"), Ok(12_000_001));
        assert_eq!(parse_mbps("f", "100000"), Ok(100_000_000_000));
        for bad in [
            "",
            "0",
            "0.0",
            "-1",
            "1.",
            ".5",
            "1e3",
            "1.0000001",
            " 1",
            "NaN",
            "1,5",
        ] {
            assert!(parse_mbps("f", bad).is_err(), "{bad:?} accepted");
        }
        assert!(matches!(
            parse_mbps("f", "100001"),
            Err(SpeedError::TooLarge { .. })
        ));
    }

    #[test]
    fn speed_limits_min_above_max_named() {
        let mut p = BTreeMap::new();
        p.insert("minDownloadSpeed".to_string(), "10".to_string());
        p.insert("maxDownloadSpeed".to_string(), "8".to_string());
        let e = SpeedLimits::from_params(&p).expect_err("min above max");
        assert!(e.to_string().contains("minDownloadSpeed"), "{e}");
        p.insert("minDownloadSpeed".to_string(), "2".to_string());
        let s = SpeedLimits::from_params(&p).expect("valid");
        assert_eq!(s.max_download_bps, Some(8_000_000));
        assert_eq!(s.min_download_bps, Some(2_000_000));
        assert_eq!(s.max_upload_bps, None);
    }
}
