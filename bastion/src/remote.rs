//! The CA in another process: `ssh-ca serve`, reached over SSH.
//!
//! The bastion authenticates as the CA's `bastion` identity with its own key and trusts the CA
//! only through the host CA key it was configured with (the CA must present a host
//! certificate from it). Over that channel it learns the user CA key (`ca-keys`), mints
//! session certificates (`session-cert`) and keeps a recent copy of the KRL (`krl`) for
//! revocation checks; with no recent KRL, logins fail closed.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jitssh_core::krl::Krl;
use jitssh_core::revocation::RevocationSet;
use jitssh_core::ssh_key::public::KeyData;
use jitssh_core::ssh_key::{Certificate, PrivateKey, PublicKey};
use ssh_ca::client::{CaClient, ClientError, ExecOutput};

use crate::config::RemoteCa;
use crate::issuer::{
    BoxFuture, Issuer, IssuerError, REQUESTER, SessionCertRequest, Trust, Unavailable,
};

/// Time allowed for one call to the CA.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);
/// A KRL older than this many refresh intervals no longer counts as current.
const KRL_STALE_FACTOR: u32 = 10;

/// Errors starting the remote issuer.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A key file could not be read.
    #[error("{path}: {why}")]
    Key {
        /// The file.
        path: String,
        /// Why.
        why: String,
    },
    /// The CA could not be reached or refused.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The CA answered something unexpected.
    #[error("the CA at {address}: {why}")]
    Protocol {
        /// The CA's address.
        address: String,
        /// What was wrong.
        why: String,
    },
}

/// A CA reached over SSH.
pub struct RemoteIssuer {
    settings: RemoteCa,
    host_ca: KeyData,
    identity: PrivateKey,
    trust: Trust,
    client: tokio::sync::Mutex<Option<Arc<CaClient>>>,
    /// The CA's KRL as a revocation set (the same checks as the all-in-one bastion), and
    /// when it was fetched.
    krl: RwLock<(Arc<RevocationSet>, Instant)>,
    max_krl_age: Duration,
}

impl RemoteIssuer {
    /// The bastion's own host certificate from the CA, proving possession of `host_key` as
    /// user `host`: a renewal (`host-cert`) when the key is enrolled, else a first `join` with
    /// `[ca] host_token`. The answer must be a host certificate for this very key from the
    /// trusted host CA.
    pub async fn host_certificate(
        &self,
        host_key: &PrivateKey,
    ) -> Result<Certificate, RemoteError> {
        let protocol = |why: String| RemoteError::Protocol {
            address: self.settings.address.clone(),
            why,
        };
        let client = CaClient::connect(
            &self.settings.address,
            self.host_ca.clone(),
            host_key.clone(),
            "host",
            CALL_TIMEOUT,
        )
        .await?;
        let mut answer = client.exec("host-cert", b"").await?;
        if answer.status != Some(0)
            && let Some(token) = &self.settings.host_token
        {
            answer = client
                .exec(&format!("join {}", shell_words::quote(token)), b"")
                .await?;
        }
        client.close().await;
        if answer.status != Some(0) {
            return Err(protocol(format!(
                "no host certificate for the bastion: {} (enrol it with `ssh-ca host add NAME` and set [ca] host_token)",
                answer.error_line()
            )));
        }
        let text = String::from_utf8_lossy(&answer.stdout);
        let cert = Certificate::from_openssh(text.trim())
            .map_err(|e| protocol(format!("malformed host certificate: {e}")))?;
        let ours = cert.cert_type().is_host()
            && cert.public_key() == host_key.public_key().key_data()
            && cert.signature_key() == &self.host_ca
            && cert.verify_signature().is_ok();
        if !ours {
            return Err(protocol(
                "the host certificate is not for this bastion's key from the trusted host CA"
                    .into(),
            ));
        }
        Ok(cert)
    }
}

fn read_key_file(path: &std::path::Path) -> Result<String, RemoteError> {
    std::fs::read_to_string(path).map_err(|e| RemoteError::Key {
        path: path.display().to_string(),
        why: e.to_string(),
    })
}

impl RemoteIssuer {
    /// Connects to the CA, learns the user CA key and fetches the KRL, then keeps the KRL
    /// fresh every `refresh`.
    pub async fn start(
        settings: &RemoteCa,
        refresh: Duration,
    ) -> Result<Arc<RemoteIssuer>, RemoteError> {
        let key_error = |path: &std::path::Path, why: String| RemoteError::Key {
            path: path.display().to_string(),
            why,
        };
        let host_ca_text = read_key_file(&settings.host_ca)?;
        let host_ca = first_public_key(&host_ca_text)
            .ok_or_else(|| key_error(&settings.host_ca, "no public key in the file".into()))?;
        let identity = PrivateKey::from_openssh(read_key_file(&settings.identity)?.trim())
            .map_err(|e| key_error(&settings.identity, e.to_string()))?;
        let client = connect(settings, &host_ca, &identity).await?;
        let protocol = |why: String| RemoteError::Protocol {
            address: settings.address.clone(),
            why,
        };
        let keys = client.exec("ca-keys", b"").await?;
        if keys.status != Some(0) {
            return Err(protocol(format!("ca-keys failed: {}", keys.error_line())));
        }
        let (user_ca, announced_host_ca) = parse_ca_keys(&keys.stdout).map_err(protocol)?;
        if announced_host_ca != host_ca {
            return Err(protocol(
                "its host CA key differs from the configured ca.host_ca".into(),
            ));
        }
        let krl = fetch_krl(&client).await.map_err(protocol)?;
        let issuer = Arc::new(RemoteIssuer {
            settings: settings.clone(),
            trust: Trust {
                user_cas: vec![user_ca],
                host_cas: vec![host_ca.clone()],
            },
            host_ca,
            identity,
            client: tokio::sync::Mutex::new(Some(Arc::new(client))),
            krl: RwLock::new((Arc::new(RevocationSet::from_krl(&krl)), krl_fetched_now())),
            max_krl_age: refresh * KRL_STALE_FACTOR,
        });
        tokio::spawn(refresh_krl(Arc::downgrade(&issuer), refresh));
        Ok(issuer)
    }

    /// Runs a command on the CA, reconnecting once if the connection went away.
    async fn exec(&self, command: &str, stdin: &[u8]) -> Result<ExecOutput, IssuerError> {
        for attempt in 0..2 {
            let client = {
                let mut slot = self.client.lock().await;
                match &*slot {
                    Some(client) => client.clone(),
                    None => {
                        let fresh = Arc::new(
                            connect(&self.settings, &self.host_ca, &self.identity)
                                .await
                                .map_err(IssuerError::unavailable)?,
                        );
                        *slot = Some(fresh.clone());
                        fresh
                    }
                }
            };
            match client.exec(command, stdin).await {
                Ok(output) => return Ok(output),
                Err(err) if attempt == 0 => {
                    tracing::info!("CA connection lost ({err}); reconnecting");
                    *self.client.lock().await = None;
                }
                Err(err) => return Err(IssuerError::unavailable(err)),
            }
        }
        Err(IssuerError::unavailable(Unavailable::Reconnect))
    }
}

async fn connect(
    settings: &RemoteCa,
    host_ca: &KeyData,
    identity: &PrivateKey,
) -> Result<CaClient, ClientError> {
    CaClient::connect(
        &settings.address,
        host_ca.clone(),
        identity.clone(),
        REQUESTER,
        CALL_TIMEOUT,
    )
    .await
}

fn first_public_key(text: &str) -> Option<KeyData> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|l| PublicKey::from_openssh(l).ok())
        .map(|k| k.key_data().clone())
}

/// Parses `ca-keys` output: `user-ca <key line>` and `host-ca <key line>`.
fn parse_ca_keys(stdout: &[u8]) -> Result<(KeyData, KeyData), String> {
    let text = std::str::from_utf8(stdout).map_err(|_| "ca-keys output is not UTF-8")?;
    let mut user = None;
    let mut host = None;
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("user-ca ") {
            user = first_public_key(rest);
        } else if let Some(rest) = line.strip_prefix("host-ca ") {
            host = first_public_key(rest);
        }
    }
    match (user, host) {
        (Some(user), Some(host)) => Ok((user, host)),
        _ => Err("ca-keys did not name both CA keys".into()),
    }
}

/// Now, also told to monitoring as the KRL's fetch time.
fn krl_fetched_now() -> Instant {
    metrics::gauge!(jitssh_core::metrics::names::BASTION_KRL_FETCHED)
        .set(jitssh_server::metrics::unix_now());
    Instant::now()
}

async fn fetch_krl(client: &CaClient) -> Result<Krl, String> {
    let output = client.exec("krl", b"").await.map_err(|e| e.to_string())?;
    if output.status != Some(0) {
        return Err(format!("krl failed: {}", output.error_line()));
    }
    Krl::decode(&output.stdout).map_err(|e| format!("malformed KRL: {e}"))
}

async fn refresh_krl(issuer: std::sync::Weak<RemoteIssuer>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(issuer) = issuer.upgrade() else {
            return;
        };
        let fetched = match issuer.exec("krl", b"").await {
            Ok(output) if output.status == Some(0) => {
                Krl::decode(&output.stdout).map_err(|e| format!("malformed KRL: {e}"))
            }
            Ok(output) => Err(format!("krl failed: {}", output.error_line())),
            Err(err) => Err(err.to_string()),
        };
        match fetched {
            Ok(krl) => {
                let set = Arc::new(RevocationSet::from_krl(&krl));
                *issuer.krl.write().unwrap_or_else(|p| p.into_inner()) = (set, krl_fetched_now());
            }
            Err(why) => tracing::warn!("cannot refresh the KRL from the CA: {why}"),
        }
    }
}

impl Issuer for RemoteIssuer {
    fn trust(&self) -> &Trust {
        &self.trust
    }

    fn revoked<'a>(
        &'a self,
        cert: &'a Certificate,
    ) -> BoxFuture<'a, Result<Option<String>, IssuerError>> {
        let verdict = {
            let guard = self.krl.read().unwrap_or_else(|p| p.into_inner());
            let (revocations, fetched) = &*guard;
            if fetched.elapsed() > self.max_krl_age {
                Err(IssuerError::unavailable(Unavailable::StaleKrl {
                    age_secs: fetched.elapsed().as_secs(),
                }))
            } else {
                Ok(revocations.revoked_reason(cert))
            }
        };
        Box::pin(async move { verdict })
    }

    fn session_cert(
        &self,
        request: SessionCertRequest,
    ) -> BoxFuture<'_, Result<Certificate, IssuerError>> {
        Box::pin(async move {
            let mut command = format!(
                "session-cert --login {} --target {} --session {} --ttl {}s",
                request.login,
                request.target,
                request.session_id,
                request.ttl.as_secs().max(1)
            );
            if let Some(client) = request.client {
                command.push_str(&format!(" --client {client}"));
            }
            if let Some(source) = request.source_address {
                command.push_str(&format!(" --source-address {source}"));
            }
            let cert_line = request
                .user_cert
                .to_openssh()
                .map_err(IssuerError::unavailable)?;
            let key_line = PublicKey::new(request.subject.clone(), "session")
                .to_openssh()
                .map_err(IssuerError::unavailable)?;
            let stdin = format!("{cert_line}\n{key_line}\n");
            let output = self.exec(&command, stdin.as_bytes()).await?;
            if output.status != Some(0) {
                return Err(IssuerError::Denied(output.error_line()));
            }
            let text = String::from_utf8_lossy(&output.stdout);
            let line = text.lines().map(str::trim).find(|l| !l.is_empty());
            line.and_then(|l| Certificate::from_openssh(l).ok())
                .ok_or(IssuerError::Unavailable(Unavailable::NoCertificate))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitssh_core::keys::CaSigner;

    #[test]
    fn ca_keys_output_parses_and_garbage_does_not() {
        let user = CaSigner::generate("user-ca");
        let host = CaSigner::generate("host-ca");
        let text = format!(
            "user-ca {}\nhost-ca {}\n",
            user.public_line(),
            host.public_line()
        );
        let (u, h) = parse_ca_keys(text.as_bytes()).unwrap();
        assert_eq!(&u, user.key_data());
        assert_eq!(&h, host.key_data());
        assert!(parse_ca_keys(b"user-ca garbage\n").is_err());
        assert!(parse_ca_keys(&[0xff, 0xfe]).is_err());
    }
}
