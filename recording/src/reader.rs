//! Reading a recording back: the journal, each terminal channel's asciicast, and the
//! timeline that puts the channels one after the other. The auditor's commands (replay,
//! export, grep, show) and a later web console read recordings only through this module,
//! and the verifier ([`crate::verify`]) reads the journal through its [`JournalReader`] too;
//! underneath, every file is read by one line reader (`crate::lines`: bounded memory, torn
//! and overlong lines handled one way, line numbers as the chain counts them).
//!
//! Reading is streaming (a cast can be large) and forgiving: a torn last line (the bastion
//! was killed mid-write) is left out, and a line that is not an event is skipped and
//! counted, so a damaged recording still replays what is intact. Whether it is intact is
//! `verify`'s question, not the reader's.
//!
//! # The timeline
//!
//! A session can have several terminal channels (a shell, then `ssh host cmd` over a shared
//! connection...). Replay, export, grep and `--from` offsets all use one timeline: the
//! channels in the order they opened, each starting where the previous one's last event was.

use std::fs::File;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::filexfer::FileRecord;
use crate::lines::LineReader;
use crate::{
    BulkReason, ChannelKind, ChannelSummary, EVENTS_FILE, RecordingError, SEAL_FILE, SessionMeta,
};

/// Largest terminal the text rendering emulates, whatever a header claims.
const MAX_COLS: u16 = 1000;
const MAX_ROWS: u16 = 500;

/// A session's recording directory, with its journal read.
#[derive(Debug)]
pub struct Recording {
    /// Session id.
    pub id: String,
    /// The directory.
    pub dir: PathBuf,
    /// Every journal line that parsed, in order.
    pub journal: Vec<Value>,
    /// The channels the journal names, in opening order.
    pub channels: Vec<ChannelEntry>,
}

/// One channel as the journal tells it.
#[derive(Debug, Clone)]
pub struct ChannelEntry {
    /// Order of opening (1-based), as in `chan-<seq>.cast`.
    pub seq: u32,
    /// What it was, if the journal says.
    pub kind: Option<ChannelKind>,
    /// Its data file, if any.
    pub file: Option<String>,
    /// What it did, once it closed.
    pub summary: Option<ChannelSummary>,
    /// Journal time it opened.
    pub opened: Option<String>,
    /// Output streams recorded as size and SHA-256 after a point (exec without a pty).
    pub bulk: Vec<BulkEntry>,
    /// Transfers: the per-file audit records (journal `transfer.file`), in order.
    pub files: Vec<FileRecord>,
}

/// An output stream that stopped going to the cast (journal `output.bulk`, and
/// `output.bulk.end` once the channel closed; see the crate docs on bulk output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkEntry {
    /// `stdout` or `stderr`.
    pub stream: String,
    /// Why.
    pub reason: Option<BulkReason>,
    /// Bytes of the stream in the cast.
    pub offset: u64,
    /// Size of the whole stream, once known.
    pub bytes: Option<u64>,
    /// SHA-256 of the whole stream, once known.
    pub sha256: Option<String>,
}

impl ChannelEntry {
    /// A short description: `shell`, `exec "uptime"`, `subsystem sftp`.
    pub fn describe(&self) -> String {
        match &self.kind {
            Some(ChannelKind::Shell { pty: Some(p) }) => {
                format!("shell (pty {} {}x{})", p.term, p.cols, p.rows)
            }
            Some(ChannelKind::Shell { pty: None }) => "shell (no pty)".into(),
            Some(ChannelKind::Exec { command, pty }) => {
                let pty = if pty.is_some() { " (pty)" } else { "" };
                format!("exec {command:?}{pty}")
            }
            Some(ChannelKind::Subsystem { name }) => format!("subsystem {name}"),
            None => "unknown".into(),
        }
    }

    /// True for a file transfer (recorded as sizes and digests).
    pub fn is_transfer(&self) -> bool {
        self.kind.as_ref().is_some_and(ChannelKind::is_transfer)
    }

    /// The asciicast file, for terminal channels that have one.
    pub fn cast_file(&self) -> Option<&str> {
        self.file.as_deref().filter(|f| f.ends_with(".cast"))
    }
}

impl Recording {
    /// Reads the recording in `dir` (the journal only; casts are streamed when needed).
    pub fn open(id: &str, dir: &Path) -> Result<Recording, RecordingError> {
        let mut events = JournalReader::open(dir)?;
        let mut journal = Vec::new();
        while let Some(value) = events.next_event(|_| true)? {
            journal.push(value);
        }
        let mut channels: Vec<ChannelEntry> = Vec::new();
        for event in &journal {
            let seq = || event["seq"].as_u64().and_then(|s| u32::try_from(s).ok());
            match event["event"].as_str() {
                Some("channel.open") => {
                    if let Some(seq) = seq() {
                        channels.push(ChannelEntry {
                            seq,
                            kind: serde_json::from_value(event["kind"].clone()).ok(),
                            file: event["file"].as_str().map(str::to_owned),
                            summary: None,
                            opened: event["time"].as_str().map(str::to_owned),
                            bulk: Vec::new(),
                            files: Vec::new(),
                        });
                    }
                }
                Some("output.bulk") => {
                    if let Some(ch) = seq().and_then(|s| channels.iter_mut().find(|c| c.seq == s)) {
                        ch.bulk.push(BulkEntry {
                            stream: event["stream"].as_str().unwrap_or("?").to_owned(),
                            reason: serde_json::from_value(event["reason"].clone()).ok(),
                            offset: event["offset"].as_u64().unwrap_or(0),
                            bytes: None,
                            sha256: None,
                        });
                    }
                }
                Some("output.bulk.end") => {
                    let bulk = seq()
                        .and_then(|s| channels.iter_mut().find(|c| c.seq == s))
                        .and_then(|c| c.bulk.iter_mut().find(|b| event["stream"] == *b.stream));
                    if let Some(bulk) = bulk {
                        bulk.bytes = event["bytes"].as_u64();
                        bulk.sha256 = event["sha256"].as_str().map(str::to_owned);
                    }
                }
                Some("transfer.file") => {
                    let record: Option<FileRecord> = serde_json::from_value(event.clone()).ok();
                    if let Some(record) = record
                        && let Some(ch) =
                            seq().and_then(|s| channels.iter_mut().find(|c| c.seq == s))
                    {
                        ch.files.push(record);
                    }
                }
                Some("channel.close") => {
                    let summary: Option<ChannelSummary> =
                        serde_json::from_value(event["summary"].clone()).ok();
                    if let Some(summary) = summary
                        && let Some(ch) = channels.iter_mut().find(|c| c.seq == summary.seq)
                    {
                        ch.summary = Some(summary);
                    }
                }
                _ => {}
            }
        }
        Ok(Recording {
            id: id.to_owned(),
            dir: dir.to_path_buf(),
            journal,
            channels,
        })
    }

    /// The session metadata from the journal's `session.start`.
    pub fn meta(&self) -> Option<SessionMeta> {
        self.journal_event("session.start")
            .and_then(|e| serde_json::from_value(e["session"].clone()).ok())
    }

    /// The first journal line of kind `kind`.
    pub fn journal_event(&self, kind: &str) -> Option<&Value> {
        self.journal.iter().find(|e| e["event"] == kind)
    }

    /// True when `seal.json` is there (whether it verifies is `verify`'s business).
    pub fn has_seal(&self) -> bool {
        self.dir.join(SEAL_FILE).exists()
    }

    /// The terminal channels to play, in order: all of them, or only channel `only`. Empty
    /// when there is none (the caller says why, in its words).
    pub fn timeline(&self, only: Option<u32>) -> Result<Vec<Segment>, RecordingError> {
        let mut segments = Vec::new();
        let mut offset = 0.0;
        for ch in &self.channels {
            if only.is_some_and(|n| n != ch.seq) {
                continue;
            }
            let Some(name) = ch.cast_file() else { continue };
            let path = self.dir.join(name);
            if !path.exists() {
                continue;
            }
            let mut cast = CastReader::open(&path)?;
            let mut duration: f64 = 0.0;
            while let Some(event) = cast.next_event()? {
                duration = duration.max(event.time);
            }
            segments.push(Segment {
                seq: ch.seq,
                // Unknown kind: play it as recorded.
                pty: ch.kind.as_ref().is_none_or(|k| k.pty().is_some()),
                path,
                header: cast.header,
                offset,
                duration,
            });
            offset += duration;
        }
        Ok(segments)
    }
}

/// Streams the events of a session journal (`events.jsonl`): each complete line that is
/// JSON, in order; a torn last line, an overlong line and a line that is not JSON are
/// skipped. The auditor's [`Recording::open`] keeps them all; the verifier picks the few it
/// checks without holding the rest.
pub struct JournalReader {
    lines: LineReader<File>,
    path: PathBuf,
}

impl JournalReader {
    /// Opens the journal of the recording in `dir`.
    pub fn open(dir: &Path) -> Result<JournalReader, RecordingError> {
        let path = dir.join(EVENTS_FILE);
        let file = File::open(&path).map_err(RecordingError::io(&path, "open"))?;
        Ok(JournalReader {
            lines: LineReader::new(file),
            path,
        })
    }

    /// The next event whose stored line passes `wanted` (a cheap test on the raw bytes, so
    /// lines of no interest are not parsed); `None` at the end.
    pub fn next_event(
        &mut self,
        wanted: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<Value>, RecordingError> {
        while let Some(line) = self
            .lines
            .next_line()
            .map_err(RecordingError::io(&self.path, "read"))?
        {
            if let Some(bytes) = line.whole()
                && wanted(bytes)
                && let Ok(value) = serde_json::from_slice::<Value>(bytes)
            {
                return Ok(Some(value));
            }
        }
        Ok(None)
    }
}

/// One channel's place in the timeline.
#[derive(Debug, Clone)]
pub struct Segment {
    /// The channel.
    pub seq: u32,
    /// It had a pty. Without one, the remote side writes bare `\n` and the person's own
    /// terminal turned it into a new line (`ONLCR`); text rendering and asciicast export
    /// (whose players put the terminal in raw mode) do the same.
    pub pty: bool,
    /// Its cast.
    pub path: PathBuf,
    /// Its header.
    pub header: CastHeader,
    /// Where it starts in the timeline (seconds).
    pub offset: f64,
    /// Time of its last event.
    pub duration: f64,
}

impl Segment {
    /// Reads the cast again from the first event.
    pub fn events(&self) -> Result<CastReader, RecordingError> {
        CastReader::open(&self.path)
    }
}

/// Total length of a timeline.
pub fn total(segments: &[Segment]) -> f64 {
    segments.last().map_or(0.0, |s| s.offset + s.duration)
}

/// An asciicast v2 header.
#[derive(Debug, Clone)]
pub struct CastHeader {
    /// Columns (clamped to what the text rendering emulates).
    pub width: u16,
    /// Rows (clamped likewise).
    pub height: u16,
    /// The header exactly as stored.
    pub line: Vec<u8>,
    /// The header parsed.
    pub value: Value,
}

impl CastHeader {
    fn parse(line: Vec<u8>, path: &Path) -> Result<CastHeader, RecordingError> {
        let bad = |why: String| RecordingError::BadHeader {
            path: path.to_path_buf(),
            why,
        };
        let value: Value = serde_json::from_slice(&line).map_err(|e| bad(e.to_string()))?;
        if value["version"] != 2 {
            return Err(bad("not asciicast version 2".into()));
        }
        // 0 is a pty of unknown size (`ssh -tt` without a terminal): programs then assume
        // the usual 80x24, and so does the rendering.
        let dim = |key: &str, default: u16, max: u16| {
            value[key]
                .as_u64()
                .and_then(|v| u16::try_from(v).ok())
                .filter(|&v| v > 0)
                .unwrap_or(default)
                .clamp(1, max)
        };
        Ok(CastHeader {
            width: dim("width", 80, MAX_COLS),
            height: dim("height", 24, MAX_ROWS),
            value,
            line,
        })
    }
}

/// One asciicast event.
#[derive(Debug, Clone, PartialEq)]
pub struct CastEvent {
    /// Seconds since the channel opened.
    pub time: f64,
    /// `o`, `i`, `r`, ...
    pub code: String,
    /// The text.
    pub data: String,
    /// The line exactly as stored.
    pub line: Vec<u8>,
}

/// Streams the events of a `.cast`.
pub struct CastReader {
    lines: LineReader<File>,
    path: PathBuf,
    /// The header.
    pub header: CastHeader,
    /// Lines skipped because they are not events.
    pub skipped: u64,
    /// The file ends in a partial line (left out).
    pub torn: bool,
}

impl CastReader {
    /// Opens a cast and reads its header.
    pub fn open(path: &Path) -> Result<CastReader, RecordingError> {
        let file = File::open(path).map_err(RecordingError::io(path, "open"))?;
        let mut lines = LineReader::new(file);
        let header = match lines
            .next_line()
            .map_err(RecordingError::io(path, "read"))?
        {
            Some(line) if line.whole().is_some() => CastHeader::parse(line.bytes, path)?,
            _ => {
                return Err(RecordingError::BadHeader {
                    path: path.to_path_buf(),
                    why: "no complete header line".into(),
                });
            }
        };
        Ok(CastReader {
            lines,
            path: path.to_path_buf(),
            header,
            skipped: 0,
            torn: false,
        })
    }

    /// The next event, skipping lines that are not events.
    pub fn next_event(&mut self) -> Result<Option<CastEvent>, RecordingError> {
        loop {
            let line = self
                .lines
                .next_line()
                .map_err(RecordingError::io(&self.path, "read"))?;
            match line {
                None => return Ok(None),
                Some(line) if !line.complete => {
                    self.torn = true;
                    return Ok(None);
                }
                Some(line) if line.overlong => self.skipped += 1,
                Some(line) => match parse_event(&line.bytes) {
                    Some((time, code, data)) => {
                        return Ok(Some(CastEvent {
                            time,
                            code,
                            data,
                            line: line.bytes,
                        }));
                    }
                    None => self.skipped += 1,
                },
            }
        }
    }
}

/// `[time, "code", "data"]`.
fn parse_event(bytes: &[u8]) -> Option<(f64, String, String)> {
    let (time, code, data): (f64, String, String) = serde_json::from_slice(bytes).ok()?;
    (time.is_finite() && time >= 0.0).then_some((time, code, data))
}
