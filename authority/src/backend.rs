//! Which store the authority opens: `store.db` (SQLite) in the data directory, the default,
//! or the PostgreSQL database of `[store] url`, shared by several CA instances.

use std::sync::Arc;

use jitssh_core::store::{SqliteStore, StoreError};
use jitssh_postgres::{Migrated, PgOptions, PgStore};

use crate::authority::{CaStore, absolute};
use crate::config::CaConfig;

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
    let password = match &config.store.password_file {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?,
        ),
        None => None,
    };
    let options = PgOptions {
        connect_timeout: config.store.connect_timeout.into(),
        statement_timeout: config.store.statement_timeout.into(),
        pool_size: config.store.pool_size,
        owner: owner(config),
        password,
    };
    let (store, migrated) = PgStore::open(url, &options)?;
    Ok((Arc::new(store), SchemaReport::Postgres(migrated)))
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
