//! Service module templates: loading a module directory (`module.toml`, `offering.json`,
//! `access.json`), compiling their JSON Schemas and validating access messages.
//!
//! A template's hash is [`jcs::hash_hex`] of the template: the lowercase hex SHA-256 of its
//! JCS form (DESIGN §2).

use std::fs::File;
use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jcs::{self, JcsError};
use crate::validation::{schema_errors, truncate, FieldError, Invalid};

/// Largest template file (`offering.json`, `access.json`) accepted.
pub const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;
/// Largest `module.toml` accepted.
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;
/// Largest access message (its compact JSON text) accepted by [`validate_access_message`].
pub const MAX_ACCESS_MESSAGE_BYTES: usize = service_api::MAX_BODY_BYTES;
/// File name of a module's manifest.
pub const MANIFEST_FILE: &str = "module.toml";

/// Errors of loading, canonicalizing and compiling templates.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {limit} bytes")]
    TooLarge { path: PathBuf, limit: u64 },
    #[error("parsing {path}: {source}")]
    ParseManifest {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("{path}: field `{field}`: {reason}")]
    BadManifest {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
    #[error("parsing {path} as JSON: {source}")]
    ParseJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "{path}: not an offering template ({{\"schema\":{{…}},\"uiSchema\":{{…}}}}): {reason}"
    )]
    NotOfferingTemplate { path: PathBuf, reason: String },
    #[error("{what}: the JSON Schema does not compile: {message}")]
    SchemaCompile { what: String, message: String },
    #[error(transparent)]
    Canonicalize(#[from] JcsError),
}

/// `module.toml` of a service module.
///
/// ```toml
/// name = "vpn"
/// version = "0.1.0"
/// offering_template = "offering.json"
/// access_template = "access.json"
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleManifest {
    /// Module name: 1–64 of `[a-z0-9_-]`, starting with a letter or digit.
    pub name: String,
    /// Free-form version text (1–64 printable ASCII characters).
    pub version: String,
    /// File name (in the module directory) of the offering template.
    pub offering_template: String,
    /// File name (in the module directory) of the access template.
    pub access_template: String,
}

impl ModuleManifest {
    /// Parses and checks a manifest text; `path` is only used in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, TemplateError> {
        let m: ModuleManifest =
            toml::from_str(text).map_err(|source| TemplateError::ParseManifest {
                path: path.to_path_buf(),
                source,
            })?;
        let bad = |field: &'static str, reason: &str| TemplateError::BadManifest {
            path: path.to_path_buf(),
            field,
            reason: reason.to_string(),
        };
        if !is_module_name(&m.name) {
            return Err(bad(
                "name",
                "must be 1-64 characters of [a-z0-9_-], starting with a letter or digit",
            ));
        }
        if m.version.is_empty()
            || m.version.len() > 64
            || !m.version.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(bad(
                "version",
                "must be 1-64 printable ASCII characters without spaces",
            ));
        }
        for (field, file) in [
            ("offering_template", &m.offering_template),
            ("access_template", &m.access_template),
        ] {
            if !is_plain_file_name(file) {
                return Err(bad(
                    field,
                    "must be a plain file name inside the module directory (no '/', no '..')",
                ));
            }
        }
        Ok(m)
    }
}

/// Module names: 1–64 of `[a-z0-9_-]`, first a letter or digit.
pub fn is_module_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

fn is_plain_file_name(s: &str) -> bool {
    if s.is_empty() || s.len() > 255 || s.contains('/') || s.contains('\\') || s.contains('\0') {
        return false;
    }
    let mut comps = Path::new(s).components();
    matches!(
        (comps.next(), comps.next()),
        (Some(Component::Normal(_)), None)
    )
}

/// A loaded and checked service module.
#[derive(Clone, Debug, PartialEq)]
pub struct Module {
    pub name: String,
    pub version: String,
    /// The whole `{ "schema": …, "uiSchema": … }` offering template.
    pub offering_template: Value,
    /// The access template (a JSON Schema of the access message).
    pub access_template: Value,
    pub offering_hash: String,
    pub access_hash: String,
}

/// Reads `dir/module.toml` and both templates it names, and checks them: the offering
/// template is `{"schema":{…},"uiSchema":{…}}` whose schema compiles, the access template is
/// a JSON Schema that compiles.
pub fn load_module(dir: &Path) -> Result<Module, TemplateError> {
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest_bytes = read_bounded(&manifest_path, MAX_MANIFEST_BYTES)?;
    let manifest_text = String::from_utf8(manifest_bytes).map_err(|e| TemplateError::Read {
        path: manifest_path.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
    })?;
    let manifest = ModuleManifest::parse(&manifest_text, &manifest_path)?;

    let offering_path = dir.join(&manifest.offering_template);
    let offering_template = read_json(&offering_path)?;
    check_offering_template(&offering_template).map_err(|e| match e {
        TemplateError::NotOfferingTemplate { reason, .. } => TemplateError::NotOfferingTemplate {
            path: offering_path.clone(),
            reason,
        },
        TemplateError::SchemaCompile { message, .. } => TemplateError::SchemaCompile {
            what: format!("{}: /schema", offering_path.display()),
            message,
        },
        other => other,
    })?;

    let access_path = dir.join(&manifest.access_template);
    let access_template = read_json(&access_path)?;
    compile_schema(&access_template, &access_path.display().to_string())?;

    Ok(Module {
        offering_hash: jcs::hash_hex(&offering_template)?,
        access_hash: jcs::hash_hex(&access_template)?,
        name: manifest.name,
        version: manifest.version,
        offering_template,
        access_template,
    })
}

/// Checks the shape of an offering template (exactly the keys `schema` and `uiSchema`, both
/// objects) and that its schema compiles.
pub fn check_offering_template(template: &Value) -> Result<(), TemplateError> {
    let not = |reason: String| TemplateError::NotOfferingTemplate {
        path: PathBuf::from("<offering template>"),
        reason,
    };
    let obj = template
        .as_object()
        .ok_or_else(|| not("the document is not a JSON object".into()))?;
    for key in obj.keys() {
        if key != "schema" && key != "uiSchema" {
            return Err(not(format!("unexpected top-level key {key:?}")));
        }
    }
    for key in ["schema", "uiSchema"] {
        match obj.get(key) {
            Some(Value::Object(_)) => {}
            Some(_) => return Err(not(format!("`{key}` is not a JSON object"))),
            None => return Err(not(format!("`{key}` is missing"))),
        }
    }
    compile_schema(&obj["schema"], "offering template /schema")?;
    Ok(())
}

/// Compiles a JSON Schema; `what` names it in the error.
pub fn compile_schema(schema: &Value, what: &str) -> Result<jsonschema::Validator, TemplateError> {
    if !schema.is_object() {
        return Err(TemplateError::SchemaCompile {
            what: what.to_string(),
            message: "a schema must be a JSON object".into(),
        });
    }
    jsonschema::validator_for(schema).map_err(|e| TemplateError::SchemaCompile {
        what: what.to_string(),
        message: truncate(&e.to_string(), 512),
    })
}

fn read_bounded(path: &Path, limit: u64) -> Result<Vec<u8>, TemplateError> {
    let read_err = |source| TemplateError::Read {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(read_err)?;
    let meta = file.metadata().map_err(read_err)?;
    if !meta.is_file() {
        return Err(read_err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    if meta.len() > limit {
        return Err(TemplateError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    let mut buf = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut buf)
        .map_err(read_err)?;
    if buf.len() as u64 > limit {
        return Err(TemplateError::TooLarge {
            path: path.to_path_buf(),
            limit,
        });
    }
    Ok(buf)
}

fn read_json(path: &Path) -> Result<Value, TemplateError> {
    let bytes = read_bounded(path, MAX_TEMPLATE_BYTES)?;
    serde_json::from_slice(&bytes).map_err(|source| TemplateError::ParseJson {
        path: path.to_path_buf(),
        source,
    })
}

/// Validates an access message against the access template (a JSON Schema). Every error
/// names the JSON pointer of the bad field; messages never echo the values (the message
/// carries a password).
pub fn validate_access_message(access_template: &Value, msg: &Value) -> Result<(), Invalid> {
    let size = serde_json::to_string(msg).map(|s| s.len()).unwrap_or(0);
    if size > MAX_ACCESS_MESSAGE_BYTES {
        return Err(Invalid(vec![FieldError::new(
            "",
            format!("access message is larger than {MAX_ACCESS_MESSAGE_BYTES} bytes"),
        )]));
    }
    let validator = compile_schema(access_template, "access template").map_err(|e| {
        Invalid(vec![FieldError::new(
            "",
            format!("cannot validate the access message: {e}"),
        )])
    })?;
    let errors = schema_errors(&validator, msg);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Invalid(errors))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vpn_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../templates/vpn")
    }

    #[test]
    fn loads_the_real_vpn_module() {
        let m = load_module(&vpn_dir()).expect("templates/vpn loads");
        assert_eq!(m.name, "vpn");
        assert_eq!(m.version, "0.1.0");
        assert!(jcs::is_hash_hex(&m.offering_hash));
        assert!(jcs::is_hash_hex(&m.access_hash));
        assert_ne!(m.offering_hash, m.access_hash);
        assert_eq!(
            m.offering_hash,
            jcs::hash_hex(&m.offering_template).expect("hash")
        );
        assert_eq!(
            m.offering_template["schema"]["title"],
            json!("Privatix VPN offering")
        );
        // The file on disk is the specification's example: the hash does not depend on its
        // formatting, so re-serializing it gives the same hash.
        let text = serde_json::to_string(&m.offering_template).expect("ser");
        let again: Value = serde_json::from_str(&text).expect("parse");
        assert_eq!(jcs::hash_hex(&again).expect("hash"), m.offering_hash);
    }

    fn write_module(dir: &Path, manifest: &str, offering: &str, access: &str) {
        std::fs::write(dir.join("module.toml"), manifest).expect("write manifest");
        std::fs::write(dir.join("offering.json"), offering).expect("write offering");
        std::fs::write(dir.join("access.json"), access).expect("write access");
    }

    const GOOD_MANIFEST: &str = "name = \"m\"\nversion = \"1\"\noffering_template = \"offering.json\"\naccess_template = \"access.json\"\n";
    const GOOD_OFFERING: &str = r#"{"schema":{"type":"object"},"uiSchema":{}}"#;
    const GOOD_ACCESS: &str = r#"{"type":"object"}"#;

    #[test]
    fn load_module_rejects_bad_modules() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let d = tmp.path();
        write_module(d, GOOD_MANIFEST, GOOD_OFFERING, GOOD_ACCESS);
        load_module(d).expect("minimal module loads");

        let cases: &[(&str, &str, &str, &str)] = &[
            // (manifest, offering, access, expected text in the error)
            (
                "name = \"m\"\nversion = \"1\"\noffering_template = \"offering.json\"\naccess_template = \"access.json\"\nextra = 1\n",
                GOOD_OFFERING,
                GOOD_ACCESS,
                "extra",
            ),
            (
                "name = \"m\"\nversion = \"1\"\noffering_template = \"../offering.json\"\naccess_template = \"access.json\"\n",
                GOOD_OFFERING,
                GOOD_ACCESS,
                "offering_template",
            ),
            (
                "name = \"M x\"\nversion = \"1\"\noffering_template = \"offering.json\"\naccess_template = \"access.json\"\n",
                GOOD_OFFERING,
                GOOD_ACCESS,
                "`name`",
            ),
            (GOOD_MANIFEST, r#"{"schema":{"type":"object"}}"#, GOOD_ACCESS, "uiSchema"),
            (
                GOOD_MANIFEST,
                r#"{"schema":{"type":"object"},"uiSchema":{},"x":1}"#,
                GOOD_ACCESS,
                "\"x\"",
            ),
            (GOOD_MANIFEST, r#"{"schema":{"type":"object"},"uiSchema":{}"#, GOOD_ACCESS, "offering.json"),
            (
                GOOD_MANIFEST,
                r#"{"schema":{"type":"no-such-type"},"uiSchema":{}}"#,
                GOOD_ACCESS,
                "does not compile",
            ),
            (GOOD_MANIFEST, GOOD_OFFERING, r#"{"minLength":"x"}"#, "access.json"),
            (GOOD_MANIFEST, GOOD_OFFERING, "[1]", "access.json"),
        ];
        for (manifest, offering, access, want) in cases {
            write_module(d, manifest, offering, access);
            let err = load_module(d).expect_err("bad module rejected");
            let text = err.to_string();
            assert!(
                text.contains(want),
                "error {text:?} does not mention {want:?}"
            );
        }

        // Missing file.
        write_module(d, GOOD_MANIFEST, GOOD_OFFERING, GOOD_ACCESS);
        std::fs::remove_file(d.join("access.json")).expect("rm");
        let err = load_module(d).expect_err("missing file");
        assert!(matches!(err, TemplateError::Read { .. }), "{err}");

        // Too large.
        let big = format!(
            "{{\"type\":\"object\",\"description\":\"{}\"}}",
            "x".repeat(MAX_TEMPLATE_BYTES as usize)
        );
        write_module(d, GOOD_MANIFEST, GOOD_OFFERING, &big);
        let err = load_module(d).expect_err("too large");
        assert!(matches!(err, TemplateError::TooLarge { .. }), "{err}");
    }

    fn good_access() -> Value {
        json!({
            "templateHash": "a".repeat(64),
            "username": "c-0123456789abcdef0123",
            "password": "s3cr3t-PASSWORD_value_xyz",
            "serviceEndpointAddress": "10.0.0.1:1194",
            "additionalParams": {
                "proto": "udp",
                "port": "1194",
                "ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
                "maxDownloadSpeed": "8"
            }
        })
    }

    #[test]
    fn access_messages_validate_with_pointers() {
        let m = load_module(&vpn_dir()).expect("templates/vpn loads");
        let t = &m.access_template;
        validate_access_message(t, &good_access()).expect("valid access message");

        // The wire type serializes to something the template accepts.
        let typed: service_api::AccessMessage =
            serde_json::from_value(good_access()).expect("typed");
        validate_access_message(t, &serde_json::to_value(&typed).expect("ser"))
            .expect("typed message valid");

        type Mutation = Box<dyn Fn(&mut Value)>;
        let cases: Vec<(&str, Mutation)> = vec![
            (
                "/password",
                Box::new(|v| {
                    v.as_object_mut().expect("obj").remove("password");
                }),
            ),
            ("/extra", Box::new(|v| v["extra"] = json!(1))),
            (
                "/additionalParams/port",
                Box::new(|v| v["additionalParams"]["port"] = json!(1194)),
            ),
            ("/username", Box::new(|v| v["username"] = json!("a\nb"))),
            (
                "/templateHash",
                Box::new(|v| v["templateHash"] = json!("xyz")),
            ),
            (
                "/serviceEndpointAddress",
                Box::new(|v| v["serviceEndpointAddress"] = json!("")),
            ),
            (
                "/password",
                Box::new(|v| v["password"] = json!("x".repeat(300))),
            ),
        ];
        for (pointer, mutate) in cases {
            let mut v = good_access();
            mutate(&mut v);
            let err = validate_access_message(t, &v).expect_err("invalid");
            assert!(
                err.0.iter().any(|e| e.pointer == pointer),
                "expected an error at {pointer}, got {err}"
            );
        }

        // Messages never echo the password.
        let mut v = good_access();
        v["password"] = json!(format!("{}\n", "hunter2".repeat(50)));
        let err = validate_access_message(t, &v).expect_err("invalid");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}
