//! The store on PostgreSQL: the CA's state (serials, certificates, revocations, hosts, join
//! and workload tokens, access requests) and the bastion's session index, for deployments
//! where several CA and bastion instances share one database (`[store] url =
//! "postgres://..."`). SQLite ([`jitssh_core::store::SqliteStore`]) stays the default.
//!
//! The contracts are those of the SQLite store, kept across processes on other machines:
//! - serials come from one `UPDATE ... RETURNING` on a counter row, committed before any is
//!   used, so no two instances ever hand out the same one, even after a kill -9;
//! - a revocation and the bump of the revocation generation are one transaction, and
//!   revokers are serialised on the counter row before their row gets its id, so ids grow
//!   in commit order and a reader's cursor never skips one committed late;
//! - certificates pending between store and audit log belong to one instance (`owner`, its
//!   audit log), so an instance reconciles its own after a crash and never another's live
//!   ones.

mod audit_index;
mod driver;
mod error;
mod schema;
mod sessions;
mod store;
pub mod url;

use std::time::Duration;

use jitssh_core::store::StoreError;

pub use error::PgError;
pub use schema::Migrated;

/// How the store connects.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// Time allowed to connect (and to wait for a pooled connection).
    pub connect_timeout: Duration,
    /// Time the server lets one statement (or a lock wait) run.
    pub statement_timeout: Duration,
    /// Connections kept at most.
    pub pool_size: usize,
    /// Who owns the pending certificates this process writes (stable across its restarts,
    /// distinct between instances): the CA uses its host name and audit log path.
    pub owner: String,
    /// The password, when it is not in the url (read from a file the config names).
    pub password: Option<String>,
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            connect_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(10),
            pool_size: 16,
            owner: String::new(),
            password: None,
        }
    }
}

/// The store on one PostgreSQL database.
pub struct PgStore {
    driver: driver::Driver,
    database: String,
    owner: String,
}

impl PgStore {
    /// Opens the CA's store at `url`, applying missing migrations (see [`Migrated`]).
    pub fn open(url: &str, options: &PgOptions) -> Result<(PgStore, Migrated), StoreError> {
        PgStore::open_schema(url, options, &store::SCHEMA)
    }

    /// Opens the bastion's session index at `url`, applying missing migrations.
    pub fn open_session_index(
        url: &str,
        options: &PgOptions,
    ) -> Result<(PgStore, Migrated), StoreError> {
        PgStore::open_schema(url, options, &sessions::SCHEMA)
    }

    fn open_schema(
        url: &str,
        options: &PgOptions,
        schema: &'static schema::Schema,
    ) -> Result<(PgStore, Migrated), StoreError> {
        let parsed = url::StoreUrl::parse(url).map_err(|err| StoreError::Backend {
            database: redact(url),
            source: Box::new(err),
        })?;
        let database = parsed.display.clone();
        let fail = |err: PgError| StoreError::Backend {
            database: database.clone(),
            source: Box::new(err),
        };
        let driver = driver::Driver::new(&parsed, options).map_err(fail)?;
        let store = PgStore {
            driver,
            database: database.clone(),
            owner: options.owner.clone(),
        };
        let migrated = store.run(move |pool| async move {
            let mut client = pool.get().await.map_err(PgError::pool)?;
            schema::migrate(&mut client, schema).await
        })?;
        if migrated.from != migrated.to {
            tracing::info!(
                database = %store.database,
                what = migrated.what,
                from = migrated.from,
                to = migrated.to,
                "upgraded the database schema"
            );
        }
        Ok((store, migrated))
    }

    /// The database, as `postgres://user@host:port/name` (no password).
    pub fn database(&self) -> &str {
        &self.database
    }

    /// Runs one operation on the store's runtime; its error as a [`StoreError`].
    fn run<T, F, Fut>(&self, make: F) -> Result<T, StoreError>
    where
        F: FnOnce(deadpool_postgres::Pool) -> Fut,
        Fut: std::future::Future<Output = Result<T, PgError>> + Send + 'static,
        T: Send + 'static,
    {
        self.driver.run(make).map_err(|err| StoreError::Backend {
            database: self.database.clone(),
            source: Box::new(err),
        })
    }
}

/// A URL that did not parse, shown without anything that looks like a password.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let user = &url[scheme + 3..at];
            let user = user.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// Serials, times and counters are stored bit for bit in signed 64-bit columns (lossless
/// both ways), as in the SQLite store.
fn to_sql(value: u64) -> i64 {
    value as i64
}

fn from_sql(value: i64) -> u64 {
    value as u64
}
