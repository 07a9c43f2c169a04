//! The one interface through which the bastion talks to its certificate authority: trust
//! anchors, revocation verdicts and per-session certificates.
//!
//! [`EmbeddedIssuer`] calls the [`Authority`] in this process (all-in-one);
//! [`crate::remote::RemoteIssuer`] asks a separate `ssh-ca serve` over SSH. The rest of the
//! bastion only sees [`Issuer`]. Either way the CA re-checks the person's certificate before
//! it mints a session certificate, so a bastion cannot grant more than the person holds.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use jitssh_authority::authority::{Authority, IssueError};
pub use jitssh_authority::session_cert::SessionCertRequest;
use jitssh_core::ssh_key::Certificate;
use jitssh_core::ssh_key::public::KeyData;

/// A boxed future, so [`Issuer`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Who the bastion is when it asks for session certificates (the CA's `bastion` identity).
pub const REQUESTER: &str = "bastion";

/// The CA keys the bastion trusts.
#[derive(Debug, Clone)]
pub struct Trust {
    /// User certificates must be signed by one of these.
    pub user_cas: Vec<KeyData>,
    /// Host certificates (targets, the remote CA) must be signed by one of these.
    pub host_cas: Vec<KeyData>,
}

/// Errors from the CA. A refusal is the CA's decision, told to the person; an unavailable CA
/// is an operational failure (a full disk, a lost connection), logged for the operator; both
/// fail closed.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The CA refused (policy, revocation, a check of the person's certificate); the reason is
    /// the CA's, for the person.
    #[error("the CA refused: {0}")]
    Denied(String),
    /// The CA could not be reached or failed.
    #[error("the CA is unavailable: {0}")]
    Unavailable(#[from] Unavailable),
}

/// Why the CA could not answer.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The CA in this process failed (its store or audit log: nothing was issued).
    #[error(transparent)]
    Authority(#[from] IssueError),
    /// The CA in this process could not read its revocations.
    #[error("cannot read the revocations: {0}")]
    Revocations(#[from] jitssh_core::store::StoreError),
    /// The blocking task that ran the CA's call failed.
    #[error("the CA's task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The remote CA could not be reached, or the connection failed.
    #[error(transparent)]
    Connection(#[from] ssh_ca::client::ClientError),
    /// The remote CA connection failed twice in a row.
    #[error("the CA connection failed twice")]
    Reconnect,
    /// The remote CA's KRL is older than allowed and could not be refreshed: revocation
    /// verdicts would be stale.
    #[error("the KRL is {age_secs}s old and could not be refreshed")]
    StaleKrl {
        /// Age of the last KRL fetched, in seconds.
        age_secs: u64,
    },
    /// The remote CA's answer carried no certificate.
    #[error("the CA answered without a certificate")]
    NoCertificate,
    /// A certificate or key could not be encoded for the request.
    #[error("cannot encode the request: {0}")]
    Encode(#[from] jitssh_core::ssh_key::Error),
}

impl IssuerError {
    /// The CA could not answer, for this reason.
    pub fn unavailable(why: impl Into<Unavailable>) -> IssuerError {
        IssuerError::Unavailable(why.into())
    }
}

/// The bastion's view of its CA.
pub trait Issuer: Send + Sync {
    /// The trusted CA keys.
    fn trust(&self) -> &Trust;

    /// Why `cert` is revoked, if it is. An error means "unknown", and callers fail closed.
    fn revoked<'a>(
        &'a self,
        cert: &'a Certificate,
    ) -> BoxFuture<'a, Result<Option<String>, IssuerError>>;

    /// A session certificate for `request`.
    fn session_cert(
        &self,
        request: SessionCertRequest,
    ) -> BoxFuture<'_, Result<Certificate, IssuerError>>;

    /// The CA's current policy, when it is in this process (embedded CA); `None` for a
    /// remote CA, whose policy the bastion never sees.
    fn policy(&self) -> Option<std::sync::Arc<jitssh_core::policy::Policy>> {
        None
    }
}

/// The CA in this process.
pub struct EmbeddedIssuer {
    authority: Arc<Authority>,
    trust: Trust,
}

impl EmbeddedIssuer {
    /// Wraps an open authority.
    pub fn new(authority: Arc<Authority>) -> EmbeddedIssuer {
        let keys = authority.keys();
        let trust = Trust {
            user_cas: vec![keys.user.key_data().clone()],
            host_cas: vec![keys.host.key_data().clone()],
        };
        EmbeddedIssuer { authority, trust }
    }
}

impl Issuer for EmbeddedIssuer {
    fn trust(&self) -> &Trust {
        &self.trust
    }

    fn policy(&self) -> Option<Arc<jitssh_core::policy::Policy>> {
        Some(self.authority.policy())
    }

    fn revoked<'a>(
        &'a self,
        cert: &'a Certificate,
    ) -> BoxFuture<'a, Result<Option<String>, IssuerError>> {
        let authority = self.authority.clone();
        let cert = cert.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || authority.revoked_reason(&cert))
                .await
                .map_err(IssuerError::unavailable)?
                .map_err(IssuerError::unavailable)
        })
    }

    fn session_cert(
        &self,
        request: SessionCertRequest,
    ) -> BoxFuture<'_, Result<Certificate, IssuerError>> {
        let authority = self.authority.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                authority
                    .issue_session_cert(&request, REQUESTER)
                    .map(|issued| issued.certificate)
                    .map_err(|err| match err {
                        IssueError::Denied(denial) => IssuerError::Denied(denial.reason),
                        other => IssuerError::unavailable(other),
                    })
            })
            .await
            .map_err(IssuerError::unavailable)?
        })
    }
}
