//! The core's operations: admin (modules, products, offerings, channels, access messages,
//! tokens) and the Service API (AuthClient … GetAccess), on top of [`Db`] and [`AgentKeys`].
//! The HTTP server, the CLI and the testkit all call these; nothing here knows HTTP.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};
use serde::Serialize;
use serde_json::Value;

use crate::billing::{self, BillingTerms, ChannelState};
use crate::db::{from_sql_u64, opt, to_sql_u64, Cached, Db, DbError};
use crate::keys::AgentKeys;
use crate::offering::{self, SignedOffering};
use crate::template;
use service_api::{
    self as api, AccessMessage, AuthClientRequest, AuthClientResponse, ChannelInfo, ClientKey,
    ErrorCode, GetAccessRequest, Secret, ServiceStatus, SessionId, SetProductConfigRequest,
    SetProductConfigResponse, SpeedLimits, StartSessionRequest, StartSessionResponse, StatusChange,
    StopSessionRequest, StopSessionResponse, UpdateSessionRequest, UpdateSessionResponse,
};

/// Largest file the admin commands read (offering input, signed offering, access message).
pub const MAX_INPUT_FILE: u64 = 256 * 1024;
/// Failed AuthClient attempts per client key or per address within [`FAIL_WINDOW`].
pub const MAX_AUTH_FAILURES: u32 = 10;
pub const FAIL_WINDOW: Duration = Duration::from_secs(60);

/// Errors of core operations; each maps to one stable wire [`ErrorCode`].
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error("{0}")]
    BadRequest(String),
    #[error("request body larger than {} bytes", api::MAX_BODY_BYTES)]
    PayloadTooLarge,
    #[error("missing or unknown bearer token")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("unknown client key or wrong password")]
    AuthFailed,
    #[error("channel {channel} is {status}: service not available")]
    ChannelInactive {
        channel: String,
        status: ServiceStatus,
    },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("too many failed attempts for {0}; retry in a minute")]
    RateLimited(String),
    #[error("storage: {0}")]
    Db(#[from] DbError),
    #[error("reading {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{0}")]
    Unavailable(String),
    /// An error answered by another core (market protocol).
    #[error("the agent answered {code:?}: {message}")]
    Remote { code: ErrorCode, message: String },
}

impl From<rusqlite::Error> for CoreError {
    fn from(e: rusqlite::Error) -> Self {
        CoreError::Db(DbError::Sql(e))
    }
}

impl CoreError {
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::BadRequest(_) => ErrorCode::BadRequest,
            CoreError::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            CoreError::Unauthorized => ErrorCode::Unauthorized,
            CoreError::Forbidden(_) => ErrorCode::Forbidden,
            CoreError::AuthFailed => ErrorCode::AuthFailed,
            CoreError::ChannelInactive { .. } => ErrorCode::ChannelInactive,
            CoreError::NotFound(_) => ErrorCode::NotFound,
            CoreError::Conflict(_) => ErrorCode::Conflict,
            CoreError::Invalid(_) => ErrorCode::Invalid,
            CoreError::RateLimited(_) => ErrorCode::RateLimited,
            CoreError::Unavailable(_) => ErrorCode::Unavailable,
            CoreError::Remote { code, .. } => *code,
            CoreError::Db(DbError::Sql(rusqlite::Error::SqliteFailure(f, _)))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) =>
            {
                ErrorCode::Unavailable
            }
            CoreError::Db(_)
            | CoreError::Io { .. }
            | CoreError::Keys(_)
            | CoreError::Internal(_) => ErrorCode::Internal,
        }
    }

    pub fn status(&self) -> Option<ServiceStatus> {
        match self {
            CoreError::ChannelInactive { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// Who is calling, from the bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    Admin,
    /// The server adapter of one product (agent side).
    Product(String),
    /// The client adapter (client side).
    Client,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Side {
    Agent,
    Client,
}
impl Side {
    fn as_str(self) -> &'static str {
        match self {
            Side::Agent => "agent",
            Side::Client => "client",
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// Counts failed logins per key / address in a fixed window (bounded memory).
#[derive(Default)]
struct FailureLimiter {
    map: Mutex<HashMap<String, (u32, Instant)>>,
}

impl FailureLimiter {
    const MAX_ENTRIES: usize = 100_000;

    fn blocked(&self, key: &str) -> bool {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .is_some_and(|(n, since)| *n >= MAX_AUTH_FAILURES && since.elapsed() < FAIL_WINDOW)
    }
    fn fail(&self, key: &str) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX_ENTRIES {
            map.retain(|_, (_, since)| since.elapsed() < FAIL_WINDOW);
            if map.len() >= Self::MAX_ENTRIES {
                map.clear();
            }
        }
        let e = map.entry(key.to_string()).or_insert((0, Instant::now()));
        if e.1.elapsed() >= FAIL_WINDOW {
            *e = (0, Instant::now());
        }
        e.0 += 1;
    }
    fn reset(&self, key: &str) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// One core: a data dir with its database and keys.
pub struct Core {
    pub db: Db,
    pub keys: AgentKeys,
    data_dir: PathBuf,
    failures: FailureLimiter,
    /// Token hash → caller, for tokens already seen (tokens are never revoked by this core,
    /// so the cache cannot go stale). Bounded.
    callers: std::sync::RwLock<HashMap<String, Caller>>,
}

/// Outcome of `module register`.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Registered {
    pub module: String,
    pub version: String,
    pub offering_template_hash: String,
    pub access_template_hash: String,
    /// False when the same module was already registered (idempotent).
    pub newly_registered: bool,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ProductInfo {
    pub product_id: String,
    pub name: String,
    pub module: String,
    pub endpoint: Option<String>,
    pub config: BTreeMap<String, String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OfferingInfo {
    pub offering_hash: String,
    pub product_id: String,
    pub supply: u64,
    pub channels_open: u64,
    pub signed: Value,
}

/// The agent-side channel row plus the billing terms of its offering.
struct AgentChannel {
    id: String,
    status: ServiceStatus,
    status_since_ms: i64,
    bytes_total: u64,
    deposit: u64,
    password_hash: String,
    terms: BillingTerms,
    additional_params: String,
    /// Best cheque, for channels paid by cheques.
    amount_paid: Option<u64>,
    has_open_session: bool,
}

fn parse_status(s: &str) -> Result<ServiceStatus> {
    s.parse::<ServiceStatus>()
        .map_err(|e| CoreError::Internal(format!("stored status: {e}")))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read;
    let io = |source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let f = std::fs::File::open(path).map_err(io)?;
    let mut buf = Vec::new();
    f.take(MAX_INPUT_FILE + 1)
        .read_to_end(&mut buf)
        .map_err(io)?;
    if buf.len() as u64 > MAX_INPUT_FILE {
        return Err(CoreError::Invalid(format!(
            "{}: larger than {MAX_INPUT_FILE} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// Reads a JSON file of at most [`MAX_INPUT_FILE`] bytes.
pub fn read_json_file(path: &Path) -> Result<Value> {
    let buf = read_bounded(path)?;
    serde_json::from_slice(&buf)
        .map_err(|e| CoreError::Invalid(format!("{}: not valid JSON: {e}", path.display())))
}

/// Writes `contents` to `path` with mode 0600 (replacing it atomically).
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| CoreError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    f.write_all(contents).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)?;
    Ok(())
}

fn check_client_key(k: &ClientKey) -> Result<()> {
    let s = &k.0;
    if s.is_empty() || s.len() > api::MAX_FIELD_LEN {
        return Err(CoreError::BadRequest(format!(
            "clientKey: must be 1..={} bytes",
            api::MAX_FIELD_LEN
        )));
    }
    if s.chars().any(|c| c.is_control()) {
        return Err(CoreError::BadRequest(
            "clientKey: contains control characters".into(),
        ));
    }
    Ok(())
}

fn check_field(name: &str, v: &str) -> Result<()> {
    if v.len() > api::MAX_FIELD_LEN || v.chars().any(|c| c.is_control()) {
        return Err(CoreError::BadRequest(format!(
            "{name}: at most {} bytes without control characters",
            api::MAX_FIELD_LEN
        )));
    }
    Ok(())
}

impl Core {
    /// Opens (creating when needed) a data dir: `core.db`, `agent.key`, `admin.token`.
    pub fn open(data_dir: &Path) -> Result<Core> {
        use std::os::unix::fs::DirBuilderExt;
        if !data_dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(data_dir)
                .map_err(|source| CoreError::Io {
                    path: data_dir.to_path_buf(),
                    source,
                })?;
        }
        let keys = AgentKeys::load_or_create(&data_dir.join("agent.key"))?;
        let db = Db::open(&data_dir.join("core.db"))?;
        let core = Core {
            db,
            keys,
            data_dir: data_dir.to_path_buf(),
            failures: FailureLimiter::default(),
            callers: Default::default(),
        };
        core.ensure_admin_token()?;
        Ok(core)
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn admin_token_path(&self) -> PathBuf {
        self.data_dir.join("admin.token")
    }

    /// Reads `admin.token` (creating it, 0600, on first use) and makes sure it is valid.
    pub fn ensure_admin_token(&self) -> Result<Secret> {
        let path = self.admin_token_path();
        let token = if path.exists() {
            let raw = read_bounded(&path)?;
            let s = String::from_utf8(raw)
                .map_err(|_| CoreError::Invalid(format!("{}: not UTF-8", path.display())))?;
            Secret(s.trim().to_string())
        } else {
            let t = crate::keys::random_token();
            write_private_file(&path, format!("{}\n", t.expose()).as_bytes())?;
            t
        };
        if token.expose().len() < 16 {
            return Err(CoreError::Invalid(format!(
                "{}: admin token too short",
                path.display()
            )));
        }
        self.store_token(&token, "admin")?;
        Ok(token)
    }

    /// Stores the hash of an admin or client token (idempotent).
    fn store_token(&self, token: &Secret, role: &str) -> Result<()> {
        let hash = self.keys.hash_secret(token.expose());
        self.db.write(|tx| {
            tx.exec(
                "INSERT OR IGNORE INTO tokens (hash, role, product_id, created_at_ms) VALUES (?1, ?2, NULL, ?3)",
                params![hash, role, now_ms()],
            )?;
            Ok::<_, CoreError>(())
        })
    }

    // ----------------------------------------------------------------- authentication

    /// The caller of a token already seen, without touching the database.
    pub fn cached_caller(&self, token: &str) -> Option<Caller> {
        if token.is_empty() || token.len() > 512 {
            return None;
        }
        let hash = self.keys.hash_secret(token);
        self.callers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&hash)
            .cloned()
    }

    pub fn authenticate(&self, token: &str) -> Result<Caller> {
        if let Some(c) = self.cached_caller(token) {
            return Ok(c);
        }
        if token.is_empty() || token.len() > 512 {
            return Err(CoreError::Unauthorized);
        }
        let hash = self.keys.hash_secret(token);
        let row: Option<(String, Option<String>)> = self.db.read(|c| {
            opt(c.q_row(
                "SELECT role, product_id FROM tokens WHERE hash = ?1",
                [&hash],
                |r| Ok((r.get(0)?, r.get(1)?)),
            ))
        })?;
        let caller = match row {
            Some((role, _)) if role == "admin" => Caller::Admin,
            Some((role, Some(p))) if role == "product" => Caller::Product(p),
            Some((role, _)) if role == "client" => Caller::Client,
            _ => return Err(CoreError::Unauthorized),
        };
        let mut cache = self.callers.write().unwrap_or_else(|e| e.into_inner());
        if cache.len() < 10_000 {
            cache.insert(hash, caller.clone());
        }
        Ok(caller)
    }

    /// A new token for the client adapter.
    pub fn create_client_token(&self) -> Result<Secret> {
        let t = crate::keys::random_token();
        self.store_token(&t, "client")?;
        Ok(t)
    }

    // ----------------------------------------------------------------- modules

    pub fn register_module(&self, dir: &Path) -> Result<Registered> {
        let m = template::load_module(dir)
            .map_err(|e| CoreError::Invalid(format!("module at {}: {e}", dir.display())))?;
        let offering_json = serde_json::to_string(&m.offering_template)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let access_json = serde_json::to_string(&m.access_template)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        self.db.write(|tx| {
            let existing: Option<(String, String, String)> = opt(tx.q_row(
                "SELECT version, offering_hash, access_hash FROM modules WHERE name = ?1",
                [&m.name],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            ))?;
            if let Some((version, oh, ah)) = existing {
                if oh == m.offering_hash && ah == m.access_hash {
                    return Ok(Registered {
                        module: m.name.clone(),
                        version,
                        offering_template_hash: oh,
                        access_template_hash: ah,
                        newly_registered: false,
                    });
                }
                return Err(CoreError::Conflict(format!(
                    "module {:?} is already registered with other templates \
                     (offering {oh}, access {ah}); refusing to replace them with \
                     offering {}, access {}: offerings already published would no longer \
                     match. Register the changed module under a new name.",
                    m.name, m.offering_hash, m.access_hash
                )));
            }
            let clash: Option<String> = opt(tx.q_row(
                "SELECT name FROM modules WHERE offering_hash = ?1 OR access_hash = ?2",
                params![m.offering_hash, m.access_hash],
                |r| r.get(0),
            ))?;
            if let Some(other) = clash {
                return Err(CoreError::Conflict(format!(
                    "the templates of module {:?} are already registered as module {other:?}",
                    m.name
                )));
            }
            tx.exec(
                "INSERT INTO modules VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    m.name,
                    m.version,
                    offering_json,
                    m.offering_hash,
                    access_json,
                    m.access_hash,
                    now_ms()
                ],
            )?;
            Ok(Registered {
                module: m.name.clone(),
                version: m.version.clone(),
                offering_template_hash: m.offering_hash.clone(),
                access_template_hash: m.access_hash.clone(),
                newly_registered: true,
            })
        })
    }

    pub fn list_modules(&self) -> Result<Vec<Registered>> {
        self.db.read(|c| {
            let mut st = c.prepare(
                "SELECT name, version, offering_hash, access_hash FROM modules ORDER BY name",
            )?;
            let rows = st.query_map([], |r| {
                Ok(Registered {
                    module: r.get(0)?,
                    version: r.get(1)?,
                    offering_template_hash: r.get(2)?,
                    access_template_hash: r.get(3)?,
                    newly_registered: false,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn access_template_by_hash(c: &Connection, hash: &str) -> Result<Option<Value>> {
        let body: Option<String> = opt(c.q_row(
            "SELECT access_template FROM modules WHERE access_hash = ?1",
            [hash],
            |r| r.get(0),
        ))?;
        body.map(|b| {
            serde_json::from_str(&b).map_err(|source| {
                CoreError::Db(DbError::Json {
                    what: "modules.access_template",
                    source,
                })
            })
        })
        .transpose()
    }

    // ----------------------------------------------------------------- products

    /// Creates a product; returns it and its adapter token (shown only now; stored hashed).
    pub fn create_product(
        &self,
        name: &str,
        module: &str,
        endpoint: Option<&str>,
    ) -> Result<(ProductInfo, Secret)> {
        if name.is_empty() || name.len() > 128 || name.chars().any(|c| c.is_control()) {
            return Err(CoreError::Invalid(
                "product name: 1..=128 characters, no control characters".into(),
            ));
        }
        if let Some(e) = endpoint {
            check_endpoint(e)?;
        }
        let id = new_id("p-");
        let token = crate::keys::random_token();
        let hash = self.keys.hash_secret(token.expose());
        self.db.write(|tx| {
            let known: Option<String> = opt(tx.q_row(
                "SELECT name FROM modules WHERE name = ?1",
                [module],
                |r| r.get(0),
            ))?;
            if known.is_none() {
                return Err(CoreError::NotFound(format!(
                    "module {module:?} is not registered (core-lite module register DIR)"
                )));
            }
            let taken: Option<String> = opt(tx.q_row(
                "SELECT id FROM products WHERE name = ?1",
                [name],
                |r| r.get(0),
            ))?;
            if let Some(other) = taken {
                return Err(CoreError::Conflict(format!(
                    "a product named {name:?} exists already ({other})"
                )));
            }
            tx.exec(
                "INSERT INTO products (id, name, module, endpoint, config, created_at_ms) VALUES (?1, ?2, ?3, ?4, '{}', ?5)",
                params![id, name, module, endpoint, now_ms()],
            )?;
            tx.exec(
                "INSERT INTO tokens (hash, role, product_id, created_at_ms) VALUES (?1, 'product', ?2, ?3)",
                params![hash, id, now_ms()],
            )?;
            Ok::<_, CoreError>(())
        })?;
        Ok((self.show_product(&id)?, token))
    }

    fn product_row(c: &Connection, id_or_name: &str) -> Result<Option<ProductInfo>> {
        let row: Option<(String, String, String, Option<String>, String)> = opt(c.q_row(
            "SELECT id, name, module, endpoint, config FROM products WHERE id = ?1 OR name = ?1",
            [id_or_name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        ))?;
        row.map(|(id, name, module, endpoint, config)| {
            let config = serde_json::from_str(&config).map_err(|source| {
                CoreError::Db(DbError::Json {
                    what: "products.config",
                    source,
                })
            })?;
            Ok(ProductInfo {
                product_id: id,
                name,
                module,
                endpoint,
                config,
            })
        })
        .transpose()
    }

    pub fn show_product(&self, id_or_name: &str) -> Result<ProductInfo> {
        self.db
            .read(|c| Self::product_row(c, id_or_name))?
            .ok_or_else(|| CoreError::NotFound(format!("no product {id_or_name:?}")))
    }

    pub fn list_products(&self) -> Result<Vec<ProductInfo>> {
        let ids: Vec<String> = self.db.read(|c| {
            let mut st = c.prepare("SELECT id FROM products ORDER BY created_at_ms, id")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok::<_, CoreError>(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })?;
        ids.iter().map(|id| self.show_product(id)).collect()
    }

    // ----------------------------------------------------------------- offerings

    /// Builds, validates, signs and stores an offering from the agent's input.
    pub fn publish_offering(
        &self,
        product: &str,
        input: &Value,
    ) -> Result<(String, SignedOffering)> {
        let p = self.show_product(product)?;
        let (template, template_hash): (Value, String) = self.db.read(|c| {
            let (body, hash): (String, String) = c.q_row(
                "SELECT offering_template, offering_hash FROM modules WHERE name = ?1",
                [&p.module],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let v = serde_json::from_str(&body).map_err(|source| {
                CoreError::Db(DbError::Json {
                    what: "modules.offering_template",
                    source,
                })
            })?;
            Ok::<_, CoreError>((v, hash))
        })?;
        let (signed, hash, terms) =
            offering::build_offering(&template, &template_hash, &p.product_id, &self.keys, input)
                .map_err(|e| CoreError::Invalid(format!("offering rejected: {e}")))?;
        let signed_json =
            serde_json::to_string(&signed).map_err(|e| CoreError::Internal(e.to_string()))?;
        let params_json = serde_json::to_string(&terms.additional_params)
            .map_err(|e| CoreError::Internal(e.to_string()))?;
        let billing_type = match terms.billing_type {
            offering::BillingType::Prepaid => "prepaid",
            offering::BillingType::Postpaid => "postpaid",
        };
        self.db.write(|tx| {
            tx.exec(
                "INSERT INTO offerings VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                params![
                    hash,
                    p.product_id,
                    template_hash,
                    signed_json,
                    to_sql_u64(terms.supply),
                    to_sql_u64(terms.unit_price),
                    to_sql_u64(terms.setup_price),
                    to_sql_u64(terms.min_units),
                    to_sql_u64(terms.max_units),
                    to_sql_u64(terms.free_units),
                    billing_type,
                    to_sql_u64(terms.billing_interval),
                    to_sql_u64(terms.max_billing_unit_lag),
                    to_sql_u64(terms.max_suspend_time_s),
                    to_sql_u64(terms.max_inactive_time_s),
                    params_json,
                    now_ms()
                ],
            )?;
            Ok::<_, CoreError>(())
        })?;
        Ok((hash, signed))
    }

    pub fn show_offering(&self, hash: &str) -> Result<OfferingInfo> {
        self.db
            .read(|c| {
                let row: Option<(String, String, i64, String)> = opt(c.q_row(
                    "SELECT hash, product_id, supply, signed FROM offerings WHERE hash = ?1",
                    [hash],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                ))?;
                let Some((hash, product_id, supply, signed)) = row else {
                    return Ok(None);
                };
                let open: i64 = c.q_row(
                    "SELECT count(*) FROM channels WHERE offering_hash = ?1 AND status NOT IN ('terminated')",
                    [&hash],
                    |r| r.get(0),
                )?;
                let signed = serde_json::from_str(&signed).map_err(|source| {
                    CoreError::Db(DbError::Json {
                        what: "offerings.signed",
                        source,
                    })
                })?;
                Ok::<_, CoreError>(Some(OfferingInfo {
                    offering_hash: hash,
                    product_id,
                    supply: from_sql_u64(supply),
                    channels_open: from_sql_u64(open),
                    signed,
                }))
            })?
            .ok_or_else(|| CoreError::NotFound(format!("no offering {hash:?}")))
    }

    pub fn list_offerings(&self) -> Result<Vec<OfferingInfo>> {
        let hashes: Vec<String> = self.db.read(|c| {
            let mut st = c.prepare("SELECT hash FROM offerings ORDER BY created_at_ms, hash")?;
            let rows = st.query_map([], |r| r.get(0))?;
            Ok::<_, CoreError>(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })?;
        hashes.iter().map(|h| self.show_offering(h)).collect()
    }

    /// Client-side check of a signed offering against the registered templates.
    pub fn verify_offering(&self, signed: &Value) -> Result<(String, offering::OfferingTerms)> {
        let signed: SignedOffering = serde_json::from_value(signed.clone()).map_err(|e| {
            CoreError::Invalid(format!(
                "not a signed offering ({{\"offering\":…,\"signature\":…}}): {e}"
            ))
        })?;
        let templates: HashMap<String, Value> = self.db.read(|c| {
            let mut st = c.prepare("SELECT offering_hash, offering_template FROM modules")?;
            let rows =
                st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
            let mut m = HashMap::new();
            for row in rows {
                let (h, b) = row?;
                if let Ok(v) = serde_json::from_str(&b) {
                    m.insert(h, v);
                }
            }
            Ok::<_, CoreError>(m)
        })?;
        offering::verify_offering(&signed, |h| templates.get(h).cloned())
            .map_err(|e| CoreError::Invalid(format!("offering rejected: {e}")))
    }

    // ----------------------------------------------------------------- channels

    /// Creates a channel under an offering; returns (channel id, client key).
    /// `deposit` in base units; `None` = enough for the offering's maxUnits.
    pub fn create_channel(
        &self,
        offering_hash: &str,
        deposit: Option<u64>,
    ) -> Result<(String, ClientKey)> {
        let id = new_id("ch-");
        let client_key = crate::keys::random_client_key();
        let password = self.keys.derive_password(&id);
        let password_hash = self.keys.hash_secret(password.expose());
        self.db.write(|tx| {
            let Some(terms) = offering_terms(tx, offering_hash)? else {
                return Err(CoreError::NotFound(format!("no offering {offering_hash:?}")));
            };
            let supply: i64 = tx.q_row(
                "SELECT supply FROM offerings WHERE hash = ?1",
                [offering_hash],
                |r| r.get(0),
            )?;
            let open: i64 = tx.q_row(
                "SELECT count(*) FROM channels WHERE offering_hash = ?1 AND status NOT IN ('terminated')",
                [offering_hash],
                |r| r.get(0),
            )?;
            if open >= supply {
                return Err(CoreError::Conflict(format!(
                    "offering {offering_hash} is sold out: supply {supply}, {open} channels not terminated"
                )));
            }
            let min = billing::min_deposit(&terms);
            let deposit = match deposit {
                Some(d) => d,
                None => u64::try_from(billing::full_deposit(&terms).max(min)).map_err(|_| {
                    CoreError::Invalid("the offering's full deposit does not fit 64 bits".into())
                })?,
            };
            if u128::from(deposit) < min {
                return Err(CoreError::Invalid(format!(
                    "deposit {deposit} is below the minimum {min} (setupPrice + minUnits·unitPrice, base units)"
                )));
            }
            let now = now_ms();
            tx.exec(
                "INSERT INTO channels (id, side, offering_hash, client_key, password_hash, deposit, status, status_since_ms, created_at_ms)
                 VALUES (?1, 'agent', ?2, ?3, ?4, ?5, 'pending', ?6, ?6)",
                params![id, offering_hash, client_key.0, password_hash, to_sql_u64(deposit), now],
            )?;
            record_status(tx, &id, ServiceStatus::Pending, now, "channel created")?;
            set_status(
                tx,
                &id,
                ServiceStatus::Activating,
                now,
                "deposit covers setupPrice + minUnits·unitPrice",
            )?;
            Ok(())
        })?;
        Ok((id, client_key))
    }

    /// Channel by id or client key (agent side first, then client side).
    pub fn channel_info(&self, id_or_key: &str) -> Result<ChannelInfo> {
        self.db.read(|c| channel_info(c, id_or_key))
    }

    pub fn list_channels(&self) -> Result<Vec<ChannelInfo>> {
        self.db.read(|c| {
            let mut st = c.prepare("SELECT id FROM channels ORDER BY created_at_ms, id")?;
            let ids = st
                .query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            ids.iter().map(|id| channel_info(c, id)).collect()
        })
    }

    /// Admin: force a status (for operators: e.g. terminate a channel by hand).
    pub fn set_channel_status(
        &self,
        id_or_key: &str,
        status: ServiceStatus,
        reason: &str,
    ) -> Result<ChannelInfo> {
        self.db.write(|tx| {
            let info = channel_info(tx, id_or_key)?;
            if info.status != status {
                set_status(tx, &info.channel_id, status, now_ms(), reason)?;
                // Billing rules are the agent's; a client-side channel just takes the status.
                if !info.offering_hash.is_empty() {
                    apply_billing(tx, &info.channel_id, now_ms())?;
                }
            }
            channel_info(tx, &info.channel_id)
        })
    }

    // ----------------------------------------------------------------- access messages

    /// Agent: the access message of a channel (password re-derived; only its hash is stored).
    pub fn export_access(&self, channel: &str) -> Result<AccessMessage> {
        let (msg, access_template) = self.db.read(|c| {
            let row: Option<(String, String, String, String)> = opt(c.q_row(
                "SELECT ch.id, ch.client_key, o.product_id, o.additional_params
                 FROM channels ch JOIN offerings o ON o.hash = ch.offering_hash
                 WHERE ch.side = 'agent' AND (ch.id = ?1 OR ch.client_key = ?1)",
                [channel],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            ))?;
            let Some((id, client_key, product_id, offering_params)) = row else {
                return Err(CoreError::NotFound(format!("no agent channel {channel:?}")));
            };
            let p = Self::product_row(c, &product_id)?
                .ok_or_else(|| CoreError::Internal(format!("product {product_id} missing")))?;
            let (access_hash, access_template): (String, String) = c.q_row(
                "SELECT access_hash, access_template FROM modules WHERE name = ?1",
                [&p.module],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            let offering_params: BTreeMap<String, String> = serde_json::from_str(&offering_params)
                .map_err(|source| {
                    CoreError::Db(DbError::Json {
                        what: "offerings.additional_params",
                        source,
                    })
                })?;
            let mut params = p.config.clone();
            let endpoint = params
                .remove("serviceEndpointAddress")
                .or(p.endpoint.clone())
                .ok_or_else(|| {
                    CoreError::Invalid(format!(
                        "product {} has no service endpoint: create it with --endpoint or run \
                         adapter-server push-config --endpoint HOST:PORT",
                        p.product_id
                    ))
                })?;
            params.extend(offering_params);
            let msg = AccessMessage {
                template_hash: access_hash,
                username: ClientKey(client_key),
                password: self.keys.derive_password(&id),
                service_endpoint_address: endpoint,
                additional_params: params,
            };
            let tpl: Value = serde_json::from_str(&access_template).map_err(|source| {
                CoreError::Db(DbError::Json {
                    what: "modules.access_template",
                    source,
                })
            })?;
            Ok((msg, tpl))
        })?;
        let v = serde_json::to_value(&msg).map_err(|e| CoreError::Internal(e.to_string()))?;
        template::validate_access_message(&access_template, &v).map_err(|e| {
            CoreError::Invalid(format!(
                "the access message does not match the access template: {e}"
            ))
        })?;
        Ok(msg)
    }

    /// Client: stores an access message (replacing an earlier one for the same client key).
    pub fn import_access(&self, raw: &Value) -> Result<ClientKey> {
        let msg: AccessMessage = serde_json::from_value(raw.clone())
            .map_err(|e| CoreError::Invalid(format!("not an access message: {e}")))?;
        check_client_key(&msg.username)?;
        let tpl = self
            .db
            .read(|c| Self::access_template_by_hash(c, &msg.template_hash))?
            .ok_or_else(|| {
                CoreError::Invalid(format!(
                    "access message templateHash {:?} is not a registered access template \
                     (core-lite module register DIR first)",
                    msg.template_hash
                ))
            })?;
        template::validate_access_message(&tpl, raw).map_err(|e| {
            CoreError::Invalid(format!("access message does not match its template: {e}"))
        })?;
        SpeedLimits::from_params(&msg.additional_params)
            .map_err(|e| CoreError::Invalid(format!("access message: additionalParams: {e}")))?;
        let body = serde_json::to_string(&msg).map_err(|e| CoreError::Internal(e.to_string()))?;
        self.db.write(|tx| {
            let now = now_ms();
            let existing: Option<String> = opt(tx.q_row(
                "SELECT id FROM channels WHERE side = 'client' AND client_key = ?1",
                [&msg.username.0],
                |r| r.get(0),
            ))?;
            match existing {
                Some(id) => {
                    tx.exec(
                        "UPDATE channels SET access_message = ?1 WHERE id = ?2",
                        params![body, id],
                    )?;
                }
                None => {
                    let id = new_id("cc-");
                    tx.exec(
                        "INSERT INTO channels (id, side, client_key, access_message, status, status_since_ms, created_at_ms)
                         VALUES (?1, 'client', ?2, ?3, 'activating', ?4, ?4)",
                        params![id, msg.username.0, body, now],
                    )?;
                    record_status(tx, &id, ServiceStatus::Activating, now, "access message imported")?;
                }
            }
            Ok::<_, CoreError>(())
        })?;
        Ok(msg.username)
    }

    // ----------------------------------------------------------------- Service API

    fn side_for(caller: &Caller) -> Side {
        match caller {
            Caller::Client => Side::Client,
            Caller::Admin | Caller::Product(_) => Side::Agent,
        }
    }

    pub fn auth_client(
        &self,
        caller: &Caller,
        req: &AuthClientRequest,
    ) -> Result<AuthClientResponse> {
        let product = match caller {
            Caller::Product(p) => Some(p.clone()),
            Caller::Admin => None,
            Caller::Client => {
                return Err(CoreError::Forbidden(
                    "AuthClient is an agent operation: use a product token".into(),
                ))
            }
        };
        check_client_key(&req.client_key)?;
        if req.password.expose().len() > api::MAX_FIELD_LEN {
            return Err(CoreError::BadRequest(format!(
                "password: at most {} bytes",
                api::MAX_FIELD_LEN
            )));
        }
        if let Some(a) = &req.client_addr {
            check_field("clientAddr", a)?;
        }
        let key_slot = format!("k:{}", req.client_key.0);
        let addr_slot = req
            .client_addr
            .as_deref()
            .map(|a| format!("a:{}", addr_host(a)));
        if self.failures.blocked(&key_slot) {
            return Err(CoreError::RateLimited(format!(
                "client key {}",
                req.client_key
            )));
        }
        if let Some(a) = &addr_slot {
            if self.failures.blocked(a) {
                return Err(CoreError::RateLimited(format!("address {}", &a[2..])));
            }
        }
        let ch = self
            .db
            .read(|c| agent_channel_by_key(c, &req.client_key.0, product.as_deref()))?;
        let ok = match &ch {
            Some(ch) => self
                .keys
                .verify_secret(req.password.expose(), &ch.password_hash),
            None => {
                // Same work as a real check, so timing does not tell keys apart.
                let _ = self
                    .keys
                    .verify_secret(req.password.expose(), &"0".repeat(64));
                false
            }
        };
        let Some(ch) = ch.filter(|_| ok) else {
            self.failures.fail(&key_slot);
            if let Some(a) = &addr_slot {
                self.failures.fail(a);
            }
            return Err(CoreError::AuthFailed);
        };
        self.failures.reset(&key_slot);
        if !ch.status.admits_login() {
            return Err(CoreError::ChannelInactive {
                channel: ch.id,
                status: ch.status,
            });
        }
        Ok(AuthClientResponse {
            client_key: req.client_key.clone(),
            channel_id: ch.id,
            status: ch.status,
            speed: speed_of(&ch.additional_params),
        })
    }

    pub fn set_product_config(
        &self,
        caller: &Caller,
        req: &SetProductConfigRequest,
    ) -> Result<SetProductConfigResponse> {
        let Caller::Product(product_id) = caller else {
            return Err(CoreError::Forbidden(
                "SetProductConfig needs the product's token".into(),
            ));
        };
        if req.config.len() > 64 {
            return Err(CoreError::Invalid("config: at most 64 keys".into()));
        }
        for (k, v) in &req.config {
            if k.is_empty()
                || k.len() > 64
                || !k
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
            {
                return Err(CoreError::Invalid(format!(
                    "config key {:?}: 1..=64 characters of [A-Za-z0-9_.-]",
                    k.chars().take(70).collect::<String>()
                )));
            }
            if v.len() > 16 * 1024 {
                return Err(CoreError::Invalid(format!("config/{k}: at most 16 KiB")));
            }
            if k == "serviceEndpointAddress" {
                check_endpoint(v)?;
            }
        }
        let json =
            serde_json::to_string(&req.config).map_err(|e| CoreError::Internal(e.to_string()))?;
        let changed = self.db.write(|tx| {
            let old: String = tx.q_row(
                "SELECT config FROM products WHERE id = ?1",
                [product_id],
                |r| r.get(0),
            )?;
            if old == json {
                return Ok::<_, CoreError>(false);
            }
            tx.exec(
                "UPDATE products SET config = ?1, config_at_ms = ?2 WHERE id = ?3",
                params![json, now_ms(), product_id],
            )?;
            Ok(true)
        })?;
        Ok(SetProductConfigResponse {
            product_id: product_id.clone(),
            changed,
        })
    }

    pub fn start_session(
        &self,
        caller: &Caller,
        req: &StartSessionRequest,
    ) -> Result<StartSessionResponse> {
        check_client_key(&req.client_key)?;
        for (n, v) in [
            ("connectionId", &req.connection_id),
            ("clientAddr", &req.client_addr),
            ("vpnAddr", &req.vpn_addr),
        ] {
            if let Some(v) = v {
                check_field(n, v)?;
            }
        }
        let side = Self::side_for(caller);
        let product = match caller {
            Caller::Product(p) => Some(p.as_str()),
            _ => None,
        };
        self.db.write(|tx| {
            let now = now_ms();
            let (channel_id, status, params) = match side {
                Side::Agent => {
                    let ch = agent_channel_by_key(tx, &req.client_key.0, product)?
                        .ok_or_else(|| {
                            CoreError::NotFound(format!("unknown client key {}", req.client_key))
                        })?;
                    (ch.id, ch.status, ch.additional_params)
                }
                Side::Client => {
                    let row: Option<(String, String, String)> = opt(tx.q_row(
                        "SELECT id, status, access_message FROM channels WHERE side = 'client' AND client_key = ?1",
                        [&req.client_key.0],
                        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                    ))?;
                    let (id, status, msg) = row.ok_or_else(|| {
                        CoreError::NotFound(format!("no access message for client key {}", req.client_key))
                    })?;
                    let params = serde_json::from_str::<AccessMessage>(&msg)
                        .map(|m| serde_json::to_string(&m.additional_params).unwrap_or_default())
                        .unwrap_or_default();
                    (id, parse_status(&status)?, params)
                }
            };
            // A connection id names one connection: StartSession for it again (an adapter that
            // restarted, or the client-disconnect hook looking for the session the monitor
            // opened) returns that session, open or already stopped, whatever the status.
            if let Some(conn) = &req.connection_id {
                let known: Option<(String, i64, i64)> = opt(tx.q_row(
                    "SELECT id, bytes_in, bytes_out FROM sessions WHERE channel_id = ?1 AND connection_id = ?2
                     ORDER BY started_at_ms DESC LIMIT 1",
                    params![channel_id, conn],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                ))?;
                if let Some((sid, bin, bout)) = known {
                    return Ok(StartSessionResponse {
                        session_id: SessionId(sid),
                        channel_id,
                        status,
                        speed: speed_of(&params),
                        bytes_in: from_sql_u64(bin),
                        bytes_out: from_sql_u64(bout),
                    });
                }
            }
            if !status.admits_login() {
                return Err(CoreError::ChannelInactive {
                    channel: channel_id,
                    status,
                });
            }
            let open: Option<String> = opt(tx.q_row(
                "SELECT id FROM sessions WHERE channel_id = ?1 AND stopped_at_ms IS NULL",
                [&channel_id],
                |r| r.get(0),
            ))?;
            if let Some(sid) = open {
                // A stale session (another connection): close it with its last known counts.
                tx.exec(
                    "UPDATE sessions SET stopped_at_ms = ?1 WHERE id = ?2",
                    params![now, sid],
                )?;
            }
            let sid = new_id("s-");
            tx.exec(
                "INSERT INTO sessions (id, channel_id, connection_id, client_addr, vpn_addr, started_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)",
                params![sid, channel_id, req.connection_id, req.client_addr, req.vpn_addr, now],
            )?;
            let mut status = status;
            if status == ServiceStatus::Activating {
                set_status(tx, &channel_id, ServiceStatus::Active, now, "first session started")?;
                status = ServiceStatus::Active;
            }
            Ok(StartSessionResponse {
                session_id: SessionId(sid),
                channel_id,
                status,
                speed: speed_of(&params),
                bytes_in: 0,
                bytes_out: 0,
            })
        })
    }

    pub fn update_session(
        &self,
        caller: &Caller,
        req: &UpdateSessionRequest,
    ) -> Result<UpdateSessionResponse> {
        let r = self.record_usage(caller, &req.session_id, req.bytes_in, req.bytes_out, false)?;
        Ok(UpdateSessionResponse {
            session_id: req.session_id.clone(),
            status: r.status,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            channel_bytes: r.channel_bytes,
            units_used: billing::units_used(r.channel_bytes),
        })
    }

    pub fn stop_session(
        &self,
        caller: &Caller,
        req: &StopSessionRequest,
    ) -> Result<StopSessionResponse> {
        let r = self.record_usage(caller, &req.session_id, req.bytes_in, req.bytes_out, true)?;
        Ok(StopSessionResponse {
            session_id: req.session_id.clone(),
            status: r.status,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            channel_bytes: r.channel_bytes,
            units_used: billing::units_used(r.channel_bytes),
            stopped: r.stopped_now,
        })
    }

    /// Records cumulative counters (per-field maximum, so replays and reordering change
    /// nothing), optionally closes the session, then applies the billing rules.
    fn record_usage(
        &self,
        caller: &Caller,
        session_id: &SessionId,
        bytes_in: u64,
        bytes_out: u64,
        stop: bool,
    ) -> Result<Usage> {
        check_field("sessionId", &session_id.0)?;
        // SQLite integers are signed: bound what a caller can make us add.
        let limit = u64::try_from(i64::MAX / 4).unwrap_or(u64::MAX);
        if bytes_in > limit || bytes_out > limit {
            return Err(CoreError::Invalid(format!(
                "bytesIn/bytesOut: at most {limit}"
            )));
        }
        self.db.write(|tx| {
            let now = now_ms();
            type Row = (String, String, Option<String>, i64, i64, Option<i64>, String, i64);
            let row: Option<Row> = opt(tx.q_row(
                "SELECT s.channel_id, c.side, o.product_id, s.bytes_in, s.bytes_out, s.stopped_at_ms,
                        c.status, c.bytes_total
                 FROM sessions s JOIN channels c ON c.id = s.channel_id
                 LEFT JOIN offerings o ON o.hash = c.offering_hash
                 WHERE s.id = ?1",
                [&session_id.0],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                    ))
                },
            ))?;
            let not_found = || CoreError::NotFound(format!("unknown session {session_id}"));
            let (channel_id, side, product, old_in, old_out, stopped, status, total) =
                row.ok_or_else(not_found)?;
            let allowed = match caller {
                Caller::Admin => true,
                Caller::Product(p) => side == Side::Agent.as_str() && product.as_deref() == Some(p),
                Caller::Client => side == Side::Client.as_str(),
            };
            if !allowed {
                return Err(not_found());
            }
            let (old_in, old_out) = (from_sql_u64(old_in), from_sql_u64(old_out));
            let stopped_before = stopped.is_some();
            // Per-field maximum. After the stop, a usage report changes nothing; a later
            // StopSession with higher final counts still wins (the monitor may stop a session
            // with its last bytecount before the client-disconnect hook brings OpenVPN's exact
            // final counters).
            let (new_in, new_out) = if stopped_before && !stop {
                (old_in, old_out)
            } else {
                (old_in.max(bytes_in), old_out.max(bytes_out))
            };
            let delta = (new_in - old_in) + (new_out - old_out);
            let stopped_now = stop && !stopped_before;
            if delta > 0 || stopped_now {
                tx.exec(
                    "UPDATE sessions SET bytes_in = ?1, bytes_out = ?2, updated_at_ms = ?3,
                            stopped_at_ms = CASE WHEN ?4 THEN ?3 ELSE stopped_at_ms END
                     WHERE id = ?5",
                    params![to_sql_u64(new_in), to_sql_u64(new_out), now, stopped_now, session_id.0],
                )?;
            }
            if delta > 0 {
                tx.exec(
                    "UPDATE channels SET bytes_total = bytes_total + ?1 WHERE id = ?2",
                    params![to_sql_u64(delta), channel_id],
                )?;
            }
            // Billing looks again only when usage or the session changed (timers and cheques
            // apply it themselves).
            let status = if side == Side::Agent.as_str() && (delta > 0 || stopped_now) {
                apply_billing(tx, &channel_id, now)?
            } else {
                parse_status(&status)?
            };
            Ok(Usage {
                status,
                bytes_in: new_in,
                bytes_out: new_out,
                channel_bytes: from_sql_u64(total).saturating_add(delta),
                stopped_now,
            })
        })
    }

    pub fn get_access(&self, caller: &Caller, req: &GetAccessRequest) -> Result<AccessMessage> {
        if matches!(caller, Caller::Product(_)) {
            return Err(CoreError::Forbidden(
                "GetAccess is a client operation: use a client token".into(),
            ));
        }
        check_client_key(&req.client_key)?;
        let body: Option<String> = self.db.read(|c| {
            opt(c.q_row(
                "SELECT access_message FROM channels WHERE side = 'client' AND client_key = ?1",
                [&req.client_key.0],
                |r| r.get(0),
            ))
        })?;
        let body = body.ok_or_else(|| {
            CoreError::NotFound(format!(
                "no access message for client key {} (core-lite access import FILE)",
                req.client_key
            ))
        })?;
        serde_json::from_str(&body).map_err(|source| {
            CoreError::Db(DbError::Json {
                what: "channels.access_message",
                source,
            })
        })
    }

    /// Applies the timer rules (maxInactiveTime, maxSuspendTime, finishing suspending /
    /// terminating channels without a session). Returns the channels whose status changed.
    pub fn tick(&self, now: i64) -> Result<Vec<(String, ServiceStatus)>> {
        let ids: Vec<(String, String)> = self.db.read(|c| {
            let mut st = c.prepare(
                "SELECT id, status FROM channels WHERE side = 'agent'
                 AND status IN ('activating', 'suspending', 'suspended', 'terminating')",
            )?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok::<_, CoreError>(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })?;
        let mut changed = Vec::new();
        for (id, before) in ids {
            let after = self.db.write(|tx| apply_billing(tx, &id, now))?;
            if after.as_str() != before {
                changed.push((id, after));
            }
        }
        Ok(changed)
    }
}

struct Usage {
    status: ServiceStatus,
    bytes_in: u64,
    bytes_out: u64,
    channel_bytes: u64,
    stopped_now: bool,
}

/// Host part of `ip`, `ip:port` or `[v6]:port`.
fn addr_host(a: &str) -> &str {
    if let Some(rest) = a.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => a,
    }
}

fn check_endpoint(e: &str) -> Result<()> {
    let ok = !e.is_empty()
        && e.len() <= 255
        && e.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if ok {
        Ok(())
    } else {
        Err(CoreError::Invalid(format!(
            "endpoint {:?}: must be HOST or HOST:PORT (letters, digits, '.', '-', ':')",
            e.chars().take(64).collect::<String>()
        )))
    }
}

fn speed_of(additional_params_json: &str) -> SpeedLimits {
    serde_json::from_str::<BTreeMap<String, String>>(additional_params_json)
        .ok()
        .and_then(|m| SpeedLimits::from_params(&m).ok())
        .unwrap_or_default()
}

fn agent_channel_by_key(
    c: &Connection,
    client_key: &str,
    product: Option<&str>,
) -> Result<Option<AgentChannel>> {
    agent_channel_where(c, "ch.client_key = ?1", client_key, product)
}

fn agent_channel_where(
    c: &Connection,
    cond: &str,
    arg: &str,
    product: Option<&str>,
) -> Result<Option<AgentChannel>> {
    let sql = format!(
        "SELECT ch.id, o.product_id, ch.status, ch.status_since_ms, ch.bytes_total, ch.deposit,
                ch.password_hash, o.additional_params,
                o.unit_price, o.setup_price, o.min_units, o.max_units, o.free_units,
                o.max_billing_unit_lag, o.billing_interval, o.max_suspend_time_s,
                o.max_inactive_time_s, ch.client_public_key IS NOT NULL, ch.amount_paid,
                EXISTS (SELECT 1 FROM sessions s WHERE s.channel_id = ch.id AND s.stopped_at_ms IS NULL)
         FROM channels ch JOIN offerings o ON o.hash = ch.offering_hash
         WHERE ch.side = 'agent' AND {cond}"
    );
    let row = opt(c.q_row(&sql, [arg], |r| {
        let u = |i| r.get::<_, i64>(i).map(from_sql_u64);
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, String>(2)?,
            r.get::<_, i64>(3)?,
            u(4)?,
            u(5)?,
            r.get::<_, String>(6)?,
            r.get::<_, String>(7)?,
            BillingTerms {
                unit_price: u(8)?,
                setup_price: u(9)?,
                min_units: u(10)?,
                max_units: u(11)?,
                free_units: u(12)?,
                max_billing_unit_lag: u(13)?,
                billing_interval: u(14)?,
                max_suspend_time_s: u(15)?,
                max_inactive_time_s: u(16)?,
            },
            r.get::<_, bool>(17)?,
            u(18)?,
            r.get::<_, bool>(19)?,
        ))
    }))?;
    let Some((
        id,
        product_id,
        status,
        since,
        bytes,
        deposit,
        pw,
        params,
        terms,
        by_cheque,
        paid,
        open,
    )) = row
    else {
        return Ok(None);
    };
    if product.is_some_and(|p| p != product_id) {
        return Ok(None);
    }
    Ok(Some(AgentChannel {
        id,
        status: parse_status(&status)?,
        status_since_ms: since,
        bytes_total: bytes,
        deposit,
        password_hash: pw,
        terms,
        additional_params: params,
        // Channels accepted over the market are paid by cheques: the lag rule applies.
        amount_paid: by_cheque.then_some(paid),
        has_open_session: open,
    }))
}

pub(crate) fn record_status(
    tx: &Connection,
    channel_id: &str,
    status: ServiceStatus,
    now: i64,
    reason: &str,
) -> Result<()> {
    tx.exec(
        "INSERT INTO status_history (channel_id, status, at_ms, reason) VALUES (?1, ?2, ?3, ?4)",
        params![channel_id, status.as_str(), now, reason],
    )?;
    Ok(())
}

fn set_status(
    tx: &Connection,
    channel_id: &str,
    status: ServiceStatus,
    now: i64,
    reason: &str,
) -> Result<()> {
    tx.exec(
        "UPDATE channels SET status = ?1, status_since_ms = ?2 WHERE id = ?3",
        params![status.as_str(), now, channel_id],
    )?;
    record_status(tx, channel_id, status, now, reason)?;
    tracing::info!(channel = channel_id, status = %status, reason, "channel status changed");
    Ok(())
}

/// Applies [`billing::next_status`] until it settles; returns the final status.
pub(crate) fn apply_billing(tx: &Connection, channel_id: &str, now: i64) -> Result<ServiceStatus> {
    let ch = agent_channel_where(tx, "ch.id = ?1", channel_id, None)?
        .ok_or_else(|| CoreError::NotFound(format!("no agent channel {channel_id}")))?;
    let mut st = ChannelState {
        amount_paid: ch.amount_paid,
        status: ch.status,
        status_since_ms: ch.status_since_ms,
        bytes_total: ch.bytes_total,
        deposit: ch.deposit,
        has_open_session: ch.has_open_session,
    };
    for _ in 0..8 {
        let Some((next, reason)) = billing::next_status(&ch.terms, &st, now) else {
            break;
        };
        set_status(tx, channel_id, next, now, &reason)?;
        st.status = next;
        st.status_since_ms = now;
    }
    Ok(st.status)
}

fn channel_info(c: &Connection, id_or_key: &str) -> Result<ChannelInfo> {
    let row: Option<(String, String, Option<String>, String, i64, i64)> = opt(c.q_row(
        "SELECT id, client_key, offering_hash, status, deposit, bytes_total FROM channels
         WHERE id = ?1 OR client_key = ?1 ORDER BY side = 'agent' DESC LIMIT 1",
        [id_or_key],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        },
    ))?;
    let (id, key, offering, status, deposit, bytes) =
        row.ok_or_else(|| CoreError::NotFound(format!("no channel {id_or_key:?}")))?;
    let open: Option<String> = opt(c.q_row(
        "SELECT id FROM sessions WHERE channel_id = ?1 AND stopped_at_ms IS NULL",
        [&id],
        |r| r.get(0),
    ))?;
    let mut st = c.prepare(
        "SELECT status, at_ms, reason FROM status_history WHERE channel_id = ?1 ORDER BY id",
    )?;
    let history = st
        .query_map([&id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(|(s, at_ms, reason)| {
            Ok(StatusChange {
                status: parse_status(&s)?,
                at_ms,
                reason,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(ChannelInfo {
        channel_id: id,
        client_key: ClientKey(key),
        offering_hash: offering.unwrap_or_default(),
        status: parse_status(&status)?,
        deposit: from_sql_u64(deposit),
        bytes_total: from_sql_u64(bytes),
        units_used: billing::units_used(from_sql_u64(bytes)),
        open_session: open.map(SessionId),
        history,
    })
}

/// The billing terms of an offering (agent side).
pub(crate) fn offering_terms(c: &Connection, hash: &str) -> Result<Option<BillingTerms>> {
    Ok(opt(c.q_row(
        "SELECT unit_price, setup_price, min_units, max_units, free_units, max_billing_unit_lag,
                billing_interval, max_suspend_time_s, max_inactive_time_s
         FROM offerings WHERE hash = ?1",
        [hash],
        |r| {
            Ok(BillingTerms {
                unit_price: from_sql_u64(r.get(0)?),
                setup_price: from_sql_u64(r.get(1)?),
                min_units: from_sql_u64(r.get(2)?),
                max_units: from_sql_u64(r.get(3)?),
                free_units: from_sql_u64(r.get(4)?),
                max_billing_unit_lag: from_sql_u64(r.get(5)?),
                billing_interval: from_sql_u64(r.get(6)?),
                max_suspend_time_s: from_sql_u64(r.get(7)?),
                max_inactive_time_s: from_sql_u64(r.get(8)?),
            })
        },
    ))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_host_strips_port() {
        assert_eq!(addr_host("10.0.0.1:1194"), "10.0.0.1");
        assert_eq!(addr_host("10.0.0.1"), "10.0.0.1");
        assert_eq!(addr_host("[::1]:5"), "::1");
        assert_eq!(addr_host("::1"), "::1");
    }

    #[test]
    fn limiter_blocks_after_max_failures_and_resets() {
        let l = FailureLimiter::default();
        for _ in 0..MAX_AUTH_FAILURES - 1 {
            l.fail("k:x");
        }
        assert!(!l.blocked("k:x"));
        l.fail("k:x");
        assert!(l.blocked("k:x"));
        assert!(!l.blocked("k:y"));
        l.reset("k:x");
        assert!(!l.blocked("k:x"));
    }

    #[test]
    fn endpoint_check() {
        assert!(check_endpoint("vpn.example.org:1194").is_ok());
        assert!(check_endpoint("10.1.2.3").is_ok());
        assert!(check_endpoint("a b").is_err());
        assert!(check_endpoint("x\nremote evil").is_err());
        assert!(check_endpoint("").is_err());
    }
}
