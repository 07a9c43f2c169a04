//! A session's recording writer: one dedicated thread per session owns the [`Recorder`]
//! (its files, hash chain and `fdatasync`s); the relay only enqueues.
//!
//! The relay's tokio tasks never touch the disk and never wait for a lock held across I/O:
//! they push an `Op` onto the session's queue and go on. The queue is bounded in bytes
//! ([`Backlog`]): past its limit the pump of *that* session's channels stops reading (it
//! awaits [`Backlog::room`]), so a recording disk that blocks slows only its own session,
//! and memory stays bounded (the limit plus one SSH packet per channel direction). Ops that
//! do not carry data (window changes, exits, channel opens and closes) are never waited on;
//! past twice the limit they are refused, which counts as a recording failure.
//!
//! Failures are found by the writer and handed back through `Status`: under
//! `on_failure = "terminate"` the next enqueue (or the one-second flush) returns the error
//! and the session is ended; under `"continue"` the recorder degrades and the flush reports
//! it once for `recording.degraded`.
//!
//! A dedicated thread rather than a `spawn_blocking` loop: a loop would hold a thread of
//! tokio's blocking pool for the session's whole life, and a pool full of long-lived
//! sessions would starve every other `spawn_blocking` (session starts, seals).

use jitssh_core::metrics::names;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::{
    ChannelKind, ChannelRecorder, OnFailure, QuotaHit, Recorder, RecordingError, SessionSummary,
    filexfer::FileRecord,
};

/// Default bytes a session may queue for its recording writer (`[limits] recording_queue`).
pub const DEFAULT_RECORDING_QUEUE: usize = 4 << 20;

/// Why a session's recording cannot go on (or, under `continue`, why it degraded).
///
/// Cheap to clone: the writer keeps the first failure and hands it to every later call. Turned
/// into text once, where the session audits it or tells the person.
#[derive(Debug, Clone, thiserror::Error)]
pub enum WriteError {
    /// The recorder failed: the disk (full, read-only, gone), or the seal.
    #[error(transparent)]
    Recording(Arc<RecordingError>),
    /// The queue stayed full past twice its limit: the disk is not keeping up.
    #[error("the recording disk is not keeping up (queue full)")]
    QueueFull,
    /// The writer thread is gone (it panicked).
    #[error("the recording writer stopped")]
    Stopped,
    /// The writer thread could not be started.
    #[error("cannot start the recording writer: {0}")]
    Spawn(Arc<std::io::Error>),
}

impl WriteError {
    /// True when the recordings disk is full (as opposed to any other failure).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, WriteError::Recording(e) if e.is_disk_full())
    }
}

impl From<RecordingError> for WriteError {
    fn from(err: RecordingError) -> WriteError {
        WriteError::Recording(Arc::new(err))
    }
}

/// What an op costs in the queue beyond its data (its own size, roughly).
const OP_OVERHEAD: usize = 64;

/// Stack of a writer thread: the recorder's calls are shallow.
const WRITER_STACK: usize = 512 * 1024;

/// Bytes queued for a session's writer, and a way to wait until they drop below the limit.
#[derive(Debug)]
pub struct Backlog {
    queued: AtomicUsize,
    limit: usize,
    room: Notify,
}

impl Backlog {
    fn new(limit: usize) -> Backlog {
        Backlog {
            queued: AtomicUsize::new(0),
            limit: limit.max(1),
            room: Notify::new(),
        }
    }

    /// Returns once fewer than the limit's bytes are queued (at once if so already).
    pub async fn room(&self) {
        loop {
            // Created before the check, so a release in between still wakes it.
            let notified = self.room.notified();
            if self.queued.load(Ordering::Acquire) < self.limit {
                return;
            }
            notified.await;
        }
    }

    /// Bytes queued now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn charge(&self, cost: usize) {
        self.queued.fetch_add(cost, Ordering::AcqRel);
        metrics::gauge!(names::RECORDING_QUEUED).increment(cost as f64);
    }

    fn release(&self, cost: usize) {
        // Saturating: a dead writer's stop resets the count while sends may be in flight.
        let before = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                Some(q.saturating_sub(cost))
            })
            .unwrap_or_else(|q| q);
        metrics::gauge!(names::RECORDING_QUEUED).decrement(before.min(cost) as f64);
        if before.saturating_sub(cost) < self.limit {
            self.room.notify_waiters();
        }
    }
}

/// Which stream of a channel bytes belong to.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// What the person typed or sent.
    In,
    /// What the target wrote to stdout.
    Out,
    /// What the target wrote to stderr.
    Err,
}

/// One thing for the writer to do.
enum Op {
    Open {
        handle: u64,
        channel: u32,
        kind: ChannelKind,
    },
    Data {
        handle: u64,
        stream: Stream,
        data: Vec<u8>,
    },
    Resize {
        handle: u64,
        cols: u16,
        rows: u16,
    },
    ExitStatus {
        handle: u64,
        status: u32,
    },
    ExitSignal {
        handle: u64,
        signal: String,
    },
    Files {
        handle: u64,
        records: Vec<FileRecord>,
    },
    Close {
        handle: u64,
    },
    Flush,
    Finish {
        reason: String,
        reply: mpsc::SyncSender<SessionSummary>,
    },
}

impl Op {
    fn cost(&self) -> usize {
        match self {
            Op::Data { data, .. } => data.len() + OP_OVERHEAD,
            Op::ExitSignal { signal, .. } => signal.len() + OP_OVERHEAD,
            Op::Files { records, .. } => records
                .iter()
                .map(|r| {
                    OP_OVERHEAD
                        + r.path.as_ref().map_or(0, String::len)
                        + r.to.as_ref().map_or(0, String::len)
                        + r.status.len()
                })
                .sum(),
            _ => OP_OVERHEAD,
        }
    }
}

/// What the writer found, for the relay side.
#[derive(Debug, Default)]
struct Status {
    /// Under `terminate`: the failure that ends the session.
    failure: Option<WriteError>,
    /// Under `continue`: the failure that degraded the recording, until taken.
    degraded: Option<WriteError>,
    /// The quota reached, until taken.
    quota: Option<QuotaHit>,
}

/// The relay's end of a session's writer. Cheap to clone; every call but
/// [`Writer::finish`] returns at once.
#[derive(Clone)]
pub struct Writer {
    inner: Arc<Inner>,
}

struct Inner {
    /// The queue's sending end; taken by [`Writer::finish`]. The thread does not hold it,
    /// so a session dropped without finishing ends the thread.
    ops: Mutex<Option<mpsc::Sender<(Op, usize)>>>,
    shared: Arc<Shared>,
    next_handle: AtomicUsize,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// What the relay side and the writer thread share.
struct Shared {
    backlog: Arc<Backlog>,
    status: Mutex<Status>,
    on_failure: OnFailure,
    flush_queued: AtomicBool,
}

impl Writer {
    /// Starts the writer thread of `recorder` with a queue of `limit` bytes.
    pub fn spawn(
        recorder: Recorder,
        on_failure: OnFailure,
        limit: usize,
    ) -> Result<Writer, WriteError> {
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            backlog: Arc::new(Backlog::new(limit)),
            status: Mutex::new(Status::default()),
            on_failure,
            flush_queued: AtomicBool::new(false),
        });
        let inner = Arc::new(Inner {
            ops: Mutex::new(Some(tx)),
            shared: Arc::clone(&shared),
            next_handle: AtomicUsize::new(1),
            thread: Mutex::new(None),
        });
        let worker = shared;
        let thread = std::thread::Builder::new()
            .name("recording".into())
            .stack_size(WRITER_STACK)
            .spawn(move || run(recorder, rx, &worker))
            .map_err(|e| WriteError::Spawn(Arc::new(e)))?;
        *lock(&inner.thread) = Some(thread);
        Ok(Writer { inner })
    }

    /// The session's queue, for the pump to wait on.
    pub fn backlog(&self) -> Arc<Backlog> {
        Arc::clone(&self.inner.shared.backlog)
    }

    /// Opens a channel's recording; returns its handle for later ops.
    pub fn open(&self, channel: u32, kind: ChannelKind) -> Result<u64, WriteError> {
        let handle = self.inner.next_handle.fetch_add(1, Ordering::Relaxed) as u64;
        self.send(
            Op::Open {
                handle,
                channel,
                kind,
            },
            false,
        )?;
        Ok(handle)
    }

    /// Queues bytes of one stream of channel `handle`.
    pub fn data(&self, handle: u64, stream: Stream, data: &[u8]) -> Result<(), WriteError> {
        self.send(
            Op::Data {
                handle,
                stream,
                data: data.to_vec(),
            },
            true,
        )
    }

    /// Queues a window change of channel `handle`.
    pub fn resize(&self, handle: u64, cols: u16, rows: u16) -> Result<(), WriteError> {
        self.send(Op::Resize { handle, cols, rows }, false)
    }

    /// Queues channel `handle`'s exit status.
    pub fn exit_status(&self, handle: u64, status: u32) -> Result<(), WriteError> {
        self.send(Op::ExitStatus { handle, status }, false)
    }

    /// Queues the signal that ended channel `handle`.
    pub fn exit_signal(&self, handle: u64, signal: &str) -> Result<(), WriteError> {
        self.send(
            Op::ExitSignal {
                handle,
                signal: signal.to_owned(),
            },
            false,
        )
    }

    /// Queues the per-file audit records of transfer channel `handle` (journaled as
    /// `transfer.file`). Counted as data: a transfer's records wait with its bytes.
    pub fn files(&self, handle: u64, records: Vec<FileRecord>) -> Result<(), WriteError> {
        if records.is_empty() {
            return Ok(());
        }
        self.send(Op::Files { handle, records }, true)
    }

    /// Queues the end of channel `handle` (its file is synced and closed).
    pub fn close(&self, handle: u64) -> Result<(), WriteError> {
        self.send(Op::Close { handle }, false)
    }

    /// Asks for a write-out and `fdatasync` (one at a time: a flush still queued is not
    /// doubled) and reports what the writer found so far: `Ok(Some(why))` once when the
    /// recording degraded, `Err` when the session must end.
    pub fn flush(&self) -> Result<Option<WriteError>, WriteError> {
        if !self.inner.shared.flush_queued.swap(true, Ordering::AcqRel) {
            self.send(Op::Flush, false)?;
        }
        let mut status = lock(&self.inner.shared.status);
        if let Some(why) = &status.failure {
            return Err(why.clone());
        }
        Ok(status.degraded.take())
    }

    /// The quota reached, once.
    pub fn take_quota(&self) -> Option<QuotaHit> {
        lock(&self.inner.shared.status).quota.take()
    }

    /// Seals the recording after everything queued is written. Blocks until the writer is
    /// done: call it off the async workers. `None` if the writer is gone (it panicked).
    pub fn finish(&self, reason: &str) -> Option<SessionSummary> {
        let (reply, summary) = mpsc::sync_channel(1);
        let sender = lock(&self.inner.ops).take()?;
        let op = Op::Finish {
            reason: reason.to_owned(),
            reply,
        };
        let cost = op.cost();
        self.inner.shared.backlog.charge(cost);
        sender.send((op, cost)).ok()?;
        drop(sender);
        let summary = summary.recv().ok();
        if let Some(thread) = lock(&self.inner.thread).take() {
            let _ = thread.join();
        }
        summary
    }

    /// Queues `op`; `data` ops may pass the limit (the pump then waits for room), the others
    /// are refused past twice the limit (a writer that long stuck has failed).
    fn send(&self, op: Op, data: bool) -> Result<(), WriteError> {
        if let Some(why) = &lock(&self.inner.shared.status).failure {
            return Err(why.clone());
        }
        let backlog = &self.inner.shared.backlog;
        if !data && backlog.queued() >= backlog.limit.saturating_mul(2) {
            return self.failed(WriteError::QueueFull);
        }
        let ops = lock(&self.inner.ops);
        let Some(sender) = ops.as_ref() else {
            // Finished: late ops of a closing channel are not recorded.
            return Ok(());
        };
        let cost = op.cost();
        backlog.charge(cost);
        if sender.send((op, cost)).is_err() {
            backlog.release(cost);
            drop(ops);
            return self.failed(WriteError::Stopped);
        }
        Ok(())
    }

    /// A failure found on the relay side, handled by the policy.
    fn failed(&self, why: WriteError) -> Result<(), WriteError> {
        let mut status = lock(&self.inner.shared.status);
        match self.inner.shared.on_failure {
            OnFailure::Terminate => {
                status.failure.get_or_insert(why.clone());
                Err(why)
            }
            OnFailure::Continue => {
                status.degraded.get_or_insert(why);
                Ok(())
            }
        }
    }
}

/// The writer thread: runs ops in order until the session is finished or dropped.
fn run(recorder: Recorder, ops: mpsc::Receiver<(Op, usize)>, inner: &Shared) {
    let _stopped = Stopped(inner);
    let recorded = metrics::counter!(names::RECORDING_BYTES);
    let failures = metrics::counter!(names::RECORDING_FAILURES);
    let mut channels: HashMap<u64, ChannelRecorder> = HashMap::new();
    while let Ok((op, cost)) = ops.recv() {
        let result = match op {
            Op::Finish { reason, reply } => {
                channels.clear();
                let summary = recorder.finish(&reason);
                inner.backlog.release(cost);
                let _ = reply.send(summary);
                return;
            }
            op => {
                let stream_bytes = match &op {
                    Op::Data { data, .. } => data.len() as u64,
                    _ => 0,
                };
                let result = apply(&recorder, &mut channels, op, inner);
                if result.is_ok() {
                    recorded.increment(stream_bytes);
                }
                result
            }
        };
        inner.backlog.release(cost);
        let mut status = lock(&inner.status);
        if let Err(err) = result {
            failures.increment(1);
            match inner.on_failure {
                OnFailure::Terminate => {
                    status.failure.get_or_insert_with(|| err.into());
                }
                OnFailure::Continue => {
                    status.degraded.get_or_insert_with(|| err.into());
                }
            }
        }
        if let Some(err) = recorder.take_degraded() {
            failures.increment(1);
            status.degraded.get_or_insert_with(|| err.into());
        }
        if let Some(hit) = recorder.take_quota() {
            status.quota = Some(hit);
        }
    }
    // Dropped without finishing: the recorder writes what it has, unsealed.
}

/// When the writer thread ends (finished, dropped, or a panic), nobody waits for room any
/// more: a relay blocked on a dead writer would hang its channels.
struct Stopped<'a>(&'a Shared);

impl Drop for Stopped<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let why = WriteError::Stopped;
            let mut status = lock(&self.0.status);
            match self.0.on_failure {
                OnFailure::Terminate => status.failure.get_or_insert(why),
                OnFailure::Continue => status.degraded.get_or_insert(why),
            };
        }
        let dropped = self.0.backlog.queued.swap(0, Ordering::AcqRel);
        metrics::gauge!(names::RECORDING_QUEUED).decrement(dropped as f64);
        self.0.backlog.room.notify_waiters();
    }
}

fn apply(
    recorder: &Recorder,
    channels: &mut HashMap<u64, ChannelRecorder>,
    op: Op,
    inner: &Shared,
) -> Result<(), RecordingError> {
    match op {
        Op::Open {
            handle,
            channel,
            kind,
        } => {
            channels.insert(handle, recorder.channel(channel, kind)?);
            Ok(())
        }
        Op::Data {
            handle,
            stream,
            data,
        } => match channels.get_mut(&handle) {
            Some(ch) => match stream {
                Stream::In => ch.input(&data),
                Stream::Out => ch.output(&data),
                Stream::Err => ch.stderr(&data),
            },
            None => Ok(()),
        },
        Op::Resize { handle, cols, rows } => match channels.get_mut(&handle) {
            Some(ch) => ch.resize(cols, rows),
            None => Ok(()),
        },
        Op::ExitStatus { handle, status } => match channels.get_mut(&handle) {
            Some(ch) => ch.exit_status(status),
            None => Ok(()),
        },
        Op::ExitSignal { handle, signal } => match channels.get_mut(&handle) {
            Some(ch) => ch.exit_signal(&signal),
            None => Ok(()),
        },
        Op::Files { handle, records } => match channels.get_mut(&handle) {
            Some(ch) => ch.files(&records),
            None => Ok(()),
        },
        Op::Close { handle } => match channels.remove(&handle) {
            Some(ch) => ch.finish().map(|_| ()),
            None => Ok(()),
        },
        Op::Flush => {
            inner.flush_queued.store(false, Ordering::Release);
            recorder.flush()
        }
        Op::Finish { .. } => Ok(()),
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::Backlog;
    use std::time::Duration;

    /// Past its limit the queue makes the relay wait, and lets it go once the writer drains.
    #[tokio::test]
    async fn a_full_backlog_waits_until_the_writer_drains_it() {
        let backlog = std::sync::Arc::new(Backlog::new(100));
        backlog.charge(60);
        tokio::time::timeout(Duration::from_secs(1), backlog.room())
            .await
            .expect("room below the limit");
        backlog.charge(60);
        let waiting = tokio::spawn({
            let backlog = backlog.clone();
            async move { backlog.room().await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room at 120 of 100 bytes");
        backlog.release(60);
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("room after the drain")
            .expect("task");
        backlog.release(1000);
        assert_eq!(backlog.queued(), 0, "never below zero");
    }
}
