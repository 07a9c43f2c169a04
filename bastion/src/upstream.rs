//! The bastion's leg to a target: a fresh key and a session certificate per session, and a
//! target that must prove itself with a host certificate from our host CA naming it.
//! No trust on first use, no plain host keys.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jitssh_core::cert::{self, Expectations};
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::{Algorithm, HashAlg, PrivateKey};
use jitssh_core::unix_now;
use russh::client::{self, AuthResult, ChannelOpenHandle, DisconnectReason, Msg};
use russh::keys::PublicKeyOrCertificate;
use russh::{Channel, Preferred};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

use crate::issuer::{Issuer, IssuerError, SessionCertRequest};

/// Channels the target opens towards us that are queued for the session to route.
const INCOMING_QUEUE: usize = 8;

/// Why the bastion could not open a session on the target. Shown to the person.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// TCP connect failed.
    #[error("cannot connect to {target} ({address}): {source}")]
    Connect {
        /// Target name.
        target: String,
        /// Its address.
        address: String,
        /// Why.
        source: std::io::Error,
    },
    /// Connecting and logging in took too long.
    #[error("timed out connecting to {0}")]
    Timeout(String),
    /// The target's host key or certificate was refused.
    #[error("{0}")]
    HostKey(String),
    /// No session certificate.
    #[error("no session certificate for {target}: {source}")]
    Issuer {
        /// Target name.
        target: String,
        /// Why.
        source: IssuerError,
    },
    /// The target refused the session certificate.
    #[error("{target} refused the session certificate for login {login:?}")]
    AuthRefused {
        /// Target name.
        target: String,
        /// Login.
        login: String,
    },
    /// SSH protocol failure.
    #[error("SSH error with {target}: {source}")]
    Ssh {
        /// Target name.
        target: String,
        /// Why.
        source: russh::Error,
    },
}

/// A channel the target opened towards the bastion (agent, X11, remote forward), to be
/// routed to the person if the session asked for it.
pub enum Incoming {
    /// An agent connection (`auth-agent@openssh.com`).
    Agent {
        /// The target-side channel.
        channel: Channel<Msg>,
        /// Accept or reject it.
        reply: ChannelOpenHandle,
    },
    /// An X11 connection.
    X11 {
        /// The target-side channel.
        channel: Channel<Msg>,
        /// Originator address.
        originator_address: String,
        /// Originator port.
        originator_port: u32,
        /// Accept or reject it.
        reply: ChannelOpenHandle,
    },
    /// A connection to a remote-forwarded port.
    Forwarded {
        /// The target-side channel.
        channel: Channel<Msg>,
        /// The forwarded address.
        connected_address: String,
        /// The forwarded port.
        connected_port: u32,
        /// Originator address.
        originator_address: String,
        /// Originator port.
        originator_port: u32,
        /// Accept or reject it.
        reply: ChannelOpenHandle,
    },
}

/// What is needed to open the target leg of one session.
pub struct ConnectRequest {
    /// Target name (its host certificate must name it).
    pub target: String,
    /// `host:port`.
    pub address: String,
    /// The person's certificate and what the session may do, for the session certificate.
    pub cert_request: SessionCertTemplate,
    /// Limit for TCP connect, handshake, certificate and login together.
    pub timeout: Duration,
    /// Messages buffered per channel.
    pub channel_buffer: usize,
}

/// The parts of a [`SessionCertRequest`] known before connecting.
pub struct SessionCertTemplate {
    /// The person's certificate.
    pub user_cert: jitssh_core::ssh_key::Certificate,
    /// The person's address.
    pub client: Option<IpAddr>,
    /// Login on the target.
    pub login: String,
    /// Session id.
    pub session_id: String,
    /// Session certificate lifetime.
    pub ttl: Duration,
}

/// An authenticated connection to a target.
pub struct Upstream {
    /// The russh client handle.
    pub handle: client::Handle<TargetHandler>,
    /// Channels the target opens towards us.
    pub incoming: tokio::sync::Mutex<mpsc::Receiver<Incoming>>,
    /// Becomes `true` when the target connection ends.
    pub closed: watch::Receiver<bool>,
    /// Serial of the session certificate used.
    pub session_cert_serial: u64,
    /// The bastion's address as the target sees it.
    pub local_address: IpAddr,
}

/// Connects, verifies the target's host certificate, obtains a session certificate and logs
/// in. The certificate is minted while the key exchange runs, to save a round of latency.
pub async fn connect(
    request: ConnectRequest,
    issuer: Arc<dyn Issuer>,
) -> Result<Upstream, UpstreamError> {
    let target = request.target.clone();
    tokio::time::timeout(request.timeout, connect_inner(request, issuer))
        .await
        .map_err(|_| UpstreamError::Timeout(target))?
}

async fn connect_inner(
    request: ConnectRequest,
    issuer: Arc<dyn Issuer>,
) -> Result<Upstream, UpstreamError> {
    let target = request.target.clone();
    let stream = TcpStream::connect(&request.address)
        .await
        .map_err(|source| UpstreamError::Connect {
            target: target.clone(),
            address: request.address.clone(),
            source,
        })?;
    let _ = stream.set_nodelay(true);
    let local_address = stream
        .local_addr()
        .map_err(|source| UpstreamError::Connect {
            target: target.clone(),
            address: request.address.clone(),
            source,
        })?
        .ip();

    let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).map_err(|e| {
        UpstreamError::Ssh {
            target: target.clone(),
            source: russh::Error::from(e),
        }
    })?;
    let template = request.cert_request;
    let login = template.login.clone();
    let mint = issuer.session_cert(SessionCertRequest {
        user_cert: template.user_cert,
        client: template.client,
        login: template.login,
        target: target.clone(),
        session_id: template.session_id,
        subject: key.public_key().key_data().clone(),
        source_address: Some(local_address),
        ttl: template.ttl,
    });

    let verdict = Arc::new(Mutex::new(None));
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
    let (closed_tx, closed_rx) = watch::channel(false);
    let handler = TargetHandler {
        target: target.clone(),
        issuer: issuer.clone(),
        verdict: verdict.clone(),
        incoming: incoming_tx,
        closed: closed_tx,
    };
    let config = Arc::new(client_config(request.channel_buffer));
    let handshake = client::connect_stream(config, stream, handler);
    let (handshake, minted) = tokio::join!(handshake, mint);
    let mut handle = handshake.map_err(|source| {
        match verdict.lock().unwrap_or_else(|p| p.into_inner()).take() {
            Some(why) => UpstreamError::HostKey(why),
            None => UpstreamError::Ssh {
                target: target.clone(),
                source,
            },
        }
    })?;
    let cert = minted.map_err(|source| UpstreamError::Issuer {
        target: target.clone(),
        source,
    })?;
    let session_cert_serial = cert.serial();
    let auth = handle
        .authenticate_openssh_cert(login.clone(), Arc::new(key), cert)
        .await
        .map_err(|source| UpstreamError::Ssh {
            target: target.clone(),
            source,
        })?;
    match auth {
        AuthResult::Success => Ok(Upstream {
            handle,
            incoming: tokio::sync::Mutex::new(incoming_rx),
            closed: closed_rx,
            session_cert_serial,
            local_address,
        }),
        AuthResult::Failure { .. } => Err(UpstreamError::AuthRefused { target, login }),
    }
}

fn client_config(channel_buffer: usize) -> client::Config {
    let preferred = Preferred {
        host_key_certificates: Preferred::DEFAULT.key.clone(),
        ..Preferred::default()
    };
    client::Config {
        preferred,
        channel_buffer_size: channel_buffer,
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
        nodelay: true,
        ..client::Config::default()
    }
}

/// The russh client handler of a target connection.
pub struct TargetHandler {
    target: String,
    issuer: Arc<dyn Issuer>,
    /// Why the host key was refused, for the error shown to the person.
    verdict: Arc<Mutex<Option<String>>>,
    incoming: mpsc::Sender<Incoming>,
    closed: watch::Sender<bool>,
}

impl TargetHandler {
    async fn host_verdict(&self, key: &PublicKeyOrCertificate) -> Result<(), String> {
        let cert = match key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                return Err(format!(
                    "target {} presented a plain host key ({}); a host certificate from the host CA is required",
                    self.target,
                    key.fingerprint(HashAlg::Sha256)
                ));
            }
            PublicKeyOrCertificate::Certificate(cert) => cert,
        };
        cert::verify(
            cert,
            &Expectations {
                trusted_cas: &self.issuer.trust().host_cas,
                cert_type: CertType::Host,
                now: unix_now(),
                principal: &self.target,
                peer: None,
            },
        )
        .map_err(|rejection| {
            format!(
                "host certificate of target {} refused: {rejection}",
                self.target
            )
        })?;
        match self.issuer.revoked(cert).await {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(format!(
                "host certificate of target {} is revoked ({why})",
                self.target
            )),
            Err(err) => Err(format!(
                "cannot check revocation of the host certificate of {}: {err}",
                self.target
            )),
        }
    }

    fn queue(&self, incoming: Incoming) {
        // A full queue or a finished session drops the reply, which rejects the channel.
        let _ = self.incoming.try_send(incoming);
    }
}

impl client::Handler for TargetHandler {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = self.host_verdict(server_public_key).await;
        let accepted = verdict.is_ok();
        if let Err(why) = verdict {
            tracing::warn!(target_name = %self.target, "{why}");
            *self.verdict.lock().unwrap_or_else(|p| p.into_inner()) = Some(why);
        }
        Ok(accepted)
    }

    async fn server_channel_open_agent_forward(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.queue(Incoming::Agent { channel, reply });
        Ok(())
    }

    async fn server_channel_open_x11(
        &mut self,
        channel: Channel<Msg>,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.queue(Incoming::X11 {
            channel,
            originator_address: originator_address.to_string(),
            originator_port,
            reply,
        });
        Ok(())
    }

    async fn server_channel_open_forwarded_tcpip(
        &mut self,
        channel: Channel<Msg>,
        connected_address: &str,
        connected_port: u32,
        originator_address: &str,
        originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        self.queue(Incoming::Forwarded {
            channel,
            connected_address: connected_address.to_string(),
            connected_port,
            originator_address: originator_address.to_string(),
            originator_port,
            reply,
        });
        Ok(())
    }

    // Targets have no business opening these towards the bastion: dropping the reply
    // rejects the channel.
    async fn server_channel_open_session(
        &mut self,
        _channel: Channel<Msg>,
        _reply: ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn server_channel_open_direct_tcpip(
        &mut self,
        _channel: Channel<Msg>,
        _host_to_connect: &str,
        _port_to_connect: u32,
        _originator_address: &str,
        _originator_port: u32,
        _reply: ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn server_channel_open_direct_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        _reply: ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn server_channel_open_forwarded_streamlocal(
        &mut self,
        _channel: Channel<Msg>,
        _socket_path: &str,
        _reply: ChannelOpenHandle,
        _session: &mut client::Session,
    ) -> Result<(), Self::Error> {
        Ok(())
    }

    async fn disconnected(
        &mut self,
        reason: DisconnectReason<Self::Error>,
    ) -> Result<(), Self::Error> {
        let _ = self.closed.send(true);
        match reason {
            DisconnectReason::ReceivedDisconnect(_) => Ok(()),
            DisconnectReason::Error(e) => Err(e),
        }
    }
}
