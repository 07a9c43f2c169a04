//! The deployment's audit index: every instance's audit records in one table, and the heads
//! of every chain as they were seen over time.
//!
//! Each process writing an audit log is one hash chain (a CA, a bastion; two CAs behind one
//! name are two chains). The log file stays the record of truth, written before each action
//! completes; the index is a copy that an instance's shipper ([`crate::audit::index`]) fills
//! from the log as it grows. It lets an auditor search every instance's events in one place
//! and lets `audit verify` check every chain of a deployment, including that no chain's head
//! ever went backwards (a log cut short and written again), which one file alone cannot show.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, StoreError};

/// The two tables, added by a migration of the CA store and one of the session index.
pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS audit_records (
    chain TEXT NOT NULL,
    seq INTEGER NOT NULL,
    time TEXT NOT NULL,
    event TEXT NOT NULL,
    hash TEXT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time);
CREATE INDEX IF NOT EXISTS audit_records_event ON audit_records (event, time);
CREATE TABLE IF NOT EXISTS audit_heads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    chain TEXT NOT NULL,
    label TEXT NOT NULL,
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_heads_chain ON audit_heads (chain, id);
";

/// One audit record as the index holds it: the stored line, byte for byte, and the envelope
/// fields searched on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedRecord {
    /// The chain (see [`crate::audit::index::chain_id`]).
    pub chain: String,
    /// The record's `seq` in its chain.
    pub seq: u64,
    /// Its `time` (RFC 3339 UTC, milliseconds: sorts as text).
    pub time: String,
    /// Its `event` kind.
    pub event: String,
    /// Its `hash`.
    pub hash: String,
    /// The record's line as stored in the log, without the newline: its hash can be checked
    /// again from this alone.
    pub line: String,
}

/// Where a chain stood when its writer last reported it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    /// The chain.
    pub chain: String,
    /// Who writes it, for people (`ssh-ca on HOST: PATH`).
    pub label: String,
    /// `seq` of its last record.
    pub seq: u64,
    /// `hash` of its last record.
    pub hash: String,
    /// When it was recorded (Unix seconds).
    pub recorded_at: u64,
}

/// What recording a head found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadOutcome {
    /// The head moved on (or is the chain's first).
    Advanced,
    /// Same as the last one recorded; nothing written.
    Unchanged,
    /// The chain is behind, or forked from, what was recorded before: refused, and the
    /// earlier head is kept as the evidence.
    WentBack(ChainHead),
}

/// The instant `unix` in the records' own `time` form (milliseconds, `Z`), so that comparing
/// it with stored times as text compares instants (`--since`).
pub fn record_time(unix: u64) -> String {
    crate::timefmt::format_utc(unix).replace('Z', ".000Z")
}

/// Which records a search returns, newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only this event kind (`cert.issued`).
    pub event: Option<String>,
    /// Only records at or after this time (RFC 3339, compared as text).
    pub since: Option<String>,
    /// Only records whose line contains every one of these strings.
    pub contains: Vec<String>,
    /// Only this chain.
    pub chain: Option<String>,
    /// At most this many.
    pub limit: usize,
}

/// Storage of the deployment's audit index.
pub trait AuditIndex: Send + Sync {
    /// Adds records; one already there (same chain and `seq`) is left as it is, so a shipper
    /// that sends a batch again after a failure does no harm.
    fn add_audit_records(&self, records: &[IndexedRecord]) -> Result<(), StoreError>;
    /// The highest `seq` indexed for `chain` (0 for none).
    fn indexed_seq(&self, chain: &str) -> Result<u64, StoreError>;
    /// Records `head` unless it is behind, or forked from, the chain's last recorded head.
    fn record_audit_head(&self, head: &ChainHead) -> Result<HeadOutcome, StoreError>;
    /// Every chain's recorded heads, oldest first per chain, chains in order of first sight.
    fn audit_heads(&self) -> Result<Vec<ChainHead>, StoreError>;
    /// Up to `limit` records of `chain` from `from_seq` on, in order.
    fn audit_records(
        &self,
        chain: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<IndexedRecord>, StoreError>;
    /// Records matching `query`, newest first.
    fn search_audit(&self, query: &AuditQuery) -> Result<Vec<IndexedRecord>, StoreError>;
}

/// Whether `head` may follow `last`: a later `seq`, or the same one with the same hash.
/// (A same-`seq`, other-hash head is a rewritten chain; a forked one at a later `seq` shows
/// when `audit verify` checks the indexed records against the heads.)
pub fn head_may_follow(last: &ChainHead, head: &ChainHead) -> Option<HeadOutcome> {
    if head.seq < last.seq || (head.seq == last.seq && head.hash != last.hash) {
        Some(HeadOutcome::WentBack(last.clone()))
    } else if head.seq == last.seq {
        Some(HeadOutcome::Unchanged)
    } else {
        None
    }
}

fn record_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<IndexedRecord> {
    Ok(IndexedRecord {
        chain: row.get(0)?,
        seq: row.get::<_, i64>(1)? as u64,
        time: row.get(2)?,
        event: row.get(3)?,
        hash: row.get(4)?,
        line: row.get(5)?,
    })
}

fn head_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ChainHead> {
    Ok(ChainHead {
        chain: row.get(0)?,
        label: row.get(1)?,
        seq: row.get::<_, i64>(2)? as u64,
        hash: row.get(3)?,
        recorded_at: row.get::<_, i64>(4)? as u64,
    })
}

impl AuditIndex for SqliteStore {
    fn add_audit_records(&self, records: &[IndexedRecord]) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            let tx = conn.transaction().map_err(|e| self.sqlite(e))?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR IGNORE INTO audit_records (chain, seq, time, event, hash, line)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )
                    .map_err(|e| self.sqlite(e))?;
                for r in records {
                    insert
                        .execute(params![
                            r.chain,
                            r.seq as i64,
                            r.time,
                            r.event,
                            r.hash,
                            r.line
                        ])
                        .map_err(|e| self.sqlite(e))?;
                }
            }
            tx.commit().map_err(|e| self.sqlite(e))
        })
    }

    fn indexed_seq(&self, chain: &str) -> Result<u64, StoreError> {
        self.with_conn(|conn| {
            conn.query_row(
                "SELECT COALESCE(MAX(seq), 0) FROM audit_records WHERE chain = ?1",
                params![chain],
                |row| row.get::<_, i64>(0),
            )
            .map(|seq| seq as u64)
            .map_err(|e| self.sqlite(e))
        })
    }

    fn record_audit_head(&self, head: &ChainHead) -> Result<HeadOutcome, StoreError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| self.sqlite(e))?;
            let last = tx
                .query_row(
                    "SELECT chain, label, seq, hash, recorded_at FROM audit_heads
                     WHERE chain = ?1 ORDER BY id DESC LIMIT 1",
                    params![head.chain],
                    head_row,
                )
                .optional()
                .map_err(|e| self.sqlite(e))?;
            if let Some(outcome) = last.as_ref().and_then(|last| head_may_follow(last, head)) {
                return Ok(outcome);
            }
            tx.execute(
                "INSERT INTO audit_heads (chain, label, seq, hash, recorded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    head.chain,
                    head.label,
                    head.seq as i64,
                    head.hash,
                    head.recorded_at as i64
                ],
            )
            .map_err(|e| self.sqlite(e))?;
            tx.commit().map_err(|e| self.sqlite(e))?;
            Ok(HeadOutcome::Advanced)
        })
    }

    fn audit_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        self.with_conn(|conn| {
            let mut statement = conn
                .prepare(
                    "SELECT h.chain, h.label, h.seq, h.hash, h.recorded_at FROM audit_heads h
                     JOIN (SELECT chain, MIN(id) AS first FROM audit_heads GROUP BY chain) f
                       ON f.chain = h.chain
                     ORDER BY f.first, h.id",
                )
                .map_err(|e| self.sqlite(e))?;
            let rows = statement
                .query_map([], head_row)
                .map_err(|e| self.sqlite(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
        })
    }

    fn audit_records(
        &self,
        chain: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<IndexedRecord>, StoreError> {
        self.with_conn(|conn| {
            let mut statement = conn
                .prepare(
                    "SELECT chain, seq, time, event, hash, line FROM audit_records
                     WHERE chain = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3",
                )
                .map_err(|e| self.sqlite(e))?;
            let rows = statement
                .query_map(
                    params![chain, from_seq as i64, limit.min(i64::MAX as usize) as i64],
                    record_row,
                )
                .map_err(|e| self.sqlite(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
        })
    }

    fn search_audit(&self, query: &AuditQuery) -> Result<Vec<IndexedRecord>, StoreError> {
        let mut sql = String::from(
            "SELECT chain, seq, time, event, hash, line FROM audit_records WHERE 1 = 1",
        );
        let mut values: Vec<String> = Vec::new();
        if let Some(event) = &query.event {
            values.push(event.clone());
            sql.push_str(&format!(" AND event = ?{}", values.len()));
        }
        if let Some(since) = &query.since {
            values.push(since.clone());
            sql.push_str(&format!(" AND time >= ?{}", values.len()));
        }
        if let Some(chain) = &query.chain {
            values.push(chain.clone());
            sql.push_str(&format!(" AND chain = ?{}", values.len()));
        }
        for needle in &query.contains {
            values.push(needle.clone());
            // instr: a plain substring, no LIKE wildcards to escape.
            sql.push_str(&format!(" AND instr(line, ?{}) > 0", values.len()));
        }
        sql.push_str(&format!(
            " ORDER BY time DESC, chain, seq DESC LIMIT {}",
            query.limit.min(i64::MAX as usize)
        ));
        self.with_conn(|conn| {
            let mut statement = conn.prepare(&sql).map_err(|e| self.sqlite(e))?;
            let rows = statement
                .query_map(rusqlite::params_from_iter(values.iter()), record_row)
                .map_err(|e| self.sqlite(e))?;
            rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
        })
    }
}
