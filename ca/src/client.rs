//! A client of the CA's SSH API that trusts nothing but the host CA: the server must present a
//! host certificate signed by the given host CA key and naming the host we dialled. Used by
//! `ssh-ca host renew` and by a bastion in remote mode.

use std::sync::Arc;
use std::time::Duration;

use jitssh_core::cert::{self, Expectations};
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::public::KeyData;
use jitssh_core::ssh_key::{Algorithm, PrivateKey};
use jitssh_core::unix_now;
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::{PrivateKeyWithHashAlg, PublicKeyOrCertificate};

/// Errors talking to the CA API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP or SSH failure.
    #[error("cannot reach the CA at {addr}: {why}")]
    Connect {
        /// The address dialled.
        addr: String,
        /// Why.
        why: String,
    },
    /// The server's host key is not trusted.
    #[error("the CA at {addr} is not trusted: {why}")]
    Untrusted {
        /// The address dialled.
        addr: String,
        /// Why.
        why: String,
    },
    /// Authentication refused.
    #[error("the CA at {0} refused our key")]
    AuthRefused(String),
    /// The session failed mid-way.
    #[error("SSH session with the CA failed: {0}")]
    Session(String),
    /// The call timed out.
    #[error("the CA did not answer within {0:?}")]
    Timeout(Duration),
}

/// What a command returned.
#[derive(Debug, Clone, Default)]
pub struct ExecOutput {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Exit status (None if the server sent none).
    pub status: Option<u32>,
}

impl ExecOutput {
    /// Standard error as one trimmed line.
    pub fn error_line(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

struct Verifier {
    addr: String,
    host_ca: KeyData,
    name: String,
    rejection: Arc<std::sync::Mutex<Option<String>>>,
}

impl client::Handler for Verifier {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let why = match key {
            PublicKeyOrCertificate::PublicKey { .. } => Some(
                "it presented a plain host key, not a certificate from the host CA".to_string(),
            ),
            PublicKeyOrCertificate::Certificate(certificate) => cert::verify(
                certificate,
                &Expectations {
                    trusted_cas: std::slice::from_ref(&self.host_ca),
                    cert_type: CertType::Host,
                    now: unix_now(),
                    principal: &self.name,
                    peer: None,
                },
            )
            .err()
            .map(|rejection| rejection.to_string()),
        };
        if let Some(why) = &why {
            tracing::warn!(addr = %self.addr, why, "untrusted CA host key");
            *self.rejection.lock().unwrap_or_else(|p| p.into_inner()) = Some(why.clone());
        }
        Ok(why.is_none())
    }
}

/// An authenticated connection to the CA API.
pub struct CaClient {
    handle: Handle<Verifier>,
    timeout: Duration,
}

/// Splits `host[:port]` (default port 2200) and returns (dial address, host name to verify).
pub fn split_addr(addr: &str) -> (String, String) {
    match addr.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() && !host.is_empty() => {
            (addr.to_string(), host.trim_matches(['[', ']']).to_string())
        }
        _ => (
            format!("{addr}:2200"),
            addr.trim_matches(['[', ']']).to_string(),
        ),
    }
}

impl CaClient {
    /// Connects to `addr`, verifies its host certificate against `host_ca` for the host name in
    /// `addr`, and authenticates as `user` with `key`.
    pub async fn connect(
        addr: &str,
        host_ca: KeyData,
        key: PrivateKey,
        user: &str,
        timeout: Duration,
    ) -> Result<CaClient, ClientError> {
        let (dial, name) = split_addr(addr);
        let mut config = client::Config {
            inactivity_timeout: Some(timeout),
            nodelay: true,
            ..client::Config::default()
        };
        config.preferred.host_key_certificates = std::borrow::Cow::Owned(vec![
            Algorithm::Ed25519,
            Algorithm::Ecdsa {
                curve: jitssh_core::ssh_key::EcdsaCurve::NistP256,
            },
        ]);
        let rejection = Arc::new(std::sync::Mutex::new(None));
        let verifier = Verifier {
            addr: dial.clone(),
            host_ca,
            name,
            rejection: rejection.clone(),
        };
        let connecting = client::connect(Arc::new(config), dial.clone(), verifier);
        let mut handle = match tokio::time::timeout(timeout, connecting).await {
            Err(_) => return Err(ClientError::Timeout(timeout)),
            Ok(Ok(handle)) => handle,
            Ok(Err(err)) => {
                let untrusted = rejection.lock().unwrap_or_else(|p| p.into_inner()).clone();
                return Err(match untrusted {
                    Some(why) => ClientError::Untrusted { addr: dial, why },
                    None => ClientError::Connect {
                        addr: dial,
                        why: err.to_string(),
                    },
                });
            }
        };
        let auth = handle
            .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), None))
            .await
            .map_err(|err| ClientError::Session(err.to_string()))?;
        if !auth.success() {
            return Err(ClientError::AuthRefused(dial));
        }
        Ok(CaClient { handle, timeout })
    }

    /// Runs `command` with `stdin` and collects its output.
    pub async fn exec(&self, command: &str, stdin: &[u8]) -> Result<ExecOutput, ClientError> {
        match tokio::time::timeout(self.timeout, self.exec_inner(command, stdin)).await {
            Ok(result) => result,
            Err(_) => Err(ClientError::Timeout(self.timeout)),
        }
    }

    async fn exec_inner(&self, command: &str, stdin: &[u8]) -> Result<ExecOutput, ClientError> {
        let session = |err: russh::Error| ClientError::Session(err.to_string());
        let mut channel = self.handle.channel_open_session().await.map_err(session)?;
        channel.exec(true, command).await.map_err(session)?;
        if !stdin.is_empty() {
            channel.data(stdin).await.map_err(session)?;
        }
        channel.eof().await.map_err(session)?;
        let mut output = ExecOutput::default();
        while let Some(message) = channel.wait().await {
            match message {
                ChannelMsg::Data { data } => output.stdout.extend_from_slice(&data),
                ChannelMsg::ExtendedData { data, .. } => output.stderr.extend_from_slice(&data),
                ChannelMsg::ExitStatus { exit_status } => output.status = Some(exit_status),
                ChannelMsg::Close => break,
                _ => {}
            }
        }
        Ok(output)
    }

    /// Ends the connection politely.
    pub async fn close(self) {
        let _ = self
            .handle
            .disconnect(russh::Disconnect::ByApplication, "", "")
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_default_to_port_2200() {
        assert_eq!(split_addr("ca"), ("ca:2200".into(), "ca".into()));
        assert_eq!(
            split_addr("ca.example:22"),
            ("ca.example:22".into(), "ca.example".into())
        );
        assert_eq!(
            split_addr("127.0.0.1:2200"),
            ("127.0.0.1:2200".into(), "127.0.0.1".into())
        );
    }
}
