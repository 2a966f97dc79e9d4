//! Opening a data dir: created 0700 when missing, with `agent.key`, `core.db`,
//! `admin.token` and `metrics.token`.

use std::path::Path;

use crate::error::{CoreError, Result};
use crate::keys::AgentKeys;
use crate::service::Core;
use crate::store::{Db, Location};

impl Core {
    /// Opens (creating when needed) a data dir: `core.db`, `agent.key`, `admin.token`.
    pub fn open(data_dir: &Path) -> Result<Core> {
        Core::open_with(data_dir, None)
    }

    /// Opens a data dir (`agent.key`, the token files) with its database: SQLite `core.db`
    /// in it when `database` is `None`, else the PostgreSQL database of that URL.
    pub fn open_with(data_dir: &Path, database: Option<&str>) -> Result<Core> {
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
        let db = match database {
            None => Db::open(&data_dir.join("core.db"))?,
            Some(url) => match Location::parse(url) {
                Location::Postgres(url) => Db::open_postgres(&url)?,
                Location::Sqlite(_) => {
                    return Err(CoreError::Invalid(
                        "--database takes a postgres:// URL (SQLite is the data dir's core.db)"
                            .into(),
                    ))
                }
            },
        };
        let core = Core::new(db, keys, data_dir);
        core.ensure_admin_token()?;
        core.ensure_metrics_token()?;
        Ok(core)
    }
}
