//! Reading JSON bodies without ever repeating their content.
//!
//! A body can hold secrets (an access message carries the VPN password), so when it does not
//! read as the expected type the error names *where* and *what kind* of problem it is — the
//! field's path and what was expected (`additionalParams.port: expected a string, found an
//! integer`) — and never a value, nor any part of the body. serde's own messages repeat the
//! offending value (`invalid type: string "hunter2", expected u64`), so they are never shown
//! as they are: [`value_free`] keeps only their value-free parts.
//!
//! The rule holds for every error of this crate's [`Client`](crate::Client): no response
//! body ever reaches an [`ApiError`](crate::ApiError).

use std::fmt::Write as _;

use serde::de::DeserializeOwned;

/// Longest map key shown in a path (characters); longer keys are cut with `…`.
const MAX_KEY_SHOWN: usize = 64;

/// Why a JSON body could not be read as the expected type. Holds no part of the body but
/// the names of the fields on the way to the problem.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    /// Not JSON at all (or cut short).
    #[error("not valid JSON (line {line}, column {column})")]
    NotJson { line: usize, column: usize },
    /// JSON, but a field does not fit the type: `path` is like `additionalParams.port`
    /// (`.` for the whole body), `problem` like `expected a string, found an integer`.
    #[error("{path}: {problem}")]
    Field { path: String, problem: String },
}

impl BodyError {
    /// The path of the refused field (`.` for the body as a whole), if the body was JSON.
    pub fn path(&self) -> Option<&str> {
        match self {
            Self::Field { path, .. } => Some(path),
            Self::NotJson { .. } => None,
        }
    }
}

/// Reads `bytes` as a `T`; on failure says where and what kind, never what (see the module
/// docs).
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, BodyError> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        // Syntax errors are told by position only: serde_json's syntax messages carry no
        // content, but a position is all a reader needs.
        BodyError::NotJson {
            line: e.line(),
            column: e.column(),
        }
    })?;
    from_value(&value)
}

/// Reads a parsed JSON value as a `T` (see [`from_slice`]).
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, BodyError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| field_error(e.path(), &e.inner().to_string()))
}

/// The [`BodyError::Field`] of a serde data error `message` at `path` (from any format read
/// with `serde_path_to_error`): the message made [`value_free`], and the key of an unknown
/// field left out of the path (it is input too).
pub fn field_error(path: &serde_path_to_error::Path, message: &str) -> BodyError {
    let problem = value_free(message);
    // The last key of an unknown field's path is the refused key itself: point at the
    // object that holds it instead.
    let drop_last = problem.starts_with("unknown field");
    BodyError::Field {
        path: path_text(path, drop_last),
        problem,
    }
}

/// The path of a field for an error message: map keys escaped and cut, sequence indexes in
/// brackets; enum variant names (which can be input) are left out, and so is the last
/// segment when `drop_last` (the key of an unknown field).
pub fn path_text(path: &serde_path_to_error::Path, drop_last: bool) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    let n = path.iter().len();
    let keep = if drop_last { n.saturating_sub(1) } else { n };
    for seg in path.iter().take(keep) {
        match seg {
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                let shown: String = key.chars().take(MAX_KEY_SHOWN).collect();
                out.push_str(&shown.escape_debug().to_string());
                if key.chars().count() > MAX_KEY_SHOWN {
                    out.push('…');
                }
            }
            Segment::Seq { index } => {
                let _ = write!(out, "[{index}]");
            }
            Segment::Enum { .. } => {}
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    if out.is_empty() {
        out.push('.');
    }
    out
}

/// The value-free part of a serde data error message.
///
/// serde phrases its errors as `invalid type: <what was found, with its value>, expected
/// <what the type wants>` (likewise `invalid value`, `invalid length`, `unknown variant`,
/// `unknown field`). The found value is replaced by its kind (`an integer`, `a string`), the
/// expected part is kept (it comes from the type, not from the input). `missing field` and
/// `duplicate field` name a field of the type and are kept. Anything else — a custom message
/// of a field's own check, which may quote the value — becomes `invalid value`.
pub fn value_free(message: &str) -> String {
    let expected = message
        .rfind(", expected ")
        .map(|i| &message[i + ", expected ".len()..]);
    let found_kind = |rest: &str| -> String {
        // `integer `5``, `string "x"`, `floating point `1.5``, `map`, `sequence`, `null`…:
        // the kind is everything before the first quote.
        let kind = rest
            .split(['`', '"', ','])
            .next()
            .unwrap_or_default()
            .trim();
        article(kind)
    };
    for (prefix, label) in [
        ("invalid type: ", None),
        ("invalid value: ", Some("invalid value")),
        ("invalid length ", Some("invalid length")),
        ("unknown variant ", Some("unknown variant")),
        ("unknown field ", Some("unknown field")),
    ] {
        let Some(rest) = message.strip_prefix(prefix) else {
            continue;
        };
        return match (label, expected) {
            (None, Some(exp)) => format!("expected {exp}, found {}", found_kind(rest)),
            (None, None) => format!("wrong type, found {}", found_kind(rest)),
            (Some(label), Some(exp)) => format!("{label}, expected {exp}"),
            (Some(label), None) => label.to_string(),
        };
    }
    for prefix in ["missing field `", "duplicate field `"] {
        if message.starts_with(prefix)
            && message.ends_with('`')
            && !message[prefix.len()..message.len() - 1].contains('`')
        {
            return message.to_string();
        }
    }
    "invalid value".to_string()
}

/// `integer` → `an integer`; an empty or unusual kind → `a value of another type`.
fn article(kind: &str) -> String {
    let known = [
        "boolean",
        "integer",
        "floating point",
        "string",
        "map",
        "sequence",
        "null",
        "unit value",
        "char",
        "byte array",
        "Option value",
        "newtype struct",
        "unit variant",
        "newtype variant",
        "tuple variant",
        "struct variant",
        "enum",
    ];
    if !known.contains(&kind) {
        return "a value of another type".to_string();
    }
    match kind.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u' | 'O') => format!("an {kind}"),
        _ => format!("a {kind}"),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::AccessMessage;

    const PASSWORD: &str = "pw-SECRET-31337";

    fn access(port: serde_json::Value, password: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "templateHash": "h",
            "username": "ck-1",
            "password": password,
            "serviceEndpointAddress": "vpn.example.net:1194",
            "additionalParams": { "port": port, "proto": "udp" }
        }))
        .expect("json")
    }

    #[test]
    fn a_wrong_type_names_the_field_and_kind_never_the_value() {
        let e = from_slice::<AccessMessage>(&access(1194.into(), PASSWORD.into()))
            .expect_err("port is a number");
        assert_eq!(e.path(), Some("additionalParams.port"));
        assert_eq!(
            e.to_string(),
            "additionalParams.port: expected a string, found an integer"
        );
        let e = from_slice::<AccessMessage>(&access("1194".into(), 31337.into()))
            .expect_err("password is a number");
        assert_eq!(
            e.to_string(),
            "password: expected a string, found an integer"
        );
        assert!(!e.to_string().contains("31337"));
        let ok =
            from_slice::<AccessMessage>(&access("1194".into(), PASSWORD.into())).expect("valid");
        assert_eq!(ok.password.expose(), PASSWORD);
    }

    #[test]
    fn no_part_of_the_body_reaches_the_error() {
        // Each body holds the secret somewhere and breaks the type somewhere.
        let bodies: Vec<Vec<u8>> = vec![
            access(PASSWORD.into(), PASSWORD.into())[..40].to_vec(),
            format!("{{\"password\": \"{PASSWORD}\"").into_bytes(),
            format!("[\"{PASSWORD}\"]").into_bytes(),
            format!("\"{PASSWORD}\"").into_bytes(),
            access(serde_json::json!({ PASSWORD: PASSWORD }), PASSWORD.into()),
            access(serde_json::json!([PASSWORD]), PASSWORD.into()),
            access("1".into(), serde_json::json!([PASSWORD])),
            serde_json::to_vec(&serde_json::json!({
                "templateHash": "h", "username": format!("{PASSWORD}\u{7}"),
                "password": PASSWORD, "serviceEndpointAddress": "x", "additionalParams": {}
            }))
            .expect("json"),
            serde_json::to_vec(&serde_json::json!({
                "templateHash": "h", "username": PASSWORD, "password": PASSWORD,
                "serviceEndpointAddress": "x", "additionalParams": {}, PASSWORD: 1
            }))
            .expect("json"),
        ];
        for b in bodies {
            let e = from_slice::<AccessMessage>(&b).expect_err("refused");
            let text = format!("{e} {e:?}");
            assert!(!text.contains("SECRET"), "{text}");
        }
    }

    #[test]
    fn value_free_messages() {
        for (msg, want) in [
            (
                "invalid type: string \"hunter2\", expected u64",
                "expected u64, found a string",
            ),
            (
                "invalid type: floating point `1.5`, expected u64",
                "expected u64, found a floating point",
            ),
            (
                "invalid value: string \"x, expected y\", expected a port",
                "invalid value, expected a port",
            ),
            (
                "invalid length 3, expected a tuple of size 2",
                "invalid length, expected a tuple of size 2",
            ),
            (
                "unknown variant `hunter2`, expected one of `a`, `b`",
                "unknown variant, expected one of `a`, `b`",
            ),
            ("missing field `password`", "missing field `password`"),
            ("missing field `a` `hunter2`", "invalid value"),
            (
                "password: 0..=256 printable ASCII characters, got the character \\u{7}",
                "invalid value",
            ),
        ] {
            assert_eq!(value_free(msg), want, "{msg}");
        }
    }

    #[test]
    fn paths_of_sequences_and_nested_maps() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct T {
            list: Vec<BTreeMap<String, u32>>,
        }
        let e = from_slice::<T>(br#"{"list":[{"a":1},{"b":"x"}]}"#).expect_err("refused");
        assert_eq!(e.to_string(), "list[1].b: expected u32, found a string");
        let e = from_slice::<T>(b"1").expect_err("refused");
        assert_eq!(e.path(), Some("."));
        let e = from_slice::<AccessMessage>(br#"{"additionalParams":{"x":1}}"#).expect_err("x");
        assert_eq!(e.path(), Some("additionalParams.x"));
        let e = from_slice::<T>(b"{\"list\":").expect_err("cut");
        assert!(matches!(e, BodyError::NotJson { line: 1, .. }), "{e}");
    }
}
