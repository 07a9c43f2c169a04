//! The rcp protocol of legacy `scp -O`, read by a passive observer of both directions.
//!
//! The target runs `scp -t PATH` for an upload (it is the sink: the client's stream carries
//! the files) or `scp -f PATH` for a download (it is the source). The source sends lines
//! `C<mode> <size> <name>` (then `size` bytes and a status byte), `D<mode> 0 <name>` (enter a
//! directory), `E` (leave it), `T<mtime> 0 <atime> 0` (times of the next entry), or
//! `\x01`/`\x02` + message (a warning or fatal error); the sink answers each with `\0`, or
//! `\x01`/`\x02` + message.
//!
//! A file's path is the command's `PATH` joined with the directories entered and the name
//! sent, as the client named them (downloads: the directory of `PATH`; uploads of a single
//! file without `-d`: `PATH` itself, which the target uses as the file's name unless it is a
//! directory). The target resolves the path against its file system: the record says what
//! the client asked for.

use sha2::{Digest, Sha256};

use super::{Direction, FileRecord, Malformed, path_text};

/// Longest control line (OpenSSH's sink reads lines into a 2048-byte buffer; names can be
/// longer on some systems, so a little more room).
pub const MAX_LINE: usize = 8192;
/// Deepest directory nesting tracked; deeper is malformed.
pub const MAX_DEPTH: usize = 256;

const PROTOCOL: &str = "scp";

/// The audit state of one `scp -t` / `scp -f` channel.
#[derive(Debug)]
pub struct RcpAudit {
    direction: Direction,
    /// The directory entries' paths are relative to (`PATH`, or its parent for `-f`).
    base: String,
    /// Uploads: `PATH` names a directory (`-d`, `-r`, or a trailing `/`).
    into_dir: bool,
    /// `PATH` itself, for a single-file upload.
    target: String,
    dirs: Vec<String>,
    source: Source,
    /// The sink's message being read, if any.
    sink_message: Option<Vec<u8>>,
    /// Path of the last file, for the sink's messages.
    last: Option<String>,
}

#[derive(Debug)]
enum Source {
    /// Reading a control line.
    Line(Vec<u8>),
    /// Reading a file's bytes.
    Data(Box<Incoming>),
    /// The status byte after a file's bytes.
    Status(Box<Incoming>),
    /// The message after an error status byte.
    StatusMessage(Box<Incoming>, Vec<u8>),
}

/// A file on its way.
#[derive(Debug)]
struct Incoming {
    path: String,
    mode: u32,
    size: u64,
    seen: u64,
    sha: Sha256,
}

impl RcpAudit {
    /// The audit of an `scp` command with `-t` (upload) or `-f` (download); `None` for any
    /// other use of `scp`.
    pub fn for_command(command: &str) -> Option<RcpAudit> {
        let mut words = command.split_whitespace();
        words.next()?;
        let (mut to, mut from, mut dir) = (false, false, false);
        let mut path = Vec::new();
        let mut options = true;
        for word in words {
            if options && word == "--" {
                options = false;
            } else if options && word.starts_with('-') && word.len() > 1 {
                for c in word.chars().skip(1) {
                    match c {
                        't' => to = true,
                        'f' => from = true,
                        'd' | 'r' => dir = true,
                        _ => {}
                    }
                }
            } else {
                options = false;
                path.push(word);
            }
        }
        if to == from {
            return None;
        }
        let target = unquote(&path.join(" "));
        let trimmed = target.trim_end_matches('/');
        let (direction, base) = if to {
            dir |= target.ends_with('/') || target.is_empty() || target == ".";
            (Direction::Upload, trimmed.to_owned())
        } else {
            let parent = match trimmed.rfind('/') {
                Some(0) => "/".to_owned(),
                Some(at) => trimmed[..at].to_owned(),
                None => String::new(),
            };
            (Direction::Download, parent)
        };
        Some(RcpAudit {
            direction,
            base,
            into_dir: dir,
            target,
            dirs: Vec::new(),
            source: Source::Line(Vec::new()),
            sink_message: None,
            last: None,
        })
    }

    /// Bytes from the client: the files of an upload, the acknowledgements of a download.
    pub fn client(&mut self, data: &[u8], out: &mut Vec<FileRecord>) -> Result<(), Malformed> {
        match self.direction {
            Direction::Upload => self.source(data, out).map_err(|r| malformed("client", r)),
            _ => {
                self.sink(data, out);
                Ok(())
            }
        }
    }

    /// Bytes from the target: the acknowledgements of an upload, the files of a download.
    pub fn target(&mut self, data: &[u8], out: &mut Vec<FileRecord>) -> Result<(), Malformed> {
        match self.direction {
            Direction::Upload => {
                self.sink(data, out);
                Ok(())
            }
            _ => self.source(data, out).map_err(|r| malformed("target", r)),
        }
    }

    /// The channel ended: a file still on its way is recorded as incomplete.
    pub fn finish(&mut self, out: &mut Vec<FileRecord>) {
        match std::mem::replace(&mut self.source, Source::Line(Vec::new())) {
            Source::Data(file) | Source::Status(file) | Source::StatusMessage(file, _) => {
                let status = format!(
                    "incomplete: the channel ended after {} of {} bytes",
                    file.seen, file.size
                );
                out.push(self.file_record(*file, status));
            }
            Source::Line(line) if !line.is_empty() => {
                let mut r = FileRecord::new(PROTOCOL, "malformed", None);
                r.status = "the channel ended inside a control line".to_owned();
                out.push(r);
            }
            Source::Line(_) => {}
        }
    }

    fn source(&mut self, mut data: &[u8], out: &mut Vec<FileRecord>) -> Result<(), String> {
        while !data.is_empty() {
            match &mut self.source {
                Source::Line(line) => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let take = end.map_or(data.len(), |at| at + 1);
                    if line.len() + take > MAX_LINE {
                        return Err(format!("control line over {MAX_LINE} bytes"));
                    }
                    line.extend_from_slice(&data[..take]);
                    data = &data[take..];
                    if end.is_some() {
                        let line = std::mem::take(line);
                        self.line(&line[..line.len() - 1], out)?;
                    }
                }
                Source::Data(file) => {
                    let left = file.size - file.seen;
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(data.len());
                    file.sha.update(&data[..take]);
                    file.seen += take as u64;
                    data = &data[take..];
                    if file.seen == file.size {
                        self.advance(Source::Status);
                    }
                }
                Source::Status(_) => {
                    let byte = data[0];
                    data = &data[1..];
                    if byte == 0 {
                        if let Source::Status(file) =
                            std::mem::replace(&mut self.source, Source::Line(Vec::new()))
                        {
                            out.push(self.file_record(*file, "ok".to_owned()));
                        }
                    } else {
                        self.advance(|f| Source::StatusMessage(f, vec![byte]));
                    }
                }
                Source::StatusMessage(_, message) => {
                    let end = data.iter().position(|&b| b == b'\n');
                    let take = end.map_or(data.len(), |at| at + 1);
                    let room = MAX_LINE.saturating_sub(message.len()).min(take);
                    message.extend_from_slice(&data[..room]);
                    data = &data[take..];
                    if end.is_some()
                        && let Source::StatusMessage(file, message) =
                            std::mem::replace(&mut self.source, Source::Line(Vec::new()))
                    {
                        let status = format!("error: {}", message_text(&message));
                        out.push(self.file_record(*file, status));
                    }
                }
            }
        }
        Ok(())
    }

    /// Moves the file on its way to the next step.
    fn advance(&mut self, next: impl FnOnce(Box<Incoming>) -> Source) {
        let step = std::mem::replace(&mut self.source, Source::Line(Vec::new()));
        self.source = match step {
            Source::Data(f) | Source::Status(f) | Source::StatusMessage(f, _) => next(f),
            other => other,
        };
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<FileRecord>) -> Result<(), String> {
        let Some((&kind, rest)) = line.split_first() else {
            return Err("empty control line".to_owned());
        };
        match kind {
            b'C' | b'D' => {
                let (mode, size, name) = entry(rest).ok_or_else(|| {
                    format!(
                        "bad {} line {:?}",
                        kind as char,
                        message_text(&line[..line.len().min(80)])
                    )
                })?;
                if kind == b'D' {
                    if self.dirs.len() >= MAX_DEPTH {
                        return Err(format!("directories nested over {MAX_DEPTH} deep"));
                    }
                    self.dirs.push(name);
                    return Ok(());
                }
                let path = self.path(&name);
                self.last = Some(path.clone());
                self.source = Source::Data(Box::new(Incoming {
                    path,
                    mode,
                    size,
                    seen: 0,
                    sha: Sha256::new(),
                }));
                if size == 0 {
                    self.advance(Source::Status);
                }
                Ok(())
            }
            b'E' => {
                self.dirs.pop();
                Ok(())
            }
            b'T' => {
                let ok = rest
                    .split(|&b| b == b' ')
                    .all(|w| !w.is_empty() && w.iter().all(u8::is_ascii_digit));
                if ok {
                    Ok(())
                } else {
                    Err("bad T line".to_owned())
                }
            }
            1 | 2 => {
                let mut r = FileRecord::new(PROTOCOL, "error", self.last.clone());
                r.status = message_text(line);
                out.push(r);
                Ok(())
            }
            other => Err(format!("unknown control line type 0x{other:02x}")),
        }
    }

    /// Acknowledgements: `\0`, or a message to the end of its line.
    fn sink(&mut self, data: &[u8], out: &mut Vec<FileRecord>) {
        for &byte in data {
            match &mut self.sink_message {
                None if byte == 0 => {}
                None => self.sink_message = Some(vec![byte]),
                Some(message) if byte == b'\n' => {
                    let mut r = FileRecord::new(PROTOCOL, "error", self.last.clone());
                    r.status = message_text(message);
                    out.push(r);
                    self.sink_message = None;
                }
                Some(message) => {
                    if message.len() < MAX_LINE {
                        message.push(byte);
                    }
                }
            }
        }
    }

    /// The path of entry `name` in the directories entered.
    fn path(&self, name: &str) -> String {
        if self.direction == Direction::Upload && !self.into_dir && self.dirs.is_empty() {
            return self.target.clone();
        }
        let mut path = self.base.clone();
        for part in self.dirs.iter().map(String::as_str).chain([name]) {
            if !path.is_empty() && !path.ends_with('/') {
                path.push('/');
            }
            path.push_str(part);
        }
        path
    }

    fn file_record(&self, file: Incoming, status: String) -> FileRecord {
        let whole = file.seen == file.size && status == "ok";
        let mut r = FileRecord::new(PROTOCOL, "file", Some(file.path));
        r.detail = Some(format!("mode={:04o}", file.mode & 0o7777));
        r.direction = Some(self.direction);
        r.size = Some(file.seen);
        r.range = (file.seen > 0).then_some([0, file.seen]);
        r.ranges = Some(u64::from(file.seen > 0));
        r.whole = Some(whole);
        if whole {
            r.sha256 = Some(hex::encode(file.sha.finalize()));
        }
        r.status = status;
        r
    }
}

fn malformed(side: &'static str, reason: String) -> Malformed {
    Malformed {
        protocol: PROTOCOL,
        side,
        reason,
    }
}

/// `<mode> <size> <name>` of a `C` or `D` line.
fn entry(rest: &[u8]) -> Option<(u32, u64, String)> {
    let mut parts = rest.splitn(3, |&b| b == b' ');
    let mode = std::str::from_utf8(parts.next()?).ok()?;
    let size = std::str::from_utf8(parts.next()?).ok()?;
    let name = parts.next()?;
    if mode.len() != 4 || name.is_empty() {
        return None;
    }
    let mode = u32::from_str_radix(mode, 8).ok()?;
    if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((mode, size.parse().ok()?, path_text(name)))
}

/// A message as one line of text (without its status byte and newline).
fn message_text(bytes: &[u8]) -> String {
    let bytes = match bytes.first() {
        Some(1 | 2) => &bytes[1..],
        _ => bytes,
    };
    String::from_utf8_lossy(&bytes[..bytes.len().min(512)])
        .trim_end()
        .to_owned()
}

/// The path as the client's shell quoting gave it (`'a b'` -> `a b`).
fn unquote(path: &str) -> String {
    if path.len() >= 2 && path.starts_with('\'') && path.ends_with('\'') {
        path[1..path.len() - 1].replace("'\\''", "'")
    } else {
        path.to_owned()
    }
}
