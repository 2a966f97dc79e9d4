//! [`Core`]: one data dir's database and keys, with the Service API's in-memory state (the
//! AuthClient throttle and the cache of known tokens).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::{SystemTime, UNIX_EPOCH};

use service_api::SpeedLimits;

use super::limiter::AuthThrottle;
use crate::keys::AgentKeys;
use crate::metrics::CoreMetrics;
use crate::store::Db;
use crate::usage_series::UsageSeries;

/// Who is calling, from the bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Admin,
    /// The server adapter of one product (agent side).
    Product(String),
    /// The client adapter (client side).
    Client,
}

/// One core: a data dir with its database and keys. [`Core::open`] opens one; the Service
/// API ([`crate::service`]), the admin commands ([`crate::admin`]) and the market
/// ([`crate::market`]) are its operations.
pub struct Core {
    pub db: Db,
    pub keys: AgentKeys,
    data_dir: PathBuf,
    pub(crate) auth_throttle: AuthThrottle,
    /// Token hash → caller, for tokens already seen (tokens are never revoked by this core,
    /// so the cache cannot go stale). Bounded.
    pub(crate) callers: RwLock<HashMap<String, Caller>>,
    /// This instance's metrics ([`crate::metrics`]).
    pub metrics: CoreMetrics,
    /// Usage buckets waiting to be written ([`crate::usage_series`]).
    pub usage_series: UsageSeries,
    /// `--ca-file` of the market client (agents whose offerings pin no TLS key).
    market_ca_file: std::sync::OnceLock<PathBuf>,
    /// The agent's replay guard of signed market reads and its accept rate limit.
    pub(crate) market_guard: crate::market::guard::MarketGuard,
    /// How long a channel accepted over the market has to be claimed ([`super::claim`]).
    pub(crate) claim_window: super::claim::ClaimWindow,
    /// Longest wait of a WatchStatus call (`serve --watch-max-wait-ms`), ms.
    pub(crate) watch_max_wait_ms: std::sync::atomic::AtomicU64,
}

impl Core {
    /// A core over an open database and loaded keys (see [`Core::open`]).
    pub(crate) fn new(db: Db, keys: AgentKeys, data_dir: &Path) -> Core {
        Core {
            metrics: CoreMetrics::new(&db),
            usage_series: UsageSeries::default(),
            db,
            keys,
            data_dir: data_dir.to_path_buf(),
            auth_throttle: AuthThrottle::default(),
            callers: Default::default(),
            market_ca_file: Default::default(),
            market_guard: Default::default(),
            claim_window: Default::default(),
            watch_max_wait_ms: std::sync::atomic::AtomicU64::new(service_api::MAX_WATCH_WAIT_MS),
        }
    }

    /// Sets the market client's `--ca-file` (once, at start).
    pub fn set_market_ca_file(&self, path: PathBuf) {
        let _ = self.market_ca_file.set(path);
    }

    /// The market client's `--ca-file`.
    pub fn market_ca_file(&self) -> Option<PathBuf> {
        self.market_ca_file.get().cloned()
    }

    /// This client core's X25519 key that agents seal access messages to (`seal.key` in the
    /// data dir, made on first use, 0600, written atomically).
    pub fn seal_secret(&self) -> crate::error::Result<service_api::seal::SealSecret> {
        use service_api::seal::SealSecret;
        let path = self.data_dir.join(SEAL_KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes = zeroize::Zeroizing::new(bytes);
                SealSecret::from_bytes(&bytes)
                    .map_err(|e| crate::error::CoreError::Tls(format!("{}: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Made beside and linked in: a concurrent maker's key is never replaced.
                let s = SealSecret::generate();
                let tmp = path.with_extension(format!("new{}", std::process::id()));
                crate::admin::write_private_file(&tmp, s.expose())?;
                let linked = std::fs::hard_link(&tmp, &path);
                let _ = std::fs::remove_file(&tmp);
                match linked {
                    Ok(()) => Ok(s),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => self.seal_secret(),
                    Err(source) => Err(crate::error::CoreError::Io { path, source }),
                }
            }
            Err(source) => Err(crate::error::CoreError::Io { path, source }),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

/// The client core's X25519 sealing key in the data dir.
pub const SEAL_KEY_FILE: &str = "seal.key";

/// Now, in unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// A new random id with a prefix naming its kind (`p-`, `ch-`, `cc-`, `s-`).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// The speed limits of a channel's parameters (none when they are unreadable or invalid).
pub(crate) fn speed_of(params: Option<&BTreeMap<String, String>>) -> SpeedLimits {
    params
        .and_then(|m| SpeedLimits::from_params(m).ok())
        .unwrap_or_default()
}
