//! Recording quotas: how much of the bastion's disk one session, one person and all sessions
//! together may fill.
//!
//! Any person with a pty can print as fast as the target writes (`cat /dev/urandom | base64`
//! records about 17 MB/s), and a full disk also stops the audit log, after which every login
//! is refused. So three limits (`[recordings]` in `bastion.toml`):
//!
//! - **per session** ([`RecordingPolicy::max_session_bytes`], default 256 MiB): bytes the
//!   session's recording files (casts, journal, chain) may take;
//! - **per person** ([`RecordingPolicy::max_person_bytes`] over
//!   [`RecordingPolicy::person_window_secs`], default 2 GiB per 24 hours): bytes recorded by
//!   all the person's sessions that started in the window (kept in memory, and after a
//!   restart taken from the session index and the recordings' sizes on disk the first time
//!   the person is seen);
//! - **free space** ([`RecordingPolicy::min_free_bytes`], default 1 GiB): below it, new
//!   sessions are refused and running ones stop storing terminal content. That space is the
//!   audit log's reserve: recordings stop before the disk is full, the audit log does not.
//!
//! Past a limit the session goes on, and each output stream of its terminal channels is
//! recorded as size and SHA-256 from then on, exactly like bulk output of commands without a
//! pty (see `recording::bulk`, reason `quota`): a note in the cast where it stops and one with
//! the totals at the end, `recording.quota` and `output.bulk`/`output.bulk.end` in the
//! journal, the digests in the seal (so `verify` still vouches for them); keystrokes,
//! resizes and transfer content are no longer stored. The session reports the hit once
//! ([`super::Recorder::take_quota`]) for the audit log.
//!
//! [`RecordingPolicy::max_session_bytes`]: super::RecordingPolicy::max_session_bytes
//! [`RecordingPolicy::max_person_bytes`]: super::RecordingPolicy::max_person_bytes
//! [`RecordingPolicy::person_window_secs`]: super::RecordingPolicy::person_window_secs
//! [`RecordingPolicy::min_free_bytes`]: super::RecordingPolicy::min_free_bytes

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use jitssh_core::store::{SessionFilter, SessionIndex};
use serde::{Deserialize, Serialize};

use super::model::{BulkSwitch, RecordingPolicy};

/// Default of `max_session_bytes`: 256 MiB, hours of busy terminal output.
pub const DEFAULT_MAX_SESSION_BYTES: u64 = 256 << 20;
/// Default of `max_person_bytes`: 2 GiB per window.
pub const DEFAULT_MAX_PERSON_BYTES: u64 = 2 << 30;
/// Default of `person_window_secs`: a day.
pub const DEFAULT_PERSON_WINDOW_SECS: u64 = 24 * 3600;
/// Default of `min_free_bytes`: 1 GiB left for the audit log and the rest of the system.
pub const DEFAULT_MIN_FREE_BYTES: u64 = 1 << 30;

/// Which limit a session reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuotaKind {
    /// `max_session_bytes`.
    Session,
    /// `max_person_bytes` over the window.
    Person,
    /// The disk fell below `min_free_bytes`.
    Disk,
}

impl QuotaKind {
    /// The name used in the journal and the audit log.
    pub fn as_str(self) -> &'static str {
        match self {
            QuotaKind::Session => "session",
            QuotaKind::Person => "person",
            QuotaKind::Disk => "disk",
        }
    }
}

/// A session reached a recording limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuotaHit {
    /// Which one.
    pub kind: QuotaKind,
    /// The limit in bytes (for `disk`, the free-space floor).
    pub limit: u64,
    /// Bytes the session had recorded when it was reached.
    pub recorded: u64,
}

impl fmt::Display for QuotaHit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            QuotaKind::Session => write!(
                f,
                "the session's recording quota of {} bytes is reached",
                self.limit
            ),
            QuotaKind::Person => write!(
                f,
                "the person's recording quota of {} bytes is reached",
                self.limit
            ),
            QuotaKind::Disk => write!(
                f,
                "the recordings disk has less than {} bytes free",
                self.limit
            ),
        }
    }
}

/// The cast line where a stream stops being stored because of `hit`.
pub(crate) fn switch_note(stream: &str, switch: &BulkSwitch, hit: &QuotaHit) -> String {
    format!(
        "[ssh-bastion: {hit}; from byte {} on, {stream} is recorded as size and SHA-256 only]\n",
        switch.offset
    )
}

/// The recordings disk is too full for a new session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the recordings disk is low ({free} bytes free, below [recordings] min_free_bytes = {floor}); new sessions are refused until space is freed"
)]
pub struct LowDisk {
    /// The recordings root.
    pub root: PathBuf,
    /// Bytes available to the bastion.
    pub free: u64,
    /// The floor.
    pub floor: u64,
}

/// One session's entry in the person tally.
#[derive(Debug)]
struct Entry {
    started_at: u64,
    used: Arc<AtomicU64>,
}

/// The limits shared by every session: the person tally and the free-space watch.
pub struct Quotas {
    root: PathBuf,
    max_person_bytes: u64,
    window_secs: u64,
    min_free_bytes: u64,
    /// Sessions by person, pruned when they leave the window.
    tally: Mutex<HashMap<String, Vec<Entry>>>,
    /// Whether the disk was below the floor at the last look (to log crossings once).
    low: AtomicBool,
    /// Where to find a person's earlier sessions the first time they are seen.
    index: Option<Arc<dyn SessionIndex>>,
}

impl fmt::Debug for Quotas {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Quotas")
            .field("root", &self.root)
            .field("max_person_bytes", &self.max_person_bytes)
            .field("window_secs", &self.window_secs)
            .field("min_free_bytes", &self.min_free_bytes)
            .field("persons", &self.tally.try_lock().map(|t| t.len()).ok())
            .finish_non_exhaustive()
    }
}

impl Quotas {
    /// The limits of `policy` for recordings under `root`.
    pub fn new(root: &Path, policy: &RecordingPolicy) -> Quotas {
        Quotas {
            root: root.to_path_buf(),
            max_person_bytes: policy.max_person_bytes,
            window_secs: policy.person_window_secs,
            min_free_bytes: policy.min_free_bytes,
            tally: Mutex::new(HashMap::new()),
            low: AtomicBool::new(false),
            index: None,
        }
    }

    /// Seeds a person's tally from `index` (sessions started in the window, with the size
    /// of their recordings on disk) the first time the person is seen, so a restart does not
    /// reset it.
    pub fn with_index(mut self, index: Arc<dyn SessionIndex>) -> Quotas {
        self.index = Some(index);
        self
    }

    /// Admission of a new session: refused when the disk is below the floor.
    pub fn admit(&self) -> Result<(), LowDisk> {
        match self.disk_low() {
            Some(free) => Err(LowDisk {
                root: self.root.clone(),
                free,
                floor: self.min_free_bytes,
            }),
            None => Ok(()),
        }
    }

    /// Opens `person`'s account for a session starting now (call it before the session is
    /// in the index). Blocking I/O the first time a person is seen.
    pub fn account(self: &Arc<Self>, person: &str) -> PersonAccount {
        let now = jitssh_core::unix_now();
        let used = Arc::new(AtomicU64::new(0));
        let cutoff = now.saturating_sub(self.window_secs);
        let known = self.lock().get(person).is_some_and(|e| !e.is_empty());
        // Outside the lock: an index query and a few stats.
        let earlier = if known {
            Vec::new()
        } else {
            self.earlier_sessions(person, cutoff)
        };
        let mut tally = self.lock();
        tally.retain(|_, entries| {
            entries.retain(|e| e.started_at >= cutoff);
            !entries.is_empty()
        });
        let entries = tally.entry(person.to_owned()).or_default();
        if entries.is_empty() {
            entries.extend(earlier);
        }
        entries.push(Entry {
            started_at: now,
            used: used.clone(),
        });
        PersonAccount {
            quotas: self.clone(),
            person: person.to_owned(),
            used,
        }
    }

    /// `person`'s sessions that started since `cutoff`, from the index, each with the bytes
    /// its recording takes on disk. Errors count as nothing recorded (logged).
    fn earlier_sessions(&self, person: &str, cutoff: u64) -> Vec<Entry> {
        let Some(index) = &self.index else {
            return Vec::new();
        };
        let filter = SessionFilter {
            user: Some(person.to_owned()),
            since: Some(cutoff),
            ..SessionFilter::default()
        };
        let sessions = match index.list_sessions(&filter) {
            Ok(sessions) => sessions,
            Err(err) => {
                tracing::warn!(%person, "recording quota: cannot read the session index: {err}");
                return Vec::new();
            }
        };
        sessions
            .into_iter()
            .filter(|s| s.started_at >= cutoff)
            .map(|s| Entry {
                started_at: s.started_at,
                used: Arc::new(AtomicU64::new(dir_size(Path::new(&s.recording)))),
            })
            .collect()
    }

    /// Bytes recorded by `person`'s sessions in the window.
    fn person_total(&self, person: &str) -> u64 {
        let cutoff = jitssh_core::unix_now().saturating_sub(self.window_secs);
        self.lock().get(person).map_or(0, |entries| {
            entries
                .iter()
                .filter(|e| e.started_at >= cutoff)
                .map(|e| e.used.load(Ordering::Relaxed))
                .fold(0u64, u64::saturating_add)
        })
    }

    /// `Some(free bytes)` when the recordings disk is below the floor; logs each crossing.
    /// A disk that cannot be looked at counts as low (fail closed).
    fn disk_low(&self) -> Option<u64> {
        if self.min_free_bytes == 0 {
            return None;
        }
        let free = free_bytes(&self.root);
        let low = free.is_none_or(|f| f < self.min_free_bytes);
        let was = self.low.swap(low, Ordering::Relaxed);
        if low && !was {
            tracing::error!(
                root = %self.root.display(),
                free = ?free,
                min_free_bytes = self.min_free_bytes,
                "recordings disk below min_free_bytes: new sessions are refused and running ones stop storing terminal content"
            );
        } else if !low && was {
            tracing::warn!(
                root = %self.root.display(),
                free = ?free,
                "recordings disk above min_free_bytes again: sessions are admitted"
            );
        }
        low.then_some(free.unwrap_or(0))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Entry>>> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A session's share of its person's quota, and its view of the disk.
#[derive(Debug)]
pub struct PersonAccount {
    quotas: Arc<Quotas>,
    person: String,
    used: Arc<AtomicU64>,
}

impl PersonAccount {
    /// Adds `bytes` written by the session.
    pub(crate) fn charge(&self, bytes: u64) {
        self.used.fetch_add(bytes, Ordering::Relaxed);
    }

    /// The most this session may have recorded in all (its own bytes included) before the
    /// person's quota is reached.
    pub(crate) fn person_limit(&self) -> u64 {
        let own = self.used.load(Ordering::Relaxed);
        let others = self.quotas.person_total(&self.person).saturating_sub(own);
        self.quotas.max_person_bytes.saturating_sub(others)
    }

    /// The person quota's size.
    pub(crate) fn max_person_bytes(&self) -> u64 {
        self.quotas.max_person_bytes
    }

    /// The free-space floor, if the disk is below it now.
    pub(crate) fn disk_low(&self) -> Option<u64> {
        self.quotas.disk_low().map(|_| self.quotas.min_free_bytes)
    }
}

/// Bytes of the files directly in `dir` (a recording has no subdirectories); 0 if gone.
fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .fold(0u64, u64::saturating_add)
    })
}

/// Bytes available to unprivileged writers on the file system holding `path` (or its
/// nearest existing ancestor); `None` if none can be looked at.
fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let mut at = Some(path);
    while let Some(dir) = at {
        if let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_bytes()) {
            let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
            // SAFETY: `c` is a valid NUL-terminated path and `stat` points to writable
            // memory of the right type; statvfs fills it in when it returns 0.
            if unsafe { libc::statvfs(c.as_ptr(), stat.as_mut_ptr()) } == 0 {
                // SAFETY: statvfs returned 0, so it initialised `stat`.
                let stat = unsafe { stat.assume_init() };
                // The field types differ between platforms (u32 on some 32-bit ones).
                #[allow(clippy::useless_conversion)]
                return Some(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)));
            }
        }
        at = dir.parent();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(person: u64, floor: u64) -> RecordingPolicy {
        RecordingPolicy {
            max_person_bytes: person,
            min_free_bytes: floor,
            ..RecordingPolicy::default()
        }
    }

    #[test]
    fn person_limit_counts_the_other_sessions_in_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let quotas = Arc::new(Quotas::new(dir.path(), &policy(1000, 0)));
        let a = quotas.account("alice");
        let b = quotas.account("alice");
        let c = quotas.account("bob");
        a.charge(300);
        c.charge(900);
        assert_eq!(b.person_limit(), 700);
        assert_eq!(a.person_limit(), 1000);
        b.charge(800);
        assert_eq!(a.person_limit(), 200);
    }

    #[test]
    fn after_a_restart_the_tally_starts_from_the_index_and_the_disk() {
        use jitssh_core::store::{SessionRecord, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let index =
            Arc::new(SqliteStore::open_session_index(&dir.path().join("sessions.db")).unwrap());
        let now = jitssh_core::unix_now();
        for (id, started_at, bytes) in [("recent", now - 60, 700), ("old", now - 7200, 900)] {
            let rec = dir.path().join(id);
            std::fs::create_dir(&rec).unwrap();
            std::fs::write(rec.join("events.jsonl"), vec![b'x'; bytes]).unwrap();
            index
                .insert_session(&SessionRecord {
                    id: id.into(),
                    user: "alice".into(),
                    key_id: "alice".into(),
                    cert_serial: 1,
                    client_addr: String::new(),
                    target: "web01".into(),
                    login: "root".into(),
                    started_at,
                    ended_at: None,
                    bytes_in: 0,
                    bytes_out: 0,
                    exit_status: None,
                    end_reason: None,
                    recording: rec.display().to_string(),
                })
                .unwrap();
        }
        let policy = RecordingPolicy {
            max_person_bytes: 1000,
            min_free_bytes: 0,
            person_window_secs: 3600,
            ..RecordingPolicy::default()
        };
        let quotas = Arc::new(Quotas::new(dir.path(), &policy).with_index(index));
        let a = quotas.account("alice");
        assert_eq!(
            a.person_limit(),
            300,
            "the recent session counts, the old one not"
        );
        // Seeded once: a second session of the same person does not count it twice.
        let b = quotas.account("alice");
        assert_eq!(b.person_limit(), 300);
        assert_eq!(quotas.account("bob").person_limit(), 1000);
    }

    #[test]
    fn a_floor_above_the_free_space_refuses() {
        let dir = tempfile::tempdir().unwrap();
        assert!(free_bytes(&dir.path().join("not/yet")).is_some());
        let quotas = Quotas::new(dir.path(), &policy(1, u64::MAX));
        let err = quotas.admit().unwrap_err();
        assert!(err.to_string().contains("min_free_bytes"), "{err}");
        assert!(Quotas::new(dir.path(), &policy(1, 0)).admit().is_ok());
    }
}
