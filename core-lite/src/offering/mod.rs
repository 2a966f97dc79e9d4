//! Offerings: validation against the offering template (schema, then the semantic rules of
//! DESIGN §2), the typed [`OfferingTerms`], building and signing an offering (agent) and
//! verifying a signed one (client).
//!
//! Every validation error is a [`FieldError`](crate::validation::FieldError) naming the JSON
//! pointer of the bad field, and validation reports all of them at once.
//!
//! The semantic rules (after the schema), each refused at the JSON pointer shown:
//!
//! | rule | pointer | why |
//! |---|---|---|
//! | prices: PRIX with at most 8 decimals, ≥ 0 | `/unitPrice`, `/setupPrice` | money is integer base units |
//! | counts and times: whole numbers ≥ 0 | the field | |
//! | `supply` ≥ 1 | `/supply` | an offering nobody can buy |
//! | `maxUnits` ≥ 1 | `/maxUnits` | an offering that sells nothing |
//! | `billingInterval` ≥ 1 | `/billingInterval` | a cheque every 0 units |
//! | `minUnits` ≤ `maxUnits` | `/minUnits` | the agent cannot expect to sell more than it sells |
//! | `freeUnits` ≤ `maxUnits` | `/freeUnits` | free units beyond what is sold (`freeUnits` = `maxUnits` is a free offering) |
//! | postpaid, with billable units (`maxUnits` > `freeUnits`): `billingInterval` ≤ `maxUnits − freeUnits` | `/billingInterval` | the client pays after each interval of billable units: no payment would ever be due (prepaid pays ahead, capped at `maxUnits`: any interval) |
//! | postpaid: `maxBillingUnitLag` ≥ `billingInterval` | `/maxBillingUnitLag` | the client pays after each interval used; a smaller lag suspends it before it is due to pay (prepaid pays ahead: any lag) |
//! | full deposit `setupPrice + (maxUnits − freeUnits)·unitPrice` fits 64 bits | `/unitPrice` | every deposit and cheque is a u64 of base units |
//! | `billingFrequency`, when given, = `billingInterval` | `/billingFrequency` | one interval |
//!
//! A free offering (`unitPrice` 0), a trial (`freeUnits` > 0) and a `setupPrice` with any
//! `unitPrice` are all valid; how deposits and payments follow from the prices is in
//! [`crate::billing`].
//!
//! Quirks of the specification's template and how they are handled here:
//! - `required` names `billingInterval` and `product` without defining them in `properties`;
//!   the schema therefore only demands their presence, and this module checks their type
//!   (`billingInterval`: a whole number ≥ 1; `product`: a string of 1–128 characters).
//! - `billingFrequency` is optional; when present it must equal `billingInterval`.
//! - `maxInactiveTime` is optional; absent means [`DEFAULT_MAX_INACTIVE_TIME_S`].
//! - Times are seconds (the schema's descriptions), not minutes (the uiSchema help text).
//!
//! | module | holds |
//! |---|---|
//! | `terms` | [`OfferingTerms`], [`BillingType`], the limits |
//! | `rules` | [`validate_offering`]: the schema, then the semantic rules |
//! | `decimal` | exact PRIX amounts and whole numbers |
//! | `country` | ISO 3166-1 alpha-2 codes |
//! | `signed` | [`build_offering`] (agent), [`verify_offering`] (client) |

mod country;
mod decimal;
mod rules;
mod signed;
mod terms;

pub use country::{is_country_code, ISO_3166_ALPHA2};
pub use decimal::{prix_to_base_units, whole_number};
pub use rules::{is_param_key, is_uuid_v4, validate_offering};
pub use service_api::market::SignedOffering;
pub use signed::{build_offering, offering_hash, verify_offering, OfferingError};
pub use terms::{
    BillingType, OfferingTerms, BASE_UNITS_PER_PRIX, CORE_FILLED_FIELDS,
    DEFAULT_MAX_INACTIVE_TIME_S, MAX_ADDITIONAL_PARAMS, MAX_DEPTH, MAX_OFFERING_BYTES,
    MAX_PRODUCT_CHARS, MAX_STRING_BYTES, PRIX_DECIMALS, VPN_SERVICE_NAME, VPN_UNIT_NAME,
};

#[cfg(test)]
mod tests;
