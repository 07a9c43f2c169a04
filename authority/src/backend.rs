//! Which store the authority opens: `store.db` (SQLite) in the data directory, the default,
//! or the PostgreSQL database of `[store] url`, shared by several CA instances.

use std::path::Path;
use std::sync::Arc;

use jitssh_core::store::{SessionStore, SqliteStore, StoreError};
use jitssh_postgres::{Migrated, PgOptions, PgStore};

use crate::authority::{CaStore, absolute};
use crate::config::{CaConfig, StoreSettings};

/// What opening did to the store's schema, for `ssh-ca migrate`.
#[derive(Debug, Clone)]
pub enum SchemaReport {
    /// SQLite upgrades itself in place when opened (and says so in the log).
    Sqlite,
    /// PostgreSQL: the steps applied.
    Postgres(Migrated),
}

/// Opens the configured store, applying missing migrations; refuses one a newer release
/// migrated.
pub fn open(config: &CaConfig) -> Result<(Arc<dyn CaStore>, SchemaReport), StoreError> {
    let Some(url) = &config.store.url else {
        let store = SqliteStore::open(&config.store_path())?;
        return Ok((Arc::new(store), SchemaReport::Sqlite));
    };
    let options = pg_options(&config.store, owner(config))?;
    let (store, migrated) = PgStore::open(url, &options)?;
    Ok((Arc::new(store), SchemaReport::Postgres(migrated)))
}

/// Opens a bastion's session index (which holds its audit index too): `sqlite` (its
/// `sessions.db`) by default, or the PostgreSQL database of `[store] url` that several
/// bastions and the CAs share, so that auditors search every instance's sessions in one
/// place. Applies missing migrations; refuses a schema a newer release migrated.
pub fn open_session_store(
    settings: &StoreSettings,
    sqlite: &Path,
    owner: String,
) -> Result<Arc<dyn SessionStore>, StoreError> {
    let Some(url) = &settings.url else {
        return Ok(Arc::new(SqliteStore::open_session_index(sqlite)?));
    };
    let (store, _) = PgStore::open_session_index(url, &pg_options(settings, owner)?)?;
    Ok(Arc::new(store))
}

/// The connection options of `[store]`, reading the password file if there is one.
fn pg_options(settings: &StoreSettings, owner: String) -> Result<PgOptions, StoreError> {
    let password = match &settings.password_file {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    Ok(PgOptions {
        connect_timeout: settings.connect_timeout.into(),
        statement_timeout: settings.statement_timeout.into(),
        pool_size: settings.pool_size,
        owner,
        password,
    })
}

/// Who this instance is among those sharing the database: its host name and audit log
/// (each instance has its own). Stable across restarts, so a restarted instance reconciles
/// the certificates it left pending, and only those.
fn owner(config: &CaConfig) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!(
        "{}:{}",
        host.trim(),
        absolute(&config.audit_path()).display()
    )
}
