//! One person's session through the bastion: from an accepted login to its end.
//!
//! Each session is one task (module `task`) that owns its state: the [`Phase`] of its life
//! (connecting, live, unreachable, ending, done; transitions in [`state`]), the target leg
//! ([`Upstream`], opened in the background as soon as the login is accepted so it overlaps
//! the client's own setup), the recording, the forwarding granted ([`grants`]) and the timers
//! that end it when the person's certificate expires or is revoked (warning first). Everything
//! else talks to it through [`Session`], a handle that sends it messages over a bounded queue
//! and reads what it publishes (the target leg, for channels). The audit log says why it
//! ended.

pub mod grants;
pub mod state;
mod task;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jitssh_core::audit::AuditEvent;
use jitssh_core::ssh_key::Certificate;
use russh::{Channel, ChannelId, ChannelWriteHalf, client, server};
use tokio::sync::{mpsc, oneshot, watch};

use crate::admin::{LiveInfo, LiveSessions, Publisher, WatchedTap};
use crate::admission::Admitted;
use crate::audit::Audit;
use crate::config::BastionConfig;
use crate::issuer::Issuer;
use crate::pump::{self, Replies, SharedTap, Tap, TargetSide, UserSide, no_tap};
use crate::recorded::{ChannelTap, RecordingSetup, SessionRecording};
use crate::recording::ChannelKind;
use crate::upstream::Upstream;

pub use grants::{Grant, Grants, Opening};
pub use state::{EndReason, LegError, Phase};

/// Server-wide state every connection shares.
pub struct Shared {
    /// The configuration.
    pub config: BastionConfig,
    /// The CA.
    pub issuer: Arc<dyn Issuer>,
    /// The bastion's audit log.
    pub audit: Audit,
    /// Where and how sessions are recorded.
    pub recording: RecordingSetup,
    /// Live sessions, for auditors to watch and end (see `crate::admin`).
    pub live: Arc<LiveSessions>,
    /// Becomes `true` when the bastion shuts down.
    pub shutdown: watch::Receiver<bool>,
    /// Host certificates naming targets, for `ssh -J` (see [`crate::jump`]).
    pub target_certs: Arc<crate::jump::TargetCerts>,
    /// The auditors' web console, when `[web] listen` is set (sign-in links are minted here).
    pub web: Option<Arc<crate::web::Console>>,
}

/// The target leg as the session's channels see it (published by the session's task).
#[derive(Clone)]
pub enum Leg {
    /// Still being set up.
    Connecting,
    /// Up: the connection, and the recording (`None` when the `continue` policy lets the
    /// session go on unrecorded).
    Up {
        /// The target connection.
        upstream: Arc<Upstream>,
        /// The session's recording.
        recording: Option<Arc<SessionRecording>>,
    },
    /// It will not come: why.
    Failed(LegError),
}

/// A session channel relayed to the target.
pub struct Link {
    /// The channel's id on the person's connection.
    pub user_id: ChannelId,
    /// Writes to the target's channel (requests, and data from the pump).
    pub target: Arc<ChannelWriteHalf<client::Msg>>,
    /// Writes to the person's channel (data from the pump, bastion notices).
    pub user: Arc<ChannelWriteHalf<server::Msg>>,
    /// Replies the target owes for forwarded requests.
    pub replies: Arc<Replies>,
    /// The recorder of this channel, attached when it starts.
    pub tap: SharedTap,
    /// Terminal requested on this channel, if any: (term, columns, rows).
    pub pty: Mutex<Option<(String, u32, u32)>>,
}

impl Link {
    /// The terminal requested on this channel, if any.
    pub fn requested_pty(&self) -> Option<(String, u32, u32)> {
        self.pty.lock().ok().and_then(|p| p.clone())
    }

    /// A link between the two channel write halves.
    pub fn new(
        user_id: ChannelId,
        target: Arc<ChannelWriteHalf<client::Msg>>,
        user: Arc<ChannelWriteHalf<server::Msg>>,
    ) -> Link {
        Link {
            user_id,
            target,
            user,
            replies: Arc::new(Replies::default()),
            tap: no_tap(),
            pty: Mutex::new(None),
        }
    }
}

/// What the session's task is told (see the module `task`).
enum Message {
    /// The target leg came up (with the recording) or failed.
    Leg(task::Setup),
    /// A change to the forwarding granted.
    Grant(Grant),
    /// End the session now.
    End(EndReason),
    /// The person's connection ended: record the end, then answer.
    ClientGone(EndReason, oneshot::Sender<()>),
    /// A flush of the recording reported (see [`SessionRecording::flush`]).
    Flushed(Result<Option<String>, String>),
    /// A revocation check answered.
    Revocation(Result<Option<String>, crate::issuer::IssuerError>),
    /// The person was told why the session ends and both legs were closed.
    Closed,
}

/// Messages a session's task may have waiting. Senders wait when it is full (they are the
/// session's own channel tasks and the connection's end, never the connection's loop).
const MESSAGES: usize = 32;

/// An accepted session: the handle through which channels and the connection reach the
/// session's task.
pub struct Session {
    /// Session id (in audit records, recordings and the session certificate's key id).
    pub id: String,
    /// What the login was admitted for.
    pub admitted: Admitted,
    /// The person's certificate.
    pub user_cert: Certificate,
    /// The person's address.
    pub peer: Option<SocketAddr>,
    /// Server-wide state.
    pub shared: Arc<Shared>,
    handle: server::Handle,
    leg: watch::Receiver<Leg>,
    messages: mpsc::Sender<Message>,
    /// The relayed session channels, by id: channels register here so the task can tell
    /// every one of them why the session ends.
    links: Mutex<HashMap<ChannelId, Arc<Link>>>,
    /// One permit per channel the person has open (relayed, forwarded, or one that only
    /// explains why the target cannot be reached): `limits.max_channels` in all.
    channel_slots: Arc<tokio::sync::Semaphore>,
    /// Where terminal output goes for auditors watching live.
    publisher: Publisher,
}

/// How long a session waits for its target leg when a channel opens (beyond the connect
/// timeout, which bounds the leg itself).
const UPSTREAM_GRACE: Duration = Duration::from_secs(2);
/// How long the bastion's notices to the person may take before it gives up on them.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(2);

impl Session {
    /// Starts a session: its task opens the target leg in the background and watches the
    /// certificate.
    pub fn start(
        id: String,
        admitted: Admitted,
        user_cert: Certificate,
        peer: Option<SocketAddr>,
        shared: Arc<Shared>,
        handle: server::Handle,
    ) -> Arc<Session> {
        let (leg_tx, leg_rx) = watch::channel(Leg::Connecting);
        let (messages_tx, messages_rx) = mpsc::channel(MESSAGES);
        let registration = shared.live.register(LiveInfo {
            id: id.clone(),
            user: admitted.person.clone(),
            login: admitted.login_target.login.clone(),
            target: admitted.login_target.target.clone(),
            started_at: jitssh_core::unix_now(),
            ending: false,
        });
        let channel_slots = Arc::new(tokio::sync::Semaphore::new(
            shared.config.limits.max_channels,
        ));
        let session = Arc::new(Session {
            id,
            admitted,
            user_cert,
            peer,
            shared,
            handle,
            leg: leg_rx,
            messages: messages_tx,
            links: Mutex::new(HashMap::new()),
            channel_slots,
            publisher: registration.publisher(),
        });
        task::spawn(session.clone(), registration, leg_tx, messages_rx);
        session
    }

    /// An audit event carrying the session's identity.
    pub fn event(&self, kind: &str) -> AuditEvent {
        AuditEvent::new(kind)
            .with("session", self.id.as_str())
            .with("person", self.admitted.person.as_str())
            .with("serial", self.admitted.serial)
            .with("login", self.admitted.login_target.login.as_str())
            .with("target", self.admitted.login_target.target.as_str())
    }

    /// The person's connection.
    pub fn handle(&self) -> &server::Handle {
        &self.handle
    }

    /// The target leg, once it is up (or why it is not).
    pub async fn upstream(&self) -> Result<Arc<Upstream>, LegError> {
        let mut rx = self.leg.clone();
        let limit = self.shared.config.session.connect_timeout.as_duration() + UPSTREAM_GRACE;
        let waited =
            tokio::time::timeout(limit, rx.wait_for(|leg| !matches!(leg, Leg::Connecting))).await;
        match waited {
            Ok(Ok(leg)) => match &*leg {
                Leg::Up { upstream, .. } => Ok(upstream.clone()),
                Leg::Failed(why) => Err(why.clone()),
                Leg::Connecting => Err(LegError::Abandoned),
            },
            Ok(Err(_)) => Err(LegError::Abandoned),
            Err(_) => Err(LegError::TimedOut(
                self.admitted.login_target.target.clone(),
            )),
        }
    }

    /// A recorder for channel `channel` doing `kind`; `Ok(None)` when the session is not
    /// recorded (degraded under the `continue` policy); `Err` when the session must end.
    pub fn record_channel(
        &self,
        channel: ChannelId,
        kind: ChannelKind,
    ) -> Result<Option<ChannelTap>, String> {
        let recording = match &*self.leg.borrow() {
            Leg::Up { recording, .. } => recording.clone(),
            _ => None,
        };
        match recording {
            Some(recording) => recording.channel(channel.number(), kind),
            None => Ok(None),
        }
    }

    /// The tap to attach to a channel: `tap`, and for terminal channels (not transfers) also
    /// the session's watchers.
    pub fn watched(&self, tap: impl Tap + 'static, terminal: bool) -> Box<dyn Tap> {
        if terminal {
            Box::new(WatchedTap::new(tap, self.publisher.clone()))
        } else {
            Box::new(tap)
        }
    }

    /// Registers a relayed channel.
    pub fn add_link(&self, id: ChannelId, link: Arc<Link>) {
        self.lock_links().insert(id, link);
    }

    /// Forgets a relayed channel once it closed.
    pub fn remove_link(&self, id: ChannelId) {
        self.lock_links().remove(&id);
    }

    /// A place for one more open channel, or `None` when `limits.max_channels` are open. The
    /// channel holds it until it closes.
    pub fn claim_channel(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.channel_slots.clone().try_acquire_owned().ok()
    }

    /// How many relayed session channels are open.
    pub fn channel_count(&self) -> usize {
        self.lock_links().len()
    }

    fn links(&self) -> Vec<Arc<Link>> {
        self.lock_links().values().cloned().collect()
    }

    fn lock_links(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelId, Arc<Link>>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells the session's task about forwarding granted (or gone). Processed before any
    /// channel the target opens afterwards.
    pub async fn grant(&self, grant: Grant) {
        let _ = self.messages.send(Message::Grant(grant)).await;
    }

    /// Ends the session now for `reason` (the first reason given is the one recorded): the
    /// person is told why and both legs are disconnected.
    pub async fn end(&self, reason: EndReason) {
        let _ = self.messages.send(Message::End(reason)).await;
    }

    /// Records the end of the session once the person's connection is gone (`outcome`: how
    /// it went), and returns when that is done. An earlier reason to end, or a target leg
    /// that never came up, is the reason recorded instead.
    pub async fn finish(&self, outcome: EndReason) {
        let (done, finished) = oneshot::channel();
        if self
            .messages
            .send(Message::ClientGone(outcome, done))
            .await
            .is_ok()
        {
            let _ = finished.await;
        }
    }

    /// Sends a notice to the person on every open channel's stderr (best effort: a channel
    /// whose reader stalls does not hold the notice up for long).
    pub async fn notify_person(&self, text: &str) {
        for link in self.links() {
            notify_link(&link, text).await;
        }
    }

    /// A channel started its command: if the certificate expires within the warning window,
    /// this channel hears about it now (the periodic warning may have gone out before it
    /// existed).
    pub fn channel_started(&self, link: &Arc<Link>) {
        let notice = state::expiry_notice(
            jitssh_core::unix_now(),
            self.admitted.valid_before,
            self.shared.config.session.expiry_warning.as_secs(),
        );
        if let Some(left) = notice {
            let link = link.clone();
            tokio::spawn(async move { notify_link(&link, &state::expiry_warning(left)).await });
        }
    }

    /// Relays a channel that carries no session semantics (forwarded ports, agent, X11).
    pub async fn relay(&self, user: Channel<server::Msg>, target: Channel<client::Msg>) {
        let user_id = user.id();
        let (user_read, user_write) = user.split();
        let (target_read, target_write) = target.split();
        pump::run(
            UserSide {
                read: user_read,
                write: Arc::new(user_write),
                id: user_id,
                handle: self.handle.clone(),
            },
            TargetSide {
                read: target_read,
                write: Arc::new(target_write),
                exits: false,
            },
            Arc::new(Replies::default()),
            no_tap(),
            self.shared.config.limits.relay_buffer,
        )
        .await;
    }
}

/// Writes a notice to one channel's stderr, giving up after a short while if the person's
/// side does not read.
async fn notify_link(link: &Link, text: &str) {
    let crlf = link.pty.lock().map(|p| p.is_some()).unwrap_or(false);
    let line = if crlf {
        format!("\r\n[bastion] {text}\r\n")
    } else {
        format!("[bastion] {text}\n")
    };
    let _ = tokio::time::timeout(
        NOTICE_TIMEOUT,
        link.user.extended_data_bytes(1, line.into_bytes()),
    )
    .await;
}
