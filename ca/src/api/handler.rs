//! One SSH connection to the CA API: authentication, exec requests, stdin, replies.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use jitssh_shared::accept::{Connection, Ticket};
use jitssh_shared::ssh_key::{HashAlg, PublicKey};
use russh::server::ChannelOpenHandle;
use russh::server::{
    Auth, Config, Handle, Handler, Msg, PublicKeyOffer, Session, VerifiedPublicKey,
};
use russh::{Channel, ChannelId};

use super::Identity;
use super::commands::{self, CommandOutput};
use super::stdin::Stdin;
use crate::authority::Authority;

/// How long `cert` waits for a key on stdin before using the authenticated key.
const STDIN_GRACE: Duration = Duration::from_millis(700);
/// Commands running at once on one connection.
const MAX_CHANNELS: usize = 8;
/// How long a command waits for its stdin to end once data has started.
const STDIN_LIMIT: Duration = Duration::from_secs(10);

/// Who `user` authenticating with `key` is, if anyone. Pure lookup in the current policy and
/// config: user `host` is any key (commands check enrolment), user `bastion` a configured
/// bastion key, anyone else a policy user whose name matches and who owns the key.
pub fn identity_for(authority: &Authority, user: &str, key: &PublicKey) -> Option<Identity> {
    match user {
        "host" => Some(Identity::Host { key: key.clone() }),
        "bastion" => authority
            .config()
            .bastion_keys
            .iter()
            .any(|k| k.key_data() == key.key_data())
            .then(|| Identity::Bastion { key: key.clone() }),
        name => {
            let policy = authority.policy();
            let owner = policy.user_by_key(key)?;
            (owner.name == name).then(|| Identity::User {
                name: name.to_string(),
                key: key.clone(),
            })
        }
    }
}

/// Serves one accepted TCP connection until it ends. The accept loop closes its socket if it
/// does not authenticate within the handshake timeout; authentication promotes its ticket.
pub async fn serve_connection(
    authority: Arc<Authority>,
    config: Arc<Config>,
    accepted: Connection,
) {
    let Connection {
        stream,
        peer,
        ticket,
    } = accepted;
    // Replies are small and latency-bound: never let Nagle hold them back.
    let _ = stream.set_nodelay(true);
    let (audit_to, authenticated) = (authority.clone(), ticket.clone());
    let handler = ApiHandler {
        authority,
        peer,
        identity: None,
        stdins: HashMap::new(),
        ticket,
    };
    match russh::server::run_stream(config, stream, handler).await {
        Ok(session) => {
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
    let event = jitssh_shared::audit::AuditEvent::new("api.login_refused")
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
    peer: SocketAddr,
    identity: Option<Identity>,
    stdins: HashMap<ChannelId, Arc<Stdin>>,
    /// The connection's place at the accept loop, promoted on login.
    ticket: Arc<Ticket>,
}

impl ApiHandler {
    fn who(&self) -> String {
        match &self.identity {
            Some(Identity::User { name, .. }) => name.clone(),
            Some(Identity::Host { key }) => format!("host({})", key.fingerprint(HashAlg::Sha256)),
            Some(Identity::Bastion { .. }) => "bastion".into(),
            None => "-".into(),
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
        Ok(
            match identity_for(&self.authority, user, offer.public_key) {
                Some(_) => Auth::Accept,
                None => Auth::reject(),
            },
        )
    }

    async fn auth_publickey(
        &mut self,
        user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        match identity_for(&self.authority, user, key.public_key) {
            Some(identity) => {
                self.identity = Some(identity);
                self.ticket.promote();
                tracing::info!(peer = %self.peer, user, key = %key.public_key.fingerprint(HashAlg::Sha256), "API login");
                Ok(Auth::Accept)
            }
            None => {
                tracing::info!(peer = %self.peer, user, key = %key.public_key.fingerprint(HashAlg::Sha256), "API login refused: unknown key");
                Ok(Auth::reject())
            }
        }
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
        let line = String::from_utf8_lossy(&data[..data.len().min(200)]).to_string();
        let command_stdin = stdin.clone();
        tokio::spawn(async move {
            let stdin = command_stdin;
            let output = match parsed {
                Err(output) => output,
                Ok(command) => {
                    let input = if command.reads_stdin() {
                        stdin.collect(STDIN_GRACE, STDIN_LIMIT).await
                    } else {
                        Ok(Vec::new())
                    };
                    match input {
                        Err(why) => CommandOutput::fail(why),
                        Ok(input) => {
                            let task = tokio::task::spawn_blocking(move || {
                                commands::run(&authority, &identity, command, &input, Some(peer))
                            });
                            task.await.unwrap_or_else(|err| {
                                CommandOutput::fail(format!("internal error: {err}"))
                            })
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
