//! Transfers audited per file: which files an sftp or scp channel moved, not only the size
//! and SHA-256 of its protocol stream.
//!
//! The relay feeds a [`FileAudit`] both directions of a transfer channel, in chunks of any
//! size, as a passive observer (it never changes the bytes). It parses
//!
//! - **SFTP v3** ([`sftp`], draft-ietf-secsh-filexfer-02, what OpenSSH speaks) on the `sftp`
//!   subsystem and on `sftp-server`/`internal-sftp` commands: requests are tracked by id and
//!   files by handle, so every open, close (with the bytes read or written), rename, remove,
//!   mkdir, rmdir, setstat and fsetstat becomes a [`FileRecord`] with its path and the
//!   server's answer;
//! - **the rcp protocol** ([`rcp`]) of legacy `scp -O` (`scp -t` upload, `scp -f` download):
//!   `C`/`D`/`E`/`T` lines, file data and acknowledgements.
//!
//! A file moved whole (one contiguous run from offset 0, no gap, no failed write) gets the
//! SHA-256 of its bytes, the digest `sha256sum` gives for the file; any other transfer is
//! marked partial with its byte ranges' count and no digest.
//!
//! Memory is bounded whatever the peers send: packets over [`sftp::MAX_PACKET`] bytes,
//! more than [`sftp::MAX_HANDLES`] open files or [`sftp::MAX_PENDING`] requests awaiting
//! an answer, and anything that does not parse are a [`Malformed`] error: the relay records
//! it and ends the channel (it cannot audit what it cannot parse, so it lets none of it
//! through). Read requests past the bound are not refused (clients such as paramiko
//! prefetch a whole file): the file they read is reported partial. Worst case for one SFTP
//! channel: two packet buffers (512 KiB), 1 MiB of paths and about 1.5 MiB of table for the
//! unanswered requests, 256 open files of about 2.5 KiB each: under 4 MiB, whatever is sent;
//! scp holds one control line (8 KiB) and a directory stack of 256 names (at most 1 MiB).

mod ranges;
pub mod rcp;
pub mod sftp;

use serde::{Deserialize, Serialize};

use super::model::ChannelKind;

/// Longest path kept in a record (bytes; longer ones are cut and marked).
pub const MAX_PATH: usize = 4096;

/// Which way a file's bytes went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the person to the target.
    Upload,
    /// From the target to the person.
    Download,
    /// Read and written through the same handle.
    Both,
}

impl Direction {
    /// `upload`, `download` or `both`.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Upload => "upload",
            Direction::Download => "download",
            Direction::Both => "both",
        }
    }
}

/// One audited file operation, journaled as a `transfer.file` event.
///
/// `op` says what happened: `open`, `close` (a file's transfer: direction, size, ranges,
/// SHA-256 when whole), `rename`, `remove`, `mkdir`, `rmdir`, `setstat`, `fsetstat`,
/// `symlink`, `hardlink`, `copy-data`, for scp `file` (a file's transfer) and `error` (a
/// message one side sent), and `malformed` (the channel was ended).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    /// `sftp` or `scp`.
    pub protocol: String,
    /// What happened (see above).
    pub op: String,
    /// The file or directory, as the client named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The second path of `rename`, `symlink`, `hardlink`, `copy-data`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `open`: how (`read`, `write`, `create`, `truncate`, `append`, `excl`); `setstat`:
    /// which attributes (`size=N`, `mode=0644`, `owner`, `times`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Transfers: which way the bytes went.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<Direction>,
    /// Transfers: bytes moved (the file's size when `whole`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Transfers: lowest and highest offset moved (`[start, end)`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<[u64; 2]>,
    /// Transfers: how many disjoint byte ranges were moved (1 for a whole file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ranges: Option<u64>,
    /// Transfers: true when the file moved whole, from offset 0 to its end with no gap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub whole: Option<bool>,
    /// Transfers moved whole: SHA-256 (hex) of the file's bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The answer: `ok`, or the error (`no such file: ...`, `no reply`, ...).
    pub status: String,
}

impl FileRecord {
    /// A record of `op` on `path` for `protocol`, status still to fill.
    pub(crate) fn new(protocol: &str, op: &str, path: Option<String>) -> FileRecord {
        FileRecord {
            protocol: protocol.to_owned(),
            op: op.to_owned(),
            path,
            status: "ok".to_owned(),
            ..FileRecord::default()
        }
    }

    /// True for a record of a file's bytes moving (`close` of an sftp file, scp `file`).
    pub fn is_transfer(&self) -> bool {
        self.direction.is_some()
    }
}

/// A packet or line the audit cannot parse, or a bound passed: the channel must end.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {protocol} from the {side}: {reason}")]
pub struct Malformed {
    /// `sftp` or `scp`.
    pub protocol: &'static str,
    /// `client` or `target`.
    pub side: &'static str,
    /// What was wrong.
    pub reason: String,
}

impl Malformed {
    /// The record journaled before the channel ends.
    pub fn record(&self) -> FileRecord {
        FileRecord {
            status: self.to_string(),
            ..FileRecord::new(self.protocol, "malformed", None)
        }
    }
}

/// The per-file audit of one transfer channel.
#[derive(Debug)]
pub enum FileAudit {
    /// An SFTP session.
    Sftp(Box<sftp::SftpAudit>),
    /// Legacy scp (`scp -t` / `scp -f`).
    Rcp(Box<rcp::RcpAudit>),
}

impl FileAudit {
    /// The audit for a channel of `kind`, if it carries a protocol audited per file: the
    /// `sftp` subsystem, `sftp-server`/`internal-sftp`, and `scp -t`/`scp -f`.
    pub fn for_channel(kind: &ChannelKind) -> Option<FileAudit> {
        match kind {
            ChannelKind::Subsystem { name } if name == "sftp" => {
                Some(FileAudit::Sftp(Box::default()))
            }
            ChannelKind::Exec { command, .. } => {
                let program = command.split_whitespace().next()?;
                match program.rsplit('/').next().unwrap_or(program) {
                    "sftp-server" | "internal-sftp" => Some(FileAudit::Sftp(Box::default())),
                    "scp" => {
                        rcp::RcpAudit::for_command(command).map(|a| FileAudit::Rcp(Box::new(a)))
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Bytes from the client; the records they completed are appended to `out`.
    pub fn input(&mut self, data: &[u8], out: &mut Vec<FileRecord>) -> Result<(), Malformed> {
        match self {
            FileAudit::Sftp(a) => a.client(data, out),
            FileAudit::Rcp(a) => a.client(data, out),
        }
    }

    /// Bytes from the target; the records they completed are appended to `out`.
    pub fn output(&mut self, data: &[u8], out: &mut Vec<FileRecord>) -> Result<(), Malformed> {
        match self {
            FileAudit::Sftp(a) => a.target(data, out),
            FileAudit::Rcp(a) => a.target(data, out),
        }
    }

    /// The channel ended: records for files still open and requests never answered.
    pub fn finish(&mut self, out: &mut Vec<FileRecord>) {
        match self {
            FileAudit::Sftp(a) => a.finish(out),
            FileAudit::Rcp(a) => a.finish(out),
        }
    }
}

/// A path as text (lossy UTF-8), cut to [`MAX_PATH`] bytes.
pub(crate) fn path_text(bytes: &[u8]) -> String {
    if bytes.len() <= MAX_PATH {
        return String::from_utf8_lossy(bytes).into_owned();
    }
    let mut text = String::from_utf8_lossy(&bytes[..MAX_PATH]).into_owned();
    text.push_str("...[cut]");
    text
}

#[cfg(test)]
mod tests;
