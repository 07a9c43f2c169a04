//! Connecting sessions to the recorder ([`crate::recording`], the `jitssh-recording` crate)
//! and the session index: the relay glue.
//!
//! A session's [`SessionRecording`] starts with the session, gets a [`ChannelTap`] for every
//! shell, exec and subsystem, is flushed every second, and is sealed when the session ends.
//! Its recorder lives on the session's own writer thread ([`Writer`], in the recording
//! crate, which owns the files, hash chain and `fdatasync`s): taps only queue what they see,
//! and a full queue makes that session's relay wait, never another's. What stays here is
//! what knows the bastion: the pump's [`Tap`], the session index, the quotas' admission.
//!
//! Errors are typed up to this module ([`StartError`], [`WriteError`]); the session and the
//! pump's [`Tap`] still take text, so they become text here, once, on their way to the audit
//! log (the session's retyping will take the types through).
//! The recorder's own policy decides what a write failure means: under `terminate` every
//! later call fails and the session is ended with a message; under `continue` the recorder
//! hands over the failure once and the session goes on, audited as `recording.degraded`.
//!
//! Recording quotas ([`crate::recording::Quotas`]) are shared by all sessions: a session is
//! not started while the recordings disk is below its free-space floor, and one that reaches
//! a quota hands the hit over once ([`SessionRecording::take_quota`]) for `recording.quota`.

use std::path::Path;
use std::sync::Arc;

use jitssh_core::keys::CaSigner;
use jitssh_core::store::SessionStore;

use crate::index_ends::IndexEnds;
use crate::pump::Tap;
use crate::recording::filexfer::FileAudit;
pub use crate::recording::{Backlog, DEFAULT_RECORDING_QUEUE};
use crate::recording::{
    ChannelKind, LowDisk, Pty, QuotaHit, Quotas, Recorder, RecordingError, RecordingPolicy,
    SessionMeta, SessionSummary, Stream, WriteError, Writer,
};

/// Everything sessions need to record: where, how, the seal key and the index.
pub struct RecordingSetup {
    /// Root of the recordings.
    pub root: std::path::PathBuf,
    /// What to record.
    pub policy: RecordingPolicy,
    /// The key sealing recordings (the bastion's host key).
    pub seal_key: Arc<CaSigner>,
    /// The session index.
    pub index: Arc<dyn SessionStore>,
    /// Writes the index's session ends, later if the index cannot take them now.
    pub ends: Arc<IndexEnds>,
    /// Recording quotas: the per-person tally and the free-space floor.
    pub quotas: Arc<Quotas>,
    /// Bytes a session may queue for its writer before its relay waits.
    pub queue_bytes: usize,
    /// The uploader to tell when a recording is finished (`[recordings] store`).
    pub uploads: Option<jitssh_recstore::Uploads>,
}

/// Errors preparing the recording setup.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The seal key could not be read.
    #[error(transparent)]
    Key(#[from] jitssh_core::keys::KeyError),
    /// The session index could not be opened.
    #[error(transparent)]
    Index(#[from] jitssh_core::store::StoreError),
    /// The thread writing session ends to the index could not be started.
    #[error("cannot start the session index's writer: {0}")]
    Thread(#[from] std::io::Error),
}

impl RecordingSetup {
    /// Reads the seal key from the host key file; sessions are indexed in `index` (see
    /// [`crate::config::BastionConfig::open_session_store`]), whose rows of sessions that
    /// ended sealed but unindexed (the last run stopped first) are completed now.
    pub fn open(
        root: &Path,
        policy: RecordingPolicy,
        host_key: &Path,
        index: Arc<dyn SessionStore>,
    ) -> Result<RecordingSetup, SetupError> {
        let text = std::fs::read_to_string(host_key).map_err(|source| {
            jitssh_core::keys::KeyError::Io {
                path: host_key.to_path_buf(),
                source,
            }
        })?;
        let seal_key = CaSigner::from_openssh(&text, host_key)?;
        crate::index_ends::complete_sealed(index.as_ref(), root, &seal_key.public_key());
        let quotas = Quotas::new(root, &policy).with_index(index.clone());
        Ok(RecordingSetup {
            quotas: Arc::new(quotas),
            root: root.to_path_buf(),
            policy,
            seal_key: Arc::new(seal_key),
            ends: Arc::new(IndexEnds::start(index.clone())?),
            index,
            queue_bytes: DEFAULT_RECORDING_QUEUE,
            uploads: None,
        })
    }

    /// Sends finished recordings to `uploads` (a bucket), or leaves them in the directory.
    pub fn with_uploads(mut self, uploads: Option<jitssh_recstore::Uploads>) -> RecordingSetup {
        self.uploads = uploads;
        self
    }

    /// Sets the bytes each session may queue for its recording writer.
    pub fn with_queue(mut self, bytes: usize) -> RecordingSetup {
        self.queue_bytes = bytes;
        self
    }
}

/// Why a session's recording could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The recordings disk is below its free-space floor: sessions are refused.
    #[error(transparent)]
    LowDisk(#[from] LowDisk),
    /// The recording's files could not be created (disk full, permissions...).
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// The session could not be indexed.
    #[error("session index: {0}")]
    Index(#[from] jitssh_core::store::StoreError),
    /// The writer thread could not be started.
    #[error(transparent)]
    Writer(#[from] WriteError),
}

impl StartError {
    /// True when the recordings disk is full or below its floor.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StartError::LowDisk(_) => true,
            StartError::Recording(e) => e.is_disk_full(),
            StartError::Writer(e) => e.is_disk_full(),
            StartError::Index(_) => false,
        }
    }
}

/// One session's recording, shared by its channels: the relay's end of the session's
/// [`Writer`] (every call but [`SessionRecording::finish`] returns at once).
pub struct SessionRecording {
    writer: Writer,
    ends: Arc<IndexEnds>,
    id: String,
}

impl SessionRecording {
    /// Starts recording `meta` and indexes the session; refused while the recordings disk is
    /// below `min_free_bytes`. Blocking I/O: run it off the async workers. The error as text
    /// (for the session, which audits it); [`SessionRecording::try_start`] keeps its type.
    pub fn start(setup: &RecordingSetup, meta: SessionMeta) -> Result<SessionRecording, String> {
        SessionRecording::try_start(setup, meta).map_err(|e| e.to_string())
    }

    /// [`SessionRecording::start`] with the reason as a type.
    pub fn try_start(
        setup: &RecordingSetup,
        meta: SessionMeta,
    ) -> Result<SessionRecording, StartError> {
        setup.quotas.admit()?;
        let id = meta.id.clone();
        let record = meta.clone();
        let person = meta.user.clone();
        let recorder = Recorder::start(
            &setup.root,
            meta,
            setup.policy.clone(),
            setup.seal_key.clone(),
        )?;
        recorder.account_to(setup.quotas.account(&person));
        setup
            .index
            .insert_session(&record.index_record(&recorder.dir()))?;
        let writer = Writer::spawn(recorder, setup.policy.on_failure, setup.queue_bytes)?;
        Ok(SessionRecording {
            writer,
            ends: setup.ends.clone(),
            id,
        })
    }

    /// A tap recording channel `channel` as `kind` (its file is created by the writer).
    /// Transfers audited per file (sftp, scp) get their [`FileAudit`].
    pub fn channel(&self, channel: u32, kind: ChannelKind) -> Result<Option<ChannelTap>, String> {
        let files = FileAudit::for_channel(&kind);
        let handle = self.writer.open(channel, kind).map_err(|e| e.to_string())?;
        Ok(Some(ChannelTap {
            writer: self.writer.clone(),
            handle: Some(handle),
            files,
        }))
    }

    /// Asks the writer to write out and sync what is buffered (every second) and reports
    /// what it found so far: `Ok(Some(why))` once when recording degraded under the
    /// `continue` policy; `Err` when the session must end. Does not wait for the disk.
    /// As text, for the session's audit records; [`SessionRecording::try_flush`] keeps the
    /// types.
    pub fn flush(&self) -> Result<Option<String>, String> {
        match self.try_flush() {
            Ok(degraded) => Ok(degraded.map(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// [`SessionRecording::flush`] with the reasons as types.
    pub fn try_flush(&self) -> Result<Option<WriteError>, WriteError> {
        self.writer.flush()
    }

    /// The recording quota the session reached, once (for `recording.quota`).
    pub fn take_quota(&self) -> Option<QuotaHit> {
        self.writer.take_quota()
    }

    /// Bytes queued for the writer now.
    pub fn queued(&self) -> usize {
        self.writer.backlog().queued()
    }

    /// Seals the recording once everything queued is written, and completes the session's
    /// index row (later, if the index cannot take it now). Blocking: waits for the writer.
    pub fn finish(&self, end_reason: &str) -> Option<SessionSummary> {
        let summary = self.writer.finish(end_reason)?;
        self.ends.write(&self.id, summary.index_end());
        Some(summary)
    }
}

/// Records one channel's traffic by queueing it for the session's writer.
pub struct ChannelTap {
    writer: Writer,
    /// The channel's handle at the writer, until it is finished.
    handle: Option<u64>,
    /// Transfers: the per-file audit, fed both directions before they are relayed. A
    /// malformed packet journals a record and ends the channel (the packet is not relayed).
    files: Option<FileAudit>,
}

/// A recording write failure as the pump sees it (the channel ends, the reason is kept).
fn tap_error(err: WriteError) -> crate::pump::TapError {
    crate::pump::TapError::Recording(err.to_string())
}

impl ChannelTap {
    /// Runs `f` on the channel's handle; a write failure ends the channel as a tap error.
    fn call(
        &self,
        f: impl FnOnce(&Writer, u64) -> Result<(), WriteError>,
    ) -> Result<(), crate::pump::TapError> {
        match self.handle {
            Some(handle) => f(&self.writer, handle).map_err(tap_error),
            None => Ok(()),
        }
    }
}

impl ChannelTap {
    /// Feeds the per-file audit and journals what it found; a malformed stream ends the
    /// channel ([`crate::pump::TapError::Protocol`]), after its record is queued.
    fn audit(&mut self, from_client: bool, data: &[u8]) -> Result<(), crate::pump::TapError> {
        let Some(files) = self.files.as_mut() else {
            return Ok(());
        };
        let mut records = Vec::new();
        let result = if from_client {
            files.input(data, &mut records)
        } else {
            files.output(data, &mut records)
        };
        if let Err(bad) = &result {
            records.push(bad.record());
            self.files = None;
        }
        self.call(|w, h| w.files(h, records))?;
        result.map_err(|bad| crate::pump::TapError::Protocol(bad.to_string()))
    }
}

impl Tap for ChannelTap {
    fn input(&mut self, data: &[u8]) -> Result<(), crate::pump::TapError> {
        self.call(|w, h| w.data(h, Stream::In, data))?;
        self.audit(true, data)
    }

    fn output(&mut self, data: &[u8]) -> Result<(), crate::pump::TapError> {
        self.call(|w, h| w.data(h, Stream::Out, data))?;
        self.audit(false, data)
    }

    fn stderr(&mut self, data: &[u8]) -> Result<(), crate::pump::TapError> {
        self.call(|w, h| w.data(h, Stream::Err, data))
    }

    fn exit_status(&mut self, status: u32) -> Result<(), crate::pump::TapError> {
        self.call(|w, h| w.exit_status(h, status))
    }

    fn exit_signal(&mut self, signal: &str) -> Result<(), crate::pump::TapError> {
        self.call(|w, h| w.exit_signal(h, signal))
    }

    fn resize(&mut self, cols: u32, rows: u32) -> Result<(), crate::pump::TapError> {
        self.call(|w, h| w.resize(h, clamp(cols), clamp(rows)))
    }

    fn finish(&mut self) -> Result<(), crate::pump::TapError> {
        if let Some(mut files) = self.files.take() {
            let mut records = Vec::new();
            files.finish(&mut records);
            self.call(|w, h| w.files(h, records))?;
        }
        match self.handle.take() {
            Some(handle) => self.writer.close(handle).map_err(tap_error),
            None => Ok(()),
        }
    }

    fn backlog(&self) -> Option<Arc<Backlog>> {
        Some(self.writer.backlog())
    }
}

/// Terminal sizes beyond `u16` are nonsense; keep them representable.
fn clamp(value: u32) -> u16 {
    u16::try_from(value).unwrap_or(u16::MAX)
}

/// The recorder's pty description from the requested terminal.
pub fn pty(requested: Option<(String, u32, u32)>) -> Option<Pty> {
    requested.map(|(term, cols, rows)| Pty {
        term,
        cols: clamp(cols),
        rows: clamp(rows),
    })
}
