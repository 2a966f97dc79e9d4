//! `module register` and `module list`: service modules and their templates.

use std::path::Path;

use serde::Serialize;

use crate::error::{CoreError, Result};
use crate::service::{now_ms, Core};
use crate::store::modules::{self, ModuleRow, NewModule};
use crate::template;

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

impl Registered {
    fn known(row: ModuleRow) -> Registered {
        Registered {
            module: row.name,
            version: row.version,
            offering_template_hash: row.offering_hash,
            access_template_hash: row.access_hash,
            newly_registered: false,
        }
    }
}

impl Core {
    pub fn register_module(&self, dir: &Path) -> Result<Registered> {
        let m = template::load_module(dir)
            .map_err(|e| CoreError::Invalid(format!("module at {}: {e}", dir.display())))?;
        self.db.write(|tx| {
            if let Some(existing) = modules::by_name(tx, &m.name)? {
                if existing.offering_hash == m.offering_hash
                    && existing.access_hash == m.access_hash
                {
                    return Ok(Registered::known(existing));
                }
                return Err(CoreError::Conflict(format!(
                    "module {:?} is already registered with other templates \
                     (offering {}, access {}); refusing to replace them with \
                     offering {}, access {}: offerings already published would no longer \
                     match. Register the changed module under a new name.",
                    m.name,
                    existing.offering_hash,
                    existing.access_hash,
                    m.offering_hash,
                    m.access_hash
                )));
            }
            if let Some(other) =
                modules::name_by_template_hashes(tx, &m.offering_hash, &m.access_hash)?
            {
                return Err(CoreError::Conflict(format!(
                    "the templates of module {:?} are already registered as module {other:?}",
                    m.name
                )));
            }
            modules::insert(
                tx,
                &NewModule {
                    name: &m.name,
                    version: &m.version,
                    offering_template: &m.offering_template,
                    offering_hash: &m.offering_hash,
                    access_template: &m.access_template,
                    access_hash: &m.access_hash,
                    registered_at_ms: now_ms(),
                },
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
        let rows = self.db.read(modules::list)?;
        Ok(rows.into_iter().map(Registered::known).collect())
    }
}
