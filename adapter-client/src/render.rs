//! Renders the OpenVPN client configuration from an access message.
//!
//! The access message is **untrusted input**. The renderer works from an allow-list: every
//! directive in the output is written by this module; values from the message only fill in
//! arguments, and only after a strict per-field check. Inline blocks (`<ca>`, `<tls-crypt>`,
//! `<tls-auth>`) are parsed and re-emitted in canonical form, so nothing but base64 / hex key
//! material can appear between their tags. The only file path in the config is the
//! `auth-user-pass` file and the management socket, both chosen by the caller (never by the
//! message).
//!
//! Policy for `additionalParams` keys this module does not know: they are ignored (never
//! rendered) and their names are returned in [`RenderedConfig::ignored_keys`] so the caller
//! can warn. Ignoring is safe because key names never reach the config; refusing them would
//! break a client whenever a server adds a new product-config key.

mod blocks;
mod check;
pub mod pull;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use service_api::{speed_keys, AccessMessage, ClientKey, Secret, SpeedLimits};

pub use blocks::{canonical_certificates, canonical_static_key};
pub use check::check_dev_name;
use check::{
    check_charset, check_line, check_local_path, is_token_char, parse_endpoint, parse_port,
};

/// Largest access message accepted (bytes of its JSON form).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Largest PEM / key value accepted (bytes).
pub const MAX_PEM_BYTES: usize = 16 * 1024;
/// Longest single-line value accepted (bytes).
pub const MAX_VALUE_LEN: usize = 256;
/// Most `additionalParams` entries accepted.
pub const MAX_PARAMS: usize = 64;
/// Longest `additionalParams` key accepted (bytes).
pub const MAX_KEY_LEN: usize = 64;
/// Most certificates in `ca`.
pub const MAX_CERTS: usize = 16;
/// Port used when neither `serviceEndpointAddress` nor `port` gives one.
pub const DEFAULT_PORT: u16 = 1194;

/// Keys of `additionalParams` (docs/INTERFACES.md).
pub mod keys {
    pub const PROTO: &str = "proto";
    pub const PORT: &str = "port";
    pub const DEV: &str = "dev";
    pub const CIPHER: &str = "cipher";
    pub const DATA_CIPHERS: &str = "dataCiphers";
    pub const AUTH: &str = "auth";
    pub const TLS_VERSION_MIN: &str = "tlsVersionMin";
    pub const CA: &str = "ca";
    pub const TLS_CRYPT: &str = "tlsCrypt";
    pub const TLS_AUTH: &str = "tlsAuth";
    pub const KEY_DIRECTION: &str = "keyDirection";
    pub const COMPRESS: &str = "compress";
    pub const SERVICE_ENDPOINT_ADDRESS: &str = "serviceEndpointAddress";
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("is missing")]
    Missing,
    #[error("is empty")]
    Empty,
    #[error("contains a newline")]
    Newline,
    #[error("contains a control character")]
    ControlChar,
    #[error("is {len} bytes long, the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("has characters outside the allowed set {allowed}")]
    Charset { allowed: &'static str },
    #[error("{0}")]
    Invalid(String),
    #[error("is not allowed: {0}")]
    NotAllowed(String),
}

/// Errors of [`render`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("access message is {size} bytes, the limit is {limit}")]
    MessageTooLarge { size: usize, limit: usize },
    #[error("access message has {count} additionalParams, the limit is {limit}")]
    TooManyParams { count: usize, limit: usize },
    /// A field of the access message was refused; `field` is its path, e.g.
    /// `additionalParams.cipher`.
    #[error("{field}: {problem}")]
    Field { field: String, problem: Problem },
    /// A local path chosen by the adapter cannot be written safely into the config.
    #[error("local path {path:?} cannot be used in the OpenVPN config: {reason}")]
    LocalPath { path: PathBuf, reason: &'static str },
    #[error("tun device name {name:?}: {reason}")]
    TunDevice { name: String, reason: &'static str },
}

impl RenderError {
    /// The refused field, when the error is about one.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Field { field, .. } => Some(field),
            _ => None,
        }
    }
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Field { problem, .. } => Some(problem),
            _ => None,
        }
    }
}

fn field_err(field: impl Into<String>, problem: Problem) -> RenderError {
    RenderError::Field {
        field: field.into(),
        problem,
    }
}

fn param_field(key: &str) -> String {
    format!("additionalParams.{key}")
}

/// Local choices of the adapter (never from the message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderOptions {
    /// The `auth-user-pass` file.
    pub auth_file: PathBuf,
    /// The management unix socket.
    pub mgmt_socket: PathBuf,
    /// The tun device name OpenVPN must create (so the adapter knows what to shape).
    pub tun_dev: String,
    /// OpenVPN `verb`.
    pub verb: u8,
}

/// Transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Udp,
    Udp4,
    Udp6,
    Tcp,
    Tcp4,
    Tcp6,
}

impl Proto {
    fn parse(v: &str) -> Option<Self> {
        Some(match v {
            "udp" => Self::Udp,
            "udp4" => Self::Udp4,
            "udp6" => Self::Udp6,
            "tcp" | "tcp-client" => Self::Tcp,
            "tcp4" | "tcp4-client" => Self::Tcp4,
            "tcp6" | "tcp6-client" => Self::Tcp6,
            _ => return None,
        })
    }
    /// The client-side `proto` argument.
    pub fn directive_arg(self) -> &'static str {
        match self {
            Self::Udp => "udp",
            Self::Udp4 => "udp4",
            Self::Udp6 => "udp6",
            Self::Tcp => "tcp-client",
            Self::Tcp4 => "tcp4-client",
            Self::Tcp6 => "tcp6-client",
        }
    }
    pub fn is_udp(self) -> bool {
        matches!(self, Self::Udp | Self::Udp4 | Self::Udp6)
    }
}

/// The credentials for the `auth-user-pass` file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: ClientKey,
    pub password: Secret,
}

impl Credentials {
    /// Contents of the auth-user-pass file (two lines).
    pub fn file_contents(&self) -> String {
        format!("{}\n{}\n", self.username.0, self.password.expose())
    }
}

/// A validated, rendered client configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderedConfig {
    /// The config file text (contains no secret: the password goes to the auth file).
    pub text: String,
    pub credentials: Credentials,
    /// Server host (name or address, IPv6 without brackets).
    pub host: String,
    pub port: u16,
    pub proto: Proto,
    pub speed: SpeedLimits,
    /// `additionalParams` keys that were ignored (names escaped for display).
    pub ignored_keys: Vec<String>,
    /// Non-fatal remarks (e.g. the port given twice with different values).
    pub warnings: Vec<String>,
}

impl RenderedConfig {
    /// `host:port` for display (`[v6]:port` for IPv6).
    pub fn endpoint(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Renders the client config. Pure: no I/O.
pub fn render(msg: &AccessMessage, opts: &RenderOptions) -> Result<RenderedConfig, RenderError> {
    let size = serde_json::to_vec(msg)
        .map(|v| v.len())
        .unwrap_or(usize::MAX);
    if size > MAX_MESSAGE_BYTES {
        return Err(RenderError::MessageTooLarge {
            size,
            limit: MAX_MESSAGE_BYTES,
        });
    }
    let params = &msg.additional_params;
    if params.len() > MAX_PARAMS {
        return Err(RenderError::TooManyParams {
            count: params.len(),
            limit: MAX_PARAMS,
        });
    }
    let auth_file = check_local_path(&opts.auth_file)?;
    let mgmt_socket = check_local_path(&opts.mgmt_socket)?;
    check_dev_name(&opts.tun_dev)?;

    // Credentials: single lines, no control characters. Values never appear in errors.
    check_line("username", &msg.username.0, MAX_VALUE_LEN)?;
    check_line("password", msg.password.expose(), MAX_VALUE_LEN)?;

    let mut warnings = Vec::new();
    let (host, ep_port) = parse_endpoint(&msg.service_endpoint_address)?;

    let get = |k: &str| params.get(k).map(String::as_str);

    // Known keys; everything else is ignored and reported.
    const KNOWN: [&str; 13] = [
        keys::PROTO,
        keys::PORT,
        keys::DEV,
        keys::CIPHER,
        keys::DATA_CIPHERS,
        keys::AUTH,
        keys::TLS_VERSION_MIN,
        keys::CA,
        keys::TLS_CRYPT,
        keys::TLS_AUTH,
        keys::KEY_DIRECTION,
        keys::COMPRESS,
        keys::SERVICE_ENDPOINT_ADDRESS,
    ];
    let mut ignored_keys = Vec::new();
    for k in params.keys() {
        if k.len() > MAX_KEY_LEN {
            let shown: String = k.chars().take(32).collect();
            return Err(field_err(
                format!("additionalParams key {shown:?}…"),
                Problem::TooLong {
                    len: k.len(),
                    max: MAX_KEY_LEN,
                },
            ));
        }
        if !KNOWN.contains(&k.as_str()) && !speed_keys::ALL.contains(&k.as_str()) {
            ignored_keys.push(k.escape_debug().to_string());
        }
    }
    if let Some(v) = get(keys::COMPRESS) {
        check_line(&param_field(keys::COMPRESS), v, MAX_VALUE_LEN)?;
        warnings.push("additionalParams.compress is ignored: compression is never enabled".into());
    }

    let proto = match get(keys::PROTO) {
        None => Proto::Udp,
        Some(v) => {
            let f = param_field(keys::PROTO);
            check_line(&f, v, 16)?;
            Proto::parse(v).ok_or_else(|| {
                field_err(
                    f,
                    Problem::NotAllowed("expected udp, udp4, udp6, tcp, tcp4 or tcp6".into()),
                )
            })?
        }
    };
    let param_port = get(keys::PORT)
        .map(|v| parse_port(&param_field(keys::PORT), v))
        .transpose()?;
    let port = match (ep_port, param_port) {
        (Some(a), Some(b)) if a != b => {
            warnings.push(format!(
                "serviceEndpointAddress port {a} differs from additionalParams.port {b}; using {a}"
            ));
            a
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => DEFAULT_PORT,
    };
    if let Some(v) = get(keys::DEV) {
        let f = param_field(keys::DEV);
        check_line(&f, v, 16)?;
        if v != "tun" {
            return Err(field_err(
                f,
                Problem::NotAllowed("only \"tun\" is supported".into()),
            ));
        }
    }
    let cipher = get(keys::CIPHER)
        .map(|v| {
            check_charset(
                &param_field(keys::CIPHER),
                v,
                64,
                "[A-Za-z0-9_-]",
                is_token_char,
            )
            .map(|()| v)
        })
        .transpose()?;
    let data_ciphers = get(keys::DATA_CIPHERS)
        .map(|v| {
            let f = param_field(keys::DATA_CIPHERS);
            check_charset(&f, v, MAX_VALUE_LEN, "[A-Za-z0-9_:-]", |c| {
                is_token_char(c) || c == ':'
            })?;
            if v.split(':').any(str::is_empty) {
                return Err(field_err(
                    f,
                    Problem::Invalid("has an empty cipher name".into()),
                ));
            }
            Ok(v)
        })
        .transpose()?;
    let auth = get(keys::AUTH)
        .map(|v| {
            check_charset(
                &param_field(keys::AUTH),
                v,
                64,
                "[A-Za-z0-9_-]",
                is_token_char,
            )
            .map(|()| v)
        })
        .transpose()?;
    let tls_version_min = get(keys::TLS_VERSION_MIN)
        .map(|v| {
            let f = param_field(keys::TLS_VERSION_MIN);
            check_charset(&f, v, 3, "[0-9.]", |c| c.is_ascii_digit() || c == '.')?;
            let b = v.as_bytes();
            if !(b.len() == 3 && b[0].is_ascii_digit() && b[1] == b'.' && b[2].is_ascii_digit()) {
                return Err(field_err(
                    f,
                    Problem::Invalid("expected a version like 1.2".into()),
                ));
            }
            Ok(v)
        })
        .transpose()?;
    let ca = match get(keys::CA) {
        Some(v) => canonical_certificates(&param_field(keys::CA), v)?,
        None => return Err(field_err(param_field(keys::CA), Problem::Missing)),
    };
    let tls_crypt = get(keys::TLS_CRYPT)
        .map(|v| canonical_static_key(&param_field(keys::TLS_CRYPT), v))
        .transpose()?;
    let tls_auth = get(keys::TLS_AUTH)
        .map(|v| canonical_static_key(&param_field(keys::TLS_AUTH), v))
        .transpose()?;
    if tls_crypt.is_some() && tls_auth.is_some() {
        return Err(field_err(
            param_field(keys::TLS_AUTH),
            Problem::NotAllowed("tlsCrypt and tlsAuth cannot both be used".into()),
        ));
    }
    let key_direction = match get(keys::KEY_DIRECTION) {
        None => "1",
        Some(v) => {
            let f = param_field(keys::KEY_DIRECTION);
            check_line(&f, v, 1)?;
            match v {
                "0" => "0",
                "1" => "1",
                _ => return Err(field_err(f, Problem::NotAllowed("expected 0 or 1".into()))),
            }
        }
    };
    let speed = SpeedLimits::from_params(params).map_err(|e| {
        let field = match &e {
            service_api::SpeedError::NotPositiveDecimal { field, .. }
            | service_api::SpeedError::TooLarge { field, .. } => field.clone(),
            service_api::SpeedError::MinAboveMax { min_field, .. } => min_field.clone(),
        };
        // The SpeedError text already names the field; keep only the problem part.
        let text = e.to_string();
        let problem = text
            .strip_prefix(&format!("{field}: "))
            .unwrap_or(&text)
            .to_string();
        field_err(param_field(&field), Problem::Invalid(problem))
    })?;

    // Everything is checked; write the config. Only this block produces directives.
    let mut t = String::new();
    let mut line = |s: &str| {
        t.push_str(s);
        t.push('\n');
    };
    line("# OpenVPN client config written by adapter-client. Do not edit: it is rewritten");
    line("# from the access message on every start.");
    line("client");
    line(&format!("dev {}", opts.tun_dev));
    line("dev-type tun");
    line(&format!("proto {}", proto.directive_arg()));
    line(&format!("remote {host} {port}"));
    line("nobind");
    line("persist-key");
    line("resolv-retry 60");
    line("remote-cert-tls server");
    line(&format!("auth-user-pass {auth_file}"));
    line("auth-nocache");
    line("auth-retry none");
    // What the server may push (routes, DNS, the connection's own settings); see `pull`.
    for l in pull::pull_filter_lines() {
        line(&l);
    }
    if proto.is_udp() {
        line("explicit-exit-notify 1");
    }
    if let Some(c) = cipher {
        line(&format!("cipher {c}"));
    }
    if let Some(c) = data_ciphers {
        line(&format!("data-ciphers {c}"));
    }
    if let Some(a) = auth {
        line(&format!("auth {a}"));
    }
    if let Some(v) = tls_version_min {
        line(&format!("tls-version-min {v}"));
    }
    line(&format!("management {mgmt_socket} unix"));
    line("management-hold");
    line(&format!("verb {}", opts.verb.min(11)));
    line("<ca>");
    t.push_str(&ca);
    t.push_str("</ca>\n");
    if let Some(k) = tls_crypt {
        t.push_str("<tls-crypt>\n");
        t.push_str(&k);
        t.push_str("</tls-crypt>\n");
    }
    if let Some(k) = tls_auth {
        let _ = writeln!(t, "key-direction {key_direction}");
        t.push_str("<tls-auth>\n");
        t.push_str(&k);
        t.push_str("</tls-auth>\n");
    }

    Ok(RenderedConfig {
        text: t,
        credentials: Credentials {
            username: msg.username.clone(),
            password: msg.password.clone(),
        },
        host,
        port,
        proto,
        speed,
        ignored_keys,
        warnings,
    })
}

/// The directives [`render`] can ever write (for tests and documentation).
pub const EMITTED_DIRECTIVES: [&str; 22] = [
    "client",
    "dev",
    "dev-type",
    "proto",
    "remote",
    "nobind",
    "persist-key",
    "resolv-retry",
    "remote-cert-tls",
    "auth-user-pass",
    "auth-nocache",
    "auth-retry",
    "pull-filter",
    "explicit-exit-notify",
    "cipher",
    "data-ciphers",
    "auth",
    "tls-version-min",
    "management",
    "management-hold",
    "verb",
    "key-direction",
];

/// Convenience for tests and the `render` command: the access message fields as a map.
pub fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

#[cfg(test)]
mod tests;
