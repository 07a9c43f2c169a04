//! Versioned schemas on PostgreSQL, as core/src/store/schema.rs does for SQLite.
//!
//! One database may hold both programs' tables (the CA store and the session index); each
//! schema's version is a row of `jitssh_schema`. Migrations run in one transaction under an
//! advisory lock, so several instances starting at once migrate exactly once, and a database
//! migrated by a newer release is refused rather than written to.

use deadpool_postgres::Object;

use crate::PgError;

/// One step; never edited once released (a change is a new step).
pub(crate) struct Migration {
    /// What it does, for messages.
    pub name: &'static str,
    /// The statements.
    pub sql: &'static str,
}

/// A program's schema.
pub(crate) struct Schema {
    /// For messages and the `jitssh_schema` row ("CA store", "session index").
    pub what: &'static str,
    /// Every step, oldest first; the version is the number applied.
    pub migrations: &'static [Migration],
}

/// What opening did to the schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migrated {
    /// "CA store" or "session index".
    pub what: &'static str,
    /// Version before.
    pub from: u32,
    /// Version after (this program's latest).
    pub to: u32,
    /// Names of the steps applied, in order.
    pub applied: Vec<&'static str>,
}

/// Key of the advisory lock migrations hold ("JITS" "MIGR").
const LOCK: i64 = 0x4a49_5453_4d49_4752;

pub(crate) async fn migrate(client: &mut Object, schema: &Schema) -> Result<Migrated, PgError> {
    let latest = schema.migrations.len() as u32;
    let tx = client.transaction().await.map_err(PgError::statement)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .await
        .map_err(PgError::statement)?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS jitssh_schema (what TEXT PRIMARY KEY, version INTEGER NOT NULL)",
    )
    .await
    .map_err(PgError::statement)?;
    let row = tx
        .query_opt(
            "SELECT version FROM jitssh_schema WHERE what = $1",
            &[&schema.what],
        )
        .await
        .map_err(PgError::statement)?;
    let from = match row {
        Some(row) => u32::try_from(row.get::<_, i32>(0))
            .map_err(|_| PgError::Schema(format!("{} schema version is negative", schema.what)))?,
        None => 0,
    };
    if from > latest {
        return Err(PgError::Schema(format!(
            "{} schema version {from} is newer than this program knows ({latest}): it was \
             upgraded by a newer release; run that release",
            schema.what
        )));
    }
    let mut applied = Vec::new();
    for step in schema.migrations.iter().skip(from as usize) {
        tx.batch_execute(step.sql)
            .await
            .map_err(PgError::statement)?;
        applied.push(step.name);
    }
    if from != latest {
        tx.execute(
            "INSERT INTO jitssh_schema (what, version) VALUES ($1, $2) \
             ON CONFLICT (what) DO UPDATE SET version = EXCLUDED.version",
            &[&schema.what, &(latest as i32)],
        )
        .await
        .map_err(PgError::statement)?;
    }
    tx.commit().await.map_err(PgError::statement)?;
    Ok(Migrated {
        what: schema.what,
        from,
        to: latest,
        applied,
    })
}
