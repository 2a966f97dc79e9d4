//! Settings shared by every subcommand: the core URL, the product token, timeouts, and the
//! optional TOML config file (`--config`) that may hold the same values.
//!
//! Precedence: command-line flag / environment variable, then the config file, then the
//! built-in default.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use service_api::{Client, Secret};

/// Default core URL.
pub const DEFAULT_CORE_URL: &str = "http://127.0.0.1:7700";
/// Default timeout of one core call (the hook must answer quickly).
pub const DEFAULT_CORE_TIMEOUT: Duration = Duration::from_secs(3);
/// Largest config / token file read.
pub const MAX_CONFIG_FILE: u64 = 64 * 1024;

/// Errors of loading settings.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("reading config file {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is larger than {max} bytes")]
    ConfigTooLarge { path: PathBuf, max: u64 },
    #[error("parsing config file {path}: {source}")]
    ParseConfig {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("reading token file {path}: {source}")]
    ReadToken {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("token file {path} is empty, too large or not one line of text")]
    BadToken { path: PathBuf },
    #[error("no product token: give --token-file (ADAPTER_SERVER_TOKEN_FILE), --token (ADAPTER_SERVER_TOKEN) or token/token_file in the config file")]
    NoToken,
    #[error("creating the core client: {0}")]
    Client(#[source] service_api::ApiError),
}

/// The TOML config file (`--config`). Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub core_url: Option<String>,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
    /// Timeout of one core call, milliseconds.
    pub core_timeout_ms: Option<u64>,
    /// Hook: answer auth synchronously even when OpenVPN offers deferred auth.
    pub sync: Option<bool>,
    /// Hook: where client-connect records session ids for client-disconnect.
    pub state_dir: Option<PathBuf>,
    /// Monitor: management address (unix socket path or host:port).
    pub management: Option<String>,
    pub management_password_file: Option<PathBuf>,
    pub bytecount_interval: Option<u32>,
    pub grace_period_secs: Option<u64>,
    pub client_auth: Option<bool>,
    pub release_hold: Option<bool>,
    pub server_config: Option<PathBuf>,
    pub endpoint: Option<String>,
    pub no_shaping: Option<bool>,
    pub nft: Option<bool>,
    pub nft_table: Option<String>,
    pub tun: Option<String>,
    pub ifb: Option<String>,
    pub link_capacity: Option<String>,
    pub max_clients: Option<u32>,
    pub netns: Option<String>,
    /// Monitor: listen for `adapter-server-hook` hand-offs on this socket.
    pub handoff_socket: Option<PathBuf>,
    /// Monitor: OpenVPN's user (name or uid), owner of the hand-off socket.
    pub handoff_user: Option<String>,
    /// Monitor: where to serve the Prometheus metrics (loopback `HOST:PORT`).
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// Reads a small file with a size bound.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>, std::io::Error> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut buf = Vec::new();
    f.take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("larger than {max} bytes"),
        ));
    }
    Ok(buf)
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<Self, SettingsError> {
        let meta = std::fs::metadata(path).map_err(|e| SettingsError::ReadConfig {
            path: path.to_path_buf(),
            source: e,
        })?;
        if meta.len() > MAX_CONFIG_FILE {
            return Err(SettingsError::ConfigTooLarge {
                path: path.to_path_buf(),
                max: MAX_CONFIG_FILE,
            });
        }
        let bytes = read_bounded(path, MAX_CONFIG_FILE).map_err(|e| SettingsError::ReadConfig {
            path: path.to_path_buf(),
            source: e,
        })?;
        let text = String::from_utf8(bytes).map_err(|_| SettingsError::ReadConfig {
            path: path.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8"),
        })?;
        Self::parse(&text).map_err(|e| SettingsError::ParseConfig {
            path: path.to_path_buf(),
            source: e,
        })
    }

    pub fn parse(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// Reads a token file: one line of printable ASCII (a trailing newline is allowed).
pub fn read_token_file(path: &Path) -> Result<Secret, SettingsError> {
    let bytes = read_bounded(path, 4096).map_err(|e| SettingsError::ReadToken {
        path: path.to_path_buf(),
        source: e,
    })?;
    parse_token(&bytes).ok_or_else(|| SettingsError::BadToken {
        path: path.to_path_buf(),
    })
}

/// Pure part of [`read_token_file`].
pub fn parse_token(bytes: &[u8]) -> Option<Secret> {
    let text = std::str::from_utf8(bytes).ok()?;
    let t = text.strip_suffix('\n').unwrap_or(text);
    let t = t.strip_suffix('\r').unwrap_or(t);
    if t.is_empty() || t.len() > 1024 || !t.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    Some(Secret(t.to_string()))
}

/// Resolved connection settings for the core.
#[derive(Debug, Clone)]
pub struct CoreSettings {
    pub url: String,
    pub token: Secret,
    pub timeout: Duration,
}

impl CoreSettings {
    /// Merges flags (already merged with env by clap) and the file config.
    pub fn resolve(
        url: Option<&str>,
        token: Option<&Secret>,
        token_file: Option<&Path>,
        timeout_ms: Option<u64>,
        file: &FileConfig,
    ) -> Result<Self, SettingsError> {
        let url = url
            .map(str::to_string)
            .or_else(|| file.core_url.clone())
            .unwrap_or_else(|| DEFAULT_CORE_URL.to_string());
        let token = if let Some(t) = token {
            t.clone()
        } else if let Some(p) = token_file {
            read_token_file(p)?
        } else if let Some(t) = &file.token {
            t.clone()
        } else if let Some(p) = &file.token_file {
            read_token_file(p)?
        } else {
            return Err(SettingsError::NoToken);
        };
        let timeout = timeout_ms
            .or(file.core_timeout_ms)
            .map(Duration::from_millis)
            .unwrap_or(DEFAULT_CORE_TIMEOUT);
        Ok(Self {
            url,
            token,
            timeout,
        })
    }

    pub fn client(&self) -> Result<Client, SettingsError> {
        Client::new(&self.url, self.token.clone(), self.timeout).map_err(SettingsError::Client)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_config_rejects_unknown_keys() {
        assert!(FileConfig::parse("core_url = \"http://x\"\nbogus = 1\n").is_err());
        let c = FileConfig::parse("core_url = \"http://x:1\"\ntoken = \"abc\"\nsync = true\n")
            .expect("valid");
        assert_eq!(c.core_url.as_deref(), Some("http://x:1"));
        assert_eq!(c.sync, Some(true));
        assert!(!format!("{c:?}").contains("abc"), "token leaked in Debug");
    }

    #[test]
    fn token_parsing() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (b"tok\n", Some("tok")),
            (b"tok\r\n", Some("tok")),
            (b"tok", Some("tok")),
            (b"", None),
            (b"\n", None),
            (b"two\nlines\n", None),
            (b"sp ace", None),
            (b"\xff\xfe", None),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse_token(input)
                    .map(|s| s.expose().to_string())
                    .as_deref(),
                *want,
                "{input:?}"
            );
        }
    }

    #[test]
    fn resolve_precedence() {
        let file = FileConfig {
            core_url: Some("http://file:1".into()),
            token: Some(Secret("filetok".into())),
            ..Default::default()
        };
        let s = CoreSettings::resolve(None, None, None, None, &file).expect("resolve");
        assert_eq!(s.url, "http://file:1");
        assert_eq!(s.token.expose(), "filetok");
        assert_eq!(s.timeout, DEFAULT_CORE_TIMEOUT);
        let flag = Secret("flagtok".into());
        let s = CoreSettings::resolve(Some("http://flag:2"), Some(&flag), None, Some(500), &file)
            .expect("resolve");
        assert_eq!(s.url, "http://flag:2");
        assert_eq!(s.token.expose(), "flagtok");
        assert_eq!(s.timeout, Duration::from_millis(500));
        assert!(matches!(
            CoreSettings::resolve(None, None, None, None, &FileConfig::default()),
            Err(SettingsError::NoToken)
        ));
    }
}
