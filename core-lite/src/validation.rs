//! Validation results shared by templates and offerings: a [`FieldError`] names the JSON
//! pointer (RFC 6901) of one bad field, [`Invalid`] carries all of them, and
//! [`schema_errors`] turns JSON Schema errors into field errors whose messages describe the
//! rule, never the value.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// Every schema error of `instance`, one [`FieldError`] per bad field, with the pointer of the
/// field itself (for a missing required property or an unexpected one: the pointer of that
/// property). Messages describe the rule, not the value.
pub fn schema_errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<FieldError> {
    use jsonschema::error::ValidationErrorKind as K;
    let mut out = Vec::new();
    for e in validator.iter_errors(instance) {
        let at = e.instance_path.as_str().to_string();
        match &e.kind {
            K::Required { property } => {
                let name = property
                    .as_str()
                    .map_or_else(|| property.to_string(), str::to_string);
                out.push(FieldError::new(
                    &child_pointer(&at, &name),
                    "required field is missing".to_string(),
                ));
            }
            K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
                for name in unexpected {
                    out.push(FieldError::new(
                        &child_pointer(&at, name),
                        "unexpected field (not allowed here)".to_string(),
                    ));
                }
            }
            kind => out.push(FieldError::new(&at, describe_kind(kind))),
        }
    }
    out
}

/// Appends one reference token to a JSON pointer (RFC 6901 escaping).
pub fn child_pointer(parent: &str, name: &str) -> String {
    format!("{parent}/{}", name.replace('~', "~0").replace('/', "~1"))
}

fn describe_kind(kind: &jsonschema::error::ValidationErrorKind) -> String {
    use jsonschema::error::{TypeKind, ValidationErrorKind as K};
    let short = |v: &Value| truncate(&v.to_string(), 128);
    match kind {
        K::Type { kind } => match kind {
            TypeKind::Single(t) => format!("must be of type {t}"),
            TypeKind::Multiple(ts) => {
                let names: Vec<String> = (*ts).into_iter().map(|t| t.to_string()).collect();
                format!("must be of type {}", names.join(" or "))
            }
        },
        K::Constant { expected_value } => format!("must be {}", short(expected_value)),
        K::Enum { options } => format!("must be one of {}", short(options)),
        K::MaxLength { limit } => format!("longer than {limit} characters"),
        K::MinLength { limit } => format!("shorter than {limit} characters"),
        K::Pattern { pattern } => format!("does not match the pattern {}", truncate(pattern, 128)),
        K::Maximum { limit } => format!("must be at most {limit}"),
        K::Minimum { limit } => format!("must be at least {limit}"),
        K::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        K::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        K::MaxProperties { limit } => format!("more than {limit} fields"),
        K::MinProperties { limit } => format!("fewer than {limit} fields"),
        K::MaxItems { limit } => format!("more than {limit} items"),
        K::MinItems { limit } => format!("fewer than {limit} items"),
        K::MultipleOf { multiple_of } => format!("must be a multiple of {multiple_of}"),
        K::Format { format } => format!("is not a valid {format}"),
        K::PropertyNames { error } => format!("field name {}", describe_kind(&error.kind)),
        K::FalseSchema => "not allowed here".into(),
        K::UniqueItems => "items must be unique".into(),
        K::AnyOf => "does not match any allowed form (anyOf)".into(),
        K::OneOfNotValid => "does not match any allowed form (oneOf)".into(),
        K::OneOfMultipleValid => "matches more than one form (oneOf)".into(),
        K::Not { .. } => "matches a forbidden form (not)".into(),
        K::Contains => "no item matches the required form (contains)".into(),
        K::AdditionalItems { limit } => format!("more than {limit} items"),
        K::UnevaluatedItems { .. } => "unexpected items".into(),
        K::ContentEncoding { content_encoding } => format!("is not valid {content_encoding}"),
        K::ContentMediaType { content_media_type } => format!("is not valid {content_media_type}"),
        K::FromUtf8 { .. } => "decoded content is not UTF-8".into(),
        K::Custom { message } => truncate(message, 256),
        K::BacktrackLimitExceeded { .. } => "pattern check gave up (backtrack limit)".into(),
        K::Referencing(e) => truncate(&format!("schema reference error: {e}"), 256),
        K::Required { property } => format!("required field {} is missing", short(property)),
        K::AdditionalProperties { unexpected } | K::UnevaluatedProperties { unexpected } => {
            format!(
                "unexpected fields {}",
                truncate(&unexpected.join(", "), 256)
            )
        }
    }
}

/// `s` cut to `max_chars` characters (with `…` when cut).
pub fn truncate(s: &str, max_chars: usize) -> String {
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max_chars).collect();
        t.push('…');
        t
    }
}
