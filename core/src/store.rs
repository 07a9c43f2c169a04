//! Durable state: serial numbers, issued certificates and revocations.
//!
//! Behind the narrow [`Store`] trait so a deployment that outgrows one machine can move to a
//! shared database (PostgreSQL first) without touching the callers.
//!
//! The implementation is SQLite in WAL mode with `synchronous=FULL`, not sled as first planned:
//! an operator must be able to run `ssh-ca revoke` while `ssh-ca serve` is running, and sled
//! holds an exclusive lock on its directory for the life of the process, while SQLite
//! serialises writers across processes and is durable at every commit.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

mod audit_index;
mod hosts;
mod requests;
mod schema;
mod sessions;
mod tokens;

pub use audit_index::{
    AuditIndex, AuditQuery, ChainHead, HeadOutcome, IndexedRecord, head_may_follow, record_time,
};
pub use hosts::{HostRecord, HostStore};
pub use requests::{AccessRequest, Decision as RequestDecision, RequestStatus, RequestStore};
pub use sessions::{SessionEnd, SessionFilter, SessionIndex, SessionRecord};
pub use tokens::TokenStore;

/// A session index that also holds the audit index: what a bastion writes sessions and its
/// audit chain to, and what auditors read. SQLite `sessions.db` by default, or a PostgreSQL
/// database that several bastions (and the CAs) share, so one search sees every instance.
pub trait SessionStore: SessionIndex + AuditIndex {}

impl<T: SessionIndex + AuditIndex + ?Sized> SessionStore for T {}

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::{Deserialize, Serialize};

/// Errors from the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or a statement failed.
    #[error("store {}: {source}", path.display())]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// SQLite's reason.
        source: rusqlite::Error,
    },
    /// A stored value could not be decoded (the database was edited by hand or is corrupt).
    #[error("store {}: corrupt record: {why}", path.display())]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The database belongs to another program or to a newer release, so it is left alone.
    #[error("store {}: {why}", path.display())]
    Schema {
        /// The database file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A database server (PostgreSQL) failed or could not be reached; `database` names it
    /// without its password.
    #[error("store {database}: {source}")]
    Backend {
        /// The database, as `postgres://user@host:port/name`.
        database: String,
        /// The backend's reason (its own error type).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The database file could not be created or its mode set.
    #[error("store {}: {source}", path.display())]
    Io {
        /// The database file.
        path: PathBuf,
        /// The system's reason.
        source: std::io::Error,
    },
}

/// A certificate the CA handed out, with who asked and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCert {
    /// Certificate serial number (unique across user and host certificates).
    pub serial: u64,
    /// `user` or `host`.
    pub cert_type: String,
    /// Certificate key id.
    pub key_id: String,
    /// Principals.
    pub principals: Vec<String>,
    /// Unix start of validity.
    pub valid_after: u64,
    /// Unix end of validity.
    pub valid_before: u64,
    /// Who asked: a user name, a host name, or `operator` for offline signing.
    pub requested_by: String,
    /// Why, when given.
    pub reason: Option<String>,
    /// The grant or request details, as JSON.
    pub details: serde_json::Value,
    /// SHA-256 fingerprint of the certified key.
    pub subject_fingerprint: String,
    /// The certificate line.
    pub certificate: String,
    /// Unix time of issuance.
    pub issued_at: u64,
}

/// What a revocation names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum Revoked {
    /// A certificate serial number.
    Serial(u64),
    /// Every certificate with this key id.
    KeyId(String),
    /// A public key (OpenSSH line): every certificate for it, and the key itself.
    Key(String),
}

/// A revocation with its provenance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// What is revoked.
    pub item: Revoked,
    /// Why.
    pub reason: Option<String>,
    /// Who revoked it.
    pub revoked_by: String,
    /// Unix time.
    pub revoked_at: u64,
}

/// Revocations added after a cursor, for keeping an in-memory revocation set up to date
/// without reading every revocation again ([`Store::revocations_since`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationPage {
    /// The revocations added after the cursor given, oldest first.
    pub revocations: Vec<Revocation>,
    /// The cursor to pass next time (the position after the last revocation returned).
    pub cursor: u64,
    /// The revocation generation these revocations bring a reader up to.
    pub generation: u64,
}

/// The narrow interface every part of the system uses for durable state.
pub trait Store: Send + Sync {
    /// Reserves `count` fresh serial numbers, durably, before any is used: after a crash or a
    /// concurrent process, a serial is never handed out twice.
    fn reserve_serials(&self, count: u64) -> Result<Range<u64>, StoreError>;
    /// Records an issued certificate.
    fn record_issued(&self, cert: &IssuedCert) -> Result<(), StoreError> {
        self.record_issued_batch(std::slice::from_ref(cert))
    }
    /// Records several issued certificates in one durable transaction (group commit).
    fn record_issued_batch(&self, certs: &[IssuedCert]) -> Result<(), StoreError>;
    /// Records certificates as *pending*: signed, not yet audited nor handed out. The caller
    /// then audits them and calls [`Store::settle_issued`]; a pending row found later (the
    /// process died in between) is a certificate nobody received.
    fn record_issued_pending(&self, certs: &[IssuedCert]) -> Result<(), StoreError>;
    /// Ends the pending state of `serials`: `released` (audited, handed out) or not (never
    /// handed out, audited as `cert.unreleased`).
    fn settle_issued(&self, serials: &[u64], released: bool) -> Result<(), StoreError>;
    /// Certificates still pending, oldest first.
    fn pending_issued(&self) -> Result<Vec<IssuedCert>, StoreError>;
    /// One issued certificate by serial.
    fn issued(&self, serial: u64) -> Result<Option<IssuedCert>, StoreError>;
    /// Issued certificates, newest first, at most `limit`.
    fn list_issued(&self, limit: usize) -> Result<Vec<IssuedCert>, StoreError>;
    /// Direct (break-glass) certificates (`details.break_glass`), newest first, at most
    /// `limit`: what an auditor reviews after an outage.
    fn list_break_glass(&self, limit: usize) -> Result<Vec<IssuedCert>, StoreError>;
    /// Adds a revocation; `false` if the same item was already revoked.
    fn revoke(&self, revocation: &Revocation) -> Result<bool, StoreError>;
    /// All revocations, oldest first.
    fn revocations(&self) -> Result<Vec<Revocation>, StoreError>;
    /// A number that changes whenever a revocation is added, by this process or another: one
    /// cheap read that tells a cached revocation set whether it is still current.
    /// Revocations are only ever added, and the generation only grows.
    fn revocation_generation(&self) -> Result<u64, StoreError>;
    /// The revocations added after `cursor` (0: all of them), read consistently with the
    /// generation they bring a reader up to.
    fn revocations_since(&self, cursor: u64) -> Result<RevocationPage, StoreError>;
    /// The CA keys this store belongs to, as recorded by [`Store::record_ca_keys`].
    fn ca_keys(&self) -> Result<Option<CaKeyFingerprints>, StoreError>;
    /// Records the CA keys this store belongs to, unless some are recorded already; returns
    /// what is recorded afterwards.
    fn record_ca_keys(&self, keys: &CaKeyFingerprints) -> Result<CaKeyFingerprints, StoreError>;
    /// How many certificates were issued (stored) so far.
    fn issued_count(&self) -> Result<u64, StoreError>;
}

/// SHA-256 fingerprints of the CA keys a store belongs to, so a store is never silently
/// paired with other (for instance freshly created) CA keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaKeyFingerprints {
    /// The user CA.
    pub user: String,
    /// The host CA.
    pub host: String,
    /// The target CA; `None` in stores from before it (recorded on upgrade).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// [`Store`] on a SQLite database file.
pub struct SqliteStore {
    path: PathBuf,
    conn: Mutex<Connection>,
}

/// The CA's tables as every release before versioned schemas created them (and still the
/// first step of [`CA_SCHEMA`]): `IF NOT EXISTS` throughout, so it runs unchanged on those
/// databases.
const BASE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO counters (name, value) VALUES ('next_serial', 1);
CREATE TABLE IF NOT EXISTS issued (
    serial INTEGER PRIMARY KEY,
    record TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    state INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS revocations (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    item TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
";

/// The CA's store: its migrations, oldest first. Never edit a released step; add one.
const CA_SCHEMA: schema::Schema = schema::Schema {
    what: "CA store",
    application_id: schema::CA_STORE_ID,
    migrations: &[
        schema::Migration {
            name: "base tables (certificates, revocations, hosts, requests)",
            apply: |conn| {
                conn.execute_batch(BASE_SCHEMA)?;
                conn.execute_batch(hosts::SCHEMA)?;
                conn.execute_batch(requests::SCHEMA)?;
                migrate_issued_state(conn)
            },
        },
        schema::Migration {
            name: "revocation generation counter",
            apply: |conn| {
                conn.execute_batch(
                    "INSERT OR IGNORE INTO counters (name, value)
                     SELECT 'revocation_generation', COUNT(*) FROM revocations;",
                )
            },
        },
        schema::Migration {
            name: "spent workload token ids",
            apply: |conn| conn.execute_batch(tokens::SCHEMA),
        },
        schema::Migration {
            name: "audit index (every chain's records and heads)",
            apply: |conn| conn.execute_batch(audit_index::SCHEMA),
        },
    ],
};

/// The bastion's session index: its migrations, oldest first.
const SESSION_INDEX_SCHEMA: schema::Schema = schema::Schema {
    what: "session index",
    application_id: schema::SESSION_INDEX_ID,
    migrations: &[
        schema::Migration {
            name: "sessions table",
            apply: |conn| conn.execute_batch(sessions::SCHEMA),
        },
        schema::Migration {
            name: "indexes for every list filter (target without case, login, live)",
            apply: |conn| conn.execute_batch(sessions::FILTER_INDEXES),
        },
        schema::Migration {
            name: "audit index (every chain's records and heads)",
            apply: |conn| conn.execute_batch(audit_index::SCHEMA),
        },
    ],
};

/// Where an issued certificate stands (the `issued.state` column).
#[derive(Debug, Clone, Copy)]
enum IssuedState {
    /// Audited and handed out (and every row from before the column existed).
    Released = 0,
    /// Signed and stored; its audit record and hand-out are under way.
    Pending = 1,
    /// Its process died before handing it out; audited as `cert.unreleased`.
    Unreleased = 2,
}

/// Adds `issued.state` to stores created before it existed (their rows were released).
/// Runs inside the migration transaction, so no other process migrates at the same time.
fn migrate_issued_state(conn: &Connection) -> Result<(), rusqlite::Error> {
    let has_state = conn
        .prepare("SELECT 1 FROM pragma_table_info('issued') WHERE name = 'state'")?
        .exists([])?;
    if !has_state {
        conn.execute_batch("ALTER TABLE issued ADD COLUMN state INTEGER NOT NULL DEFAULT 0;")?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS issued_pending ON issued (serial) WHERE state = 1;",
    )
}

/// Creates the database file mode 0600 if it does not exist, and takes group and other
/// permissions off it and its `-wal` and `-shm` files if they have any.
fn private_db_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(crate::fsmode::PRIVATE_FILE)
        .open(path)?;
    for suffix in ["", "-wal", "-shm"] {
        let mut side = path.as_os_str().to_owned();
        side.push(suffix);
        crate::fsmode::tighten(Path::new(&side))?;
    }
    Ok(())
}

impl SqliteStore {
    /// Opens (creating if needed) the CA's store at `path`, upgrading an older one in place.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_schema(path, &CA_SCHEMA)
    }

    /// Opens (creating if needed) the bastion's session index at `path`, upgrading an older
    /// one in place. It holds sessions only: the CA's methods fail on it.
    pub fn open_session_index(path: &Path) -> Result<SqliteStore, StoreError> {
        SqliteStore::open_schema(path, &SESSION_INDEX_SCHEMA)
    }

    fn open_schema(path: &Path, schema: &schema::Schema) -> Result<SqliteStore, StoreError> {
        let fail = |source| StoreError::Sqlite {
            path: path.to_path_buf(),
            source,
        };
        if let Some(parent) = path.parent() {
            let _ = crate::fsmode::create_private_dir_all(parent);
        }
        // SQLite would create the file 0644 (less the umask), and gives its -wal and -shm
        // files the database's mode: create it 0600 first, and tighten older ones.
        private_db_file(path).map_err(|source| StoreError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut conn = Connection::open(path).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(fail)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(fail)?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(fail)?;
        let from = schema::migrate(&mut conn, schema).map_err(|err| match err {
            schema::SchemaError::Sqlite(source) => fail(source),
            schema::SchemaError::Foreign(why) | schema::SchemaError::TooNew(why) => {
                StoreError::Schema {
                    path: path.to_path_buf(),
                    why,
                }
            }
        })?;
        let latest = schema.migrations.len() as u32;
        if from != latest {
            tracing::info!(
                path = %path.display(),
                what = schema.what,
                from,
                to = latest,
                "upgraded the database schema"
            );
        }
        Ok(SqliteStore {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn sqlite(&self, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn corrupt(&self, why: impl ToString) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            why: why.to_string(),
        }
    }

    fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions roll
        // back), so a poisoned lock is safe to keep using.
        let mut conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut conn)
    }

    fn insert_issued(&self, certs: &[IssuedCert], state: IssuedState) -> Result<(), StoreError> {
        let mut rows = Vec::with_capacity(certs.len());
        for cert in certs {
            let serial = i64::try_from(cert.serial).map_err(|e| self.corrupt(e))?;
            rows.push((serial, self.encode(cert)?, cert.issued_at as i64));
        }
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT INTO issued (serial, record, issued_at, state) VALUES (?1, ?2, ?3, ?4)",
                    )
                    .map_err(|e| self.sqlite(e))?;
                for (serial, record, issued_at) in &rows {
                    insert
                        .execute(params![serial, record, issued_at, state as i64])
                        .map_err(|e| self.sqlite(e))?;
                }
            }
            tx.commit().map_err(|e| self.sqlite(e))
        })
    }

    fn generation(&self, conn: &Connection) -> Result<u64, StoreError> {
        let value: i64 = conn
            .prepare_cached("SELECT value FROM counters WHERE name = 'revocation_generation'")
            .and_then(|mut read| read.query_row([], |r| r.get(0)))
            .map_err(|e| self.sqlite(e))?;
        Ok(value.max(0) as u64)
    }

    fn decode<T: for<'de> Deserialize<'de>>(&self, text: &str) -> Result<T, StoreError> {
        serde_json::from_str(text).map_err(|e| self.corrupt(e))
    }

    fn encode<T: Serialize>(&self, value: &T) -> Result<String, StoreError> {
        serde_json::to_string(value).map_err(|e| self.corrupt(e))
    }

    /// Every row's JSON `record` column (the first column of `sql`), decoded. Statements are
    /// prepared once per connection (rusqlite's statement cache): parsing SQL was a visible
    /// share of a certificate's cost in the CA API's profile.
    fn json_records<T: for<'de> Deserialize<'de>>(
        &self,
        conn: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<T>, StoreError> {
        let mut stmt = conn.prepare_cached(sql).map_err(|e| self.sqlite(e))?;
        let texts: Vec<String> = stmt
            .query_map(params, |r| r.get(0))
            .map_err(|e| self.sqlite(e))?
            .collect::<Result<_, _>>()
            .map_err(|e| self.sqlite(e))?;
        texts.iter().map(|t| self.decode(t)).collect()
    }

    /// The one row's JSON `record` column, decoded; `None` when there is no row.
    fn json_record<T: for<'de> Deserialize<'de>>(
        &self,
        conn: &Connection,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Option<T>, StoreError> {
        let text: Option<String> = conn
            .prepare_cached(sql)
            .and_then(|mut read| read.query_row(params, |r| r.get(0)).optional())
            .map_err(|e| self.sqlite(e))?;
        text.map(|t| self.decode(&t)).transpose()
    }
}

impl Store for SqliteStore {
    fn reserve_serials(&self, count: u64) -> Result<Range<u64>, StoreError> {
        let count = i64::try_from(count.max(1)).map_err(|e| self.corrupt(e))?;
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.sqlite(e))?;
            let start: i64 = tx
                .query_row(
                    "SELECT value FROM counters WHERE name = 'next_serial'",
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| self.sqlite(e))?;
            let end = start
                .checked_add(count)
                .ok_or_else(|| self.corrupt("serial numbers exhausted"))?;
            tx.execute(
                "UPDATE counters SET value = ?1 WHERE name = 'next_serial'",
                params![end],
            )
            .map_err(|e| self.sqlite(e))?;
            tx.commit().map_err(|e| self.sqlite(e))?;
            Ok(start as u64..end as u64)
        })
    }

    fn record_issued_batch(&self, certs: &[IssuedCert]) -> Result<(), StoreError> {
        self.insert_issued(certs, IssuedState::Released)
    }

    fn record_issued_pending(&self, certs: &[IssuedCert]) -> Result<(), StoreError> {
        self.insert_issued(certs, IssuedState::Pending)
    }

    fn settle_issued(&self, serials: &[u64], released: bool) -> Result<(), StoreError> {
        let state = if released {
            IssuedState::Released
        } else {
            IssuedState::Unreleased
        };
        let serials = serials
            .iter()
            .map(|s| i64::try_from(*s).map_err(|e| self.corrupt(e)))
            .collect::<Result<Vec<_>, _>>()?;
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
            {
                let mut update = tx
                    .prepare_cached("UPDATE issued SET state = ?1 WHERE serial = ?2")
                    .map_err(|e| self.sqlite(e))?;
                for serial in &serials {
                    update
                        .execute(params![state as i64, serial])
                        .map_err(|e| self.sqlite(e))?;
                }
            }
            tx.commit().map_err(|e| self.sqlite(e))
        })
    }

    fn pending_issued(&self) -> Result<Vec<IssuedCert>, StoreError> {
        self.with_conn(|conn| {
            let sql = "SELECT record FROM issued WHERE state = ?1 ORDER BY serial";
            self.json_records(conn, sql, params![IssuedState::Pending as i64])
        })
    }

    fn issued(&self, serial: u64) -> Result<Option<IssuedCert>, StoreError> {
        let Ok(serial) = i64::try_from(serial) else {
            return Ok(None);
        };
        self.with_conn(|conn| {
            self.json_record(
                conn,
                "SELECT record FROM issued WHERE serial = ?1",
                params![serial],
            )
        })
    }

    fn list_issued(&self, limit: usize) -> Result<Vec<IssuedCert>, StoreError> {
        self.with_conn(|conn| {
            let sql = "SELECT record FROM issued ORDER BY serial DESC LIMIT ?1";
            self.json_records(conn, sql, params![limit as i64])
        })
    }

    fn list_break_glass(&self, limit: usize) -> Result<Vec<IssuedCert>, StoreError> {
        self.with_conn(|conn| {
            let sql = "SELECT record FROM issued \
                       WHERE json_extract(record, '$.details.break_glass') = 1 \
                       ORDER BY serial DESC LIMIT ?1";
            self.json_records(conn, sql, params![limit as i64])
        })
    }

    fn revoke(&self, revocation: &Revocation) -> Result<bool, StoreError> {
        let item = self.encode(&revocation.item)?;
        let record = self.encode(revocation)?;
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.sqlite(e))?;
            let changed = tx
                .execute(
                    "INSERT OR IGNORE INTO revocations (item, record) VALUES (?1, ?2)",
                    params![item, record],
                )
                .map_err(|e| self.sqlite(e))?;
            if changed == 1 {
                // Same transaction: a reader never sees the revocation without the new
                // generation, nor the other way round.
                tx.execute(
                    "UPDATE counters SET value = value + 1 WHERE name = 'revocation_generation'",
                    [],
                )
                .map_err(|e| self.sqlite(e))?;
            }
            tx.commit().map_err(|e| self.sqlite(e))?;
            Ok(changed == 1)
        })
    }

    fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.with_conn(|conn| {
            self.json_records(conn, "SELECT record FROM revocations ORDER BY id", [])
        })
    }

    fn revocation_generation(&self) -> Result<u64, StoreError> {
        self.with_conn(|conn| self.generation(conn))
    }

    fn revocations_since(&self, cursor: u64) -> Result<RevocationPage, StoreError> {
        let after = i64::try_from(cursor).unwrap_or(i64::MAX);
        self.with_conn(|conn| {
            // One read transaction: the rows and the generation are of the same moment.
            let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
            let generation = self.generation(&tx)?;
            let mut stmt = tx
                .prepare("SELECT id, record FROM revocations WHERE id > ?1 ORDER BY id")
                .map_err(|e| self.sqlite(e))?;
            let rows: Vec<(i64, String)> = stmt
                .query_map(params![after], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(|e| self.sqlite(e))?
                .collect::<Result<_, _>>()
                .map_err(|e| self.sqlite(e))?;
            let mut page = RevocationPage {
                revocations: Vec::with_capacity(rows.len()),
                cursor,
                generation,
            };
            for (id, record) in rows {
                page.revocations.push(self.decode(&record)?);
                page.cursor = id.max(0) as u64;
            }
            Ok(page)
        })
    }

    fn ca_keys(&self) -> Result<Option<CaKeyFingerprints>, StoreError> {
        self.with_conn(|conn| {
            self.json_record(conn, "SELECT value FROM meta WHERE name = 'ca_keys'", [])
        })
    }

    fn record_ca_keys(&self, keys: &CaKeyFingerprints) -> Result<CaKeyFingerprints, StoreError> {
        let value = self.encode(keys)?;
        self.with_conn(|conn| {
            conn.execute(
                "INSERT OR IGNORE INTO meta (name, value) VALUES ('ca_keys', ?1)",
                params![value],
            )
            .map_err(|e| self.sqlite(e))?;
            let recorded: CaKeyFingerprints = self
                .json_record(conn, "SELECT value FROM meta WHERE name = 'ca_keys'", [])?
                .ok_or_else(|| self.corrupt("the CA keys record vanished"))?;
            // A store from before the target CA: record it once, next to the same user and
            // host CA (compare-and-set on the old value, so two upgrading processes agree).
            if recorded.target.is_none()
                && keys.target.is_some()
                && recorded.user == keys.user
                && recorded.host == keys.host
            {
                let old = self.encode(&recorded)?;
                conn.execute(
                    "UPDATE meta SET value = ?1 WHERE name = 'ca_keys' AND value = ?2",
                    params![value, old],
                )
                .map_err(|e| self.sqlite(e))?;
                return self
                    .json_record(conn, "SELECT value FROM meta WHERE name = 'ca_keys'", [])?
                    .ok_or_else(|| self.corrupt("the CA keys record vanished"));
            }
            Ok(recorded)
        })
    }

    fn issued_count(&self) -> Result<u64, StoreError> {
        self.with_conn(|conn| {
            let count: i64 = conn
                .query_row("SELECT COUNT(*) FROM issued", [], |r| r.get(0))
                .map_err(|e| self.sqlite(e))?;
            Ok(count.max(0) as u64)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    #[test]
    fn the_target_ca_is_recorded_once_next_to_the_same_user_and_host_ca() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        let keys = |user: &str, target: Option<&str>| CaKeyFingerprints {
            user: user.into(),
            host: "h".into(),
            target: target.map(str::to_string),
        };
        // As a store from before the target CA recorded it.
        assert_eq!(
            store.record_ca_keys(&keys("u", None)).unwrap(),
            keys("u", None)
        );
        // Upgrade: recorded once.
        assert_eq!(
            store.record_ca_keys(&keys("u", Some("t"))).unwrap(),
            keys("u", Some("t"))
        );
        // Never replaced: another target CA, or the same next to another user CA.
        assert_eq!(
            store.record_ca_keys(&keys("u", Some("t2"))).unwrap(),
            keys("u", Some("t"))
        );
        let other = SqliteStore::open(&dir.path().join("other.db")).unwrap();
        other.record_ca_keys(&keys("u", None)).unwrap();
        assert_eq!(
            other.record_ca_keys(&keys("x", Some("t"))).unwrap(),
            keys("u", None)
        );
    }

    fn issued(serial: u64) -> IssuedCert {
        IssuedCert {
            serial,
            cert_type: "user".into(),
            key_id: "alice".into(),
            principals: vec!["alice".into()],
            valid_after: 1,
            valid_before: 2,
            requested_by: "alice".into(),
            reason: Some("INC-1".into()),
            details: serde_json::json!({"roles": ["dev"]}),
            subject_fingerprint: "SHA256:x".into(),
            certificate: "ssh-ed25519-cert-v01@openssh.com AAAA".into(),
            issued_at: 3,
        }
    }

    #[test]
    fn serials_are_unique_and_increasing_across_threads_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let store = Arc::new(SqliteStore::open(&path).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    (0..50)
                        .map(|_| store.reserve_serials(1).unwrap().start)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = HashSet::new();
        for t in threads {
            for serial in t.join().unwrap() {
                assert!(all.insert(serial), "serial {serial} handed out twice");
            }
        }
        assert_eq!(all.len(), 400);
        let max = *all.iter().max().unwrap();
        drop(store);
        // A second "process" (another connection) continues after the highest.
        let other = SqliteStore::open(&path).unwrap();
        let block = other.reserve_serials(100).unwrap();
        assert!(block.start > max);
        assert_eq!(block.end - block.start, 100);
        assert!(other.reserve_serials(1).unwrap().start >= block.end);
    }

    #[test]
    fn issued_certs_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        store.record_issued(&issued(7)).unwrap();
        store.record_issued(&issued(9)).unwrap();
        assert_eq!(store.issued(7).unwrap(), Some(issued(7)));
        assert_eq!(store.issued(8).unwrap(), None);
        assert!(
            store.record_issued(&issued(7)).is_err(),
            "a serial is recorded once"
        );
        let serials: Vec<u64> = store
            .list_issued(10)
            .unwrap()
            .iter()
            .map(|c| c.serial)
            .collect();
        assert_eq!(serials, [9, 7]);
    }

    #[test]
    fn revocations_are_deduplicated_and_ordered() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        let rev = |item| Revocation {
            item,
            reason: None,
            revoked_by: "operator".into(),
            revoked_at: 5,
        };
        assert!(store.revoke(&rev(Revoked::Serial(3))).unwrap());
        assert!(store.revoke(&rev(Revoked::KeyId("bob".into()))).unwrap());
        assert!(!store.revoke(&rev(Revoked::Serial(3))).unwrap());
        let items: Vec<Revoked> = store
            .revocations()
            .unwrap()
            .into_iter()
            .map(|r| r.item)
            .collect();
        assert_eq!(items, [Revoked::Serial(3), Revoked::KeyId("bob".into())]);
    }

    /// Every table as releases before versioned schemas created them, in every database (the
    /// CA's store and the bastion's index alike), copied from that code.
    const LEGACY_SCHEMA: &str = "
        CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
        INSERT OR IGNORE INTO counters (name, value) VALUES ('next_serial', 1);
        CREATE TABLE IF NOT EXISTS issued (
            serial INTEGER PRIMARY KEY, record TEXT NOT NULL, issued_at INTEGER NOT NULL);
        CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS revocations (
            id INTEGER PRIMARY KEY AUTOINCREMENT, item TEXT NOT NULL UNIQUE, record TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS hosts (name TEXT PRIMARY KEY, record TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS requests (
            id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, record TEXT NOT NULL);
        CREATE TABLE IF NOT EXISTS sessions (
            id TEXT PRIMARY KEY, user TEXT NOT NULL, key_id TEXT NOT NULL,
            cert_serial INTEGER NOT NULL, client_addr TEXT NOT NULL, target TEXT NOT NULL,
            login TEXT NOT NULL, started_at INTEGER NOT NULL, ended_at INTEGER,
            bytes_in INTEGER NOT NULL DEFAULT 0, bytes_out INTEGER NOT NULL DEFAULT 0,
            exit_status INTEGER, end_reason TEXT, recording TEXT NOT NULL);
        CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_at);
    ";

    #[test]
    fn a_store_from_before_schema_versions_upgrades_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(LEGACY_SCHEMA).unwrap();
            old.execute(
                "INSERT INTO issued (serial, record, issued_at) VALUES (5, ?1, 3)",
                params![serde_json::to_string(&issued(5)).unwrap()],
            )
            .unwrap();
            old.execute(
                "UPDATE counters SET value = 6 WHERE name = 'next_serial'",
                [],
            )
            .unwrap();
            for item in [Revoked::Serial(5), Revoked::KeyId("bob".into())] {
                let rev = Revocation {
                    item: item.clone(),
                    reason: Some("old".into()),
                    revoked_by: "operator".into(),
                    revoked_at: 4,
                };
                old.execute(
                    "INSERT INTO revocations (item, record) VALUES (?1, ?2)",
                    params![
                        serde_json::to_string(&item).unwrap(),
                        serde_json::to_string(&rev).unwrap()
                    ],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.issued(5).unwrap(), Some(issued(5)));
        assert!(
            store.pending_issued().unwrap().is_empty(),
            "old rows were released"
        );
        assert_eq!(store.reserve_serials(1).unwrap().start, 6);
        assert_eq!(store.revocations().unwrap().len(), 2);
        assert_eq!(store.revocation_generation().unwrap(), 2);
        let page = store.revocations_since(0).unwrap();
        assert_eq!((page.revocations.len(), page.generation), (2, 2));
        let rev = Revocation {
            item: Revoked::Serial(9),
            reason: None,
            revoked_by: "operator".into(),
            revoked_at: 6,
        };
        assert!(store.revoke(&rev).unwrap());
        assert_eq!(store.revocation_generation().unwrap(), 3);
        let page = store.revocations_since(page.cursor).unwrap();
        assert_eq!(page.revocations, [rev]);
        drop(store);
        // Opening again (already current) changes nothing.
        let again = SqliteStore::open(&path).unwrap();
        assert_eq!(again.revocation_generation().unwrap(), 3);
        let version: u32 = again
            .with_conn(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))))
            .unwrap()
            .unwrap();
        assert_eq!(version as usize, CA_SCHEMA.migrations.len());
    }

    #[test]
    fn a_session_index_from_before_schema_versions_keeps_its_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sessions.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(LEGACY_SCHEMA).unwrap();
            old.execute(
                "INSERT INTO sessions (id, user, key_id, cert_serial, client_addr, target, \
                 login, started_at, recording) VALUES ('s1', 'alice', 'alice', 3, \
                 '127.0.0.1:5', 'web01', 'root', 10, 'rec/s1')",
                [],
            )
            .unwrap();
        }
        let index = SqliteStore::open_session_index(&path).unwrap();
        let found = index.session("s1").unwrap().unwrap();
        assert_eq!(found.target, "web01");
        let version: u32 = index
            .with_conn(|c| Ok(c.pragma_query_value(None, "user_version", |r| r.get(0))))
            .unwrap()
            .unwrap();
        assert_eq!(version as usize, SESSION_INDEX_SCHEMA.migrations.len());
        // The list finds it through the indexes the second step made.
        let by_target = index
            .list_sessions(&SessionFilter {
                target: Some("WEB01".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(by_target.len(), 1);
        drop(index);
        // Now it is a session index: the CA refuses it, with a clear reason.
        let err = SqliteStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("session index, not a CA store"), "{err}");
    }

    #[test]
    fn each_program_refuses_the_other_ones_database_and_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.db");
        let index = dir.path().join("sessions.db");
        drop(SqliteStore::open(&store).unwrap());
        drop(SqliteStore::open_session_index(&index).unwrap());
        let err = SqliteStore::open_session_index(&store)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("store.db: this is a CA store, not a session index"),
            "{err}"
        );
        let err = SqliteStore::open(&index).err().unwrap().to_string();
        assert!(
            err.contains("this is a session index, not a CA store"),
            "{err}"
        );
        {
            let conn = Connection::open(&store).unwrap();
            conn.pragma_update(None, "user_version", 99).unwrap();
        }
        let err = SqliteStore::open(&store).err().unwrap().to_string();
        assert!(err.contains("schema version 99 is newer"), "{err}");
        let other = dir.path().join("other.db");
        {
            let conn = Connection::open(&other).unwrap();
            conn.execute_batch("CREATE TABLE t (x); PRAGMA user_version = 3;")
                .unwrap();
        }
        let err = SqliteStore::open(&other).err().unwrap().to_string();
        assert!(err.contains("not a jitssh database"), "{err}");
    }

    #[test]
    fn garbage_database_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        std::fs::write(&path, vec![0x55u8; 8192]).unwrap();
        let err = SqliteStore::open(&path).err().unwrap().to_string();
        assert!(err.contains("s.db"), "{err}");
    }
}
