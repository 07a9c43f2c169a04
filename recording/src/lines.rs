//! Reading the lines of a recording file: the one line reader under both the verifier
//! ([`crate::verify`]) and the auditor's reader ([`crate::reader`]).
//!
//! Every file of a recording is JSON lines, written whole lines at a time; what can go wrong
//! when reading one back is the same for every reader: a torn last line (the bastion was
//! killed mid-write), a line too long to hold in memory (a damaged or planted file), a file
//! that is huge. So the rules live here once: memory stays bounded by [`MAX_LINE`], a last
//! line without its `\n` is returned as incomplete (callers decide: the verifier reports it
//! as torn, the auditor leaves it out), an overlong line is returned cut at [`MAX_LINE`] with
//! the rest skipped (the verifier's hash of it then mismatches; the auditor skips it), and
//! lines are numbered from 1 as the chain numbers them. On request the reader also hashes
//! every byte it reads, for the seal's per-file SHA-256.

use std::io::{BufRead, BufReader, Read};

use sha2::{Digest, Sha256};

/// Longest line read whole; a longer one is cut here and the rest skipped. A cast event is
/// at most one read's worth of output, far below this.
pub(crate) const MAX_LINE: u64 = 64 << 20;

/// One line read by [`LineReader`].
#[derive(Debug)]
pub(crate) struct Line {
    /// Its number in the file, from 1.
    pub no: u64,
    /// The line without its `\n` (the first [`MAX_LINE`] bytes when `overlong`).
    pub bytes: Vec<u8>,
    /// It ended with `\n`; false for a torn last line.
    pub complete: bool,
    /// It was longer than [`MAX_LINE`]: `bytes` is only its beginning.
    pub overlong: bool,
}

impl Line {
    /// A whole line, safe to parse: complete and not cut.
    pub fn whole(&self) -> Option<&[u8]> {
        (self.complete && !self.overlong).then_some(&self.bytes)
    }
}

/// Reads lines with bounded memory, optionally hashing everything it reads.
pub(crate) struct LineReader<R> {
    inner: BufReader<R>,
    no: u64,
    bytes: u64,
    sha: Option<Sha256>,
}

impl<R: Read> LineReader<R> {
    /// A reader that only reads.
    pub fn new(inner: R) -> Self {
        LineReader {
            inner: BufReader::new(inner),
            no: 0,
            bytes: 0,
            sha: None,
        }
    }

    /// A reader that also counts and hashes every byte, for [`LineReader::totals`].
    pub fn digesting(inner: R) -> Self {
        LineReader {
            sha: Some(Sha256::new()),
            ..LineReader::new(inner)
        }
    }

    /// The next line; `None` at the end of the file.
    pub fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        let mut buf = Vec::new();
        let n = (&mut self.inner)
            .take(MAX_LINE)
            .read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(None);
        }
        self.account(&buf);
        let mut complete = buf.last() == Some(&b'\n');
        let mut overlong = false;
        if complete {
            buf.pop();
        } else if n as u64 == MAX_LINE {
            // Too long: skip (and hash) the rest of the line.
            overlong = true;
            loop {
                let chunk = self.inner.fill_buf()?;
                if chunk.is_empty() {
                    break;
                }
                let (len, end) = match chunk.iter().position(|&b| b == b'\n') {
                    Some(i) => (i + 1, true),
                    None => (chunk.len(), false),
                };
                if let Some(sha) = &mut self.sha {
                    sha.update(&chunk[..len]);
                }
                self.bytes += len as u64;
                self.inner.consume(len);
                if end {
                    complete = true;
                    break;
                }
            }
        }
        self.no += 1;
        Ok(Some(Line {
            no: self.no,
            bytes: buf,
            complete,
            overlong,
        }))
    }

    fn account(&mut self, bytes: &[u8]) {
        if let Some(sha) = &mut self.sha {
            sha.update(bytes);
        }
        self.bytes += bytes.len() as u64;
    }

    /// Size and SHA-256 of the whole file: what was read plus whatever is left (a reader
    /// made with [`LineReader::new`] gives the SHA-256 of nothing).
    pub fn totals(&mut self) -> (u64, String) {
        // Whatever was not read yet (after a torn line there is nothing).
        let mut rest = Vec::new();
        if self.inner.read_to_end(&mut rest).is_ok() {
            self.account(&rest);
        }
        let sha = self.sha.clone().unwrap_or_default();
        (self.bytes, hex::encode(sha.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_numbered_and_a_torn_last_line_is_incomplete() {
        let mut r = LineReader::digesting(&b"a\nbc\nd"[..]);
        let a = r.next_line().unwrap().unwrap();
        assert_eq!((a.no, a.bytes.as_slice(), a.complete), (1, &b"a"[..], true));
        assert_eq!(r.next_line().unwrap().unwrap().whole(), Some(&b"bc"[..]));
        let torn = r.next_line().unwrap().unwrap();
        assert_eq!((torn.no, torn.complete, torn.whole()), (3, false, None));
        assert!(r.next_line().unwrap().is_none());
        let (bytes, sha) = r.totals();
        assert_eq!(bytes, 6);
        assert_eq!(sha, hex::encode(Sha256::digest(b"a\nbc\nd")));
    }
}
