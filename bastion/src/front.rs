//! The front door: the russh server handler of one person's connection.
//!
//! Authentication is publickey with a user certificate only; every trust-model check is
//! ours ([`crate::admission`]). A refused person is told why: refusals advertise
//! `keyboard-interactive` as a next method, and when the client tries it the bastion
//! disconnects with the reason, which OpenSSH prints even at `LogLevel=ERROR`.
//!
//! After login, each channel request is checked against the certificate and the bastion's
//! policy ([`crate::requests`]), audited, forwarded to the target and answered with the
//! target's answer. The callbacks only queue that work: it runs on the channel's own task
//! ([`crate::answers`]), and session and `direct-tcpip` channels are opened on a task too, so
//! a slow target never holds the person's connection loop (other channels, keepalives).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jitssh_core::audit::AuditEvent;
use jitssh_core::ssh_key::{Certificate, HashAlg};
use jitssh_core::unix_now;
use jitssh_server::accept::Ticket;
use russh::keys::ssh_key;
use russh::server::{
    Auth, ChannelOpenHandle, Msg, PublicKeyOffer, Session as SshSession, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, ChannelOpenFailure, Disconnect, MethodKind, MethodSet, Pty, Sig};

use crate::admission::{self, Admitted, Context, JumpAdmitted, Refusal};
use crate::answers::{Answers, GlobalAnswers, GlobalJob, Job, Kind, Target, Unavailable};
use crate::config::Target as ConfiguredTarget;
use crate::door::{Accepted, Door, JumpAccepted, Opened};
use crate::login::BadUserString;
use crate::names::printable;
use crate::pump::{self, TapError, TargetSide, UserSide};
use crate::recorded;
use crate::recording::ChannelKind;
use crate::requests::{self, Asked, Start};
use crate::session::{EndReason, Grant, Link, Session, Shared};

/// How long the bastion waits for the target to answer a forwarded request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest host name in a forwarding request.
const MAX_HOST: usize = 255;

/// Errors that end a connection.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    /// SSH protocol failure.
    #[error(transparent)]
    Ssh(#[from] russh::Error),
}

/// What the accept loop and the handler share about one connection.
#[derive(Default)]
pub struct Slot {
    /// The connection's handle, set right after the SSH session starts.
    pub handle: OnceLock<russh::server::Handle>,
    /// The session, once a login was accepted.
    pub session: OnceLock<Arc<Session>>,
}

/// The handler of one connection: a thin adapter that checks, queues and forwards. Before
/// login its state is a [`Door`]; after, the session's own task owns the session's state
/// ([`crate::session`]) and each session channel's task its requests ([`crate::answers`]).
pub struct Front {
    shared: Arc<Shared>,
    peer: Option<SocketAddr>,
    slot: Arc<Slot>,
    /// The connection's place at the accept loop: promoted on login (see
    /// [`jitssh_server::accept`]); `None` for the inner connection of a jump.
    ticket: Option<Arc<Ticket>>,
    /// Set when this is the inner connection of a jump: the target and the outer login.
    inner: Option<Inner>,
    /// Set once a jump login (no target) was confirmed on this connection.
    jump: Option<Arc<JumpConn>>,
    /// Set once a web console sign-in (`ssh web@bastion`) was confirmed on this connection.
    web: Option<crate::web::WebAdmitted>,
    /// The way in: refusals, the accepted login.
    door: Door,
    /// The answer queue of each session channel (see [`crate::answers`]).
    answers: std::collections::HashMap<ChannelId, Answers>,
    /// The answer queue of global requests (remote forwarding), started on first use.
    global: Option<GlobalAnswers>,
}

impl Front {
    /// A handler for a connection from `peer`, admitted with `ticket`.
    pub fn new(
        shared: Arc<Shared>,
        peer: Option<SocketAddr>,
        slot: Arc<Slot>,
        ticket: Option<Arc<Ticket>>,
    ) -> Front {
        Front {
            shared,
            peer,
            slot,
            ticket,
            inner: None,
            jump: None,
            web: None,
            door: Door::default(),
            answers: std::collections::HashMap::new(),
            global: None,
        }
    }

    /// The handler of the inner connection of a jump to `inner.target` (see [`crate::jump`]).
    pub fn inner(
        shared: Arc<Shared>,
        peer: Option<SocketAddr>,
        slot: Arc<Slot>,
        inner: Inner,
    ) -> Front {
        let mut front = Front::new(shared, peer, slot, None);
        front.inner = Some(inner);
        front
    }

    fn session(&self) -> Option<Arc<Session>> {
        self.slot.session.get().cloned()
    }

    /// Refuses, and offers keyboard-interactive so an interactive client comes back to hear
    /// why (see the module docs).
    fn refuse(&mut self, refusal: Refusal) -> Auth {
        self.door.refuse(refusal);
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(
                &[MethodKind::PublicKey, MethodKind::KeyboardInteractive][..],
            )),
            partial_success: false,
        }
    }

    /// Refuses a plain key (only certificates open the bastion). The first one of a
    /// connection is audited with its fingerprint, the others are logged: offers are answered
    /// at once, so one connection must not turn into a burst of audit records.
    async fn refuse_plain_key(&mut self, user: &str, key: &ssh_key::PublicKey) -> Auth {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        if self.door.has_refused(&Refusal::PlainKey) {
            tracing::info!(user = %printable(user), key = %fingerprint, "plain key refused");
        } else {
            let event = self
                .refused_event(user, &Refusal::PlainKey)
                .with("key", fingerprint);
            self.shared.audit.record_or_log(event).await;
        }
        self.refuse(Refusal::PlainKey)
    }

    fn refused_event(&self, user: &str, refusal: &Refusal) -> AuditEvent {
        AuditEvent::new("login.refused")
            .with("user", printable(user))
            .with("peer", self.peer.map(|p| p.to_string()))
            .with("reason", refusal.to_string())
    }

    async fn check_certificate(&self, user: &str, cert: &Certificate) -> Result<Admitted, Refusal> {
        self.admit_with(user, cert, admission::admit).await
    }

    /// A jump login: every check that does not depend on a target.
    async fn check_jump(&self, user: &str, cert: &Certificate) -> Result<JumpAdmitted, Refusal> {
        self.admit_with(user, cert, admission::admit_jump).await
    }

    /// Runs a pure admission (`admit`) against this connection's context, then the
    /// revocation check: one place for what every kind of login is checked against.
    async fn admit_with<T>(
        &self,
        user: &str,
        cert: &Certificate,
        admit: impl FnOnce(&str, &Certificate, &Context) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let config = &self.shared.config;
        let configured = |name: &str| config.target(name).map(|t| t.name.clone());
        let admitted = admit(
            user,
            cert,
            &Context {
                trusted_user_cas: &self.shared.issuer.trust().user_cas,
                now: unix_now(),
                peer: self.peer.map(|p| p.ip()),
                configured_target: &configured,
                forwarding: &config.forwarding,
            },
        )?;
        admission::revocation_verdict(self.shared.issuer.revoked(cert).await)?;
        Ok(admitted)
    }

    /// Admits a login: the inner login of a jump (just LOGIN, the target is the jump's
    /// destination, and the same person and key as the outer login), a jump login (no
    /// target), or `LOGIN@TARGET`.
    async fn check_login(&self, user: &str, cert: &Certificate) -> Result<Login, Refusal> {
        if let Some(inner) = &self.inner {
            if user.contains('@') {
                return Err(BadUserString::TargetGiven.into());
            }
            let login = crate::login::parse_login(user)?;
            admission::same_person(&inner.outer, cert)?;
            let wanted = format!("{login}@{}", inner.target.name);
            return self
                .check_certificate(&wanted, cert)
                .await
                .map(Login::Session);
        }
        if user == crate::web::SIGNIN_USER {
            return self
                .admit_with(user, cert, crate::web::admit_auditor)
                .await
                .map(|admitted| Login::Web(Box::new(admitted)));
        }
        if user.contains('@') {
            self.check_certificate(user, cert).await.map(Login::Session)
        } else {
            self.check_jump(user, cert).await.map(Login::Jump)
        }
    }
}

/// What a certificate was admitted for.
enum Login {
    /// A session to a target.
    Session(Admitted),
    /// A jump connection (no target yet).
    Jump(JumpAdmitted),
    /// A web console sign-in.
    Web(Box<crate::web::WebAdmitted>),
}

/// The inner connection of a jump: where it goes and who opened the jump.
pub struct Inner {
    /// The target, from the `direct-tcpip` destination.
    pub target: ConfiguredTarget,
    /// The outer (jump) login's certificate: the inner login must be the same person's.
    pub outer: Certificate,
    /// The jump connection's id, in the inner login's audit record.
    pub jump_id: String,
}

/// A confirmed jump login on this connection.
struct JumpConn {
    id: String,
    cert: Certificate,
    person: String,
    /// Inner connections open at once are bounded like a session's channels.
    inner_slots: Arc<tokio::sync::Semaphore>,
    /// Dropped with the connection's handler: ends the watch on the outer certificate.
    _alive: tokio::sync::oneshot::Sender<()>,
}

/// Waits for the target's answer to a forwarded request; no answer counts as a refusal.
async fn answered(reply: tokio::sync::oneshot::Receiver<bool>) -> bool {
    matches!(
        tokio::time::timeout(REQUEST_TIMEOUT, reply).await,
        Ok(Ok(true))
    )
}

fn reply(session: &mut SshSession, channel: ChannelId, ok: bool) -> Result<(), FrontError> {
    if ok {
        session.channel_success(channel)?;
    } else {
        session.channel_failure(channel)?;
    }
    Ok(())
}

/// A one-line, bounded rendering of a command for audit records.
fn command_text(command: &[u8]) -> String {
    const MAX: usize = 4096;
    let text = String::from_utf8_lossy(command);
    let mut out: String = text.chars().take(MAX).collect();
    if text.chars().count() > MAX {
        out.push('…');
    }
    out
}

impl russh::server::Handler for Front {
    type Error = FrontError;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(&[MethodKind::PublicKey][..])),
            partial_success: false,
        })
    }

    /// A plain key is refused at its offer, before the client signs with it: a client that
    /// offers its agent's plain keys before its certificate moves on at once (no "Server
    /// accepts key", no rejection delay, no PuTTY "refused signature despite accepting key").
    /// The refusal is audited and told like any other (see the module docs). Certificates
    /// go on to [`Self::auth_openssh_certificate`] once signed.
    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if offer.certificate.is_some() {
            return Ok(Auth::Accept);
        }
        Ok(self.refuse_plain_key(user, offer.public_key).await)
    }

    /// Not reached for keys refused at the offer; kept so that a signed plain key (a client
    /// that signs without asking first) is refused and audited the same way.
    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.refuse_plain_key(user, key.public_key).await)
    }

    async fn auth_openssh_certificate(
        &mut self,
        user: &str,
        certificate: &ssh_key::Certificate,
    ) -> Result<Auth, Self::Error> {
        if !self.door.knocking() {
            return Ok(Auth::reject());
        }
        match self.check_login(user, certificate).await {
            Ok(Login::Web(admitted)) => {
                let event = AuditEvent::new("web.signin.link")
                    .with("person", admitted.person.as_str())
                    .with("serial", admitted.serial)
                    .with("peer", self.peer.map(|p| p.to_string()))
                    .with("valid_before", admitted.valid_before);
                if let Err(err) = self.shared.audit.record(event).await {
                    tracing::error!("cannot write audit record, refusing login: {err}");
                    return Ok(Auth::reject());
                }
                self.door.accept_web(*admitted);
                Ok(Auth::Accept)
            }
            Ok(Login::Jump(admitted)) => {
                let id = crate::recording::new_session_id();
                let event = AuditEvent::new("login.jump")
                    .with("jump", id.as_str())
                    .with("person", admitted.person.as_str())
                    .with("serial", admitted.serial)
                    .with("login", admitted.login.as_str())
                    .with("peer", self.peer.map(|p| p.to_string()))
                    .with("valid_before", admitted.valid_before);
                if let Err(err) = self.shared.audit.record(event).await {
                    tracing::error!("cannot write audit record, refusing login: {err}");
                    return Ok(Auth::reject());
                }
                tracing::info!(jump = %id, person = %admitted.person, "jump login accepted");
                self.door.accept_jump(JumpAccepted {
                    id,
                    admitted,
                    cert: certificate.clone(),
                });
                Ok(Auth::Accept)
            }
            Ok(Login::Session(admitted)) => {
                let id = crate::recording::new_session_id();
                let event = AuditEvent::new("login.accepted")
                    .with("session", id.as_str())
                    .with("person", admitted.person.as_str())
                    .with("serial", admitted.serial)
                    .with("login", admitted.login_target.login.as_str())
                    .with("target", admitted.login_target.target.as_str())
                    .with("roles", admitted.roles.clone())
                    .with("peer", self.peer.map(|p| p.to_string()))
                    .with("valid_before", admitted.valid_before)
                    .with("jump", self.inner.as_ref().map(|i| i.jump_id.clone()));
                if let Err(err) = self.shared.audit.record(event).await {
                    tracing::error!("cannot write audit record, refusing login: {err}");
                    return Ok(Auth::reject());
                }
                tracing::info!(
                    session = %id,
                    person = %admitted.person,
                    serial = admitted.serial,
                    user = %admitted.login_target,
                    "login accepted"
                );
                self.door.accept(Accepted {
                    id,
                    admitted,
                    cert: certificate.clone(),
                });
                Ok(Auth::Accept)
            }
            Err(refusal) => {
                tracing::info!(user = %printable(user), "login refused: {refusal}");
                let event = self
                    .refused_event(user, &refusal)
                    .with("person", printable(certificate.key_id()))
                    .with("serial", certificate.serial());
                self.shared.audit.record_or_log(event).await;
                Ok(self.refuse(refusal))
            }
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let Some(message) = self.door.tell() else {
            return Ok(Auth::reject());
        };
        if let Some(handle) = self.slot.handle.get().cloned() {
            tokio::spawn(async move {
                let _ = handle
                    .disconnect(
                        Disconnect::NoMoreAuthMethodsAvailable,
                        message,
                        String::new(),
                    )
                    .await;
            });
        }
        // An empty info request: the client answers it while the disconnect goes out.
        Ok(Auth::Partial {
            name: Cow::Borrowed(""),
            instructions: Cow::Borrowed(""),
            prompts: Cow::Borrowed(&[]),
        })
    }

    async fn auth_succeeded(&mut self, session: &mut SshSession) -> Result<(), Self::Error> {
        let Accepted { id, admitted, cert } = match self.door.open() {
            Some(Opened::Session(accepted)) => accepted,
            Some(Opened::Web(admitted)) => {
                self.web = Some(admitted);
                if let Some(ticket) = &self.ticket {
                    ticket.promote();
                }
                return Ok(());
            }
            Some(Opened::Jump(JumpAccepted { id, admitted, cert })) => {
                let (alive, gone) = tokio::sync::oneshot::channel();
                tokio::spawn(crate::jump::watch(
                    session.handle(),
                    gone,
                    cert.clone(),
                    id.clone(),
                    self.shared.issuer.clone(),
                    self.shared.audit.clone(),
                    self.shared.config.session.revocation_check.as_duration(),
                ));
                self.jump = Some(Arc::new(JumpConn {
                    id,
                    cert,
                    person: admitted.person,
                    inner_slots: Arc::new(tokio::sync::Semaphore::new(
                        self.shared.config.limits.max_channels,
                    )),
                    _alive: alive,
                }));
                if let Some(ticket) = &self.ticket {
                    ticket.promote();
                }
                return Ok(());
            }
            None => return Err(russh::Error::NotAuthenticated.into()),
        };
        let started = Session::start(
            id,
            admitted,
            cert,
            self.peer,
            self.shared.clone(),
            session.handle(),
        );
        let _ = self.slot.session.set(started);
        if let Some(ticket) = &self.ticket {
            ticket.promote();
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        // Its task ends once its queued answers are out; a channel that could only explain
        // itself frees its place then.
        self.answers.remove(&channel);
        Ok(())
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if self.web.is_some() {
            reply.accept().await;
            return Ok(());
        }
        let Some(sess) = self.session() else {
            if self.jump.is_some() {
                reply
                    .reject(ChannelOpenFailure::Other {
                        code: 1,
                        reason: "bastion: a jump login (no target) opens no session: use ssh -J PERSON@bastion LOGIN@TARGET, or LOGIN@TARGET@bastion".into(),
                    })
                    .await;
            }
            return Ok(());
        };
        let Some(claim) = sess.claim_channel() else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let user_id = channel.id();
        let handle = session.handle();
        let (target_tx, target_rx) = tokio::sync::oneshot::channel();
        self.answers
            .insert(user_id, Answers::start(user_id, handle.clone(), target_rx));
        let relay_buffer = self.shared.config.limits.relay_buffer;
        // The target leg may still be connecting and the target may be slow to open a
        // channel: wait for them here, not in the connection's loop (see crate::answers).
        tokio::spawn(async move {
            let target =
                match sess.upstream().await {
                    Ok(up) => up.handle.channel_open_session().await.map_err(|source| {
                        Unavailable::Refused {
                            target: sess.admitted.login_target.target.clone(),
                            source,
                        }
                    }),
                    Err(why) => Err(Unavailable::Leg(why)),
                };
            let target = match target {
                Ok(target) => target,
                Err(why) => {
                    // Accepted, and when the command would start it explains on stderr and
                    // exits 255 (see crate::answers::verdict).
                    let _ = target_tx.send(Target::Unreachable(channel, why, claim));
                    reply.accept().await;
                    return;
                }
            };
            let (user_read, user_write) = channel.split();
            let (target_read, target_write) = target.split();
            let link = Arc::new(Link::new(
                user_id,
                Arc::new(target_write),
                Arc::new(user_write),
            ));
            sess.add_link(user_id, link.clone());
            let _ = target_tx.send(Target::Relayed(link.clone()));
            reply.accept().await;
            let ended = pump::run(
                UserSide {
                    read: user_read,
                    write: link.user.clone(),
                    id: user_id,
                    handle,
                },
                TargetSide {
                    read: target_read,
                    write: link.target.clone(),
                    exits: true,
                },
                link.replies.clone(),
                link.tap.clone(),
                relay_buffer,
            )
            .await;
            sess.remove_link(user_id);
            drop(claim);
            let finished = link
                .tap
                .lock()
                .map_err(|_| TapError::Poisoned)
                .and_then(|mut tap| tap.finish());
            if let pump::Ended::TapFailed(TapError::Protocol(why)) = ended {
                // The transfer could not be audited: this channel ended, the session goes on.
                let event = sess
                    .event("transfer.malformed")
                    .with("channel", user_id.number())
                    .with("reason", why.as_str());
                sess.shared.audit.record_or_log(event).await;
            } else if let pump::Ended::TapFailed(why) = ended {
                sess.end(EndReason::RecordingFailed(why.to_string())).await;
            } else if let Err(why) = finished {
                tracing::warn!(session = %sess.id, "cannot close a channel's recording: {why}");
            }
        });
        Ok(())
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host_to_connect: &str,
        port_to_connect: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        if let Some(jump) = self.jump.clone() {
            self.jump_to(jump, channel, host_to_connect, port_to_connect, reply)
                .await;
            return Ok(());
        }
        let Some(sess) = self.session() else {
            return Ok(());
        };
        let where_to = format!("{}:{port_to_connect}", printable(host_to_connect));
        if !sess.admitted.permissions.port_forwarding {
            let reason = forwarding_refusal(&self.shared.config.forwarding.port, "port");
            audit_denied(
                &sess,
                "direct-tcpip",
                Some(("destination", &where_to)),
                &reason,
            )
            .await;
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 1,
                    reason: format!("bastion: {reason}"),
                })
                .await;
            return Ok(());
        }
        let claim = sess.claim_channel();
        if host_to_connect.len() > MAX_HOST || port_to_connect > u32::from(u16::MAX) {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return Ok(());
        }
        let Some(claim) = claim else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return Ok(());
        };
        let (host, originator) = (host_to_connect.to_string(), originator_address.to_string());
        // The target leg and the target's answer are waited for here, not in the
        // connection's loop (see crate::answers).
        tokio::spawn(async move {
            let (host_to_connect, originator_address) = (host.as_str(), originator.as_str());
            let event = sess
                .event("session.forward.connection")
                .with("kind", "local")
                .with("destination", where_to.as_str())
                .with(
                    "originator",
                    format!("{}:{originator_port}", printable(originator_address)),
                );
            if sess.shared.audit.record(event).await.is_err() {
                reply
                    .reject(ChannelOpenFailure::AdministrativelyProhibited)
                    .await;
                return;
            }
            let up = match sess.upstream().await {
                Ok(up) => up,
                Err(why) => {
                    reply
                        .reject(ChannelOpenFailure::Other {
                            code: 2,
                            reason: format!("bastion: {why}"),
                        })
                        .await;
                    return;
                }
            };
            let target = up
                .handle
                .channel_open_direct_tcpip(
                    host_to_connect,
                    port_to_connect,
                    originator_address,
                    originator_port,
                )
                .await;
            match target {
                Ok(target) => {
                    reply.accept().await;
                    sess.relay(channel, target).await;
                    drop(claim);
                }
                Err(err) => {
                    reply
                        .reject(ChannelOpenFailure::Other {
                            code: 2,
                            reason: format!(
                                "bastion: {where_to} via {}: {err}",
                                sess.admitted.login_target.target
                            ),
                        })
                        .await;
                }
            }
        });
        Ok(())
    }

    async fn channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        reply: ChannelOpenHandle,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        reply
            .reject(ChannelOpenFailure::Other {
                code: 1,
                reason: "bastion: unix socket forwarding is not supported".into(),
            })
            .await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        modes: &[(Pty, u32)],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let Some(sess) = self.session() else {
            // `ssh web@bastion` asks for a terminal it does not need: no warning for that.
            return reply(session, channel, self.web.is_some());
        };
        let term = printable(term);
        let modes = modes.to_vec();
        let job = Job::new(Kind::Answered, move |link: Arc<Link>| async move {
            if !sess.admitted.permissions.pty {
                audit_denied(&sess, "pty", None, "certificate lacks permit-pty").await;
                return Some(false);
            }
            let answer = link.replies.expect();
            let sent = link
                .target
                .request_pty(
                    true, &term, col_width, row_height, pix_width, pix_height, &modes,
                )
                .await;
            let ok = sent.is_ok() && answered(answer).await;
            if ok && let Ok(mut pty) = link.pty.lock() {
                *pty = Some((term, col_width, row_height));
            }
            Some(ok)
        });
        self.queue(channel, job, session).await
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        variable_name: &str,
        variable_value: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let allowed = requests::env_allowed(
            variable_name,
            variable_value,
            &self.shared.config.session.env,
        );
        let (name, value) = (variable_name.to_string(), variable_value.to_string());
        let job = Job::new(Kind::Answered, move |link: Arc<Link>| async move {
            Some(allowed && link.target.set_env(false, name, value).await.is_ok())
        });
        self.queue(channel, job, session).await
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.start_command(channel, Asked::Shell, session).await
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.start_command(channel, Asked::Exec(data.to_vec()), session)
            .await
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        self.start_command(channel, Asked::Subsystem(name.to_string()), session)
            .await
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        pix_width: u32,
        pix_height: u32,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let Some(sess) = self.session() else {
            return Ok(());
        };
        // Queued, so it reaches the target after the pty request it resizes.
        let job = Job::new(Kind::Unanswered, move |link: Arc<Link>| async move {
            if let Ok(mut pty) = link.pty.lock()
                && let Some((_, cols, rows)) = pty.as_mut()
            {
                *cols = col_width;
                *rows = row_height;
            }
            let recorded = link
                .tap
                .lock()
                .map_err(|_| TapError::Poisoned)
                .and_then(|mut tap| tap.resize(col_width, row_height));
            if let Err(why) = recorded {
                sess.end(EndReason::RecordingFailed(why.to_string())).await;
            }
            let _ = link
                .target
                .window_change(col_width, row_height, pix_width, pix_height)
                .await;
            None
        });
        if let Some(answers) = self.answers.get(&channel) {
            answers.push(job).await;
        }
        Ok(())
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: Sig,
        _session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let job = Job::new(Kind::Unanswered, move |link: Arc<Link>| async move {
            let _ = link.target.signal(signal).await;
            None
        });
        if let Some(answers) = self.answers.get(&channel) {
            answers.push(job).await;
        }
        Ok(())
    }

    /// Answered through the channel's answer queue like the other requests (the patched
    /// russh does not answer from the returned `bool`, see vendor/russh/PATCHED.md).
    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        let Some(sess) = self.session() else {
            reply(session, channel, false)?;
            return Ok(false);
        };
        let refusal = (!sess.admitted.permissions.agent_forwarding)
            .then(|| forwarding_refusal(&self.shared.config.forwarding.agent, "agent"));
        let job = Job::new(Kind::Answered, move |link: Arc<Link>| async move {
            if let Some(reason) = refusal {
                deny_with_notice(&sess, &link, "agent", &reason).await;
                return Some(false);
            }
            let answer = link.replies.expect();
            let ok = link.target.agent_forward(true).await.is_ok() && answered(answer).await;
            if ok {
                sess.grant(Grant::Agent).await;
                sess.shared
                    .audit
                    .record_or_log(sess.event("session.forward").with("kind", "agent"))
                    .await;
            }
            Some(ok)
        });
        self.queue(channel, job, session).await?;
        Ok(false)
    }

    async fn x11_request(
        &mut self,
        channel: ChannelId,
        single_connection: bool,
        x11_auth_protocol: &str,
        x11_auth_cookie: &str,
        x11_screen_number: u32,
        session: &mut SshSession,
    ) -> Result<(), Self::Error> {
        let Some(sess) = self.session() else {
            return reply(session, channel, false);
        };
        let refusal = (!sess.admitted.permissions.x11_forwarding)
            .then(|| forwarding_refusal(&self.shared.config.forwarding.x11, "X11"));
        let (protocol, cookie) = (x11_auth_protocol.to_string(), x11_auth_cookie.to_string());
        let job = Job::new(Kind::Answered, move |link: Arc<Link>| async move {
            if let Some(reason) = refusal {
                deny_with_notice(&sess, &link, "x11", &reason).await;
                return Some(false);
            }
            let answer = link.replies.expect();
            let ok = link
                .target
                .request_x11(
                    true,
                    single_connection,
                    &protocol,
                    &cookie,
                    x11_screen_number,
                )
                .await
                .is_ok()
                && answered(answer).await;
            if ok {
                sess.grant(Grant::X11).await;
                sess.shared
                    .audit
                    .record_or_log(sess.event("session.forward").with("kind", "x11"))
                    .await;
            }
            Some(ok)
        });
        self.queue(channel, job, session).await
    }

    /// Answered later through the global answer queue (see [`crate::answers::GlobalAnswers`]):
    /// the target leg and the target's answer are waited for there.
    async fn tcpip_forward(
        &mut self,
        address: &str,
        port: &mut u32,
        session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        let Some(sess) = self.session() else {
            return Ok(false);
        };
        let permitted = sess.admitted.permissions.port_forwarding;
        let refusal = forwarding_refusal(&self.shared.config.forwarding.port, "port");
        let (address, requested) = (address.to_string(), *port);
        let job: GlobalJob = Box::pin(async move {
            let listen = format!("{}:{requested}", printable(&address));
            if !permitted {
                audit_denied(&sess, "tcpip-forward", Some(("listen", &listen)), &refusal).await;
                return None;
            }
            if address.len() > MAX_HOST || requested > u32::from(u16::MAX) {
                return None;
            }
            let up = sess.upstream().await.ok()?;
            // Granted before asking the target: it may forward a connection the moment it
            // listens, before its answer reaches us.
            sess.grant(Grant::RemotePort(address.clone(), requested))
                .await;
            let answer = tokio::time::timeout(
                REQUEST_TIMEOUT,
                up.handle.tcpip_forward(address.as_str(), requested),
            )
            .await;
            match answer {
                Ok(Ok(bound)) => {
                    let port = if requested == 0 {
                        sess.grant(Grant::RemotePortBound(address.clone(), bound))
                            .await;
                        bound
                    } else {
                        requested
                    };
                    sess.shared
                        .audit
                        .record_or_log(
                            sess.event("session.forward")
                                .with("kind", "remote")
                                .with("listen", format!("{}:{port}", printable(&address))),
                        )
                        .await;
                    Some((requested == 0).then_some(bound))
                }
                _ => {
                    sess.grant(Grant::RemotePortGone(address, requested)).await;
                    None
                }
            }
        });
        self.queue_global(job, session).await
    }

    /// Answered later through the global answer queue, like `tcpip_forward`.
    async fn cancel_tcpip_forward(
        &mut self,
        address: &str,
        port: u32,
        session: &mut SshSession,
    ) -> Result<bool, Self::Error> {
        let Some(sess) = self.session() else {
            return Ok(false);
        };
        let address = address.to_string();
        let job: GlobalJob = Box::pin(async move {
            let up = sess.upstream().await.ok()?;
            let cancelled = tokio::time::timeout(
                REQUEST_TIMEOUT,
                up.handle.cancel_tcpip_forward(address.as_str(), port),
            )
            .await;
            if !matches!(cancelled, Ok(Ok(()))) {
                return None;
            }
            sess.grant(Grant::RemotePortGone(address, port)).await;
            Some(None)
        });
        self.queue_global(job, session).await
    }
}

impl Front {
    /// A `direct-tcpip` on a jump connection: to a configured target it is terminated here
    /// and served like a login to that target (see [`crate::jump`]); anything else is
    /// refused (a jump login reaches configured targets only) and audited.
    async fn jump_to(
        &self,
        jump: Arc<JumpConn>,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        reply: ChannelOpenHandle,
    ) {
        let where_to = format!("{}:{port}", printable(host));
        let target = crate::jump::target_at(&self.shared.config, host, port).cloned();
        let (Some(target), Some(peer)) = (target, self.peer) else {
            let reason = "not a configured target: a jump login reaches configured targets only (by name or address, at the target's port)";
            let event = AuditEvent::new("jump.denied")
                .with("jump", jump.id.as_str())
                .with("person", jump.person.as_str())
                .with("destination", where_to.as_str())
                .with("reason", reason);
            self.shared.audit.record_or_log(event).await;
            reply
                .reject(ChannelOpenFailure::Other {
                    code: 1,
                    reason: format!("bastion: {where_to}: {reason}"),
                })
                .await;
            return;
        };
        let Ok(permit) = jump.inner_slots.clone().try_acquire_owned() else {
            reply.reject(ChannelOpenFailure::ResourceShortage).await;
            return;
        };
        let event = AuditEvent::new("jump.connection")
            .with("jump", jump.id.as_str())
            .with("person", jump.person.as_str())
            .with("destination", where_to.as_str())
            .with("target", target.name.as_str());
        if self.shared.audit.record(event).await.is_err() {
            reply
                .reject(ChannelOpenFailure::AdministrativelyProhibited)
                .await;
            return;
        }
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let config = shared.target_certs.config_for(&target).await;
            reply.accept().await;
            let slot = Arc::new(Slot::default());
            let inner = Inner {
                target,
                outer: jump.cert.clone(),
                jump_id: jump.id.clone(),
            };
            let front = Front::inner(shared.clone(), Some(peer), slot.clone(), inner);
            let buffer = shared.config.limits.relay_buffer;
            let auth_timeout = shared.config.limits.auth_timeout.as_duration();
            let watched = slot.clone();
            let serving = crate::jump::carry(channel.into_stream(), buffer, |stream| {
                serve(shared, config, stream, peer, slot, front)
            });
            tokio::pin!(serving);
            // The inner connection has the front door's pre-authentication deadline too.
            let finished = tokio::select! {
                () = &mut serving => true,
                () = tokio::time::sleep(auth_timeout) => false,
            };
            if !finished && watched.session.get().is_some() {
                serving.await;
            } else if !finished {
                tracing::info!(%peer, "inner connection of a jump: no login in time");
                // Told, when the SSH session is up; otherwise dropping `serving` ends it.
                if let Some(handle) = watched.handle.get().cloned() {
                    let _ = handle
                        .disconnect(
                            Disconnect::ByApplication,
                            "authentication timed out".into(),
                            String::new(),
                        )
                        .await;
                    let _ = tokio::time::timeout(Duration::from_secs(5), &mut serving).await;
                }
            }
            drop(permit);
        });
    }

    /// Queues a global request's `job` and tells russh its answer comes later; `false` (an
    /// answer now) when the queue is gone.
    async fn queue_global(
        &mut self,
        job: GlobalJob,
        session: &mut SshSession,
    ) -> Result<bool, FrontError> {
        let global = self
            .global
            .get_or_insert_with(|| GlobalAnswers::start(session.handle()));
        if !global.push(job).await {
            return Ok(false);
        }
        session.defer_global_reply();
        Ok(false)
    }

    /// Queues `job` on the channel's answer queue (see [`crate::answers`]); a channel
    /// without one (not a session channel, or the connection is ending) is refused at once.
    async fn queue(
        &self,
        channel: ChannelId,
        job: Job,
        session: &mut SshSession,
    ) -> Result<(), FrontError> {
        match self.answers.get(&channel) {
            Some(answers) if answers.push(job).await => Ok(()),
            _ => reply(session, channel, false),
        }
    }

    /// `shell`, `exec` and `subsystem`, one path: decided by [`requests::start`], audited,
    /// recorded, then forwarded; answered with the target's answer once it comes.
    async fn start_command(
        &mut self,
        channel: ChannelId,
        asked: Asked,
        session: &mut SshSession,
    ) -> Result<(), FrontError> {
        if let Some(admitted) = &self.web {
            // `ssh web@bastion`: the one-time URL, whatever was asked, then the channel ends.
            let (text, status) = crate::web::signin::message(self.shared.web.as_deref(), admitted);
            reply(session, channel, true)?;
            session.data(channel, text.into_bytes())?;
            session.exit_status_request(channel, status)?;
            session.eof(channel)?;
            session.close(channel)?;
            return Ok(());
        }
        let Some(sess) = self.session() else {
            return reply(session, channel, false);
        };
        let job = Job::new(Kind::Starts, move |link: Arc<Link>| async move {
            let forced = sess.admitted.force_command.clone();
            let Ok(start) = requests::start(&asked, forced.as_deref()) else {
                return Some(false);
            };
            let event = channel_event(&sess, asked.event_kind(), channel);
            let event = match &asked {
                Asked::Shell => event,
                Asked::Exec(command) => event.with("command", command_text(command)),
                Asked::Subsystem(name) => event.with("name", printable(name)),
            };
            if sess.shared.audit.record(event).await.is_err() {
                return Some(false);
            }
            let pty = recorded::pty(link.requested_pty());
            let kind = match &start {
                Start::Exec(command) => ChannelKind::Exec {
                    command: String::from_utf8_lossy(command).into_owned(),
                    pty: if matches!(asked, Asked::Subsystem(_)) {
                        None
                    } else {
                        pty
                    },
                },
                Start::Shell => ChannelKind::Shell { pty },
                Start::Subsystem(name) => ChannelKind::Subsystem {
                    name: printable(name),
                },
            };
            if !start_recording(&sess, &link, channel, kind).await {
                return Some(false);
            }
            let answer = link.replies.expect();
            let sent = match start {
                Start::Shell => link.target.request_shell(true).await,
                Start::Exec(command) => link.target.exec(true, command).await,
                Start::Subsystem(name) => link.target.request_subsystem(true, &name).await,
            };
            let ok = sent.is_ok() && answered(answer).await;
            if ok {
                sess.channel_started(&link);
            }
            Some(ok)
        });
        self.queue(channel, job, session).await
    }
}

/// Why a kind of forwarding is refused: the bastion's policy or the certificate.
fn forwarding_refusal(policy_allows: &bool, kind: &str) -> String {
    let extension = match kind {
        "port" => "permit-port-forwarding",
        "agent" => "permit-agent-forwarding",
        _ => "permit-X11-forwarding",
    };
    if *policy_allows {
        format!("{kind} forwarding is not permitted: your certificate lacks {extension}")
    } else {
        format!("{kind} forwarding is not permitted by the bastion's policy")
    }
}

/// The audit event of a channel request (shell, exec, subsystem), with the certificate's
/// `force-command` when it replaces what the person asked for.
fn channel_event(sess: &Session, kind: &str, channel: ChannelId) -> AuditEvent {
    let event = sess.event(kind).with("channel", channel.number());
    match &sess.admitted.force_command {
        Some(command) => event.with("forced_command", command.as_str()),
        None => event,
    }
}

/// Audits a refused request (`session.denied`), with one detail such as the destination.
async fn audit_denied(sess: &Session, request: &str, detail: Option<(&str, &str)>, reason: &str) {
    let mut event = sess
        .event("session.denied")
        .with("request", request)
        .with("reason", reason);
    if let Some((key, value)) = detail {
        event = event.with(key, value);
    }
    sess.shared.audit.record_or_log(event).await;
}

/// Audits a refused request and tells the person on the channel's stderr.
async fn deny_with_notice(sess: &Session, link: &Link, request: &str, reason: &str) {
    audit_denied(sess, request, None, reason).await;
    let notice = format!("[bastion] {reason}\r\n");
    let user = link.user.clone();
    tokio::spawn(async move {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            user.extended_data_bytes(1, notice.into_bytes()),
        )
        .await;
    });
}

/// Attaches a recorder to `link` before its command starts. `false` (and the session is
/// ended) when the recording cannot be written and the policy forbids going on.
async fn start_recording(
    sess: &Arc<Session>,
    link: &Arc<Link>,
    channel: ChannelId,
    kind: ChannelKind,
) -> bool {
    let terminal = !kind.is_transfer();
    match sess.record_channel(channel, kind) {
        Ok(Some(tap)) => {
            if let Ok(mut current) = link.tap.lock() {
                *current = sess.watched(tap, terminal);
            }
            true
        }
        Ok(None) => true,
        Err(why) => {
            sess.end(EndReason::RecordingFailed(why)).await;
            false
        }
    }
}

/// Runs `front` over `stream` (a TCP connection, or the channel of a terminated `ssh -J`,
/// see [`crate::jump`]) until it ends, then records the end of its session if it had one.
pub(crate) async fn serve<S>(
    shared: Arc<Shared>,
    config: Arc<russh::server::Config>,
    stream: S,
    peer: SocketAddr,
    slot: Arc<Slot>,
    front: Front,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let running = match russh::server::run_stream(config, stream, front).await {
        Ok(running) => running,
        Err(err) => {
            tracing::debug!(%peer, "connection setup failed: {err}");
            return;
        }
    };
    let _ = slot.handle.set(running.handle());
    let outcome = running.await;
    if let Some(session) = slot.session.get() {
        let outcome = match outcome {
            Ok(()) => EndReason::ClientDisconnected,
            Err(err) => EndReason::ConnectionError(err.to_string()),
        };
        session.finish(outcome).await;
    } else if let Err(err) = outcome {
        tracing::info!(%peer, "connection failed before login: {err}");
        if let Some(reason) = undecodable_credential(&err) {
            let event = jitssh_core::audit::AuditEvent::new("login.refused")
                .with("peer", peer.to_string())
                .with("reason", reason);
            shared.audit.record_or_log(event).await;
        }
    }
}

/// The refusal reason when a connection failed because the key or certificate the client
/// offered cannot be decoded (russh ends the connection before the handler sees it, e.g. a
/// certificate with a duplicated extension), so it is audited like any other refusal.
fn undecodable_credential(err: &FrontError) -> Option<String> {
    let FrontError::Ssh(err) = err;
    match err {
        russh::Error::SshKey(why) => Some(format!(
            "certificate refused: the offered key or certificate cannot be decoded ({why})"
        )),
        russh::Error::Keys(why) => Some(format!(
            "certificate refused: the offered key or certificate cannot be decoded ({why})"
        )),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undecodable_credential_is_a_refusal_to_audit() {
        let keys = FrontError::Ssh(russh::Error::Keys(russh::keys::Error::CouldNotReadKey));
        let reason = undecodable_credential(&keys).expect("a refusal");
        assert!(
            reason.starts_with(
                "certificate refused: the offered key or certificate cannot be decoded"
            ),
            "{reason}"
        );
    }

    #[test]
    fn other_connection_failures_are_not_refusals() {
        assert_eq!(
            undecodable_credential(&FrontError::Ssh(russh::Error::Disconnect)),
            None
        );
        assert_eq!(
            undecodable_credential(&FrontError::Ssh(russh::Error::HUP)),
            None
        );
    }
}
