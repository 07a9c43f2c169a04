//! Connecting sessions to the recorder ([`crate::recording`]) and the session index.
//!
//! A session's [`SessionRecording`] starts with the session, gets a [`ChannelTap`] for every
//! shell, exec and subsystem, is flushed every second, and is sealed when the session ends.
//! The recorder's own policy decides what a write failure means: under `terminate` every
//! later call fails and the session is ended with a message; under `continue` the recorder
//! hands over the failure once and the session goes on, audited as `recording.degraded`.
//!
//! Recording quotas ([`crate::recording::Quotas`]) are shared by all sessions: a session is
//! not started while the recordings disk is below its free-space floor, and one that reaches
//! a quota hands the hit over once ([`SessionRecording::take_quota`]) for `recording.quota`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use jitssh_shared::keys::CaSigner;
use jitssh_shared::store::{SessionIndex, SqliteStore};

use crate::pump::Tap;
use crate::recording::{
    ChannelKind, ChannelRecorder, Pty, QuotaHit, Quotas, Recorder, RecordingError, RecordingPolicy,
    SessionMeta, SessionSummary,
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
    pub index: Arc<SqliteStore>,
    /// Recording quotas: the per-person tally and the free-space floor.
    pub quotas: Arc<Quotas>,
}

/// Errors preparing the recording setup.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The seal key could not be read.
    #[error(transparent)]
    Key(#[from] jitssh_shared::keys::KeyError),
    /// The session index could not be opened.
    #[error(transparent)]
    Index(#[from] jitssh_shared::store::StoreError),
}

impl RecordingSetup {
    /// Reads the seal key from the host key file and opens the session index.
    pub fn open(
        root: &Path,
        policy: RecordingPolicy,
        host_key: &Path,
        index: &Path,
    ) -> Result<RecordingSetup, SetupError> {
        let text = std::fs::read_to_string(host_key).map_err(|source| {
            jitssh_shared::keys::KeyError::Io {
                path: host_key.to_path_buf(),
                source,
            }
        })?;
        let seal_key = CaSigner::from_openssh(&text, host_key)?;
        let index = Arc::new(SqliteStore::open_session_index(index)?);
        let quotas = Quotas::new(root, &policy).with_index(index.clone());
        Ok(RecordingSetup {
            quotas: Arc::new(quotas),
            root: root.to_path_buf(),
            policy,
            seal_key: Arc::new(seal_key),
            index,
        })
    }
}

/// One session's recording, shared by its channels.
pub struct SessionRecording {
    recorder: Mutex<Option<Recorder>>,
    index: Arc<SqliteStore>,
    id: String,
}

impl SessionRecording {
    /// Starts recording `meta` and indexes the session; refused while the recordings disk is
    /// below `min_free_bytes`. Blocking I/O: run it off the async workers.
    pub fn start(setup: &RecordingSetup, meta: SessionMeta) -> Result<SessionRecording, String> {
        setup.quotas.admit().map_err(|e| e.to_string())?;
        let id = meta.id.clone();
        let record = meta.clone();
        let person = meta.user.clone();
        let recorder = Recorder::start(
            &setup.root,
            meta,
            setup.policy.clone(),
            setup.seal_key.clone(),
        )
        .map_err(|e| e.to_string())?;
        recorder.account_to(setup.quotas.account(&person));
        setup
            .index
            .insert_session(&record.index_record(&recorder.dir()))
            .map_err(|e| e.to_string())?;
        Ok(SessionRecording {
            recorder: Mutex::new(Some(recorder)),
            index: setup.index.clone(),
            id,
        })
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Recorder) -> Result<T, RecordingError>,
    ) -> Result<Option<T>, String> {
        let guard = self.recorder.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_ref() {
            Some(recorder) => f(recorder).map(Some).map_err(|e| e.to_string()),
            None => Ok(None),
        }
    }

    /// A tap recording channel `channel` as `kind`.
    pub fn channel(&self, channel: u32, kind: ChannelKind) -> Result<Option<ChannelTap>, String> {
        Ok(self
            .with(|r| r.channel(channel, kind))?
            .map(|recorder| ChannelTap {
                recorder: Some(recorder),
            }))
    }

    /// Writes out and syncs what is buffered (every second). `Ok(Some(why))` when recording
    /// just degraded under the `continue` policy; `Err` when the session must end.
    pub fn flush(&self) -> Result<Option<String>, String> {
        self.with(|r| {
            r.flush()?;
            Ok(r.take_degraded().map(|e| e.to_string()))
        })
        .map(Option::flatten)
    }

    /// The recording quota the session reached, once (for `recording.quota`).
    pub fn take_quota(&self) -> Option<QuotaHit> {
        self.with(|r| Ok(r.take_quota())).ok().flatten().flatten()
    }

    /// Seals the recording and completes the session's index row. Blocking I/O.
    pub fn finish(&self, end_reason: &str) -> Option<SessionSummary> {
        let recorder = self
            .recorder
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()?;
        let summary = recorder.finish(end_reason);
        if let Err(err) = self.index.end_session(&self.id, &summary.index_end()) {
            tracing::error!(session = %self.id, "cannot complete the session index: {err}");
        }
        Some(summary)
    }
}

/// Records one channel's traffic.
pub struct ChannelTap {
    recorder: Option<ChannelRecorder>,
}

fn recorded(result: Result<(), RecordingError>) -> Result<(), String> {
    result.map_err(|e| e.to_string())
}

impl Tap for ChannelTap {
    fn input(&mut self, data: &[u8]) -> Result<(), String> {
        match &mut self.recorder {
            Some(r) => recorded(r.input(data)),
            None => Ok(()),
        }
    }

    fn output(&mut self, data: &[u8]) -> Result<(), String> {
        match &mut self.recorder {
            Some(r) => recorded(r.output(data)),
            None => Ok(()),
        }
    }

    fn stderr(&mut self, data: &[u8]) -> Result<(), String> {
        match &mut self.recorder {
            Some(r) => recorded(r.stderr(data)),
            None => Ok(()),
        }
    }

    fn exit_status(&mut self, status: u32) -> Result<(), String> {
        match &mut self.recorder {
            Some(r) => recorded(r.exit_status(status)),
            None => Ok(()),
        }
    }

    fn exit_signal(&mut self, signal: &str) -> Result<(), String> {
        match &mut self.recorder {
            Some(r) => recorded(r.exit_signal(signal)),
            None => Ok(()),
        }
    }

    fn resize(&mut self, cols: u32, rows: u32) -> Result<(), String> {
        match &mut self.recorder {
            Some(r) => recorded(r.resize(clamp(cols), clamp(rows))),
            None => Ok(()),
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        match self.recorder.take() {
            Some(r) => r.finish().map(|_| ()).map_err(|e| e.to_string()),
            None => Ok(()),
        }
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
