//! SFTP v3 (draft-ietf-secsh-filexfer-02, as OpenSSH speaks it), read by a passive observer
//! of both directions of a channel.
//!
//! Requests are tracked by id until answered, files by handle from the `HANDLE` reply to
//! `CLOSE`; a file's written bytes are taken from `WRITE` requests, its read bytes from the
//! `DATA` replies to `READ` requests (which say at which offset they were asked for). See
//! the parent module for what becomes a record and for the bounds.

use std::collections::HashMap;

use super::ranges::Moved;
use super::{Direction, FileRecord, Malformed, path_text};

/// Longest SFTP packet accepted, as OpenSSH's `sftp-server` and `sftp` (`SFTP_MAX_MSG_LENGTH`):
/// a longer one would be refused by OpenSSH itself, so it is malformed here too.
pub const MAX_PACKET: usize = 256 * 1024;
/// Files open at once that are tracked; one more is malformed (a transfer client opens a
/// few at a time).
pub const MAX_HANDLES: usize = 256;
/// Requests awaiting an answer that are tracked. Past it a `READ` is not tracked (its file
/// is reported partial), any other request is malformed.
pub const MAX_PENDING: usize = 16 * 1024;
/// Bytes of paths held by requests awaiting an answer; past it, malformed.
pub const MAX_PENDING_PATHS: usize = 1024 * 1024;
/// Longest handle (the draft: 256 bytes).
const MAX_HANDLE_LEN: usize = 256;

const PROTOCOL: &str = "sftp";

mod code {
    pub const INIT: u8 = 1;
    pub const VERSION: u8 = 2;
    pub const OPEN: u8 = 3;
    pub const CLOSE: u8 = 4;
    pub const READ: u8 = 5;
    pub const WRITE: u8 = 6;
    pub const FSTAT: u8 = 8;
    pub const SETSTAT: u8 = 9;
    pub const FSETSTAT: u8 = 10;
    pub const REMOVE: u8 = 13;
    pub const MKDIR: u8 = 14;
    pub const RMDIR: u8 = 15;
    pub const RENAME: u8 = 18;
    pub const SYMLINK: u8 = 20;
    pub const EXTENDED: u8 = 200;
    pub const STATUS: u8 = 101;
    pub const HANDLE: u8 = 102;
    pub const DATA: u8 = 103;
    pub const ATTRS: u8 = 105;
}

/// Open flags (`SSH_FXF_*`).
const FXF: [(u32, &str); 6] = [
    (0x01, "read"),
    (0x02, "write"),
    (0x04, "append"),
    (0x08, "create"),
    (0x10, "truncate"),
    (0x20, "excl"),
];

/// Splits a byte stream into SFTP packets (`uint32 length`, then `length` bytes).
#[derive(Debug, Default)]
struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// Calls `packet` for each complete packet in `data` (and what was held before).
    fn feed(
        &mut self,
        mut data: &[u8],
        mut packet: impl FnMut(&[u8]) -> Result<(), String>,
    ) -> Result<(), String> {
        while !data.is_empty() {
            if self.buf.is_empty() && data.len() >= 4 {
                let len = packet_len(&data[..4])?;
                if data.len() >= 4 + len {
                    packet(&data[4..4 + len])?;
                    data = &data[4 + len..];
                    continue;
                }
            }
            if self.buf.len() < 4 {
                let take = (4 - self.buf.len()).min(data.len());
                self.buf.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.buf.len() < 4 {
                    return Ok(());
                }
            }
            let total = 4 + packet_len(&self.buf[..4])?;
            let take = (total - self.buf.len()).min(data.len());
            self.buf.extend_from_slice(&data[..take]);
            data = &data[take..];
            if self.buf.len() < total {
                return Ok(());
            }
            packet(&self.buf[4..total])?;
            self.buf.clear();
        }
        Ok(())
    }

    /// Bytes of a packet begun but not complete.
    fn partial(&self) -> usize {
        self.buf.len()
    }
}

fn packet_len(header: &[u8]) -> Result<usize, String> {
    let mut len = [0u8; 4];
    len.copy_from_slice(header);
    let len = u32::from_be_bytes(len) as usize;
    if len == 0 {
        return Err("empty packet".into());
    }
    if len > MAX_PACKET {
        return Err(format!(
            "packet of {len} bytes, over the {MAX_PACKET}-byte limit"
        ));
    }
    Ok(len)
}

/// Reads the fields of one packet; running past its end is malformed.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        if self.rest.len() < n {
            return Err(format!("truncated {what}"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u32(&mut self, what: &str) -> Result<u32, String> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4, what)?);
        Ok(u32::from_be_bytes(b))
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8, what)?);
        Ok(u64::from_be_bytes(b))
    }

    fn string(&mut self, what: &str) -> Result<&'a [u8], String> {
        let len = self.u32(what)? as usize;
        self.take(len, what)
    }

    fn handle(&mut self) -> Result<&'a [u8], String> {
        let handle = self.string("handle")?;
        if handle.len() > MAX_HANDLE_LEN {
            return Err(format!("handle of {} bytes", handle.len()));
        }
        Ok(handle)
    }

    /// File attributes; returns the size if present and a description of what is set.
    fn attrs(&mut self) -> Result<(Option<u64>, String), String> {
        let flags = self.u32("attributes")?;
        let mut set = Vec::new();
        let mut size = None;
        if flags & 0x1 != 0 {
            let s = self.u64("size")?;
            size = Some(s);
            set.push(format!("size={s}"));
        }
        if flags & 0x2 != 0 {
            let uid = self.u32("uid")?;
            let gid = self.u32("gid")?;
            set.push(format!("owner={uid}:{gid}"));
        }
        if flags & 0x4 != 0 {
            set.push(format!("mode={:04o}", self.u32("permissions")? & 0o7777));
        }
        if flags & 0x8 != 0 {
            self.u32("atime")?;
            self.u32("mtime")?;
            set.push("times".to_owned());
        }
        if flags & 0x8000_0000 != 0 {
            let count = self.u32("extended count")?;
            for _ in 0..count {
                self.string("extended type")?;
                self.string("extended data")?;
            }
            set.push("extended".to_owned());
        }
        Ok((size, set.join(" ")))
    }
}

/// A request awaiting its answer.
#[derive(Debug)]
enum Pending {
    Open {
        path: String,
        flags: u32,
    },
    Read {
        file: u32,
        offset: u64,
    },
    Write {
        file: u32,
    },
    Close {
        file: u32,
    },
    Fstat {
        file: u32,
    },
    /// A request on paths (`rename`, `remove`, ...), recorded with its answer.
    Op(Box<FileRecord>),
    /// `FSETSTAT` setting an open file's size (OpenSSH's `scp` truncates this way after
    /// writing), recorded with its answer.
    Truncate {
        file: u32,
        size: u64,
        record: Box<FileRecord>,
    },
}

impl Pending {
    fn path_bytes(&self) -> usize {
        match self {
            Pending::Open { path, .. } => path.len(),
            Pending::Op(r) | Pending::Truncate { record: r, .. } => {
                r.path.as_ref().map_or(0, String::len)
                    + r.to.as_ref().map_or(0, String::len)
                    + r.detail.as_ref().map_or(0, String::len)
            }
            _ => 0,
        }
    }
}

/// An open file.
#[derive(Debug)]
struct OpenFile {
    path: String,
    flags: u32,
    read: Moved,
    written: Moved,
    /// A read answered with end-of-file at the end of the in-order run.
    eof: bool,
    /// Size from an `FSTAT` answer.
    size: Option<u64>,
    /// Size set by an `FSETSTAT` that succeeded.
    truncated: Option<u64>,
    /// Failed writes or reads, and reads past the tracking bound.
    trouble: u64,
}

/// The audit state of one SFTP channel.
#[derive(Debug, Default)]
pub struct SftpAudit {
    up: Framer,
    down: Framer,
    state: State,
}

#[derive(Debug, Default)]
struct State {
    /// The server's `VERSION` was seen.
    versioned: bool,
    pending: HashMap<u32, Pending>,
    pending_paths: usize,
    handles: HashMap<Vec<u8>, u32>,
    files: HashMap<u32, OpenFile>,
    next_file: u32,
}

impl SftpAudit {
    /// Bytes from the client (requests).
    pub fn client(&mut self, data: &[u8], out: &mut Vec<FileRecord>) -> Result<(), Malformed> {
        let state = &mut self.state;
        self.up
            .feed(data, |p| state.request(p, out))
            .map_err(|reason| malformed("client", reason))
    }

    /// Bytes from the server (replies).
    pub fn target(&mut self, data: &[u8], out: &mut Vec<FileRecord>) -> Result<(), Malformed> {
        let state = &mut self.state;
        self.down
            .feed(data, |p| state.reply(p, out))
            .map_err(|reason| malformed("target", reason))
    }

    /// The channel ended: files still open are recorded as they are, requests never
    /// answered with `no reply`.
    pub fn finish(&mut self, out: &mut Vec<FileRecord>) {
        let s = &mut self.state;
        let mut ids: Vec<u32> = s.pending.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(Pending::Op(mut record) | Pending::Truncate { mut record, .. }) =
                s.pending.remove(&id)
            {
                record.status = "no reply".to_owned();
                out.push(*record);
            }
        }
        let mut files: Vec<(u32, OpenFile)> = s.files.drain().collect();
        files.sort_by_key(|(k, _)| *k);
        for (_, file) in files {
            out.push(close_record(
                file,
                "not closed: the channel ended".to_owned(),
            ));
        }
        s.handles.clear();
        s.pending.clear();
        s.pending_paths = 0;
        if self.up.partial() > 0 || self.down.partial() > 0 {
            let mut r = FileRecord::new(PROTOCOL, "malformed", None);
            r.status = "the channel ended inside a packet".to_owned();
            out.push(r);
        }
    }
}

fn malformed(side: &'static str, reason: String) -> Malformed {
    Malformed {
        protocol: PROTOCOL,
        side,
        reason,
    }
}

impl State {
    fn request(&mut self, packet: &[u8], out: &mut Vec<FileRecord>) -> Result<(), String> {
        let mut f = Fields { rest: packet };
        let kind = f.u8("type")?;
        if kind == code::INIT {
            f.u32("version")?;
            return Ok(());
        }
        let id = f.u32("request id")?;
        let pending = match kind {
            code::OPEN => {
                let path = path_text(f.string("path")?);
                let flags = f.u32("open flags")?;
                f.attrs()?;
                Some(Pending::Open { path, flags })
            }
            code::CLOSE => {
                let handle = f.handle()?;
                self.handles
                    .get(handle)
                    .map(|&file| Pending::Close { file })
            }
            code::READ => {
                let handle = f.handle()?;
                let offset = f.u64("offset")?;
                f.u32("length")?;
                match self.handles.get(handle) {
                    Some(&file) if self.pending.len() >= MAX_PENDING => {
                        if let Some(open) = self.files.get_mut(&file) {
                            open.trouble += 1;
                        }
                        None
                    }
                    Some(&file) => Some(Pending::Read { file, offset }),
                    None => None,
                }
            }
            code::WRITE => {
                let handle = f.handle()?;
                let offset = f.u64("offset")?;
                let data = f.string("data")?;
                match self.handles.get(handle) {
                    Some(&file) => {
                        if let Some(open) = self.files.get_mut(&file) {
                            open.written.add(offset, data);
                            if self.pending.len() >= MAX_PENDING {
                                open.trouble += 1;
                                None
                            } else {
                                Some(Pending::Write { file })
                            }
                        } else {
                            None
                        }
                    }
                    None => None,
                }
            }
            code::FSTAT => {
                let handle = f.handle()?;
                self.handles
                    .get(handle)
                    .map(|&file| Pending::Fstat { file })
            }
            code::SETSTAT => {
                let path = path_text(f.string("path")?);
                let (_, set) = f.attrs()?;
                Some(op("setstat", path, None, Some(set)))
            }
            code::FSETSTAT => {
                let handle = f.handle()?;
                let (size, set) = f.attrs()?;
                let path = self.handle_path(handle);
                let record = op_record("fsetstat", path, None, Some(set));
                match (self.handles.get(handle), size) {
                    (Some(&file), Some(size)) => Some(Pending::Truncate { file, size, record }),
                    _ => Some(Pending::Op(record)),
                }
            }
            code::REMOVE => Some(op("remove", path_text(f.string("path")?), None, None)),
            code::MKDIR => {
                let path = path_text(f.string("path")?);
                let (_, set) = f.attrs()?;
                Some(op("mkdir", path, None, Some(set).filter(|s| !s.is_empty())))
            }
            code::RMDIR => Some(op("rmdir", path_text(f.string("path")?), None, None)),
            code::RENAME => {
                let from = path_text(f.string("old path")?);
                let to = path_text(f.string("new path")?);
                Some(op("rename", from, Some(to), None))
            }
            code::SYMLINK => {
                // OpenSSH sends the target first, then the link (the draft's order swapped).
                let first = path_text(f.string("link path")?);
                let second = path_text(f.string("target path")?);
                Some(op("symlink", first, Some(second), None))
            }
            code::EXTENDED => self.extended(&mut f)?,
            _ => None,
        };
        let Some(pending) = pending else {
            return Ok(());
        };
        if self.pending.len() >= MAX_PENDING {
            return Err(format!(
                "more than {MAX_PENDING} requests awaiting an answer"
            ));
        }
        let bytes = pending.path_bytes();
        if self.pending_paths + bytes > MAX_PENDING_PATHS {
            return Err(format!(
                "more than {MAX_PENDING_PATHS} bytes of paths awaiting an answer"
            ));
        }
        self.pending_paths += bytes;
        if let Some(old) = self.pending.insert(id, pending) {
            self.pending_paths -= old.path_bytes();
            self.forget(old, out);
        }
        Ok(())
    }

    /// `EXTENDED` requests that act on files; the others are not audited.
    fn extended(&mut self, f: &mut Fields<'_>) -> Result<Option<Pending>, String> {
        let name = f.string("extension name")?;
        Ok(match name {
            b"posix-rename@openssh.com" => {
                let from = path_text(f.string("old path")?);
                let to = path_text(f.string("new path")?);
                Some(op("rename", from, Some(to), Some("posix".to_owned())))
            }
            b"hardlink@openssh.com" => {
                let from = path_text(f.string("old path")?);
                let to = path_text(f.string("new path")?);
                Some(op("hardlink", from, Some(to), None))
            }
            b"lsetstat@openssh.com" => {
                let path = path_text(f.string("path")?);
                let (_, set) = f.attrs()?;
                Some(op(
                    "setstat",
                    path,
                    None,
                    Some(format!("{set} (no follow)")),
                ))
            }
            b"copy-data" => {
                let from = f.handle()?;
                let offset = f.u64("read offset")?;
                let length = f.u64("read length")?;
                let to = f.handle()?;
                let at = f.u64("write offset")?;
                let detail = format!("{length} bytes from {offset} to {at} (0: to the end)");
                Some(op(
                    "copy-data",
                    self.handle_path(from),
                    Some(self.handle_path(to)),
                    Some(detail),
                ))
            }
            _ => None,
        })
    }

    fn handle_path(&self, handle: &[u8]) -> String {
        self.handles
            .get(handle)
            .and_then(|file| self.files.get(file))
            .map_or_else(|| "(unknown handle)".to_owned(), |f| f.path.clone())
    }

    /// A request replaced by another of the same id before its answer.
    fn forget(&mut self, old: Pending, out: &mut Vec<FileRecord>) {
        match old {
            Pending::Op(mut record) | Pending::Truncate { mut record, .. } => {
                record.status = "no reply (request id reused)".to_owned();
                out.push(*record);
            }
            Pending::Read { file, .. } | Pending::Write { file } => {
                if let Some(open) = self.files.get_mut(&file) {
                    open.trouble += 1;
                }
            }
            _ => {}
        }
    }

    fn reply(&mut self, packet: &[u8], out: &mut Vec<FileRecord>) -> Result<(), String> {
        let mut f = Fields { rest: packet };
        let kind = f.u8("type")?;
        if kind == code::VERSION {
            let version = f.u32("version")?;
            if version != 3 {
                return Err(format!("SFTP version {version}: only version 3 is audited"));
            }
            self.versioned = true;
            return Ok(());
        }
        if !self.versioned {
            return Err(format!("packet type {kind} before the version"));
        }
        let id = f.u32("request id")?;
        let Some(pending) = self.pending.remove(&id) else {
            return Ok(());
        };
        self.pending_paths -= pending.path_bytes();
        match kind {
            code::STATUS => {
                let code = f.u32("status code")?;
                // The message is optional in v3.
                let message = f.string("status message").unwrap_or_default();
                self.status(pending, code, message, out);
            }
            code::HANDLE => {
                let handle = f.handle()?;
                self.handle(pending, handle, out)?;
            }
            code::DATA => {
                let data = f.string("data")?;
                if let Pending::Read { file, offset } = pending
                    && let Some(open) = self.files.get_mut(&file)
                {
                    open.read.add(offset, data);
                }
            }
            code::ATTRS => {
                let (size, _) = f.attrs()?;
                if let Pending::Fstat { file } = pending
                    && let Some(open) = self.files.get_mut(&file)
                {
                    open.size = size;
                }
            }
            _ => {
                // An answer of another kind (`NAME`, `EXTENDED_REPLY`): records see it as
                // done.
                if let Pending::Op(record) | Pending::Truncate { record, .. } = pending {
                    out.push(*record);
                }
            }
        }
        Ok(())
    }

    fn handle(
        &mut self,
        pending: Pending,
        handle: &[u8],
        out: &mut Vec<FileRecord>,
    ) -> Result<(), String> {
        let Pending::Open { path, flags } = pending else {
            return Ok(());
        };
        let mut record = FileRecord::new(PROTOCOL, "open", Some(path.clone()));
        record.detail = Some(open_flags(flags));
        out.push(record);
        if self.files.len() >= MAX_HANDLES {
            return Err(format!("more than {MAX_HANDLES} files open at once"));
        }
        let file = self.next_file;
        self.next_file = self.next_file.wrapping_add(1);
        if let Some(old) = self.handles.insert(handle.to_vec(), file)
            && let Some(stale) = self.files.remove(&old)
        {
            out.push(close_record(
                stale,
                "handle reused without a close".to_owned(),
            ));
        }
        self.files.insert(
            file,
            OpenFile {
                path,
                flags,
                read: Moved::new(),
                written: Moved::new(),
                eof: false,
                size: None,
                truncated: None,
                trouble: 0,
            },
        );
        Ok(())
    }

    fn status(&mut self, pending: Pending, code: u32, message: &[u8], out: &mut Vec<FileRecord>) {
        let status = status_text(code, message);
        match pending {
            Pending::Open { path, flags } => {
                let mut record = FileRecord::new(PROTOCOL, "open", Some(path));
                record.detail = Some(open_flags(flags));
                record.status = status;
                out.push(record);
            }
            Pending::Op(mut record) => {
                record.status = status;
                out.push(*record);
            }
            Pending::Truncate {
                file,
                size,
                mut record,
            } => {
                if code == 0
                    && let Some(open) = self.files.get_mut(&file)
                {
                    open.truncated = Some(size);
                }
                record.status = status;
                out.push(*record);
            }
            Pending::Read { file, offset } => {
                if let Some(open) = self.files.get_mut(&file) {
                    if code == 1 {
                        // End of file at or past the in-order run: the file ends there (a
                        // client reads on from a short read, so bytes skipped would show up
                        // out of order).
                        if offset >= open.read.next() && open.read.in_order() {
                            open.eof = true;
                        }
                    } else {
                        open.trouble += 1;
                    }
                }
            }
            Pending::Write { file } | Pending::Fstat { file } if code != 0 => {
                if let Some(open) = self.files.get_mut(&file) {
                    open.trouble += 1;
                }
            }
            Pending::Close { file } => {
                if let Some(open) = self.files.remove(&file) {
                    self.handles.retain(|_, f| *f != file);
                    out.push(close_record(open, status));
                }
            }
            Pending::Write { .. } | Pending::Fstat { .. } => {}
        }
    }
}

/// The open flags by name (`read,write,create,truncate`).
fn open_flags(flags: u32) -> String {
    FXF.iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join(",")
}

fn op(name: &str, path: String, to: Option<String>, detail: Option<String>) -> Pending {
    Pending::Op(op_record(name, path, to, detail))
}

/// Boxed: a request awaiting its answer stays small (most are reads).
fn op_record(
    name: &str,
    path: String,
    to: Option<String>,
    detail: Option<String>,
) -> Box<FileRecord> {
    let mut record = FileRecord::new(PROTOCOL, name, Some(path));
    record.to = to;
    record.detail = detail;
    Box::new(record)
}

/// `ok`, or the error's name and the server's message.
fn status_text(code: u32, message: &[u8]) -> String {
    let name = match code {
        0 => return "ok".to_owned(),
        1 => "end of file",
        2 => "no such file",
        3 => "permission denied",
        4 => "failure",
        5 => "bad message",
        6 => "no connection",
        7 => "connection lost",
        8 => "operation unsupported",
        _ => "error",
    };
    let message = String::from_utf8_lossy(&message[..message.len().min(512)]);
    if message.is_empty() {
        format!("{name} ({code})")
    } else {
        format!("{name} ({code}): {message}")
    }
}

/// The record of a file's transfer, at its close (or the channel's end).
fn close_record(file: OpenFile, status: String) -> FileRecord {
    let read = file.read.bytes() > 0;
    let written = file.written.bytes() > 0 || file.flags & 0x10 != 0;
    let (direction, moved) = match (read, written) {
        (true, true) => (Direction::Both, None),
        (false, true) => (Direction::Upload, Some(&file.written)),
        _ if file.flags & 0x02 != 0 && file.flags & 0x01 == 0 => {
            (Direction::Upload, Some(&file.written))
        }
        _ => (Direction::Download, Some(&file.read)),
    };
    let mut record = FileRecord::new(PROTOCOL, "close", Some(file.path));
    record.status = status;
    record.direction = Some(direction);
    let Some(moved) = moved else {
        record.size = Some(file.read.bytes() + file.written.bytes());
        record.ranges = Some(file.read.range_count() + file.written.range_count());
        record.whole = Some(false);
        return record;
    };
    // Whole: in order from 0 with nothing lost, and (downloads) read to the end, (uploads)
    // into a file truncated, new, or cut to that size after, so its bytes are exactly these.
    let complete = match direction {
        Direction::Download => file.eof || file.size == Some(moved.next()),
        _ => file.flags & (0x10 | 0x20) != 0 || file.truncated == Some(moved.next()),
    };
    let whole = moved.in_order() && file.trouble == 0 && complete && record.status == "ok";
    record.size = Some(moved.bytes());
    record.range = moved.span();
    record.ranges = Some(moved.range_count());
    record.whole = Some(whole);
    if whole {
        record.sha256 = Some(moved.sha256_hex());
    }
    record
}
