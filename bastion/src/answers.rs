//! Answering a person's channel requests later, in order, without holding their connection.
//!
//! russh runs its handler callbacks inside the connection's loop: a callback that waited for
//! the target's answer to `exec` or `pty-req` would freeze every channel, all output and the
//! keepalives of that person until the target answered. So the front door's callbacks only
//! queue a [`Job`] on the channel's [`Answers`] and return; one task per channel first learns
//! what the channel is ([`Target`]: relayed to the target, or one that can only explain why
//! the target cannot be reached), then runs the jobs one after the other (SSH answers a
//! channel's requests in the order they came) and sends each answer through the connection
//! handle. A slow target then delays only the channel that asked. What a request gets on
//! each kind of channel is decided by [`verdict`], a pure function.
//!
//! The queue is bounded: a client piling up requests on one channel faster than its target
//! answers them waits in its own callback, which slows only that client.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use russh::server::{Handle, Msg};
use russh::{Channel, ChannelId};
use tokio::sync::{OwnedSemaphorePermit, mpsc, oneshot};

use crate::session::{LegError, Link};

/// Requests a channel may have waiting for their turn.
const QUEUE: usize = 16;
/// How long the explanation of an unreachable target may take to write.
const EXPLAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A request's work on a relayed channel: `Some(ok)` is the answer to send, `None` when
/// the request wants none (window changes, signals).
pub type Work =
    Box<dyn FnOnce(Arc<Link>) -> Pin<Box<dyn Future<Output = Option<bool>> + Send>> + Send>;

/// What kind of request a job answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A request that gets an answer (pty, env, agent, X11).
    Answered,
    /// `shell`, `exec` or `subsystem`: answered, and it starts the channel's command.
    Starts,
    /// A request without an answer (window change, signal).
    Unanswered,
}

/// One queued request.
pub struct Job {
    /// What kind of request it is.
    pub kind: Kind,
    /// Its work on a relayed channel.
    pub work: Work,
}

impl Job {
    /// A job of `kind` doing `work` on the channel's [`Link`].
    pub fn new<F, Fut>(kind: Kind, work: F) -> Job
    where
        F: FnOnce(Arc<Link>) -> Fut + Send + 'static,
        Fut: Future<Output = Option<bool>> + Send + 'static,
    {
        Job {
            kind,
            work: Box::new(move |link| Box::pin(work(link))),
        }
    }
}

/// Why a session channel cannot reach the target. Shown to the person on its stderr.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The session's target leg is not up.
    #[error(transparent)]
    Leg(#[from] LegError),
    /// The target refused to open a session channel.
    #[error("target {target} refused a session channel: {source}")]
    Refused {
        /// The target's name.
        target: String,
        /// What the target answered.
        source: russh::Error,
    },
}

/// What a session channel turned out to be once the bastion tried the target.
pub enum Target {
    /// Relayed to the target's channel.
    Relayed(Arc<Link>),
    /// Accepted only to tell the person why the target cannot be reached: the channel, why,
    /// and its place among the session's open channels (freed when it closes).
    Unreachable(Channel<Msg>, Unavailable, OwnedSemaphorePermit),
}

/// What the channel is, as far as its requests are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channelled {
    /// Relayed to the target.
    Relayed,
    /// Cannot reach the target and has not explained yet.
    Unreachable,
    /// Explained why and closed.
    Explained,
}

/// What a request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Its work runs against the target; its answer is the target's.
    Run,
    /// This answer, at once.
    Answer(bool),
    /// Success, then the channel explains why the target cannot be reached (stderr, exit
    /// status 255, close), as ssh's own failures do: the person sees why whatever their
    /// `LogLevel`.
    Explain,
    /// Nothing (the request wants no answer).
    Nothing,
}

/// What a request of `kind` gets on a channel that is `channel`. An unreachable channel
/// says yes to everything up to the command, so the client goes on to start it and hears
/// why; after the explanation, requests are refused.
pub fn verdict(channel: Channelled, kind: Kind) -> Verdict {
    match (channel, kind) {
        (Channelled::Relayed, _) => Verdict::Run,
        (_, Kind::Unanswered) => Verdict::Nothing,
        (Channelled::Unreachable, Kind::Answered) => Verdict::Answer(true),
        (Channelled::Unreachable, Kind::Starts) => Verdict::Explain,
        (Channelled::Explained, _) => Verdict::Answer(false),
    }
}

/// The answer queue of one of the person's session channels.
pub struct Answers {
    jobs: mpsc::Sender<Job>,
}

impl Answers {
    /// Starts the task answering channel `id` on the person's connection `handle`, once
    /// `target` says what the channel is. It ends when the `Answers` is dropped and its
    /// queued jobs are done (an unreachable channel's place is freed then).
    pub fn start(id: ChannelId, handle: Handle, target: oneshot::Receiver<Target>) -> Answers {
        let (jobs, mut queued) = mpsc::channel::<Job>(QUEUE);
        tokio::spawn(async move {
            let Ok(mut target) = target.await.map(Some) else {
                return;
            };
            while let Some(job) = queued.recv().await {
                let channelled = match &target {
                    Some(Target::Relayed(_)) => Channelled::Relayed,
                    Some(Target::Unreachable(..)) => Channelled::Unreachable,
                    None => Channelled::Explained,
                };
                let answer = match verdict(channelled, job.kind) {
                    Verdict::Run => match &target {
                        Some(Target::Relayed(link)) => (job.work)(link.clone()).await,
                        _ => Some(false),
                    },
                    Verdict::Answer(ok) => Some(ok),
                    Verdict::Nothing => None,
                    Verdict::Explain => {
                        if handle.channel_success(id).await.is_err() {
                            return;
                        }
                        if let Some(Target::Unreachable(channel, why, claim)) = target.take() {
                            explain_and_close(channel, &handle, &why).await;
                            drop(claim);
                        }
                        None
                    }
                };
                let sent = match answer {
                    Some(true) => handle.channel_success(id).await,
                    Some(false) => handle.channel_failure(id).await,
                    None => Ok(()),
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        Answers { jobs }
    }

    /// Queues `job` behind the channel's earlier requests. `false` if the channel's task is
    /// gone (the connection ended).
    pub async fn push(&self, job: Job) -> bool {
        self.jobs.send(job).await.is_ok()
    }
}

/// A global request's work (`tcpip-forward`, `cancel-tcpip-forward`): `Some(port)` is
/// success (with the port the target bound, for a request of port 0), `None` failure.
pub type GlobalJob = Pin<Box<dyn Future<Output = Option<Option<u32>>> + Send>>;

/// Global requests may have waiting for their turn.
const GLOBAL_QUEUE: usize = 8;

/// The answer queue of the connection's global requests: like a channel's [`Answers`], one
/// task runs them in order and answers each through the handle (the patched russh keeps the
/// order of global replies, see vendor/russh/PATCHED.md), so a slow target delays only the
/// forwarding requests, never the connection's loop.
pub struct GlobalAnswers {
    jobs: mpsc::Sender<GlobalJob>,
}

impl GlobalAnswers {
    /// Starts the task answering global requests on the person's connection `handle`.
    pub fn start(handle: Handle) -> GlobalAnswers {
        let (jobs, mut queued) = mpsc::channel::<GlobalJob>(GLOBAL_QUEUE);
        tokio::spawn(async move {
            while let Some(job) = queued.recv().await {
                let sent = match job.await {
                    Some(port) => handle.reply_global_request(true, port).await,
                    None => handle.reply_global_request(false, None).await,
                };
                if sent.is_err() {
                    return;
                }
            }
        });
        GlobalAnswers { jobs }
    }

    /// Queues `job` behind the earlier global requests. `false` if the task is gone.
    pub async fn push(&self, job: GlobalJob) -> bool {
        self.jobs.send(job).await.is_ok()
    }
}

/// Tells the person why their session channel cannot reach the target, then ends it with
/// exit status 255.
async fn explain_and_close(channel: Channel<Msg>, handle: &Handle, why: &Unavailable) {
    let id = channel.id();
    let (_read, write) = channel.split();
    let notice = format!("bastion: {why}\r\n").into_bytes();
    let _ = tokio::time::timeout(EXPLAIN_TIMEOUT, write.extended_data_bytes(1, notice)).await;
    let _ = handle.exit_status_request(id, 255).await;
    let _ = write.eof().await;
    let _ = write.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_channel_asks_the_target_for_everything() {
        for kind in [Kind::Answered, Kind::Starts, Kind::Unanswered] {
            assert_eq!(verdict(Channelled::Relayed, kind), Verdict::Run);
        }
    }

    #[test]
    fn an_unreachable_channel_agrees_until_the_command_then_explains() {
        assert_eq!(
            verdict(Channelled::Unreachable, Kind::Answered),
            Verdict::Answer(true)
        );
        assert_eq!(
            verdict(Channelled::Unreachable, Kind::Starts),
            Verdict::Explain
        );
        assert_eq!(
            verdict(Channelled::Unreachable, Kind::Unanswered),
            Verdict::Nothing
        );
    }

    #[test]
    fn after_the_explanation_requests_are_refused() {
        assert_eq!(
            verdict(Channelled::Explained, Kind::Answered),
            Verdict::Answer(false)
        );
        assert_eq!(
            verdict(Channelled::Explained, Kind::Starts),
            Verdict::Answer(false)
        );
        assert_eq!(
            verdict(Channelled::Explained, Kind::Unanswered),
            Verdict::Nothing
        );
    }

    #[test]
    fn the_explanation_names_the_target_leg_failure() {
        let why = Unavailable::from(LegError::TimedOut("web01".into()));
        assert_eq!(why.to_string(), "timed out connecting to web01");
    }
}
