//! Which tables a database holds, and how an older database is brought up to date.
//!
//! Each program has its own database and its own schema: the CA's store (`store.db`:
//! certificates, revocations, hosts, requests) and the bastion's session index
//! (`sessions.db`). A database says which it is in SQLite's `application_id` header field and
//! how far it is migrated in `user_version`; [`migrate`] runs the missing steps, in order, in
//! one transaction that other processes wait for, so two processes opening the same old
//! database at once upgrade it exactly once.
//!
//! Databases made before versions existed (both fields 0) held every table of both programs,
//! created with `CREATE TABLE IF NOT EXISTS`; the first migration of each schema is written to
//! run on them unchanged, so they upgrade in place and keep their rows.

use rusqlite::{Connection, TransactionBehavior};

/// One step of a schema's history. Steps are never edited once released: a change is a new
/// step.
pub(super) struct Migration {
    /// What the step does, for messages.
    pub name: &'static str,
    /// The step itself, run inside the migration transaction.
    pub apply: fn(&Connection) -> rusqlite::Result<()>,
}

/// A program's schema: the tag its databases carry and its migrations, in order. The
/// database's `user_version` is the number of steps applied.
pub(super) struct Schema {
    /// What the database is, for messages ("CA store", "session index").
    pub what: &'static str,
    /// SQLite `application_id` of this program's databases.
    pub application_id: i32,
    /// Every step, oldest first.
    pub migrations: &'static [Migration],
}

/// Why a database cannot be used by this program.
#[derive(Debug)]
pub(super) enum SchemaError {
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// The database belongs to another program, or is not one of ours.
    Foreign(String),
    /// The database was migrated by a newer version of this program.
    TooNew(String),
}

impl From<rusqlite::Error> for SchemaError {
    fn from(err: rusqlite::Error) -> SchemaError {
        SchemaError::Sqlite(err)
    }
}

/// The other program's tags, to name them in refusals.
const KNOWN: &[(i32, &str)] = &[
    (CA_STORE_ID, "CA store"),
    (SESSION_INDEX_ID, "session index"),
];

/// `application_id` of the CA's store: "JITC".
pub(super) const CA_STORE_ID: i32 = 0x4a49_5443;
/// `application_id` of the bastion's session index: "JITS".
pub(super) const SESSION_INDEX_ID: i32 = 0x4a49_5453;

/// Brings the database on `conn` up to `schema`'s latest version, or says why it cannot be.
/// Returns the version the database was at before (0 for a new or pre-versioning one).
pub(super) fn migrate(conn: &mut Connection, schema: &Schema) -> Result<u32, SchemaError> {
    let latest = schema.migrations.len() as u32;
    // Cheap check first: a database already up to date needs no write lock.
    if read_tags(conn)? == (schema.application_id, latest) {
        return Ok(latest);
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let (app_id, version) = read_tags(&tx)?;
    if app_id != schema.application_id && (app_id != 0 || version != 0) {
        let other = KNOWN
            .iter()
            .find(|(id, _)| *id == app_id)
            .map(|(_, what)| format!("a {what}"))
            .unwrap_or_else(|| "not a jitssh database".to_string());
        return Err(SchemaError::Foreign(format!(
            "this is {other}, not a {}",
            schema.what
        )));
    }
    if version > latest {
        return Err(SchemaError::TooNew(format!(
            "{} schema version {version} is newer than this program knows ({latest}): \
             it was upgraded by a newer release; run that release",
            schema.what
        )));
    }
    for (index, step) in schema.migrations.iter().enumerate().skip(version as usize) {
        (step.apply)(&tx)?;
        tracing::debug!(
            what = schema.what,
            step = index + 1,
            name = step.name,
            "migrated"
        );
    }
    tx.pragma_update(None, "application_id", schema.application_id)?;
    tx.pragma_update(None, "user_version", latest)?;
    tx.commit()?;
    Ok(version)
}

fn read_tags(conn: &Connection) -> rusqlite::Result<(i32, u32)> {
    let app_id: i32 = conn.pragma_query_value(None, "application_id", |r| r.get(0))?;
    let version: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    Ok((app_id, version))
}
