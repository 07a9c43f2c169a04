//! Answering a person's channel requests later, in order, without holding their connection.
//!
//! russh runs its handler callbacks inside the connection's loop: a callback that waited for
//! the target's answer to `exec` or `pty-req` would freeze every channel, all output and the
//! keepalives of that person until the target answered. So the front door's callbacks only
//! queue a [`Job`] on the channel's [`Answers`] and return; one task per channel runs the
//! jobs one after the other (SSH answers a channel's requests in the order they came) and
//! sends each answer through the connection handle. A slow target then delays only the
//! channel that asked.
//!
//! The queue is bounded: a client piling up requests on one channel faster than its target
//! answers them waits in its own callback, which slows only that client.

use std::future::Future;
use std::pin::Pin;

use russh::ChannelId;
use russh::server::Handle;
use tokio::sync::mpsc;

/// Requests a channel may have waiting for their turn.
const QUEUE: usize = 16;

/// One request's work: `Some(ok)` is the answer to send, `None` when the request wants
/// none (window changes, signals).
pub type Job = Pin<Box<dyn Future<Output = Option<bool>> + Send>>;

/// The answer queue of one of the person's channels.
pub struct Answers {
    jobs: mpsc::Sender<Job>,
}

impl Answers {
    /// Starts the task answering channel `id` on the person's connection `handle`. It ends
    /// when the `Answers` is dropped and its queued jobs are done.
    pub fn start(id: ChannelId, handle: Handle) -> Answers {
        let (jobs, mut queued) = mpsc::channel::<Job>(QUEUE);
        tokio::spawn(async move {
            while let Some(job) = queued.recv().await {
                let sent = match job.await {
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
