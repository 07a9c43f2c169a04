//! The session's task: the one owner of a session's state.
//!
//! It holds the [`Phase`] and everything that goes with it (the target leg, the channels the
//! target opens, the recording, the forwarding granted, whether `recording.degraded` was
//! audited), waits for whatever can happen next (a message from the session's channels or
//! connection, the certificate's expiry, a revocation check, shutdown, an auditor, the target
//! going away, the one-second recording flush), turns it into an [`Event`] and carries out
//! the [`Effect`] the pure transition ([`Phase::on`]) returns. Slow work (connecting, telling
//! the person, flushing, revocation checks, opening channels towards the person) runs in
//! tasks it spawns, which report back as messages, so the session always answers promptly.

use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use russh::{ChannelOpenFailure, Disconnect};
use tokio::sync::{mpsc, watch};

use super::grants::{Grants, Opening};
use super::state::{Effect, EndReason, Event, LegError, Phase, expiry_warning};
use super::{Leg, Message, Session, notify_link};
use crate::admin::{KillRequest, Registration};
use crate::recorded::SessionRecording;
use crate::recording::{OnFailure, SessionMeta};
use crate::upstream::{self, ConnectRequest, Incoming, SessionCertTemplate, Upstream};

/// How long a terminated session waits for the person's client to confirm its channels
/// closed before disconnecting.
const CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How often the recording is flushed.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

/// The outcome of setting up a session: the target leg (or why not) and the recording
/// (`None` when unrecorded or refused).
pub(super) struct Setup {
    leg: Result<(Arc<Upstream>, mpsc::Receiver<Incoming>), LegError>,
    recording: Option<Arc<SessionRecording>>,
}

/// The session's state, owned by its task.
struct Task {
    session: Arc<Session>,
    phase: Phase,
    /// What channels see of the target leg.
    leg: watch::Sender<Leg>,
    registration: Registration,
    messages: mpsc::Receiver<Message>,
    upstream: Option<Arc<Upstream>>,
    incoming: Option<mpsc::Receiver<Incoming>>,
    recording: Option<Arc<SessionRecording>>,
    grants: Grants,
    degraded_audited: bool,
    warned: bool,
    flushing: bool,
    checking_revocation: bool,
    shutdown_seen: bool,
    /// Whether the person was told why the session ends and both legs were closed.
    closed: bool,
    /// An auditor's request to end the session, answered once it ended.
    kill: Option<KillRequest>,
    started: Instant,
}

/// Starts the task of `session`, and the setup of its target leg and recording.
pub(super) fn spawn(
    session: Arc<Session>,
    registration: Registration,
    leg: watch::Sender<Leg>,
    messages: mpsc::Receiver<Message>,
) {
    tokio::spawn(set_up_leg(session.clone()));
    let task = Task {
        session,
        phase: Phase::Connecting,
        leg,
        registration,
        messages,
        upstream: None,
        incoming: None,
        recording: None,
        grants: Grants::default(),
        degraded_audited: false,
        warned: false,
        flushing: false,
        checking_revocation: false,
        shutdown_seen: false,
        closed: false,
        kill: None,
        started: Instant::now(),
    };
    tokio::spawn(task.run());
}

/// Whether the task goes on after handling something.
enum Flow {
    Continue,
    Stop,
}

impl Task {
    async fn run(mut self) {
        let config = &self.session.shared.config.session;
        let expiry = self.session.admitted.valid_before;
        let warn_before = config.expiry_warning.as_secs();
        let mut revocation = tokio::time::interval(config.revocation_check.as_duration());
        revocation.tick().await;
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut shutdown = self.session.shared.shutdown.clone();
        loop {
            let warn_in = until_unix(expiry.saturating_sub(warn_before));
            let expire_in = until_unix(expiry);
            let ending = self.phase.is_ending();
            let live = matches!(self.phase, Phase::Live);
            let target_closed = self.upstream.as_ref().map(|up| up.closed.clone());
            let flow = tokio::select! {
                // Messages first: a grant must be in place before a channel it allows,
                // which the target may open right after.
                biased;
                message = self.messages.recv() => match message {
                    Some(message) => self.handle(message).await,
                    None => Flow::Stop,
                },
                _ = tokio::time::sleep(expire_in), if !ending => {
                    self.event(Event::End(EndReason::Expired)).await
                }
                kill = self.registration.kill_requested(), if self.kill.is_none() => {
                    let reason = EndReason::Killed(kill.message());
                    self.kill = Some(kill);
                    self.event(Event::End(reason)).await
                }
                changed = shutdown.changed(), if !ending && !self.shutdown_seen => {
                    if changed.is_err() || *shutdown.borrow() {
                        self.shutdown_seen = true;
                        self.event(Event::End(EndReason::Shutdown)).await
                    } else {
                        Flow::Continue
                    }
                }
                () = closed(target_closed), if live => {
                    self.event(Event::End(EndReason::TargetClosed)).await
                }
                Some(item) = next(&mut self.incoming), if live => {
                    self.route(item);
                    Flow::Continue
                }
                _ = tokio::time::sleep(warn_in), if !self.warned && !ending => {
                    self.warned = true;
                    self.warn(expiry);
                    Flow::Continue
                }
                _ = revocation.tick(), if !ending && !self.checking_revocation => {
                    self.check_revocation();
                    Flow::Continue
                }
                _ = flush.tick(), if !ending && self.recording.is_some() && !self.flushing => {
                    self.flush();
                    Flow::Continue
                }
            };
            if let Flow::Stop = flow {
                return;
            }
        }
    }

    async fn handle(&mut self, message: Message) -> Flow {
        match message {
            Message::Leg(setup) => {
                // The recording is the session's whether or not the target came up: its end
                // seals it.
                self.recording = setup.recording;
                match setup.leg {
                    Ok((upstream, incoming)) => {
                        if !matches!(self.phase, Phase::Connecting) {
                            // The session's end was decided before its leg came up.
                            close_upstream(Some(upstream));
                            return Flow::Continue;
                        }
                        self.upstream = Some(upstream);
                        self.incoming = Some(incoming);
                        self.event(Event::LegReady).await
                    }
                    Err(why) => self.event(Event::LegFailed(why)).await,
                }
            }
            Message::Grant(grant) => {
                self.grants.apply(grant);
                Flow::Continue
            }
            Message::End(reason) => self.event(Event::End(reason)).await,
            Message::ClientGone(outcome, done) => {
                let flow = self.event(Event::ClientGone(outcome)).await;
                let _ = done.send(());
                flow
            }
            Message::Flushed(flushed) => {
                self.flushing = false;
                self.audit_quota();
                match flushed {
                    Ok(None) => Flow::Continue,
                    Ok(Some(degraded)) => {
                        self.audit_degraded(degraded);
                        Flow::Continue
                    }
                    Err(why) => {
                        self.event(Event::End(EndReason::RecordingFailed(why)))
                            .await
                    }
                }
            }
            Message::Revocation(verdict) => {
                self.checking_revocation = false;
                match verdict {
                    Ok(Some(why)) => self.event(Event::End(EndReason::Revoked(why))).await,
                    Ok(None) => Flow::Continue,
                    Err(err) => {
                        tracing::warn!(session = %self.session.id, "cannot check revocation: {err}");
                        Flow::Continue
                    }
                }
            }
            Message::Closed => {
                self.closed = true;
                if let Some(kill) = self.kill.take() {
                    kill.done();
                }
                Flow::Continue
            }
        }
    }

    /// Moves to the next phase and carries out its effect.
    async fn event(&mut self, event: Event) -> Flow {
        let step = self.phase.on(event);
        self.phase = step.next;
        match step.effect {
            Effect::None => {
                // An auditor's request that came after the end was decided.
                if self.phase.is_ending()
                    && self.closed
                    && let Some(kill) = self.kill.take()
                {
                    kill.done();
                }
                Flow::Continue
            }
            Effect::GoLive => {
                let upstream = self.upstream.clone();
                if let Some(upstream) = upstream {
                    self.leg.send_replace(Leg::Up {
                        upstream,
                        recording: self.recording.clone(),
                    });
                }
                Flow::Continue
            }
            Effect::ReportLegFailure(why) => {
                self.leg.send_replace(Leg::Failed(why));
                Flow::Continue
            }
            Effect::Close(reason) => {
                tracing::info!(session = %self.session.id, "ending session: {reason}");
                let (session, upstream) = (self.session.clone(), self.upstream.clone());
                tokio::spawn(async move {
                    close(&session, &reason, upstream).await;
                    let _ = session.messages.send(Message::Closed).await;
                });
                Flow::Continue
            }
            Effect::Finish(reason) => {
                self.finish(reason).await;
                Flow::Stop
            }
        }
    }

    /// Records the end: seals the recording and writes `session.end`. The session is listed
    /// as ending meanwhile and unregistered only after, so whoever finds it gone from the live
    /// list finds its recording sealed and its end recorded.
    async fn finish(&mut self, reason: EndReason) {
        let session = self.session.clone();
        self.registration.ending();
        close_upstream(self.upstream.take());
        let reason = reason.to_string();
        let mut event = session
            .event("session.end")
            .with("reason", reason.as_str())
            .with("duration_ms", self.started.elapsed().as_millis() as u64);
        if let Some(recording) = self.recording.clone() {
            // What the writer found since the last one-second flush (a session shorter than a
            // second has had none) is audited before the end.
            let flushing = recording.clone();
            if let Ok(Ok(Some(degraded))) =
                tokio::task::spawn_blocking(move || flushing.flush()).await
            {
                self.audit_degraded_now(&degraded).await;
            }
            let why = reason.clone();
            let finishing = recording.clone();
            let summary = tokio::task::spawn_blocking(move || finishing.finish(&why))
                .await
                .ok()
                .flatten();
            // After the writer drained its queue: a quota it reached last is known now.
            if let Some(event) = quota_event(&session, &recording) {
                session.shared.audit.record_or_log(event).await;
            }
            if let Some(summary) = summary {
                if let Some(uploads) = &session.shared.recording.uploads {
                    uploads.finished(&summary.dir);
                }
                event = event
                    .with("recording", summary.dir.display().to_string())
                    .with("sealed", summary.sealed)
                    .with("bytes_in", summary.bytes_in)
                    .with("bytes_out", summary.bytes_out);
                if let Some(failure) = &summary.failure {
                    // Found only while sealing (the session ended before a flush saw it).
                    if session.shared.recording.policy.on_failure == OnFailure::Continue {
                        self.audit_degraded_now(failure).await;
                    }
                    event = event.with("recording_failure", failure.as_str());
                }
            }
        }
        session.shared.audit.record_or_log(event).await;
        self.registration.close();
        if let Some(kill) = self.kill.take() {
            kill.done();
        }
    }

    /// Routes a channel the target opens (agent, X11, remote forward) to the person, if the
    /// session was granted that kind of forwarding; anything else is rejected.
    fn route(&self, item: Incoming) {
        let allowed = self.grants.allows(match &item {
            Incoming::Agent { .. } => Opening::Agent,
            Incoming::X11 { .. } => Opening::X11,
            Incoming::Forwarded {
                connected_address,
                connected_port,
                ..
            } => Opening::Forwarded(connected_address, *connected_port),
        });
        tokio::spawn(open_towards_person(self.session.clone(), item, allowed));
    }

    /// Warns every open channel that the certificate expires soon, and audits it.
    fn warn(&self, expiry: u64) {
        let session = self.session.clone();
        tokio::spawn(async move {
            let left = until_unix(expiry).as_secs();
            session.notify_person(&expiry_warning(left)).await;
            session
                .shared
                .audit
                .record_or_log(
                    session
                        .event("session.expiry_warning")
                        .with("expires_at", expiry),
                )
                .await;
        });
    }

    fn check_revocation(&mut self) {
        self.checking_revocation = true;
        let session = self.session.clone();
        tokio::spawn(async move {
            let verdict = session.shared.issuer.revoked(&session.user_cert).await;
            let _ = session.messages.send(Message::Revocation(verdict)).await;
        });
    }

    fn flush(&mut self) {
        let Some(recording) = self.recording.clone() else {
            return;
        };
        self.flushing = true;
        let session = self.session.clone();
        tokio::spawn(async move {
            let flushed = tokio::task::spawn_blocking(move || recording.flush())
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
            let _ = session.messages.send(Message::Flushed(flushed)).await;
        });
    }

    /// Audits `recording.quota` once the session's recording reached a quota.
    fn audit_quota(&self) {
        let Some(recording) = &self.recording else {
            return;
        };
        if let Some(event) = quota_event(&self.session, recording) {
            let audit = self.session.shared.audit.clone();
            tokio::spawn(async move { audit.record_or_log(event).await });
        }
    }

    /// Audits `recording.degraded` (once per session): the recording failed and the
    /// `continue` policy lets the session go on unrecorded.
    fn audit_degraded(&mut self, degraded: String) {
        if std::mem::replace(&mut self.degraded_audited, true) {
            return;
        }
        tracing::error!(session = %self.session.id, "recording degraded: {degraded}");
        let session = self.session.clone();
        tokio::spawn(async move {
            session
                .shared
                .audit
                .record_or_log(
                    session
                        .event("recording.degraded")
                        .with("reason", degraded.as_str()),
                )
                .await;
        });
    }

    async fn audit_degraded_now(&mut self, degraded: &str) {
        if std::mem::replace(&mut self.degraded_audited, true) {
            return;
        }
        tracing::error!(session = %self.session.id, "recording degraded: {degraded}");
        self.session
            .shared
            .audit
            .record_or_log(
                self.session
                    .event("recording.degraded")
                    .with("reason", degraded),
            )
            .await;
    }
}

/// The `recording.quota` event, once the recording reached a quota.
fn quota_event(
    session: &Session,
    recording: &SessionRecording,
) -> Option<jitssh_core::audit::AuditEvent> {
    let hit = recording.take_quota()?;
    Some(
        session
            .event("recording.quota")
            .with("quota", hit.kind.as_str())
            .with("limit", hit.limit)
            .with("recorded", hit.recorded)
            .with("reason", hit.to_string()),
    )
}

/// Tells the person why the session ends and disconnects both legs: every channel is closed
/// the way a finished command is (notice on stderr, exit status 255, close), so clients print
/// the notice before they exit.
async fn close(session: &Session, reason: &EndReason, upstream: Option<Arc<Upstream>>) {
    let text = format!("session ended: {reason}");
    for link in session.links() {
        notify_link(&link, &text).await;
        let _ = session.handle.exit_status_request(link.user_id, 255).await;
        let _ = link.user.eof().await;
        let _ = link.user.close().await;
    }
    let deadline = Instant::now() + CLOSE_GRACE;
    while session.channel_count() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = session
        .handle
        .disconnect(Disconnect::ByApplication, text, String::new())
        .await;
    close_upstream(upstream);
}

/// Disconnects the target leg (in the background: the target may be slow to hear it).
fn close_upstream(upstream: Option<Arc<Upstream>>) {
    if let Some(up) = upstream {
        tokio::spawn(async move {
            let _ = up
                .handle
                .disconnect(Disconnect::ByApplication, "session ended", "")
                .await;
        });
    }
}

/// Resolves when the target leg closes (never without one).
async fn closed(state: Option<watch::Receiver<bool>>) {
    match state {
        Some(mut closed) => {
            let _ = closed.wait_for(|c| *c).await;
        }
        None => std::future::pending().await,
    }
}

/// The next channel the target opens (never without a leg).
async fn next(incoming: &mut Option<mpsc::Receiver<Incoming>>) -> Option<Incoming> {
    match incoming {
        Some(incoming) => incoming.recv().await,
        None => std::future::pending().await,
    }
}

/// Opens the matching channel towards the person and relays it, or rejects the target's.
async fn open_towards_person(session: Arc<Session>, item: Incoming, allowed: bool) {
    let prohibited = ChannelOpenFailure::AdministrativelyProhibited;
    let handle = session.handle.clone();
    let (opened, channel, reply) = match item {
        Incoming::Agent { channel, reply } => {
            if !allowed {
                return reply.reject(prohibited).await;
            }
            (handle.channel_open_agent().await, channel, reply)
        }
        Incoming::X11 {
            channel,
            originator_address,
            originator_port,
            reply,
        } => {
            if !allowed {
                return reply.reject(prohibited).await;
            }
            let opened = handle
                .channel_open_x11(originator_address, originator_port)
                .await;
            (opened, channel, reply)
        }
        Incoming::Forwarded {
            channel,
            connected_address,
            connected_port,
            originator_address,
            originator_port,
            reply,
        } => {
            if !allowed {
                return reply.reject(prohibited).await;
            }
            let event = session
                .event("session.forward.connection")
                .with("kind", "remote")
                .with("address", connected_address.as_str())
                .with("port", connected_port)
                .with(
                    "originator",
                    format!("{originator_address}:{originator_port}"),
                );
            if session.shared.audit.record(event).await.is_err() {
                return reply.reject(prohibited).await;
            }
            let opened = handle
                .channel_open_forwarded_tcpip(
                    connected_address,
                    connected_port,
                    originator_address,
                    originator_port,
                )
                .await;
            (opened, channel, reply)
        }
    };
    match opened {
        Ok(user) => {
            reply.accept().await;
            session.relay(user, channel).await;
        }
        Err(_) => reply.reject(ChannelOpenFailure::ConnectFailed).await,
    }
}

/// Opens the target leg and starts the recording, together, and reports to the session's
/// task. A leg the task no longer wants (the person left first) is closed here.
async fn set_up_leg(session: Arc<Session>) {
    let (connected, recording) = tokio::join!(connect(&session), start_recording(&session));
    let setup = match (connected, recording) {
        (Ok(up), Ok(recording)) => Setup {
            leg: Ok((Arc::new(up.upstream), up.incoming)),
            recording,
        },
        (Ok(up), Err(why)) => {
            let up = Arc::new(up.upstream);
            tokio::spawn(async move {
                let _ = up
                    .handle
                    .disconnect(Disconnect::ByApplication, "recording unavailable", "")
                    .await;
            });
            Setup {
                leg: Err(why),
                recording: None,
            }
        }
        (Err(why), recording) => Setup {
            leg: Err(why),
            recording: recording.ok().flatten(),
        },
    };
    if let Err(mpsc::error::SendError(Message::Leg(late))) =
        session.messages.send(Message::Leg(setup)).await
    {
        // The session's task is gone (the person left first): close what was set up.
        if let Ok((upstream, _)) = late.leg {
            close_upstream(Some(upstream));
        }
        if let Some(recording) = late.recording {
            let reason = EndReason::ClientDisconnected.to_string();
            let uploads = session.shared.recording.uploads.clone();
            tokio::task::spawn_blocking(move || {
                if let (Some(summary), Some(uploads)) = (recording.finish(&reason), uploads) {
                    uploads.finished(&summary.dir);
                }
            });
        }
    }
}

/// Opens the target leg and audits `session.start` (or `session.target_failed`).
async fn connect(session: &Session) -> Result<upstream::Connected, LegError> {
    let config = &session.shared.config;
    let name = &session.admitted.login_target.target;
    let Some(target) = config.target(name) else {
        return Err(LegError::UnknownTarget(name.clone()));
    };
    let request = ConnectRequest {
        target: target.name.clone(),
        address: target.address.clone(),
        cert_request: SessionCertTemplate {
            user_cert: session.user_cert.clone(),
            client: session.peer.map(|p| p.ip()),
            login: session.admitted.login_target.login.clone(),
            session_id: session.id.clone(),
            ttl: config.session.cert_ttl.as_duration(),
        },
        timeout: config.session.connect_timeout.as_duration(),
        channel_buffer: config.limits.channel_buffer,
    };
    match upstream::connect(request, session.shared.issuer.clone()).await {
        Ok(connected) => {
            let up = &connected.upstream;
            let event = session
                .event("session.start")
                .with("target_address", target.address.as_str())
                .with("session_cert_serial", up.session_cert_serial)
                .with("bastion_address", up.local_address.to_string())
                .with("peer", session.peer.map(|p| p.to_string()));
            if let Err(err) = session.shared.audit.record(event).await {
                let _ = up
                    .handle
                    .disconnect(Disconnect::ByApplication, "audit unavailable", "")
                    .await;
                return Err(LegError::AuditUnavailable(Arc::new(err)));
            }
            Ok(connected)
        }
        Err(err) => {
            let why = err.to_string();
            tracing::warn!(session = %session.id, "target leg failed: {why}");
            session
                .shared
                .audit
                .record_or_log(
                    session
                        .event("session.target_failed")
                        .with("reason", why.as_str()),
                )
                .await;
            Err(LegError::Unreachable(Arc::new(err)))
        }
    }
}

/// Starts the session's recording. `Ok(None)` when it failed and the `continue` policy lets
/// the session go on unrecorded (audited); `Err` when the session must not go on.
async fn start_recording(session: &Session) -> Result<Option<Arc<SessionRecording>>, LegError> {
    let person = session.admitted.person.clone();
    let meta = SessionMeta {
        id: session.id.clone(),
        user: person
            .split_whitespace()
            .next()
            .unwrap_or(person.as_str())
            .to_string(),
        key_id: person.clone(),
        cert_serial: session.admitted.serial,
        login: session.admitted.login_target.login.clone(),
        target: session.admitted.login_target.target.clone(),
        client_addr: session.peer.map(|p| p.to_string()).unwrap_or_default(),
        started_at: jitssh_core::unix_now(),
    };
    let shared = session.shared.clone();
    let started =
        tokio::task::spawn_blocking(move || SessionRecording::start(&shared.recording, meta))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r);
    match started {
        Ok(recording) => Ok(Some(Arc::new(recording))),
        Err(why) if session.shared.recording.policy.on_failure == OnFailure::Continue => {
            tracing::error!(session = %session.id, "session not recorded: {why}");
            session
                .shared
                .audit
                .record_or_log(
                    session
                        .event("recording.degraded")
                        .with("reason", why.as_str()),
                )
                .await;
            Ok(None)
        }
        Err(why) => {
            tracing::error!(session = %session.id, "cannot record, refusing the session: {why}");
            session
                .shared
                .audit
                .record_or_log(
                    session
                        .event("recording.failed")
                        .with("reason", why.as_str()),
                )
                .await;
            Err(LegError::NotRecorded(why))
        }
    }
}

/// How long until unix time `at` (zero if past).
fn until_unix(at: u64) -> Duration {
    let target = UNIX_EPOCH + Duration::from_secs(at);
    target
        .duration_since(jitssh_core::clock::now())
        .unwrap_or(Duration::ZERO)
}
