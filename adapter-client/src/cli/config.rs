//! The settings of `connect` and `render`: the TOML config file, the token file, and how
//! flags, environment and file combine (flag, then its environment variable, then the file,
//! then the default).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use service_api::{BodyError, ClientKey, Secret};
use tc_shaper::Tools;

use super::{ConnectArgs, CoreArgs, DEFAULT_CORE_URL, MAX_FILE};
use crate::connect::{ConnectError, ConnectSettings};
use crate::render;
use crate::state;

/// The TOML config file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub core_url: Option<String>,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    pub client_key: Option<String>,
    pub openvpn: Option<PathBuf>,
    pub runtime_dir: Option<PathBuf>,
    pub state_file: Option<PathBuf>,
    pub tun_dev: Option<String>,
    pub ifb_dev: Option<String>,
    pub no_shaping: Option<bool>,
    pub tc: Option<PathBuf>,
    pub ip: Option<PathBuf>,
    pub report_interval_secs: Option<u64>,
    pub bytecount_interval_secs: Option<u32>,
    pub backoff_initial_ms: Option<u64>,
    pub backoff_max_secs: Option<u64>,
    pub stop_timeout_secs: Option<u64>,
    pub verb: Option<u8>,
    pub suspend_poll_secs: Option<u64>,
    pub max_suspend_wait_secs: Option<u64>,
    pub halt_grace_secs: Option<u64>,
    pub dns: Option<crate::dns::DnsMode>,
    pub lockdown: Option<bool>,
    pub lockdown_allow: Option<Vec<String>>,
    pub nft: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("could not read {what} {path}: {source}")]
    ReadFile {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path} is larger than {MAX_FILE} bytes")]
    FileTooLarge { what: &'static str, path: PathBuf },
    #[error("config file {path} is invalid: {source}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: ConfigFileError,
    },
    #[error("access file {path} is not a valid access message: {source}")]
    ParseAccess {
        path: PathBuf,
        #[source]
        source: BodyError,
    },
    #[error("token file {0} is empty")]
    EmptyToken(PathBuf),
    #[error("no client token: give --token-file, --token, ADAPTER_CLIENT_TOKEN(_FILE) or token/token_file in the config file")]
    MissingToken,
    #[error(
        "no client key: give --client-key, ADAPTER_CLIENT_KEY or client_key in the config file"
    )]
    MissingClientKey,
    #[error("invalid setting: {0}")]
    Invalid(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    State(#[from] state::StateError),
    #[error("no state file found in {0} (is `adapter-client connect` running?)")]
    NoStateFile(PathBuf),
    #[error(transparent)]
    Up(Box<crate::up::UpError>),
}

impl From<crate::up::UpError> for CliError {
    fn from(e: crate::up::UpError) -> Self {
        CliError::Up(Box::new(e))
    }
}

impl CliError {
    /// Exit code for errors: 2 for usage/config errors, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::ParseConfig { .. }
            | Self::MissingToken
            | Self::MissingClientKey
            | Self::Invalid(_) => 2,
            Self::Up(e) => e.exit_code(),
            _ => 1,
        }
    }
}

pub(super) fn read_small(what: &'static str, path: &Path) -> Result<String, CliError> {
    let rerr = |e| CliError::ReadFile {
        what,
        path: path.to_path_buf(),
        source: e,
    };
    let md = std::fs::metadata(path).map_err(rerr)?;
    if md.len() > MAX_FILE {
        return Err(CliError::FileTooLarge {
            what,
            path: path.to_path_buf(),
        });
    }
    std::fs::read_to_string(path).map_err(rerr)
}

/// Why the config file could not be read. It may hold the token, so no error quotes it: a
/// syntax error is told by position, a field by its name and the kind of problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigFileError {
    #[error("TOML syntax error at line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error(transparent)]
    Field(BodyError),
}

/// Parses the config file's text (see [`ConfigFileError`]).
pub fn parse_file_config(text: &str) -> Result<FileConfig, ConfigFileError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map_or(0, |s| s.start).min(text.len());
        let before = text.get(..at).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        ConfigFileError::Syntax {
            line,
            column,
            message: syntax_message(e.message()),
        }
    })?;
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        ConfigFileError::Field(service_api::body::field_error(
            e.path(),
            e.inner().message(),
        ))
    })
}

/// toml's syntax messages come from a fixed set (`invalid basic string`, ``expected `.`,
/// `=` ``) except that they name keys (``duplicate key `x` ``): the key is left out too,
/// the line is given.
fn syntax_message(message: &str) -> String {
    let mut out = String::new();
    let mut rest = message;
    while let Some(i) = rest.find("key `") {
        out.push_str(&rest[..i + "key".len()]);
        let after = &rest[i + "key `".len()..];
        rest = after.find('`').map_or("", |j| &after[j + 1..]);
    }
    out.push_str(rest);
    out.replace('\n', "; ")
}

pub fn load_file_config(path: Option<&Path>) -> Result<FileConfig, CliError> {
    let Some(path) = path else {
        return Ok(FileConfig::default());
    };
    let text = read_small("config file", path)?;
    parse_file_config(&text).map_err(|e| CliError::ParseConfig {
        path: path.to_path_buf(),
        source: e,
    })
}

fn read_token_file(path: &Path) -> Result<Secret, CliError> {
    use std::os::unix::fs::PermissionsExt;
    let text = read_small("token file", path)?;
    if let Ok(md) = std::fs::metadata(path) {
        if md.permissions().mode() & 0o077 != 0 {
            tracing::warn!(path = %path.display(), "the token file is readable by group/others; use mode 0600");
        }
    }
    let tok = text.lines().next().unwrap_or_default().trim().to_string();
    if tok.is_empty() {
        return Err(CliError::EmptyToken(path.to_path_buf()));
    }
    Ok(Secret(tok))
}

/// The core URL from the flag/env, then the file, then [`DEFAULT_CORE_URL`].
pub fn resolve_core_url(flag: Option<&str>, f: &FileConfig) -> String {
    flag.map(str::to_string)
        .or_else(|| f.core_url.clone())
        .unwrap_or_else(|| DEFAULT_CORE_URL.to_string())
}

/// The token from `--token`, `--token-file` (or their env vars), then the file's `token`,
/// `token_file`; `None` when none is given.
pub fn resolve_token(
    token: Option<&Secret>,
    token_file: Option<&Path>,
    f: &FileConfig,
) -> Result<Option<Secret>, CliError> {
    Ok(if let Some(t) = token {
        Some(Secret(t.expose().trim().to_string()))
    } else if let Some(p) = token_file {
        Some(read_token_file(p)?)
    } else if let Some(t) = &f.token {
        Some(Secret(t.expose().trim().to_string()))
    } else if let Some(p) = &f.token_file {
        Some(read_token_file(p)?)
    } else {
        None
    })
}

/// Core URL, token and client key from flags/env, then the file.
pub fn resolve_core(
    a: &CoreArgs,
    f: &FileConfig,
    need_token: bool,
) -> Result<(String, Option<Secret>, ClientKey), CliError> {
    let url = resolve_core_url(a.core_url.as_deref(), f);
    let token = resolve_token(a.token.as_ref(), a.token_file.as_deref(), f)?;
    if need_token && token.as_ref().is_none_or(|t| t.expose().is_empty()) {
        return Err(CliError::MissingToken);
    }
    let key = a
        .client_key
        .clone()
        .or_else(|| f.client_key.clone())
        .filter(|k| !k.is_empty())
        .ok_or(CliError::MissingClientKey)?;
    if key.len() > service_api::MAX_FIELD_LEN || key.chars().any(char::is_control) {
        return Err(CliError::Invalid(
            "client key: too long or contains control characters".into(),
        ));
    }
    Ok((url, token, ClientKey(key)))
}

/// Resolves all `connect` settings.
pub fn resolve_connect(a: &ConnectArgs) -> Result<ConnectSettings, CliError> {
    let f = load_file_config(a.core.config.as_deref())?;
    let (url, token, key) = resolve_core(&a.core, &f, true)?;
    let token = token.ok_or(CliError::MissingToken)?;
    let mut s = ConnectSettings::new(key, url, token);
    if let Some(v) = a.openvpn.clone().or(f.openvpn.clone()) {
        s.openvpn = v;
    }
    if let Some(v) = a.runtime_dir.clone().or(f.runtime_dir.clone()) {
        s.runtime_dir = v;
    }
    if let Some(v) = a.state_file.clone().or(f.state_file.clone()) {
        s.state_file = v;
    }
    if let Some(v) = a.tun_dev.clone().or(f.tun_dev.clone()) {
        s.tun_dev = v;
    }
    if let Some(v) = a.ifb_dev.clone().or(f.ifb_dev.clone()) {
        s.ifb_dev = v;
    }
    s.shaping = !(a.no_shaping || f.no_shaping.unwrap_or(false));
    s.tools = Tools {
        tc: a
            .tc
            .clone()
            .or(f.tc.clone())
            .unwrap_or_else(|| PathBuf::from("tc")),
        ip: a
            .ip
            .clone()
            .or(f.ip.clone())
            .unwrap_or_else(|| PathBuf::from("ip")),
    };
    if let Some(v) = a.report_interval.or(f.report_interval_secs) {
        if v == 0 {
            return Err(CliError::Invalid("report interval must be ≥ 1 s".into()));
        }
        s.report_interval = Duration::from_secs(v);
    }
    if let Some(v) = a.bytecount_interval.or(f.bytecount_interval_secs) {
        if v == 0 {
            return Err(CliError::Invalid("bytecount interval must be ≥ 1 s".into()));
        }
        s.bytecount_interval = v;
    }
    if let Some(v) = a.backoff_initial_ms.or(f.backoff_initial_ms) {
        s.backoff_initial = Duration::from_millis(v.max(1));
    }
    if let Some(v) = a.backoff_max.or(f.backoff_max_secs) {
        s.backoff_max = Duration::from_secs(v.max(1));
    }
    if let Some(v) = a.stop_timeout.or(f.stop_timeout_secs) {
        s.stop_timeout = Duration::from_secs(v.max(1));
    }
    if let Some(v) = a.verb.or(f.verb) {
        s.verb = v;
    }
    if let Some(v) = a.suspend_poll.or(f.suspend_poll_secs) {
        if v == 0 {
            return Err(CliError::Invalid(
                "suspend poll interval must be ≥ 1 s".into(),
            ));
        }
        s.suspend_poll = Duration::from_secs(v);
    }
    if let Some(v) = a.max_suspend_wait.or(f.max_suspend_wait_secs) {
        s.max_suspend_wait = Some(Duration::from_secs(v));
    }
    if let Some(v) = a.halt_grace.or(f.halt_grace_secs) {
        s.halt_grace = Duration::from_secs(v);
    }
    s.net = super::net::resolve_net(&a.net, &f)?;
    render::check_dev_name(&s.tun_dev).map_err(|e| CliError::Invalid(e.to_string()))?;
    render::check_dev_name(&s.ifb_dev).map_err(|e| CliError::Invalid(e.to_string()))?;
    Ok(s)
}
