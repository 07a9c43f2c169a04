//! The session index: who went where through the bastion, when, and where the recording is.
//!
//! One row per session, inserted when the session starts (so a crash still leaves a trace of
//! it, with no end time) and completed when it ends. Auditors search it (`sessions list`) and
//! follow `recording` to the files. Columns, not a JSON record, because every filter below is
//! a column and the row is updated in place at the end of the session.

use rusqlite::{OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{SqliteStore, StoreError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    key_id TEXT NOT NULL,
    cert_serial INTEGER NOT NULL,
    client_addr TEXT NOT NULL,
    target TEXT NOT NULL,
    login TEXT NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at INTEGER,
    bytes_in INTEGER NOT NULL DEFAULT 0,
    bytes_out INTEGER NOT NULL DEFAULT 0,
    exit_status INTEGER,
    end_reason TEXT,
    recording TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started_at);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (user, started_at);
CREATE INDEX IF NOT EXISTS sessions_target ON sessions (target, started_at);
";

/// Indexes that let each filter of [`SessionIndex::list_sessions`] find its first page
/// without scanning the table (issue 12's benchmark: a person, target or login with few
/// sessions, or the live ones, took 130-200 ms over 100,000 sessions). Targets are compared
/// without regard to case, so their index is `COLLATE NOCASE` (the first schema's binary one
/// could never serve that comparison, and is dropped).
pub(super) const FILTER_INDEXES: &str = "
DROP INDEX IF EXISTS sessions_target;
CREATE INDEX IF NOT EXISTS sessions_target_nocase ON sessions (target COLLATE NOCASE, started_at);
CREATE INDEX IF NOT EXISTS sessions_login ON sessions (login, started_at);
CREATE INDEX IF NOT EXISTS sessions_open ON sessions (started_at) WHERE ended_at IS NULL;
";

const COLUMNS: &str = "id, user, key_id, cert_serial, client_addr, target, login, started_at, \
                       ended_at, bytes_in, bytes_out, exit_status, end_reason, recording";

/// One session through the bastion, as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id (also the name of its recording directory).
    pub id: String,
    /// The person (from the user certificate's key id or principal).
    pub user: String,
    /// Key id of the user certificate.
    pub key_id: String,
    /// Serial of the user certificate.
    pub cert_serial: u64,
    /// Client address, `ip:port`.
    pub client_addr: String,
    /// Target host name.
    pub target: String,
    /// Remote login on the target.
    pub login: String,
    /// Unix time the session started.
    pub started_at: u64,
    /// Unix time it ended; `None` while active (or if the bastion died mid-session).
    pub ended_at: Option<u64>,
    /// Bytes from the client to the target.
    pub bytes_in: u64,
    /// Bytes from the target to the client.
    pub bytes_out: u64,
    /// Exit status of the (last) remote command or shell, when one was reported.
    pub exit_status: Option<u32>,
    /// Why the session ended (`client closed`, `certificate expired`, ...).
    pub end_reason: Option<String>,
    /// The recording directory.
    pub recording: String,
}

/// What is known when a session ends; completes its [`SessionRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    /// Unix time.
    pub ended_at: u64,
    /// Bytes from the client to the target.
    pub bytes_in: u64,
    /// Bytes from the target to the client.
    pub bytes_out: u64,
    /// Exit status, when one was reported.
    pub exit_status: Option<u32>,
    /// Why it ended.
    pub end_reason: String,
}

/// Which sessions [`SessionIndex::list_sessions`] returns; every set field must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionFilter {
    /// Exactly this person (key ids are compared as issued).
    pub user: Option<String>,
    /// This target, without regard to ASCII case (target names are matched that way when
    /// people log in, so `WEB01` and `web01` are one target).
    pub target: Option<String>,
    /// Exactly this login (Unix login names are case-sensitive: `Root` is not `root`).
    pub login: Option<String>,
    /// Sessions still running at or after this Unix time (ended at or after it, or active),
    /// so a long session that overlaps the window is not missed.
    pub since: Option<u64>,
    /// Sessions started at or before this Unix time.
    pub until: Option<u64>,
    /// `Some(true)`: only sessions without an end; `Some(false)`: only ended ones.
    pub active: Option<bool>,
    /// At most this many (newest first).
    pub limit: Option<usize>,
}

/// Storage of the session index. Declared as a trait so a shared database (PostgreSQL) can
/// take over from SQLite when several bastions share one index.
pub trait SessionIndex: Send + Sync {
    /// Records a session as it starts; an error if the id is already there.
    fn insert_session(&self, record: &SessionRecord) -> Result<(), StoreError>;
    /// Completes a session; `false` if the id is unknown or the session had already ended
    /// (the first end wins, so a late duplicate cannot rewrite history).
    fn end_session(&self, id: &str, end: &SessionEnd) -> Result<bool, StoreError>;
    /// One session by id.
    fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Sessions matching `filter`, newest start first.
    fn list_sessions(&self, filter: &SessionFilter) -> Result<Vec<SessionRecord>, StoreError>;
}

/// SQLite integers are signed 64-bit; serials and counters are stored bit for bit (`as`
/// casts both ways are lossless), so values above `i64::MAX` survive a round trip.
fn to_sql(value: u64) -> i64 {
    value as i64
}

fn from_sql(value: i64) -> u64 {
    value as u64
}

fn record_from_row(row: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    Ok(SessionRecord {
        id: row.get(0)?,
        user: row.get(1)?,
        key_id: row.get(2)?,
        cert_serial: from_sql(row.get(3)?),
        client_addr: row.get(4)?,
        target: row.get(5)?,
        login: row.get(6)?,
        started_at: from_sql(row.get(7)?),
        ended_at: row.get::<_, Option<i64>>(8)?.map(from_sql),
        bytes_in: from_sql(row.get(9)?),
        bytes_out: from_sql(row.get(10)?),
        exit_status: row
            .get::<_, Option<i64>>(11)?
            .map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
        end_reason: row.get(12)?,
        recording: row.get(13)?,
    })
}

impl SessionIndex for SqliteStore {
    fn insert_session(&self, r: &SessionRecord) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            conn.execute(
                &format!(
                    "INSERT INTO sessions ({COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
                ),
                params![
                    r.id,
                    r.user,
                    r.key_id,
                    to_sql(r.cert_serial),
                    r.client_addr,
                    r.target,
                    r.login,
                    to_sql(r.started_at),
                    r.ended_at.map(to_sql),
                    to_sql(r.bytes_in),
                    to_sql(r.bytes_out),
                    r.exit_status.map(i64::from),
                    r.end_reason,
                    r.recording,
                ],
            )
            .map_err(|e| self.sqlite(e))?;
            Ok(())
        })
    }

    fn end_session(&self, id: &str, end: &SessionEnd) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let changed = conn
                .execute(
                    "UPDATE sessions SET ended_at = ?2, bytes_in = ?3, bytes_out = ?4, \
                     exit_status = ?5, end_reason = ?6 WHERE id = ?1 AND ended_at IS NULL",
                    params![
                        id,
                        to_sql(end.ended_at),
                        to_sql(end.bytes_in),
                        to_sql(end.bytes_out),
                        end.exit_status.map(i64::from),
                        end.end_reason,
                    ],
                )
                .map_err(|e| self.sqlite(e))?;
            Ok(changed == 1)
        })
    }

    fn session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.with_conn(|conn| {
            conn.query_row(
                &format!("SELECT {COLUMNS} FROM sessions WHERE id = ?1"),
                params![id],
                record_from_row,
            )
            .optional()
            .map_err(|e| self.sqlite(e))
        })
    }

    fn list_sessions(&self, f: &SessionFilter) -> Result<Vec<SessionRecord>, StoreError> {
        let (sql, values) = list_query(f);
        self.with_conn(|conn| {
            let mut stmt = conn.prepare_cached(&sql).map_err(|e| self.sqlite(e))?;
            let rows = stmt
                .query_map(rusqlite::params_from_iter(values), record_from_row)
                .map_err(|e| self.sqlite(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
        })
    }
}

/// The statement and parameters of [`SessionIndex::list_sessions`]. Only the conditions of
/// the filters that are set are in the statement, so SQLite can use the index of each (a
/// `?1 IS NULL OR user = ?1` form cannot use one and scanned the whole table). The SQL is
/// made of fixed fragments only: every value from the user is a bound parameter.
fn list_query(f: &SessionFilter) -> (String, Vec<rusqlite::types::Value>) {
    use rusqlite::types::Value;
    let mut conditions: Vec<&str> = Vec::new();
    let mut values: Vec<Value> = Vec::new();
    let mut bind = |condition: &'static str, value: Value| {
        conditions.push(condition);
        values.push(value);
    };
    if let Some(user) = &f.user {
        bind("user = ?", Value::Text(user.clone()));
    }
    if let Some(target) = &f.target {
        bind("target = ? COLLATE NOCASE", Value::Text(target.clone()));
    }
    if let Some(login) = &f.login {
        bind("login = ?", Value::Text(login.clone()));
    }
    if let Some(since) = f.since {
        bind(
            "(ended_at IS NULL OR ended_at >= ?)",
            Value::Integer(to_sql(since)),
        );
    }
    if let Some(until) = f.until {
        bind("started_at <= ?", Value::Integer(to_sql(until)));
    }
    match f.active {
        Some(true) => conditions.push("ended_at IS NULL"),
        Some(false) => conditions.push("ended_at IS NOT NULL"),
        None => {}
    }
    let limit = f.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    values.push(Value::Integer(limit));
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions {filter} ORDER BY started_at DESC, id DESC LIMIT ?"
    );
    (sql, values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, user: &str, target: &str, started_at: u64) -> SessionRecord {
        SessionRecord {
            id: id.into(),
            user: user.into(),
            key_id: format!("{user}@example"),
            cert_serial: 42,
            client_addr: "192.0.2.7:50000".into(),
            target: target.into(),
            login: "deploy".into(),
            started_at,
            ended_at: None,
            bytes_in: 0,
            bytes_out: 0,
            exit_status: None,
            end_reason: None,
            recording: format!("/rec/{id}"),
        }
    }

    fn end(ended_at: u64) -> SessionEnd {
        SessionEnd {
            ended_at,
            bytes_in: 10,
            bytes_out: 2000,
            exit_status: Some(3),
            end_reason: "client closed".into(),
        }
    }

    fn ids(list: Vec<SessionRecord>) -> Vec<String> {
        list.into_iter().map(|r| r.id).collect()
    }

    fn store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_session_index(&dir.path().join("s.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn insert_end_and_get_round_trip() {
        let (_dir, store) = store();
        let mut r = record("s1", "alice", "web01", 100);
        r.cert_serial = u64::MAX; // survives the signed SQLite integer
        store.insert_session(&r).unwrap();
        assert_eq!(store.session("s1").unwrap(), Some(r.clone()));
        assert!(store.insert_session(&r).is_err(), "ids are unique");

        assert!(store.end_session("s1", &end(160)).unwrap());
        assert!(
            !store.end_session("s1", &end(999)).unwrap(),
            "the first end wins"
        );
        assert!(!store.end_session("nope", &end(1)).unwrap());
        let got = store.session("s1").unwrap().unwrap();
        assert_eq!(got.ended_at, Some(160));
        assert_eq!((got.bytes_in, got.bytes_out), (10, 2000));
        assert_eq!(got.exit_status, Some(3));
        assert_eq!(got.end_reason.as_deref(), Some("client closed"));
        assert_eq!(got.cert_serial, u64::MAX);
        assert_eq!(store.session("s2").unwrap(), None);
    }

    #[test]
    fn list_filters_and_orders_newest_first() {
        let (_dir, store) = store();
        store
            .insert_session(&record("a", "alice", "web01", 100))
            .unwrap();
        store
            .insert_session(&record("b", "bob", "web01", 200))
            .unwrap();
        store
            .insert_session(&record("c", "alice", "db01", 300))
            .unwrap();
        store
            .insert_session(&record("d", "alice", "web01", 400))
            .unwrap();
        store.end_session("a", &end(150)).unwrap();
        store.end_session("c", &end(350)).unwrap();

        let all = |f: SessionFilter| ids(store.list_sessions(&f).unwrap());
        assert_eq!(all(SessionFilter::default()), ["d", "c", "b", "a"]);
        let alice = || SessionFilter {
            user: Some("alice".into()),
            ..Default::default()
        };
        assert_eq!(all(alice()), ["d", "c", "a"]);
        assert_eq!(
            all(SessionFilter {
                target: Some("web01".into()),
                ..alice()
            }),
            ["d", "a"]
        );
        assert_eq!(
            all(SessionFilter {
                login: Some("root".into()),
                ..Default::default()
            }),
            Vec::<String>::new()
        );
        // Active: no end yet.
        assert_eq!(
            all(SessionFilter {
                active: Some(true),
                ..Default::default()
            }),
            ["d", "b"]
        );
        assert_eq!(
            all(SessionFilter {
                active: Some(false),
                ..Default::default()
            }),
            ["c", "a"]
        );
        // Window 160..=320 overlaps b (active since 200) and c (300..350), not a (ended 150)
        // nor d (started 400).
        assert_eq!(
            all(SessionFilter {
                since: Some(160),
                until: Some(320),
                ..Default::default()
            }),
            ["c", "b"]
        );
        assert_eq!(
            all(SessionFilter {
                limit: Some(2),
                ..Default::default()
            }),
            ["d", "c"]
        );
    }

    /// Every filter of the list finds its rows through an index, not by reading the table
    /// newest first until enough match (130-200 ms over 100,000 sessions for a person or
    /// target with few sessions, or the live ones: issue 12's benchmark).
    #[test]
    fn each_list_filter_searches_an_index() {
        let (_dir, store) = store();
        let text = |s: &str| Some(s.to_owned());
        let cases = [
            (
                "user",
                "SEARCH sessions USING INDEX sessions_user ",
                SessionFilter {
                    user: text("alice"),
                    ..Default::default()
                },
            ),
            (
                "target",
                "SEARCH sessions USING INDEX sessions_target_nocase ",
                SessionFilter {
                    target: text("WEB01"),
                    ..Default::default()
                },
            ),
            (
                "login",
                "SEARCH sessions USING INDEX sessions_login ",
                SessionFilter {
                    login: text("root"),
                    ..Default::default()
                },
            ),
            (
                "active",
                "sessions USING INDEX sessions_open",
                SessionFilter {
                    active: Some(true),
                    ..Default::default()
                },
            ),
            (
                "until",
                "SEARCH sessions USING INDEX sessions_started ",
                SessionFilter {
                    until: Some(100),
                    since: Some(50),
                    ..Default::default()
                },
            ),
        ];
        // (The live ones' index holds only them: reading it whole is the search.)
        for (name, index, filter) in cases {
            let (sql, values) = list_query(&SessionFilter {
                limit: Some(50),
                ..filter
            });
            let plan: Vec<String> = store
                .with_conn(|conn| {
                    let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
                    let rows = stmt
                        .query_map(rusqlite::params_from_iter(values), |r| {
                            r.get::<_, String>(3)
                        })
                        .unwrap();
                    Ok(rows.map(Result::unwrap).collect())
                })
                .unwrap();
            let plan = plan.join("; ");
            assert!(plan.contains(index), "{name}: {plan}");
        }
    }

    #[test]
    fn targets_compare_without_regard_to_case_users_and_logins_exactly() {
        let (_dir, store) = store();
        store
            .insert_session(&record("a", "alice", "web01", 100))
            .unwrap();
        // A row written before targets were recorded as configured: the typed case.
        store
            .insert_session(&record("e", "carol", "WEB01", 50))
            .unwrap();
        let all = |f: SessionFilter| ids(store.list_sessions(&f).unwrap());
        assert_eq!(
            all(SessionFilter {
                target: Some("Web01".into()),
                ..Default::default()
            }),
            ["a", "e"]
        );
        assert_eq!(
            all(SessionFilter {
                user: Some("Alice".into()),
                ..Default::default()
            }),
            Vec::<String>::new()
        );
        assert_eq!(
            all(SessionFilter {
                login: Some("Deploy".into()),
                ..Default::default()
            }),
            Vec::<String>::new()
        );
    }
}
