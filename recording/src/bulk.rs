//! Bulk output of commands run without a pty: past a point, recorded as size and SHA-256.
//!
//! `ssh host 'tar cz /srv' > srv.tgz` or `ssh host head -c 1G /dev/zero` is a download, not
//! something a person reads on a terminal. Written as asciicast it costs up to six bytes of
//! JSON per byte (`\u0000`) and a hash per line for the chain: the bastion fell to a fifth of
//! its proxy speed, and the recording grew to six times the download. So each output stream
//! of an exec channel **without a pty** goes to the `.cast` only until either
//!
//! - **limit**: the stream passes [`RecordingPolicy::exec_output_limit`] bytes (`[recordings]
//!   exec_output_limit`, default 1 MiB): its first `limit` bytes are in the cast, cut back to
//!   the start of a character so none is split; or
//! - **binary**: a read of it is mostly not text: more than a quarter of its bytes are NUL,
//!   C0 controls a terminal does not use for text (all but tab, newline, CR, BEL, BS, VT, FF
//!   and ESC) or bytes that are not UTF-8, once the stream has had more than
//!   [`NON_TEXT_ALLOWANCE`] such bytes. The text of that read before its first such byte
//!   still goes to the cast (`echo header; cat /bin/ls` keeps the header). A stray NUL or a
//!   Latin-1 accent in text is under the allowance or the ratio; `find -print0` (a NUL per
//!   name) stays text.
//!
//! From then on the stream is only counted and hashed: no JSON, no chain entry, no lock
//! held longer than a hash update. stdout and stderr switch separately, so the error
//! messages of a command whose stdout is a tarball stay readable. Channels with a pty never
//! switch (a person is watching a terminal; what they saw is recorded in full), and neither
//! do shells, which are terminal sessions even without a pty; transfers (`scp`, `sftp`,
//! `rsync --server`) have always been recorded as sizes and digests only.
//!
//! The SHA-256 covers the whole stream **from its first byte**, so an auditor holding a copy
//! of the output (`ssh host cmd > out`) checks it with a plain `sha256sum out`, and the part
//! in the cast is covered too.
//!
//! # What is written
//!
//! - at the switch, in the cast, an `o` line telling a replaying auditor what happens
//!   ([`switch_note`]), and in the journal
//!   `{"event":"output.bulk","seq":K,"stream":"stdout","reason":"limit"|"binary","offset":N,"file":"chan-K.cast","line":L}`
//!   (`offset`: bytes of the stream before the switch, all of them in the cast; `line`: the
//!   note's line in the cast, `null` without a cast);
//! - when the channel closes, one more `o` line ([`end_note`]: how many bytes followed and
//!   the SHA-256 of the whole stream), and in the journal
//!   `{"event":"output.bulk.end","seq":K,"stream":"stdout","bytes":TOTAL,"sha256":"<hex>","file":..,"line":L}`;
//! - in the channel summary (journal `channel.close` and the seal): `bulk_out`/`bulk_err`
//!   `{"reason","offset"}`, and `sha256_out`/`sha256_err` = SHA-256 of the whole stream,
//!   with `bytes_out`/`bytes_err` its size, as for transfers.
//!
//! The notes are the recorder's words, not output: a tool rebuilding the raw output from a
//! cast skips the lines the journal names.
//!
//! [`RecordingPolicy::exec_output_limit`]: super::RecordingPolicy::exec_output_limit

use sha2::{Digest, Sha256};

use super::model::{BulkReason, BulkSwitch};

/// Non-text bytes a stream may have before a read that is mostly not text switches it.
pub(crate) const NON_TEXT_ALLOWANCE: u64 = 64;

/// Recording state of one output stream of an exec channel without a pty.
#[derive(Debug, Clone)]
pub(crate) struct OutputStream {
    limit: u64,
    /// Switch on binary output (commands without a pty); terminal streams never do.
    detect_binary: bool,
    /// Bytes of the stream so far.
    seen: u64,
    /// Non-text bytes before the switch.
    non_text: u64,
    /// SHA-256 from the stream's first byte.
    sha: Sha256,
    switched: Option<BulkSwitch>,
}

/// What to do with one read: its first `cast` bytes go to the cast; then, if `switch`, the
/// stream is bulk from there on (the rest of the read included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub cast: usize,
    pub switch: Option<BulkReason>,
}

impl OutputStream {
    /// A stream whose first `limit` bytes may go to the cast.
    pub fn new(limit: u64) -> OutputStream {
        OutputStream {
            limit,
            detect_binary: true,
            seen: 0,
            non_text: 0,
            sha: Sha256::new(),
            switched: None,
        }
    }

    /// A terminal stream (pty, or a shell): it switches only when the session reaches a
    /// recording quota ([`OutputStream::force`]).
    pub fn terminal() -> OutputStream {
        OutputStream {
            detect_binary: false,
            ..OutputStream::new(u64::MAX)
        }
    }

    /// Switches to size and digest from the next byte on, for `reason`; false if it already
    /// had.
    pub fn force(&mut self, reason: BulkReason) -> bool {
        if self.is_bulk() {
            return false;
        }
        self.switched = Some(BulkSwitch {
            reason,
            offset: self.seen,
        });
        true
    }

    /// True once the stream is recorded as size and digest only.
    pub fn is_bulk(&self) -> bool {
        self.switched.is_some()
    }

    /// Where and why it switched, if it did.
    pub fn switched(&self) -> Option<&BulkSwitch> {
        self.switched.as_ref()
    }

    /// Bytes of the stream so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Lowercase hex SHA-256 of the stream so far.
    pub fn sha256_hex(&self) -> String {
        hex::encode(self.sha.clone().finalize())
    }

    /// The hot path, once bulk: count and hash, nothing else.
    pub fn bulk(&mut self, data: &[u8]) {
        self.sha.update(data);
        self.seen += data.len() as u64;
    }

    /// Accounts for the next read and says how much of it goes to the cast (see the module
    /// docs). Once this returns a switch, call [`OutputStream::bulk`] for later reads.
    pub fn take(&mut self, data: &[u8]) -> Plan {
        if self.is_bulk() {
            self.bulk(data);
            return Plan {
                cast: 0,
                switch: None,
            };
        }
        let before = self.seen;
        self.bulk(data);
        let budget = usize::try_from(self.limit.saturating_sub(before)).unwrap_or(usize::MAX);
        let scan = if self.detect_binary {
            scan(data)
        } else {
            Scan {
                non_text: 0,
                first: data.len(),
            }
        };
        self.non_text += scan.non_text as u64;
        let (cast, reason) = if scan.non_text * 4 > data.len() && self.non_text > NON_TEXT_ALLOWANCE
        {
            (scan.first.min(char_start(data, budget)), BulkReason::Binary)
        } else if data.len() > budget {
            (char_start(data, budget), BulkReason::Limit)
        } else {
            return Plan {
                cast: data.len(),
                switch: None,
            };
        };
        self.switched = Some(BulkSwitch {
            reason,
            offset: before + cast as u64,
        });
        Plan {
            cast,
            switch: Some(reason),
        }
    }
}

/// Non-text bytes of a read, and where the first one is (`data.len()` if none).
#[derive(Debug, PartialEq, Eq)]
struct Scan {
    non_text: usize,
    first: usize,
}

/// Counts NUL, non-text C0 controls and bytes that are not UTF-8. A character split at the
/// end of the read is not counted (it may be completed by the next read); one split at the
/// start counts as up to 3 invalid bytes, which the allowance absorbs.
fn scan(data: &[u8]) -> Scan {
    let is_control =
        |b: &u8| *b < 0x20 && !matches!(*b, b'\t' | b'\n' | b'\r' | 0x07..=0x0c | 0x1b);
    let mut non_text = data.iter().filter(|b| is_control(b)).count();
    let mut first = data.iter().position(is_control).unwrap_or(data.len());
    let mut at = 0;
    while let Err(e) = std::str::from_utf8(&data[at..]) {
        let Some(bad) = e.error_len() else { break };
        first = first.min(at + e.valid_up_to());
        non_text += bad;
        at += e.valid_up_to() + bad;
    }
    Scan { non_text, first }
}

/// `at`, moved back (at most 3 bytes) to the start of the UTF-8 character it falls in, so a
/// cut there splits no character.
fn char_start(data: &[u8], at: usize) -> usize {
    if at >= data.len() {
        return data.len();
    }
    let floor = at.saturating_sub(3);
    let mut i = at;
    while i > floor && data[i] & 0xc0 == 0x80 {
        i -= 1;
    }
    if data[i] & 0xc0 == 0x80 { at } else { i }
}

/// `stdout` or `stderr`.
pub(crate) fn stream_name(stderr: bool) -> &'static str {
    if stderr { "stderr" } else { "stdout" }
}

/// The cast line at the switch: what a replaying auditor sees where output stops.
pub(crate) fn switch_note(stream: &str, switch: &BulkSwitch, limit: u64) -> String {
    let why = match switch.reason {
        BulkReason::Limit => format!("passed the exec output limit of {limit} bytes"),
        BulkReason::Binary => "is binary".to_owned(),
        BulkReason::Quota => "reached the recording quota".to_owned(),
    };
    format!(
        "[ssh-bastion: {stream} {why}; from byte {} on it is recorded as size and SHA-256 only]\n",
        switch.offset
    )
}

/// The cast line at the end: how much followed, and the digest of the whole stream.
pub(crate) fn end_note(stream: &str, switch: &BulkSwitch, total: u64, sha256: &str) -> String {
    format!(
        "[ssh-bastion: {stream} continued for {} bytes, not stored; all {total} bytes of {stream} have SHA-256 {sha256}]\n",
        total.saturating_sub(switch.offset)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_under_the_limit_stays_in_the_cast() {
        let mut s = OutputStream::new(100);
        let text = b"hello\tworld\r\n\x1b[1mbold\x1b[0m\x07\x08 caf\xc3\xa9\n";
        let plan = s.take(text);
        assert_eq!(plan.switch, None);
        assert_eq!(plan.cast, text.len());
        assert!(!s.is_bulk());
    }

    #[test]
    fn limit_cuts_at_the_limit_and_never_inside_a_character() {
        let mut s = OutputStream::new(10);
        assert_eq!(s.take(b"12345678").switch, None);
        // Bytes 9, 10 fit; 11 on go to bulk.
        let plan = s.take(b"abcdef");
        assert_eq!(
            plan,
            Plan {
                cast: 2,
                switch: Some(BulkReason::Limit)
            }
        );
        assert_eq!(s.switched().unwrap().offset, 10);
        // A 2-byte character straddling the limit goes to bulk whole.
        let mut s = OutputStream::new(4);
        let plan = s.take("abcé".as_bytes());
        assert_eq!((plan.cast, s.switched().unwrap().offset), (3, 3));
        // Exactly at the limit: no switch until a byte more.
        let mut s = OutputStream::new(3);
        assert_eq!(s.take(b"abc").switch, None);
        assert_eq!(s.take(b"d").cast, 0);
        assert_eq!(s.switched().unwrap().offset, 3);
    }

    #[test]
    fn terminal_streams_switch_only_when_forced() {
        let mut s = OutputStream::terminal();
        assert_eq!(s.take(&[0u8; 4096]).switch, None);
        assert_eq!(s.take(b"text").cast, 4);
        assert!(s.force(BulkReason::Quota));
        assert!(!s.force(BulkReason::Quota));
        assert_eq!(s.switched().unwrap().offset, 4100);
        s.bulk(b"more");
        assert_eq!(s.seen(), 4104);
    }

    #[test]
    fn a_zero_limit_sends_everything_to_bulk() {
        let mut s = OutputStream::new(0);
        let plan = s.take(b"x");
        assert_eq!((plan.cast, plan.switch), (0, Some(BulkReason::Limit)));
    }

    #[test]
    fn binary_read_switches_after_its_text_prefix() {
        let mut s = OutputStream::new(1 << 20);
        let mut read = b"header\n".to_vec();
        read.extend_from_slice(&[0u8; 200]);
        let plan = s.take(&read);
        assert_eq!(
            plan,
            Plan {
                cast: 7,
                switch: Some(BulkReason::Binary)
            }
        );
        assert_eq!(s.switched().unwrap().offset, 7);
    }

    #[test]
    fn invalid_utf8_counts_as_binary() {
        let mut s = OutputStream::new(1 << 20);
        let noise: Vec<u8> = (0..400u32).map(|i| 0x80 | (i * 37 % 64) as u8).collect();
        assert_eq!(s.take(&noise).switch, Some(BulkReason::Binary));
        assert_eq!(s.switched().unwrap().offset, 0);
    }

    #[test]
    fn stray_non_text_in_text_does_not_switch() {
        let mut s = OutputStream::new(1 << 20);
        // find -print0: a NUL per name.
        let names: Vec<u8> = (0..2000)
            .flat_map(|i| format!("./srv/www/file-{i}.html\0").into_bytes())
            .collect();
        assert_eq!(s.take(&names).switch, None);
        // Latin-1 text: an invalid byte here and there.
        let latin1 = b"Caf\xe9 cr\xe8me br\xfbl\xe9e, na\xefve fa\xe7ade\n".repeat(20);
        assert_eq!(s.take(&latin1).switch, None);
        // A small read that is all NUL, under the allowance.
        let mut t = OutputStream::new(1 << 20);
        assert_eq!(t.take(&[0u8; 10]).switch, None);
        // ... but enough of them do switch.
        assert_eq!(t.take(&[0u8; 60]).switch, Some(BulkReason::Binary));
    }

    #[test]
    fn digest_covers_the_whole_stream_from_the_first_byte() {
        let mut s = OutputStream::new(4);
        s.take(b"ab");
        s.take(b"cdef");
        s.bulk(b"gh");
        assert_eq!(s.seen(), 8);
        assert_eq!(s.sha256_hex(), hex::encode(Sha256::digest(b"abcdefgh")));
        // take after the switch keeps counting too.
        assert_eq!(s.take(b"ij").cast, 0);
        assert_eq!(s.sha256_hex(), hex::encode(Sha256::digest(b"abcdefghij")));
    }

    #[test]
    fn scan_finds_the_first_non_text_byte() {
        assert_eq!(
            scan(b"ok"),
            Scan {
                non_text: 0,
                first: 2
            }
        );
        assert_eq!(
            scan(b"ok\xff\x01"),
            Scan {
                non_text: 2,
                first: 2
            }
        );
        assert_eq!(
            scan(b"a\x01\xff"),
            Scan {
                non_text: 2,
                first: 1
            }
        );
        // An incomplete character at the end is not (yet) invalid.
        assert_eq!(
            scan(b"a\xe2\x82"),
            Scan {
                non_text: 0,
                first: 3
            }
        );
    }

    #[test]
    fn notes_say_what_happened() {
        let switch = BulkSwitch {
            reason: BulkReason::Limit,
            offset: 1 << 20,
        };
        let note = switch_note("stdout", &switch, 1 << 20);
        assert!(
            note.contains("exec output limit of 1048576 bytes"),
            "{note}"
        );
        assert!(note.contains("from byte 1048576 on"), "{note}");
        let end = end_note("stdout", &switch, (1 << 20) + 5, "ab12");
        assert!(end.contains("continued for 5 bytes"), "{end}");
        assert!(
            end.contains("all 1048581 bytes of stdout have SHA-256 ab12"),
            "{end}"
        );
    }
}
