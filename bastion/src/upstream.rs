//! The bastion's leg to a target: a fresh key and a session certificate per session, and a
//! target that must prove itself with a host certificate from our host CA naming it.
//! No trust on first use, no plain host keys.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jitssh_core::cert::{self, Expectations, Rejection};
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::public::KeyData;
use jitssh_core::ssh_key::{Algorithm, Certificate, HashAlg, PrivateKey};
use jitssh_core::unix_now;
use russh::client::{self, AuthResult, ChannelOpenHandle, DisconnectReason, Msg};
use russh::keys::PublicKeyOrCertificate;
use russh::{Channel, Preferred, cipher};
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
    #[error(transparent)]
    HostKey(#[from] HostRefusal),
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

/// Why a target's host key was refused: the target must prove itself with a host
/// certificate from our host CA naming it, valid now and not revoked.
#[derive(Debug, thiserror::Error)]
pub enum HostRefusal {
    /// A plain host key (no trust on first use).
    #[error(
        "target {target} presented a plain host key ({fingerprint}); a host certificate from the host CA is required"
    )]
    PlainKey {
        /// Target name.
        target: String,
        /// The key's SHA-256 fingerprint.
        fingerprint: String,
    },
    /// The host certificate failed a check (CA, type, validity, principal).
    #[error("host certificate of target {target} refused: {rejection}")]
    Certificate {
        /// Target name.
        target: String,
        /// Which check.
        rejection: Rejection,
    },
    /// The host certificate was revoked.
    #[error("host certificate of target {target} is revoked ({why})")]
    Revoked {
        /// Target name.
        target: String,
        /// The CA's reason.
        why: String,
    },
    /// Revocation could not be checked (fail closed).
    #[error("cannot check revocation of the host certificate of {target}: {source}")]
    RevocationUnknown {
        /// Target name.
        target: String,
        /// Why.
        source: IssuerError,
    },
}

/// The checks of a target's host key that need no I/O: a certificate (not a plain key),
/// from a trusted host CA, of host type, valid `now`, naming `target`. Revocation is asked
/// of the CA afterwards.
pub fn check_host_key<'a>(
    key: &'a PublicKeyOrCertificate,
    trusted_cas: &[KeyData],
    now: u64,
    target: &str,
) -> Result<&'a Certificate, HostRefusal> {
    let cert = match key {
        PublicKeyOrCertificate::PublicKey { key, .. } => {
            return Err(HostRefusal::PlainKey {
                target: target.to_string(),
                fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
            });
        }
        PublicKeyOrCertificate::Certificate(cert) => cert,
    };
    cert::verify(
        cert,
        &Expectations {
            trusted_cas,
            cert_type: CertType::Host,
            now,
            principal: target,
            peer: None,
        },
    )
    .map_err(|rejection| HostRefusal::Certificate {
        target: target.to_string(),
        rejection,
    })?;
    Ok(cert)
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
    /// Becomes `true` when the target connection ends.
    pub closed: watch::Receiver<bool>,
    /// Serial of the session certificate used.
    pub session_cert_serial: u64,
    /// The bastion's address as the target sees it.
    pub local_address: IpAddr,
}

/// A target leg just opened: the connection, and the channels the target opens towards the
/// bastion (for the session's task to route).
pub struct Connected {
    /// The connection.
    pub upstream: Upstream,
    /// Channels the target opens towards us (agent, X11, remote forwards).
    pub incoming: mpsc::Receiver<Incoming>,
}

/// Connects, verifies the target's host certificate, obtains a session certificate and logs
/// in. The certificate is minted while the key exchange runs, to save a round of latency.
pub async fn connect(
    request: ConnectRequest,
    issuer: Arc<dyn Issuer>,
) -> Result<Connected, UpstreamError> {
    let target = request.target.clone();
    tokio::time::timeout(request.timeout, connect_inner(request, issuer))
        .await
        .map_err(|_| UpstreamError::Timeout(target))?
}

async fn connect_inner(
    request: ConnectRequest,
    issuer: Arc<dyn Issuer>,
) -> Result<Connected, UpstreamError> {
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
        AuthResult::Success => Ok(Connected {
            upstream: Upstream {
                handle,
                closed: closed_rx,
                session_cert_serial,
                local_address,
            },
            incoming: incoming_rx,
        }),
        AuthResult::Failure { .. } => Err(UpstreamError::AuthRefused { target, login }),
    }
}

/// The bastion's cipher order, AES-GCM first, on every leg. On the target leg the bastion is
/// the client, so its order decides; on the front door (and a terminated `ssh -J` connection)
/// the server makes its order decide (`server_cipher_preference`, vendor/russh/PATCHED.md)
/// rather than the client's, which puts chacha20-poly1305 first in OpenSSH. Every OpenSSH
/// built with OpenSSL since 6.2 has AES-GCM, and with AES-NI it costs the bastion (and the
/// target's sshd) a fraction of chacha20-poly1305 (the bench's CPU seconds per GiB,
/// docs/benchmarks.md). chacha20 and CTR stay for peers without GCM (Debian's paramiko 2.12
/// has only CTR and CBC).
pub(crate) const CIPHER_ORDER: &[cipher::Name] = &[
    cipher::AES_128_GCM,
    cipher::AES_256_GCM,
    cipher::CHACHA20_POLY1305,
    cipher::AES_256_CTR,
    cipher::AES_192_CTR,
    cipher::AES_128_CTR,
];

fn client_config(channel_buffer: usize) -> client::Config {
    let preferred = Preferred {
        host_key_certificates: Preferred::DEFAULT.key.clone(),
        cipher: std::borrow::Cow::Borrowed(CIPHER_ORDER),
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
    verdict: Arc<Mutex<Option<HostRefusal>>>,
    incoming: mpsc::Sender<Incoming>,
    closed: watch::Sender<bool>,
}

impl TargetHandler {
    async fn host_verdict(&self, key: &PublicKeyOrCertificate) -> Result<(), HostRefusal> {
        let trust = self.issuer.trust();
        let cert = check_host_key(key, &trust.host_cas, unix_now(), &self.target)?;
        match self.issuer.revoked(cert).await {
            Ok(None) => Ok(()),
            Ok(Some(why)) => Err(HostRefusal::Revoked {
                target: self.target.clone(),
                why,
            }),
            Err(source) => Err(HostRefusal::RevocationUnknown {
                target: self.target.clone(),
                source,
            }),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> PrivateKey {
        PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).expect("key")
    }

    fn host_cert(ca: &PrivateKey, subject: &PrivateKey, principal: &str) -> Certificate {
        let mut builder = jitssh_core::ssh_key::certificate::Builder::new(
            [7u8; 16],
            subject.public_key().key_data().clone(),
            0,
            u64::MAX,
        )
        .expect("builder");
        builder
            .serial(1)
            .and_then(|b| b.key_id("target"))
            .and_then(|b| b.cert_type(CertType::Host))
            .and_then(|b| b.valid_principal(principal))
            .expect("fields");
        builder.sign(ca).expect("sign")
    }

    #[test]
    fn a_plain_host_key_is_refused_naming_its_fingerprint() {
        let plain = PublicKeyOrCertificate::PublicKey {
            key: key().public_key().clone(),
            hash_alg: None,
        };
        let refusal = check_host_key(&plain, &[], 1_000, "web01").expect_err("refused");
        assert!(matches!(refusal, HostRefusal::PlainKey { .. }));
        assert!(refusal.to_string().contains("plain host key (SHA256:"));
    }

    #[test]
    fn a_host_certificate_from_our_ca_naming_the_target_passes() {
        let (ca, host) = (key(), key());
        let trusted = [ca.public_key().key_data().clone()];
        let presented = PublicKeyOrCertificate::Certificate(host_cert(&ca, &host, "web01"));
        assert!(check_host_key(&presented, &trusted, 1_000, "web01").is_ok());
    }

    #[test]
    fn another_ca_or_another_name_is_refused() {
        let (ca, other, host) = (key(), key(), key());
        let trusted = [ca.public_key().key_data().clone()];
        let foreign = PublicKeyOrCertificate::Certificate(host_cert(&other, &host, "web01"));
        assert!(matches!(
            check_host_key(&foreign, &trusted, 1_000, "web01"),
            Err(HostRefusal::Certificate { .. })
        ));
        let misnamed = PublicKeyOrCertificate::Certificate(host_cert(&ca, &host, "db01"));
        let refusal = check_host_key(&misnamed, &trusted, 1_000, "web01").expect_err("refused");
        assert!(
            refusal
                .to_string()
                .starts_with("host certificate of target web01 refused:"),
            "{refusal}"
        );
    }
}
