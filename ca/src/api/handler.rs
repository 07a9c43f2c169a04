//! One SSH connection to the CA API: authentication, exec requests, stdin, replies.

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use jitssh_core::ssh_key::{HashAlg, PublicKey};
use jitssh_server::accept::{Connection, Ticket};
use russh::server::ChannelOpenHandle;
use russh::server::{
    Auth, Config, Handle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId, Disconnect, MethodKind, MethodSet};

use super::Identity;
use super::commands::{self, CommandOutput};
use super::stdin::Stdin;
use jitssh_authority::authority::Authority;

/// How long `cert` waits for a key on stdin before using the authenticated key.
const STDIN_GRACE: Duration = Duration::from_millis(700);
/// Commands running at once on one connection.
const MAX_CHANNELS: usize = 8;
/// How long a command waits for its stdin to end once data has started.
const STDIN_LIMIT: Duration = Duration::from_secs(10);
/// Distinct refusal reasons kept per connection (the latest is the explanation).
const MAX_REFUSALS_KEPT: usize = 3;

/// Who `user` authenticating with `key` is, or why they are refused (a reason they can act
/// on, that never names another key's owner). User `host` is any key (commands check
/// enrolment), user `sso` any key when SSO is configured (`login` signs the person in at the
/// identity provider), user `bastion` a configured bastion key, anyone else a policy user whose name
/// matches and who owns the key. A revoked key is refused whoever it claims to be, and a user
/// whose name is a revoked key id is refused too (every certificate for them would be revoked).
/// Reads the store: call it off the async runtime.
pub fn identity_for(
    authority: &Authority,
    user: &str,
    key: &PublicKey,
) -> Result<Identity, LoginRefusal> {
    let (identity, person) = match user {
        "host" => (Identity::Host { key: key.clone() }, None),
        "sso" if authority.config().sso.is_some() => (Identity::Sso { key: key.clone() }, None),
        "sso" => {
            return Err(LoginRefusal::unknown(
                "SSO is not configured on this CA ([sso] in ca.toml)",
            ));
        }
        "workload" => (Identity::Workload { key: key.clone() }, None),
        "bastion" => {
            let listed = authority
                .config()
                .bastion_keys
                .iter()
                .any(|k| k.key_data() == key.key_data());
            if !listed {
                return Err(LoginRefusal::unknown(
                    "this key is not a configured bastion key (bastion_keys)",
                ));
            }
            (Identity::Bastion { key: key.clone() }, None)
        }
        name => {
            let policy = authority.policy();
            let owner = policy.user_by_key(key);
            match owner {
                Some(owner) if owner.name == name => (
                    Identity::User {
                        name: name.to_string(),
                        key: key.clone(),
                    },
                    Some(name),
                ),
                _ => {
                    return Err(LoginRefusal {
                        reason: format!(
                            "key {} is not enrolled for {}",
                            key.fingerprint(HashAlg::Sha256),
                            printable(name)
                        ),
                        known_key: owner.is_some(),
                    });
                }
            }
        }
    };
    match authority.revoked_subject(key.key_data(), person) {
        Ok(None) => Ok(identity),
        Ok(Some(reason)) => Err(LoginRefusal {
            reason,
            known_key: true,
        }),
        Err(err) => {
            tracing::error!(%err, "cannot read revocations; refusing the login");
            Err(LoginRefusal::unknown(
                "the CA cannot check revocations right now; try again later",
            ))
        }
    }
}

/// Why a login to the CA API was refused.
#[derive(Debug, Clone)]
pub struct LoginRefusal {
    /// What the client is told.
    pub reason: String,
    /// The key is one the CA knows (enrolled or revoked): its refusals get full audit records
    /// of their own, while unknown keys, which anyone can make up, are aggregated per source.
    pub known_key: bool,
}

impl LoginRefusal {
    fn unknown(reason: &str) -> LoginRefusal {
        LoginRefusal {
            reason: reason.to_string(),
            known_key: false,
        }
    }
}

/// `text` cut to 64 characters with control characters replaced, for messages and logs.
fn printable(text: &str) -> String {
    text.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// Serves one accepted TCP connection until it ends. The accept loop closes its socket if it
/// does not authenticate within the handshake timeout; authentication promotes its ticket.
pub async fn serve_connection(
    authority: Arc<Authority>,
    config: Arc<Config>,
    sso: Option<Arc<crate::sso::Sso>>,
    accepted: Connection,
) {
    let Connection {
        stream,
        peer,
        ticket,
    } = accepted;
    // Replies are small and latency-bound: never let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let handle_slot = Arc::new(OnceLock::new());
    let (audit_to, authenticated) = (authority.clone(), ticket.clone());
    let handler = ApiHandler {
        authority,
        sso,
        peer,
        identity: None,
        stdins: HashMap::new(),
        refusals: Vec::new(),
        told: false,
        handle: handle_slot.clone(),
        ticket,
    };
    match russh::server::run_stream(config, stream, handler).await {
        Ok(session) => {
            let _ = handle_slot.set(session.handle());
            if let Err(err) = session.await {
                tracing::debug!(%peer, %err, "connection ended with an error");
                if !authenticated.is_authenticated()
                    && let Some(reason) = undecodable_credential(&err)
                {
                    audit_refusal(&audit_to, peer, reason).await;
                }
            }
        }
        Err(err) => tracing::debug!(%peer, %err, "connection setup failed"),
    }
}

/// The refusal reason when the key or certificate a client offered cannot be decoded: russh
/// ends the connection before any handler runs (e.g. a certificate with a repeated extension).
fn undecodable_credential(err: &russh::Error) -> Option<String> {
    match err {
        russh::Error::SshKey(why) => Some(format!(
            "the offered key or certificate cannot be decoded ({why})"
        )),
        russh::Error::Keys(why) => Some(format!(
            "the offered key or certificate cannot be decoded ({why})"
        )),
        _ => None,
    }
}

/// Writes an `api.login_refused` audit record (or logs why it cannot).
async fn audit_refusal(authority: &Arc<Authority>, peer: SocketAddr, reason: String) {
    let authority = authority.clone();
    let event = jitssh_core::audit::AuditEvent::new("api.login_refused")
        .with("peer", peer.to_string())
        .with("reason", reason);
    let written = tokio::task::spawn_blocking(move || authority.audit().append(event)).await;
    if !matches!(written, Ok(Ok(_))) {
        tracing::error!(%peer, "cannot audit a refused API login");
    }
}

/// Per-connection state.
pub struct ApiHandler {
    authority: Arc<Authority>,
    /// The SSO client, when configured (user `sso`).
    sso: Option<Arc<crate::sso::Sso>>,
    peer: SocketAddr,
    identity: Option<Identity>,
    stdins: HashMap<ChannelId, Arc<Stdin>>,
    /// Why logins on this connection were refused (distinct reasons, bounded).
    refusals: Vec<String>,
    /// Whether the client was already told why (keyboard-interactive).
    told: bool,
    /// The connection's handle, to disconnect with the reason.
    handle: Arc<OnceLock<Handle>>,
    /// The connection's place at the accept loop, promoted on login.
    ticket: Arc<Ticket>,
}

impl ApiHandler {
    fn who(&self) -> String {
        match &self.identity {
            Some(Identity::User { name, .. }) => name.clone(),
            Some(Identity::Host { key }) => format!("host({})", key.fingerprint(HashAlg::Sha256)),
            Some(Identity::Bastion { .. }) => "bastion".into(),
            Some(Identity::Sso { key }) => format!("sso({})", key.fingerprint(HashAlg::Sha256)),
            Some(Identity::Workload { key }) => {
                format!("workload({})", key.fingerprint(HashAlg::Sha256))
            }
            None => "-".into(),
        }
    }

    /// [`identity_for`] on a blocking thread (it reads the store).
    async fn lookup(&self, user: &str, key: &PublicKey) -> Result<Identity, LoginRefusal> {
        let authority = self.authority.clone();
        let (user, key) = (user.to_string(), key.clone());
        tokio::task::spawn_blocking(move || identity_for(&authority, &user, &key))
            .await
            .unwrap_or_else(|_| Err(LoginRefusal::unknown("internal error")))
    }

    /// Refuses a login: logs it, audits it (aggregated per source, see [`jitssh_authority::denials`];
    /// a known key, e.g. a revoked one, gets its own full record), and offers
    /// keyboard-interactive so an interactive client comes back to hear why (the answer is a
    /// disconnect carrying the reason, which OpenSSH prints even at `LogLevel=ERROR`).
    async fn refuse(&mut self, user: &str, key: &PublicKey, refusal: LoginRefusal) -> Auth {
        let why = refusal.reason;
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        tracing::info!(peer = %self.peer, user = %printable(user), key = %fingerprint, reason = %why, "API login refused");
        let seen = self.refusals.contains(&why);
        if !seen {
            // Audited in aggregate per source: one full record, then a summary per window.
            let due = self.authority.login_denials().note(
                self.peer.ip(),
                &fingerprint,
                false,
                refusal.known_key,
                std::time::Instant::now(),
                || {
                    jitssh_core::audit::AuditEvent::new("api.login_refused")
                        .with("user", printable(user))
                        .with("reason", why.as_str())
                },
            );
            if !due.is_empty() {
                let authority = self.authority.clone();
                let written = tokio::task::spawn_blocking(move || {
                    authority.audit().append_batch(due).map(|_| ())
                })
                .await;
                if !matches!(written, Ok(Ok(()))) {
                    tracing::error!("cannot audit a refused API login");
                }
            }
        }
        // The explanation is the latest reason; the list stays small and distinct.
        self.refusals.retain(|r| *r != why);
        if self.refusals.len() < MAX_REFUSALS_KEPT || seen {
            self.refusals.push(why);
        } else if let Some(last) = self.refusals.last_mut() {
            *last = why;
        }
        Auth::Reject {
            proceed_with_methods: Some(MethodSet::from(
                &[MethodKind::PublicKey, MethodKind::KeyboardInteractive][..],
            )),
            partial_success: false,
        }
    }
}

async fn reply(handle: &Handle, channel: ChannelId, output: CommandOutput) {
    if !output.stdout.is_empty() {
        let _ = handle.data(channel, output.stdout).await;
    }
    if !output.stderr.is_empty() {
        let _ = handle.extended_data(channel, 1, output.stderr).await;
    }
    let _ = handle.exit_status_request(channel, output.status).await;
    let _ = handle.eof(channel).await;
    let _ = handle.close(channel).await;
}

impl Handler for ApiHandler {
    type Error = russh::Error;

    async fn auth_none(&mut self, _user: &str) -> Result<Auth, Self::Error> {
        Ok(Auth::reject())
    }

    async fn auth_publickey_offered(
        &mut self,
        user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        if offer.certificate.is_some() {
            // The API takes enrolled plain keys only (certificates are refused after their
            // signature anyway): refused at the offer, quietly, so the client moves on to the
            // plain key without a "Server accepts key" and a rejection delay.
            return Ok(Auth::Reject {
                proceed_with_methods: None,
                partial_success: false,
            });
        }
        Ok(match self.lookup(user, offer.public_key).await {
            Ok(_) => Auth::Accept,
            Err(why) => self.refuse(user, offer.public_key, why).await,
        })
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        match self.lookup(user, key.public_key).await {
            Ok(identity) => {
                self.identity = Some(identity);
                self.ticket.promote();
                tracing::info!(peer = %self.peer, user, key = %key.public_key.fingerprint(HashAlg::Sha256), "API login");
                Ok(Auth::Accept)
            }
            Err(why) => Ok(self.refuse(user, key.public_key, why).await),
        }
    }

    async fn auth_keyboard_interactive<'a>(
        &'a mut self,
        _user: &str,
        _submethods: &str,
        _response: Option<russh::server::Response<'a>>,
    ) -> Result<Auth, Self::Error> {
        let (Some(why), false) = (self.refusals.last().cloned(), self.told) else {
            return Ok(Auth::reject());
        };
        self.told = true;
        if let Some(handle) = self.handle.get().cloned() {
            tokio::spawn(async move {
                let _ = handle
                    .disconnect(Disconnect::NoMoreAuthMethodsAvailable, why, String::new())
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

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.stdins.retain(|_, stdin| !stdin.is_done());
        if self.identity.is_none() || self.stdins.len() >= MAX_CHANNELS {
            return Ok(());
        }
        self.stdins.insert(channel.id(), Arc::new(Stdin::default()));
        reply.accept().await;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(stdin) = self.stdins.get(&channel) {
            stdin.push(data);
        }
        Ok(())
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(stdin) = self.stdins.get(&channel) {
            stdin.eof();
        }
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.stdins.remove(&channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _cols: u32,
        _rows: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)?;
        let handle = session.handle();
        tokio::spawn(async move {
            let message =
                "this is the jitssh CA API, it has no shell; try: ssh -p 2200 <you>@<ca> help";
            reply(&handle, channel, CommandOutput::fail(message)).await;
        });
        Ok(())
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        _name: &str,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_failure(channel)?;
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let (Some(identity), Some(stdin)) =
            (self.identity.clone(), self.stdins.get(&channel).cloned())
        else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        session.channel_success(channel)?;
        let handle = session.handle();
        let authority = self.authority.clone();
        let peer = self.peer.ip();
        let who = self.who();
        let parsed = commands::parse(data);
        let line = jitssh_authority::hosts::redact_tokens(&String::from_utf8_lossy(
            &data[..data.len().min(200)],
        ));
        let command_stdin = stdin.clone();
        let sso = self.sso.clone();
        tokio::spawn(async move {
            let stdin = command_stdin;
            let output = match parsed {
                Err(output) => output,
                Ok(commands::ApiCommand::Login(args))
                    if matches!(identity, Identity::Sso { .. }) =>
                {
                    let Identity::Sso { key } = identity else {
                        return;
                    };
                    super::sso::login(authority, sso, key, args, handle.clone(), channel, peer)
                        .await
                }
                Ok(command) => {
                    let input = if command.reads_stdin() {
                        stdin.collect(STDIN_GRACE, STDIN_LIMIT).await
                    } else {
                        Ok(Vec::new())
                    };
                    match input {
                        Err(why) => CommandOutput::fail(why),
                        Ok(input) => {
                            if let (
                                Identity::Host { key },
                                commands::ApiCommand::Join {
                                    token_file: Some(file),
                                    ..
                                },
                            ) = (&identity, &command)
                            {
                                // Async: the token's issuer keys may need fetching.
                                super::host_token::join(authority, key.clone(), file, input).await
                            } else if let Identity::Workload { key } = identity {
                                // Async: the token's issuer keys may need fetching.
                                super::workload::run(authority, key, command, input, Some(peer))
                                    .await
                            } else {
                                let task = tokio::task::spawn_blocking(move || {
                                    commands::run(
                                        &authority,
                                        &identity,
                                        command,
                                        &input,
                                        Some(peer),
                                    )
                                });
                                task.await.unwrap_or_else(|err| {
                                    CommandOutput::fail(format!("internal error: {err}"))
                                })
                            }
                        }
                    }
                }
            };
            tracing::info!(%peer, who, command = line, status = output.status, "API command");
            reply(&handle, channel, output).await;
            stdin.finish();
        });
        Ok(())
    }
}
