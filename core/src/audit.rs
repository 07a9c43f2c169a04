//! Tamper-evident, append-only audit log.
//!
//! Every security-relevant action (certificate issued or denied, approval,
//! revocation, login, session start/end, exec, transfer) is recorded here
//! *before* the action completes: [`AuditLog::append`] returns only once the
//! record is on disk (`fdatasync`). If it returns an error, the caller must not
//! go on with the action.
//!
//! # File format
//!
//! One JSON object per line (JSON Lines, UTF-8, `\n` terminated), compact
//! (no whitespace), members in this order:
//!
//! ```text
//! {"seq":N,"time":"2024-05-01T12:00:00.123Z","event":"cert.issued","prev":"<64 hex>",<event fields...>,"hash":"<64 hex>"}
//! ```
//!
//! * `seq` starts at 1 and increases by exactly 1 per record.
//! * `time` is RFC 3339 UTC with milliseconds and a `Z` suffix.
//! * `prev` is the `hash` of the previous record, 64 `0`s for the first one.
//! * The event fields follow in the iteration order of
//!   [`serde_json::Map`] (sorted by key unless serde_json's `preserve_order`
//!   feature is on). The order does not matter to verification, see below.
//! * `hash` is always the last member.
//!
//! # Hash definition
//!
//! `hash` is the lowercase hex SHA-256 of the record's *unsigned line*: the
//! exact bytes of the stored line with its trailing `,"hash":"<64 hex>"}`
//! (and the newline) replaced by a single `}`. Equivalently, it is the hash of
//! the compact JSON object made of every member before `hash`, byte for byte
//! as written. Because it is defined on stored bytes, a verifier never has to
//! re-serialise JSON (no canonicalisation ambiguity about number formats, key
//! order or string escapes): it strips the suffix, appends `}` and hashes.
//!
//! # Concurrency
//!
//! Several processes may append to the same file (the CA server and an
//! operator's offline `ssh-ca revoke`). Each append takes an exclusive
//! `flock(2)` on the log, then finds the real tail: if the file length differs
//! from what this handle last saw, the last line is re-read (seeking back from
//! the end in chunks, never reading the whole file) to learn the previous
//! `seq` and `hash`. Threads of one process share an [`AuditLog`] through an
//! `Arc`; a mutex serialises them. `flock` is advisory and per open file
//! description, so it also orders two [`AuditLog`] handles in one process, but
//! does not work across NFS clients.
//!
//! # Truncation detection: the head file
//!
//! A hash chain alone cannot show that its last records were cut off. After
//! each durable append the log's head (`seq` and `hash` of the last record) is
//! written to `<log>.head` (temporary file, `fdatasync`, rename). It is
//! written only after the log's `fdatasync`, so after a crash it may lag
//! behind the log but is never ahead of it. [`verify`] reports a log that ends
//! before the head's `seq` or whose record at that `seq` has another hash. An
//! append that finds the head ahead of the log refuses to write
//! ([`AuditError::HeadMismatch`]) rather than silently re-anchoring the head on
//! the shortened log; an operator who accepts the log as it is moves the head
//! file aside.
//!
//! # Torn tail recovery
//!
//! A crash in the middle of a write can leave a last line without its `\n`.
//! A line is complete only if it ends with `\n`, so such bytes are never
//! chained onto. When [`AuditLog::open`] or an append finds them (under the
//! lock), it copies them to `<log>.torn-<unix seconds>` next to the log (made
//! durable first, data is never silently dropped), truncates them from the
//! log and appends an `audit.recovered` record with `torn_bytes`,
//! `torn_sha256` and `torn_file` in the same commit as the caller's events.
//! If that commit then fails (disk full), the handle keeps the recovery event
//! and writes it with its next commit. A torn line is at most one batch that
//! never reported success, so no completed action loses its record.
//!
//! # Limits
//!
//! The chain is unkeyed: it detects accidental damage and naive edits, but
//! someone able to rewrite the log *and* its head file can forge a consistent
//! history. Anchor [`VerifyReport::last_hash`] elsewhere (sign it, ship it off
//! the host) for stronger guarantees. Do not rotate the log by renaming it
//! while writers run: they keep appending to the renamed file.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::Range;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub mod forward;
pub mod index;

/// `prev` of the first record.
const ZERO_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Envelope members; event fields may not use these names.
const RESERVED_FIELDS: [&str; 5] = ["seq", "time", "event", "prev", "hash"];
/// Largest accepted line (including the newline). Bounds the memory needed to
/// read the tail and keeps one runaway event from bloating the log.
const MAX_RECORD_BYTES: usize = 1 << 20;
/// Longest accepted event kind.
const MAX_KIND_LEN: usize = 64;
/// Chunk size used when seeking back from the end of the log.
const TAIL_CHUNK: usize = 8192;
/// Kind of the record written after a torn tail was set aside.
const RECOVERED_KIND: &str = "audit.recovered";

/// Errors from writing or reading the audit log. Each message is one line
/// and names the file involved.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// An I/O operation on the log or one of its side files failed.
    #[error("audit log {}: cannot {action}: {source}", .path.display())]
    Io {
        /// The file the operation was about.
        path: PathBuf,
        /// What was being done, e.g. "sync".
        action: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The event was rejected before anything was written.
    #[error("audit log {}: invalid event: {reason}", .path.display())]
    InvalidEvent {
        /// The log the event was meant for.
        path: PathBuf,
        /// Why it was rejected.
        reason: String,
    },
    /// The last complete line is not a record, so there is nothing to chain
    /// onto. Appending anyway would hide the damage.
    #[error(
        "audit log {}: cannot continue the hash chain, the last record is unreadable ({reason}); run verify and repair by hand",
        .path.display()
    )]
    CorruptTail {
        /// The log.
        path: PathBuf,
        /// What is wrong with the last line.
        reason: String,
    },
    /// The head file is ahead of the log (or disagrees with it): the log was
    /// truncated or rewritten. Appends are refused until an operator decides.
    #[error(
        "audit log {}: {detail}; refusing to append (run verify; to accept the log as it is, move {} aside)",
        .path.display(),
        .head.display()
    )]
    HeadMismatch {
        /// The log.
        path: PathBuf,
        /// The head file.
        head: PathBuf,
        /// What disagrees.
        detail: String,
    },
    /// Serialising an event failed (should not happen with JSON values).
    #[error("audit log {}: cannot encode record: {source}", .path.display())]
    Encode {
        /// The log.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: serde_json::Error,
    },
}

/// An event to record: a kind like `"cert.issued"` and flat fields.
///
/// Fields are flattened into the record line, so they may not be named
/// `seq`, `time`, `event`, `prev` or `hash`; [`AuditLog::append`] rejects
/// such events (rather than [`AuditEvent::with`] panicking).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    /// Event kind: 1 to 64 characters of `[A-Za-z0-9._-]`.
    pub kind: String,
    /// Event fields, written after the envelope members.
    pub fields: Map<String, Value>,
}

impl AuditEvent {
    /// Starts an event of the given kind with no fields.
    pub fn new(kind: &str) -> Self {
        Self {
            kind: kind.to_owned(),
            fields: Map::new(),
        }
    }

    /// Adds (or replaces) a field; chainable.
    #[must_use]
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_owned(), value.into());
        self
    }
}

/// A written record, as returned by [`AuditLog::append`]. Once you hold one,
/// the record is durable.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Sequence number (1-based, consecutive).
    pub seq: u64,
    /// RFC 3339 UTC time with milliseconds.
    pub time: String,
    /// The record's hash (see the module docs for its definition).
    pub hash: String,
    /// The recorded event.
    pub event: AuditEvent,
}

/// Result of [`verify`]ing a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of lines that parsed as records (intact or not).
    pub records: u64,
    /// Stored hash of the last parsed record (64 zeros for an empty log);
    /// worth anchoring outside the host.
    pub last_hash: String,
    /// Everything found wrong; empty means the log is intact.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// True when no problem was found.
    pub fn is_intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One problem found by [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line number in the log, or 0 for a problem with the log as a
    /// whole (head file, truncation).
    pub line: u64,
    /// What is wrong, without the line prefix (e.g. `hash mismatch (record
    /// altered)`); `Display` adds `line N: `.
    pub message: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            f.write_str(&self.message)
        } else {
            write!(f, "line {}: {}", self.line, self.message)
        }
    }
}

/// An append-only, hash-chained, durable audit log file.
///
/// Share it between threads with `Arc<AuditLog>`; appends are serialised
/// internally and across processes (see the module docs).
pub struct AuditLog {
    path: PathBuf,
    head_path: PathBuf,
    state: Mutex<LogState>,
    observers: RwLock<Vec<Observer>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Sees every record this handle writes, once it is durable: metrics are derived from the
/// records rather than counted beside them, so the two never disagree. Called under the log's
/// lock, so it must be quick (count, enqueue), never block.
pub type Observer = Arc<dyn Fn(&AuditRecord) + Send + Sync>;

/// What one handle knows about the file.
#[derive(Debug)]
struct LogState {
    file: File,
    /// Tail as of this handle's last look; `None` forces a re-read.
    tail: Option<Tail>,
    /// `audit.recovered` events for torn tails already set aside but not yet
    /// committed (the commit failed); written with the next commit.
    pending: Vec<AuditEvent>,
}

/// End of the chain: file length (all complete lines) and last record.
#[derive(Debug, Clone)]
struct Tail {
    len: u64,
    seq: u64,
    hash: String,
}

impl AuditLog {
    /// Opens (or creates, mode 0600, with missing parent directories mode
    /// 0700) the log at `path`.
    ///
    /// Checks the tail under the lock: a torn last line is set aside and an
    /// `audit.recovered` record is appended; an unreadable last record or a
    /// head file ahead of the log is an error.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        create_parent_dirs(path)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(io_err(path, "open"))?;
        // Make a newly created log's directory entry durable.
        sync_parent_dir(path)?;
        let log = AuditLog {
            path: path.to_path_buf(),
            head_path: side_path(path, ".head"),
            state: Mutex::new(LogState {
                file,
                tail: None,
                pending: Vec::new(),
            }),
            observers: RwLock::new(Vec::new()),
        };
        log.commit(Vec::new())?;
        Ok(log)
    }

    /// Appends one event and returns its record once it is durable.
    ///
    /// Call this before the action completes and abort the action on error.
    pub fn append(&self, event: AuditEvent) -> Result<AuditRecord, AuditError> {
        self.append_batch(vec![event])?
            .into_iter()
            .next()
            .ok_or_else(|| AuditError::Io {
                path: self.path.clone(),
                action: "append",
                source: io::Error::other("no record was written"),
            })
    }

    /// Appends several events with a single write and a single `fdatasync`
    /// (group commit), for high issuance rates. All or none are accepted:
    /// one invalid event rejects the batch before anything is written.
    pub fn append_batch(&self, events: Vec<AuditEvent>) -> Result<Vec<AuditRecord>, AuditError> {
        for event in &events {
            validate_event(event).map_err(|reason| self.invalid(reason))?;
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        self.commit(events)
    }

    /// Adds an observer of the records written from now on through this handle (not those of
    /// other processes, nor the `audit.recovered` records the log writes for itself).
    pub fn observe(&self, observer: Observer) {
        self.observers
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(observer);
    }

    /// The log file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Locks, finds the tail (recovering a torn one), writes and syncs.
    /// Forgets the cached tail on any error so the next call re-reads it.
    fn commit(&self, events: Vec<AuditEvent>) -> Result<Vec<AuditRecord>, AuditError> {
        let mut state = self.lock_state();
        let result = self.commit_locked(&mut state, events);
        if result.is_err() {
            state.tail = None;
        }
        result
    }

    fn commit_locked(
        &self,
        state: &mut LogState,
        events: Vec<AuditEvent>,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        let LogState {
            file,
            tail,
            pending,
        } = state;
        let _lock = FileLock::acquire(file, true).map_err(io_err(&self.path, "lock"))?;
        self.commit_held(file, tail, pending, events)
    }

    /// Runs `work` while holding the log's exclusive lock, the one every append takes (across
    /// processes too). Work that must stay consistent with the log, such as a store write that
    /// is audited in the same step, is then never seen half done by another holder of the lock:
    /// if the process dies inside `work`, the lock is released with it and the next holder sees
    /// exactly what was made durable. Appends inside `work` go through the [`LockedAudit`].
    pub fn with_lock<T>(
        &self,
        work: impl FnOnce(&mut LockedAudit<'_>) -> T,
    ) -> Result<T, AuditError> {
        let mut state = self.lock_state();
        let LogState {
            file,
            tail,
            pending,
        } = &mut *state;
        let _lock = FileLock::acquire(file, true).map_err(io_err(&self.path, "lock"))?;
        let mut locked = LockedAudit {
            log: self,
            file,
            tail,
            pending,
        };
        Ok(work(&mut locked))
    }

    /// Writes `events` (after any pending recovery records); the caller holds the lock.
    fn commit_held(
        &self,
        file: &File,
        tail: &mut Option<Tail>,
        pending: &mut Vec<AuditEvent>,
        events: Vec<AuditEvent>,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        let (current, recovered) = self.current_tail(file, tail.as_ref())?;
        pending.extend(recovered);
        let internal = pending.len();
        let events: Vec<AuditEvent> = pending.iter().cloned().chain(events).collect();
        if events.is_empty() {
            *tail = Some(current);
            return Ok(Vec::new());
        }
        let (bytes, mut records, new_tail) = self.encode_batch(current, events)?;
        self.write_durably(file, &bytes)?;
        pending.clear();
        self.write_head(&new_tail)?;
        *tail = Some(new_tail);
        records.drain(..internal);
        for observer in self
            .observers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            for record in &records {
                observer(record);
            }
        }
        Ok(records)
    }

    /// The mutex only guards a cache that is re-validated against the file,
    /// so a poisoned lock is recovered by dropping the cache.
    fn lock_state(&self) -> MutexGuard<'_, LogState> {
        match self.state.lock() {
            Ok(guard) => guard,
            Err(poisoned) => {
                let mut guard = poisoned.into_inner();
                guard.tail = None;
                self.state.clear_poison();
                guard
            }
        }
    }

    /// Returns the real tail of the file (must hold the lock), plus the
    /// `audit.recovered` event to write if a torn tail was set aside.
    fn current_tail(
        &self,
        file: &File,
        cached: Option<&Tail>,
    ) -> Result<(Tail, Option<AuditEvent>), AuditError> {
        let len = file.metadata().map_err(io_err(&self.path, "stat"))?.len();
        if let Some(tail) = cached.filter(|tail| tail.len == len) {
            return Ok((tail.clone(), None));
        }
        let scan = scan_tail(file, len).map_err(io_err(&self.path, "read the end of"))?;
        let recovered = match scan.torn {
            Some(torn) => Some(self.set_aside_torn_tail(file, torn)?),
            None => None,
        };
        let tail = match scan.last_line {
            Some(line) => self.read_tail_record(file, line, scan.complete_len)?,
            None => Tail {
                len: 0,
                seq: 0,
                hash: ZERO_HASH.to_owned(),
            },
        };
        self.check_head_not_ahead(&tail)?;
        Ok((tail, recovered))
    }

    /// Reads and parses the last complete line (range excludes the newline).
    fn read_tail_record(
        &self,
        file: &File,
        line: Range<u64>,
        complete_len: u64,
    ) -> Result<Tail, AuditError> {
        let corrupt = |reason: String| AuditError::CorruptTail {
            path: self.path.clone(),
            reason,
        };
        let size = usize::try_from(line.end - line.start)
            .ok()
            .filter(|&n| n < MAX_RECORD_BYTES)
            .ok_or_else(|| corrupt(format!("last line is longer than {MAX_RECORD_BYTES} bytes")))?;
        let mut bytes = vec![0; size];
        file.read_exact_at(&mut bytes, line.start)
            .map_err(io_err(&self.path, "read the last record of"))?;
        let record = parse_record(&bytes).map_err(corrupt)?;
        Ok(Tail {
            len: complete_len,
            seq: record.seq,
            hash: record.hash,
        })
    }

    /// Copies torn bytes to a durable `<log>.torn-<secs>` file, truncates
    /// them from the log and returns the event that records the recovery.
    fn set_aside_torn_tail(&self, file: &File, torn: Range<u64>) -> Result<AuditEvent, AuditError> {
        let (torn_path, mut out) = self.create_torn_file()?;
        let digest = copy_range(file, torn.clone(), &mut out)
            .map_err(io_err(&torn_path, "save the torn tail of the log into"))?;
        out.sync_all().map_err(io_err(&torn_path, "sync"))?;
        sync_parent_dir(&torn_path)?;
        file.set_len(torn.start)
            .map_err(io_err(&self.path, "truncate the torn tail of"))?;
        let name = torn_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        Ok(AuditEvent::new(RECOVERED_KIND)
            .with("torn_bytes", torn.end - torn.start)
            .with("torn_sha256", digest)
            .with("torn_file", name))
    }

    /// Creates `<log>.torn-<unix seconds>` (adding `-N` if that exists).
    fn create_torn_file(&self) -> Result<(PathBuf, File), AuditError> {
        let secs = crate::unix_now();
        let mut attempt = 0u32;
        loop {
            let suffix = match attempt {
                0 => format!(".torn-{secs}"),
                n => format!(".torn-{secs}-{n}"),
            };
            let candidate = side_path(&self.path, &suffix);
            let opened = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&candidate);
            match opened {
                Ok(out) => return Ok((candidate, out)),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 1000 => {
                    attempt += 1;
                }
                Err(e) => return Err(io_err(&candidate, "create")(e)),
            }
        }
    }

    /// Refuses to chain onto a log that is shorter than (or disagrees with)
    /// its head file. An unreadable head is left for `verify` to report; it
    /// is overwritten by the next append.
    fn check_head_not_ahead(&self, tail: &Tail) -> Result<(), AuditError> {
        let head = match read_head(&self.head_path) {
            Ok(Some(head)) => head,
            Ok(None) | Err(_) => return Ok(()),
        };
        let detail = if head.seq > tail.seq {
            format!(
                "log ends at seq {} but the head file says {} (log truncated)",
                tail.seq, head.seq
            )
        } else if head.seq == tail.seq && head.hash != tail.hash {
            format!(
                "record {} has hash {} but the head file says {} (log rewritten)",
                tail.seq, tail.hash, head.hash
            )
        } else {
            return Ok(());
        };
        Err(AuditError::HeadMismatch {
            path: self.path.clone(),
            head: self.head_path.clone(),
            detail,
        })
    }

    /// Serialises the events as consecutive records after `tail`.
    fn encode_batch(
        &self,
        tail: Tail,
        events: Vec<AuditEvent>,
    ) -> Result<(Vec<u8>, Vec<AuditRecord>, Tail), AuditError> {
        let mut bytes = Vec::new();
        let mut records = Vec::with_capacity(events.len());
        let (mut seq, mut prev) = (tail.seq, tail.hash);
        for event in events {
            seq = seq.checked_add(1).ok_or_else(|| AuditError::CorruptTail {
                path: self.path.clone(),
                reason: "seq would overflow".to_owned(),
            })?;
            let time = now_rfc3339();
            let (line, hash) =
                encode_record(seq, &time, &prev, &event).map_err(|source| AuditError::Encode {
                    path: self.path.clone(),
                    source,
                })?;
            bytes.extend_from_slice(&line);
            prev.clone_from(&hash);
            records.push(AuditRecord {
                seq,
                time,
                hash,
                event,
            });
        }
        let len = tail.len + bytes.len() as u64;
        Ok((
            bytes,
            records,
            Tail {
                len,
                seq,
                hash: prev,
            },
        ))
    }

    /// One write (the file is O_APPEND and we hold the lock), then fdatasync.
    fn write_durably(&self, file: &File, bytes: &[u8]) -> Result<(), AuditError> {
        let mut writer = file;
        writer
            .write_all(bytes)
            .map_err(io_err(&self.path, "write"))?;
        file.sync_data().map_err(io_err(&self.path, "sync"))
    }

    /// Replaces `<log>.head` atomically. Called only after the log is synced,
    /// so the head is never ahead of the log. The directory is not synced:
    /// after a crash the old head may come back, which only lags.
    fn write_head(&self, tail: &Tail) -> Result<(), AuditError> {
        let tmp = side_path(&self.path, ".head.tmp");
        let body = format!("{{\"seq\":{},\"hash\":\"{}\"}}\n", tail.seq, tail.hash);
        let mut out = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp, "create"))?;
        out.write_all(body.as_bytes())
            .map_err(io_err(&tmp, "write"))?;
        out.sync_data().map_err(io_err(&tmp, "sync"))?;
        fs::rename(&tmp, &self.head_path).map_err(io_err(&self.head_path, "replace"))
    }

    fn invalid(&self, reason: String) -> AuditError {
        AuditError::InvalidEvent {
            path: self.path.clone(),
            reason,
        }
    }
}

/// Verifies the whole chain of the log at `path` and compares its end with
/// the head file. Returns `Err` only if the log cannot be opened or read.
///
/// Takes a shared lock just long enough to snapshot the log length and head
/// file together, then checks the bytes up to that length, so it can run
/// while writers append. Problems are reported on the line where the chain
/// breaks: for a removed record that is the line *after* the gap (whose
/// `prev` and `seq` no longer fit); for an altered record, its own line.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    let file = File::open(path).map_err(io_err(path, "open"))?;
    let (len, head) = snapshot(&file, path)?;
    let mut checker = ChainChecker::new(head);
    let mut reader = BufReader::new(file.take(len));
    let mut line = Vec::new();
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io_err(path, "read"))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        if line.pop() != Some(b'\n') {
            checker.problem(line_no, "incomplete last line (torn write)");
            break;
        }
        checker.check_line(line_no, &line);
    }
    Ok(checker.finish())
}

/// Log length and head file, read together under a shared lock.
fn snapshot(file: &File, path: &Path) -> Result<(u64, HeadState), AuditError> {
    let _lock = FileLock::acquire(file, false).map_err(io_err(path, "lock"))?;
    let len = file.metadata().map_err(io_err(path, "stat"))?.len();
    Ok((len, read_head(&side_path(path, ".head"))))
}

/// Contents of `<log>.head`.
#[derive(Debug, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
}

/// `Ok(None)`: no head file; `Err`: unreadable or malformed.
type HeadState = Result<Option<Head>, String>;

fn read_head(path: &Path) -> HeadState {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let head: Head = serde_json::from_slice(&bytes).map_err(|e| e.to_string())?;
    if !is_hex_hash(&head.hash) {
        return Err("hash is not 64 lowercase hex digits".to_owned());
    }
    Ok(Some(head))
}

/// Walks the records in order and collects problems.
struct ChainChecker {
    head: HeadState,
    /// Line and stored hash of the record whose seq is the head's.
    head_record: Option<(u64, String)>,
    last: Option<Link>,
    /// The previous line was not a record, so the next link cannot be checked.
    resync: bool,
    lines: u64,
    records: u64,
    problems: Vec<Problem>,
}

/// The last record seen, for checking the next one's `prev` and `seq`.
struct Link {
    line: u64,
    seq: u64,
    hash: String,
}

impl ChainChecker {
    fn new(head: HeadState) -> Self {
        Self {
            head,
            head_record: None,
            last: None,
            resync: false,
            lines: 0,
            records: 0,
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, line: u64, message: impl Into<String>) {
        self.problems.push(Problem {
            line,
            message: message.into(),
        });
    }

    fn check_line(&mut self, line: u64, bytes: &[u8]) {
        self.lines = line;
        let record = match parse_record(bytes) {
            Ok(record) => record,
            Err(message) => {
                self.problem(line, message);
                self.resync = true;
                return;
            }
        };
        if !record.hash_ok {
            self.problem(line, "hash mismatch (record altered)");
        }
        if !self.resync {
            self.check_link(line, &record);
        }
        self.note_head_record(line, &record);
        self.records += 1;
        self.resync = false;
        self.last = Some(Link {
            line,
            seq: record.seq,
            hash: record.hash,
        });
    }

    /// Checks `prev` and `seq` against the previous record (or the genesis).
    fn check_link(&mut self, line: u64, record: &ParsedRecord) {
        let Some(last) = &self.last else {
            if record.prev != ZERO_HASH {
                self.problem(
                    line,
                    "prev of the first record is not all zeros (earlier records were removed)",
                );
            }
            if record.seq != 1 {
                let message = format!(
                    "first record has seq {}, expected 1 (earlier records were removed)",
                    record.seq
                );
                self.problem(line, message);
            }
            return;
        };
        let mut found = Vec::new();
        if record.prev != last.hash {
            found.push(format!(
                "prev does not match line {}'s hash (a record was removed or reordered)",
                last.line
            ));
        }
        if last.seq.checked_add(1) != Some(record.seq) {
            let why = if record.seq > last.seq {
                "a record was removed"
            } else {
                "records reordered or duplicated"
            };
            found.push(format!("seq {} follows {} ({why})", record.seq, last.seq));
        }
        for message in found {
            self.problem(line, message);
        }
    }

    fn note_head_record(&mut self, line: u64, record: &ParsedRecord) {
        let is_head = matches!(&self.head, Ok(Some(head)) if head.seq == record.seq);
        if is_head && self.head_record.is_none() {
            self.head_record = Some((line, record.hash.clone()));
        }
    }

    fn finish(mut self) -> VerifyReport {
        self.check_head();
        let last_hash = self
            .last
            .as_ref()
            .map_or_else(|| ZERO_HASH.to_owned(), |last| last.hash.clone());
        VerifyReport {
            records: self.records,
            last_hash,
            problems: self.problems,
        }
    }

    /// Compares the end of the log with the head file.
    fn check_head(&mut self) {
        let head = match std::mem::replace(&mut self.head, Ok(None)) {
            Ok(Some(head)) => head,
            Ok(None) => {
                if self.lines > 0 {
                    self.problem(0, "head file missing");
                }
                return;
            }
            Err(e) => {
                self.problem(0, format!("head file unreadable: {e}"));
                return;
            }
        };
        let last_seq = self.last.as_ref().map_or(0, |last| last.seq);
        if head.seq > last_seq {
            let message = format!(
                "log ends at seq {last_seq} but the head file says {} (log truncated)",
                head.seq
            );
            self.problem(0, message);
            return;
        }
        match self.head_record.take() {
            None => {
                let message = format!("no record has the head file's seq {}", head.seq);
                self.problem(0, message);
            }
            Some((line, hash)) if hash != head.hash => {
                let message = format!(
                    "hash differs from the head file's for seq {} (log rewritten)",
                    head.seq
                );
                self.problem(line, message);
            }
            Some(_) => {}
        }
    }
}

/// What verification needs from one line.
#[derive(Debug)]
struct ParsedRecord {
    seq: u64,
    prev: String,
    /// The stored `hash` member (chained on even if it does not match).
    hash: String,
    /// Whether `hash` matches the line's bytes.
    hash_ok: bool,
}

/// Parses a line (without its newline) and recomputes its hash from its
/// bytes. `Err` carries a problem message.
fn parse_record(line: &[u8]) -> Result<ParsedRecord, String> {
    let value: Value = serde_json::from_slice(line).map_err(|_| "not valid JSON".to_owned())?;
    let object = value
        .as_object()
        .ok_or_else(|| "not a JSON object".to_owned())?;
    let seq = object
        .get("seq")
        .and_then(Value::as_u64)
        .ok_or_else(|| "missing or invalid \"seq\"".to_owned())?;
    for key in ["time", "event"] {
        if !object.get(key).is_some_and(Value::is_string) {
            return Err(format!("missing or invalid \"{key}\""));
        }
    }
    let prev = hex_member(object, "prev")?;
    let hash = hex_member(object, "hash")?;
    let suffix = format!(",\"hash\":\"{hash}\"}}");
    let unsigned = line
        .strip_suffix(suffix.as_bytes())
        .ok_or_else(|| "\"hash\" is not the last member".to_owned())?;
    let hash_ok = hash_unsigned(unsigned) == hash;
    Ok(ParsedRecord {
        seq,
        prev: prev.to_owned(),
        hash: hash.to_owned(),
        hash_ok,
    })
}

fn hex_member<'a>(object: &'a Map<String, Value>, key: &str) -> Result<&'a str, String> {
    object
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| is_hex_hash(s))
        .ok_or_else(|| format!("missing or invalid \"{key}\""))
}

fn is_hex_hash(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// SHA-256 (lowercase hex) of `open_object` followed by `}`: the unsigned
/// line, where `open_object` is everything before `,"hash":...`.
fn hash_unsigned(open_object: &[u8]) -> String {
    let mut hasher = Sha256::new();
    hasher.update(open_object);
    hasher.update(b"}");
    hex::encode(hasher.finalize())
}

/// Serialises one record line (with its newline) and returns it with its hash.
fn encode_record(
    seq: u64,
    time: &str,
    prev: &str,
    event: &AuditEvent,
) -> Result<(Vec<u8>, String), serde_json::Error> {
    let mut line = Vec::with_capacity(256);
    line.extend_from_slice(format!("{{\"seq\":{seq},\"time\":").as_bytes());
    serde_json::to_writer(&mut line, time)?;
    line.extend_from_slice(b",\"event\":");
    serde_json::to_writer(&mut line, &event.kind)?;
    line.extend_from_slice(b",\"prev\":");
    serde_json::to_writer(&mut line, prev)?;
    for (key, value) in &event.fields {
        line.push(b',');
        serde_json::to_writer(&mut line, key)?;
        line.push(b':');
        serde_json::to_writer(&mut line, value)?;
    }
    let hash = hash_unsigned(&line);
    line.extend_from_slice(format!(",\"hash\":\"{hash}\"}}\n").as_bytes());
    Ok((line, hash))
}

/// Checks kind, field names and size, so that nothing can fail to encode
/// once the lock is held and a torn tail may have been set aside.
fn validate_event(event: &AuditEvent) -> Result<(), String> {
    let kind_ok = !event.kind.is_empty()
        && event.kind.len() <= MAX_KIND_LEN
        && event
            .kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !kind_ok {
        return Err(format!(
            "event kind {:?} must be 1 to {MAX_KIND_LEN} characters of [A-Za-z0-9._-]",
            event.kind
        ));
    }
    match RESERVED_FIELDS
        .iter()
        .find(|key| event.fields.contains_key(**key))
    {
        Some(key) => Err(format!(
            "{} event uses the reserved field name {key:?}",
            event.kind
        )),
        None => check_encoded_size(event),
    }
}

/// Encodes the event with the longest possible envelope (20-digit seq) to
/// bound its line length.
fn check_encoded_size(event: &AuditEvent) -> Result<(), String> {
    let (line, _) = encode_record(u64::MAX, &now_rfc3339(), ZERO_HASH, event)
        .map_err(|e| format!("{} event cannot be encoded: {e}", event.kind))?;
    if line.len() > MAX_RECORD_BYTES {
        return Err(format!(
            "{} record would be {} bytes, more than the {MAX_RECORD_BYTES} byte limit",
            event.kind,
            line.len()
        ));
    }
    Ok(())
}

fn now_rfc3339() -> String {
    chrono::DateTime::<chrono::Utc>::from(crate::clock::now())
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Where the complete lines end and what follows them.
#[derive(Debug, PartialEq)]
struct TailScan {
    /// Length up to and including the last `\n`.
    complete_len: u64,
    /// Byte range of the last complete line, without its `\n`.
    last_line: Option<Range<u64>>,
    /// Bytes after the last `\n` (a torn write), if any.
    torn: Option<Range<u64>>,
}

/// Finds the last complete line and any torn bytes of a file of length
/// `len`, reading backwards in chunks.
fn scan_tail(file: &File, len: u64) -> io::Result<TailScan> {
    let complete_len = line_start_before(file, len)?;
    let torn = (complete_len < len).then_some(complete_len..len);
    let last_line = match complete_len {
        0 => None,
        end => Some(line_start_before(file, end - 1)?..end - 1),
    };
    Ok(TailScan {
        complete_len,
        last_line,
        torn,
    })
}

/// Offset just after the last `\n` in `[0, end)`, or 0 if there is none.
fn line_start_before(file: &File, end: u64) -> io::Result<u64> {
    let mut buf = [0u8; TAIL_CHUNK];
    let mut pos = end;
    while pos > 0 {
        let n = usize::try_from(pos).map_or(TAIL_CHUNK, |p| p.min(TAIL_CHUNK));
        let start = pos - n as u64;
        file.read_exact_at(&mut buf[..n], start)?;
        if let Some(i) = buf[..n].iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        pos = start;
    }
    Ok(0)
}

/// Copies `range` of `file` into `out`; returns the SHA-256 (hex) of the bytes.
fn copy_range(file: &File, range: Range<u64>, out: &mut File) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut pos = range.start;
    while pos < range.end {
        let n = usize::try_from(range.end - pos).map_or(buf.len(), |r| r.min(buf.len()));
        file.read_exact_at(&mut buf[..n], pos)?;
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n])?;
        pos += n as u64;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// `<log><suffix>`, e.g. `audit.log.head`.
fn side_path(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

fn create_parent_dirs(path: &Path) -> Result<(), AuditError> {
    let parent = parent_dir(path);
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .map_err(io_err(parent, "create directory"))
}

/// Makes a new directory entry (log or torn file) durable.
fn sync_parent_dir(path: &Path) -> Result<(), AuditError> {
    let parent = parent_dir(path);
    File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(io_err(parent, "sync directory"))
}

fn io_err<'a>(path: &'a Path, action: &'static str) -> impl FnOnce(io::Error) -> AuditError + 'a {
    move |source| AuditError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

/// The audit log while [`AuditLog::with_lock`] holds its lock.
pub struct LockedAudit<'a> {
    log: &'a AuditLog,
    file: &'a File,
    tail: &'a mut Option<Tail>,
    pending: &'a mut Vec<AuditEvent>,
}

impl LockedAudit<'_> {
    /// [`AuditLog::append_batch`] under the lock already held.
    pub fn append_batch(
        &mut self,
        events: Vec<AuditEvent>,
    ) -> Result<Vec<AuditRecord>, AuditError> {
        for event in &events {
            validate_event(event).map_err(|reason| self.log.invalid(reason))?;
        }
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let result = self
            .log
            .commit_held(self.file, self.tail, self.pending, events);
        if result.is_err() {
            *self.tail = None;
        }
        result
    }
}

/// A whole-file lock (`flock(2)` on Linux) held until drop. Advisory: it orders cooperating
/// writers, across processes too (each open file description locks separately).
struct FileLock<'a> {
    file: &'a File,
}

impl<'a> FileLock<'a> {
    /// Waits for the lock: exclusive for writers, shared for readers.
    fn acquire(file: &'a File, exclusive: bool) -> io::Result<Self> {
        loop {
            let locked = if exclusive {
                file.lock()
            } else {
                file.lock_shared()
            };
            match locked {
                Ok(()) => return Ok(Self { file }),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(err),
            }
        }
    }
}

impl Drop for FileLock<'_> {
    fn drop(&mut self) {
        // Unlocking cannot fail in a way we could act on (closing the file releases it anyway).
        let _ = self.file.unlock();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;

    const CHILD_ENV: &str = "AUDIT_TEST_CHILD_LOG";
    const CHILD_APPENDS: u64 = 100;

    fn temp_log() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var/audit/ca.log");
        (dir, path)
    }

    fn issued(serial: u64) -> AuditEvent {
        AuditEvent::new("cert.issued")
            .with("serial", serial)
            .with("principal", "alice")
            .with("key_id", format!("alice@laptop #{serial}"))
    }

    /// A log with `n` records (head file up to date).
    fn log_with(n: u64) -> (tempfile::TempDir, PathBuf) {
        let (dir, path) = temp_log();
        let log = AuditLog::open(&path).unwrap();
        for i in 1..=n {
            log.append(issued(i)).unwrap();
        }
        (dir, path)
    }

    fn read_lines(path: &Path) -> Vec<String> {
        fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn write_lines(path: &Path, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        fs::write(path, text).unwrap();
    }

    fn records(path: &Path) -> Vec<Value> {
        read_lines(path)
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn assert_intact(path: &Path, expected: u64) -> VerifyReport {
        let report = verify(path).unwrap();
        assert!(report.is_intact(), "problems: {:?}", report.problems);
        assert_eq!(report.records, expected);
        let seqs: Vec<u64> = records(path)
            .iter()
            .map(|r| r["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=expected).collect::<Vec<_>>());
        report
    }

    fn problem_lines(report: &VerifyReport) -> Vec<u64> {
        report.problems.iter().map(|p| p.line).collect()
    }

    #[test]
    fn thousand_records_verify_and_reopen_continues_chain() {
        let (_dir, path) = temp_log();
        let log = AuditLog::open(&path).unwrap();
        let mut last = None;
        for i in 1..=1000 {
            let record = log.append(issued(i)).unwrap();
            assert_eq!(record.seq, i);
            last = Some(record);
        }
        drop(log);
        let report = assert_intact(&path, 1000);
        assert_eq!(report.last_hash, last.unwrap().hash);

        let log = AuditLog::open(&path).unwrap();
        let record = log.append(issued(1001)).unwrap();
        assert_eq!(record.seq, 1001);
        let lines = read_lines(&path);
        let prev: Value = serde_json::from_str(&lines[1000]).unwrap();
        assert_eq!(prev["prev"], report.last_hash.as_str());
        assert_intact(&path, 1001);
    }

    #[test]
    fn record_format_and_hash_definition() {
        let (_dir, path) = temp_log();
        let log = AuditLog::open(&path).unwrap();
        let event = AuditEvent::new("cert.issued")
            .with("principal", "bob")
            .with("serial", 7)
            .with("note", "quote \" newline \n unicode é");
        let first = log.append(event.clone()).unwrap();
        let second = log.append(AuditEvent::new("login")).unwrap();
        assert_eq!(first.event, event);

        let lines = read_lines(&path);
        assert!(lines[0].starts_with(r#"{"seq":1,"time":""#), "{}", lines[0]);
        assert!(
            lines[0].contains(&format!(r#","event":"cert.issued","prev":"{ZERO_HASH}","#)),
            "{}",
            lines[0]
        );
        let time = &first.time;
        assert_eq!(time.len(), 24, "{time}");
        assert!(time.ends_with('Z') && time.as_bytes()[19] == b'.', "{time}");
        assert!(lines[1].contains(&format!(r#""prev":"{}""#, first.hash)));

        // Independent implementation of the documented definition.
        for (line, record) in lines.iter().zip([&first, &second]) {
            let suffix = format!(r#","hash":"{}"}}"#, record.hash);
            let unsigned = format!("{}}}", line.strip_suffix(&suffix).unwrap());
            assert_eq!(
                hex::encode(Sha256::digest(unsigned.as_bytes())),
                record.hash
            );
            let value: Value = serde_json::from_str(line).unwrap();
            assert_eq!(value["hash"], record.hash.as_str());
        }
        let head = fs::read_to_string(side_path(&path, ".head")).unwrap();
        assert_eq!(
            head,
            format!("{{\"seq\":2,\"hash\":\"{}\"}}\n", second.hash)
        );
    }

    #[test]
    fn files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = log_with(1);
        for file in [path.clone(), side_path(&path, ".head")] {
            let mode = fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", file.display());
        }
    }

    #[test]
    fn threads_share_one_log() {
        let (_dir, path) = temp_log();
        let log = Arc::new(AuditLog::open(&path).unwrap());
        let handles: Vec<_> = (0..8u64)
            .map(|t| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    (0..200)
                        .map(|i| log.append(issued(t * 1000 + i)).unwrap().seq)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=1600).collect::<Vec<_>>());
        assert_intact(&path, 1600);
    }

    #[test]
    fn two_handles_interleave_like_two_processes() {
        let (_dir, path) = temp_log();
        let a = AuditLog::open(&path).unwrap();
        let b = AuditLog::open(&path).unwrap();
        std::thread::scope(|s| {
            for (name, log) in [("a", &a), ("b", &b)] {
                s.spawn(move || {
                    for i in 0..300 {
                        log.append(issued(i).with("writer", name)).unwrap();
                    }
                });
            }
        });
        assert_intact(&path, 600);
        let writers: HashSet<String> = records(&path)
            .iter()
            .map(|r| r["writer"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(writers.len(), 2);
    }

    /// Runs as a child process of `separate_processes_append_concurrently`;
    /// a no-op in a normal test run.
    #[test]
    fn child_appender() {
        let Ok(path) = std::env::var(CHILD_ENV) else {
            return;
        };
        let log = AuditLog::open(Path::new(&path)).unwrap();
        for i in 0..CHILD_APPENDS {
            log.append(issued(i).with("pid", std::process::id()))
                .unwrap();
        }
    }

    #[test]
    fn separate_processes_append_concurrently() {
        let (_dir, path) = temp_log();
        let parent = AuditLog::open(&path).unwrap();
        let exe = std::env::current_exe().unwrap();
        // Test names omit the crate: `audit::tests::child_appender`.
        let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
        let child_test = format!("{module}::child_appender");
        let children: Vec<_> = (0..3)
            .map(|_| {
                std::process::Command::new(&exe)
                    .args(["--exact", child_test.as_str(), "--test-threads=1"])
                    .env(CHILD_ENV, &path)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for i in 0..CHILD_APPENDS {
            parent
                .append(issued(i).with("pid", std::process::id()))
                .unwrap();
        }
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
        assert_intact(&path, 4 * CHILD_APPENDS);
        let pids: HashSet<u64> = records(&path)
            .iter()
            .map(|r| r["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(pids.len(), 4);
    }

    #[test]
    fn untouched_log_passes() {
        let (_dir, path) = log_with(10);
        let report = assert_intact(&path, 10);
        assert_eq!(report.last_hash.len(), 64);
    }

    #[test]
    fn altered_field_names_its_line() {
        let (_dir, path) = log_with(10);
        let mut lines = read_lines(&path);
        assert!(lines[4].contains(r#""principal":"alice""#));
        lines[4] = lines[4].replace(r#""principal":"alice""#, r#""principal":"alicf""#);
        write_lines(&path, &lines);
        let report = verify(&path).unwrap();
        assert_eq!(problem_lines(&report), vec![5], "{:?}", report.problems);
        assert_eq!(
            report.problems[0].to_string(),
            "line 5: hash mismatch (record altered)"
        );
    }

    #[test]
    fn deleted_record_is_reported_on_the_line_after_the_gap() {
        let (_dir, path) = log_with(10);
        let mut lines = read_lines(&path);
        lines.remove(6);
        write_lines(&path, &lines);
        let report = verify(&path).unwrap();
        let messages: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(
            messages,
            vec![
                "line 7: prev does not match line 6's hash (a record was removed or reordered)",
                "line 7: seq 8 follows 6 (a record was removed)",
            ]
        );
    }

    #[test]
    fn swapped_records_are_reported() {
        let (_dir, path) = log_with(10);
        let mut lines = read_lines(&path);
        lines.swap(3, 4);
        write_lines(&path, &lines);
        let report = verify(&path).unwrap();
        let lines_hit: HashSet<u64> = problem_lines(&report).into_iter().collect();
        assert!(
            lines_hit.contains(&4) && lines_hit.contains(&5),
            "{:?}",
            report.problems
        );
        assert!(
            report
                .problems
                .iter()
                .any(|p| p.message.contains("reordered or duplicated")),
            "{:?}",
            report.problems
        );
        assert!(
            !report
                .problems
                .iter()
                .any(|p| p.message.contains("hash mismatch"))
        );
    }

    #[test]
    fn truncated_log_is_reported_and_refused() {
        let (_dir, path) = log_with(10);
        let lines = read_lines(&path);
        write_lines(&path, &lines[..7]);
        let report = verify(&path).unwrap();
        assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
        assert_eq!(
            report.problems[0].to_string(),
            "log ends at seq 7 but the head file says 10 (log truncated)"
        );
        let err = AuditLog::open(&path).unwrap_err();
        assert!(matches!(err, AuditError::HeadMismatch { .. }), "{err}");
        assert!(err.to_string().contains("ca.log.head"), "{err}");

        // The operator accepts the shortened log by moving the head aside.
        fs::rename(side_path(&path, ".head"), side_path(&path, ".head.old")).unwrap();
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.append(issued(8)).unwrap().seq, 8);
        assert_intact(&path, 8);
    }

    #[test]
    fn rewritten_last_record_is_reported() {
        let (_dir, path) = log_with(3);
        // Rewrite the last record consistently (recomputed hash).
        let lines = read_lines(&path);
        let last: Value = serde_json::from_str(&lines[2]).unwrap();
        let (line, _) = encode_record(
            3,
            last["time"].as_str().unwrap(),
            last["prev"].as_str().unwrap(),
            &issued(3).with("principal", "mallory"),
        )
        .unwrap();
        let mut text = lines[..2].join("\n");
        text.push('\n');
        text.push_str(std::str::from_utf8(&line).unwrap());
        fs::write(&path, text).unwrap();
        let report = verify(&path).unwrap();
        assert_eq!(problem_lines(&report), vec![3], "{:?}", report.problems);
        assert!(report.problems[0].message.contains("log rewritten"));
        assert!(matches!(
            AuditLog::open(&path).unwrap_err(),
            AuditError::HeadMismatch { .. }
        ));
    }

    #[test]
    fn missing_head_file_is_reported() {
        let (_dir, path) = log_with(2);
        fs::remove_file(side_path(&path, ".head")).unwrap();
        let report = verify(&path).unwrap();
        assert_eq!(report.problems.len(), 1);
        assert_eq!(report.problems[0].to_string(), "head file missing");
    }

    #[test]
    fn garbage_line_is_reported_once() {
        let (_dir, path) = log_with(5);
        let mut lines = read_lines(&path);
        lines[2] = "{not json".to_owned();
        write_lines(&path, &lines);
        let report = verify(&path).unwrap();
        let messages: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(messages, vec!["line 3: not valid JSON"]);
        assert_eq!(report.records, 4);
    }

    fn append_raw(path: &Path, bytes: &[u8]) {
        let mut file = OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(bytes).unwrap();
    }

    fn torn_files(path: &Path) -> Vec<PathBuf> {
        let prefix = format!("{}.torn-", path.file_name().unwrap().to_str().unwrap());
        fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with(&prefix)
            })
            .collect()
    }

    fn assert_recovered(path: &Path, torn: &[u8], expected_records: u64) {
        assert_intact(path, expected_records);
        let saved = torn_files(path);
        assert_eq!(saved.len(), 1);
        assert_eq!(fs::read(&saved[0]).unwrap(), torn);
        let recovered: Vec<Value> = records(path)
            .into_iter()
            .filter(|r| r["event"] == RECOVERED_KIND)
            .collect();
        assert_eq!(recovered.len(), 1);
        assert_eq!(recovered[0]["torn_bytes"], torn.len() as u64);
        assert_eq!(
            recovered[0]["torn_sha256"],
            hex::encode(Sha256::digest(torn)).as_str()
        );
        assert_eq!(
            recovered[0]["torn_file"],
            saved[0].file_name().unwrap().to_str().unwrap()
        );
    }

    #[test]
    fn torn_tail_is_set_aside_on_open() {
        let (_dir, path) = log_with(5);
        let sixth = read_lines(&path)[4].clone();
        let torn = &sixth.as_bytes()[..sixth.len() / 2];
        append_raw(&path, torn);

        let report = verify(&path).unwrap();
        let messages: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(messages, vec!["line 6: incomplete last line (torn write)"]);

        let log = AuditLog::open(&path).unwrap();
        let record = log.append(issued(6)).unwrap();
        assert_eq!(record.seq, 7, "seq 6 is the audit.recovered record");
        assert_recovered(&path, torn, 7);
    }

    #[test]
    fn torn_tail_left_by_another_process_is_set_aside_on_append() {
        let (_dir, path) = log_with(3);
        let log = AuditLog::open(&path).unwrap();
        // A complete record missing only its newline is still torn: the
        // writer never got its fsync back.
        let (line, _) = encode_record(4, &now_rfc3339(), ZERO_HASH, &issued(4)).unwrap();
        let torn = &line[..line.len() - 1];
        append_raw(&path, torn);
        let records = log.append_batch(vec![issued(5), issued(6)]).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            vec![5, 6]
        );
        assert_recovered(&path, torn, 6);
    }

    #[test]
    fn torn_only_line_in_new_log() {
        let (_dir, path) = temp_log();
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, b"{\"seq\":1,\"ti").unwrap();
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.append(issued(1)).unwrap().seq, 2);
        assert_recovered(&path, b"{\"seq\":1,\"ti", 2);
    }

    #[test]
    fn append_batch_assigns_consecutive_seqs() {
        let (_dir, path) = log_with(2);
        let log = AuditLog::open(&path).unwrap();
        let events: Vec<AuditEvent> = (0..64).map(issued).collect();
        let records = log.append_batch(events.clone()).unwrap();
        assert_eq!(
            records.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (3..=66).collect::<Vec<_>>()
        );
        assert_eq!(
            records.into_iter().map(|r| r.event).collect::<Vec<_>>(),
            events
        );
        assert!(log.append_batch(Vec::new()).unwrap().is_empty());
        assert_intact(&path, 66);
    }

    #[test]
    fn invalid_events_are_rejected_before_writing() {
        let (_dir, path) = log_with(1);
        let log = AuditLog::open(&path).unwrap();
        let bad = [
            AuditEvent::new(""),
            AuditEvent::new("cert issued"),
            issued(1).with("hash", "x"),
            issued(1).with("seq", 3),
            issued(1).with("blob", "x".repeat(MAX_RECORD_BYTES)),
        ];
        for event in bad {
            let err = log.append_batch(vec![issued(2), event]).unwrap_err();
            assert!(matches!(err, AuditError::InvalidEvent { .. }), "{err}");
            assert!(err.to_string().contains("ca.log"), "{err}");
        }
        assert_eq!(log.append(issued(2)).unwrap().seq, 2);
        assert_intact(&path, 2);
    }

    #[test]
    fn long_last_line_is_found_by_chunked_tail_read() {
        let (_dir, path) = temp_log();
        let log = AuditLog::open(&path).unwrap();
        log.append(issued(1)).unwrap();
        let big = log
            .append(issued(2).with("blob", "y".repeat(3 * TAIL_CHUNK + 17)))
            .unwrap();
        drop(log);
        let log = AuditLog::open(&path).unwrap();
        assert_eq!(log.append(issued(3)).unwrap().seq, 3);
        let third: Value = serde_json::from_str(&read_lines(&path)[2]).unwrap();
        assert_eq!(third["prev"], big.hash.as_str());
        assert_intact(&path, 3);
    }

    #[test]
    fn corrupt_last_line_refuses_to_chain() {
        let (_dir, path) = log_with(2);
        append_raw(&path, b"garbage\n");
        let err = AuditLog::open(&path).unwrap_err();
        assert!(matches!(err, AuditError::CorruptTail { .. }), "{err}");
    }

    #[test]
    fn verify_of_missing_file_is_an_error() {
        let (_dir, path) = temp_log();
        assert!(matches!(verify(&path), Err(AuditError::Io { .. })));
    }

    #[test]
    fn empty_log_is_intact() {
        let (_dir, path) = temp_log();
        AuditLog::open(&path).unwrap();
        let report = verify(&path).unwrap();
        assert!(report.is_intact());
        assert_eq!(report.records, 0);
        assert_eq!(report.last_hash, ZERO_HASH);
    }
}
