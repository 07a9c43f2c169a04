//! The recorder of one session and of its channels.
//!
//! Synchronous (a mutex, a UTF-8 decode, a JSON escape, a hash, a buffer append; for output
//! recorded in bulk only a byte count and a SHA-256 update, see [`super::bulk`]); the disk is
//! touched when the buffer is full, once a second, at a channel's close (`fdatasync` of its
//! file) and in [`Recorder::flush`], which also `fdatasync`s. Any call may therefore block
//! as long as the disk does: the bastion calls it only from the session's writer thread
//! ([`crate::writer`]), never from a tokio worker.

use std::fs::{DirBuilder, File};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use base64::Engine as _;
use jitssh_core::keys::CaSigner;
use serde_json::{Map, Value, json};

use super::bulk::{OutputStream, end_note, stream_name, switch_note};
use super::chain::Chain;
use super::files::{FileSeal, LineFile};
use super::filexfer::FileRecord;
use super::model::{
    BulkReason, ChannelKind, ChannelSummary, OnFailure, RecordingPolicy, SessionMeta,
    SessionSummary,
};
use super::quota::{PersonAccount, QuotaHit, QuotaKind};
use super::seal::{Manifest, write_seal};
use super::transfer::StreamDigest;
use super::utf8::{Decoded, Utf8Stream};
use super::{CHAIN_FILE, EVENTS_FILE, RecordingError, cast, id};

/// Longest time buffered lines wait before being written, whoever calls.
const WRITE_INTERVAL: Duration = Duration::from_secs(1);

/// Records one session. Create it when the session is admitted, open a
/// [`ChannelRecorder`] per channel, call [`Recorder::flush`] every second and
/// [`Recorder::finish`] at the end.
///
/// `Send` and `Sync`; channel recorders share its state, so they can live in other tasks.
#[derive(Debug)]
pub struct Recorder {
    shared: Arc<Mutex<Session>>,
    finished: bool,
}

/// Records one channel of a session. Dropping it without [`ChannelRecorder::finish`] is
/// harmless: the session's `finish` closes the channel.
#[derive(Debug)]
pub struct ChannelRecorder {
    shared: Arc<Mutex<Session>>,
    slot: usize,
}

/// Which stream of a channel bytes belong to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    /// Client to server.
    In,
    /// Server stdout.
    Out,
    /// Server stderr.
    Err,
}

impl Stream {
    /// asciicast event code; stderr shows on the user's terminal like stdout.
    fn cast_code(self) -> &'static str {
        match self {
            Stream::In => "i",
            Stream::Out | Stream::Err => "o",
        }
    }

    /// Event code in a transfer content file.
    fn transfer_code(self) -> &'static str {
        match self {
            Stream::In => "up",
            Stream::Out => "down",
            Stream::Err => "err",
        }
    }
}

/// Per-channel state.
#[derive(Debug)]
struct Channel {
    seq: u32,
    channel: u32,
    kind: ChannelKind,
    transfer: bool,
    opened: Instant,
    /// The open data file (`.cast` or transfer content), until the channel closes.
    file: Option<LineFile>,
    /// Name of the data file, if one was created.
    file_name: Option<String>,
    /// What the closed data file holds.
    closed_file: Option<FileSeal>,
    decoders: [Utf8Stream; 3],
    bytes: [u64; 3],
    /// Transfers only: digests of in, out, err.
    digests: Option<[StreamDigest; 3]>,
    /// Exec without a pty only: stdout and stderr, each of which may switch to bulk.
    outputs: Option<Box<[OutputStream; 2]>>,
    /// The cast's text so far ends a line (notes start on a line of their own).
    line_start: bool,
    exit_status: Option<u32>,
    exit_signal: Option<String>,
    closed: bool,
}

impl Channel {
    /// The bulk-capable state of `stream`, for exec channels without a pty.
    fn output(&mut self, stream: Stream) -> Option<&mut OutputStream> {
        let outputs = self.outputs.as_deref_mut()?;
        match stream {
            Stream::In => None,
            Stream::Out => Some(&mut outputs[0]),
            Stream::Err => Some(&mut outputs[1]),
        }
    }

    /// Where stdout (`0`) or stderr (`1`) switched to bulk, if it did.
    fn switched(&self, which: usize) -> Option<&OutputStream> {
        self.outputs
            .as_deref()
            .map(|o| &o[which])
            .filter(|o| o.is_bulk())
    }

    fn summary(&self) -> ChannelSummary {
        let sha = |i: usize| {
            self.digests.as_ref().map(|d| d[i].hex()).or_else(|| {
                self.switched(i.checked_sub(1)?)
                    .map(OutputStream::sha256_hex)
            })
        };
        let bulk = |i: usize| self.switched(i).and_then(OutputStream::switched).cloned();
        ChannelSummary {
            seq: self.seq,
            channel: self.channel,
            kind: self.kind.clone(),
            file: self.file_name.clone(),
            bytes_in: self.bytes[0],
            bytes_out: self.bytes[1],
            bytes_err: self.bytes[2],
            sha256_in: sha(0),
            sha256_out: sha(1),
            sha256_err: sha(2),
            bulk_out: bulk(0),
            bulk_err: bulk(1),
            exit_status: self.exit_status,
            exit_signal: self.exit_signal.clone(),
        }
    }
}

fn index(stream: Stream) -> usize {
    match stream {
        Stream::In => 0,
        Stream::Out => 1,
        Stream::Err => 2,
    }
}

/// The state of a session's recording, behind the recorder's mutex.
#[derive(Debug)]
struct Session {
    meta: SessionMeta,
    dir: PathBuf,
    policy: RecordingPolicy,
    key: Arc<CaSigner>,
    events: LineFile,
    chain: Chain,
    chain_file: LineFile,
    channels: Vec<Channel>,
    /// The first write failure; from then on no data is recorded.
    failure: Option<String>,
    /// That first failure was the disk being full.
    failure_disk_full: bool,
    /// Under [`OnFailure::Continue`], that failure until [`Recorder::take_degraded`].
    untaken: Option<RecordingError>,
    last_write: Instant,
    /// Bytes buffered in channel files (kept as a sum so each call stays O(1) however many
    /// channels a session has had).
    channel_pending: usize,
    last_exit: Option<u32>,
    finished: bool,
    /// Bytes written to the recording's files so far.
    written: u64,
    /// The person's quota and the disk watch, when the bastion gave one.
    account: Option<PersonAccount>,
    /// Bytes the session may record in all, and which quota sets that.
    quota_limit: (u64, QuotaKind),
    /// The quota reached, if one was: terminal content is no longer stored.
    quota: Option<QuotaHit>,
    /// That hit until [`Recorder::take_quota`].
    quota_untaken: Option<QuotaHit>,
}

impl Recorder {
    /// Starts recording session `meta.id` in its directory under `root` (see
    /// [`super::session_dir`]), with the journal's `session.start` on disk before it returns.
    ///
    /// An error here means nothing could be recorded; under [`OnFailure::Continue`] the
    /// caller may let the session go on unrecorded (and log `recording.degraded`).
    pub fn start(
        root: &Path,
        meta: SessionMeta,
        policy: RecordingPolicy,
        seal_key: Arc<CaSigner>,
    ) -> Result<Recorder, RecordingError> {
        let dir = id::session_dir(root, &meta.id)?;
        if let Some(parent) = dir.parent() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(parent)
                .map_err(RecordingError::io(parent, "create directory"))?;
        }
        DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(RecordingError::io(&dir, "create directory"))?;
        let events = LineFile::create(&dir, EVENTS_FILE)
            .map_err(RecordingError::io(dir.join(EVENTS_FILE), "create"))?;
        let chain_file = LineFile::create(&dir, CHAIN_FILE)
            .map_err(RecordingError::io(dir.join(CHAIN_FILE), "create"))?;
        let policy_session_limit = policy.max_session_bytes;
        let mut session = Session {
            chain: Chain::new(&meta.id),
            meta,
            dir,
            policy,
            key: seal_key,
            events,
            chain_file,
            channels: Vec::new(),
            failure: None,
            failure_disk_full: false,
            untaken: None,
            last_write: Instant::now(),
            channel_pending: 0,
            last_exit: None,
            finished: false,
            written: 0,
            account: None,
            quota_limit: (policy_session_limit, QuotaKind::Session),
            quota: None,
            quota_untaken: None,
        };
        let start = json!({
            "session": session.meta,
            "policy": session.policy,
            "signer": session.key.public_line(),
        });
        session.journal("session.start", start)?;
        session.write_out(true)?;
        File::open(&session.dir)
            .and_then(|d| d.sync_all())
            .map_err(RecordingError::io(&session.dir, "sync directory"))?;
        Ok(Recorder {
            shared: Arc::new(Mutex::new(session)),
            finished: false,
        })
    }

    /// The session id.
    pub fn id(&self) -> String {
        self.lock().meta.id.clone()
    }

    /// The recording directory (for the session index).
    pub fn dir(&self) -> PathBuf {
        self.lock().dir.clone()
    }

    /// Starts recording a channel once its `shell`, `exec` or `subsystem` request is known.
    pub fn channel(
        &self,
        channel: u32,
        kind: ChannelKind,
    ) -> Result<ChannelRecorder, RecordingError> {
        let mut s = self.lock();
        s.check()?;
        let slot = s.open_channel(channel, kind)?;
        Ok(ChannelRecorder {
            shared: Arc::clone(&self.shared),
            slot,
        })
    }

    /// Writes everything buffered and makes it durable (`fdatasync`). Call it every second.
    /// An error means the recording failed and the policy is to end the session.
    pub fn flush(&self) -> Result<(), RecordingError> {
        let mut s = self.lock();
        s.check()?;
        s.refresh_quota();
        s.write_out_or_fail(true)
    }

    /// Under [`OnFailure::Continue`]: the write failure that degraded the recording, once,
    /// so the caller can log `recording.degraded` to the audit log (the recording's own disk
    /// may be the one that is full). Check it after [`Recorder::flush`].
    pub fn take_degraded(&self) -> Option<RecordingError> {
        self.lock().untaken.take()
    }

    /// Charges this session's recording to `account` (the person's quota and the disk
    /// watch) from now on, including what it has written already.
    pub fn account_to(&self, account: PersonAccount) {
        let mut s = self.lock();
        account.charge(s.written);
        s.account = Some(account);
        s.refresh_quota();
    }

    /// The recording quota the session reached, once, so the caller can log
    /// `recording.quota` to the audit log. Check it after [`Recorder::flush`].
    pub fn take_quota(&self) -> Option<QuotaHit> {
        self.lock().quota_untaken.take()
    }

    /// The first write failure, if recording stopped.
    pub fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    /// Ends the recording: closes the channels still open, journals `session.end`, writes
    /// and syncs everything, and seals it with the bastion's key.
    ///
    /// Returns the summary even when writing or sealing failed (then `sealed` is false and
    /// `failure` says why), because the session index must be completed either way.
    pub fn finish(mut self, end_reason: &str) -> SessionSummary {
        self.finished = true;
        self.lock().finish(end_reason)
    }

    fn lock(&self) -> MutexGuard<'_, Session> {
        lock(&self.shared)
    }
}

impl Drop for Recorder {
    /// Not finished (an error path or a panic): write what is buffered, unsealed. A crash
    /// (`kill -9`) skips this and loses at most the last second.
    fn drop(&mut self) {
        if !self.finished {
            let mut s = self.lock();
            if s.failure.is_none() {
                let _ = s.write_out(true);
            }
        }
    }
}

/// A poisoned lock only means a panic mid-call; the state is still consistent enough to
/// write out and seal (lines are pushed whole).
fn lock(shared: &Mutex<Session>) -> MutexGuard<'_, Session> {
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChannelRecorder {
    /// Records output (stdout) going to the client.
    pub fn output(&mut self, data: &[u8]) -> Result<(), RecordingError> {
        self.data(Stream::Out, data)
    }

    /// Records stderr going to the client.
    pub fn stderr(&mut self, data: &[u8]) -> Result<(), RecordingError> {
        self.data(Stream::Err, data)
    }

    /// Records input from the client (counted always; stored only if the policy says so).
    pub fn input(&mut self, data: &[u8]) -> Result<(), RecordingError> {
        self.data(Stream::In, data)
    }

    /// Records a window size change.
    pub fn resize(&mut self, cols: u16, rows: u16) -> Result<(), RecordingError> {
        lock(&self.shared).resize(self.slot, cols, rows)
    }

    /// Records the remote exit status.
    pub fn exit_status(&mut self, status: u32) -> Result<(), RecordingError> {
        let mut s = lock(&self.shared);
        s.last_exit = Some(status);
        let ch = &mut s.channels[self.slot];
        ch.exit_status = Some(status);
        let seq = ch.seq;
        s.journal("channel.exit", json!({"seq": seq, "status": status}))?;
        s.write_if_due()
    }

    /// Records the signal that ended the remote command (`TERM`, `KILL`, ...).
    pub fn exit_signal(&mut self, signal: &str) -> Result<(), RecordingError> {
        let mut s = lock(&self.shared);
        let ch = &mut s.channels[self.slot];
        ch.exit_signal = Some(signal.to_owned());
        let seq = ch.seq;
        s.journal("channel.exit", json!({"seq": seq, "signal": signal}))?;
        s.write_if_due()
    }

    /// Journals the channel's per-file transfer records (`transfer.file`, see
    /// [`crate::filexfer`]): in the journal, so the hash chain and the seal cover them.
    pub fn files(&mut self, records: &[FileRecord]) -> Result<(), RecordingError> {
        let mut s = lock(&self.shared);
        let seq = s.channels[self.slot].seq;
        for record in records {
            let mut fields = serde_json::to_value(record).unwrap_or_else(|_| json!({}));
            if let Value::Object(map) = &mut fields {
                map.insert("seq".into(), seq.into());
            }
            s.journal("transfer.file", fields)?;
        }
        s.write_if_due()
    }

    /// Ends the channel's recording and returns what it did.
    pub fn finish(self) -> Result<ChannelSummary, RecordingError> {
        lock(&self.shared).close_channel(self.slot)
    }

    fn data(&mut self, stream: Stream, data: &[u8]) -> Result<(), RecordingError> {
        lock(&self.shared).data(self.slot, stream, data)
    }
}

impl Session {
    /// Under [`OnFailure::Terminate`], refuses to go on after a failure.
    fn check(&self) -> Result<(), RecordingError> {
        match (&self.failure, self.policy.on_failure) {
            (Some(reason), OnFailure::Terminate) => Err(RecordingError::Failed {
                id: self.meta.id.clone(),
                reason: reason.clone(),
                disk_full: self.failure_disk_full,
            }),
            _ => Ok(()),
        }
    }

    /// Data is recorded only while healthy and not finished.
    fn recording(&self) -> bool {
        self.failure.is_none() && !self.finished
    }

    fn open_channel(&mut self, channel: u32, kind: ChannelKind) -> Result<usize, RecordingError> {
        let seq = u32::try_from(self.channels.len() + 1).unwrap_or(u32::MAX);
        let transfer = kind.is_transfer();
        let limit = self.policy.exec_output_limit;
        let outputs = if transfer {
            None
        } else if kind.may_switch_to_bulk() {
            Some(Box::new([
                OutputStream::new(limit),
                OutputStream::new(limit),
            ]))
        } else {
            // Terminal output switches only at a quota.
            Some(Box::new([
                OutputStream::terminal(),
                OutputStream::terminal(),
            ]))
        };
        let name = if !transfer {
            Some(format!("chan-{seq}.cast"))
        } else if self.policy.transfer_content {
            Some(format!("chan-{seq}.transfer.jsonl"))
        } else {
            None
        };
        let mut file = None;
        let mut failed = None;
        if let (Some(name), true) = (&name, self.recording()) {
            match LineFile::create(&self.dir, name) {
                Ok(mut f) => {
                    if !transfer {
                        let header =
                            cast::header(&self.meta, seq, channel, &kind, jitssh_core::unix_now())
                                .map_err(|source| RecordingError::Encode {
                                    path: f.path().to_path_buf(),
                                    what: "the asciicast header",
                                    source,
                                })?;
                        f.push(&header);
                        self.channel_pending += header.len() + 1;
                    }
                    file = Some(f);
                }
                Err(e) => failed = Some(RecordingError::io(self.dir.join(name), "create")(e)),
            }
        }
        let file_name = file.as_ref().map(|f| f.name().to_owned());
        self.journal(
            "channel.open",
            json!({"seq": seq, "channel": channel, "kind": kind, "file": file_name}),
        )?;
        self.channels.push(Channel {
            seq,
            channel,
            kind,
            transfer,
            opened: Instant::now(),
            file,
            file_name,
            closed_file: None,
            decoders: Default::default(),
            bytes: [0; 3],
            digests: transfer.then(Default::default),
            outputs,
            line_start: true,
            exit_status: None,
            exit_signal: None,
            closed: false,
        });
        if let Some(err) = failed {
            self.fail(err)?;
        }
        self.write_if_due()?;
        Ok(self.channels.len() - 1)
    }

    fn data(&mut self, slot: usize, stream: Stream, data: &[u8]) -> Result<(), RecordingError> {
        self.check()?;
        let recording = self.recording();
        if recording
            && self.quota.is_none()
            && self.would_store(slot, stream)
            && self.usage() + data.len() as u64 > self.quota_limit.0
        {
            self.reach_quota(self.quota_limit);
        }
        let over = self.quota.is_some();
        // Past a quota, nothing but output notes and totals is stored.
        let record_input = self.policy.record_input && !over;
        let ch = &mut self.channels[slot];
        let i = index(stream);
        ch.bytes[i] += data.len() as u64;
        if let Some(digests) = &mut ch.digests {
            digests[i].update(data);
        }
        // Output of a command without a pty: once bulk, a count and a hash is all.
        let plan = match ch.output(stream) {
            Some(out) if out.is_bulk() => {
                out.bulk(data);
                return Ok(());
            }
            Some(out) if over && recording && !data.is_empty() => {
                out.force(BulkReason::Quota);
                out.bulk(data);
                if !ch.closed {
                    let at = ch.opened.elapsed();
                    self.switch_to_bulk(slot, at, stream)?;
                }
                return self.write_if_due();
            }
            Some(out) => Some(out.take(data)),
            None => None,
        };
        if !recording || ch.closed || data.is_empty() {
            return Ok(());
        }
        let at = ch.opened.elapsed();
        if let Some(plan) = plan {
            let decoded = ch.decoders[i].decode(&data[..plan.cast]);
            self.push_text(slot, at, stream, decoded)?;
            if plan.switch.is_some() {
                self.switch_to_bulk(slot, at, stream)?;
            }
        } else if ch.transfer {
            // Content only if the policy asked, i.e. the file exists.
            if let Some(file) = ch.file.as_mut().filter(|_| !over) {
                let b64 = base64::engine::general_purpose::STANDARD.encode(data);
                let line = encode(file, cast::event(at, stream.transfer_code(), &b64))?;
                file.push(&line);
                self.channel_pending += line.len() + 1;
            }
        } else if stream != Stream::In || record_input {
            let decoded = ch.decoders[i].decode(data);
            self.push_text(slot, at, stream, decoded)?;
        }
        self.write_if_due()
    }

    /// Pushes a decoded terminal event, and the exact bytes if they were not UTF-8.
    fn push_text(
        &mut self,
        slot: usize,
        at: Duration,
        stream: Stream,
        decoded: Decoded,
    ) -> Result<(), RecordingError> {
        let Some(file) = &mut self.channels[slot].file else {
            return Ok(());
        };
        if decoded.text.is_empty() {
            return Ok(());
        }
        let line = encode(file, cast::event(at, stream.cast_code(), &decoded.text))?;
        let line_no = file.next_line();
        file.push(&line);
        self.channel_pending += line.len() + 1;
        let name = file.name().to_owned();
        self.channels[slot].line_start = decoded.text.ends_with('\n');
        if let Some(raw) = decoded.raw {
            let data = base64::engine::general_purpose::STANDARD.encode(raw);
            self.journal(
                "data.raw",
                json!({"file": name, "line": line_no, "data": data}),
            )?;
        }
        Ok(())
    }

    /// `stream` just switched to bulk: the cast gets the rest of a split character (as raw
    /// bytes) and a note, the journal `output.bulk`.
    fn switch_to_bulk(
        &mut self,
        slot: usize,
        at: Duration,
        stream: Stream,
    ) -> Result<(), RecordingError> {
        if let Some(decoded) = self.channels[slot].decoders[index(stream)].finish() {
            self.push_text(slot, at, stream, decoded)?;
        }
        let ch = &mut self.channels[slot];
        let Some(switch) = ch.output(stream).and_then(|o| o.switched()).cloned() else {
            return Ok(());
        };
        let name = stream_name(stream == Stream::Err);
        let note = match (&switch.reason, &self.quota) {
            (BulkReason::Quota, Some(hit)) => super::quota::switch_note(name, &switch, hit),
            _ => switch_note(name, &switch, self.policy.exec_output_limit),
        };
        let line = self.push_note(slot, at, &note)?;
        let seq = self.channels[slot].seq;
        let file = self.channels[slot].file_name.clone();
        self.journal(
            "output.bulk",
            json!({"seq": seq, "stream": name, "reason": switch.reason,
                   "offset": switch.offset, "file": file, "line": line}),
        )
    }

    /// At the close of a channel: for each stream that went bulk, a note in the cast with
    /// its total and digest, and the journal's `output.bulk.end`.
    fn end_bulk(&mut self, slot: usize, at: Duration) -> Result<(), RecordingError> {
        for stream in [Stream::Out, Stream::Err] {
            let ch = &mut self.channels[slot];
            let Some(out) = ch.output(stream) else {
                return Ok(());
            };
            let Some(switch) = out.switched().cloned() else {
                continue;
            };
            let (total, sha256) = (out.seen(), out.sha256_hex());
            let name = stream_name(stream == Stream::Err);
            let line = self.push_note(slot, at, &end_note(name, &switch, total, &sha256))?;
            let seq = self.channels[slot].seq;
            let file = self.channels[slot].file_name.clone();
            self.journal(
                "output.bulk.end",
                json!({"seq": seq, "stream": name, "bytes": total, "sha256": sha256,
                       "file": file, "line": line}),
            )?;
        }
        Ok(())
    }

    /// Pushes the recorder's own `note` to the channel's cast as an `o` event on a line of
    /// its own; returns its line number (`None` without a cast).
    fn push_note(
        &mut self,
        slot: usize,
        at: Duration,
        note: &str,
    ) -> Result<Option<u64>, RecordingError> {
        let ch = &mut self.channels[slot];
        let Some(file) = &mut ch.file else {
            return Ok(None);
        };
        let text = if ch.line_start {
            note.to_owned()
        } else {
            format!("\n{note}")
        };
        let line = encode(file, cast::event(at, "o", &text))?;
        let line_no = file.next_line();
        file.push(&line);
        ch.line_start = true;
        self.channel_pending += line.len() + 1;
        Ok(Some(line_no))
    }

    fn resize(&mut self, slot: usize, cols: u16, rows: u16) -> Result<(), RecordingError> {
        self.check()?;
        let recording = self.recording() && self.quota.is_none();
        let ch = &mut self.channels[slot];
        if !recording || ch.closed || ch.transfer {
            return Ok(());
        }
        let at = ch.opened.elapsed();
        if let Some(file) = &mut ch.file {
            let line = encode(file, cast::resize(at, cols, rows))?;
            file.push(&line);
            self.channel_pending += line.len() + 1;
        }
        self.write_if_due()
    }

    fn close_channel(&mut self, slot: usize) -> Result<ChannelSummary, RecordingError> {
        if self.channels[slot].closed {
            return Ok(self.channels[slot].summary());
        }
        // A character cut off at the very end is kept as raw bytes.
        if self.recording() && !self.channels[slot].transfer {
            let at = self.channels[slot].opened.elapsed();
            for stream in [Stream::Out, Stream::Err, Stream::In] {
                if let Some(decoded) = self.channels[slot].decoders[index(stream)].finish() {
                    self.push_text(slot, at, stream, decoded)?;
                }
            }
            self.end_bulk(slot, at)?;
        }
        let ch = &mut self.channels[slot];
        ch.closed = true;
        let summary = ch.summary();
        self.journal("channel.close", json!({"summary": summary}))?;
        // Write the channel's lines and let go of its file descriptor: a session may run
        // thousands of commands.
        self.write_out_or_fail(false)?;
        if let Some(mut file) = self.channels[slot].file.take() {
            if self.failure.is_none()
                && let Err(e) = file.sync()
            {
                let err = RecordingError::io(file.path(), "sync")(e);
                self.channels[slot].closed_file = Some(file.seal());
                self.fail(err)?;
                return Ok(summary);
            }
            self.channels[slot].closed_file = Some(file.seal());
        }
        Ok(summary)
    }

    fn finish(&mut self, end_reason: &str) -> SessionSummary {
        for slot in 0..self.channels.len() {
            // Failures are recorded in `self.failure`; the seal reports them.
            let _ = self.close_channel(slot);
        }
        let ended_at = jitssh_core::unix_now();
        let (bytes_in, bytes_out) = self.channels.iter().fold((0, 0), |(i, o), ch| {
            (i + ch.bytes[0], o + ch.bytes[1] + ch.bytes[2])
        });
        let end = json!({
            "reason": end_reason,
            "ended_at": ended_at,
            "bytes_in": bytes_in,
            "bytes_out": bytes_out,
            "exit_status": self.last_exit,
        });
        let _ = self.journal("session.end", end);
        // Even after a failure, try once more: the disk may have room again, and what is
        // written is chained; the seal then says what went wrong.
        if let Err(e) = self.write_out(true)
            && self.failure.is_none()
        {
            self.failure = Some(e.to_string());
        }
        self.finished = true;
        let channels: Vec<ChannelSummary> = self.channels.iter().map(Channel::summary).collect();
        let mut manifest = Manifest::new(self.meta.clone(), self.key.public_line());
        manifest.ended_at = ended_at;
        manifest.end_reason = end_reason.to_owned();
        manifest.bytes_in = bytes_in;
        manifest.bytes_out = bytes_out;
        manifest.exit_status = self.last_exit;
        manifest.channels = channels.clone();
        manifest.files = std::iter::once(self.events.seal())
            .chain(self.channels.iter().filter_map(|ch| {
                ch.file
                    .as_ref()
                    .map(LineFile::seal)
                    .or_else(|| ch.closed_file.clone())
            }))
            .collect();
        manifest.chain_entries = self.chain.len();
        manifest.chain_last_hash = self.chain.last_hash().to_owned();
        manifest.failure = self.failure.clone();
        let sealed = match write_seal(&self.dir, &manifest, &self.key) {
            Ok(()) => true,
            Err(e) => {
                self.failure.get_or_insert_with(|| e.to_string());
                false
            }
        };
        SessionSummary {
            id: self.meta.id.clone(),
            dir: self.dir.clone(),
            ended_at,
            end_reason: end_reason.to_owned(),
            bytes_in,
            bytes_out,
            exit_status: self.last_exit,
            channels,
            sealed,
            failure: self.failure.clone(),
        }
    }

    /// Pushes a journal line: `{"event":..,"time":..,<fields>}`.
    fn journal(&mut self, event: &str, fields: Value) -> Result<(), RecordingError> {
        if self.finished {
            return Ok(());
        }
        let mut line = Map::new();
        line.insert("event".into(), event.into());
        line.insert(
            "time".into(),
            chrono::DateTime::<chrono::Utc>::from(jitssh_core::clock::now())
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
                .into(),
        );
        if let Value::Object(fields) = fields {
            line.extend(fields);
        }
        let bytes = encode(&self.events, serde_json::to_vec(&Value::Object(line)))?;
        self.events.push(&bytes);
        Ok(())
    }

    /// Whether data of `stream` on channel `slot` would be stored (counts toward a quota):
    /// output not already recorded in bulk, input if the policy records it, transfer
    /// content if it asks.
    fn would_store(&self, slot: usize, stream: Stream) -> bool {
        let ch = &self.channels[slot];
        match stream {
            _ if ch.transfer => ch.file.is_some(),
            Stream::In => self.policy.record_input,
            Stream::Out => ch.switched(0).is_none(),
            Stream::Err => ch.switched(1).is_none(),
        }
    }

    /// Bytes of the recording so far: written, and buffered to be.
    fn usage(&self) -> u64 {
        self.written
            + (self.events.pending_len() + self.chain_file.pending_len() + self.channel_pending)
                as u64
    }

    /// Re-reads the person's quota and the disk (once a second, from the flush).
    fn refresh_quota(&mut self) {
        let mut limit = (self.policy.max_session_bytes, QuotaKind::Session);
        let Some(account) = &self.account else {
            self.quota_limit = limit;
            return;
        };
        let person = account.person_limit();
        if person < limit.0 {
            limit = (person, QuotaKind::Person);
        }
        let disk = account.disk_low();
        self.quota_limit = limit;
        if self.quota.is_none() && self.recording() {
            if let Some(floor) = disk {
                self.reach_quota((floor, QuotaKind::Disk));
            } else if self.usage() > limit.0 {
                self.reach_quota(limit);
            }
        }
    }

    /// The session reached a quota: from now on every output stream switches to size and
    /// digest at its next byte; journaled, and handed to [`Recorder::take_quota`].
    fn reach_quota(&mut self, (limit, kind): (u64, QuotaKind)) {
        let limit = match (kind, &self.account) {
            (QuotaKind::Person, Some(account)) => account.max_person_bytes(),
            _ => limit,
        };
        let hit = QuotaHit {
            kind,
            limit,
            recorded: self.usage(),
        };
        tracing::warn!(session = %self.meta.id, person = %self.meta.user, "recording: {hit}; terminal output is recorded as size and SHA-256 from now on");
        let _ = self.journal(
            "recording.quota",
            json!({"quota": kind.as_str(), "limit": limit, "recorded": hit.recorded}),
        );
        self.quota = Some(hit.clone());
        self.quota_untaken = Some(hit);
    }

    /// Writes out if the buffer is full or a second has passed.
    fn write_if_due(&mut self) -> Result<(), RecordingError> {
        let buffered =
            self.events.pending_len() + self.chain_file.pending_len() + self.channel_pending;
        if buffered >= self.policy.max_buffer || self.last_write.elapsed() >= WRITE_INTERVAL {
            self.write_out_or_fail(false)
        } else {
            Ok(())
        }
    }

    /// [`Session::write_out`], with a failure handled by the policy. After a failure it is
    /// only a best effort (the journal may still get its lines).
    fn write_out_or_fail(&mut self, sync: bool) -> Result<(), RecordingError> {
        match self.write_out(sync) {
            Ok(()) => Ok(()),
            Err(_) if self.failure.is_some() => self.check(),
            Err(e) => self.fail(e),
        }
    }

    /// Writes every buffered line (data files first), then the chain entries covering what
    /// was written; with `sync`, makes the data durable before the chain. Returns the first
    /// error, after giving every file its chance.
    fn write_out(&mut self, sync: bool) -> Result<(), RecordingError> {
        let mut first_err = None;
        let mut written = Vec::new();
        let files = self
            .channels
            .iter_mut()
            .filter_map(|c| c.file.as_mut())
            .chain(std::iter::once(&mut self.events));
        let mut bytes = 0u64;
        for file in files {
            let pending = file.pending_len() as u64;
            match file.write_out() {
                Ok(Some(w)) => {
                    bytes += pending;
                    written.push((file.name().to_owned(), w));
                }
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert_with(|| RecordingError::io(file.path(), "write")(e));
                }
            }
            if sync && let Err(e) = file.sync() {
                first_err.get_or_insert_with(|| RecordingError::io(file.path(), "sync")(e));
            }
        }
        // Every channel file was written or, on error, emptied.
        self.channel_pending = 0;
        for (name, w) in written {
            let line = self.chain.entry(&name, w.first, &w.hashes);
            self.chain_file.push(&line);
        }
        let pending = self.chain_file.pending_len() as u64;
        let chain_result = self
            .chain_file
            .write_out()
            .and_then(|_| if sync { self.chain_file.sync() } else { Ok(()) });
        if chain_result.is_ok() {
            bytes += pending;
        }
        self.written += bytes;
        if let Some(account) = &self.account {
            account.charge(bytes);
        }
        if let Err(e) = chain_result {
            first_err.get_or_insert_with(|| RecordingError::io(self.chain_file.path(), "write")(e));
        }
        self.last_write = Instant::now();
        first_err.map_or(Ok(()), Err)
    }

    /// The first failure: stop recording data, then follow the policy.
    fn fail(&mut self, err: RecordingError) -> Result<(), RecordingError> {
        self.failure = Some(err.to_string());
        self.failure_disk_full = err.is_disk_full();
        for ch in &mut self.channels {
            if let Some(file) = &mut ch.file {
                file.discard_pending();
            }
        }
        self.channel_pending = 0;
        match self.policy.on_failure {
            OnFailure::Terminate => Err(err),
            OnFailure::Continue => {
                let _ = self.journal("recording.degraded", json!({"error": err.to_string()}));
                let _ = self.write_out(false);
                self.untaken = Some(err);
                Ok(())
            }
        }
    }
}

/// Maps a JSON encoding error to [`RecordingError::Encode`] for `file`.
fn encode(
    file: &LineFile,
    result: Result<Vec<u8>, serde_json::Error>,
) -> Result<Vec<u8>, RecordingError> {
    result.map_err(|source| RecordingError::Encode {
        path: file.path().to_path_buf(),
        what: "an event",
        source,
    })
}

#[cfg(test)]
impl Recorder {
    /// Test seam: make the data file of channel `seq` write to `file` (e.g. `/dev/full`).
    pub(crate) fn redirect_channel_file(&self, seq: u32, file: File) {
        let mut s = self.lock();
        if let Some(f) = s
            .channels
            .iter_mut()
            .find(|c| c.seq == seq)
            .and_then(|c| c.file.as_mut())
        {
            f.redirect(file);
        }
    }
}
