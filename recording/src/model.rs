//! The plain data of recording: policy, session metadata, channel kinds and summaries.

use std::path::{Path, PathBuf};

use jitssh_core::store::{SessionEnd, SessionRecord};
use serde::{Deserialize, Serialize};

/// What to do when the recording cannot be written (disk full, I/O error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// End the session (the default: no unrecorded access).
    Terminate,
    /// Let the session go on unrecorded, with a `recording.degraded` event.
    Continue,
}

/// How much to record; from the access policy of the session's role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingPolicy {
    /// Record keystrokes (`i` events). Off by default: input contains passwords.
    pub record_input: bool,
    /// Record the content of sftp/scp transfers, not only their size and SHA-256.
    pub transfer_content: bool,
    /// What a write failure does to the session.
    pub on_failure: OnFailure,
    /// Bytes buffered in memory per session before they are written out, whatever the
    /// flush timer says; bounds the recorder's memory.
    pub max_buffer: usize,
    /// Bytes of each output stream of a command without a pty written to its `.cast`; the
    /// rest is recorded as size and SHA-256 (see `recording::bulk`).
    #[serde(default = "default_exec_output_limit")]
    pub exec_output_limit: u64,
    /// Bytes one session's recording may take; past it terminal output is recorded as size
    /// and SHA-256 (see `recording::quota`).
    #[serde(default = "default_max_session_bytes")]
    pub max_session_bytes: u64,
    /// Bytes the sessions one person started within [`RecordingPolicy::person_window_secs`]
    /// may record together.
    #[serde(default = "default_max_person_bytes")]
    pub max_person_bytes: u64,
    /// The window of [`RecordingPolicy::max_person_bytes`], in seconds.
    #[serde(default = "default_person_window_secs")]
    pub person_window_secs: u64,
    /// Free bytes the recordings disk must keep (the audit log's reserve): below it new
    /// sessions are refused and running ones stop storing terminal content. `0`: no floor.
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
}

/// Default of [`RecordingPolicy::exec_output_limit`]: 1 MiB, pages of text an auditor
/// reads, far below what a download is.
pub const DEFAULT_EXEC_OUTPUT_LIMIT: u64 = 1 << 20;

fn default_exec_output_limit() -> u64 {
    DEFAULT_EXEC_OUTPUT_LIMIT
}
fn default_max_session_bytes() -> u64 {
    super::quota::DEFAULT_MAX_SESSION_BYTES
}
fn default_max_person_bytes() -> u64 {
    super::quota::DEFAULT_MAX_PERSON_BYTES
}
fn default_person_window_secs() -> u64 {
    super::quota::DEFAULT_PERSON_WINDOW_SECS
}
fn default_min_free_bytes() -> u64 {
    super::quota::DEFAULT_MIN_FREE_BYTES
}

impl Default for RecordingPolicy {
    fn default() -> Self {
        RecordingPolicy {
            record_input: false,
            transfer_content: false,
            on_failure: OnFailure::Terminate,
            max_buffer: 1 << 20,
            exec_output_limit: DEFAULT_EXEC_OUTPUT_LIMIT,
            max_session_bytes: default_max_session_bytes(),
            max_person_bytes: default_max_person_bytes(),
            person_window_secs: default_person_window_secs(),
            min_free_bytes: default_min_free_bytes(),
        }
    }
}

/// Who is doing what, known when the session starts; goes into the journal, every `.cast`
/// header, the seal and the session index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionMeta {
    /// Session id, from [`super::new_session_id`].
    pub id: String,
    /// The person.
    pub user: String,
    /// Key id of the user certificate.
    pub key_id: String,
    /// Serial of the user certificate.
    pub cert_serial: u64,
    /// Remote login on the target.
    pub login: String,
    /// Target host.
    pub target: String,
    /// Client address, `ip:port`.
    pub client_addr: String,
    /// Unix time the session started.
    pub started_at: u64,
}

impl SessionMeta {
    /// The session index row to insert when the session starts.
    pub fn index_record(&self, recording_dir: &Path) -> SessionRecord {
        SessionRecord {
            id: self.id.clone(),
            user: self.user.clone(),
            key_id: self.key_id.clone(),
            cert_serial: self.cert_serial,
            client_addr: self.client_addr.clone(),
            target: self.target.clone(),
            login: self.login.clone(),
            started_at: self.started_at,
            ended_at: None,
            bytes_in: 0,
            bytes_out: 0,
            exit_status: None,
            end_reason: None,
            recording: recording_dir.display().to_string(),
        }
    }
}

/// A pseudo-terminal requested for a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pty {
    /// `TERM`.
    pub term: String,
    /// Columns.
    pub cols: u16,
    /// Rows.
    pub rows: u16,
}

/// What a channel does, from its `shell`, `exec` or `subsystem` request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ChannelKind {
    /// An interactive shell (`pty` is `None` for `ssh -T`).
    Shell {
        /// The pty, if one was requested.
        pty: Option<Pty>,
    },
    /// A command. `scp`, `sftp-server` and `rsync --server` are recorded as transfers.
    Exec {
        /// The command line as the client sent it.
        command: String,
        /// The pty, if one was requested.
        pty: Option<Pty>,
    },
    /// A subsystem (`sftp`, ...): always recorded as a transfer.
    Subsystem {
        /// Its name.
        name: String,
    },
}

impl ChannelKind {
    /// The pty, if any.
    pub fn pty(&self) -> Option<&Pty> {
        match self {
            ChannelKind::Shell { pty } | ChannelKind::Exec { pty, .. } => pty.as_ref(),
            ChannelKind::Subsystem { .. } => None,
        }
    }

    /// True when the channel carries a file-transfer protocol rather than terminal text: it is
    /// then recorded as byte counts and digests (content only if the policy asks).
    pub fn is_transfer(&self) -> bool {
        match self {
            ChannelKind::Subsystem { .. } => true,
            ChannelKind::Exec { command, .. } => super::transfer::is_transfer_command(command),
            ChannelKind::Shell { .. } => false,
        }
    }

    /// True for a command without a pty that is not a transfer: its output may be a
    /// download rather than text, and switches to size-and-digest recording past the limit
    /// or when binary (see `recording::bulk`). Terminal sessions never do.
    pub fn may_switch_to_bulk(&self) -> bool {
        matches!(self, ChannelKind::Exec { pty: None, .. }) && !self.is_transfer()
    }
}

/// What one channel did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSummary {
    /// Order of opening in the session (1-based), as in the file names.
    pub seq: u32,
    /// SSH channel number.
    pub channel: u32,
    /// What it was.
    pub kind: ChannelKind,
    /// Its data file in the recording directory, if any.
    pub file: Option<String>,
    /// Bytes from the client (stdin, or the upload direction of a transfer).
    pub bytes_in: u64,
    /// Bytes of stdout to the client.
    pub bytes_out: u64,
    /// Bytes of stderr to the client.
    pub bytes_err: u64,
    /// Transfers only: SHA-256 (hex) of the client-to-server stream.
    pub sha256_in: Option<String>,
    /// Transfers, and stdout recorded in bulk: SHA-256 of the whole of stdout.
    pub sha256_out: Option<String>,
    /// Transfers, and stderr recorded in bulk: SHA-256 of the whole of stderr.
    pub sha256_err: Option<String>,
    /// Exec without a pty: where stdout stopped going to the cast, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_out: Option<BulkSwitch>,
    /// Exec without a pty: where stderr stopped going to the cast, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulk_err: Option<BulkSwitch>,
    /// Exit status, if the remote side reported one.
    pub exit_status: Option<u32>,
    /// Signal that ended the remote command, if it reported one.
    pub exit_signal: Option<String>,
}

/// Why an output stream stopped going to the cast (see `recording::bulk`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BulkReason {
    /// It passed [`RecordingPolicy::exec_output_limit`].
    Limit,
    /// It turned out binary.
    Binary,
    /// The session reached a recording quota (any channel, pty or not; see
    /// `recording::quota`).
    Quota,
}

/// Where an output stream of a command without a pty switched to size-and-digest recording.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulkSwitch {
    /// Why.
    pub reason: BulkReason,
    /// Bytes of the stream before the switch, all of them in the cast; the rest of the
    /// stream (its size minus this) is counted and hashed only.
    pub offset: u64,
}

/// What [`super::Recorder::finish`] reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// Session id.
    pub id: String,
    /// The recording directory.
    pub dir: PathBuf,
    /// Unix time of the end.
    pub ended_at: u64,
    /// Why it ended.
    pub end_reason: String,
    /// Bytes from the client, all channels.
    pub bytes_in: u64,
    /// Bytes to the client (stdout and stderr), all channels.
    pub bytes_out: u64,
    /// Exit status of the last channel that reported one.
    pub exit_status: Option<u32>,
    /// Every channel, in opening order.
    pub channels: Vec<ChannelSummary>,
    /// True when `seal.json` and its signature were written.
    pub sealed: bool,
    /// The write failure that stopped recording, if any.
    pub failure: Option<String>,
}

impl SessionSummary {
    /// The update that completes the session's index row.
    pub fn index_end(&self) -> SessionEnd {
        SessionEnd {
            ended_at: self.ended_at,
            bytes_in: self.bytes_in,
            bytes_out: self.bytes_out,
            exit_status: self.exit_status,
            end_reason: self.end_reason.clone(),
        }
    }
}
