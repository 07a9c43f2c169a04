//! Session recordings: what happened in each session, written as it happens, tamper-evident,
//! and playable by stock `asciinema`.
//!
//! This crate is everything about a recording that is not SSH: the format and the
//! [`Recorder`] that writes it, the per-session [`Writer`] thread that owns the recorder's
//! files, hash chain and `fdatasync`s, the quotas, the one reader ([`reader`], on the line
//! reader both it and the verifier use) and the verifier ([`verify_session`]). The bastion
//! feeds it (its relay glue implements the pump's tap on top of [`Writer`]); the auditor
//! (`jitssh-auditor`) reads it.
//!
//! # On disk
//!
//! One directory per session, `<root>/YYYY/MM/DD/<id>/` (the date is the session's start,
//! taken from the id, so a directory can be found from an id alone and old days are removed
//! a directory at a time):
//!
//! | file | what |
//! |---|---|
//! | `events.jsonl` | session journal: `session.start` (who, from where, certificate, target), `channel.open`/`channel.exit`/`channel.close` (command, exit status, byte counts, transfer and bulk digests), `data.raw`, `output.bulk`/`output.bulk.end`, `transfer.file` (per-file transfer audit, see [`filexfer`]), `recording.quota`, `recording.degraded`, `session.end` |
//! | `chan-<k>.cast` | asciicast v2 for the k-th terminal channel (shell, or exec of a command): header with size, `TERM`, the command, session metadata under `jitssh`; `o` output, `r` resize, `i` input only when the policy asks |
//! | `chan-<k>.transfer.jsonl` | sftp/scp/rsync content, only when the policy asks: `[t, "up"\|"down"\|"err", "<base64>"]` lines |
//! | `chain.jsonl` | the hash chain over every line of the files above |
//! | `seal.json`, `seal.json.sig` | the signed manifest written when the session ends |
//!
//! `k` counts channels in the order they opened (SSH channel numbers can be reused); the
//! journal maps it to the SSH channel number. Exec output goes to a `.cast` too, so a replay
//! shows what the user saw; stderr is written as `o` like stdout (its byte count is in the
//! journal). Transfers (every subsystem, and exec of `scp`, `sftp-server`, `rsync --server`)
//! are recorded as bytes and SHA-256 per direction, not content, unless the policy asks.
//!
//! Output of other commands run without a pty (`ssh host tar cz /srv > srv.tgz`) goes to the
//! `.cast` until it passes [`RecordingPolicy::exec_output_limit`] or turns out binary; from
//! there on it is recorded like a transfer, as size and SHA-256 (of the whole stream), with a
//! note in the cast where it stops and one with the totals at the end, and `output.bulk` /
//! `output.bulk.end` in the journal. stdout and stderr switch separately; channels with a
//! pty never do. See the `bulk` module for the rules and the exact records.
//!
//! Past a recording quota (per session, per person and day, or the disk's free-space floor;
//! see the `quota` module) every output stream of the session, pty or not, switches the
//! same way, with reason `quota` and a `recording.quota` line in the journal.
//!
//! # Bytes that are not UTF-8
//!
//! asciicast event data is a JSON string, so output is decoded as UTF-8 per stream with the
//! incomplete tail of a read (up to 3 bytes of a multibyte character) carried over to the
//! next read: a character split across reads arrives whole in the later event. Truly invalid
//! bytes become U+FFFD in the `.cast` (which stays playable), and the exact bytes of that
//! event are kept in a `data.raw` journal line (`file`, `line`, base64 `data`), so the raw
//! stream can be rebuilt losslessly: for every event with a `data.raw` line take those
//! bytes, for the others the UTF-8 of the event string; skip the recorder's notes on bulk
//! output (the lines named by `line` in `output.bulk` and `output.bulk.end`).
//!
//! # Integrity: chain in a sidecar, seal at the end
//!
//! asciinema 2.2 reads every line after the header as a 3-element array (`time, type, data
//! = event`), so an extra element or a non-event line breaks `asciinema cat` and `play`;
//! extra header keys are ignored. The chain therefore lives beside the data, in
//! `chain.jsonl`. Each time buffered lines are written to a file, one chain entry follows:
//!
//! ```text
//! {"seq":N,"prev":"<64 hex>","file":"chan-1.cast","first":L,"lines":["<32 hex>",...],"hash":"<64 hex>"}
//! ```
//!
//! `lines` are the first 128 bits of the SHA-256 of each line written (without its `\n`),
//! from line number `first` on. `hash` is the SHA-256 of the entry's bytes as stored with
//! `,"hash":...` removed (the audit log's rule: defined on stored bytes, no
//! re-serialisation). The first entry's `prev` is SHA-256 of `jitssh-recording:<id>`, which
//! ties the chain to its session. Data lines are written before the chain entry that covers
//! them, so a crash can leave lines the chain does not cover yet, never a chain claiming
//! lines that are not there.
//!
//! At the end, [`Recorder::finish`] writes `seal.json`: session metadata, certificate
//! serial, end reason, per-channel summaries, each file's line count, size and SHA-256, and
//! the chain's length and final hash; and `seal.json.sig`, an SSHSIG signature (namespace
//! [`SEAL_NAMESPACE`]) by the bastion's ed25519 key over the exact bytes of `seal.json`. An
//! outside auditor can check it with stock OpenSSH:
//! `ssh-keygen -Y verify -f allowed_signers -I bastion -n jitssh-recording -s seal.json.sig < seal.json`.
//!
//! [`verify_session`] re-hashes every line against the chain, names each altered, removed,
//! inserted or truncated line, checks the chain links, the seal's signature and its counts,
//! and reports an unsealed recording (a crash) with how much of it the chain still vouches
//! for.
//!
//! # Crashes and write failures
//!
//! Lines are buffered in memory and written (one `write` per file, whole lines only) when
//! [`Recorder::flush`] runs (the session calls it every second; it also `fdatasync`s), when
//! the buffered bytes reach [`RecordingPolicy::max_buffer`], or when a second has passed
//! since the last write. After `kill -9` the files end on a complete line, so `asciinema cat`
//! plays everything up to the last write. A failed write is cut back to the last complete
//! line; then the policy decides: [`OnFailure::Terminate`] makes every later call return an
//! error (the session must end and tell the user), [`OnFailure::Continue`] stops recording
//! data, keeps counting, tries to journal `recording.degraded` and hands the error to
//! [`Recorder::take_degraded`] once, for the audit log.
//!
//! # Who does the I/O, and what is durable when
//!
//! In the bastion the recorder of a session lives on that session's own writer thread
//! ([`writer`]): the relay queues byte chunks and never waits on the disk or
//! on a lock held across I/O; a full queue (bounded in bytes by `[limits] recording_queue`)
//! makes only that session's channels wait. On the writer thread:
//!
//! | when | written (`write`, whole lines) | made durable (`fdatasync`) |
//! |---|---|---|
//! | [`Recorder::start`] | `session.start` | journal, chain, and the directory entry |
//! | a recorder call with the buffer at [`RecordingPolicy::max_buffer`], or 1 s after the last write | every buffered line, then its chain entries | nothing (page cache) |
//! | [`Recorder::flush`] (the session asks every second; a flush still queued is not doubled) | every buffered line, then its chain entries | every open file: data files first, then the chain |
//! | a channel closes | its lines and the journal's `channel.close` | that channel's file, before it is closed |
//! | [`Recorder::finish`] | `session.end` and the rest | everything, then `seal.json` and its signature |
//!
//! So a crash loses at most what was queued plus about a second of writes; what is on
//! disk always ends on complete lines, and the chain never covers lines that are not there.
//! Under a blocked disk the flush simply waits its turn on the writer thread; the relay sees
//! the failure (if the disk fails rather than blocks) at its next enqueue or at the next
//! one-second flush, and `on_failure` decides as above.

mod bulk;
mod cast;
mod chain;
mod error;
mod files;
pub mod filexfer;
mod id;
mod lines;
mod model;
mod quota;
pub mod reader;
mod recorder;
mod seal;
mod transfer;
mod utf8;
pub mod verify;
pub mod writer;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_bulk;
#[cfg(test)]
mod tests_quota;

pub use error::RecordingError;
pub use files::FileSeal;
pub use id::{new_session_id, session_dir};
pub use model::{
    BulkReason, BulkSwitch, ChannelKind, ChannelSummary, DEFAULT_EXEC_OUTPUT_LIMIT, OnFailure, Pty,
    RecordingPolicy, SessionMeta, SessionSummary,
};
pub use quota::{
    DEFAULT_MAX_PERSON_BYTES, DEFAULT_MAX_SESSION_BYTES, DEFAULT_MIN_FREE_BYTES,
    DEFAULT_PERSON_WINDOW_SECS, LowDisk, PersonAccount, QuotaHit, QuotaKind, Quotas,
};
pub use reader::{
    BulkEntry, CastEvent, CastHeader, CastReader, ChannelEntry, JournalReader, Recording, Segment,
};
pub use recorder::{ChannelRecorder, Recorder};
pub use seal::{Manifest, SEAL_NAMESPACE, SealError, read_seal};
pub use verify::{
    BulkStatus, FileStatus, Problem, ProblemKind, SealStatus, VerifyReport, verify_session,
};
pub use writer::{Backlog, DEFAULT_RECORDING_QUEUE, Stream, WriteError, Writer};

/// The session journal.
pub const EVENTS_FILE: &str = "events.jsonl";
/// The hash chain.
const CHAIN_FILE: &str = "chain.jsonl";
/// The signed manifest.
pub const SEAL_FILE: &str = "seal.json";
/// Its SSHSIG signature.
const SEAL_SIG_FILE: &str = "seal.json.sig";
