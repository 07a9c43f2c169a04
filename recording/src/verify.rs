//! Verifying a recording: which lines are intact, and exactly what was altered, removed,
//! inserted or cut off.
//!
//! Every line of every data file is hashed and compared, in order, with the hashes the
//! chain holds for it. A mismatch is classified by looking ahead: if the line turns up a few
//! chain lines later, the lines in between were removed; if the next line of the file is the
//! one the chain expected, this one was inserted; otherwise it was altered. (The lookahead is
//! [`LOOKAHEAD`] lines: a larger removal in the middle of a file shows as altered lines.) Lines
//! the chain expects after the end of the file were truncated. The chain's own links are
//! checked (an altered entry fails its hash, a removed one breaks `prev`), and the seal, when
//! there is one, must be signed by the trusted key and agree with the chain's length and
//! final hash and with each file's line count, size and SHA-256, which is what catches a
//! recording truncated together with its chain. Without a seal the recording is reported as
//! unsealed (the bastion stopped mid-session), with how many lines of each file the chain
//! still vouches for.
//!
//! Output recorded in bulk (size and SHA-256 only, see `recording::bulk`) is listed with its
//! digest, and the journal's `output.bulk` events must agree with the seal ([`bulk`]).

mod bulk;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use jitssh_core::ssh_key::PublicKey;

use super::chain::{LineHash, genesis, line_hash, parse_entry};
use super::lines::LineReader;
use super::seal::{Manifest, SealError, read_seal};
use super::{CHAIN_FILE, EVENTS_FILE, RecordingError, SEAL_FILE, SEAL_SIG_FILE};

pub use bulk::BulkStatus;

/// How far ahead in the chain a mismatching line is looked for (see the module docs).
const LOOKAHEAD: usize = 4096;

/// The seal's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealStatus {
    /// Signed by the trusted key, and the manifest was read.
    Sealed,
    /// No `seal.json`: the session did not end cleanly (crash, `kill -9`), or is running.
    Unsealed,
    /// A seal is there but cannot be trusted; the reason.
    Invalid(SealError),
}

/// What kind of damage a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A line's content differs from what was recorded.
    Altered,
    /// Recorded lines are missing from the middle of a file.
    Removed,
    /// A line that was never recorded was added.
    Inserted,
    /// Recorded lines are missing from the end of a file (or of the chain).
    Truncated,
    /// The file ends in a partial line.
    Torn,
    /// Lines after the last chain entry of an unsealed recording: written just before a
    /// crash, so nothing vouches for them.
    Unchained,
    /// The chain itself is damaged.
    ChainBroken,
    /// A file the chain or seal names is missing.
    MissingFile,
    /// A file nobody recorded is in the directory.
    UnexpectedFile,
    /// The seal disagrees with the files or the chain.
    SealMismatch,
}

impl ProblemKind {
    fn word(self) -> &'static str {
        match self {
            ProblemKind::Altered => "altered",
            ProblemKind::Removed => "removed",
            ProblemKind::Inserted => "inserted",
            ProblemKind::Truncated => "truncated",
            ProblemKind::Torn => "torn",
            ProblemKind::Unchained => "not covered by the chain",
            ProblemKind::ChainBroken => "chain broken",
            ProblemKind::MissingFile => "missing",
            ProblemKind::UnexpectedFile => "unexpected file",
            ProblemKind::SealMismatch => "seal mismatch",
        }
    }
}

/// One finding, naming the file and the lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// File in the recording directory.
    pub file: String,
    /// First and last line concerned (1-based, inclusive), if the problem is about lines.
    /// For [`ProblemKind::Removed`] and [`ProblemKind::Truncated`] these are the line
    /// numbers as recorded; otherwise as in the file now.
    pub lines: Option<(u64, u64)>,
    /// What is wrong.
    pub kind: ProblemKind,
    /// Details.
    pub detail: String,
}

impl Problem {
    /// Whether a writer still at work leaves this behind: a partial last line, lines its
    /// next chain entry will cover, the seal's temporary files while sealing. Damage in a
    /// finished recording; expected in one the bastion says is live or ending.
    pub fn in_flight(&self) -> bool {
        match self.kind {
            ProblemKind::Torn | ProblemKind::Unchained => true,
            ProblemKind::UnexpectedFile => seal_temp_file(&self.file),
            _ => false,
        }
    }
}

/// The temporary names the seal's files are written under before being renamed into place.
fn seal_temp_file(name: &str) -> bool {
    [SEAL_FILE, SEAL_SIG_FILE]
        .iter()
        .any(|seal| name.strip_prefix('.').and_then(|n| n.strip_suffix(".tmp")) == Some(seal))
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        match self.lines {
            Some((a, b)) if a == b => write!(f, " line {a}")?,
            Some((a, b)) => write!(f, " lines {a}-{b}")?,
            None => {}
        }
        write!(f, ": {}", self.kind.word())?;
        if !self.detail.is_empty() {
            write!(f, " ({})", self.detail)?;
        }
        Ok(())
    }
}

/// How much of one file is vouched for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    /// File name.
    pub name: String,
    /// Complete lines in the file.
    pub lines: u64,
    /// Lines whose hash matches the chain, in order.
    pub verified_lines: u64,
}

/// The result of [`verify_session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The session id (the directory name).
    pub id: String,
    /// The seal's verdict.
    pub seal: SealStatus,
    /// The signed manifest, when [`SealStatus::Sealed`].
    pub manifest: Option<Manifest>,
    /// Entries read from the chain.
    pub chain_entries: u64,
    /// Every data file, in name order.
    pub files: Vec<FileStatus>,
    /// Output streams recorded as size and SHA-256 after a point, by the seal (or, unsealed,
    /// the journal); empty for recordings without any.
    pub bulk: Vec<BulkStatus>,
    /// Everything found wrong; empty (and sealed) means intact.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Sealed by the trusted key, and nothing altered, removed, added or cut off.
    pub fn is_intact(&self) -> bool {
        self.seal == SealStatus::Sealed && self.problems.is_empty()
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match (&self.seal, self.problems.is_empty()) {
            (SealStatus::Sealed, true) => "sealed, intact".to_owned(),
            (SealStatus::Sealed, false) => "sealed, DAMAGED".to_owned(),
            (SealStatus::Unsealed, _) => {
                "UNSEALED (the session did not end cleanly); the chain vouches for the lines below"
                    .to_owned()
            }
            (SealStatus::Invalid(why), _) => format!("seal INVALID: {why}"),
        };
        writeln!(f, "session {}: {verdict}", self.id)?;
        for file in &self.files {
            writeln!(
                f,
                "  {}: {} of {} lines verified",
                file.name, file.verified_lines, file.lines
            )?;
        }
        for bulk in &self.bulk {
            writeln!(f, "  {bulk}")?;
        }
        for problem in &self.problems {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

/// Verifies the recording in `dir` against the bastion's public key `trusted`. `Err` only if
/// the directory cannot be read at all; everything else is in the report.
pub fn verify_session(dir: &Path, trusted: &PublicKey) -> Result<VerifyReport, RecordingError> {
    let id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut v = Verifier {
        problems: Vec::new(),
    };

    // The seal before the listing: a seal written in between would otherwise meet its own
    // temporary files in the listing.
    let (seal, manifest) = match read_seal(dir, trusted) {
        Ok(Some(m)) => (SealStatus::Sealed, Some(m)),
        Ok(None) => (SealStatus::Unsealed, None),
        Err(why) => (SealStatus::Invalid(why), None),
    };
    let sealed = manifest.is_some();
    let listing = std::fs::read_dir(dir).map_err(RecordingError::io(dir, "read directory"))?;
    let mut present = BTreeSet::new();
    for entry in listing {
        let entry = entry.map_err(RecordingError::io(dir, "read directory"))?;
        present.insert(entry.file_name().to_string_lossy().into_owned());
    }

    let chain = v.read_chain(dir, &id, present.contains(CHAIN_FILE))?;
    if let Some(m) = &manifest {
        v.check_seal_against_chain(m, &id, &chain);
    }

    // Every file the chain or the seal names, plus the events journal.
    let mut names: BTreeSet<String> = chain.files.keys().cloned().collect();
    names.insert(EVENTS_FILE.to_owned());
    if let Some(m) = &manifest {
        names.extend(m.files.iter().map(|f| f.name.clone()));
    }
    let mut files = Vec::new();
    for name in &names {
        let expected = chain.files.get(name).map_or(&[][..], Vec::as_slice);
        if !present.contains(name) {
            v.push(name, None, ProblemKind::MissingFile, String::new());
            continue;
        }
        let read = v.compare_file(dir, name, expected, sealed)?;
        if let Some(m) = &manifest {
            v.check_file_against_seal(m, name, &read);
        }
        files.push(FileStatus {
            name: name.clone(),
            lines: read.lines,
            verified_lines: read.verified,
        });
    }
    let journal = bulk::Journal::read(dir)?;
    let bulk = match &manifest {
        Some(m) => v.check_bulk(m, &journal),
        None => journal.statuses(),
    };
    for name in &present {
        let ours =
            names.contains(name) || [CHAIN_FILE, SEAL_FILE, SEAL_SIG_FILE].contains(&name.as_str());
        if !ours {
            v.push(name, None, ProblemKind::UnexpectedFile, String::new());
        }
    }
    Ok(VerifyReport {
        id,
        seal,
        manifest,
        chain_entries: chain.entries,
        files,
        bulk,
        problems: v.problems,
    })
}

/// What the chain says: per file, the hash of each line (`None` where an entry is missing).
struct ChainView {
    files: BTreeMap<String, Vec<Option<LineHash>>>,
    entries: u64,
    last_hash: Option<String>,
}

/// What reading a data file found.
struct FileRead {
    lines: u64,
    verified: u64,
    bytes: u64,
    sha256: String,
    damaged: bool,
}

struct Verifier {
    problems: Vec<Problem>,
}

impl Verifier {
    /// Records a problem, merging it into the previous one when it continues the same run
    /// of lines (a block of altered lines is one finding).
    fn push(&mut self, file: &str, lines: Option<(u64, u64)>, kind: ProblemKind, detail: String) {
        if let (Some(last), Some((a, b))) = (self.problems.last_mut(), lines)
            && last.file == file
            && last.kind == kind
            && last.detail == detail
            && let Some((_, end)) = &mut last.lines
            && *end + 1 == a
        {
            *end = b;
            return;
        }
        self.problems.push(Problem {
            file: file.to_owned(),
            lines,
            kind,
            detail,
        });
    }

    fn read_chain(
        &mut self,
        dir: &Path,
        id: &str,
        present: bool,
    ) -> Result<ChainView, RecordingError> {
        let mut view = ChainView {
            files: BTreeMap::new(),
            entries: 0,
            last_hash: None,
        };
        if !present {
            self.push(CHAIN_FILE, None, ProblemKind::MissingFile, String::new());
            return Ok(view);
        }
        let path = dir.join(CHAIN_FILE);
        let file = File::open(&path).map_err(RecordingError::io(&path, "open"))?;
        let mut lines = LineReader::new(file);
        let mut prev = Some(genesis(id));
        let mut seq = 0u64;
        while let Some(line) = lines
            .next_line()
            .map_err(RecordingError::io(&path, "read"))?
        {
            let n = line.no;
            if !line.complete {
                self.push(
                    CHAIN_FILE,
                    Some((n, n)),
                    ProblemKind::Torn,
                    "partial last entry".into(),
                );
                break;
            }
            let entry = match parse_entry(&line.bytes) {
                Ok(entry) => entry,
                Err(why) => {
                    let why = why.to_string();
                    self.push(CHAIN_FILE, Some((n, n)), ProblemKind::ChainBroken, why);
                    prev = None;
                    continue;
                }
            };
            view.entries += 1;
            if !entry.hash_ok {
                self.push(
                    CHAIN_FILE,
                    Some((n, n)),
                    ProblemKind::Altered,
                    "entry does not match its hash".into(),
                );
            }
            match &prev {
                Some(p) if *p == entry.prev => {}
                Some(_) if seq == 0 => self.push(
                    CHAIN_FILE,
                    Some((n, n)),
                    ProblemKind::ChainBroken,
                    "does not start this session's chain (first entries removed, or another session's chain)"
                        .into(),
                ),
                _ => self.push(
                    CHAIN_FILE,
                    Some((n, n)),
                    ProblemKind::ChainBroken,
                    "does not follow the entry before it (an entry was removed or reordered)"
                        .into(),
                ),
            }
            if entry.seq != seq + 1 {
                self.push(
                    CHAIN_FILE,
                    Some((n, n)),
                    ProblemKind::ChainBroken,
                    format!("seq {} follows {seq}", entry.seq),
                );
            }
            seq = entry.seq;
            prev = Some(entry.hash.clone());
            view.last_hash = Some(entry.hash.clone());
            if !valid_file_name(&entry.file) {
                self.push(
                    CHAIN_FILE,
                    Some((n, n)),
                    ProblemKind::ChainBroken,
                    format!("entry names an invalid file {:?}", entry.file),
                );
                continue;
            }
            let expected = view.files.entry(entry.file.clone()).or_default();
            let next = expected.len() as u64 + 1;
            if entry.first < next {
                self.push(
                    CHAIN_FILE,
                    Some((n, n)),
                    ProblemKind::ChainBroken,
                    format!(
                        "entry repeats lines from {} of {} (entries reordered or duplicated)",
                        entry.first, entry.file
                    ),
                );
                continue;
            }
            if entry.first > next {
                self.push(
                    &entry.file,
                    Some((next, entry.first - 1)),
                    ProblemKind::ChainBroken,
                    "the chain entry covering these lines was removed; they cannot be verified"
                        .into(),
                );
                expected.resize(entry.first as usize - 1, None);
            }
            expected.extend(entry.lines.into_iter().map(Some));
        }
        Ok(view)
    }

    fn check_seal_against_chain(&mut self, m: &Manifest, id: &str, chain: &ChainView) {
        if m.session.id != id {
            self.push(
                SEAL_FILE,
                None,
                ProblemKind::SealMismatch,
                format!("seal is for session {}", m.session.id),
            );
        }
        if chain.entries < m.chain_entries {
            self.push(
                CHAIN_FILE,
                Some((chain.entries + 1, m.chain_entries)),
                ProblemKind::Truncated,
                format!(
                    "chain has {} entries, the seal says {}",
                    chain.entries, m.chain_entries
                ),
            );
        } else if chain.entries > m.chain_entries {
            self.push(
                CHAIN_FILE,
                Some((m.chain_entries + 1, chain.entries)),
                ProblemKind::Inserted,
                format!("entries after the {} the seal covers", m.chain_entries),
            );
        } else if chain.last_hash.as_deref().unwrap_or(&genesis(id)) != m.chain_last_hash {
            self.push(
                CHAIN_FILE,
                None,
                ProblemKind::SealMismatch,
                "last entry hash differs from the seal's".into(),
            );
        }
    }

    fn check_file_against_seal(&mut self, m: &Manifest, name: &str, read: &FileRead) {
        let Some(sealed) = m.files.iter().find(|f| f.name == name) else {
            self.push(
                name,
                None,
                ProblemKind::SealMismatch,
                "file not listed in the seal".into(),
            );
            return;
        };
        if read.lines < sealed.lines && !read.damaged {
            self.push(
                name,
                Some((read.lines + 1, sealed.lines)),
                ProblemKind::Truncated,
                format!(
                    "file has {} lines, the seal says {}",
                    read.lines, sealed.lines
                ),
            );
        } else if !read.damaged && (read.bytes != sealed.bytes || read.sha256 != sealed.sha256) {
            self.push(
                name,
                None,
                ProblemKind::SealMismatch,
                format!(
                    "{} bytes with SHA-256 {}, the seal says {} bytes with {}",
                    read.bytes, read.sha256, sealed.bytes, sealed.sha256
                ),
            );
        }
    }

    /// Reads `name` and compares its lines with `expected` (see the module docs).
    fn compare_file(
        &mut self,
        dir: &Path,
        name: &str,
        expected: &[Option<LineHash>],
        sealed: bool,
    ) -> Result<FileRead, RecordingError> {
        let path = dir.join(name);
        let file = File::open(&path).map_err(RecordingError::io(&path, "open"))?;
        let mut lines_in = HashedLines {
            reader: LineReader::digesting(file),
            torn: None,
        };
        let before = self.problems.len();
        let mut fetch = || lines_in.next().map_err(RecordingError::io(&path, "read"));
        let mut verified = 0u64;
        let mut lines = 0u64;
        let mut j = 0usize;
        let mut cur = fetch()?;
        while let Some((no, hash)) = cur {
            lines = no;
            if j >= expected.len() {
                let (kind, detail) = if sealed {
                    (ProblemKind::Inserted, "after the last recorded line")
                } else {
                    (
                        ProblemKind::Unchained,
                        "written after the last chain entry, before the bastion stopped",
                    )
                };
                self.push(name, Some((no, no)), kind, detail.into());
                cur = fetch()?;
                continue;
            }
            match expected[j] {
                None => {
                    // No entry vouches for this line (reported with the chain).
                    j += 1;
                    cur = fetch()?;
                }
                Some(want) if want == hash => {
                    verified += 1;
                    j += 1;
                    cur = fetch()?;
                }
                Some(_) => {
                    let ahead = (1..=LOOKAHEAD)
                        .take_while(|d| j + d < expected.len())
                        .find(|d| expected[j + d] == Some(hash));
                    if let Some(d) = ahead {
                        self.push(
                            name,
                            Some((j as u64 + 1, (j + d) as u64)),
                            ProblemKind::Removed,
                            format!("recorded line numbers; missing before line {no} of the file"),
                        );
                        j += d;
                        continue;
                    }
                    let following = fetch()?;
                    if following.is_some_and(|(_, h)| Some(h) == expected[j]) {
                        self.push(name, Some((no, no)), ProblemKind::Inserted, String::new());
                    } else {
                        self.push(name, Some((no, no)), ProblemKind::Altered, String::new());
                        j += 1;
                    }
                    cur = following;
                }
            }
        }
        if let Some(no) = lines_in.torn {
            self.push(
                name,
                Some((no, no)),
                ProblemKind::Torn,
                "partial last line".into(),
            );
        }
        if j < expected.len() {
            self.push(
                name,
                Some((j as u64 + 1, expected.len() as u64)),
                ProblemKind::Truncated,
                format!("recorded line numbers; the file ends after line {lines}"),
            );
        }
        let (bytes, sha256) = lines_in.reader.totals();
        Ok(FileRead {
            lines,
            verified,
            bytes,
            sha256,
            damaged: self.problems.len() > before,
        })
    }
}

/// The complete lines of a data file as `(line number, hash)`; a partial last line ends
/// the iteration and is remembered in `torn`.
struct HashedLines<R> {
    reader: LineReader<R>,
    torn: Option<u64>,
}

impl<R: Read> HashedLines<R> {
    fn next(&mut self) -> std::io::Result<Option<(u64, LineHash)>> {
        match self.reader.next_line()? {
            Some(line) if line.complete => Ok(Some((line.no, line_hash(&line.bytes)))),
            Some(line) => {
                self.torn = Some(line.no);
                Ok(None)
            }
            None => Ok(None),
        }
    }
}

/// Only names the recorder writes: no directories, no hidden files.
fn valid_file_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
}
