//! One person's session through the bastion: from an accepted login to its end.
//!
//! A session owns the target leg ([`Upstream`], opened in the background as soon as the login
//! is accepted so it overlaps the client's own setup), the pairs of channels it relays, and a
//! watcher that ends it when the person's certificate expires or is revoked, warning first.
//! The audit log says why it ended.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, UNIX_EPOCH};

use jitssh_core::audit::AuditEvent;
use jitssh_core::ssh_key::Certificate;
use russh::{Channel, ChannelId, ChannelOpenFailure, ChannelWriteHalf, Disconnect, client, server};
use tokio::sync::{Notify, watch};

use crate::admin::{LiveInfo, LiveSessions, Registration, WatchedTap};
use crate::admission::Admitted;
use crate::audit::Audit;
use crate::config::BastionConfig;
use crate::issuer::Issuer;
use crate::pump::{self, Replies, SharedTap, Tap, TargetSide, UserSide, no_tap};
use crate::recorded::{ChannelTap, RecordingSetup, SessionRecording};
use crate::recording::{ChannelKind, OnFailure, SessionMeta};
use crate::upstream::{self, ConnectRequest, Incoming, SessionCertTemplate, Upstream};

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
}

/// The state of the target leg.
type UpstreamState = Option<Result<Arc<Upstream>, String>>;

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

/// Forwarding the person was granted during this session.
#[derive(Default)]
struct Grants {
    agent: bool,
    x11: bool,
    remote_ports: HashSet<(String, u32)>,
}

/// An accepted session.
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
    upstream: watch::Receiver<UpstreamState>,
    links: Mutex<HashMap<ChannelId, Arc<Link>>>,
    /// One permit per channel the person has open (relayed, forwarded, or one that only
    /// explains why the target cannot be reached): `limits.max_channels` in all.
    channel_slots: Arc<tokio::sync::Semaphore>,
    grants: Mutex<Grants>,
    recording: std::sync::OnceLock<Arc<SessionRecording>>,
    /// Whether `recording.degraded` was audited (once per session).
    degraded_audited: std::sync::atomic::AtomicBool,
    live: Registration,
    end_reason: Mutex<Option<String>>,
    ended: Notify,
    started: Instant,
}

/// How long a session waits for its target leg when a channel opens (beyond the connect
/// timeout, which bounds the leg itself).
const UPSTREAM_GRACE: Duration = Duration::from_secs(2);
/// How long a terminated session waits for the person's client to confirm its channels
/// closed before disconnecting.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long the bastion's notices to the person may take before it gives up on them.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(2);

impl Session {
    /// Starts a session: opens the target leg in the background and watches the certificate.
    pub fn start(
        id: String,
        admitted: Admitted,
        user_cert: Certificate,
        peer: Option<SocketAddr>,
        shared: Arc<Shared>,
        handle: server::Handle,
    ) -> Arc<Session> {
        let (upstream_tx, upstream_rx) = watch::channel(None);
        let live = shared.live.register(LiveInfo {
            id: id.clone(),
            user: admitted.person.clone(),
            login: admitted.login_target.login.clone(),
            target: admitted.login_target.target.clone(),
            started_at: jitssh_core::unix_now(),
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
            upstream: upstream_rx,
            links: Mutex::new(HashMap::new()),
            channel_slots,
            grants: Mutex::new(Grants::default()),
            recording: std::sync::OnceLock::new(),
            live,
            end_reason: Mutex::new(None),
            degraded_audited: std::sync::atomic::AtomicBool::new(false),
            ended: Notify::new(),
            started: Instant::now(),
        });
        let connecting = session.clone();
        tokio::spawn(async move {
            let (result, recording) =
                tokio::join!(connecting.connect_upstream(), connecting.start_recording());
            let result = match (result, recording) {
                (Ok(up), Err(why)) => {
                    let up_handle = up.clone();
                    tokio::spawn(async move {
                        let _ = up_handle
                            .handle
                            .disconnect(Disconnect::ByApplication, "recording unavailable", "")
                            .await;
                    });
                    Err(why)
                }
                (result, _) => result,
            };
            if let Ok(up) = &result {
                tokio::spawn(connecting.clone().route_incoming(up.clone()));
            }
            let _ = upstream_tx.send(Some(result));
        });
        tokio::spawn(session.clone().watch());
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

    async fn connect_upstream(&self) -> Result<Arc<Upstream>, String> {
        let config = &self.shared.config;
        let name = &self.admitted.login_target.target;
        let Some(target) = config.target(name) else {
            return Err(format!("unknown target {name:?}"));
        };
        let request = ConnectRequest {
            target: target.name.clone(),
            address: target.address.clone(),
            cert_request: SessionCertTemplate {
                user_cert: self.user_cert.clone(),
                client: self.peer.map(|p| p.ip()),
                login: self.admitted.login_target.login.clone(),
                session_id: self.id.clone(),
                ttl: config.session.cert_ttl.as_duration(),
            },
            timeout: config.session.connect_timeout.as_duration(),
            channel_buffer: config.limits.channel_buffer,
        };
        match upstream::connect(request, self.shared.issuer.clone()).await {
            Ok(up) => {
                let event = self
                    .event("session.start")
                    .with("target_address", target.address.as_str())
                    .with("session_cert_serial", up.session_cert_serial)
                    .with("bastion_address", up.local_address.to_string())
                    .with("peer", self.peer.map(|p| p.to_string()));
                if let Err(err) = self.shared.audit.record(event).await {
                    let _ = up
                        .handle
                        .disconnect(Disconnect::ByApplication, "audit unavailable", "")
                        .await;
                    return Err(format!("the bastion cannot write its audit log: {err}"));
                }
                Ok(Arc::new(up))
            }
            Err(err) => {
                let why = err.to_string();
                tracing::warn!(session = %self.id, "target leg failed: {why}");
                self.shared
                    .audit
                    .record_or_log(
                        self.event("session.target_failed")
                            .with("reason", why.as_str()),
                    )
                    .await;
                Err(why)
            }
        }
    }

    /// Starts the session's recording (and its one-second flush). `Err` when the session must
    /// not go on unrecorded.
    async fn start_recording(self: &Arc<Self>) -> Result<(), String> {
        let started_at = jitssh_core::unix_now();
        let person = self.admitted.person.clone();
        let meta = SessionMeta {
            id: self.id.clone(),
            user: person
                .split_whitespace()
                .next()
                .unwrap_or(person.as_str())
                .to_string(),
            key_id: person.clone(),
            cert_serial: self.admitted.serial,
            login: self.admitted.login_target.login.clone(),
            target: self.admitted.login_target.target.clone(),
            client_addr: self.peer.map(|p| p.to_string()).unwrap_or_default(),
            started_at,
        };
        let shared = self.shared.clone();
        let started =
            tokio::task::spawn_blocking(move || SessionRecording::start(&shared.recording, meta))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
        match started {
            Ok(recording) => {
                let _ = self.recording.set(Arc::new(recording));
                tokio::spawn(self.clone().flush_recording());
                Ok(())
            }
            Err(why) if self.shared.recording.policy.on_failure == OnFailure::Continue => {
                tracing::error!(session = %self.id, "session not recorded: {why}");
                self.shared
                    .audit
                    .record_or_log(
                        self.event("recording.degraded")
                            .with("reason", why.as_str()),
                    )
                    .await;
                Ok(())
            }
            Err(why) => {
                tracing::error!(session = %self.id, "cannot record, refusing the session: {why}");
                self.shared
                    .audit
                    .record_or_log(self.event("recording.failed").with("reason", why.as_str()))
                    .await;
                Err(format!("the session cannot be recorded: {why}"))
            }
        }
    }

    /// Flushes the recording every second; ends the session if it cannot be written.
    async fn flush_recording(self: Arc<Self>) {
        let Some(recording) = self.recording.get().cloned() else {
            return;
        };
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let ended = self.ended.notified();
        tokio::pin!(ended);
        loop {
            tokio::select! {
                _ = &mut ended => return,
                _ = tick.tick() => {}
            }
            if self.is_ended() {
                return;
            }
            let flushing = recording.clone();
            let flushed = tokio::task::spawn_blocking(move || flushing.flush())
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            self.audit_quota(&recording).await;
            match flushed {
                Ok(None) => {}
                Ok(Some(degraded)) => self.audit_degraded(&degraded).await,
                Err(why) => {
                    self.terminate(&format!("the recording failed ({why})"))
                        .await;
                    return;
                }
            }
        }
    }

    /// Audits `recording.degraded`: the recording failed and the `continue` policy lets the
    /// session go on unrecorded.
    async fn audit_degraded(&self, degraded: &str) {
        if self
            .degraded_audited
            .swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            return;
        }
        tracing::error!(session = %self.id, "recording degraded: {degraded}");
        self.shared
            .audit
            .record_or_log(self.event("recording.degraded").with("reason", degraded))
            .await;
    }

    /// Audits `recording.quota` once the session's recording reached a quota.
    async fn audit_quota(&self, recording: &SessionRecording) {
        if let Some(hit) = recording.take_quota() {
            let event = self
                .event("recording.quota")
                .with("quota", hit.kind.as_str())
                .with("limit", hit.limit)
                .with("recorded", hit.recorded)
                .with("reason", hit.to_string());
            self.shared.audit.record_or_log(event).await;
        }
    }

    /// A recorder for channel `channel` doing `kind`; `Ok(None)` when the session is not
    /// recorded (degraded under the `continue` policy); `Err` when the session must end.
    pub fn record_channel(
        &self,
        channel: ChannelId,
        kind: ChannelKind,
    ) -> Result<Option<ChannelTap>, String> {
        match self.recording.get() {
            Some(recording) => recording.channel(channel.number(), kind),
            None => Ok(None),
        }
    }

    /// The tap to attach to a channel: `tap`, and for terminal channels (not transfers) also
    /// the session's watchers.
    pub fn watched(&self, tap: impl Tap + 'static, terminal: bool) -> Box<dyn Tap> {
        if terminal {
            Box::new(WatchedTap::new(tap, self.live.publisher()))
        } else {
            Box::new(tap)
        }
    }

    /// The target leg, once it is up (or why it failed).
    pub async fn upstream(&self) -> Result<Arc<Upstream>, String> {
        let mut rx = self.upstream.clone();
        let limit = self.shared.config.session.connect_timeout.as_duration() + UPSTREAM_GRACE;
        let waited = tokio::time::timeout(limit, rx.wait_for(|state| state.is_some())).await;
        match waited {
            Ok(Ok(state)) => match &*state {
                Some(result) => result.clone(),
                None => Err("target connection not ready".into()),
            },
            Ok(Err(_)) => Err("target connection abandoned".into()),
            Err(_) => Err(format!(
                "timed out connecting to {}",
                self.admitted.login_target.target
            )),
        }
    }

    /// Has the session's end been decided?
    pub fn is_ended(&self) -> bool {
        self.end_reason.lock().map(|r| r.is_some()).unwrap_or(true)
    }

    /// Registers a relayed channel.
    pub fn add_link(&self, id: ChannelId, link: Arc<Link>) {
        self.lock_links().insert(id, link);
    }

    /// Forgets a relayed channel once it closed.
    pub fn remove_link(&self, id: ChannelId) {
        self.lock_links().remove(&id);
    }

    /// The relayed channel `id`.
    pub fn link(&self, id: ChannelId) -> Option<Arc<Link>> {
        self.lock_links().get(&id).cloned()
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

    fn lock_links(&self) -> std::sync::MutexGuard<'_, HashMap<ChannelId, Arc<Link>>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_grants(&self) -> std::sync::MutexGuard<'_, Grants> {
        self.grants.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Agent forwarding was granted on the target.
    pub fn grant_agent(&self) {
        self.lock_grants().agent = true;
    }

    /// X11 forwarding was granted on the target.
    pub fn grant_x11(&self) {
        self.lock_grants().x11 = true;
    }

    /// A remote port forward is being set up on the target (port 0: any port, until the
    /// target says which).
    pub fn grant_remote_port(&self, address: &str, port: u32) {
        self.lock_grants()
            .remote_ports
            .insert((address.to_string(), port));
    }

    /// A remote port forward was cancelled.
    pub fn revoke_remote_port(&self, address: &str, port: u32) {
        self.lock_grants()
            .remote_ports
            .remove(&(address.to_string(), port));
    }

    /// Sends a notice to the person on every open channel's stderr (best effort: a channel
    /// whose reader stalls does not hold the notice up for long).
    pub async fn notify_person(&self, text: &str) {
        let links: Vec<Arc<Link>> = self.lock_links().values().cloned().collect();
        for link in links {
            notify_link(&link, text).await;
        }
    }

    /// A channel started its command: if the certificate expires within the warning window,
    /// this channel hears about it now (the periodic warning may have gone out before it
    /// existed).
    pub fn channel_started(&self, link: &Arc<Link>) {
        let expiry = self.admitted.valid_before;
        let warn_before = self.shared.config.session.expiry_warning.as_secs();
        let left = until_unix(expiry).as_secs();
        if left <= warn_before {
            let link = link.clone();
            tokio::spawn(async move { notify_link(&link, &expiry_warning(left)).await });
        }
    }

    /// Ends the session now: tells the person why, disconnects both legs. The first reason
    /// given is the one recorded.
    pub async fn terminate(&self, reason: &str) {
        {
            let mut end = self.end_reason.lock().unwrap_or_else(|p| p.into_inner());
            if end.is_some() {
                return;
            }
            *end = Some(reason.to_string());
        }
        tracing::info!(session = %self.id, "ending session: {reason}");
        // Close every channel the way a finished command does (notice on stderr, exit status
        // 255, close), so clients print the notice before they exit, then disconnect.
        let links: Vec<Arc<Link>> = self.lock_links().values().cloned().collect();
        let text = format!("session ended: {reason}");
        for link in &links {
            notify_link(link, &text).await;
            let _ = self.handle.exit_status_request(link.user_id, 255).await;
            let _ = link.user.eof().await;
            let _ = link.user.close().await;
        }
        let deadline = Instant::now() + CLOSE_GRACE;
        while self.channel_count() > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self
            .handle
            .disconnect(
                Disconnect::ByApplication,
                format!("session ended: {reason}"),
                String::new(),
            )
            .await;
        self.close_upstream().await;
        self.ended.notify_waiters();
    }

    async fn close_upstream(&self) {
        let up = match &*self.upstream.borrow() {
            Some(Ok(up)) => Some(up.clone()),
            _ => None,
        };
        if let Some(up) = up {
            tokio::spawn(async move {
                let _ = up
                    .handle
                    .disconnect(Disconnect::ByApplication, "session ended", "")
                    .await;
            });
        }
    }

    /// Why the target leg never came up, if it failed.
    fn upstream_failure(&self) -> Option<String> {
        match &*self.upstream.borrow() {
            Some(Err(why)) => Some(why.clone()),
            _ => None,
        }
    }

    /// Records the end of the session, once the person's connection is gone. Without an
    /// earlier reason, a target leg that never came up is the real one: the person only
    /// disconnected because of it.
    pub async fn finish(&self, outcome: &str) {
        let failed = self.upstream_failure();
        let reason = {
            let mut end = self.end_reason.lock().unwrap_or_else(|p| p.into_inner());
            end.get_or_insert_with(|| match failed {
                Some(why) => format!("target unreachable: {why}"),
                None => outcome.to_string(),
            })
            .clone()
        };
        self.ended.notify_waiters();
        self.live.close();
        self.close_upstream().await;
        let mut event = self
            .event("session.end")
            .with("reason", reason.as_str())
            .with("duration_ms", self.started.elapsed().as_millis() as u64);
        if let Some(recording) = self.recording.get().cloned() {
            // What the writer found since the last one-second flush (a session shorter than a
            // second has had none) is audited before the end.
            let flushing = recording.clone();
            if let Ok(Ok(Some(degraded))) =
                tokio::task::spawn_blocking(move || flushing.flush()).await
            {
                self.audit_degraded(&degraded).await;
            }
            let why = reason.clone();
            let finishing = recording.clone();
            let summary = tokio::task::spawn_blocking(move || finishing.finish(&why))
                .await
                .ok()
                .flatten();
            // After the writer drained its queue: a quota it reached last is known now.
            self.audit_quota(&recording).await;
            if let Some(summary) = summary {
                event = event
                    .with("recording", summary.dir.display().to_string())
                    .with("sealed", summary.sealed)
                    .with("bytes_in", summary.bytes_in)
                    .with("bytes_out", summary.bytes_out);
                if let Some(failure) = &summary.failure {
                    // Found only while sealing (the session ended before a flush saw it).
                    if self.shared.recording.policy.on_failure == OnFailure::Continue {
                        self.audit_degraded(failure).await;
                    }
                    event = event.with("recording_failure", failure.as_str());
                }
            }
        }
        self.shared.audit.record_or_log(event).await;
    }

    /// Routes channels the target opens (agent, X11, remote forwards) to the person, if the
    /// session asked for that kind of forwarding; anything else is rejected.
    async fn route_incoming(self: Arc<Self>, up: Arc<Upstream>) {
        let mut incoming = up.incoming.lock().await;
        while let Some(item) = incoming.recv().await {
            tokio::spawn(self.clone().route(item));
        }
    }

    async fn route(self: Arc<Self>, item: Incoming) {
        let prohibited = ChannelOpenFailure::AdministrativelyProhibited;
        match item {
            Incoming::Agent { channel, reply } => {
                if !self.lock_grants().agent {
                    return reply.reject(prohibited).await;
                }
                match self.handle.channel_open_agent().await {
                    Ok(user) => {
                        reply.accept().await;
                        self.relay(user, channel).await;
                    }
                    Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
                }
            }
            Incoming::X11 {
                channel,
                originator_address,
                originator_port,
                reply,
            } => {
                if !self.lock_grants().x11 {
                    return reply.reject(prohibited).await;
                }
                match self
                    .handle
                    .channel_open_x11(originator_address, originator_port)
                    .await
                {
                    Ok(user) => {
                        reply.accept().await;
                        self.relay(user, channel).await;
                    }
                    Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
                }
            }
            Incoming::Forwarded {
                channel,
                connected_address,
                connected_port,
                originator_address,
                originator_port,
                reply,
            } => {
                let granted = {
                    let grants = self.lock_grants();
                    grants
                        .remote_ports
                        .contains(&(connected_address.clone(), connected_port))
                        || grants
                            .remote_ports
                            .contains(&(connected_address.clone(), 0))
                };
                if !granted {
                    return reply.reject(prohibited).await;
                }
                let event = self
                    .event("session.forward.connection")
                    .with("kind", "remote")
                    .with("address", connected_address.as_str())
                    .with("port", connected_port)
                    .with(
                        "originator",
                        format!("{originator_address}:{originator_port}"),
                    );
                if self.shared.audit.record(event).await.is_err() {
                    return reply.reject(prohibited).await;
                }
                match self
                    .handle
                    .channel_open_forwarded_tcpip(
                        connected_address,
                        connected_port,
                        originator_address,
                        originator_port,
                    )
                    .await
                {
                    Ok(user) => {
                        reply.accept().await;
                        self.relay(user, channel).await;
                    }
                    Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
                }
            }
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

    /// Ends the session when the certificate expires (warning first), is revoked, when the
    /// target leg goes away, or when the bastion shuts down.
    async fn watch(self: Arc<Self>) {
        let config = &self.shared.config.session;
        let expiry = self.admitted.valid_before;
        let warn_before = config.expiry_warning.as_secs();
        let mut warned = false;
        let mut revocation = tokio::time::interval(config.revocation_check.as_duration());
        revocation.tick().await;
        let mut shutdown = self.shared.shutdown.clone();
        let mut target_closed = self.upstream.clone();
        let ended = self.ended.notified();
        tokio::pin!(ended);
        loop {
            let warn_in = until_unix(expiry.saturating_sub(warn_before));
            let expire_in = until_unix(expiry);
            tokio::select! {
                _ = &mut ended => return,
                _ = tokio::time::sleep(warn_in), if !warned => {
                    warned = true;
                    let left = until_unix(expiry).as_secs();
                    self.notify_person(&expiry_warning(left)).await;
                    self.shared.audit.record_or_log(
                        self.event("session.expiry_warning").with("expires_at", expiry)
                    ).await;
                }
                _ = tokio::time::sleep(expire_in) => {
                    self.terminate("your certificate expired").await;
                    return;
                }
                _ = revocation.tick() => {
                    match self.shared.issuer.revoked(&self.user_cert).await {
                        Ok(Some(why)) => {
                            self.terminate(&format!("your certificate was revoked ({why})")).await;
                            return;
                        }
                        Ok(None) => {}
                        Err(err) => tracing::warn!(session = %self.id, "cannot check revocation: {err}"),
                    }
                }
                changed = shutdown.changed() => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.terminate("the bastion is shutting down").await;
                        return;
                    }
                }
                kill = self.live.kill_requested() => {
                    self.terminate(&kill.message()).await;
                    kill.done();
                    return;
                }
                closed = target_gone(&mut target_closed) => {
                    if closed {
                        self.terminate("the target closed the connection").await;
                    }
                    return;
                }
            }
        }
    }
}

/// The warning sent before a certificate expires.
fn expiry_warning(seconds_left: u64) -> String {
    format!(
        "your certificate expires in {seconds_left}s; this session will end then. Get a new certificate and reconnect."
    )
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

/// Resolves when the target leg, once up, closes (`true`), or never came up (`false`).
async fn target_gone(state: &mut watch::Receiver<UpstreamState>) -> bool {
    let up = match state.wait_for(|s| s.is_some()).await {
        Ok(s) => match &*s {
            Some(Ok(up)) => Some(up.clone()),
            _ => None,
        },
        Err(_) => None,
    };
    let Some(up) = up else {
        return std::future::pending().await;
    };
    let mut closed = up.closed.clone();
    let _ = closed.wait_for(|c| *c).await;
    true
}

/// How long until unix time `at` (zero if past).
fn until_unix(at: u64) -> Duration {
    let target = UNIX_EPOCH + Duration::from_secs(at);
    target
        .duration_since(jitssh_core::clock::now())
        .unwrap_or(Duration::ZERO)
}
