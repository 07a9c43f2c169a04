//! Moving bytes between a person's channel and the matching target channel, in both
//! directions, with bounded memory.
//!
//! Each direction holds at most a fixed byte budget in hand ([`run`]'s `buffer`): a write
//! waits for the receiving side's channel window (`ChannelWriteHalf::data_bytes`), the reader
//! goes on reading until the budget is used up, and then stops, so russh's bounded
//! per-channel queue fills and the sender's TCP connection is no longer read. A client that
//! stops reading therefore stalls its target instead of growing the bastion's memory.
//!
//! Requests that need a reply (pty, exec, subsystem, ...) are forwarded by the channel's
//! answer task ([`crate::answers`]), which awaits the target's answer; the target's
//! `SUCCESS`/`FAILURE` come back on the target channel and are routed to that waiting task
//! through [`Replies`].

use jitssh_core::metrics::names;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig, client, server};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

pub use crate::recording::Backlog;

/// Why a [`Tap`] could not observe a channel's traffic. The channel is closed; a recording
/// failure also ends the session (`the recording failed (...)`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TapError {
    /// The recording cannot be written (the recorder's reason: disk, quota, writer gone).
    #[error("{0}")]
    Recording(String),
    /// A task panicked while holding the channel's recorder.
    #[error("recorder lock poisoned")]
    Poisoned,
    /// A transfer's protocol could not be audited (malformed, or past a bound): this
    /// channel ends, the session goes on.
    #[error("{0}")]
    Protocol(String),
}

impl From<String> for TapError {
    fn from(why: String) -> TapError {
        TapError::Recording(why)
    }
}

/// Observes a channel's traffic (the session recorder). A failure ends the channel.
pub trait Tap: Send {
    /// Bytes from the person to the target.
    fn input(&mut self, _data: &[u8]) -> Result<(), TapError> {
        Ok(())
    }
    /// Bytes from the target's stdout to the person.
    fn output(&mut self, _data: &[u8]) -> Result<(), TapError> {
        Ok(())
    }
    /// Bytes from the target's stderr to the person.
    fn stderr(&mut self, _data: &[u8]) -> Result<(), TapError> {
        Ok(())
    }
    /// The remote command's exit status.
    fn exit_status(&mut self, _status: u32) -> Result<(), TapError> {
        Ok(())
    }
    /// The remote command was killed by a signal.
    fn exit_signal(&mut self, _signal: &str) -> Result<(), TapError> {
        Ok(())
    }
    /// The person's terminal changed size.
    fn resize(&mut self, _cols: u32, _rows: u32) -> Result<(), TapError> {
        Ok(())
    }
    /// The channel closed.
    fn finish(&mut self) -> Result<(), TapError> {
        Ok(())
    }
    /// The queue this tap hands its bytes to, if it has one: after each recorded message the
    /// pump waits until it has room, so a slow recording slows its own channels only.
    fn backlog(&self) -> Option<Arc<Backlog>> {
        None
    }
}

/// A tap that observes nothing (forwarded ports, agent and X11 channels).
pub struct NoTap;
impl Tap for NoTap {}

/// A shared, replaceable tap: both directions of a channel report to the same recorder, and
/// the recorder is attached once the channel says what it is (shell, exec, subsystem).
pub type SharedTap = Arc<Mutex<Box<dyn Tap>>>;

/// A shared tap that observes nothing yet.
pub fn no_tap() -> SharedTap {
    Arc::new(Mutex::new(Box::new(NoTap)))
}

/// Replies the target owes for requests forwarded with `want_reply`, oldest first (SSH
/// answers channel requests in order).
#[derive(Default)]
pub struct Replies {
    waiting: Mutex<VecDeque<oneshot::Sender<bool>>>,
}

impl Replies {
    /// Registers a request about to be sent; the receiver yields the target's answer, or an
    /// error if the channel ends first.
    pub fn expect(&self) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        self.lock().push_back(tx);
        rx
    }

    fn answer(&self, ok: bool) {
        if let Some(waiter) = self.lock().pop_front() {
            let _ = waiter.send(ok);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<oneshot::Sender<bool>>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How a channel pair ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// Closed normally by one side.
    Closed,
    /// The tap (recorder) failed; the channel was closed.
    TapFailed(TapError),
}

/// The person's side of a channel pair.
pub struct UserSide {
    /// Reads what the person sends.
    pub read: ChannelReadHalf,
    /// Writes to the person (window-aware).
    pub write: Arc<ChannelWriteHalf<server::Msg>>,
    /// The channel id on the person's connection.
    pub id: ChannelId,
    /// The person's connection (exit status and signals go through it, in order with data).
    pub handle: server::Handle,
}

/// The target's side of a channel pair.
pub struct TargetSide {
    /// Reads what the target sends.
    pub read: ChannelReadHalf,
    /// Writes to the target (window-aware).
    pub write: Arc<ChannelWriteHalf<client::Msg>>,
    /// A session channel, whose exit status must reach the person before its EOF: sshd
    /// usually sends EOF first, and clients such as PuTTY close the channel as soon as both
    /// sides sent EOF, which would lose a status still on its way.
    pub exits: bool,
}

/// Runs both directions until one side closes the channel (or a tap fails), then closes the
/// other side. Each direction holds at most `buffer` bytes in hand. Returns how it ended.
pub async fn run(
    user: UserSide,
    target: TargetSide,
    replies: Arc<Replies>,
    tap: SharedTap,
    buffer: usize,
) -> Ended {
    let UserSide {
        read: user_read,
        write: user_write,
        id: user_id,
        handle,
    } = user;
    let TargetSide {
        read: target_read,
        write: target_write,
        exits,
    } = target;
    let (up_queue, up_items) = relay(buffer);
    let (down_queue, down_items) = relay(buffer);
    let up = async {
        let (ended, ()) = tokio::join!(
            read_user(user_read, up_queue, &tap),
            write_target(up_items, &target_write)
        );
        ended
    };
    let down = async {
        let (ended, ()) = tokio::join!(
            read_target(target_read, down_queue, &replies, &tap, exits),
            write_user(down_items, &user_write, user_id, &handle)
        );
        ended
    };
    let ended = tokio::select! {
        ended = up => ended,
        ended = down => ended,
    };
    if let Ended::TapFailed(_) = &ended {
        let _ = target_write.close().await;
        let _ = user_write.close().await;
    }
    ended
}

/// One direction's hand-over from reader to writer, bounded in bytes.
///
/// The reader keeps reading its side while the writer waits for the other side's window,
/// up to the byte budget. Without it, a reader blocked on one connection's window would
/// block that connection's whole russh event loop (its per-channel queue is awaited there),
/// which would also stop the window adjustments the *other* direction needs: a full-duplex
/// stream (`cat`, a big paste echoed by a terminal) would deadlock. The budget only has to
/// cover the other side's window while one event loop waits, so it stays a few MiB.
struct Queue {
    items: mpsc::UnboundedSender<(ChannelMsg, OwnedSemaphorePermit)>,
    budget: Arc<Semaphore>,
    limit: usize,
}

type Items = mpsc::UnboundedReceiver<(ChannelMsg, OwnedSemaphorePermit)>;

fn relay(buffer: usize) -> (Queue, Items) {
    let limit = buffer.clamp(1, Semaphore::MAX_PERMITS);
    let (items, received) = mpsc::unbounded_channel();
    let queue = Queue {
        items,
        budget: Arc::new(Semaphore::new(limit)),
        limit,
    };
    (queue, received)
}

impl Queue {
    /// Hands `msg` to the writer once the budget has room for it. `false` when the writer
    /// is gone.
    async fn push(&self, msg: ChannelMsg) -> bool {
        let cost = cost(&msg, self.limit);
        let Ok(permit) = self
            .budget
            .clone()
            .acquire_many_owned(u32::try_from(cost).unwrap_or(u32::MAX))
            .await
        else {
            return false;
        };
        self.items.send((msg, permit)).is_ok()
    }
}

/// What `msg` takes of a direction's byte budget of `limit`: its payload (at least one,
/// so control messages are bounded too, and at most the whole budget, so one large message
/// cannot wait forever).
fn cost(msg: &ChannelMsg, limit: usize) -> usize {
    match msg {
        ChannelMsg::Data { data } | ChannelMsg::ExtendedData { data, .. } => data.len(),
        _ => 1,
    }
    .clamp(1, limit.max(1))
}

fn tap_call(
    tap: &SharedTap,
    f: impl FnOnce(&mut dyn Tap) -> Result<(), TapError>,
) -> Result<(), TapError> {
    let mut guard = tap.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.as_mut())
}

/// Waits until the tap's recording queue has room (back-pressure on this channel only).
async fn tap_room(tap: &SharedTap) {
    let backlog = tap.lock().unwrap_or_else(|p| p.into_inner()).backlog();
    if let Some(backlog) = backlog {
        backlog.room().await;
    }
}

/// Reads the person's channel: data (recorded), EOF and close go to the target's writer.
async fn read_user(mut from: ChannelReadHalf, to: Queue, tap: &SharedTap) -> Ended {
    while let Some(msg) = from.wait().await {
        match &msg {
            ChannelMsg::Data { data } => {
                if let Err(why) = tap_call(tap, |t| t.input(data)) {
                    return Ended::TapFailed(why);
                }
                tap_room(tap).await;
            }
            ChannelMsg::ExtendedData { .. } | ChannelMsg::Eof => {}
            ChannelMsg::Close => break,
            // Requests are forwarded by the handler, which needs to answer them in order.
            _ => continue,
        }
        if !to.push(msg).await {
            return Ended::Closed;
        }
    }
    to.push(ChannelMsg::Close).await;
    Ended::Closed
}

/// Writes to the target's channel, waiting for its window.
async fn write_target(mut items: Items, to: &ChannelWriteHalf<client::Msg>) {
    let relayed = metrics::counter!(names::BASTION_RELAYED, "direction" => "to_target");
    while let Some((msg, _permit)) = items.recv().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                relayed.increment(data.len() as u64);
                to.data_bytes(data).await
            }
            ChannelMsg::ExtendedData { data, ext } => {
                relayed.increment(data.len() as u64);
                to.extended_data_bytes(ext, data).await
            }
            ChannelMsg::Eof => to.eof().await,
            _ => break,
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = to.close().await;
}

/// Reads the target's channel: output (recorded), exit status and signals, EOF and close go
/// to the person's writer; answers to forwarded requests go to the waiting handler at once.
/// With `exits`, an EOF waits for the exit status (or signal, or close) and follows it.
async fn read_target(
    mut from: ChannelReadHalf,
    to: Queue,
    replies: &Replies,
    tap: &SharedTap,
    exits: bool,
) -> Ended {
    let mut eof_held = false;
    let mut exited = false;
    while let Some(msg) = from.wait().await {
        let ends = matches!(
            msg,
            ChannelMsg::ExitStatus { .. } | ChannelMsg::ExitSignal { .. }
        );
        if exits && !exited && matches!(msg, ChannelMsg::Eof) {
            eof_held = true;
            continue;
        }
        let recorded = match &msg {
            ChannelMsg::Data { data } => tap_call(tap, |t| t.output(data)),
            ChannelMsg::ExtendedData { data, ext: 1 } => tap_call(tap, |t| t.stderr(data)),
            ChannelMsg::ExitStatus { exit_status } => {
                tap_call(tap, |t| t.exit_status(*exit_status))
            }
            ChannelMsg::ExitSignal { signal_name, .. } => {
                let name = signal_text(signal_name);
                tap_call(tap, |t| t.exit_signal(&name))
            }
            ChannelMsg::Success => {
                replies.answer(true);
                continue;
            }
            ChannelMsg::Failure => {
                replies.answer(false);
                continue;
            }
            ChannelMsg::Close => break,
            ChannelMsg::ExtendedData { .. } | ChannelMsg::Eof | ChannelMsg::XonXoff { .. } => {
                Ok(())
            }
            _ => continue,
        };
        if let Err(why) = recorded {
            return Ended::TapFailed(why);
        }
        tap_room(tap).await;
        if !to.push(msg).await {
            return Ended::Closed;
        }
        if ends {
            exited = true;
            if std::mem::take(&mut eof_held) && !to.push(ChannelMsg::Eof).await {
                return Ended::Closed;
            }
        }
    }
    if eof_held {
        to.push(ChannelMsg::Eof).await;
    }
    to.push(ChannelMsg::Close).await;
    Ended::Closed
}

/// Writes to the person's channel, waiting for its window; exit status and signals go
/// through the connection handle, in order with the data.
async fn write_user(
    mut items: Items,
    to: &ChannelWriteHalf<server::Msg>,
    id: ChannelId,
    handle: &server::Handle,
) {
    let relayed = metrics::counter!(names::BASTION_RELAYED, "direction" => "from_target");
    while let Some((msg, _permit)) = items.recv().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                relayed.increment(data.len() as u64);
                to.data_bytes(data).await.is_ok()
            }
            ChannelMsg::ExtendedData { data, ext } => {
                relayed.increment(data.len() as u64);
                to.extended_data_bytes(ext, data).await.is_ok()
            }
            ChannelMsg::Eof => to.eof().await.is_ok(),
            ChannelMsg::ExitStatus { exit_status } => {
                handle.exit_status_request(id, exit_status).await.is_ok()
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => handle
                .exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag)
                .await
                .is_ok(),
            ChannelMsg::XonXoff { client_can_do } => {
                handle.xon_xoff_request(id, client_can_do).await.is_ok()
            }
            _ => false,
        };
        if !sent {
            break;
        }
    }
    let _ = to.close().await;
}

/// The signal's name as SSH spells it (`TERM`, `KILL`, ...).
pub fn signal_text(signal: &Sig) -> String {
    match signal {
        Sig::ABRT => "ABRT".into(),
        Sig::ALRM => "ALRM".into(),
        Sig::FPE => "FPE".into(),
        Sig::HUP => "HUP".into(),
        Sig::ILL => "ILL".into(),
        Sig::INT => "INT".into(),
        Sig::KILL => "KILL".into(),
        Sig::PIPE => "PIPE".into(),
        Sig::QUIT => "QUIT".into(),
        Sig::SEGV => "SEGV".into(),
        Sig::TERM => "TERM".into(),
        Sig::USR1 => "USR1".into(),
        Sig::Custom(name) => crate::names::printable(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_reach_the_requests_in_the_order_they_were_sent() {
        let replies = Replies::default();
        let mut first = replies.expect();
        let mut second = replies.expect();
        replies.answer(false);
        replies.answer(true);
        assert_eq!(first.try_recv(), Ok(false));
        assert_eq!(second.try_recv(), Ok(true));
        // An answer nobody waits for (the target's own) is dropped.
        replies.answer(true);
        let mut third = replies.expect();
        assert!(third.try_recv().is_err(), "no answer yet");
    }

    #[test]
    fn a_request_whose_channel_ended_sees_no_answer() {
        let replies = Replies::default();
        let mut waiting = replies.expect();
        drop(replies);
        assert!(waiting.try_recv().is_err());
    }

    #[test]
    fn the_budget_counts_payload_bytes_within_bounds() {
        let data = |n: usize| ChannelMsg::Data {
            data: vec![0u8; n].into(),
        };
        assert_eq!(cost(&data(100), 1024), 100);
        assert_eq!(cost(&data(0), 1024), 1, "empty data still costs one");
        assert_eq!(
            cost(&data(5000), 1024),
            1024,
            "never more than the whole budget"
        );
        assert_eq!(cost(&ChannelMsg::Eof, 1024), 1);
        let stderr = ChannelMsg::ExtendedData {
            data: vec![0u8; 10].into(),
            ext: 1,
        };
        assert_eq!(cost(&stderr, 1024), 10);
    }

    #[test]
    fn tap_errors_read_as_the_recorders_reason() {
        assert_eq!(
            TapError::from("disk full".to_string()).to_string(),
            "disk full"
        );
        assert_eq!(TapError::Poisoned.to_string(), "recorder lock poisoned");
    }
}
