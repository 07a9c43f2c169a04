//! Streams the audit log to a SIEM (Splunk, Elastic, Loki, any syslog collector) as it is
//! written: JSON lines to stdout or a file, or RFC 5424 messages over syslog TCP (RFC 6587
//! octet counting) or UDP.
//!
//! # The log is the buffer
//!
//! The forwarder does not sit between an append and the disk: it *tails* the audit log, the
//! way log shippers do, from a cursor kept beside it (`<log>.forward`: byte offset and `seq`
//! of the last record known delivered). So
//!
//! * an append never waits for, nor fails because of, the collector;
//! * records appended by another process (an operator's offline `ssh-ca revoke`) are forwarded
//!   too, and a restart resumes where the last run stopped;
//! * memory is bounded by one batch ([`MAX_BATCH_BYTES`]), however long the collector is down:
//!   the backlog is the log itself, already durable on disk. Nothing is dropped for want of
//!   buffer space; the only records ever skipped are single lines longer than [`MAX_LINE`]
//!   (never written by this project's programs) and, over UDP, messages longer than a datagram.
//!   Both are counted in [`ForwardStats::dropped`] and logged.
//!
//! # Delivery over TCP
//!
//! Plain syslog over TCP has no acknowledgements: a write succeeds once the kernel has the bytes,
//! even if the collector dies before reading them. So a batch counts as delivered only when
//! the connection is still open [`CONFIRM_AFTER`] after it was written (a collector only
//! ever closes its side; a socket that turns readable has been closed). When the collector
//! goes away, the forwarder reconnects with back-off and sends again from the last delivered
//! record: at least once, in order. A record sent twice carries the same `seq` and `hash`,
//! so a collector can drop the second copy.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::net::{TcpStream, ToSocketAddrs, UdpSocket};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::side_path;

/// Longest record line forwarded; a longer one is skipped and counted as dropped.
pub const MAX_LINE: usize = 1 << 20;
/// Most bytes of records read and sent in one batch.
pub const MAX_BATCH_BYTES: usize = 256 * 1024;
/// How long a TCP connection must stay open after a write for its batch to count as delivered.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(1);
/// How often the log is looked at for new records when there is nothing to send.
const POLL: Duration = Duration::from_millis(200);
/// Largest syslog message sent in one UDP datagram.
const MAX_DATAGRAM: usize = 65_000;
/// Time allowed to connect to, or to write to, a collector.
const NETWORK_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// syslog facility `authpriv` (10), severity `info` (6): security events, readable by admins.
const PRIORITY: u8 = 10 * 8 + 6;

/// Where audit records go, from `[audit] forward` in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardTarget {
    /// JSON lines on the program's standard output (logs go to stderr).
    Stdout,
    /// JSON lines appended to a file (`file:PATH`).
    File(PathBuf),
    /// RFC 5424 syslog to `host:port` (`syslog+tcp://` or `syslog+udp://`).
    Syslog {
        /// TCP with octet counting (RFC 6587) or UDP (RFC 5426).
        transport: Transport,
        /// `host:port` of the collector.
        address: String,
    },
}

/// How syslog messages travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// One TCP connection, messages framed by octet counting; delivered at least once.
    Tcp,
    /// One datagram per message; best effort, as syslog over UDP always is.
    Udp,
}

/// A `[audit] forward` value that is not one of the accepted forms.
#[derive(Debug, thiserror::Error)]
#[error(
    "audit forward target {given:?} not understood: {reason} (expected \"stdout\", \"file:PATH\", \"syslog+tcp://HOST:PORT\" or \"syslog+udp://HOST:PORT\")"
)]
pub struct TargetError {
    given: String,
    reason: &'static str,
}

impl FromStr for ForwardTarget {
    type Err = TargetError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason| TargetError {
            given: text.chars().take(200).collect(),
            reason,
        };
        if text == "stdout" {
            return Ok(ForwardTarget::Stdout);
        }
        if let Some(path) = text.strip_prefix("file:") {
            if path.is_empty() {
                return Err(fail("no path after file:"));
            }
            return Ok(ForwardTarget::File(PathBuf::from(path)));
        }
        let (transport, rest) = if let Some(rest) = text.strip_prefix("syslog+tcp://") {
            (Transport::Tcp, rest)
        } else if let Some(rest) = text.strip_prefix("syslog+udp://") {
            (Transport::Udp, rest)
        } else {
            return Err(fail("unknown scheme"));
        };
        let address = rest.strip_suffix('/').unwrap_or(rest);
        match address.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0) => {
                Ok(ForwardTarget::Syslog {
                    transport,
                    address: address.to_owned(),
                })
            }
            _ => Err(fail("the address must be HOST:PORT")),
        }
    }
}

impl<'de> Deserialize<'de> for ForwardTarget {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl ForwardTarget {
    /// Makes a relative `file:` path relative to `base` (the config file's directory).
    #[must_use]
    pub fn relative_to(self, base: &Path) -> Self {
        match self {
            ForwardTarget::File(path) if path.is_relative() => ForwardTarget::File(base.join(path)),
            other => other,
        }
    }
}

impl fmt::Display for ForwardTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ForwardTarget::Stdout => f.write_str("stdout"),
            ForwardTarget::File(path) => write!(f, "file:{}", path.display()),
            ForwardTarget::Syslog {
                transport: Transport::Tcp,
                address,
            } => write!(f, "syslog+tcp://{address}"),
            ForwardTarget::Syslog {
                transport: Transport::Udp,
                address,
            } => write!(f, "syslog+udp://{address}"),
        }
    }
}

/// The `[audit]` section shared by `ca.toml` and `bastion.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// Where to stream audit records as they are written; none by default.
    #[serde(default)]
    pub forward: Option<ForwardTarget>,
    /// Whether the log is copied into the store's audit index ([`super::index`]); on by
    /// default, so `ssh-ca audit search` and `audit verify` across instances just work.
    #[serde(default = "default_index")]
    pub index: bool,
    /// How often the chain's head is recorded in the index while the log grows.
    #[serde(default = "default_head_interval")]
    pub head_interval: crate::duration::HumanDuration,
}

impl Default for AuditSection {
    fn default() -> AuditSection {
        AuditSection {
            forward: None,
            index: default_index(),
            head_interval: default_head_interval(),
        }
    }
}

impl AuditSection {
    /// How often heads are recorded when the log is indexed; `None` when it is not.
    pub fn index_heads_every(&self) -> Option<Duration> {
        self.index.then(|| self.head_interval.into())
    }
}

fn default_index() -> bool {
    true
}

fn default_head_interval() -> crate::duration::HumanDuration {
    crate::duration::HumanDuration::from_secs(60)
}

/// Counters of a running forwarder, for logs and metrics.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Records known delivered (written, and for TCP the connection stayed up).
    pub delivered: AtomicU64,
    /// Records skipped: lines over [`MAX_LINE`], or over a UDP datagram.
    pub dropped: AtomicU64,
    /// Times the collector could not be reached or went away.
    pub outages: AtomicU64,
}

/// A running forwarder thread; stops (at its next look at the log) when dropped.
#[derive(Debug)]
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    stats: Arc<ForwardStats>,
    thread: Option<JoinHandle<()>>,
}

impl Forwarder {
    /// Starts forwarding the log at `log` to `target`, resuming from the cursor beside the log.
    /// `app` names the program in syslog messages (`ssh-ca`, `ssh-bastion`).
    pub fn start(log: &Path, target: ForwardTarget, app: &str) -> io::Result<Forwarder> {
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ForwardStats::default());
        let mut worker = Worker {
            log: log.to_path_buf(),
            cursor_path: side_path(log, ".forward"),
            sink: Sink::new(target, app),
            stop: Arc::clone(&stop),
            stats: Arc::clone(&stats),
        };
        let thread = std::thread::Builder::new()
            .name("audit-forward".to_owned())
            .spawn(move || worker.run())?;
        Ok(Forwarder {
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// Starts a forwarder when a target is configured, saying so in the log.
    pub fn start_configured(
        log: &Path,
        target: Option<&ForwardTarget>,
        app: &str,
    ) -> io::Result<Option<Forwarder>> {
        let Some(target) = target else {
            return Ok(None);
        };
        tracing::info!(log = %log.display(), to = %target, "forwarding the audit log");
        Forwarder::start(log, target.clone(), app).map(Some)
    }

    /// The forwarder's counters.
    pub fn stats(&self) -> &ForwardStats {
        &self.stats
    }

    /// Stops the thread and waits for it (at most one poll interval, or one network timeout).
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Position in the log just after the last record known delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Cursor {
    offset: u64,
    pub(super) seq: u64,
}

impl Cursor {
    pub(super) fn load(path: &Path) -> Cursor {
        let Ok(text) = std::fs::read_to_string(path) else {
            return Cursor::default();
        };
        let mut parts = text.split_whitespace().map(str::parse::<u64>);
        match (parts.next(), parts.next()) {
            (Some(Ok(offset)), Some(Ok(seq))) => Cursor { offset, seq },
            _ => {
                tracing::warn!(cursor = %path.display(), "unreadable audit cursor; reading from the start of the log");
                Cursor::default()
            }
        }
    }

    pub(super) fn save(self, path: &Path) -> io::Result<()> {
        let tmp = side_path(path, ".tmp");
        std::fs::write(&tmp, format!("{} {}\n", self.offset, self.seq))?;
        std::fs::rename(&tmp, path)
    }
}

/// One record line read from the log.
#[derive(Debug)]
pub(super) struct Line {
    /// The stored JSON object, without its newline.
    pub(super) json: Vec<u8>,
    time: Option<String>,
    kind: Option<String>,
}

/// A batch of lines and where the log stands after them.
#[derive(Debug, Default)]
pub(super) struct Batch {
    pub(super) lines: Vec<Line>,
    pub(super) end: Cursor,
    dropped: u64,
}

#[derive(Deserialize)]
struct Envelope {
    seq: u64,
    time: String,
    event: String,
}

/// Reads the complete lines after `from`, up to [`MAX_BATCH_BYTES`]; a partly written last
/// line is left for the next look.
pub(super) fn read_batch(log: &Path, from: Cursor) -> io::Result<Batch> {
    let mut file = File::open(log)?;
    file.seek(SeekFrom::Start(from.offset))?;
    let mut reader = BufReader::with_capacity(64 * 1024, file);
    let mut batch = Batch {
        end: from,
        ..Batch::default()
    };
    let mut bytes = 0usize;
    let mut buf = Vec::new();
    while bytes < MAX_BATCH_BYTES {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)?;
        if read == 0 {
            break;
        }
        if buf.last() != Some(&b'\n') {
            if buf.len() <= MAX_LINE {
                break; // a line still being written
            }
            match skip_line(&mut reader)? {
                Some(rest) => {
                    batch.end.offset += (read + rest) as u64;
                    batch.dropped += 1;
                    continue;
                }
                None => break,
            }
        }
        batch.end.offset += read as u64;
        bytes += read;
        buf.pop();
        let envelope = serde_json::from_slice::<Envelope>(&buf).ok();
        if let Some(envelope) = &envelope {
            batch.end.seq = envelope.seq;
        }
        batch.lines.push(Line {
            json: buf.clone(),
            time: envelope.as_ref().map(|e| e.time.clone()),
            kind: envelope.map(|e| e.event),
        });
    }
    Ok(batch)
}

/// Reads past the rest of an over-long line; `None` when its end is not written yet.
fn skip_line(reader: &mut impl BufRead) -> io::Result<Option<usize>> {
    let mut skipped = 0;
    loop {
        let chunk = reader.fill_buf()?;
        if chunk.is_empty() {
            return Ok(None);
        }
        if let Some(at) = chunk.iter().position(|&b| b == b'\n') {
            reader.consume(at + 1);
            return Ok(Some(skipped + at + 1));
        }
        let len = chunk.len();
        reader.consume(len);
        skipped += len;
    }
}

/// Where the lines go.
#[derive(Debug)]
enum Sink {
    Stdout,
    File(PathBuf),
    Tcp {
        address: String,
        header: Header,
        stream: Option<TcpStream>,
    },
    Udp {
        address: String,
        header: Header,
        socket: Option<UdpSocket>,
    },
}

/// The parts of an RFC 5424 header that do not change per message.
#[derive(Debug, Clone)]
struct Header {
    hostname: String,
    app: String,
    pid: u32,
}

impl Header {
    fn new(app: &str) -> Header {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| printable_field(name.trim(), 255))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "-".to_owned());
        Header {
            hostname,
            app: printable_field(app, 48),
            pid: std::process::id(),
        }
    }

    /// `<PRI>1 TIME HOST APP PID MSGID - JSON` (RFC 5424; the MSGID is the event kind).
    fn message(&self, line: &Line) -> Vec<u8> {
        let time = line.time.as_deref().unwrap_or("-");
        let msgid = line
            .kind
            .as_deref()
            .map_or_else(|| "-".to_owned(), |kind| printable_field(kind, 32));
        let mut message = format!(
            "<{PRIORITY}>1 {time} {} {} {} {msgid} - ",
            self.hostname, self.app, self.pid
        )
        .into_bytes();
        message.extend_from_slice(&line.json);
        message
    }
}

/// Keeps the printable US-ASCII an RFC 5424 header field allows, at most `max` of them.
fn printable_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

impl Sink {
    fn new(target: ForwardTarget, app: &str) -> Sink {
        match target {
            ForwardTarget::Stdout => Sink::Stdout,
            ForwardTarget::File(path) => Sink::File(path),
            ForwardTarget::Syslog {
                transport: Transport::Tcp,
                address,
            } => Sink::Tcp {
                address,
                header: Header::new(app),
                stream: None,
            },
            ForwardTarget::Syslog {
                transport: Transport::Udp,
                address,
            } => Sink::Udp {
                address,
                header: Header::new(app),
                socket: None,
            },
        }
    }

    /// Whether a successful write already means delivered (TCP needs [`CONFIRM_AFTER`]).
    fn delivered_on_write(&self) -> bool {
        !matches!(self, Sink::Tcp { .. })
    }

    /// Sends the lines; returns how many were dropped as too long for the transport.
    fn send(&mut self, lines: &[Line]) -> io::Result<u64> {
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                write_json_lines(&mut out, lines)?;
                out.flush()?;
                Ok(0)
            }
            Sink::File(path) => {
                let mut file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&*path)?;
                let mut bytes = Vec::new();
                write_json_lines(&mut bytes, lines)?;
                file.write_all(&bytes)?;
                file.sync_data()?;
                Ok(0)
            }
            Sink::Tcp {
                address,
                header,
                stream,
            } => {
                let mut framed = Vec::new();
                for line in lines {
                    let message = header.message(line);
                    framed.extend_from_slice(format!("{} ", message.len()).as_bytes());
                    framed.extend_from_slice(&message);
                }
                let connection = match stream {
                    Some(connection) => connection,
                    None => stream.insert(connect_tcp(address)?),
                };
                if let Err(err) = connection.write_all(&framed) {
                    *stream = None;
                    return Err(err);
                }
                Ok(0)
            }
            Sink::Udp {
                address,
                header,
                socket,
            } => {
                let socket = match socket {
                    Some(socket) => socket,
                    None => {
                        let bound = UdpSocket::bind(("0.0.0.0", 0))?;
                        bound.connect(address.as_str())?;
                        socket.insert(bound)
                    }
                };
                let mut dropped = 0;
                for line in lines {
                    let message = header.message(line);
                    if message.len() > MAX_DATAGRAM {
                        dropped += 1;
                        continue;
                    }
                    socket.send(&message)?;
                }
                Ok(dropped)
            }
        }
    }

    /// For TCP: whether the connection is still open (a collector never sends, so a readable
    /// socket means it closed or reset). Other sinks have nothing to lose in flight.
    fn still_open(&mut self) -> bool {
        let Sink::Tcp { stream, .. } = self else {
            return true;
        };
        let Some(connection) = stream else {
            return false;
        };
        let open = connection.set_nonblocking(true).is_ok()
            && {
                let mut probe = [0u8; 1];
                matches!(connection.peek(&mut probe), Err(err) if err.kind() == io::ErrorKind::WouldBlock)
            };
        if open && connection.set_nonblocking(false).is_ok() {
            true
        } else {
            *stream = None;
            false
        }
    }

    /// Forgets a connection that failed, so the next send reconnects.
    fn reset(&mut self) {
        match self {
            Sink::Tcp { stream, .. } => *stream = None,
            Sink::Udp { socket, .. } => *socket = None,
            Sink::Stdout | Sink::File(_) => {}
        }
    }
}

fn write_json_lines(out: &mut impl Write, lines: &[Line]) -> io::Result<()> {
    for line in lines {
        out.write_all(&line.json)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

fn connect_tcp(address: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "address resolves to nothing");
    for candidate in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&candidate, NETWORK_TIMEOUT) {
            Ok(stream) => {
                stream.set_write_timeout(Some(NETWORK_TIMEOUT))?;
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// The forwarder thread's state.
struct Worker {
    log: PathBuf,
    cursor_path: PathBuf,
    sink: Sink,
    stop: Arc<AtomicBool>,
    stats: Arc<ForwardStats>,
}

impl Worker {
    fn run(&mut self) {
        let mut delivered = self.starting_cursor();
        // Batches written but not yet confirmed (TCP), oldest first, with when they were sent.
        let mut in_flight: VecDeque<(Instant, Cursor, u64)> = VecDeque::new();
        let mut sent = delivered;
        let mut backoff = Duration::from_millis(100);
        let mut outage_since: Option<Instant> = None;
        while !self.stop.load(Ordering::Relaxed) {
            if !in_flight.is_empty() {
                if self.sink.still_open() {
                    while let Some(&(at, cursor, count)) = in_flight.front() {
                        if at.elapsed() < CONFIRM_AFTER {
                            break;
                        }
                        in_flight.pop_front();
                        delivered = cursor;
                        self.stats.delivered.fetch_add(count, Ordering::Relaxed);
                        self.save(delivered);
                    }
                } else {
                    tracing::warn!(
                        unconfirmed = in_flight.len(),
                        "audit collector closed the connection; sending again from seq {}",
                        delivered.seq + 1
                    );
                    self.stats.outages.fetch_add(1, Ordering::Relaxed);
                    in_flight.clear();
                    sent = delivered;
                    outage_since.get_or_insert_with(Instant::now);
                }
            }
            let batch = match read_batch(&self.log, sent) {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(log = %self.log.display(), "audit forward cannot read the log: {err}");
                    std::thread::sleep(MAX_BACKOFF);
                    continue;
                }
            };
            if batch.dropped > 0 {
                self.report_dropped(
                    batch.dropped,
                    "record line longer than the forwarding limit",
                );
            }
            if batch.end == sent {
                std::thread::sleep(POLL);
                continue;
            }
            let count = batch.lines.len() as u64;
            if in_flight.is_empty() {
                // Everything sent is confirmed: a connection closed meanwhile is just replaced.
                self.sink.still_open();
            }
            match self.sink.send(&batch.lines) {
                Ok(dropped) => {
                    if dropped > 0 {
                        self.report_dropped(dropped, "message longer than a UDP datagram");
                    }
                    if let Some(since) = outage_since.take() {
                        tracing::info!(
                            "audit forwarding resumed after {:.1} s",
                            since.elapsed().as_secs_f64()
                        );
                    }
                    backoff = Duration::from_millis(100);
                    sent = batch.end;
                    if self.sink.delivered_on_write() {
                        delivered = sent;
                        self.stats.delivered.fetch_add(count, Ordering::Relaxed);
                        self.save(delivered);
                    } else {
                        in_flight.push_back((Instant::now(), sent, count));
                    }
                }
                Err(err) => {
                    if outage_since.is_none() {
                        tracing::warn!("audit forwarding stalled, will retry: {err}");
                        self.stats.outages.fetch_add(1, Ordering::Relaxed);
                        outage_since = Some(Instant::now());
                    }
                    self.sink.reset();
                    in_flight.clear();
                    sent = delivered;
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The saved cursor, unless the log is now shorter than it (replaced): then the start.
    fn starting_cursor(&self) -> Cursor {
        let cursor = Cursor::load(&self.cursor_path);
        let len = std::fs::metadata(&self.log).map_or(0, |m| m.len());
        if cursor.offset > len {
            tracing::warn!(
                log = %self.log.display(),
                "the audit log is shorter than the forward cursor (replaced?); forwarding it from the start"
            );
            return Cursor::default();
        }
        cursor
    }

    fn save(&self, cursor: Cursor) {
        if let Err(err) = cursor.save(&self.cursor_path) {
            tracing::warn!(cursor = %self.cursor_path.display(), "cannot save the audit forward cursor: {err}");
        }
    }

    fn report_dropped(&self, count: u64, why: &str) {
        let total = self.stats.dropped.fetch_add(count, Ordering::Relaxed) + count;
        tracing::warn!(dropped = count, total, "audit records not forwarded: {why}");
    }
}

#[cfg(test)]
mod tests;
