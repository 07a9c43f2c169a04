//! The auditor's tools: find, show, replay, export, search and verify sessions; watch and
//! end live ones; prune old recordings. A library: `ssh-bastion sessions ...` (and the other
//! auditor commands of `ssh-bastion`) call it, and so can a web console. An [`Auditor`] is
//! only paths (`ssh-bastion` fills them from its configuration); each command takes a plain
//! request struct ([`args`], which are also clap argument structs), writes to a `Write` and
//! returns an [`Outcome`] or an [`AuditorError`]. Recordings are read through
//! `jitssh-recording`'s one reader; the live commands speak [`protocol`] to the bastion's
//! admin socket.
//!
//! Auditors are the third kind of user. They answer "who did what, where, when" and must be
//! able to prove it without trusting the bastion's operators, so every command works from the
//! files an auditor can copy away (the recording directory, the audit log, the bastion's
//! public key) and the session index only helps to find them:
//!
//! | command | module |
//! |---|---|
//! | `sessions list`, `sessions show` | [`list`] |
//! | `replay` | [`replay`] (terminal handling in [`tty`]) |
//! | `export` | [`export`] (text rendering in [`screen`]) |
//! | `sessions grep` | [`grep`] |
//! | `verify`, `audit verify` | [`integrity`] |
//! | `sessions watch`, `sessions kill` | [`live`] (the protocol is [`protocol`]; the bastion serves it) |
//! | `prune` | [`prune`] |
//!
//! What `replay` and `watch` write to the auditor's terminal goes through [`termfilter`]: a
//! session's user can draw on it, not act on it.
//!
//! Every command writes to a `dyn Write` it is given (standard output in `ssh-bastion`) and
//! returns an [`Outcome`]: `Failed` when it found something wrong (damage, no match), which
//! `ssh-bastion` turns into a non-zero exit. What a program other than a terminal wants as
//! values is public too: [`Auditor::sessions`], [`Auditor::indexed`], [`Auditor::liveness`],
//! [`Auditor::recording`] (then `jitssh_recording`'s reader and verifier), and
//! [`Auditor::live_sessions`].

pub mod args;
mod error;
pub mod export;
pub mod grep;
pub mod integrity;
pub mod list;
pub mod live;
pub mod protocol;
pub mod prune;
mod rawtext;
pub mod replay;
mod screen;
mod termfilter;
#[cfg(test)]
mod tests;
pub mod timefmt;
mod tty;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jitssh_core::store::{SessionFilter, SessionRecord, SessionStore, SqliteStore};

pub use error::{AdminFailure, AuditorError};

use args::FilterArgs;
use jitssh_recording::{Recording, Segment, session_dir};
use protocol::LiveInfo;

/// What a command found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done, nothing wrong.
    Ok,
    /// Done, and something is wrong (or nothing matched): exit non-zero.
    Failed,
}

/// Where the session index is.
#[derive(Clone)]
pub enum IndexSource {
    /// A SQLite file (`sessions.db`), opened when read; absent until a session was indexed.
    File(PathBuf),
    /// An index already open: the PostgreSQL database of `[store] url`, where several
    /// bastions index their sessions, so one search sees all of them.
    Shared(Arc<dyn SessionStore>),
}

impl From<PathBuf> for IndexSource {
    fn from(path: PathBuf) -> Self {
        IndexSource::File(path)
    }
}

impl std::fmt::Debug for IndexSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexSource::File(path) => f.debug_tuple("File").field(path).finish(),
            IndexSource::Shared(_) => f.write_str("Shared"),
        }
    }
}

/// Where the auditor's inputs are.
#[derive(Debug, Clone)]
pub struct Auditor {
    /// Root of the recordings (`YYYY/MM/DD/<id>/` below it).
    pub recordings: PathBuf,
    /// The session index: the bastion's `sessions.db`, or the store several bastions share.
    pub index: IndexSource,
    /// The bastion's audit log.
    pub audit_log: PathBuf,
    /// The embedded CA's audit log (all-in-one mode).
    pub ca_audit_log: Option<PathBuf>,
    /// Public key that signs recording seals (OpenSSH format).
    pub seal_key: PathBuf,
    /// The bastion's admin socket.
    pub admin_socket: PathBuf,
    /// How long recordings are kept (`[recordings] retain`), if set.
    pub retain: Option<Duration>,
    /// The bucket finished recordings are uploaded to (`[recordings] store`); `recordings`
    /// is then the spool, where recordings stay until uploaded. Every command reads both.
    pub store: Option<jitssh_recstore::RemoteRecordings>,
}

impl Auditor {
    /// `sessions ...`.
    pub fn sessions_command(
        &self,
        command: &args::SessionsCommand,
        out: &mut dyn std::io::Write,
    ) -> Result<Outcome, AuditorError> {
        use args::SessionsCommand as C;
        match command {
            C::List(args) => self.list(args, out),
            C::Show { id } => self.show(id, out),
            C::Grep(args) => self.grep(args, out),
            C::Watch { id } => self.watch(id, out),
            C::Kill { id, reason } => self.kill(id, reason, out),
        }
    }

    /// The session index, or `None` if no session was ever indexed (it is not created by
    /// reading).
    fn index(&self) -> Result<Option<Arc<dyn SessionStore>>, AuditorError> {
        match &self.index {
            IndexSource::File(path) if !path.exists() => Ok(None),
            IndexSource::File(path) => Ok(Some(Arc::new(SqliteStore::open_session_index(path)?))),
            IndexSource::Shared(store) => Ok(Some(store.clone())),
        }
    }

    /// The index row of session `id`, if any.
    pub fn indexed(&self, id: &str) -> Result<Option<SessionRecord>, AuditorError> {
        match self.index()? {
            Some(index) => Ok(index.session(id)?),
            None => Ok(None),
        }
    }

    /// Sessions matching `filter`, newest first, at most `limit` (what `sessions list`
    /// shows, as values).
    pub fn sessions(
        &self,
        filter: &FilterArgs,
        limit: Option<usize>,
    ) -> Result<Vec<SessionRecord>, AuditorError> {
        let now = jitssh_core::unix_now();
        let instant = |t: &Option<String>| {
            t.as_deref()
                .map(|t| timefmt::parse_instant(t, now))
                .transpose()
        };
        let active = filter.active;
        let filter = SessionFilter {
            user: filter.user.clone(),
            target: filter.target.clone(),
            login: filter.login.clone(),
            since: instant(&filter.since)?,
            until: instant(&filter.until)?,
            active: active.then_some(true),
            // The limit applies after the live check below.
            limit: if active { None } else { limit },
        };
        let mut found = match self.index()? {
            Some(index) => index.list_sessions(&filter)?,
            None => Vec::new(),
        };
        if active {
            let live = self.liveness();
            found.retain(|s| matches!(live.status(s), Status::Active | Status::MaybeActive));
            found.truncate(limit.unwrap_or(usize::MAX));
        }
        Ok(found)
    }

    /// What the running bastion says is live, to tell a running session from one whose end
    /// is not (yet) in the index.
    pub fn liveness(&self) -> Liveness {
        match self.live_sessions() {
            Ok(Some(list)) => Liveness::Known(list),
            // No bastion running: nothing is live.
            Ok(None) => Liveness::Known(Vec::new()),
            Err(_) => Liveness::Unknown,
        }
    }
}

impl Auditor {
    /// The recording directory of session `id`: where ids put it, or where the index says
    /// it is. An error naming the session if there is none.
    pub fn recording_dir(&self, id: &str) -> Result<PathBuf, AuditorError> {
        let dir = session_dir(&self.recordings, id)?;
        if dir.is_dir() {
            return Ok(dir);
        }
        if let Some(store) = &self.store
            && let Some(fetched) = store.fetch(id)?
        {
            return Ok(fetched);
        }
        match self.indexed(id)? {
            Some(row) if Path::new(&row.recording).is_dir() => Ok(PathBuf::from(row.recording)),
            Some(_) => Err(AuditorError::NoRecording {
                id: id.to_owned(),
                why: format!(
                    "the recording is gone (pruned?); it was in {}",
                    match &self.store {
                        Some(store) => store.url().to_owned(),
                        None => dir.display().to_string(),
                    }
                ),
            }),
            None => Err(AuditorError::NoSuchSession(id.to_owned())),
        }
    }

    /// Every recording, oldest first, with its directory when it is on disk; `None` for one
    /// only in the bucket, which [`Auditor::recording_dir`] fetches when it is needed.
    pub(crate) fn every_recording(&self) -> Result<Vec<(String, Option<PathBuf>)>, AuditorError> {
        let mut found: Vec<(String, Option<PathBuf>)> =
            integrity::all_recordings(&self.recordings)?
                .into_iter()
                .map(|(id, dir)| (id, Some(dir)))
                .collect();
        if let Some(store) = &self.store {
            for stored in store.sessions()? {
                if found.iter().any(|(id, _)| *id == stored.id) {
                    continue;
                }
                // Fetched when its turn comes: the cache keeps only so many.
                found.push((stored.id, None));
            }
            found.sort();
        }
        Ok(found)
    }

    /// Session `id`'s recording, journal read (casts are read as needed, see
    /// [`Recording::timeline`]).
    pub fn recording(&self, id: &str) -> Result<Recording, AuditorError> {
        let dir = self.recording_dir(id)?;
        Ok(Recording::open(id, &dir)?)
    }
}

/// The terminal channels of `recording` to play (all, or channel `only`): an error saying
/// why when there is none.
pub(crate) fn timeline(
    recording: &Recording,
    only: Option<u32>,
) -> Result<Vec<Segment>, AuditorError> {
    let segments = recording.timeline(only)?;
    if segments.is_empty() {
        let why = match only {
            Some(n) => format!("channel {n} has no terminal recording"),
            None => "no terminal channel was recorded (transfers are recorded as sizes and digests; see `sessions show`)".into(),
        };
        return Err(AuditorError::NoRecording {
            id: recording.id.clone(),
            why,
        });
    }
    Ok(segments)
}

/// Which sessions are live, if the bastion could be asked.
#[derive(Debug)]
pub enum Liveness {
    /// The sessions the running bastion has live, ending ones included (none if it is not
    /// running).
    Known(Vec<LiveInfo>),
    /// The admin socket could not be used (permissions): only the index is known.
    Unknown,
}

/// A session's state as `sessions list` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Its end is recorded.
    Ended,
    /// No end recorded, and the bastion has it live.
    Active,
    /// No end recorded yet: the person has left and the bastion is sealing the recording
    /// and recording the end.
    Ending,
    /// No end recorded, and the bastion cannot be asked.
    MaybeActive,
    /// No end recorded, and the bastion does not have it live: the bastion stopped
    /// mid-session (a crash, `kill -9`), or its end could not be recorded.
    Unfinished,
}

impl Liveness {
    /// The state of indexed session `s`. The index row is completed only after the
    /// recording is sealed, a moment after the person's client has exited; the live list is
    /// what says whether the session is still running or ending.
    pub fn status(&self, s: &SessionRecord) -> Status {
        if s.ended_at.is_some() {
            return Status::Ended;
        }
        self.status_of(&s.id)
    }

    /// The state of session `id`, whose end is not recorded (or not known).
    pub fn status_of(&self, id: &str) -> Status {
        match self {
            Liveness::Known(live) => match live.iter().find(|l| l.id == id) {
                Some(l) if l.ending => Status::Ending,
                Some(_) => Status::Active,
                None => Status::Unfinished,
            },
            Liveness::Unknown => Status::MaybeActive,
        }
    }
}

/// Maps an output error: a closed pipe (`| head`) ends the command quietly.
pub(crate) fn output(err: std::io::Error) -> AuditorError {
    AuditorError::Output(err)
}

/// True for the error a closed pipe gives, which is not a failure of the command.
pub fn is_closed_pipe(err: &AuditorError) -> bool {
    matches!(err, AuditorError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
}
