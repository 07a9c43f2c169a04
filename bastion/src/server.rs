//! `ssh-bastion serve`: opens the CA (in process, or remote), the audit log and the host key,
//! then accepts connections on the front door until told to stop.
//!
//! In embedded mode the CA's own SSH API is served by the same process on the CA config's
//! `listen` address, so one `ssh-bastion serve` is the whole system (all-in-one).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jitssh_authority::authority::{Authority, OpenError, OpenOptions};
use jitssh_core::audit::forward::Forwarder;
use jitssh_core::audit::index::Shipper;
use jitssh_core::audit::{AuditError, AuditLog};
use jitssh_core::ssh_key::HashAlg;
use jitssh_server::accept::{self, Connection, Gate, GateLimits};
use jitssh_server::hostkey::{self, HostKeyError};
use russh::server::Config;
use russh::{MethodKind, MethodSet, SshId};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::admin::{self, AdminError, LiveSessions};
use crate::audit::Audit;
use crate::config::{BastionConfig, CaSettings};
use crate::front::{Front, Slot};
use crate::hostcert;
use crate::issuer::{EmbeddedIssuer, Issuer};
use crate::jump::{TargetCertSource, TargetCerts};
use crate::recorded::{RecordingSetup, SetupError};
use crate::remote::{RemoteError, RemoteIssuer};
use crate::session::Shared;

/// How long a stopping bastion waits for sessions to record their end.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors starting the bastion.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The host key could not be loaded or created.
    #[error(transparent)]
    HostKey(#[from] HostKeyError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The embedded CA could not be opened.
    #[error("embedded CA: {0}")]
    Ca(#[from] OpenError),
    /// The bastion's host certificate could not be issued.
    #[error("cannot issue the bastion's host certificate: {0}")]
    HostCert(String),
    /// The embedded CA's SSH API could not start.
    #[error("embedded CA API: {0}")]
    CaApi(#[from] ssh_ca::api::ServeError),
    /// The remote CA could not be reached.
    #[error("remote CA: {0}")]
    Remote(#[from] RemoteError),
    /// Recordings cannot be set up (seal key, session index).
    #[error("recordings: {0}")]
    Recording(#[from] SetupError),
    /// The session index (`sessions.db`, or the database of `[store] url`) cannot be opened.
    #[error("session index: {0}")]
    SessionIndex(#[from] jitssh_core::store::StoreError),
    /// The bucket for recordings (`[recordings] store`) cannot be used.
    #[error("recordings store: {0}")]
    RecordingStore(#[from] jitssh_recstore::StoreError),
    /// The admin socket could not be created.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(jitssh_server::metrics::MetricsError),
    /// The audit forwarder's thread could not start.
    #[error("cannot start audit forwarding: {0}")]
    Forward(#[source] std::io::Error),
    /// The thread copying an audit log into the audit index could not start.
    #[error("cannot start the audit index shipper: {0}")]
    AuditIndex(#[source] std::io::Error),
    /// The web console could not start.
    #[error(transparent)]
    Web(#[from] crate::web::WebError),
    /// The pid file could not be written, or another bastion runs with this data directory.
    #[error(transparent)]
    PidFile(#[from] jitssh_server::pidfile::PidFileError),
    /// Listening failed.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Runs the bastion until `shutdown` resolves; then ends every session (telling the person
/// why) and waits a little for their end to be recorded.
pub async fn serve(
    config: BastionConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let host_key = hostkey::load_or_create(&config.host_key_path(), "ssh-bastion host key")?;
    if config.metrics_listen.is_some() {
        // Before anything counts (the embedded CA issues the bastion's host certificate).
        jitssh_server::metrics::install().map_err(ServeError::Metrics)?;
    }
    let mut metrics_refresh: Vec<jitssh_server::metrics::Refresh> = Vec::new();
    let audit_log = AuditLog::open(&config.audit_path())?;
    audit_log.observe(crate::metrics::observer());
    let audit = Audit::new(audit_log);
    // Stopped when serve returns; the cursors beside the logs say where the next start resumes.
    let mut forwarders = Vec::new();
    forwarders.extend(
        Forwarder::start_configured(
            &config.audit_path(),
            config.audit_forward.as_ref(),
            "ssh-bastion",
        )
        .map_err(ServeError::Forward)?,
    );
    let recording = RecordingSetup::open(
        &config.recordings_dir(),
        config.recordings.policy(),
        &config.host_key_path(),
        config.open_session_store()?,
    )?
    .with_queue(config.limits.recording_queue)
    .with_uploads(match &config.recordings_store {
        // Before any session records: what is in the spool now was left by the last run.
        Some(settings) => Some(jitssh_recstore::Uploader::start(
            settings.connect()?,
            &config.recordings_dir(),
        )),
        None => None,
    });
    // Each log is its own chain in the audit index: the bastion's in the session index, the
    // embedded CA's in the CA store (one database for both on a shared PostgreSQL store).
    let mut shippers = Vec::new();
    shippers.extend(
        Shipper::start_configured(
            "ssh-bastion",
            &config.audit_path(),
            config.audit_index,
            recording.index.clone(),
        )
        .map_err(ServeError::AuditIndex)?,
    );
    let mut host_cert = None;
    let mut renewal = None;
    let mut target_source = TargetCertSource::Unavailable(
        "the remote CA issues the bastion only its own host certificate".into(),
    );
    let mut policy = None; // (users, roles): the policy is here only with the embedded CA
    let issuer: Arc<dyn Issuer> = match &config.ca {
        CaSettings::Embedded(ca_config) => {
            let authority = Arc::new(Authority::open(
                (**ca_config).clone(),
                OpenOptions {
                    init_keys: true,
                    serial_block: 64,
                },
            )?);
            tracing::info!(
                user_ca = %authority.keys().user.fingerprint(),
                host_ca = %authority.keys().host.fingerprint(),
                config = %ca_config.origin,
                "embedded CA keys loaded"
            );
            forwarders.extend(
                Forwarder::start_configured(
                    &ca_config.audit_path(),
                    ca_config.audit_forward.as_ref(),
                    "ssh-ca",
                )
                .map_err(ServeError::Forward)?,
            );
            shippers.extend(
                Shipper::start_configured(
                    "ssh-ca",
                    &ca_config.audit_path(),
                    ca_config.audit_index,
                    authority.audit_index(),
                )
                .map_err(ServeError::AuditIndex)?,
            );
            let reader = authority.clone();
            metrics_refresh.push(Arc::new(move || {
                jitssh_authority::metrics::refresh(&reader)
            }));
            policy = Some(authority.policy()).map(|p| (p.users().count(), p.roles().count()));
            if let Err(err) = authority.write_krl_file() {
                tracing::warn!("cannot write the KRL file: {err}");
            }
            // All-in-one: the CA's SSH API (issue 3) runs in this process.
            if let Err(err) = ssh_ca::api::spawn_policy_reloader(authority.clone()) {
                tracing::warn!("cannot watch for SIGHUP: {err}");
            }
            let api = ssh_ca::api::Api::bind(authority.clone(), ca_config.listen).await?;
            if let Ok(addr) = api.local_addr() {
                tracing::info!(%addr, "CA API listening");
            }
            tokio::spawn(api.run());
            let issuing = (authority.clone(), host_key.clone(), config.names.clone());
            let cert = tokio::task::spawn_blocking(move || {
                hostcert::issue(&issuing.0, &issuing.1, &issuing.2)
            })
            .await
            .map_err(|e| ServeError::HostCert(e.to_string()))?
            .map_err(|e| ServeError::HostCert(e.to_string()))?;
            host_cert = Some(cert);
            renewal = Some(HostCertSource::Embedded(authority.clone()));
            target_source = TargetCertSource::Embedded(authority.clone());
            Arc::new(EmbeddedIssuer::new(authority))
        }
        CaSettings::Remote(remote) => {
            let issuer =
                RemoteIssuer::start(remote, config.session.revocation_check.as_duration()).await?;
            tracing::info!(ca = %remote.address, "connected to the remote CA");
            match issuer.host_certificate(&host_key).await {
                Ok(cert) => {
                    host_cert = Some(cert);
                    renewal = Some(HostCertSource::Remote(issuer.clone()));
                }
                Err(err) => tracing::warn!(
                    "serving without a host certificate (clients must pin the host key): {err}"
                ),
            }
            issuer
        }
    };
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    if let Some(listen) = config.metrics_listen {
        jitssh_server::metrics::serve(listen, metrics_refresh)
            .await
            .map_err(ServeError::Metrics)?;
    }
    // Auditors watch and end live sessions through this socket (see `crate::admin`).
    let live = LiveSessions::new();
    let _admin = admin::serve(&config.admin, live.clone(), audit.clone())?;
    // For `ssh-bastion reload`; removed when serve returns.
    let _pid_file =
        jitssh_server::pidfile::PidFile::create(&config.pid_file_path(), "ssh-bastion")?;
    let local = listener.local_addr().unwrap_or(config.listen);
    tracing::info!(
        addr = %local,
        host_key = %host_key.public_key().fingerprint(HashAlg::Sha256),
        targets = config.targets.len(),
        users = policy.map(|(users, _)| users),
        roles = policy.map(|(_, roles)| roles),
        "ssh-bastion listening on {local}"
    );
    let host_cert_now = host_cert.clone();
    let ssh_config = Arc::new(RwLock::new(Arc::new(russh_config(
        &config,
        host_key.clone(),
        host_cert,
    ))));
    if let (Some(source), Some(current)) = (renewal, host_cert_now) {
        let (limits_config, key) = (config.clone(), host_key.clone());
        let (names, renew_key) = (config.names.clone(), host_key.clone());
        let obtain = move || {
            let (source, key, names) = (source.clone(), renew_key.clone(), names.clone());
            async move { source.obtain(&key, &names).await }
        };
        tokio::spawn(hostcert::renew(
            current,
            obtain,
            ssh_config.clone(),
            move |cert| russh_config(&limits_config, key.clone(), Some(cert)),
        ));
    }
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let limits = &config.limits;
    let gate = Gate::new(
        "bastion",
        GateLimits {
            max_connections: limits.max_connections,
            max_startups: limits.max_startups,
            per_source: limits.max_startups_per_source,
            auth_timeout: limits.auth_timeout.as_duration(),
        },
    );
    let target_certs = {
        let (build_config, key) = (config.clone(), host_key.clone());
        let fallback = ssh_config.clone();
        Arc::new(TargetCerts::new(
            host_key.clone(),
            target_source,
            move |cert| match cert {
                Some(cert) => Arc::new(russh_config(&build_config, key.clone(), Some(cert))),
                None => fallback.read().unwrap_or_else(|p| p.into_inner()).clone(),
            },
        ))
    };
    // The auditors' web console (`[web]`), beside the front door.
    let web = match &config.web {
        Some(settings) => {
            let console = crate::web::Console::new(
                settings.clone(),
                config.auditor_on(jitssh_auditor::IndexSource::Shared(recording.index.clone()))?,
                live.clone(),
                audit.clone(),
                issuer.clone(),
            )?;
            if settings.sso.is_some() && issuer.policy().is_none() {
                return Err(crate::web::WebError::SsoNeedsPolicy.into());
            }
            crate::web::spawn(console.clone()).await?;
            Some(console)
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        web,
        target_certs,
        config,
        issuer,
        audit,
        recording,
        live,
        shutdown: shutdown_rx,
    });
    let mut connections = JoinSet::new();
    accept::accept_loop(&listener, gate, shutdown, |accepted| {
        while connections.try_join_next().is_some() {}
        let current = ssh_config.read().unwrap_or_else(|p| p.into_inner()).clone();
        connections.spawn(connection(shared.clone(), current, accepted));
    })
    .await;
    tracing::info!("stopping: ending sessions");
    drop(listener);
    let _ = shutdown_tx.send(true);
    let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("some connections did not end in time");
    }
    for shipper in shippers {
        shipper.shutdown();
    }
    Ok(())
}

/// The russh server configuration: publickey only, bounded buffers, the host key and (with
/// an embedded CA) its host certificate.
fn russh_config(
    config: &BastionConfig,
    host_key: jitssh_core::ssh_key::PrivateKey,
    host_cert: Option<jitssh_core::ssh_key::Certificate>,
) -> Config {
    let limits = &config.limits;
    let idle = limits.idle_timeout.as_duration();
    Config {
        server_id: SshId::Standard(
            format!("SSH-2.0-jitssh_bastion_{}", env!("CARGO_PKG_VERSION")).into(),
        ),
        methods: MethodSet::from(&[MethodKind::PublicKey][..]),
        auth_rejection_time: limits.auth_rejection_time.as_duration(),
        auth_rejection_time_initial: Some(Duration::ZERO),
        // A refused key offer reveals nothing its answer does not: no delay (see
        // vendor/russh/PATCHED.md), so clients reach their certificate at once.
        auth_offer_rejection_time: Some(Duration::ZERO),
        keys: vec![host_key],
        certificates: host_cert.into_iter().collect(),
        channel_buffer_size: limits.channel_buffer,
        inactivity_timeout: (!idle.is_zero()).then_some(idle),
        keepalive_interval: Some(Duration::from_secs(60)),
        keepalive_max: 3,
        max_auth_attempts: 10,
        nodelay: true,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(crate::upstream::CIPHER_ORDER),
            ..russh::Preferred::default()
        },
        server_cipher_preference: true,
        ..Config::default()
    }
}

/// Serves one connection: the SSH session and the session's end record. The pre-auth
/// deadline is the accept loop's ([`accept`]); the handler promotes the ticket on login.
async fn connection(shared: Arc<Shared>, config: Arc<Config>, accepted: Connection) {
    let Connection {
        stream,
        peer,
        ticket,
    } = accepted;
    let slot = Arc::new(Slot::default());
    let front = Front::new(shared.clone(), Some(peer), slot.clone(), Some(ticket));
    crate::front::serve(shared, config, stream, peer, slot, front).await;
}

/// Where the bastion's own host certificate comes from, for renewal.
#[derive(Clone)]
enum HostCertSource {
    /// The embedded CA signs it directly.
    Embedded(Arc<Authority>),
    /// The remote CA's API, as an enrolled host.
    Remote(Arc<RemoteIssuer>),
}

impl HostCertSource {
    async fn obtain(
        &self,
        key: &jitssh_core::ssh_key::PrivateKey,
        names: &[String],
    ) -> Result<jitssh_core::ssh_key::Certificate, String> {
        match self {
            HostCertSource::Embedded(authority) => {
                let (authority, key, names) = (authority.clone(), key.clone(), names.to_vec());
                tokio::task::spawn_blocking(move || hostcert::issue(&authority, &key, &names))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|e| e.to_string())
            }
            HostCertSource::Remote(issuer) => issuer
                .host_certificate(key)
                .await
                .map_err(|e| e.to_string()),
        }
    }
}
