//! Moving bytes between a person's channel and the matching target channel, in both
//! directions, with bounded memory.
//!
//! Each direction holds at most one SSH message in hand: a write waits for the receiving
//! side's channel window (`ChannelWriteHalf::data_bytes`), and while it waits nothing more is
//! read, so russh's bounded per-channel queue fills and the sender's TCP connection is no
//! longer read. A client that stops reading therefore stalls its target instead of growing
//! the bastion's memory.
//!
//! Requests that need a reply (pty, exec, subsystem, ...) are forwarded by the front door's
//! handler, which awaits the target's answer; the target's `SUCCESS`/`FAILURE` come back on
//! the target channel and are routed to that waiting handler through [`Replies`].

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use russh::{ChannelId, ChannelMsg, ChannelReadHalf, ChannelWriteHalf, Sig, client, server};
use tokio::sync::oneshot;

/// Observes a channel's traffic (the session recorder). A failure ends the channel.
pub trait Tap: Send {
    /// Bytes from the person to the target.
    fn input(&mut self, _data: &[u8]) -> Result<(), String> {
        Ok(())
    }
    /// Bytes from the target's stdout to the person.
    fn output(&mut self, _data: &[u8]) -> Result<(), String> {
        Ok(())
    }
    /// Bytes from the target's stderr to the person.
    fn stderr(&mut self, _data: &[u8]) -> Result<(), String> {
        Ok(())
    }
    /// The remote command's exit status.
    fn exit_status(&mut self, _status: u32) -> Result<(), String> {
        Ok(())
    }
    /// The remote command was killed by a signal.
    fn exit_signal(&mut self, _signal: &str) -> Result<(), String> {
        Ok(())
    }
    /// The person's terminal changed size.
    fn resize(&mut self, _cols: u32, _rows: u32) -> Result<(), String> {
        Ok(())
    }
    /// The channel closed.
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
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
    TapFailed(String),
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
}

/// Runs both directions until one side closes the channel (or a tap fails), then closes the
/// other side. Returns how it ended.
pub async fn run(
    user: UserSide,
    target: TargetSide,
    replies: Arc<Replies>,
    tap: SharedTap,
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
    } = target;
    let up = user_to_target(user_read, &target_write, &tap);
    let down = target_to_user(target_read, &user_write, user_id, &handle, &replies, &tap);
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

fn tap_call(
    tap: &SharedTap,
    f: impl FnOnce(&mut dyn Tap) -> Result<(), String>,
) -> Result<(), String> {
    let mut guard = tap.lock().unwrap_or_else(|p| p.into_inner());
    f(guard.as_mut())
}

async fn user_to_target(
    mut from: ChannelReadHalf,
    to: &ChannelWriteHalf<client::Msg>,
    tap: &SharedTap,
) -> Ended {
    while let Some(msg) = from.wait().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                if let Err(why) = tap_call(tap, |t| t.input(&data)) {
                    return Ended::TapFailed(why);
                }
                to.data_bytes(data).await
            }
            ChannelMsg::ExtendedData { data, ext } => to.extended_data_bytes(ext, data).await,
            ChannelMsg::Eof => to.eof().await,
            ChannelMsg::Close => break,
            // Requests are forwarded by the handler, which needs to answer them in order.
            _ => Ok(()),
        };
        if sent.is_err() {
            break;
        }
    }
    let _ = to.close().await;
    Ended::Closed
}

async fn target_to_user(
    mut from: ChannelReadHalf,
    to: &ChannelWriteHalf<server::Msg>,
    id: ChannelId,
    handle: &server::Handle,
    replies: &Replies,
    tap: &SharedTap,
) -> Ended {
    while let Some(msg) = from.wait().await {
        let sent = match msg {
            ChannelMsg::Data { data } => {
                if let Err(why) = tap_call(tap, |t| t.output(&data)) {
                    return Ended::TapFailed(why);
                }
                to.data_bytes(data).await.is_ok()
            }
            ChannelMsg::ExtendedData { data, ext } => {
                if ext == 1
                    && let Err(why) = tap_call(tap, |t| t.stderr(&data))
                {
                    return Ended::TapFailed(why);
                }
                to.extended_data_bytes(ext, data).await.is_ok()
            }
            ChannelMsg::Eof => to.eof().await.is_ok(),
            ChannelMsg::Close => break,
            ChannelMsg::ExitStatus { exit_status } => {
                if let Err(why) = tap_call(tap, |t| t.exit_status(exit_status)) {
                    return Ended::TapFailed(why);
                }
                handle.exit_status_request(id, exit_status).await.is_ok()
            }
            ChannelMsg::ExitSignal {
                signal_name,
                core_dumped,
                error_message,
                lang_tag,
            } => {
                let name = signal_text(&signal_name);
                if let Err(why) = tap_call(tap, |t| t.exit_signal(&name)) {
                    return Ended::TapFailed(why);
                }
                handle
                    .exit_signal_request(id, signal_name, core_dumped, error_message, lang_tag)
                    .await
                    .is_ok()
            }
            ChannelMsg::XonXoff { client_can_do } => {
                handle.xon_xoff_request(id, client_can_do).await.is_ok()
            }
            ChannelMsg::Success => {
                replies.answer(true);
                true
            }
            ChannelMsg::Failure => {
                replies.answer(false);
                true
            }
            _ => true,
        };
        if !sent {
            break;
        }
    }
    let _ = to.close().await;
    Ended::Closed
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
        Sig::Custom(name) => crate::login::printable(name),
    }
}
