//! One audit trail for a deployment of several instances: each instance's log is its own
//! hash chain (chains are per writer), and a shipper copies it into the deployment's
//! [`AuditIndex`] (a table in the store every instance shares) with the chain's head,
//! recorded again as the log grows. [`verify_index`] checks every chain found there and that
//! no head ever went backwards; `ssh-ca audit search` queries the records.
//!
//! Like the SIEM forwarder ([`super::forward`]), the shipper *tails* the log from a cursor
//! beside it (`<log>.index`): an append never waits for the database, a database outage
//! delays the index but loses nothing (the backlog is the log), and records another process
//! appended (an operator's offline `ssh-ca revoke`) are shipped too. Records are keyed by chain
//! and `seq`, so a batch sent again after a failure is not doubled.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::forward::{Cursor, MAX_BATCH_BYTES, read_batch};
use super::{ChainChecker, Head, side_path};
use crate::store::{AuditIndex, ChainHead, HeadOutcome, IndexedRecord, StoreError};

/// How long a chain id is: the first hex digits of the chain's first record's hash.
const CHAIN_ID_LEN: usize = 16;
/// How often the log is looked at when there is nothing new.
const POLL: Duration = Duration::from_millis(200);
/// Longest wait between attempts while the index cannot be written.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Records read from the index per query when verifying a chain.
const VERIFY_PAGE: usize = 2000;

/// The id of the chain in `log`: the start of its first record's hash, which names the chain
/// for as long as it exists and differs for a log started again. `None` for an empty log.
pub fn chain_id(log: &Path) -> io::Result<Option<String>> {
    let file = match File::open(log) {
        Ok(file) => file,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(err),
    };
    let mut first = Vec::new();
    BufReader::new(file)
        .take(super::MAX_RECORD_BYTES as u64)
        .read_until(b'\n', &mut first)?;
    if first.pop() != Some(b'\n') {
        return Ok(None);
    }
    let envelope: Envelope = serde_json::from_slice(&first).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: first line is not an audit record", log.display()),
        )
    })?;
    Ok(Some(envelope.hash.chars().take(CHAIN_ID_LEN).collect()))
}

/// Who writes `log`, for people reading a deployment's chains: `PROGRAM on HOST: PATH`.
pub fn chain_label(program: &str, log: &Path) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_default();
    let path = std::path::absolute(log).unwrap_or_else(|_| log.to_path_buf());
    format!("{program} on {host}: {}", path.display())
}

/// The envelope members the index keeps in columns.
#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    time: String,
    event: String,
    hash: String,
}

/// A running shipper thread; stops at its next look at the log when shut down or dropped.
#[derive(Debug)]
pub struct Shipper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Shipper {
    /// Starts copying `log` into `index`, recording the chain's head at most every
    /// `heads_every` (and when shut down). `label` names the writer ([`chain_label`]).
    pub fn start(
        log: &Path,
        index: Arc<dyn AuditIndex>,
        label: String,
        heads_every: Duration,
    ) -> io::Result<Shipper> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut worker = Worker {
            log: log.to_path_buf(),
            cursor_path: side_path(log, ".index"),
            index,
            label,
            heads_every,
            stop: Arc::clone(&stop),
            chain: None,
            cursor: Cursor::default(),
            shipped: None,
            recorded: None,
            recorded_at: None,
        };
        let thread = std::thread::Builder::new()
            .name("audit-index".to_owned())
            .spawn(move || worker.run())?;
        Ok(Shipper {
            stop,
            thread: Some(thread),
        })
    }

    /// Starts a shipper for `program`'s log when indexing is on (`heads_every` is the
    /// configured `[audit] head_interval`, `None` for `index = false`).
    pub fn start_configured(
        program: &str,
        log: &Path,
        heads_every: Option<Duration>,
        index: Arc<dyn AuditIndex>,
    ) -> io::Result<Option<Shipper>> {
        let Some(every) = heads_every else {
            return Ok(None);
        };
        Shipper::start(log, index, chain_label(program, log), every).map(Some)
    }

    /// Ships what is left, records the head, and stops the thread.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Shipper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Why one round of shipping stopped short.
#[derive(Debug, thiserror::Error)]
enum ShipError {
    #[error("cannot read the audit log: {0}")]
    Log(#[from] io::Error),
    #[error("cannot write the audit index: {0}")]
    Index(#[from] StoreError),
}

struct Worker {
    log: PathBuf,
    cursor_path: PathBuf,
    index: Arc<dyn AuditIndex>,
    label: String,
    heads_every: Duration,
    stop: Arc<AtomicBool>,
    /// The chain's id, once the log has a first record.
    chain: Option<String>,
    /// Just after the last record known to be in the index.
    cursor: Cursor,
    /// `seq` and `hash` of the last record shipped.
    shipped: Option<(u64, String)>,
    /// The last head recorded.
    recorded: Option<(u64, String)>,
    recorded_at: Option<Instant>,
}

impl Worker {
    fn run(&mut self) {
        let mut backoff = POLL;
        let mut failing = false;
        loop {
            let stopping = self.stop.load(Ordering::Relaxed);
            match self.ship_once(stopping) {
                Ok(more) => {
                    if failing {
                        tracing::info!(log = %self.log.display(), "audit index reachable again; shipping resumed");
                        failing = false;
                    }
                    backoff = POLL;
                    if stopping {
                        return;
                    }
                    if more {
                        continue;
                    }
                }
                Err(err) => {
                    if !failing {
                        tracing::warn!(log = %self.log.display(), "audit index: {err}; the log keeps every record, retrying");
                        failing = true;
                    }
                    if stopping {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
            self.pause(if failing { backoff } else { POLL });
        }
    }

    /// Sleeps up to `how_long`, waking early to stop.
    fn pause(&self, how_long: Duration) {
        let until = Instant::now() + how_long;
        while Instant::now() < until && !self.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50).min(how_long));
        }
    }

    /// Ships one batch and records the head when due; `Ok(true)` when more is waiting.
    fn ship_once(&mut self, stopping: bool) -> Result<bool, ShipError> {
        let chain = match &self.chain {
            Some(chain) => chain.clone(),
            None => match chain_id(&self.log)? {
                Some(chain) => self.begin(chain)?,
                None => return Ok(false),
            },
        };
        let batch = read_batch(&self.log, self.cursor)?;
        let more = !batch.lines.is_empty() && batch_was_full(&batch.lines);
        let mut records = Vec::with_capacity(batch.lines.len());
        for line in &batch.lines {
            // A line that is not a record is left to `audit verify`, which names it.
            let Ok(envelope) = serde_json::from_slice::<Envelope>(&line.json) else {
                continue;
            };
            let Ok(text) = String::from_utf8(line.json.clone()) else {
                continue;
            };
            records.push(IndexedRecord {
                chain: chain.clone(),
                seq: envelope.seq,
                time: envelope.time,
                event: envelope.event,
                hash: envelope.hash,
                line: text,
            });
        }
        if !records.is_empty() {
            self.index.add_audit_records(&records)?;
        }
        if let Some(last) = records.last() {
            self.shipped = Some((last.seq, last.hash.clone()));
        }
        if batch.end != self.cursor {
            self.cursor = batch.end;
            if let Err(err) = self.cursor.save(&self.cursor_path) {
                tracing::warn!(cursor = %self.cursor_path.display(), "cannot save the audit index cursor: {err}");
            }
        }
        let due = self
            .recorded_at
            .is_none_or(|at| at.elapsed() >= self.heads_every);
        if (due || stopping || self.recorded.is_none()) && self.shipped != self.recorded {
            self.record_head(&chain)?;
        }
        Ok(more)
    }

    /// Starts on a chain: resumes from the cursor only if the index has everything before it.
    fn begin(&mut self, chain: String) -> Result<String, ShipError> {
        let saved = Cursor::load(&self.cursor_path);
        let indexed = self.index.indexed_seq(&chain)?;
        self.cursor = if saved.seq > 0 && saved.seq <= indexed {
            saved
        } else {
            Cursor::default()
        };
        self.chain = Some(chain.clone());
        Ok(chain)
    }

    fn record_head(&mut self, chain: &str) -> Result<(), ShipError> {
        let Some((seq, hash)) = self.shipped.clone() else {
            return Ok(());
        };
        let head = ChainHead {
            chain: chain.to_owned(),
            label: self.label.clone(),
            seq,
            hash: hash.clone(),
            recorded_at: crate::unix_now(),
        };
        if let HeadOutcome::WentBack(earlier) = self.index.record_audit_head(&head)? {
            tracing::error!(
                log = %self.log.display(),
                chain,
                seq,
                recorded_seq = earlier.seq,
                "the audit log's head went backwards: the index recorded seq {} (hash {}) before; \
                 the log was cut short or rewritten (`audit verify` reports it)",
                earlier.seq,
                earlier.hash
            );
        }
        self.recorded = Some((seq, hash));
        self.recorded_at = Some(Instant::now());
        Ok(())
    }
}

fn batch_was_full(lines: &[super::forward::Line]) -> bool {
    lines.iter().map(|l| l.json.len() + 1).sum::<usize>() >= MAX_BATCH_BYTES
}

/// What [`verify_index`] found for one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    /// The chain's id.
    pub chain: String,
    /// Who writes it (from its last recorded head).
    pub label: String,
    /// Records indexed.
    pub records: u64,
    /// Heads recorded.
    pub heads: usize,
    /// `seq` of the last recorded head.
    pub head_seq: u64,
    /// `hash` of the last recorded head.
    pub head_hash: String,
    /// Everything wrong; empty means intact.
    pub problems: Vec<String>,
}

/// Checks every chain in `index`: each chain's records link up from `seq` 1 and hash to what
/// they say; every recorded head is one of its records; heads never went backwards. With
/// `local` (this instance's log and its label) also that the log has not fallen behind its
/// recorded head, and that no other chain was written at that path before (a replaced log).
pub fn verify_index(
    index: &dyn AuditIndex,
    local: Option<(&Path, &str)>,
) -> Result<Vec<ChainReport>, StoreError> {
    let heads = index.audit_heads()?;
    let mut order: Vec<String> = Vec::new();
    let mut by_chain: HashMap<String, Vec<ChainHead>> = HashMap::new();
    for head in heads {
        if !by_chain.contains_key(&head.chain) {
            order.push(head.chain.clone());
        }
        by_chain.entry(head.chain.clone()).or_default().push(head);
    }
    let mut reports = Vec::new();
    for chain in order {
        let heads = by_chain.remove(&chain).unwrap_or_default();
        reports.push(verify_chain(index, &chain, &heads)?);
    }
    if let Some((log, label)) = local {
        check_local(log, label, &mut reports);
    }
    Ok(reports)
}

fn verify_chain(
    index: &dyn AuditIndex,
    chain: &str,
    heads: &[ChainHead],
) -> Result<ChainReport, StoreError> {
    let last = heads.last();
    let mut problems = Vec::new();
    for pair in heads.windows(2) {
        if let Some(HeadOutcome::WentBack(_)) = crate::store::head_may_follow(&pair[0], &pair[1]) {
            problems.push(format!(
                "head went backwards: seq {} recorded after seq {}",
                pair[1].seq, pair[0].seq
            ));
        }
    }
    let wanted: HashMap<u64, Vec<&ChainHead>> =
        heads.iter().fold(HashMap::new(), |mut map, head| {
            map.entry(head.seq).or_insert_with(Vec::new).push(head);
            map
        });
    let mut checker = ChainChecker::new(Ok(last.map(|h| Head {
        seq: h.seq,
        hash: h.hash.clone(),
    })));
    let mut records = 0u64;
    let mut from = 1u64;
    loop {
        let page = index.audit_records(chain, from, VERIFY_PAGE)?;
        let Some(end) = page.last().map(|r| r.seq) else {
            break;
        };
        for record in &page {
            records += 1;
            checker.check_line(record.seq, record.line.as_bytes());
            for head in wanted.get(&record.seq).into_iter().flatten() {
                if head.hash != record.hash {
                    problems.push(format!(
                        "seq {}: hash differs from the head recorded at {} (chain rewritten)",
                        record.seq, head.recorded_at
                    ));
                }
            }
        }
        from = end + 1;
    }
    let report = checker.finish();
    problems.extend(report.problems.iter().map(|p| match p.line {
        0 => p.message.replace("head file", "recorded head"),
        seq => format!("seq {seq}: {}", p.message),
    }));
    Ok(ChainReport {
        chain: chain.to_owned(),
        label: last.map(|h| h.label.clone()).unwrap_or_default(),
        records,
        heads: heads.len(),
        head_seq: last.map_or(0, |h| h.seq),
        head_hash: last.map(|h| h.hash.clone()).unwrap_or_default(),
        problems,
    })
}

/// The local log against what the index recorded of it.
fn check_local(log: &Path, label: &str, reports: &mut [ChainReport]) {
    let local = match chain_id(log) {
        Ok(local) => local,
        Err(err) => {
            if let Some(report) = reports.iter_mut().find(|r| r.label == label) {
                report.problems.push(format!("the local log: {err}"));
            }
            return;
        }
    };
    for report in reports.iter_mut() {
        if Some(&report.chain) == local.as_ref() {
            match seq_hash_and_last(log, report.head_seq) {
                Ok((last_seq, at_head)) => {
                    if last_seq < report.head_seq {
                        report.problems.push(format!(
                            "head went backwards: {} ends at seq {last_seq}, but seq {} was recorded",
                            log.display(),
                            report.head_seq
                        ));
                    } else if at_head.as_ref() != Some(&report.head_hash) {
                        report.problems.push(format!(
                            "{}: the record with the recorded head's seq {} is not the one recorded (log rewritten)",
                            log.display(),
                            report.head_seq
                        ));
                    }
                }
                Err(err) => report
                    .problems
                    .push(format!("cannot read {}: {err}", log.display())),
            }
        } else if report.label == label {
            report.problems.push(format!(
                "{} was replaced: it holds chain {} now, but chain {} was written there up to seq {}",
                log.display(),
                local.as_deref().unwrap_or("(empty)"),
                report.chain,
                report.head_seq
            ));
        }
    }
}

/// The last `seq` in `log`, and the hash of its record with `seq` `wanted`, if any.
fn seq_hash_and_last(log: &Path, wanted: u64) -> io::Result<(u64, Option<String>)> {
    let reader = BufReader::new(File::open(log)?);
    let mut last = 0;
    let mut found = None;
    for line in reader.split(b'\n') {
        let line = line?;
        if let Ok(envelope) = serde_json::from_slice::<Envelope>(&line) {
            last = envelope.seq;
            if envelope.seq == wanted {
                found = Some(envelope.hash);
            }
        }
    }
    Ok((last, found))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, AuditLog};
    use crate::store::{AuditQuery, SqliteStore};

    fn append(log: &AuditLog, kind: &str, n: usize) {
        for i in 0..n {
            log.append(AuditEvent::new(kind).with("n", i as u64))
                .unwrap();
        }
    }

    /// Waits (with a deadline) until `chain` has `seq` records in the index and its head is
    /// recorded at `seq`.
    fn wait_shipped(store: &SqliteStore, chain: &str, seq: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let head = store
                .audit_heads()
                .unwrap()
                .into_iter()
                .filter(|h| h.chain == chain)
                .map(|h| h.seq)
                .max();
            if store.indexed_seq(chain).unwrap() == seq && head == Some(seq) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "chain {chain} not shipped to {seq}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn two_instances_logs_land_in_one_index_and_verify_intact() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
        let (one, two) = (dir.path().join("one.log"), dir.path().join("two.log"));
        let (log1, log2) = (AuditLog::open(&one).unwrap(), AuditLog::open(&two).unwrap());
        append(&log1, "cert.issued", 30);
        append(&log2, "cert.denied", 7);
        let shippers = [
            Shipper::start(
                &one,
                store.clone(),
                chain_label("ssh-ca", &one),
                Duration::ZERO,
            )
            .unwrap(),
            Shipper::start(
                &two,
                store.clone(),
                chain_label("ssh-ca", &two),
                Duration::ZERO,
            )
            .unwrap(),
        ];
        let (c1, c2) = (
            chain_id(&one).unwrap().unwrap(),
            chain_id(&two).unwrap().unwrap(),
        );
        assert_ne!(c1, c2);
        wait_shipped(&store, &c1, 30);
        wait_shipped(&store, &c2, 7);
        append(&log1, "cert.revoked", 1);
        wait_shipped(&store, &c1, 31);
        for shipper in shippers {
            shipper.shutdown();
        }
        let reports =
            verify_index(store.as_ref(), Some((&one, &chain_label("ssh-ca", &one)))).unwrap();
        assert_eq!(reports.len(), 2, "{reports:?}");
        for report in &reports {
            assert!(report.problems.is_empty(), "{report:?}");
        }
        let counts: Vec<_> = reports
            .iter()
            .map(|r| (r.chain.clone(), r.records))
            .collect();
        assert!(counts.contains(&(c1.clone(), 31)) && counts.contains(&(c2, 7)));
        let revoked = store
            .search_audit(&AuditQuery {
                event: Some("cert.revoked".into()),
                limit: 5,
                ..AuditQuery::default()
            })
            .unwrap();
        assert_eq!(revoked.len(), 1);
        assert_eq!(
            (revoked[0].chain.as_str(), revoked[0].seq),
            (c1.as_str(), 31)
        );
    }

    #[test]
    fn a_log_cut_short_and_written_again_is_a_head_that_went_backwards() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(&dir.path().join("store.db")).unwrap());
        let path = dir.path().join("audit.log");
        let label = chain_label("ssh-ca", &path);
        let log = AuditLog::open(&path).unwrap();
        append(&log, "cert.issued", 10);
        drop(log);
        let chain = chain_id(&path).unwrap().unwrap();
        let shipper = Shipper::start(&path, store.clone(), label.clone(), Duration::ZERO).unwrap();
        wait_shipped(&store, &chain, 10);
        shipper.shutdown();
        // Someone removes the last 4 records (and the head file that would tell), and the CA
        // goes on writing: seq 7 onwards again, with other contents.
        let text = std::fs::read_to_string(&path).unwrap();
        let kept: String = text.lines().take(6).map(|l| format!("{l}\n")).collect();
        std::fs::write(&path, kept).unwrap();
        std::fs::remove_file(super::side_path(&path, ".head")).unwrap();
        let log = AuditLog::open(&path).unwrap();
        append(&log, "cert.issued", 2);
        let reports = verify_index(store.as_ref(), Some((&path, &label))).unwrap();
        let problems = reports[0].problems.join("\n");
        assert!(problems.contains("head went backwards"), "{problems}");
        // Shipping the rewritten log does not overwrite the evidence, and says so.
        let shipper = Shipper::start(&path, store.clone(), label.clone(), Duration::ZERO).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        shipper.shutdown();
        assert_eq!(
            store.audit_heads().unwrap().last().map(|h| h.seq),
            Some(10),
            "the recorded head stays where it was"
        );
        let reports = verify_index(store.as_ref(), Some((&path, &label))).unwrap();
        assert!(!reports[0].problems.is_empty());
    }

    #[test]
    fn an_index_row_edited_or_a_log_replaced_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("store.db");
        let store = Arc::new(SqliteStore::open(&db).unwrap());
        let path = dir.path().join("audit.log");
        let label = chain_label("ssh-bastion", &path);
        append(&AuditLog::open(&path).unwrap(), "session.start", 5);
        let chain = chain_id(&path).unwrap().unwrap();
        let shipper = Shipper::start(&path, store.clone(), label.clone(), Duration::ZERO).unwrap();
        wait_shipped(&store, &chain, 5);
        shipper.shutdown();
        let edit = rusqlite::Connection::open(&db).unwrap();
        edit.execute(
            "UPDATE audit_records SET line = replace(line, 'session.start', 'session.stop') WHERE seq = 3",
            [],
        )
        .unwrap();
        let reports = verify_index(store.as_ref(), None).unwrap();
        let problems = reports[0].problems.join("\n");
        assert!(problems.contains("seq 3: hash mismatch"), "{problems}");
        // The log moved aside and a new one started at the same path: a new chain, and the
        // old one's absence is named.
        std::fs::rename(&path, dir.path().join("old.log")).unwrap();
        std::fs::remove_file(super::side_path(&path, ".head")).unwrap();
        append(&AuditLog::open(&path).unwrap(), "session.start", 1);
        let reports = verify_index(store.as_ref(), Some((&path, &label))).unwrap();
        let problems = reports[0].problems.join("\n");
        assert!(problems.contains("was replaced"), "{problems}");
    }
}
