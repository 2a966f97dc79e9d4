//! The typed terms of a valid offering and the limits and constants of offerings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use service_api::SpeedLimits;

use crate::billing::BillingTerms;

/// `maxInactiveTime` when an offering does not give it: one day (seconds). A channel that
/// stays `activating` longer than this (the client never connects) is terminated.
pub const DEFAULT_MAX_INACTIVE_TIME_S: u64 = 86_400;
/// Largest offering (its compact JSON text).
pub const MAX_OFFERING_BYTES: usize = 64 * 1024;
/// Longest string value or object key anywhere in an offering (bytes).
pub const MAX_STRING_BYTES: usize = 1024;
/// Most entries in `additionalParams`.
pub const MAX_ADDITIONAL_PARAMS: usize = 64;
/// Longest product id (characters).
pub const MAX_PRODUCT_CHARS: usize = 128;
/// Deepest nesting of arrays/objects in an offering.
pub const MAX_DEPTH: usize = 16;
/// Base units per PRIX (money is integer base units everywhere but in offerings).
pub const BASE_UNITS_PER_PRIX: u64 = 100_000_000;
/// Decimal places of PRIX amounts in offerings.
pub const PRIX_DECIMALS: u32 = 8;
/// `serviceName` of the VPN module.
pub const VPN_SERVICE_NAME: &str = "Privatix VPN";
/// `unitName` the VPN module requires (10^6 bytes of tunnel traffic).
pub const VPN_UNIT_NAME: &str = "MB";
/// Fields the core fills in; an agent's input to
/// [`build_offering`](crate::offering::build_offering) must not contain them.
pub const CORE_FILLED_FIELDS: [&str; 4] = ["templateHash", "nonce", "agentPublicKey", "product"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BillingType {
    Prepaid,
    Postpaid,
}

impl BillingType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Prepaid => "prepaid",
            Self::Postpaid => "postpaid",
        }
    }
}

/// Typed view of a valid offering. Money in integer base units (1 PRIX = 10^8), times in
/// seconds, counts in units of service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfferingTerms {
    pub template_hash: String,
    pub product: String,
    pub agent_public_key: String,
    pub nonce: String,
    pub service_name: String,
    pub supply: u64,
    pub unit_name: String,
    pub unit_price: u64,
    pub setup_price: u64,
    pub min_units: u64,
    pub max_units: u64,
    pub billing_type: BillingType,
    /// Units per payment cheque (`billingInterval`; `billingFrequency` equals it when given).
    pub billing_interval: u64,
    pub max_billing_unit_lag: u64,
    pub max_suspend_time_s: u64,
    /// [`DEFAULT_MAX_INACTIVE_TIME_S`] when the offering does not give it.
    pub max_inactive_time_s: u64,
    pub free_units: u64,
    pub country: String,
    pub additional_params: BTreeMap<String, String>,
    pub speed: SpeedLimits,
}

impl OfferingTerms {
    /// The terms billing needs (money in base units, times in seconds). Deposits and amounts
    /// are computed from these by [`crate::billing`] only
    /// ([`min_deposit`](crate::billing::min_deposit),
    /// [`full_deposit`](crate::billing::full_deposit), [`cost`](crate::billing::cost)).
    pub fn billing_terms(&self) -> BillingTerms {
        BillingTerms {
            unit_price: self.unit_price,
            setup_price: self.setup_price,
            min_units: self.min_units,
            max_units: self.max_units,
            free_units: self.free_units,
            max_billing_unit_lag: self.max_billing_unit_lag,
            billing_interval: self.billing_interval,
            max_suspend_time_s: self.max_suspend_time_s,
            max_inactive_time_s: self.max_inactive_time_s,
        }
    }
}
