//! `adapter-server push-config`: reads the OpenVPN server config and turns it into the
//! product config of the VPN module (docs/INTERFACES.md), then calls SetProductConfig.
//!
//! Only public material is exported: the CA certificate(s) and the tls-crypt / tls-auth
//! key (which every client needs). The server's `key`, `cert`, `dh` are never read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use service_api::{Client, SetProductConfigRequest, SetProductConfigResponse};

/// Largest server config file.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;
/// Largest CA / key file.
pub const MAX_KEY_BYTES: u64 = 256 * 1024;

/// Errors of reading / pushing the server config.
#[derive(Debug, thiserror::Error)]
pub enum PushConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not UTF-8 text")]
    NotUtf8 { path: PathBuf },
    #[error("line {line}: {reason}")]
    Syntax { line: usize, reason: String },
    #[error("directive {directive}: {reason}")]
    Invalid {
        directive: &'static str,
        reason: String,
    },
    #[error("the server config has no `ca` (file or inline <ca> block)")]
    NoCa,
    #[error("{what} contains a private key; refusing to export it")]
    PrivateKey { what: &'static str },
    #[error("SetProductConfig failed: {0}")]
    Core(#[source] service_api::ApiError),
}

/// Where a CA or key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Material {
    File(PathBuf),
    Inline(String),
}

/// The directives of interest, as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServerConfig {
    pub proto: Option<String>,
    pub port: Option<u16>,
    pub dev: Option<String>,
    /// `dev-type` (`tun` or `tap`), when the device name does not tell.
    pub dev_type: Option<String>,
    pub cipher: Option<String>,
    pub data_ciphers: Option<String>,
    pub auth: Option<String>,
    pub tls_version_min: Option<String>,
    pub ca: Option<Material>,
    pub tls_crypt: Option<Material>,
    pub tls_auth: Option<Material>,
    /// Direction of `tls-auth FILE DIR` or `key-direction DIR` (server side).
    pub key_direction: Option<u8>,
    pub cd: Option<PathBuf>,
    pub uses_tls_crypt_v2: bool,
    pub management: Option<Vec<String>>,
    /// `user`: who OpenVPN (and so its scripts) runs as after start-up.
    pub user: Option<String>,
}

/// Splits one config line into tokens (OpenVPN lexer rules: whitespace separated,
/// "double" or 'single' quotes, backslash escapes outside single quotes).
pub fn tokenize(line: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_tok = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => {
                if in_tok {
                    out.push(std::mem::take(&mut cur));
                    in_tok = false;
                }
            }
            '#' | ';' if !in_tok => break,
            '"' => {
                in_tok = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated double quote".into()),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e) => cur.push(e),
                            None => return Err("dangling backslash".into()),
                        },
                        Some(o) => cur.push(o),
                    }
                }
            }
            '\'' => {
                in_tok = true;
                loop {
                    match chars.next() {
                        None => return Err("unterminated single quote".into()),
                        Some('\'') => break,
                        Some(o) => cur.push(o),
                    }
                }
            }
            '\\' => {
                in_tok = true;
                match chars.next() {
                    Some(e) => cur.push(e),
                    None => return Err("dangling backslash".into()),
                }
            }
            c => {
                in_tok = true;
                cur.push(c);
            }
        }
    }
    if in_tok {
        out.push(cur);
    }
    Ok(out)
}

fn one_arg(d: &'static str, args: &[String]) -> Result<String, PushConfigError> {
    args.first().cloned().ok_or(PushConfigError::Invalid {
        directive: d,
        reason: "missing argument".into(),
    })
}

fn material(args: &[String]) -> Result<Material, String> {
    match args.first() {
        Some(a) if a == "[inline]" => Err("[inline] without a block".into()),
        Some(a) => Ok(Material::File(PathBuf::from(a))),
        None => Err("missing file argument".into()),
    }
}

fn direction(d: &'static str, s: &str) -> Result<u8, PushConfigError> {
    match s {
        "0" => Ok(0),
        "1" => Ok(1),
        _ => Err(PushConfigError::Invalid {
            directive: d,
            reason: format!("key direction {s:?} is not 0 or 1"),
        }),
    }
}

/// Parses the text of a server config (pure).
pub fn parse_server_config(text: &str) -> Result<ServerConfig, PushConfigError> {
    let mut cfg = ServerConfig::default();
    let mut lines = text.lines().enumerate();
    while let Some((i, raw)) = lines.next() {
        let lineno = i + 1;
        let trimmed = raw.trim();
        // Inline blocks: <ca> ... </ca>
        if let Some(tag) = trimmed.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
            if tag.starts_with('/') {
                return Err(PushConfigError::Syntax {
                    line: lineno,
                    reason: format!("closing tag <{tag}> without opening tag"),
                });
            }
            let close = format!("</{tag}>");
            let mut body = String::new();
            let mut closed = false;
            for (_, l) in lines.by_ref() {
                if l.trim() == close {
                    closed = true;
                    break;
                }
                body.push_str(l);
                body.push('\n');
            }
            if !closed {
                return Err(PushConfigError::Syntax {
                    line: lineno,
                    reason: format!("<{tag}> block not closed"),
                });
            }
            match tag {
                "ca" => cfg.ca = Some(Material::Inline(body)),
                "tls-crypt" => cfg.tls_crypt = Some(Material::Inline(body)),
                "tls-auth" => cfg.tls_auth = Some(Material::Inline(body)),
                "tls-crypt-v2" => cfg.uses_tls_crypt_v2 = true,
                _ => {} // cert, key, dh, ...: never read
            }
            continue;
        }
        let toks = tokenize(raw).map_err(|reason| PushConfigError::Syntax {
            line: lineno,
            reason,
        })?;
        let Some((name, args)) = toks.split_first() else {
            continue;
        };
        let name = name.strip_prefix("--").unwrap_or(name);
        let bad = |directive: &'static str, reason: String| PushConfigError::Invalid {
            directive,
            reason,
        };
        match name {
            "proto" => cfg.proto = Some(one_arg("proto", args)?),
            "port" | "lport" => {
                let p = one_arg("port", args)?;
                cfg.port = Some(
                    p.parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| bad("port", format!("{p:?} is not a port")))?,
                );
            }
            "dev" => cfg.dev = Some(one_arg("dev", args)?),
            "dev-type" => cfg.dev_type = Some(one_arg("dev-type", args)?),
            "cipher" => cfg.cipher = Some(one_arg("cipher", args)?),
            "data-ciphers" | "ncp-ciphers" => {
                cfg.data_ciphers = Some(one_arg("data-ciphers", args)?)
            }
            "auth" => cfg.auth = Some(one_arg("auth", args)?),
            "tls-version-min" => cfg.tls_version_min = Some(one_arg("tls-version-min", args)?),
            "ca" | "tls-crypt" if args.first().map(String::as_str) == Some("[inline]") => {}
            "ca" => cfg.ca = Some(material(args).map_err(|r| bad("ca", r))?),
            "tls-crypt" => cfg.tls_crypt = Some(material(args).map_err(|r| bad("tls-crypt", r))?),
            "tls-crypt-v2" => cfg.uses_tls_crypt_v2 = true,
            "tls-auth" => {
                if args.first().map(String::as_str) != Some("[inline]") {
                    cfg.tls_auth = Some(material(args).map_err(|r| bad("tls-auth", r))?);
                }
                if let Some(d) = args.get(1) {
                    cfg.key_direction = Some(direction("tls-auth", d)?);
                }
            }
            "key-direction" => {
                cfg.key_direction = Some(direction(
                    "key-direction",
                    &one_arg("key-direction", args)?,
                )?)
            }
            "cd" => cfg.cd = Some(PathBuf::from(one_arg("cd", args)?)),
            "management" => cfg.management = Some(args.to_vec()),
            "user" => cfg.user = Some(one_arg("user", args)?),
            _ => {}
        }
    }
    Ok(cfg)
}

/// Normalizes `proto` to `udp` or `tcp`.
pub fn normalize_proto(p: &str) -> Result<&'static str, PushConfigError> {
    match p {
        "udp" | "udp4" | "udp6" => Ok("udp"),
        "tcp" | "tcp4" | "tcp6" | "tcp-server" | "tcp4-server" | "tcp6-server" => Ok("tcp"),
        other => Err(PushConfigError::Invalid {
            directive: "proto",
            reason: format!("{other:?} is not a server transport (udp or tcp)"),
        }),
    }
}

/// The tun device OpenVPN uses (`dev tun` → `tun0`).
/// A device of any name is a tun device when `dev-type tun` says so (OpenVPN's rule: the
/// name's prefix decides only when `dev-type` is absent).
pub fn tun_device(cfg: &ServerConfig) -> Result<String, PushConfigError> {
    let refuse = |what: &str| PushConfigError::Invalid {
        directive: "dev",
        reason: format!("{what}: only tun devices are supported"),
    };
    match (cfg.dev.as_deref(), cfg.dev_type.as_deref()) {
        (_, Some(t)) if t != "tun" => Err(refuse(&format!("dev-type {t:?}"))),
        (None | Some("tun"), _) => Ok("tun0".into()),
        (Some(d), Some("tun")) => Ok(d.to_string()),
        (Some(d), _) if d.starts_with("tun") => Ok(d.to_string()),
        (Some(d), _) => Err(refuse(&format!("{d:?} (without dev-type tun)"))),
    }
}

/// Resolves a path relative to `cd` (itself relative to the config dir) or the config dir.
pub fn resolve_path(cfg: &ServerConfig, config_dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        return p.to_path_buf();
    }
    let base = match &cfg.cd {
        Some(cd) if cd.is_absolute() => cd.clone(),
        Some(cd) => config_dir.join(cd),
        None => config_dir.to_path_buf(),
    };
    base.join(p)
}

/// The files a config refers to (for watching).
pub fn referenced_files(cfg: &ServerConfig, config_dir: &Path) -> Vec<PathBuf> {
    [&cfg.ca, &cfg.tls_crypt, &cfg.tls_auth]
        .into_iter()
        .flatten()
        .filter_map(|m| match m {
            Material::File(p) => Some(resolve_path(cfg, config_dir, p)),
            Material::Inline(_) => None,
        })
        .collect()
}

fn read_text(path: &Path, max: u64) -> Result<String, PushConfigError> {
    let bytes = crate::settings::read_bounded(path, max).map_err(|e| PushConfigError::Read {
        path: path.to_path_buf(),
        source: e,
    })?;
    String::from_utf8(bytes).map_err(|_| PushConfigError::NotUtf8 {
        path: path.to_path_buf(),
    })
}

fn load_material(
    cfg: &ServerConfig,
    dir: &Path,
    m: &Material,
    what: &'static str,
    marker: &str,
) -> Result<String, PushConfigError> {
    let text = match m {
        Material::Inline(t) => t.clone(),
        Material::File(p) => read_text(&resolve_path(cfg, dir, p), MAX_KEY_BYTES)?,
    };
    if text.contains("PRIVATE KEY") {
        return Err(PushConfigError::PrivateKey { what });
    }
    if !text.contains(marker) {
        return Err(PushConfigError::Invalid {
            directive: what,
            reason: format!("no {marker:?} found"),
        });
    }
    Ok(text)
}

/// Builds the product config map from a parsed config (reads the CA / key files).
pub fn product_config(
    cfg: &ServerConfig,
    config_dir: &Path,
    endpoint: Option<&str>,
) -> Result<BTreeMap<String, String>, PushConfigError> {
    let mut out = BTreeMap::new();
    let proto = normalize_proto(cfg.proto.as_deref().unwrap_or("udp"))?;
    out.insert("proto".into(), proto.to_string());
    out.insert("port".into(), cfg.port.unwrap_or(1194).to_string());
    tun_device(cfg)?;
    out.insert("dev".into(), "tun".into());
    for (k, v) in [
        ("cipher", &cfg.cipher),
        ("dataCiphers", &cfg.data_ciphers),
        ("auth", &cfg.auth),
        ("tlsVersionMin", &cfg.tls_version_min),
    ] {
        if let Some(v) = v {
            if v.is_empty()
                || v.len() > 256
                || v.chars().any(|c| c.is_whitespace() || c.is_control())
            {
                return Err(PushConfigError::Invalid {
                    directive: "cipher/auth",
                    reason: format!("{k}: bad value"),
                });
            }
            out.insert(k.into(), v.clone());
        }
    }
    let ca = cfg.ca.as_ref().ok_or(PushConfigError::NoCa)?;
    out.insert(
        "ca".into(),
        load_material(cfg, config_dir, ca, "ca", "-----BEGIN CERTIFICATE-----")?,
    );
    const STATIC_KEY: &str = "-----BEGIN OpenVPN Static key V1-----";
    if let Some(m) = &cfg.tls_crypt {
        out.insert(
            "tlsCrypt".into(),
            load_material(cfg, config_dir, m, "tls-crypt", STATIC_KEY)?,
        );
    } else if let Some(m) = &cfg.tls_auth {
        out.insert(
            "tlsAuth".into(),
            load_material(cfg, config_dir, m, "tls-auth", STATIC_KEY)?,
        );
        if let Some(d) = cfg.key_direction {
            out.insert("keyDirection".into(), (1 - d).to_string());
        }
    } else if cfg.uses_tls_crypt_v2 {
        return Err(PushConfigError::Invalid {
            directive: "tls-crypt-v2",
            reason: "per-client tls-crypt-v2 keys cannot be shared through the product config; use tls-crypt or tls-auth".into(),
        });
    }
    if let Some(e) = endpoint {
        out.insert("serviceEndpointAddress".into(), e.to_string());
    }
    Ok(out)
}

/// A loaded config: the product config map and the files it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub config: BTreeMap<String, String>,
    pub parsed: ServerConfig,
    pub files: Vec<PathBuf>,
}

/// Reads and converts a server config file.
pub fn load(path: &Path, endpoint: Option<&str>) -> Result<Loaded, PushConfigError> {
    let text = read_text(path, MAX_CONFIG_BYTES)?;
    let parsed = parse_server_config(&text)?;
    let dir = path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let config = product_config(&parsed, &dir, endpoint)?;
    let mut files = vec![path.to_path_buf()];
    files.extend(referenced_files(&parsed, &dir));
    Ok(Loaded {
        config,
        parsed,
        files,
    })
}

/// Calls SetProductConfig.
pub async fn push(
    client: &Client,
    config: BTreeMap<String, String>,
) -> Result<SetProductConfigResponse, PushConfigError> {
    client
        .set_product_config(&SetProductConfigRequest { config })
        .await
        .map_err(PushConfigError::Core)
}

#[cfg(test)]
mod tests;
