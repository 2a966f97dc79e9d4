//! Offerings: validation against the offering template (schema, then the semantic rules of
//! DESIGN §2), the typed [`OfferingTerms`], building and signing an offering (agent) and
//! verifying a signed one (client).
//!
//! Every validation error is a [`FieldError`] naming the JSON pointer of the bad field, and
//! validation reports all of them at once.
//!
//! Quirks of the specification's template and how they are handled here:
//! - `required` names `billingInterval` and `product` without defining them in `properties`;
//!   the schema therefore only demands their presence, and this module checks their type
//!   (`billingInterval`: a whole number ≥ 1; `product`: a string of 1–128 characters).
//! - `billingFrequency` is optional; when present it must equal `billingInterval`.
//! - `maxInactiveTime` is optional; absent means [`DEFAULT_MAX_INACTIVE_TIME_S`].
//! - Times are seconds (the schema's descriptions), not minutes (the uiSchema help text).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::keys::{self, AgentKeys};
use crate::template::{self, child_pointer, TemplateError};
use service_api::{parse_mbps, speed_keys, SpeedError, SpeedLimits};

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
/// Fields the core fills in; an agent's input to [`build_offering`] must not contain them.
pub const CORE_FILLED_FIELDS: [&str; 4] = ["templateHash", "nonce", "agentPublicKey", "product"];

/// One bad field of an offering or access message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// JSON pointer (RFC 6901) of the field, e.g. `/additionalParams/maxDownloadSpeed`;
    /// `""` is the whole document.
    pub pointer: String,
    pub message: String,
}

impl FieldError {
    pub fn new(pointer: &str, message: impl Into<String>) -> Self {
        FieldError {
            pointer: pointer.to_string(),
            message: message.into(),
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.pointer.is_empty() {
            write!(f, "(document): {}", self.message)
        } else {
            write!(f, "{}: {}", self.pointer, self.message)
        }
    }
}

impl std::error::Error for FieldError {}

/// All validation errors of a document (never empty when returned as an error).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invalid(pub Vec<FieldError>);

impl Invalid {
    /// True when some error names exactly this pointer.
    pub fn has_pointer(&self, pointer: &str) -> bool {
        self.0.iter().any(|e| e.pointer == pointer)
    }
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// Errors of building and verifying offerings.
#[derive(Debug, thiserror::Error)]
pub enum OfferingError {
    #[error("unknown offering template {hash}: register its module first")]
    UnknownTemplate { hash: String },
    #[error("offering signature rejected: {reason}")]
    BadSignature { reason: String },
    #[error("invalid offering: {0}")]
    Invalid(#[from] Invalid),
    #[error("offering template: {0}")]
    Template(#[from] TemplateError),
}

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
    /// Smallest deposit that activates a channel: setupPrice + minUnits · unitPrice
    /// (base units; `None` on overflow).
    pub fn min_deposit(&self) -> Option<u64> {
        self.min_units
            .checked_mul(self.unit_price)?
            .checked_add(self.setup_price)
    }

    /// Deposit that buys every unit: setupPrice + maxUnits · unitPrice (`None` on overflow).
    pub fn full_deposit(&self) -> Option<u64> {
        self.max_units
            .checked_mul(self.unit_price)?
            .checked_add(self.setup_price)
    }
}

pub use service_api::market::SignedOffering;

/// Lowercase hex SHA-256 of the offering's JCS form.
pub fn offering_hash(offering: &Value) -> Result<String, TemplateError> {
    template::template_hash(offering)
}

// ---------------------------------------------------------------------------------------
// Exact decimal numbers.

/// A JSON number as PRIX → integer base units (1 PRIX = 10^8), exactly: the number's
/// shortest decimal text is converted with integer arithmetic only. More than 8 decimals,
/// negative values, non-numbers and values beyond u64 are errors at `pointer`.
pub fn prix_to_base_units(pointer: &str, v: &Value) -> Result<u64, FieldError> {
    number_to_scaled(pointer, v, PRIX_DECIMALS)
}

/// A JSON number that must be a non-negative whole number fitting u64 (`1.0` is fine, `1.5`
/// is not).
pub fn whole_number(pointer: &str, v: &Value) -> Result<u64, FieldError> {
    number_to_scaled(pointer, v, 0)
}

/// `v · 10^scale` as an exact u64, from the decimal text of the JSON number.
fn number_to_scaled(pointer: &str, v: &Value, scale: u32) -> Result<u64, FieldError> {
    let Value::Number(n) = v else {
        return Err(FieldError::new(pointer, "must be a number"));
    };
    let text = n.to_string();
    decimal_text_to_scaled(&text, scale).map_err(|e| {
        let msg = match e {
            DecimalError::Negative => "must not be negative".to_string(),
            DecimalError::TooPrecise if scale == 0 => {
                format!(
                    "must be a whole number (got {})",
                    template::truncate(&text, 40)
                )
            }
            DecimalError::TooPrecise => format!(
                "at most {scale} decimal places allowed (1 PRIX = 10^{scale} base units), got {}",
                template::truncate(&text, 40)
            ),
            DecimalError::TooLarge if scale == 0 => format!(
                "too large (at most {}), got {}",
                u64::MAX,
                template::truncate(&text, 40)
            ),
            DecimalError::TooLarge => format!(
                "too large (at most {} base units), got {}",
                u64::MAX,
                template::truncate(&text, 40)
            ),
            DecimalError::Malformed => {
                format!("not a decimal number: {}", template::truncate(&text, 40))
            }
        };
        FieldError::new(pointer, msg)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecimalError {
    Negative,
    TooPrecise,
    TooLarge,
    Malformed,
}

/// Parses JSON number text (`-?int(.frac)?([eE][+-]?exp)?`) into `value · 10^scale` exactly.
fn decimal_text_to_scaled(text: &str, scale: u32) -> Result<u64, DecimalError> {
    let (negative, rest) = match text.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, text),
    };
    let (mantissa, exp) = match rest.find(['e', 'E']) {
        Some(i) => {
            let e = &rest[i + 1..];
            let e = e.strip_prefix('+').unwrap_or(e);
            let (eneg, edigits) = match e.strip_prefix('-') {
                Some(d) => (true, d),
                None => (false, e),
            };
            if edigits.is_empty()
                || edigits.len() > 6
                || !edigits.bytes().all(|b| b.is_ascii_digit())
            {
                return Err(DecimalError::Malformed);
            }
            let mag: i64 = edigits.parse().map_err(|_| DecimalError::Malformed)?;
            (&rest[..i], if eneg { -mag } else { mag })
        }
        None => (rest, 0),
    };
    let (int, frac) = match mantissa.split_once('.') {
        Some((i, f)) => (i, f),
        None => (mantissa, ""),
    };
    if int.is_empty()
        || !int.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
        || (mantissa.contains('.') && frac.is_empty())
    {
        return Err(DecimalError::Malformed);
    }
    // value = digits · 10^shift
    let mut digits: String = format!("{int}{frac}");
    let mut shift: i64 = exp - frac.len() as i64 + i64::from(scale);
    // Drop trailing zeros into the exponent, then leading zeros.
    while digits.len() > 1 && digits.ends_with('0') {
        digits.pop();
        shift += 1;
    }
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(0); // zero, including -0
    }
    if negative {
        return Err(DecimalError::Negative);
    }
    if shift < 0 {
        // Non-zero digits below the unit: more precision than allowed.
        return Err(DecimalError::TooPrecise);
    }
    if digits.len() as i64 + shift > 20 {
        return Err(DecimalError::TooLarge);
    }
    let mut v: u64 = digits.parse().map_err(|_| DecimalError::TooLarge)?;
    for _ in 0..shift {
        v = v.checked_mul(10).ok_or(DecimalError::TooLarge)?;
    }
    Ok(v)
}

// ---------------------------------------------------------------------------------------
// Validation.

/// Validates an offering against the offering template (`{"schema":…,"uiSchema":…}`):
/// JSON Schema first (every error with its instance pointer), then the semantic rules.
/// Returns the typed terms, or every error found.
pub fn validate_offering(template: &Value, offering: &Value) -> Result<OfferingTerms, Invalid> {
    let one = |pointer: &str, msg: String| Invalid(vec![FieldError::new(pointer, msg)]);
    let size = serde_json::to_string(offering)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_OFFERING_BYTES {
        return Err(one(
            "",
            format!("offering is larger than {MAX_OFFERING_BYTES} bytes"),
        ));
    }
    let Some(obj) = offering.as_object() else {
        return Err(one("", "an offering must be a JSON object".into()));
    };
    let mut errors = Vec::new();
    check_bounds(offering, "", 0, &mut errors);
    if !errors.is_empty() {
        return Err(Invalid(errors));
    }

    let Some(schema) = template.get("schema") else {
        return Err(one("", "the offering template has no `schema`".into()));
    };
    let validator = template::compile_schema(schema, "offering template /schema")
        .map_err(|e| one("", format!("cannot validate: {e}")))?;
    let mut errors = template::schema_errors(&validator, offering);

    let expected_hash = template::template_hash(template)
        .map_err(|e| one("", format!("cannot hash the offering template: {e}")))?;
    let mut sem = Semantic {
        obj,
        errors: Vec::new(),
    };
    let terms = sem.terms(&expected_hash);
    // Schema errors first; a semantic error on a field the schema already rejected adds
    // nothing.
    for e in sem.errors {
        if !errors.iter().any(|s| s.pointer == e.pointer) {
            errors.push(e);
        }
    }
    match terms {
        Some(t) if errors.is_empty() => Ok(t),
        _ => {
            if errors.is_empty() {
                // Cannot happen (terms are None only after an error); stay closed anyway.
                errors.push(FieldError::new("", "invalid offering"));
            }
            Err(Invalid(errors))
        }
    }
}

/// Size bounds: strings and keys ≤ [`MAX_STRING_BYTES`], nesting ≤ [`MAX_DEPTH`].
fn check_bounds(v: &Value, pointer: &str, depth: usize, errors: &mut Vec<FieldError>) {
    if errors.len() >= 64 {
        return;
    }
    if depth > MAX_DEPTH {
        errors.push(FieldError::new(
            pointer,
            format!("nested deeper than {MAX_DEPTH} levels"),
        ));
        return;
    }
    match v {
        Value::String(s) if s.len() > MAX_STRING_BYTES => errors.push(FieldError::new(
            pointer,
            format!("string longer than {MAX_STRING_BYTES} bytes"),
        )),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                check_bounds(item, &format!("{pointer}/{i}"), depth + 1, errors);
            }
        }
        Value::Object(map) => {
            for (k, item) in map {
                if k.len() > MAX_STRING_BYTES {
                    errors.push(FieldError::new(
                        pointer,
                        format!("a field name is longer than {MAX_STRING_BYTES} bytes"),
                    ));
                    continue;
                }
                check_bounds(item, &child_pointer(pointer, k), depth + 1, errors);
            }
        }
        _ => {}
    }
}

/// The semantic checks; collects errors and yields the terms when every field was usable.
struct Semantic<'a> {
    obj: &'a Map<String, Value>,
    errors: Vec<FieldError>,
}

impl<'a> Semantic<'a> {
    fn err(&mut self, pointer: &str, msg: impl Into<String>) {
        self.errors.push(FieldError::new(pointer, msg));
    }

    fn get(&mut self, name: &str, required: bool) -> Option<&'a Value> {
        let obj: &'a Map<String, Value> = self.obj;
        let v = obj.get(name);
        if v.is_none() && required {
            self.err(&format!("/{name}"), "required field is missing");
        }
        v
    }

    fn string(&mut self, name: &str) -> Option<String> {
        match self.get(name, true)? {
            Value::String(s) => Some(s.clone()),
            _ => {
                self.err(&format!("/{name}"), "must be a string");
                None
            }
        }
    }

    fn whole(&mut self, name: &str, required: bool) -> Option<u64> {
        let v = self.get(name, required)?.clone();
        match whole_number(&format!("/{name}"), &v) {
            Ok(n) => Some(n),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn prix(&mut self, name: &str) -> Option<u64> {
        let v = self.get(name, true)?.clone();
        match prix_to_base_units(&format!("/{name}"), &v) {
            Ok(n) => Some(n),
            Err(e) => {
                self.errors.push(e);
                None
            }
        }
    }

    fn terms(&mut self, expected_template_hash: &str) -> Option<OfferingTerms> {
        let template_hash = self.string("templateHash").filter(|h| {
            if !template::is_hash_hex(h) {
                self.err("/templateHash", "must be 64 lowercase hex digits (SHA-256)");
                false
            } else if h != expected_template_hash {
                self.err(
                    "/templateHash",
                    format!(
                        "does not match the offering template (its hash is {expected_template_hash})"
                    ),
                );
                false
            } else {
                true
            }
        });
        let product = self.string("product").filter(|p| {
            let n = p.chars().count();
            if n == 0 || n > MAX_PRODUCT_CHARS {
                self.err(
                    "/product",
                    format!("must be 1 to {MAX_PRODUCT_CHARS} characters"),
                );
                false
            } else if p.chars().any(char::is_control) {
                self.err("/product", "must not contain control characters");
                false
            } else {
                true
            }
        });
        let agent_public_key =
            self.string("agentPublicKey")
                .filter(|k| match keys::parse_public_key(k) {
                    Ok(_) => true,
                    Err(e) => {
                        self.err(
                            "/agentPublicKey",
                            format!("must be the base64 of a 32-byte ed25519 public key ({e})"),
                        );
                        false
                    }
                });
        let nonce = self.string("nonce").filter(|n| {
            if is_uuid_v4(n) {
                true
            } else {
                self.err(
                    "/nonce",
                    "must be a UUID version 4 (xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx)",
                );
                false
            }
        });
        let service_name = self.string("serviceName");
        let unit_name = self.string("unitName").filter(|u| {
            if service_name.as_deref() == Some(VPN_SERVICE_NAME) && u != VPN_UNIT_NAME {
                self.err(
                    "/unitName",
                    format!("must be {VPN_UNIT_NAME:?} for {VPN_SERVICE_NAME:?}"),
                );
                false
            } else if u.is_empty() {
                self.err("/unitName", "must not be empty");
                false
            } else {
                true
            }
        });

        let supply = self.whole("supply", true).filter(|&s| {
            if s == 0 {
                self.err("/supply", "must be at least 1");
            }
            s >= 1
        });
        let unit_price = self.prix("unitPrice");
        let setup_price = self.prix("setupPrice");
        let min_units = self.whole("minUnits", true);
        let max_units = self.whole("maxUnits", true).filter(|&m| {
            if m == 0 {
                self.err("/maxUnits", "must be at least 1");
            }
            m >= 1
        });
        if let (Some(lo), Some(hi)) = (min_units, max_units) {
            if lo > hi {
                self.err("/minUnits", format!("must not exceed maxUnits ({hi})"));
            }
        }
        let billing_type = match self.get("billingType", true) {
            Some(Value::String(s)) if s == "prepaid" => Some(BillingType::Prepaid),
            Some(Value::String(s)) if s == "postpaid" => Some(BillingType::Postpaid),
            Some(_) => {
                self.err("/billingType", "must be \"prepaid\" or \"postpaid\"");
                None
            }
            None => None,
        };
        let billing_interval = self.whole("billingInterval", true).filter(|&b| {
            if b == 0 {
                self.err("/billingInterval", "must be at least 1");
            }
            b >= 1
        });
        if let Some(freq) = self.whole("billingFrequency", false) {
            if let Some(interval) = billing_interval {
                if freq != interval {
                    self.err(
                        "/billingFrequency",
                        format!("must equal billingInterval ({interval}) when given"),
                    );
                }
            }
        }
        let max_billing_unit_lag = self.whole("maxBillingUnitLag", true);
        let max_suspend_time_s = self.whole("maxSuspendTime", true);
        let max_inactive_time_s = if self.obj.contains_key("maxInactiveTime") {
            self.whole("maxInactiveTime", false)
        } else {
            Some(DEFAULT_MAX_INACTIVE_TIME_S)
        };
        let free_units = self.whole("freeUnits", true);
        let country = self.string("country").filter(|c| {
            if is_country_code(c) {
                true
            } else {
                self.err(
                    "/country",
                    "must be an assigned ISO 3166-1 alpha-2 code in upper case (e.g. \"DE\")",
                );
                false
            }
        });
        let (additional_params, speed) = match self.additional_params() {
            Some((p, s)) => (Some(p), Some(s)),
            None => (None, None),
        };

        Some(OfferingTerms {
            template_hash: template_hash?,
            product: product?,
            agent_public_key: agent_public_key?,
            nonce: nonce?,
            service_name: service_name?,
            supply: supply?,
            unit_name: unit_name?,
            unit_price: unit_price?,
            setup_price: setup_price?,
            min_units: min_units?,
            max_units: max_units?,
            billing_type: billing_type?,
            billing_interval: billing_interval?,
            max_billing_unit_lag: max_billing_unit_lag?,
            max_suspend_time_s: max_suspend_time_s?,
            max_inactive_time_s: max_inactive_time_s?,
            free_units: free_units?,
            country: country?,
            additional_params: additional_params?,
            speed: speed?,
        })
    }

    fn additional_params(&mut self) -> Option<(BTreeMap<String, String>, SpeedLimits)> {
        const AT: &str = "/additionalParams";
        let map = match self.get("additionalParams", true)? {
            Value::Object(m) => m.clone(),
            _ => {
                self.err(AT, "must be an object of string values");
                return None;
            }
        };
        if map.len() > MAX_ADDITIONAL_PARAMS {
            self.err(AT, format!("more than {MAX_ADDITIONAL_PARAMS} entries"));
            return None;
        }
        let mut params = BTreeMap::new();
        let mut ok = true;
        for (k, v) in &map {
            if !is_param_key(k) {
                self.err(
                    &child_pointer(AT, k),
                    "field name must be 1-64 characters of [A-Za-z0-9_.-] (it is carried into \
                     the access message)",
                );
                ok = false;
                continue;
            }
            match v {
                Value::String(s) => {
                    params.insert(k.clone(), s.clone());
                }
                _ => {
                    self.err(
                        &child_pointer(AT, k),
                        "must be a string (the access message carries a string map)",
                    );
                    ok = false;
                }
            }
        }
        // Each speed key on its own first, so every bad one is reported.
        for key in speed_keys::ALL {
            if let Some(v) = params.get(key) {
                if let Err(e) = parse_mbps(key, v) {
                    self.err(&child_pointer(AT, key), speed_message(&e));
                    ok = false;
                }
            }
        }
        if !ok {
            return None;
        }
        match SpeedLimits::from_params(&params) {
            Ok(speed) => Some((params, speed)),
            Err(e) => {
                let key = match &e {
                    SpeedError::NotPositiveDecimal { field, .. }
                    | SpeedError::TooLarge { field, .. } => field.clone(),
                    SpeedError::MinAboveMax { min_field, .. } => min_field.clone(),
                };
                self.err(&child_pointer(AT, &key), speed_message(&e));
                None
            }
        }
    }
}

fn speed_message(e: &SpeedError) -> String {
    match e {
        SpeedError::NotPositiveDecimal { .. } => {
            "must be a positive decimal number of Mbit/s (e.g. \"8\" or \"0.5\", at most 6 decimals)"
                .into()
        }
        SpeedError::TooLarge { .. } => "too large (at most 100000 Mbit/s)".into(),
        SpeedError::MinAboveMax { max_field, max, .. } => {
            format!("must not exceed {max_field} ({max})")
        }
    }
}

/// Keys of `additionalParams` (and of the access message's string map): 1–64 characters of
/// `[A-Za-z0-9_.-]`, the same rule as product config keys.
pub fn is_param_key(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 64
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A UUID version 4 (RFC 9562 variant) in its 36-character hyphenated form.
pub fn is_uuid_v4(s: &str) -> bool {
    s.len() == 36
        && uuid::Uuid::try_parse(s).is_ok_and(|u| {
            u.get_version() == Some(uuid::Version::Random)
                && u.get_variant() == uuid::Variant::RFC4122
        })
}

/// True for an assigned ISO 3166-1 alpha-2 code in upper case.
pub fn is_country_code(s: &str) -> bool {
    s.len() == 2 && ISO_3166_ALPHA2.binary_search(&s).is_ok()
}

/// The 249 officially assigned ISO 3166-1 alpha-2 codes, sorted.
pub const ISO_3166_ALPHA2: [&str; 249] = [
    "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX", "AZ",
    "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ", "BR", "BS",
    "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK", "CL", "CM", "CN",
    "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM", "DO", "DZ", "EC", "EE",
    "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR", "GA", "GB", "GD", "GE", "GF",
    "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS", "GT", "GU", "GW", "GY", "HK", "HM",
    "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN", "IO", "IQ", "IR", "IS", "IT", "JE", "JM",
    "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN", "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC",
    "LI", "LK", "LR", "LS", "LT", "LU", "LV", "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK",
    "ML", "MM", "MN", "MO", "MP", "MQ", "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA",
    "NC", "NE", "NF", "NG", "NI", "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG",
    "PH", "PK", "PL", "PM", "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW",
    "SA", "SB", "SC", "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS",
    "ST", "SV", "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO",
    "TR", "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
    "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
];

// ---------------------------------------------------------------------------------------
// Build (agent) and verify (client).

/// Agent side: fills the core's fields into the agent's `input` (`templateHash`, a fresh
/// uuid v4 `nonce`, `agentPublicKey`, `product`), validates, hashes (hex SHA-256 of the JCS
/// form) and signs the 32 hash bytes. `input` must not contain the core's fields.
pub fn build_offering(
    template: &Value,
    template_hash: &str,
    product_id: &str,
    agent: &AgentKeys,
    input: &Value,
) -> Result<(SignedOffering, String, OfferingTerms), OfferingError> {
    let Some(obj) = input.as_object() else {
        return Err(Invalid(vec![FieldError::new(
            "",
            "the offering input must be a JSON object",
        )])
        .into());
    };
    let forbidden: Vec<FieldError> = CORE_FILLED_FIELDS
        .iter()
        .filter(|f| obj.contains_key(**f))
        .map(|f| {
            FieldError::new(
                &format!("/{f}"),
                "filled in by the core; remove it from the input",
            )
        })
        .collect();
    if !forbidden.is_empty() {
        return Err(Invalid(forbidden).into());
    }
    let mut offering = obj.clone();
    offering.insert(
        "templateHash".into(),
        Value::String(template_hash.to_string()),
    );
    offering.insert(
        "nonce".into(),
        Value::String(uuid::Uuid::new_v4().hyphenated().to_string()),
    );
    offering.insert(
        "agentPublicKey".into(),
        Value::String(agent.public_key_b64()),
    );
    offering.insert("product".into(), Value::String(product_id.to_string()));
    let offering = Value::Object(offering);

    let terms = validate_offering(template, &offering)?;
    let digest = template::sha256_jcs(&offering)?;
    let signed = SignedOffering {
        signature: agent.sign(&digest),
        offering,
    };
    Ok((signed, hex::encode(digest), terms))
}

/// Client side: the template must be known (`lookup_template` by `templateHash`), the
/// signature must verify with `agentPublicKey` over the offering hash bytes, and the offering
/// must validate against the template. Returns the offering hash and the terms.
pub fn verify_offering(
    signed: &SignedOffering,
    lookup_template: impl Fn(&str) -> Option<Value>,
) -> Result<(String, OfferingTerms), OfferingError> {
    let invalid = |pointer: &str, msg: &str| {
        OfferingError::Invalid(Invalid(vec![FieldError::new(pointer, msg)]))
    };
    let size = serde_json::to_string(&signed.offering)
        .map(|s| s.len())
        .unwrap_or(usize::MAX);
    if size > MAX_OFFERING_BYTES {
        return Err(invalid(
            "",
            &format!("offering is larger than {MAX_OFFERING_BYTES} bytes"),
        ));
    }
    let Some(obj) = signed.offering.as_object() else {
        return Err(invalid("", "an offering must be a JSON object"));
    };
    let hash = match obj.get("templateHash") {
        Some(Value::String(h)) if template::is_hash_hex(h) => h.clone(),
        Some(_) => {
            return Err(invalid(
                "/templateHash",
                "must be 64 lowercase hex digits (SHA-256)",
            ))
        }
        None => return Err(invalid("/templateHash", "required field is missing")),
    };
    let template = lookup_template(&hash).ok_or(OfferingError::UnknownTemplate { hash })?;

    let public_key = match obj.get("agentPublicKey") {
        Some(Value::String(k)) => k.clone(),
        Some(_) => {
            return Err(OfferingError::BadSignature {
                reason: "agentPublicKey is not a string".into(),
            })
        }
        None => {
            return Err(OfferingError::BadSignature {
                reason: "agentPublicKey is missing".into(),
            })
        }
    };
    let digest = template::sha256_jcs(&signed.offering)?;
    keys::verify_signature(&public_key, &digest, &signed.signature).map_err(|e| {
        OfferingError::BadSignature {
            reason: e.to_string(),
        }
    })?;
    let terms = validate_offering(&template, &signed.offering)?;
    Ok((hex::encode(digest), terms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{load_module, Module};
    use serde_json::json;
    use std::path::PathBuf;

    fn vpn() -> Module {
        load_module(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../templates/vpn"))
            .expect("templates/vpn loads")
    }

    /// The agent's part of a VPN offering (the spec example filled in).
    fn input() -> Value {
        json!({
            "serviceName": "Privatix VPN",
            "supply": 10,
            "unitName": "MB",
            "unitPrice": 0.001,
            "setupPrice": 0,
            "minUnits": 10,
            "maxUnits": 1000,
            "billingType": "prepaid",
            "billingInterval": 10,
            "billingFrequency": 10,
            "maxBillingUnitLag": 20,
            "maxSuspendTime": 600,
            "maxInactiveTime": 1800,
            "freeUnits": 0,
            "country": "DE",
            "additionalParams": {
                "minUploadSpeed": "1",
                "maxUploadSpeed": "4",
                "minDownloadSpeed": "1",
                "maxDownloadSpeed": "8.5"
            }
        })
    }

    fn full(m: &Module, keys: &AgentKeys) -> Value {
        let mut v = input();
        v["templateHash"] = json!(m.offering_hash);
        v["nonce"] = json!("0b7c8f1e-3c8a-4d5e-9f10-2a3b4c5d6e7f");
        v["agentPublicKey"] = json!(keys.public_key_b64());
        v["product"] = json!("prod-1");
        v
    }

    #[test]
    fn spec_example_filled_in_is_valid() {
        let m = vpn();
        let k = AgentKeys::generate();
        let t = validate_offering(&m.offering_template, &full(&m, &k)).expect("valid offering");
        assert_eq!(t.template_hash, m.offering_hash);
        assert_eq!(t.product, "prod-1");
        assert_eq!(t.unit_price, 100_000); // 0.001 PRIX
        assert_eq!(t.setup_price, 0);
        assert_eq!((t.min_units, t.max_units, t.supply), (10, 1000, 10));
        assert_eq!(t.billing_type, BillingType::Prepaid);
        assert_eq!(t.billing_interval, 10);
        assert_eq!((t.max_suspend_time_s, t.max_inactive_time_s), (600, 1800));
        assert_eq!(t.country, "DE");
        assert_eq!(t.speed.max_download_bps, Some(8_500_000));
        assert_eq!(t.speed.max_upload_bps, Some(4_000_000));
        assert_eq!(t.additional_params.len(), 4);
        assert_eq!(t.min_deposit(), Some(1_000_000));
        assert_eq!(t.full_deposit(), Some(100_000_000));

        // Optional fields absent: default maxInactiveTime, no billingFrequency, no speeds.
        let mut v = full(&m, &k);
        let o = v.as_object_mut().expect("obj");
        o.remove("maxInactiveTime");
        o.remove("billingFrequency");
        o.insert("additionalParams".into(), json!({}));
        o.insert("unitPrice".into(), json!(1));
        let t = validate_offering(&m.offering_template, &v).expect("valid offering");
        assert_eq!(t.max_inactive_time_s, DEFAULT_MAX_INACTIVE_TIME_S);
        assert_eq!(t.unit_price, BASE_UNITS_PER_PRIX);
        assert!(t.speed.is_unlimited());
    }

    #[test]
    fn each_bad_field_is_named_by_its_pointer() {
        let m = vpn();
        let k = AgentKeys::generate();
        type Mutation = Box<dyn Fn(&mut Value)>;
        let remove = |name: &'static str| -> Mutation {
            Box::new(move |v: &mut Value| {
                v.as_object_mut().expect("obj").remove(name);
            })
        };
        let set = |name: &'static str, val: Value| -> Mutation {
            Box::new(move |v: &mut Value| v[name] = val.clone())
        };
        let param = |name: &'static str, val: Value| -> Mutation {
            Box::new(move |v: &mut Value| v["additionalParams"][name] = val.clone())
        };
        let cases: Vec<(&str, &str, Mutation)> = vec![
            ("missing required", "/supply", remove("supply")),
            (
                "missing required (not in properties)",
                "/billingInterval",
                remove("billingInterval"),
            ),
            ("missing product", "/product", remove("product")),
            ("missing country", "/country", remove("country")),
            ("wrong type", "/supply", set("supply", json!("10"))),
            (
                "wrong type, undefined property",
                "/billingInterval",
                set("billingInterval", json!("10")),
            ),
            ("wrong type, product", "/product", set("product", json!(7))),
            (
                "wrong const",
                "/serviceName",
                set("serviceName", json!("Other VPN")),
            ),
            (
                "bad enum",
                "/billingType",
                set("billingType", json!("monthly")),
            ),
            ("supply 0", "/supply", set("supply", json!(0))),
            (
                "minUnits > maxUnits",
                "/minUnits",
                set("minUnits", json!(1001)),
            ),
            ("maxUnits 0", "/maxUnits", set("maxUnits", json!(0))),
            ("bad country", "/country", set("country", json!("XX"))),
            (
                "lower-case country",
                "/country",
                set("country", json!("de")),
            ),
            ("reserved country", "/country", set("country", json!("UK"))),
            (
                "9-decimal price",
                "/unitPrice",
                set("unitPrice", json!(0.000000001)),
            ),
            (
                "9-decimal setup price",
                "/setupPrice",
                set("setupPrice", json!(1.123456789)),
            ),
            (
                "negative price",
                "/setupPrice",
                set("setupPrice", json!(-1)),
            ),
            ("negative count", "/freeUnits", set("freeUnits", json!(-5))),
            ("1.5 units", "/maxUnits", set("maxUnits", json!(1.5))),
            (
                "fractional lag",
                "/maxBillingUnitLag",
                set("maxBillingUnitLag", json!(0.5)),
            ),
            (
                "huge count",
                "/maxSuspendTime",
                set("maxSuspendTime", json!(1e30)),
            ),
            (
                "billingInterval 0",
                "/billingInterval",
                set("billingInterval", json!(0)),
            ),
            (
                "billingFrequency != billingInterval",
                "/billingFrequency",
                set("billingFrequency", json!(5)),
            ),
            (
                "bad maxInactiveTime",
                "/maxInactiveTime",
                set("maxInactiveTime", json!(-1)),
            ),
            (
                "non-string param",
                "/additionalParams/maxDownloadSpeed",
                param("maxDownloadSpeed", json!(8)),
            ),
            (
                "non-string custom param",
                "/additionalParams/foo.bar",
                param("foo.bar", json!(true)),
            ),
            (
                "param key with '/' (pointer escaped)",
                "/additionalParams/foo~1bar",
                param("foo/bar", json!("x")),
            ),
            (
                "speed abc",
                "/additionalParams/maxUploadSpeed",
                param("maxUploadSpeed", json!("abc")),
            ),
            (
                "speed zero",
                "/additionalParams/minUploadSpeed",
                param("minUploadSpeed", json!("0")),
            ),
            (
                "min speed > max speed",
                "/additionalParams/minDownloadSpeed",
                param("minDownloadSpeed", json!("9")),
            ),
            (
                "additionalParams not an object",
                "/additionalParams",
                set("additionalParams", json!("x")),
            ),
            (
                "wrong templateHash",
                "/templateHash",
                set("templateHash", json!("0".repeat(64))),
            ),
            (
                "malformed templateHash",
                "/templateHash",
                set("templateHash", json!("ABC")),
            ),
            ("bad nonce", "/nonce", set("nonce", json!("not-a-uuid"))),
            (
                "uuid v1 nonce",
                "/nonce",
                set("nonce", json!("c232ab00-9414-11ec-b3c8-9f6bdeced846")),
            ),
            (
                "bad agentPublicKey",
                "/agentPublicKey",
                set("agentPublicKey", json!("AAAA")),
            ),
            ("empty product", "/product", set("product", json!(""))),
            (
                "long product",
                "/product",
                set("product", json!("p".repeat(129))),
            ),
            (
                "wrong unit for VPN",
                "/unitName",
                set("unitName", json!("kW")),
            ),
            (
                "long string",
                "/additionalParams/x",
                param("x", json!("y".repeat(1025))),
            ),
        ];
        for (what, pointer, mutate) in cases {
            let mut v = full(&m, &k);
            mutate(&mut v);
            let err = validate_offering(&m.offering_template, &v)
                .expect_err(&format!("{what}: accepted"));
            assert!(
                err.has_pointer(pointer),
                "{what}: expected an error at {pointer}, got: {err}"
            );
            assert!(
                err.to_string().contains(&format!("{pointer}: ")),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn all_errors_are_reported_at_once() {
        let m = vpn();
        let k = AgentKeys::generate();
        let mut v = full(&m, &k);
        v["supply"] = json!(0);
        v["country"] = json!("ZZ");
        v["unitPrice"] = json!(-0.5);
        v.as_object_mut().expect("obj").remove("maxUnits");
        v["additionalParams"]["maxUploadSpeed"] = json!("fast");
        let err = validate_offering(&m.offering_template, &v).expect_err("invalid");
        for p in [
            "/supply",
            "/country",
            "/unitPrice",
            "/maxUnits",
            "/additionalParams/maxUploadSpeed",
        ] {
            assert!(err.has_pointer(p), "missing {p} in {err}");
        }
        // A missing field is reported once, not by both the schema and the semantic check.
        assert_eq!(
            err.0.iter().filter(|e| e.pointer == "/maxUnits").count(),
            1,
            "{err}"
        );
    }

    #[test]
    fn size_bounds() {
        let m = vpn();
        let k = AgentKeys::generate();
        let mut v = full(&m, &k);
        for i in 0..65 {
            v["additionalParams"][format!("k{i}")] = json!("v");
        }
        let err = validate_offering(&m.offering_template, &v).expect_err("too many params");
        assert!(err.has_pointer("/additionalParams"), "{err}");

        let mut v = full(&m, &k);
        v["padding"] = json!(vec!["x".repeat(1000); 70]);
        let err = validate_offering(&m.offering_template, &v).expect_err("too large");
        assert!(err.has_pointer(""), "{err}");

        let mut v = full(&m, &k);
        let mut deep = json!(1);
        for _ in 0..20 {
            deep = json!([deep]);
        }
        v["deep"] = deep;
        validate_offering(&m.offering_template, &v).expect_err("too deep");

        let err = validate_offering(&m.offering_template, &json!([1])).expect_err("not object");
        assert!(err.has_pointer(""), "{err}");
    }

    #[test]
    fn prix_conversion_is_exact() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("-0", 0),
            ("-0.0", 0),
            ("1", 100_000_000),
            ("1.0", 100_000_000),
            ("0.001", 100_000),
            ("0.1", 10_000_000),
            ("0.00000001", 1),
            ("1e-8", 1),
            ("1.5e2", 15_000_000_000),
            ("12345.6789", 1_234_567_890_000),
            ("1234567.12345678", 123_456_712_345_678),
            ("1E2", 10_000_000_000),
        ];
        for (text, want) in ok {
            let v: Value = serde_json::from_str(text).expect("json");
            assert_eq!(prix_to_base_units("/p", &v), Ok(*want), "{text}");
        }
        let bad: &[(&str, &str)] = &[
            ("0.000000001", "decimal places"),
            ("1e-9", "decimal places"),
            ("0.123456789", "decimal places"),
            ("-1", "negative"),
            ("-0.00000001", "negative"),
            ("1e30", "too large"),
            ("184467440737.1", "too large"),
            ("\"1\"", "must be a number"),
            ("null", "must be a number"),
        ];
        for (text, want) in bad {
            let v: Value = serde_json::from_str(text).expect("json");
            let e = prix_to_base_units("/p", &v).expect_err(text);
            assert_eq!(e.pointer, "/p");
            assert!(e.message.contains(want), "{text}: {}", e.message);
        }
        // Whole numbers.
        for (text, want) in [
            ("1.0", Some(1)),
            ("1.5", None),
            ("1e3", Some(1000)),
            ("-1", None),
        ] {
            let v: Value = serde_json::from_str(text).expect("json");
            assert_eq!(whole_number("/n", &v).ok(), want, "{text}");
        }
        // The text parser itself, including forms serde_json does not produce.
        assert_eq!(
            decimal_text_to_scaled("18446744073709551615", 0),
            Ok(u64::MAX)
        );
        assert_eq!(
            decimal_text_to_scaled("184467440737.09551615", 8),
            Ok(u64::MAX)
        );
        assert_eq!(
            decimal_text_to_scaled("184467440737.09551616", 8),
            Err(DecimalError::TooLarge)
        );
        assert_eq!(
            decimal_text_to_scaled("18446744073709551616", 0),
            Err(DecimalError::TooLarge)
        );
        assert_eq!(
            decimal_text_to_scaled("1.", 0),
            Err(DecimalError::Malformed)
        );
        assert_eq!(
            decimal_text_to_scaled(".5", 8),
            Err(DecimalError::Malformed)
        );
        assert_eq!(
            decimal_text_to_scaled("1e", 0),
            Err(DecimalError::Malformed)
        );
        assert_eq!(
            decimal_text_to_scaled("NaN", 0),
            Err(DecimalError::Malformed)
        );
        assert_eq!(decimal_text_to_scaled("1e+2", 0), Ok(100));
        assert_eq!(decimal_text_to_scaled("1000e-3", 0), Ok(1));
        assert_eq!(decimal_text_to_scaled("0e999999", 0), Ok(0));
        assert_eq!(
            decimal_text_to_scaled("1e999999", 0),
            Err(DecimalError::TooLarge)
        );
    }

    #[test]
    fn country_list_is_sorted_and_complete() {
        assert!(ISO_3166_ALPHA2.windows(2).all(|w| w[0] < w[1]));
        assert!(ISO_3166_ALPHA2
            .iter()
            .all(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase())));
        for c in ["DE", "US", "GB", "JP", "SS", "AX", "ZW"] {
            assert!(is_country_code(c), "{c}");
        }
        for c in ["XK", "UK", "EU", "de", "D", "DEU", ""] {
            assert!(!is_country_code(c), "{c}");
        }
    }

    #[test]
    fn build_and_verify_round_trip() {
        let m = vpn();
        let agent = AgentKeys::generate();
        let lookup = |h: &str| (h == m.offering_hash).then(|| m.offering_template.clone());
        let (signed, hash, terms) = build_offering(
            &m.offering_template,
            &m.offering_hash,
            "prod-1",
            &agent,
            &input(),
        )
        .expect("build");
        assert_eq!(hash, offering_hash(&signed.offering).expect("hash"));
        assert_eq!(terms.product, "prod-1");
        assert_eq!(terms.agent_public_key, agent.public_key_b64());
        assert!(is_uuid_v4(&terms.nonce));

        // Through the file format.
        let text = serde_json::to_string_pretty(&signed).expect("ser");
        let parsed: SignedOffering = serde_json::from_str(&text).expect("parse");
        let (h2, t2) = verify_offering(&parsed, lookup).expect("verifies");
        assert_eq!(h2, hash);
        assert_eq!(t2, terms);

        // Publishing the same input twice gives a new nonce and so a new hash.
        let (_, hash_b, _) = build_offering(
            &m.offering_template,
            &m.offering_hash,
            "prod-1",
            &agent,
            &input(),
        )
        .expect("build");
        assert_ne!(hash, hash_b);

        // A changed field breaks the signature.
        let mut changed = signed.clone();
        changed.offering["unitPrice"] = json!(0.0001);
        assert!(matches!(
            verify_offering(&changed, lookup),
            Err(OfferingError::BadSignature { .. })
        ));

        // Signed by another key (with the true agent's key in the offering).
        let other = AgentKeys::generate();
        let mut forged = signed.clone();
        forged.signature = other.sign(&hex::decode(&hash).expect("hex"));
        assert!(matches!(
            verify_offering(&forged, lookup),
            Err(OfferingError::BadSignature { .. })
        ));
        // Missing/garbage signature, bad agentPublicKey.
        let mut nosig = signed.clone();
        nosig.signature = String::new();
        assert!(matches!(
            verify_offering(&nosig, lookup),
            Err(OfferingError::BadSignature { .. })
        ));
        let mut badkey = signed.clone();
        badkey.offering["agentPublicKey"] = json!("not-a-key");
        assert!(matches!(
            verify_offering(&badkey, lookup),
            Err(OfferingError::BadSignature { .. })
        ));
        let mut nokey = signed.clone();
        nokey
            .offering
            .as_object_mut()
            .expect("obj")
            .remove("agentPublicKey");
        assert!(matches!(
            verify_offering(&nokey, lookup),
            Err(OfferingError::BadSignature { .. })
        ));

        // Unknown template.
        let err = verify_offering(&signed, |_| None).expect_err("unknown");
        assert!(
            matches!(&err, OfferingError::UnknownTemplate { hash } if *hash == m.offering_hash),
            "{err}"
        );

        // Correctly signed but invalid: the client still rejects it.
        let mut bad = signed.offering.clone();
        bad["supply"] = json!(0);
        let digest = crate::template::sha256_jcs(&bad).expect("digest");
        let resigned = SignedOffering {
            offering: bad,
            signature: agent.sign(&digest),
        };
        match verify_offering(&resigned, lookup) {
            Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer("/supply"), "{inv}"),
            other => panic!("expected Invalid, got {other:?}"),
        }

        // Unknown fields of the signed file are refused.
        let extra = json!({"offering": {}, "signature": "", "x": 1});
        assert!(serde_json::from_value::<SignedOffering>(extra).is_err());
    }

    #[test]
    fn build_rejects_core_fields_and_invalid_input() {
        let m = vpn();
        let agent = AgentKeys::generate();
        for f in CORE_FILLED_FIELDS {
            let mut v = input();
            v[f] = json!("x");
            match build_offering(&m.offering_template, &m.offering_hash, "p", &agent, &v) {
                Err(OfferingError::Invalid(inv)) => {
                    assert!(inv.has_pointer(&format!("/{f}")), "{inv}")
                }
                other => panic!("{f}: expected Invalid, got {other:?}"),
            }
        }
        let mut v = input();
        v["minUnits"] = json!(5000);
        match build_offering(&m.offering_template, &m.offering_hash, "p", &agent, &v) {
            Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer("/minUnits"), "{inv}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        // A wrong template hash from the caller is caught too.
        match build_offering(&m.offering_template, &"0".repeat(64), "p", &agent, &input()) {
            Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer("/templateHash"), "{inv}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
        match build_offering(
            &m.offering_template,
            &m.offering_hash,
            "p",
            &agent,
            &json!(3),
        ) {
            Err(OfferingError::Invalid(inv)) => assert!(inv.has_pointer(""), "{inv}"),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }
}
