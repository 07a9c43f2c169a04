//! The bastion's session index ([`SessionIndex`]) on PostgreSQL, for several bastions that
//! auditors search in one place. Columns as in the SQLite index; every filter has an index.

use deadpool_postgres::Pool;
use jitssh_core::store::{SessionEnd, SessionFilter, SessionIndex, SessionRecord, StoreError};
use tokio_postgres::types::ToSql;

use crate::schema::{Migration, Schema};
use crate::{PgError, PgStore, from_sql, to_sql};

/// The session index's migrations, oldest first.
pub(crate) const SCHEMA: Schema = Schema {
    what: "session index",
    migrations: &[
        Migration {
            name: "sessions table and an index for every list filter",
            sql: "
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    \"user\" TEXT NOT NULL,
    key_id TEXT NOT NULL,
    cert_serial BIGINT NOT NULL,
    client_addr TEXT NOT NULL,
    target TEXT NOT NULL,
    login TEXT NOT NULL,
    started_at BIGINT NOT NULL,
    ended_at BIGINT,
    bytes_in BIGINT NOT NULL DEFAULT 0,
    bytes_out BIGINT NOT NULL DEFAULT 0,
    exit_status BIGINT,
    end_reason TEXT,
    recording TEXT NOT NULL
);
CREATE INDEX sessions_started ON sessions (started_at);
CREATE INDEX sessions_user ON sessions (\"user\", started_at);
CREATE INDEX sessions_target_lower ON sessions (lower(target), started_at);
CREATE INDEX sessions_login ON sessions (login, started_at);
CREATE INDEX sessions_open ON sessions (started_at) WHERE ended_at IS NULL;
",
        },
        Migration {
            name: "audit index (every chain's records and heads)",
            sql: crate::audit_index::SQL,
        },
    ],
};

const COLUMNS: &str = "id, \"user\", key_id, cert_serial, client_addr, target, login, \
                       started_at, ended_at, bytes_in, bytes_out, exit_status, end_reason, \
                       recording";

fn record(row: &tokio_postgres::Row) -> SessionRecord {
    SessionRecord {
        id: row.get(0),
        user: row.get(1),
        key_id: row.get(2),
        cert_serial: from_sql(row.get(3)),
        client_addr: row.get(4),
        target: row.get(5),
        login: row.get(6),
        started_at: from_sql(row.get(7)),
        ended_at: row.get::<_, Option<i64>>(8).map(from_sql),
        bytes_in: from_sql(row.get(9)),
        bytes_out: from_sql(row.get(10)),
        exit_status: row
            .get::<_, Option<i64>>(11)
            .map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
        end_reason: row.get(12),
        recording: row.get(13),
    }
}

async fn conn(pool: &Pool) -> Result<deadpool_postgres::Object, PgError> {
    pool.get().await.map_err(PgError::pool)
}

type Param = Box<dyn ToSql + Sync + Send>;

/// The statement and parameters of a list: only the set filters' conditions, every value
/// from the user a bound parameter.
fn list_query(f: &SessionFilter) -> (String, Vec<Param>) {
    let mut conditions: Vec<String> = Vec::new();
    let mut values: Vec<Param> = Vec::new();
    let mut bind = |condition: &str, value: Param| {
        values.push(value);
        conditions.push(condition.replace('?', &format!("${}", values.len())));
    };
    if let Some(user) = &f.user {
        bind("\"user\" = ?", Box::new(user.clone()));
    }
    if let Some(target) = &f.target {
        bind("lower(target) = lower(?)", Box::new(target.clone()));
    }
    if let Some(login) = &f.login {
        bind("login = ?", Box::new(login.clone()));
    }
    if let Some(since) = f.since {
        bind(
            "(ended_at IS NULL OR ended_at >= ?)",
            Box::new(to_sql(since)),
        );
    }
    if let Some(until) = f.until {
        bind("started_at <= ?", Box::new(to_sql(until)));
    }
    match f.active {
        Some(true) => conditions.push("ended_at IS NULL".into()),
        Some(false) => conditions.push("ended_at IS NOT NULL".into()),
        None => {}
    }
    let limit: Option<i64> = f.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX));
    values.push(Box::new(limit));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions {filter} ORDER BY started_at DESC, id DESC LIMIT ${}",
        values.len()
    );
    (sql, values)
}

impl SessionIndex for PgStore {
    fn insert_session(&self, r: &SessionRecord) -> Result<(), StoreError> {
        let r = r.clone();
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            client
                .execute(
                    &format!(
                        "INSERT INTO sessions ({COLUMNS}) VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                    ),
                    &[
                        &r.id,
                        &r.user,
                        &r.key_id,
                        &to_sql(r.cert_serial),
                        &r.client_addr,
                        &r.target,
                        &r.login,
                        &to_sql(r.started_at),
                        &r.ended_at.map(to_sql),
                        &to_sql(r.bytes_in),
                        &to_sql(r.bytes_out),
                        &r.exit_status.map(i64::from),
                        &r.end_reason,
                        &r.recording,
                    ],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(())
        })
    }

    fn end_session(&self, id: &str, end: &SessionEnd) -> Result<bool, StoreError> {
        let id = id.to_string();
        let end = end.clone();
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            let changed = client
                .execute(
                    "UPDATE sessions SET ended_at = $2, bytes_in = $3, bytes_out = $4, \
                     exit_status = $5, end_reason = $6 WHERE id = $1 AND ended_at IS NULL",
                    &[
                        &id,
                        &to_sql(end.ended_at),
                        &to_sql(end.bytes_in),
                        &to_sql(end.bytes_out),
                        &end.exit_status.map(i64::from),
                        &end.end_reason,
                    ],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(changed == 1)
        })
    }

    fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let id = id.to_string();
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            let row = client
                .query_opt(
                    &format!("SELECT {COLUMNS} FROM sessions WHERE id = $1"),
                    &[&id],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(row.as_ref().map(record))
        })
    }

    fn list_sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRecord>, StoreError> {
        let (sql, values) = list_query(f);
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            let params: Vec<&(dyn ToSql + Sync)> = values
                .iter()
                .map(|v| v.as_ref() as &(dyn ToSql + Sync))
                .collect();
            let rows = client
                .query(&sql, &params)
                .await
                .map_err(PgError::statement)?;
            Ok(rows.iter().map(record).collect())
        })
    }
}
