//! A line-oriented file of a recording, written in whole lines.
//!
//! Lines are buffered and written with one `write` per batch, so after `kill -9` the file
//! ends on a complete line (what `asciinema cat` needs). If a write fails part-way (disk
//! full), the file is cut back to its last complete line. The file keeps what the chain and
//! the seal need: the hash of every line, and the line count, size and SHA-256 of what was
//! written.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::{LineHash, line_hash};

/// Lines written by one [`LineFile::write_out`], for the chain entry that covers them.
#[derive(Debug)]
pub(crate) struct Written {
    /// Line number of the first line.
    pub first: u64,
    /// Their hashes.
    pub hashes: Vec<LineHash>,
}

/// What the seal says about one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSeal {
    /// File name in the recording directory.
    pub name: String,
    /// Complete lines.
    pub lines: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// SHA-256 (hex) of the whole file.
    pub sha256: String,
}

/// A recording file being written.
#[derive(Debug)]
pub(crate) struct LineFile {
    name: String,
    path: PathBuf,
    file: File,
    pending: Vec<u8>,
    pending_hashes: Vec<LineHash>,
    lines_written: u64,
    bytes_written: u64,
    sha: Sha256,
    unsynced: bool,
}

impl LineFile {
    /// Creates `dir/name`, which must not exist yet (mode 0600; never follows a planted
    /// symlink, never appends to someone else's file).
    pub fn create(dir: &Path, name: &str) -> io::Result<LineFile> {
        let path = dir.join(name);
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok(LineFile {
            name: name.to_owned(),
            path,
            file,
            pending: Vec::new(),
            pending_hashes: Vec::new(),
            lines_written: 0,
            bytes_written: 0,
            sha: Sha256::new(),
            unsynced: false,
        })
    }

    /// The file name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The full path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Line number the next pushed line will have.
    pub fn next_line(&self) -> u64 {
        self.lines_written + self.pending_hashes.len() as u64 + 1
    }

    /// Bytes buffered, not yet written.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Buffers one line. `line` must not contain `\n` (compact JSON never does).
    pub fn push(&mut self, line: &[u8]) {
        debug_assert!(!line.contains(&b'\n'));
        self.pending_hashes.push(line_hash(line));
        self.pending.extend_from_slice(line);
        self.pending.push(b'\n');
    }

    /// Forgets buffered lines (after a failure, nothing more is written).
    pub fn discard_pending(&mut self) {
        self.pending.clear();
        self.pending_hashes.clear();
    }

    /// Writes the buffered lines in one write. `Ok(None)` if there was nothing to write. On
    /// error the buffer is dropped and the file cut back to its last complete line.
    pub fn write_out(&mut self) -> io::Result<Option<Written>> {
        if self.pending.is_empty() {
            return Ok(None);
        }
        let result = self.file.write_all(&self.pending);
        if let Err(e) = result {
            // Best effort: a partial line would make the rest of the file unreadable. A
            // failing truncate leaves the torn line for `verify` to report.
            let _ = self.file.set_len(self.bytes_written);
            self.discard_pending();
            return Err(e);
        }
        self.sha.update(&self.pending);
        self.bytes_written += self.pending.len() as u64;
        let first = self.lines_written + 1;
        self.lines_written += self.pending_hashes.len() as u64;
        self.pending.clear();
        self.unsynced = true;
        Ok(Some(Written {
            first,
            hashes: std::mem::take(&mut self.pending_hashes),
        }))
    }

    /// `fdatasync`s what was written, if anything since the last sync.
    pub fn sync(&mut self) -> io::Result<()> {
        if self.unsynced {
            self.file.sync_data()?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Line count, size and SHA-256 of what was written.
    pub fn seal(&self) -> FileSeal {
        FileSeal {
            name: self.name.clone(),
            lines: self.lines_written,
            bytes: self.bytes_written,
            sha256: hex::encode(self.sha.clone().finalize()),
        }
    }

    /// Test seam: write to `file` from now on (e.g. `/dev/full` to simulate a full disk).
    #[cfg(test)]
    pub fn redirect(&mut self, file: File) {
        self.file = file;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_written_only_on_write_out_and_accounted() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LineFile::create(dir.path(), "a.jsonl").unwrap();
        assert!(
            LineFile::create(dir.path(), "a.jsonl").is_err(),
            "never reused"
        );
        f.push(b"one");
        f.push(b"two");
        assert_eq!(f.next_line(), 3);
        assert_eq!(std::fs::read(f.path()).unwrap(), b"");
        let w = f.write_out().unwrap().unwrap();
        assert_eq!(w.first, 1);
        assert_eq!(w.hashes, vec![line_hash(b"one"), line_hash(b"two")]);
        assert!(f.write_out().unwrap().is_none());
        f.push(b"three");
        assert_eq!(f.write_out().unwrap().unwrap().first, 3);
        f.sync().unwrap();
        let content = std::fs::read(f.path()).unwrap();
        assert_eq!(content, b"one\ntwo\nthree\n");
        let seal = f.seal();
        assert_eq!((seal.lines, seal.bytes), (3, 14));
        assert_eq!(seal.sha256, hex::encode(Sha256::digest(&content)));
    }

    #[test]
    fn failed_write_drops_the_batch_and_keeps_the_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = LineFile::create(dir.path(), "a.jsonl").unwrap();
        f.push(b"kept");
        f.write_out().unwrap();
        f.redirect(OpenOptions::new().write(true).open("/dev/full").unwrap());
        f.push(b"lost");
        let err = f.write_out().unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc_enospc()));
        assert_eq!(f.pending_len(), 0);
        assert_eq!(f.seal().lines, 1);
        assert_eq!(f.next_line(), 2);
    }

    fn libc_enospc() -> i32 {
        28
    }
}
