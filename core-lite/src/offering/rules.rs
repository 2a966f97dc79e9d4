//! Validation of an offering against its template: the JSON Schema first, then the semantic
//! rules of DESIGN §2, every error named by its JSON pointer and all reported at once.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use service_api::{parse_mbps, speed_keys, SpeedError, SpeedLimits};

use super::country::is_country_code;
use super::decimal::{prix_to_base_units, whole_number};
use super::terms::{
    BillingType, OfferingTerms, DEFAULT_MAX_INACTIVE_TIME_S, MAX_ADDITIONAL_PARAMS, MAX_DEPTH,
    MAX_OFFERING_BYTES, MAX_PRODUCT_CHARS, MAX_STRING_BYTES, VPN_SERVICE_NAME, VPN_UNIT_NAME,
};
use crate::billing::{self, BillingTerms};
use crate::validation::{child_pointer, schema_errors, FieldError, Invalid};
use crate::{jcs, keys, template};

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
    let mut errors = schema_errors(&validator, offering);

    let expected_hash = jcs::hash_hex(template)
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

/// The numbers of an offering that the rules between numbers need (`None`: invalid alone).
struct Numbers {
    unit_price: Option<u64>,
    setup_price: Option<u64>,
    min_units: Option<u64>,
    max_units: Option<u64>,
    free_units: Option<u64>,
    billing_type: Option<BillingType>,
    billing_interval: Option<u64>,
    max_billing_unit_lag: Option<u64>,
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
            if !jcs::is_hash_hex(h) {
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
        // Optional: the agent's TLS key pin (service_api::tls).
        match self.get(service_api::tls::PIN_FIELD, false) {
            None => {}
            Some(Value::String(p)) if service_api::tls::is_pin(p) => {}
            Some(_) => self.err(
                &format!("/{}", service_api::tls::PIN_FIELD),
                "must be the SHA-256 of the agent's TLS public key (SPKI), 64 lowercase hex digits",
            ),
        }
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
        self.combinations(&Numbers {
            unit_price,
            setup_price,
            min_units,
            max_units,
            free_units,
            billing_type,
            billing_interval,
            max_billing_unit_lag,
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

    /// The rules between the numbers (each number alone is already checked); a rule is
    /// checked when the fields it needs are valid. See the module docs of
    /// [`crate::offering`] for the list and why.
    fn combinations(&mut self, n: &Numbers) {
        if let (Some(lo), Some(hi)) = (n.min_units, n.max_units) {
            if lo > hi {
                self.err("/minUnits", format!("must not exceed maxUnits ({hi})"));
            }
        }
        if let (Some(free), Some(max)) = (n.free_units, n.max_units) {
            if free > max {
                self.err("/freeUnits", format!("must not exceed maxUnits ({max})"));
            }
        }
        if let (Some(BillingType::Postpaid), Some(interval), Some(max), Some(free)) = (
            n.billing_type,
            n.billing_interval,
            n.max_units,
            n.free_units,
        ) {
            // Prepaid pays ahead (capped at maxUnits): any interval works. Postpaid pays after
            // each interval of billable units: one must fit in what is sold.
            let billable = max.saturating_sub(free);
            if billable > 0 && interval > billable {
                self.err(
                    "/billingInterval",
                    format!(
                        "must not exceed maxUnits − freeUnits ({billable}) when billing is \
                         postpaid: the client pays after each billingInterval billable units, so \
                         no payment would ever be due"
                    ),
                );
            }
        }
        if let (Some(BillingType::Postpaid), Some(interval), Some(lag)) =
            (n.billing_type, n.billing_interval, n.max_billing_unit_lag)
        {
            if lag < interval {
                self.err(
                    "/maxBillingUnitLag",
                    format!(
                        "must be at least billingInterval ({interval}) when billing is postpaid: \
                         the client pays after each billingInterval units used, so a smaller lag \
                         suspends the channel before the client is due to pay"
                    ),
                );
            }
        }
        if let (Some(unit_price), Some(setup_price), Some(max_units), Some(free_units)) =
            (n.unit_price, n.setup_price, n.max_units, n.free_units)
        {
            // Only the prices, maxUnits and freeUnits make the full deposit.
            let money = BillingTerms {
                unit_price,
                setup_price,
                min_units: 0,
                max_units,
                free_units,
                max_billing_unit_lag: 0,
                billing_interval: 1,
                max_suspend_time_s: 0,
                max_inactive_time_s: 0,
            };
            if billing::full_deposit(&money).is_none() {
                self.err(
                    "/unitPrice",
                    format!(
                        "too large for maxUnits: the full deposit, setupPrice + (maxUnits − \
                         freeUnits)·unitPrice = {} base units, must fit 64 bits (at most {})",
                        billing::cost(&money, max_units),
                        u64::MAX
                    ),
                );
            }
        }
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
