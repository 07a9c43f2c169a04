//! The deployment's audit index ([`AuditIndex`]) on PostgreSQL: every instance's audit
//! records and recorded chain heads in two tables that the CA store and the session index
//! share (both schemas create them if missing), so CAs and bastions on one database are
//! searched and verified in one place.

use jitssh_core::store::{
    AuditIndex, AuditQuery, ChainHead, HeadOutcome, IndexedRecord, StoreError, head_may_follow,
};

use crate::{PgError, PgStore, from_sql, to_sql};

/// The tables, as a migration step of both schemas (`IF NOT EXISTS`: whichever program
/// migrates first creates them).
pub(crate) const SQL: &str = "
CREATE TABLE IF NOT EXISTS audit_records (
    chain TEXT NOT NULL,
    seq BIGINT NOT NULL,
    time TEXT NOT NULL,
    event TEXT NOT NULL,
    hash TEXT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (chain, seq)
);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time);
CREATE INDEX IF NOT EXISTS audit_records_event ON audit_records (event, time);
CREATE TABLE IF NOT EXISTS audit_heads (
    id BIGSERIAL PRIMARY KEY,
    chain TEXT NOT NULL,
    label TEXT NOT NULL,
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    recorded_at BIGINT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_heads_chain ON audit_heads (chain, id);
";

/// Key of the advisory lock that orders head recordings of one chain.
const HEAD_LOCK: i64 = 0x4a49_5453_4845_4144;

fn record_of(row: &tokio_postgres::Row) -> IndexedRecord {
    IndexedRecord {
        chain: row.get(0),
        seq: from_sql(row.get(1)),
        time: row.get(2),
        event: row.get(3),
        hash: row.get(4),
        line: row.get(5),
    }
}

fn head_of(row: &tokio_postgres::Row) -> ChainHead {
    ChainHead {
        chain: row.get(0),
        label: row.get(1),
        seq: from_sql(row.get(2)),
        hash: row.get(3),
        recorded_at: from_sql(row.get(4)),
    }
}

fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl AuditIndex for PgStore {
    fn add_audit_records(&self, records: &[IndexedRecord]) -> Result<(), StoreError> {
        let mut chains = Vec::with_capacity(records.len());
        let mut seqs = Vec::with_capacity(records.len());
        let mut times = Vec::with_capacity(records.len());
        let mut events = Vec::with_capacity(records.len());
        let mut hashes = Vec::with_capacity(records.len());
        let mut lines = Vec::with_capacity(records.len());
        for r in records {
            chains.push(r.chain.clone());
            seqs.push(to_sql(r.seq));
            times.push(r.time.clone());
            events.push(r.event.clone());
            hashes.push(r.hash.clone());
            lines.push(r.line.clone());
        }
        self.run(move |pool| async move {
            let client = pool.get().await.map_err(PgError::pool)?;
            client
                .execute(
                    "INSERT INTO audit_records (chain, seq, time, event, hash, line) \
                     SELECT * FROM UNNEST($1::TEXT[], $2::BIGINT[], $3::TEXT[], $4::TEXT[], \
                     $5::TEXT[], $6::TEXT[]) ON CONFLICT (chain, seq) DO NOTHING",
                    &[&chains, &seqs, &times, &events, &hashes, &lines],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(())
        })
    }

    fn indexed_seq(&self, chain: &str) -> Result<u64, StoreError> {
        let chain = chain.to_string();
        self.run(move |pool| async move {
            let client = pool.get().await.map_err(PgError::pool)?;
            let row = client
                .query_one(
                    "SELECT COALESCE(MAX(seq), 0) FROM audit_records WHERE chain = $1",
                    &[&chain],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(from_sql(row.get::<_, i64>(0)))
        })
    }

    fn record_audit_head(&self, head: &ChainHead) -> Result<HeadOutcome, StoreError> {
        let head = head.clone();
        self.run(move |pool| async move {
            let mut client = pool.get().await.map_err(PgError::pool)?;
            let tx = client.transaction().await.map_err(PgError::statement)?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&HEAD_LOCK])
                .await
                .map_err(PgError::statement)?;
            let last = tx
                .query_opt(
                    "SELECT chain, label, seq, hash, recorded_at FROM audit_heads \
                     WHERE chain = $1 ORDER BY id DESC LIMIT 1",
                    &[&head.chain],
                )
                .await
                .map_err(PgError::statement)?
                .map(|row| head_of(&row));
            if let Some(outcome) = last.as_ref().and_then(|last| head_may_follow(last, &head)) {
                return Ok(outcome);
            }
            tx.execute(
                "INSERT INTO audit_heads (chain, label, seq, hash, recorded_at) \
                 VALUES ($1, $2, $3, $4, $5)",
                &[
                    &head.chain,
                    &head.label,
                    &to_sql(head.seq),
                    &head.hash,
                    &to_sql(head.recorded_at),
                ],
            )
            .await
            .map_err(PgError::statement)?;
            tx.commit().await.map_err(PgError::statement)?;
            Ok(HeadOutcome::Advanced)
        })
    }

    fn audit_heads(&self) -> Result<Vec<ChainHead>, StoreError> {
        self.run(|pool| async move {
            let client = pool.get().await.map_err(PgError::pool)?;
            let rows = client
                .query(
                    "SELECT h.chain, h.label, h.seq, h.hash, h.recorded_at FROM audit_heads h \
                     JOIN (SELECT chain, MIN(id) AS first FROM audit_heads GROUP BY chain) f \
                       ON f.chain = h.chain \
                     ORDER BY f.first, h.id",
                    &[],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(rows.iter().map(head_of).collect())
        })
    }

    fn audit_records(
        &self,
        chain: &str,
        from_seq: u64,
        n: usize,
    ) -> Result<Vec<IndexedRecord>, StoreError> {
        let chain = chain.to_string();
        let (from, n) = (to_sql(from_seq), limit(n));
        self.run(move |pool| async move {
            let client = pool.get().await.map_err(PgError::pool)?;
            let rows = client
                .query(
                    "SELECT chain, seq, time, event, hash, line FROM audit_records \
                     WHERE chain = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
                    &[&chain, &from, &n],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(rows.iter().map(record_of).collect())
        })
    }

    fn search_audit(&self, query: &AuditQuery) -> Result<Vec<IndexedRecord>, StoreError> {
        let query = query.clone();
        self.run(move |pool| async move {
            let client = pool.get().await.map_err(PgError::pool)?;
            // NULL parameters match everything; `strpos` is a plain substring (no wildcards).
            let rows = client
                .query(
                    "SELECT chain, seq, time, event, hash, line FROM audit_records \
                     WHERE ($1::TEXT IS NULL OR event = $1) \
                       AND ($2::TEXT IS NULL OR time >= $2) \
                       AND ($3::TEXT IS NULL OR chain = $3) \
                       AND (SELECT bool_and(strpos(line, needle) > 0) FROM UNNEST($4::TEXT[]) AS needle) \
                           IS NOT FALSE \
                     ORDER BY time DESC, chain, seq DESC LIMIT $5",
                    &[
                        &query.event,
                        &query.since,
                        &query.chain,
                        &query.contains,
                        &limit(query.limit),
                    ],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(rows.iter().map(record_of).collect())
        })
    }
}
