//! The CA's API over SSH: any machine with `ssh` is a client, and SSH keys authenticate.
//!
//! The server presents a host key with a certificate from our own host CA (principals: the
//! config's `names`), so clients that trust the host CA connect with strict host key checking
//! and no trust-on-first-use. Only publickey authentication is offered. Connections are
//! limited, unauthenticated ones have their own budget (overall and per source), and each must
//! authenticate within the handshake timeout or have its socket closed
//! ([`jitssh_server::accept`]), so a flood of garbage or stalled connections cannot take the
//! service down.

mod commands;
mod handler;
mod host_token;
mod sso;
mod stdin;
mod token;
mod workload;

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jitssh_core::ssh_key::{Certificate, PrivateKey, PublicKey};
use jitssh_server::accept::{self, Gate, GateLimits};
use jitssh_server::host_cert;
use jitssh_server::hostkey::{self, HostKeyError};
use russh::MethodKind;
use russh::server::Config;
use serde_json::json;
use tokio::net::TcpListener;

pub use commands::{ApiCli, ApiCommand, CommandOutput};

use jitssh_authority::authority::{Authority, IssueError};

/// Who is on the other end of a connection, once authenticated.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A person (or automation) from the policy's users.
    User {
        /// Policy user name.
        name: String,
        /// The key they authenticated with.
        key: PublicKey,
    },
    /// A host (user `host`): any key may connect; `join` and `host-cert` check it.
    Host {
        /// The key it authenticated with (its host key).
        key: PublicKey,
    },
    /// A bastion listed in `bastion_keys`.
    Bastion {
        /// The key it authenticated with.
        key: PublicKey,
    },
    /// A person signing in through the identity provider (user `sso`): any key may connect;
    /// `login` certifies it once they signed in.
    Sso {
        /// The key they authenticated with.
        key: PublicKey,
    },
    /// A workload (user `workload`): any key may connect; `cert --token-file -` verifies its
    /// token and certifies this key.
    Workload {
        /// The key it authenticated with (the one certified).
        key: PublicKey,
    },
}

/// Errors starting the API.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The API host key could not be read or created.
    #[error(transparent)]
    Key(#[from] HostKeyError),
    /// The API host certificate could not be issued.
    #[error("cannot issue the API host certificate: {0}")]
    Cert(#[from] IssueError),
    /// The SSO client could not be set up.
    #[error("cannot set up SSO: {0}")]
    Sso(#[from] jitssh_identity::FetchError),
    /// Listening failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Issues the API's host certificate: principals are the config's `names`.
fn api_host_cert(authority: &Authority, key: &PrivateKey) -> Result<Certificate, IssueError> {
    let config = authority.config();
    let spec = host_cert::host_cert_spec(
        key,
        "ssh-ca-api",
        &config.names,
        config.clock_skew.as_duration(),
    );
    Ok(authority
        .issue(spec, "ssh-ca", None, json!({ "api_host_cert": true }))?
        .certificate)
}

fn russh_config(authority: &Authority, key: PrivateKey, cert: Certificate) -> Config {
    let limits = &authority.config().limits;
    Config {
        methods: (&[MethodKind::PublicKey][..]).into(),
        keys: vec![key],
        certificates: vec![cert],
        auth_rejection_time: Duration::from_millis(300),
        auth_rejection_time_initial: Some(Duration::ZERO),
        // A refused key offer reveals nothing its answer does not: no delay (see
        // vendor/russh/PATCHED.md), so clients reach their certificate at once.
        auth_offer_rejection_time: Some(Duration::ZERO),
        inactivity_timeout: Some(limits.idle_timeout.as_duration()),
        max_auth_attempts: 6,
        nodelay: true,
        ..Config::default()
    }
}

/// A running API: bind with [`Api::bind`], then [`Api::run`].
pub struct Api {
    authority: Arc<Authority>,
    listener: TcpListener,
    config: Arc<RwLock<Arc<Config>>>,
    key: PrivateKey,
    /// When the host certificate in use ends (renewed at half its remaining life).
    host_cert_valid_before: u64,
    /// The SSO client, when `[sso]` is configured.
    sso: Option<Arc<crate::sso::Sso>>,
}

impl Api {
    /// Prepares the host key and certificate and binds the listening socket.
    pub async fn bind(authority: Arc<Authority>, addr: SocketAddr) -> Result<Api, ServeError> {
        let key = hostkey::load_or_create(
            &authority.config().data_dir.join("api_host_key"),
            "ssh-ca-api",
        )?;
        let cert = api_host_cert(&authority, &key)?;
        let host_cert_valid_before = cert.valid_before();
        let config = russh_config(&authority, key.clone(), cert);
        let sso = match &authority.config().sso {
            // A quarter of the API's connections at most wait for people signing in.
            Some(sso) => Some(Arc::new(crate::sso::Sso::new(
                sso,
                authority.config().limits.max_connections / 4,
            )?)),
            None => None,
        };
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Listen { addr, source })?;
        Ok(Api {
            authority,
            listener,
            config: Arc::new(RwLock::new(Arc::new(config))),
            key,
            host_cert_valid_before,
            sso,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until the process ends. Accept errors (e.g. out of file descriptors) are logged
    /// and retried; they never end the service.
    pub async fn run(self) {
        let limits = &self.authority.config().limits;
        let gate = Gate::new(
            "ca_api",
            GateLimits {
                max_connections: limits.max_connections,
                max_startups: limits.max_startups,
                per_source: limits.max_startups_per_source,
                auth_timeout: limits.handshake_timeout.as_duration(),
            },
        );
        tokio::spawn(renew_host_cert(
            self.authority.clone(),
            self.key.clone(),
            self.host_cert_valid_before,
            self.config.clone(),
        ));
        accept::accept_loop(&self.listener, gate, std::future::pending(), |accepted| {
            let config = self
                .config
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            tokio::spawn(handler::serve_connection(
                self.authority.clone(),
                config,
                self.sso.clone(),
                accepted,
            ));
        })
        .await;
    }
}

/// Re-issues the API host certificate at half-life so long-running servers stay trusted.
async fn renew_host_cert(
    authority: Arc<Authority>,
    key: PrivateKey,
    valid_before: u64,
    config: Arc<RwLock<Arc<Config>>>,
) {
    let obtain = || {
        let (authority, key) = (authority.clone(), key.clone());
        async move {
            match tokio::task::spawn_blocking(move || api_host_cert(&authority, &key)).await {
                Ok(issued) => issued.map_err(|err| err.to_string()),
                Err(err) => Err(format!("renewal task failed: {err}")),
            }
        }
    };
    let install = |cert| {
        let fresh = Arc::new(russh_config(&authority, key.clone(), cert));
        *config.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    };
    host_cert::renew_at_half_life(
        valid_before,
        "ca_api",
        "the API host certificate",
        obtain,
        install,
    )
    .await;
}

/// Re-reads the shadow policy (if configured) on SIGHUP, apart from the enforced one: a
/// broken shadow file is refused (logged and audited) and the old shadow policy kept, and it
/// never holds back the enforced policy's reload.
async fn reload_shadow(authority: &Arc<Authority>) {
    let reloading = authority.clone();
    let result = tokio::task::spawn_blocking(move || reloading.reload_shadow_policy()).await;
    let path = authority
        .config()
        .shadow_policy
        .as_ref()
        .map(|p| p.display().to_string());
    let event = match result {
        Ok(Ok(false)) => return,
        Ok(Ok(true)) => {
            tracing::info!("shadow policy reloaded");
            jitssh_core::audit::AuditEvent::new("policy.shadow_reloaded")
        }
        Ok(Err(err)) => {
            tracing::error!(%err, "shadow policy reload refused; keeping the old shadow policy");
            jitssh_core::audit::AuditEvent::new("policy.shadow_reload_refused")
                .with("error", err.to_string())
        }
        Err(err) => {
            tracing::error!(%err, "shadow policy reload task failed");
            return;
        }
    };
    if let Err(err) = authority.audit().append(event.with("shadow_policy", path)) {
        tracing::error!(%err, "cannot audit the shadow policy reload");
    }
}

/// Reloads the policy on SIGHUP. A broken policy is refused with its error logged, and the old
/// one stays in force. The shadow policy is reloaded beside it, on its own.
pub fn spawn_policy_reloader(authority: Arc<Authority>) -> std::io::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            let reloading = authority.clone();
            let result = tokio::task::spawn_blocking(move || reloading.reload_policy()).await;
            match result {
                Ok(Ok(())) => {
                    let policy = authority.policy();
                    tracing::info!(
                        users = policy.users().count(),
                        roles = policy.roles().count(),
                        "policy reloaded"
                    );
                    let event = jitssh_core::audit::AuditEvent::new("policy.reloaded")
                        .with("policy", authority.config().policy.display().to_string());
                    if let Err(err) = authority.audit().append(event) {
                        tracing::error!(%err, "cannot audit the policy reload");
                    }
                }
                Ok(Err(err)) => {
                    tracing::error!(%err, "policy reload refused; keeping the old policy")
                }
                Err(err) => tracing::error!(%err, "policy reload task failed"),
            }
            reload_shadow(&authority).await;
        }
    });
    Ok(())
}
