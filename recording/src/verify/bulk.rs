//! What `verify` says about output recorded in bulk (see `recording::bulk`): which streams
//! stopped going to the cast at which byte, and their size and SHA-256, which the seal
//! vouches for (the content is not stored: an auditor checks a copy of it with
//! `sha256sum`); and whether the journal and the seal agree on it.
//!
//! Both are protected already (the journal by the chain, the seal by its signature), so a
//! disagreement means a recorder bug or a seal made from something else: it is reported as
//! a seal mismatch.

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use super::{ProblemKind, Verifier};
use crate::model::{BulkReason, BulkSwitch, ChannelSummary};
use crate::reader::JournalReader;
use crate::seal::Manifest;
use crate::{EVENTS_FILE, RecordingError};

/// One output stream recorded in bulk, as the seal (or, unsealed, the journal) tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkStatus {
    /// The channel (as in `chan-<seq>.cast`).
    pub seq: u32,
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Why it switched.
    pub reason: BulkReason,
    /// Bytes of the stream in the cast, before the switch.
    pub offset: u64,
    /// Size of the whole stream (unknown if the session did not end cleanly).
    pub bytes: Option<u64>,
    /// SHA-256 of the whole stream (likewise).
    pub sha256: Option<String>,
}

impl fmt::Display for BulkStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let why = match self.reason {
            BulkReason::Limit => "over the limit",
            BulkReason::Binary => "binary",
            BulkReason::Quota => "over the recording quota",
        };
        write!(
            f,
            "channel {} {}: from byte {} on recorded as size and SHA-256 only ({why})",
            self.seq, self.stream, self.offset
        )?;
        match (self.bytes, &self.sha256) {
            (Some(bytes), Some(sha)) => write!(
                f,
                ": {} bytes; all {bytes} bytes have SHA-256 {sha}",
                bytes.saturating_sub(self.offset)
            ),
            _ => write!(
                f,
                "; size and SHA-256 lost (the session did not end cleanly)"
            ),
        }
    }
}

/// `output.bulk` in the journal.
#[derive(Debug, Deserialize)]
struct Switch {
    seq: u32,
    stream: String,
    reason: BulkReason,
    offset: u64,
}

/// `output.bulk.end` in the journal.
#[derive(Debug, Deserialize)]
struct End {
    seq: u32,
    stream: String,
    bytes: u64,
    sha256: String,
}

/// The journal's bulk events.
#[derive(Debug, Default)]
pub(super) struct Journal {
    switches: Vec<Switch>,
    ends: Vec<End>,
}

impl Journal {
    /// Reads the bulk events of `dir`'s journal (a missing journal is reported elsewhere).
    pub fn read(dir: &Path) -> Result<Journal, RecordingError> {
        let mut journal = Journal::default();
        let mut events = match JournalReader::open(dir) {
            Ok(events) => events,
            Err(RecordingError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                return Ok(journal);
            }
            Err(e) => return Err(e),
        };
        // Cheap test first: most lines are other events.
        const MARK: &[u8] = b"\"output.bulk";
        let bulk = |line: &[u8]| line.windows(MARK.len()).any(|w| w == MARK);
        while let Some(value) = events.next_event(bulk)? {
            match value["event"].as_str() {
                Some("output.bulk") => journal.switches.extend(serde_json::from_value(value).ok()),
                Some("output.bulk.end") => journal.ends.extend(serde_json::from_value(value).ok()),
                _ => {}
            }
        }
        Ok(journal)
    }

    fn switch(&self, seq: u32, stream: &str) -> Option<&Switch> {
        self.switches
            .iter()
            .find(|s| s.seq == seq && s.stream == stream)
    }

    fn end(&self, seq: u32, stream: &str) -> Option<&End> {
        self.ends
            .iter()
            .find(|e| e.seq == seq && e.stream == stream)
    }

    /// Unsealed: what the journal tells.
    pub fn statuses(&self) -> Vec<BulkStatus> {
        self.switches
            .iter()
            .map(|s| {
                let end = self.end(s.seq, &s.stream);
                BulkStatus {
                    seq: s.seq,
                    stream: s.stream.clone(),
                    reason: s.reason,
                    offset: s.offset,
                    bytes: end.map(|e| e.bytes),
                    sha256: end.map(|e| e.sha256.clone()),
                }
            })
            .collect()
    }
}

/// An output stream as a channel summary tells it: name, where it switched, size, digest.
type Stream<'a> = (
    &'static str,
    Option<&'a BulkSwitch>,
    u64,
    Option<&'a String>,
);

/// stdout and stderr of a channel.
fn streams(ch: &ChannelSummary) -> [Stream<'_>; 2] {
    [
        (
            "stdout",
            ch.bulk_out.as_ref(),
            ch.bytes_out,
            ch.sha256_out.as_ref(),
        ),
        (
            "stderr",
            ch.bulk_err.as_ref(),
            ch.bytes_err,
            ch.sha256_err.as_ref(),
        ),
    ]
}

impl Verifier {
    /// Sealed: the seal's bulk streams, each checked against the journal.
    pub(super) fn check_bulk(&mut self, m: &Manifest, journal: &Journal) -> Vec<BulkStatus> {
        let mut found = Vec::new();
        for ch in &m.channels {
            for (stream, switch, bytes, sha) in streams(ch) {
                let seq = ch.seq;
                let logged = journal.switch(seq, stream);
                let Some(switch) = switch else {
                    if logged.is_some() {
                        self.mismatch(format!(
                            "the journal says channel {seq} {stream} switched to bulk, the seal does not"
                        ));
                    }
                    continue;
                };
                match logged {
                    Some(s) if s.offset == switch.offset && s.reason == switch.reason => {}
                    Some(s) => self.mismatch(format!(
                        "channel {seq} {stream} switched to bulk at byte {} ({:?}) says the journal, at byte {} ({:?}) says the seal",
                        s.offset, s.reason, switch.offset, switch.reason
                    )),
                    None => self.mismatch(format!(
                        "the seal says channel {seq} {stream} switched to bulk, the journal has no output.bulk"
                    )),
                }
                match (journal.end(seq, stream), sha) {
                    (Some(e), Some(sha)) if e.bytes == bytes && e.sha256 == *sha => {}
                    (Some(e), sha) => self.mismatch(format!(
                        "channel {seq} {stream}: {} bytes with SHA-256 {} says the journal, {bytes} bytes with {} says the seal",
                        e.bytes,
                        e.sha256,
                        sha.map_or("none", String::as_str)
                    )),
                    (None, _) => self.mismatch(format!(
                        "channel {seq} {stream}: the journal has no output.bulk.end"
                    )),
                }
                found.push(BulkStatus {
                    seq,
                    stream: stream.to_owned(),
                    reason: switch.reason,
                    offset: switch.offset,
                    bytes: Some(bytes),
                    sha256: sha.cloned(),
                });
            }
        }
        found
    }

    fn mismatch(&mut self, detail: String) {
        self.push(EVENTS_FILE, None, ProblemKind::SealMismatch, detail);
    }
}
