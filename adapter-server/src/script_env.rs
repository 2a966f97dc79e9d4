//! Parsing of OpenVPN's script environment and the via-file credentials file.
//!
//! Everything here is hostile input: variables may be missing, not UTF-8, oversized or
//! contain newlines. The parsers are pure functions over name → value maps so the same
//! rules apply to the hook's process environment and to the `>CLIENT:ENV` blocks of the
//! management interface.

use std::collections::HashMap;
use std::ffi::OsString;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use service_api::{ClientKey, Secret, MAX_FIELD_LEN};

/// Longest value accepted for any variable (paths included).
pub const MAX_VALUE_LEN: usize = 4096;
/// Largest via-file credentials file.
pub const MAX_AUTH_FILE: usize = 2 * (MAX_FIELD_LEN + 2);

/// Variables this crate reads; others are dropped at parse time.
pub const KNOWN_VARS: &[&str] = &[
    "script_type",
    "username",
    "password",
    "common_name",
    "auth_control_file",
    "auth_failed_reason_file",
    "auth_pending_file",
    "untrusted_ip",
    "untrusted_ip6",
    "untrusted_port",
    "trusted_ip",
    "trusted_ip6",
    "trusted_port",
    "time_unix",
    "ifconfig_pool_remote_ip",
    "ifconfig_pool_remote_ip6",
    "bytes_received",
    "bytes_sent",
];

/// Errors of reading the script environment or the credentials file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvError {
    #[error("environment variable {0} is missing")]
    Missing(&'static str),
    #[error("environment variable {0} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("environment variable {name} is longer than {max} bytes")]
    TooLong { name: &'static str, max: usize },
    #[error("environment variable {0} contains control characters")]
    ControlChars(&'static str),
    #[error("environment variable {name} is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
    #[error("unsupported script_type {0:?}")]
    UnknownScriptType(String),
    #[error("credentials: {0}")]
    Credentials(String),
}

/// The raw environment, restricted to [`KNOWN_VARS`]. A value is `None` when it was not
/// valid UTF-8 (reported as an error only if that variable is actually needed).
#[derive(Debug, Clone, Default)]
pub struct RawEnv {
    vars: HashMap<&'static str, Option<String>>,
}

impl RawEnv {
    pub fn from_os<I: IntoIterator<Item = (OsString, OsString)>>(vars: I) -> Self {
        let mut out = HashMap::new();
        for (k, v) in vars {
            let Some(k) = k.to_str() else { continue };
            if let Some(name) = KNOWN_VARS.iter().find(|n| **n == k) {
                out.insert(*name, v.into_string().ok());
            }
        }
        Self { vars: out }
    }

    /// From the variables of a hook hand-off (raw bytes; a value that is not UTF-8 is kept
    /// as unusable, like [`RawEnv::from_os`] does).
    pub fn from_bytes<'a, I: IntoIterator<Item = (&'a str, Vec<u8>)>>(vars: I) -> Self {
        let mut out = HashMap::new();
        for (k, v) in vars {
            if let Some(name) = KNOWN_VARS.iter().find(|n| **n == k) {
                out.insert(*name, String::from_utf8(v).ok());
            }
        }
        Self { vars: out }
    }

    pub fn from_strs<'a, I: IntoIterator<Item = (&'a str, &'a str)>>(vars: I) -> Self {
        let mut out = HashMap::new();
        for (k, v) in vars {
            if let Some(name) = KNOWN_VARS.iter().find(|n| **n == k) {
                out.insert(*name, Some(v.to_string()));
            }
        }
        Self { vars: out }
    }

    /// An optional single-line value of at most `max` bytes. Empty counts as absent.
    pub fn get(&self, name: &'static str, max: usize) -> Result<Option<&str>, EnvError> {
        match self.vars.get(name) {
            None => Ok(None),
            Some(None) => Err(EnvError::NotUtf8(name)),
            Some(Some(v)) => {
                if v.len() > max {
                    return Err(EnvError::TooLong { name, max });
                }
                if v.chars().any(char::is_control) {
                    return Err(EnvError::ControlChars(name));
                }
                Ok(if v.is_empty() { None } else { Some(v.as_str()) })
            }
        }
    }

    pub fn require(&self, name: &'static str, max: usize) -> Result<&str, EnvError> {
        self.get(name, max)?.ok_or(EnvError::Missing(name))
    }

    fn parse<T: std::str::FromStr>(&self, name: &'static str) -> Result<Option<T>, EnvError> {
        match self.get(name, 64)? {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| EnvError::Invalid {
                name,
                reason: format!("{:?} is not a valid value", v),
            }),
        }
    }

    fn path(&self, name: &'static str) -> Result<Option<PathBuf>, EnvError> {
        Ok(self.get(name, MAX_VALUE_LEN)?.map(PathBuf::from))
    }
}

/// Checks a username / client key: 1..=256 bytes, no control characters, no `|` (the
/// connection-id separator) and no whitespace.
pub fn validate_username(name: &'static str, v: &str) -> Result<ClientKey, EnvError> {
    if v.is_empty() {
        return Err(EnvError::Missing(name));
    }
    if v.len() > MAX_FIELD_LEN {
        return Err(EnvError::TooLong {
            name,
            max: MAX_FIELD_LEN,
        });
    }
    if v.chars()
        .any(|c| c.is_control() || c.is_whitespace() || c == '|')
    {
        return Err(EnvError::Invalid {
            name,
            reason: "contains control characters, whitespace or '|'".into(),
        });
    }
    Ok(ClientKey(v.to_string()))
}

/// Checks a password: 1..=256 bytes, no control characters (OpenVPN remaps CR/LF anyway).
pub fn validate_password(v: &str) -> Result<Secret, EnvError> {
    if v.is_empty() {
        return Err(EnvError::Missing("password"));
    }
    if v.len() > MAX_FIELD_LEN {
        return Err(EnvError::TooLong {
            name: "password",
            max: MAX_FIELD_LEN,
        });
    }
    if v.chars().any(char::is_control) {
        return Err(EnvError::ControlChars("password"));
    }
    Ok(Secret(v.to_string()))
}

/// Parses the via-file credentials file: username on line 1, password on line 2
/// (`\n` or `\r\n`); nothing but an optional final newline may follow.
pub fn parse_auth_file(bytes: &[u8]) -> Result<(ClientKey, Secret), EnvError> {
    if bytes.len() > MAX_AUTH_FILE {
        return Err(EnvError::Credentials(format!(
            "file larger than {MAX_AUTH_FILE} bytes"
        )));
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| EnvError::Credentials("file is not UTF-8".into()))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let user = lines
        .next()
        .ok_or_else(|| EnvError::Credentials("no username line".into()))?;
    let pass = lines
        .next()
        .ok_or_else(|| EnvError::Credentials("no password line".into()))?;
    if user.is_empty() {
        return Err(EnvError::Credentials("empty username line".into()));
    }
    if pass.is_empty() {
        return Err(EnvError::Credentials("empty password line".into()));
    }
    for rest in lines {
        if !rest.is_empty() {
            return Err(EnvError::Credentials(
                "more than two lines in the credentials file".into(),
            ));
        }
    }
    Ok((
        validate_username("username", user)?,
        validate_password(pass)?,
    ))
}

/// Which script OpenVPN is running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScriptType {
    AuthUserPassVerify,
    ClientConnect,
    ClientDisconnect,
}

impl ScriptType {
    pub fn from_env(env: &RawEnv) -> Result<Self, EnvError> {
        match env.require("script_type", 64)? {
            // OpenVPN 2.6 sets "user-pass-verify" (the man page says auth-user-pass-verify).
            "user-pass-verify" | "auth-user-pass-verify" => Ok(Self::AuthUserPassVerify),
            "client-connect" => Ok(Self::ClientConnect),
            "client-disconnect" => Ok(Self::ClientDisconnect),
            other => Err(EnvError::UnknownScriptType(other.to_string())),
        }
    }
}

/// Files OpenVPN offers for deferred auth.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthFiles {
    pub control: Option<PathBuf>,
    pub failed_reason: Option<PathBuf>,
    pub pending: Option<PathBuf>,
}

impl AuthFiles {
    pub fn from_env(env: &RawEnv) -> Result<Self, EnvError> {
        Ok(Self {
            control: env.path("auth_control_file")?,
            failed_reason: env.path("auth_failed_reason_file")?,
            pending: env.path("auth_pending_file")?,
        })
    }
}

/// The peer's real address: `untrusted_*` (set for auth and kept for later scripts), else
/// `trusted_*`; IPv6 variants as fallback.
pub fn peer_addr(env: &RawEnv) -> Result<Option<(IpAddr, u16)>, EnvError> {
    let ip: Option<IpAddr> = match env.parse::<IpAddr>("untrusted_ip")? {
        Some(ip) => Some(ip),
        None => match env.parse::<IpAddr>("trusted_ip")? {
            Some(ip) => Some(ip),
            None => match env.parse::<IpAddr>("untrusted_ip6")? {
                Some(ip) => Some(ip),
                None => env.parse::<IpAddr>("trusted_ip6")?,
            },
        },
    };
    let port: Option<u16> = match env.parse::<u16>("untrusted_port")? {
        Some(p) => Some(p),
        None => env.parse::<u16>("trusted_port")?,
    };
    Ok(ip.zip(port))
}

/// Formats `ip:port` as OpenVPN's status output does for IPv4 (IPv6 in brackets).
pub fn format_addr(ip: IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}

/// The connection of one client as the core sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    pub username: ClientKey,
    /// Real address `ip:port` of the peer.
    pub client_addr: String,
    /// OpenVPN's `time_unix` of the connection.
    pub time_unix: u64,
    /// `ifconfig_pool_remote_ip`.
    pub vpn_addr: Option<Ipv4Addr>,
    /// `ifconfig_pool_remote_ip6` (a server with `server-ipv6`).
    pub vpn_addr6: Option<Ipv6Addr>,
}

impl ClientIdentity {
    /// `"<username>|<ip>:<port>|<time_unix>"` (docs/INTERFACES.md).
    pub fn connection_id(&self) -> String {
        connection_id(&self.username, &self.client_addr, self.time_unix)
    }

    /// From a client-connect / client-disconnect / ESTABLISHED / DISCONNECT environment.
    pub fn from_env(env: &RawEnv) -> Result<Self, EnvError> {
        let username = match env.get("username", MAX_FIELD_LEN)? {
            Some(u) => validate_username("username", u)?,
            None => validate_username(
                "common_name",
                env.get("common_name", MAX_FIELD_LEN)?
                    .ok_or(EnvError::Missing("username"))?,
            )?,
        };
        let (ip, port) = peer_addr(env)?.ok_or(EnvError::Missing("untrusted_ip"))?;
        let time_unix = env
            .parse::<u64>("time_unix")?
            .ok_or(EnvError::Missing("time_unix"))?;
        let vpn_addr = env.parse::<Ipv4Addr>("ifconfig_pool_remote_ip")?;
        let vpn_addr6 = env.parse::<Ipv6Addr>("ifconfig_pool_remote_ip6")?;
        Ok(Self {
            username,
            client_addr: format_addr(ip, port),
            time_unix,
            vpn_addr,
            vpn_addr6,
        })
    }
}

pub fn connection_id(username: &ClientKey, client_addr: &str, time_unix: u64) -> String {
    format!("{}|{}|{}", username.0, client_addr, time_unix)
}

/// Final counters of a disconnect (`bytes_received`, `bytes_sent`).
pub fn final_counts(env: &RawEnv) -> Result<(u64, u64), EnvError> {
    let rx = env
        .parse::<u64>("bytes_received")?
        .ok_or(EnvError::Missing("bytes_received"))?;
    let tx = env
        .parse::<u64>("bytes_sent")?
        .ok_or(EnvError::Missing("bytes_sent"))?;
    Ok((rx, tx))
}

/// Credentials of an auth request from env (via-env) or the file OpenVPN passes (via-file).
pub fn credentials_from_env(env: &RawEnv) -> Result<(ClientKey, Secret), EnvError> {
    let user = env.require("username", MAX_FIELD_LEN)?;
    let pass = env.require("password", MAX_FIELD_LEN)?;
    Ok((
        validate_username("username", user)?,
        validate_password(pass)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::ffi::OsStringExt;

    fn env(pairs: &[(&str, &str)]) -> RawEnv {
        RawEnv::from_strs(pairs.iter().copied())
    }

    #[test]
    fn auth_file_cases() {
        let long = "a".repeat(MAX_FIELD_LEN + 1);
        let long_file = format!("{long}\npw\n");
        type Case<'a> = (&'a [u8], Result<(&'a str, &'a str), &'a str>);
        let cases: Vec<Case<'_>> = vec![
            (b"alice\nsecret\n", Ok(("alice", "secret"))),
            (b"alice\r\nsecret\r\n", Ok(("alice", "secret"))),
            (b"alice\nsecret", Ok(("alice", "secret"))),
            (b"alice\nsecret\n\n", Ok(("alice", "secret"))),
            (b"alice\nsec ret\n", Ok(("alice", "sec ret"))),
            (b"alice\n", Err("empty password line")),
            (b"alice", Err("no password line")),
            (b"", Err("no password line")),
            (b"\nsecret\n", Err("empty username line")),
            (b"alice\nsecret\nextra\n", Err("more than two lines")),
            (b"al\xffice\nsecret\n", Err("UTF-8")),
            (b"alice\nsec\x07ret\n", Err("control")),
            (b"al|ice\nsecret\n", Err("'|'")),
            (b"al ice\nsecret\n", Err("whitespace")),
            (long_file.as_bytes(), Err("longer than")),
            (&[b'x'; MAX_AUTH_FILE + 1], Err("larger than")),
        ];
        for (input, want) in cases {
            let got = parse_auth_file(input);
            match (got, want) {
                (Ok((u, p)), Ok((wu, wp))) => {
                    assert_eq!(u.0, wu);
                    assert_eq!(p.expose(), wp);
                }
                (Err(e), Err(frag)) => {
                    assert!(e.to_string().contains(frag), "{e} lacks {frag:?}")
                }
                (got, want) => panic!("{input:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn the_hand_off_carries_every_variable_read_here() {
        let mut carried: Vec<&str> = adapter_server_hook::wire::ENV_VARS.to_vec();
        carried.push("script_type"); // carried as the event kind
        carried.sort_unstable();
        let mut known = KNOWN_VARS.to_vec();
        known.sort_unstable();
        assert_eq!(carried, known);
        let raw = RawEnv::from_bytes(vec![
            ("username", b"al\xffice".to_vec()),
            ("password", b"pw".to_vec()),
            ("PATH", b"/bin".to_vec()),
        ]);
        assert_eq!(raw.get("username", 256), Err(EnvError::NotUtf8("username")));
        assert_eq!(raw.get("password", 256), Ok(Some("pw")));
    }

    #[test]
    fn env_values_hostile() {
        let raw = RawEnv::from_os(vec![
            (
                OsString::from("username"),
                OsString::from_vec(b"al\xffice".to_vec()),
            ),
            (OsString::from("password"), OsString::from("pw")),
            (OsString::from("common_name"), OsString::from("a\nb")),
            (OsString::from("time_unix"), OsString::from("x".repeat(100))),
            (OsString::from_vec(b"\xffbad".to_vec()), OsString::from("v")),
            (OsString::from("unrelated"), OsString::from("v")),
        ]);
        assert_eq!(raw.get("username", 256), Err(EnvError::NotUtf8("username")));
        assert_eq!(
            raw.get("common_name", 256),
            Err(EnvError::ControlChars("common_name"))
        );
        assert!(matches!(
            raw.parse::<u64>("time_unix"),
            Err(EnvError::TooLong { .. })
        ));
        assert_eq!(raw.get("password", 256), Ok(Some("pw")));
        assert_eq!(raw.get("auth_control_file", 256), Ok(None));
        assert!(credentials_from_env(&raw).is_err());
    }

    #[test]
    fn script_types() {
        let cases = [
            ("auth-user-pass-verify", Ok(ScriptType::AuthUserPassVerify)),
            ("user-pass-verify", Ok(ScriptType::AuthUserPassVerify)),
            ("client-connect", Ok(ScriptType::ClientConnect)),
            ("client-disconnect", Ok(ScriptType::ClientDisconnect)),
            ("up", Err(())),
            ("", Err(())),
        ];
        for (v, want) in cases {
            let got = ScriptType::from_env(&env(&[("script_type", v)])).map_err(|_| ());
            assert_eq!(got, want, "{v:?}");
        }
        assert_eq!(
            ScriptType::from_env(&RawEnv::default()),
            Err(EnvError::Missing("script_type"))
        );
    }

    #[test]
    fn identity_and_connection_id() {
        let e = env(&[
            ("username", "ck-1"),
            ("common_name", "cert-cn"),
            ("untrusted_ip", "192.0.2.7"),
            ("untrusted_port", "50123"),
            ("trusted_ip", "198.51.100.1"),
            ("time_unix", "1700000000"),
            ("ifconfig_pool_remote_ip", "10.8.0.6"),
            ("ifconfig_pool_remote_ip6", "fd00:8::1000"),
        ]);
        let id = ClientIdentity::from_env(&e).expect("identity");
        assert_eq!(id.connection_id(), "ck-1|192.0.2.7:50123|1700000000");
        assert_eq!(id.vpn_addr, Some(Ipv4Addr::new(10, 8, 0, 6)));
        assert_eq!(id.vpn_addr6, "fd00:8::1000".parse().ok());

        // trusted_* fallback, common_name fallback, no VPN address.
        let e = env(&[
            ("common_name", "ck-2"),
            ("trusted_ip", "198.51.100.1"),
            ("trusted_port", "1194"),
            ("time_unix", "5"),
        ]);
        let id = ClientIdentity::from_env(&e).expect("identity");
        assert_eq!(id.connection_id(), "ck-2|198.51.100.1:1194|5");
        assert_eq!(id.vpn_addr, None);

        for (pairs, frag) in [
            (
                vec![
                    ("username", "u"),
                    ("untrusted_ip", "1.2.3.4"),
                    ("untrusted_port", "1"),
                ],
                "time_unix",
            ),
            (vec![("username", "u"), ("time_unix", "1")], "untrusted_ip"),
            (
                vec![
                    ("username", "u"),
                    ("untrusted_ip", "nope"),
                    ("untrusted_port", "1"),
                    ("time_unix", "1"),
                ],
                "invalid",
            ),
            (
                vec![
                    ("username", "u"),
                    ("untrusted_ip", "1.2.3.4"),
                    ("untrusted_port", "70000"),
                    ("time_unix", "1"),
                ],
                "invalid",
            ),
            (
                vec![
                    ("username", "u"),
                    ("untrusted_ip", "1.2.3.4"),
                    ("untrusted_port", "1"),
                    ("time_unix", "-1"),
                ],
                "invalid",
            ),
            (
                vec![
                    ("username", "a|b"),
                    ("untrusted_ip", "1.2.3.4"),
                    ("untrusted_port", "1"),
                    ("time_unix", "1"),
                ],
                "'|'",
            ),
            (
                vec![
                    ("untrusted_ip", "1.2.3.4"),
                    ("untrusted_port", "1"),
                    ("time_unix", "1"),
                ],
                "username",
            ),
        ] {
            let e = env(&pairs);
            let err = ClientIdentity::from_env(&e).expect_err("must fail");
            assert!(err.to_string().contains(frag), "{err} lacks {frag}");
        }
    }

    #[test]
    fn final_counts_parse() {
        assert_eq!(
            final_counts(&env(&[("bytes_received", "10"), ("bytes_sent", "20")])),
            Ok((10, 20))
        );
        assert!(final_counts(&env(&[("bytes_received", "10")])).is_err());
        assert!(final_counts(&env(&[("bytes_received", "1e3"), ("bytes_sent", "2")])).is_err());
        assert!(final_counts(&env(&[
            ("bytes_received", "18446744073709551616"),
            ("bytes_sent", "2")
        ]))
        .is_err());
    }

    #[test]
    fn auth_files_from_env() {
        let f = AuthFiles::from_env(&env(&[
            ("auth_control_file", "/tmp/acf"),
            ("auth_failed_reason_file", "/tmp/arf"),
        ]))
        .expect("files");
        assert_eq!(f.control, Some(PathBuf::from("/tmp/acf")));
        assert_eq!(f.failed_reason, Some(PathBuf::from("/tmp/arf")));
        assert_eq!(f.pending, None);
        let long = "x".repeat(MAX_VALUE_LEN + 1);
        assert!(AuthFiles::from_env(&env(&[("auth_control_file", &long)])).is_err());
    }
}
