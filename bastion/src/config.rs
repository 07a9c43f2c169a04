//! `bastion.toml`: where the bastion keeps its data, where it listens, how it reaches the CA,
//! which targets exist and what the bastion's own policy allows.
//!
//! Relative paths in a config file are relative to that file's directory, so a config can be
//! moved with its data. Without `--config`, embedded defaults apply relative to the current
//! directory: data in `./data/bastion`, an embedded CA with its data in `./data/ca`.
//! Unknown keys are errors naming file, line and key.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jitssh_authority::config::CaConfig;
use jitssh_core::audit::forward::{AuditSection, ForwardTarget};
use jitssh_core::config::{self, ConfigError};
use jitssh_core::duration::HumanDuration;
use jitssh_server::accept::Startups;
use serde::Deserialize;

use crate::recording::{OnFailure, RecordingPolicy};

/// Origin name of the built-in configuration.
pub const EMBEDDED: &str = "<embedded defaults>";

/// Longest session certificate lifetime: it only has to outlive the login to the target.
pub const MAX_SESSION_CERT_TTL: Duration = Duration::from_secs(10 * 60);

/// The bastion's configuration, with paths resolved and cross-field rules checked.
#[derive(Debug, Clone)]
pub struct BastionConfig {
    /// Host key, audit log and recordings live here.
    pub data_dir: PathBuf,
    /// Address of the SSH front door.
    pub listen: SocketAddr,
    /// Names the bastion's own host certificate carries (embedded CA), so clients that trust
    /// the host CA connect without trust on first use.
    pub names: Vec<String>,
    /// How certificates are obtained and checked.
    pub ca: CaSettings,
    /// The targets users may reach, by name.
    pub targets: Vec<Target>,
    /// Forwarding the bastion allows at all (a certificate must allow it too).
    pub forwarding: Forwarding,
    /// Session lifetime and target-leg settings.
    pub session: SessionSettings,
    /// Resource limits of the front door.
    pub limits: Limits,
    /// What session recordings keep.
    pub recordings: Recordings,
    /// The bucket recordings go to (`[recordings] store`), if not the local directory.
    pub recordings_store: Option<jitssh_recstore::ObjectStoreSettings>,
    /// Where the session index (and the bastion's audit index) lives (`[store]`, the keys of
    /// ca.toml's): `sessions.db` in the data directory, or a PostgreSQL database several
    /// bastions and the CAs share.
    pub store: jitssh_authority::config::StoreSettings,
    /// The admin socket auditors use to watch and end live sessions.
    pub admin: AdminSettings,
    /// Where `serve` streams the audit log as it is written (`[audit] forward`); an embedded
    /// CA without a forward of its own streams its log there too.
    pub audit_forward: Option<ForwardTarget>,
    /// How often the audit chain's head is recorded in the session index's audit index;
    /// `None` when the log is not indexed (`[audit] index = false`).
    pub audit_index: Option<std::time::Duration>,
    /// Where `serve` answers Prometheus scrapes (`[metrics] listen`); none by default. With
    /// the embedded CA, its metrics are there too.
    pub metrics_listen: Option<SocketAddr>,
    /// The auditors' web console (`[web]`; off unless `listen` is set).
    pub web: Option<WebSettings>,
    /// Where this configuration came from (a path, or `<embedded defaults>`).
    pub origin: String,
}

/// What session recordings keep and what a recording failure does (`[recordings]`).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Recordings {
    /// Record keystrokes too (off by default: input contains passwords).
    #[serde(default)]
    pub record_input: bool,
    /// Record the content of sftp/scp transfers, not only sizes and SHA-256 digests.
    #[serde(default)]
    pub transfer_content: bool,
    /// `terminate` (default: no unrecorded access) or `continue` (unrecorded, audited as
    /// `recording.degraded`) when a recording cannot be written.
    #[serde(default = "default_on_failure")]
    pub on_failure: OnFailure,
    /// Bytes a session's recorder buffers before writing, whatever the one-second timer says.
    #[serde(default = "default_max_buffer")]
    pub max_buffer: usize,
    /// Bytes of each output stream of a command run without a pty that go to its asciicast;
    /// the rest (and binary output) is recorded as size and SHA-256.
    #[serde(default = "default_exec_output_limit")]
    pub exec_output_limit: u64,
    /// How long recordings are kept by `ssh-bastion prune` (unset: forever).
    #[serde(default)]
    pub retain: Option<HumanDuration>,
    /// Bytes one session's recording may take; past it, terminal output is recorded as size
    /// and SHA-256 only (audited as `recording.quota`).
    #[serde(default = "default_max_session_bytes")]
    pub max_session_bytes: u64,
    /// Bytes all sessions of one person started within `person_window` may record.
    #[serde(default = "default_max_person_bytes")]
    pub max_person_bytes: u64,
    /// The window of `max_person_bytes`.
    #[serde(default = "default_person_window")]
    pub person_window: HumanDuration,
    /// Free bytes the recordings disk keeps for the audit log: below it new sessions are
    /// refused and running ones stop storing terminal content (`0`: no floor).
    #[serde(default = "default_min_free_bytes")]
    pub min_free_bytes: u64,
    /// `s3://bucket/prefix`: finished recordings are uploaded there and the recordings
    /// directory is only their spool (unset: recordings stay in the directory).
    #[serde(default)]
    pub store: Option<String>,
    /// The S3 endpoint (unset: AWS).
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    /// The S3 region (unset: `us-east-1`).
    #[serde(default)]
    pub s3_region: Option<String>,
    /// An AWS shared-credentials file (unset: `AWS_ACCESS_KEY_ID`... from the environment).
    #[serde(default)]
    pub s3_credentials: Option<PathBuf>,
    /// Plain HTTP to `s3_endpoint`, allowed only for a loopback endpoint.
    #[serde(default)]
    pub s3_allow_http: bool,
    /// Bytes of recordings fetched from the bucket that the auditor's tools keep in their
    /// temporary cache (the web console's lives as long as the bastion); the least recently
    /// used go first.
    #[serde(default = "default_s3_cache_bytes")]
    pub s3_cache_bytes: u64,
}

impl Default for Recordings {
    fn default() -> Self {
        Recordings {
            record_input: false,
            transfer_content: false,
            on_failure: default_on_failure(),
            max_buffer: default_max_buffer(),
            exec_output_limit: default_exec_output_limit(),
            retain: None,
            max_session_bytes: default_max_session_bytes(),
            max_person_bytes: default_max_person_bytes(),
            person_window: default_person_window(),
            min_free_bytes: default_min_free_bytes(),
            store: None,
            s3_endpoint: None,
            s3_region: None,
            s3_credentials: None,
            s3_allow_http: false,
            s3_cache_bytes: default_s3_cache_bytes(),
        }
    }
}

fn default_on_failure() -> OnFailure {
    OnFailure::Terminate
}
fn default_max_buffer() -> usize {
    1 << 20
}
fn default_exec_output_limit() -> u64 {
    crate::recording::DEFAULT_EXEC_OUTPUT_LIMIT
}
fn default_max_session_bytes() -> u64 {
    crate::recording::DEFAULT_MAX_SESSION_BYTES
}
fn default_max_person_bytes() -> u64 {
    crate::recording::DEFAULT_MAX_PERSON_BYTES
}
fn default_person_window() -> HumanDuration {
    HumanDuration::from_secs(crate::recording::DEFAULT_PERSON_WINDOW_SECS)
}
fn default_min_free_bytes() -> u64 {
    crate::recording::DEFAULT_MIN_FREE_BYTES
}
fn default_s3_cache_bytes() -> u64 {
    1 << 30
}

impl Recordings {
    /// The recorder's policy.
    pub fn policy(&self) -> RecordingPolicy {
        RecordingPolicy {
            record_input: self.record_input,
            transfer_content: self.transfer_content,
            on_failure: self.on_failure,
            max_buffer: self.max_buffer,
            exec_output_limit: self.exec_output_limit,
            max_session_bytes: self.max_session_bytes,
            max_person_bytes: self.max_person_bytes,
            person_window_secs: self.person_window.as_secs(),
            min_free_bytes: self.min_free_bytes,
        }
    }
}

/// How the bastion reaches its certificate authority.
#[derive(Debug, Clone)]
pub enum CaSettings {
    /// The CA runs inside the bastion process (all-in-one), from this CA configuration.
    Embedded(Box<CaConfig>),
    /// A separate `ssh-ca serve`, reached over SSH.
    Remote(RemoteCa),
}

/// A CA reached over SSH.
#[derive(Debug, Clone)]
pub struct RemoteCa {
    /// `host:port` of the CA's SSH API.
    pub address: String,
    /// Host name the CA's host certificate must name (default: the host part of `address`).
    pub name: String,
    /// The host CA public key: the CA's own host certificate and every target's must be
    /// signed by it. The user CA key is then fetched from the CA over that trusted channel.
    pub host_ca: PathBuf,
    /// The bastion's identity key (its public half listed in the CA's `bastion_keys`).
    pub identity: PathBuf,
    /// One-time join token from `ssh-ca host add` for the bastion's own host key; needed only
    /// until the first host certificate (later renewals prove possession of the key).
    pub host_token: Option<String>,
}

/// A target host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The name users ask for (`LOGIN@NAME`); its host certificate must name it.
    pub name: String,
    /// `host:port` the bastion connects to.
    pub address: String,
}

/// Forwarding the bastion permits; each also needs the matching `permit-*` certificate
/// extension. All off by default.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Forwarding {
    /// Agent forwarding (`ssh -A`).
    #[serde(default)]
    pub agent: bool,
    /// Port forwarding: `-L`, `-R`, `-W` (needs `permit-port-forwarding`).
    #[serde(default)]
    pub port: bool,
    /// X11 forwarding (needs `permit-X11-forwarding`).
    #[serde(default)]
    pub x11: bool,
}

/// Session lifetime and the target leg.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionSettings {
    /// Lifetime of the per-session certificate used to log in to the target.
    #[serde(default = "default_cert_ttl")]
    pub cert_ttl: HumanDuration,
    /// How long before the user's certificate expires the user is warned.
    #[serde(default = "default_expiry_warning")]
    pub expiry_warning: HumanDuration,
    /// How often open sessions re-check whether the user's certificate was revoked.
    #[serde(default = "default_revocation_check")]
    pub revocation_check: HumanDuration,
    /// Time allowed to connect and log in to a target.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Environment variables (`*` patterns) passed on to the target; others are refused.
    #[serde(default = "default_env")]
    pub env: Vec<String>,
}

impl Default for SessionSettings {
    fn default() -> Self {
        SessionSettings {
            cert_ttl: default_cert_ttl(),
            expiry_warning: default_expiry_warning(),
            revocation_check: default_revocation_check(),
            connect_timeout: default_connect_timeout(),
            env: default_env(),
        }
    }
}

fn default_cert_ttl() -> HumanDuration {
    HumanDuration::from_secs(300)
}
fn default_expiry_warning() -> HumanDuration {
    HumanDuration::from_secs(60)
}
fn default_revocation_check() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_connect_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_env() -> Vec<String> {
    vec!["LANG".into(), "LC_*".into()]
}

/// Resource limits of the front door. Every buffer is bounded by these.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Channels one connection may have open at once.
    #[serde(default = "default_max_channels")]
    pub max_channels: usize,
    /// Time allowed from TCP connect to authenticated; then the socket is closed.
    #[serde(default = "default_auth_timeout")]
    pub auth_timeout: HumanDuration,
    /// Budget of unauthenticated connections, `start:rate:full` as OpenSSH's `MaxStartups`.
    #[serde(default)]
    pub max_startups: Startups,
    /// Unauthenticated connections from one source address.
    #[serde(default = "default_max_startups_per_source")]
    pub max_startups_per_source: usize,
    /// Every refused authentication takes at least this long (hides which check failed).
    #[serde(default = "default_auth_rejection_time")]
    pub auth_rejection_time: HumanDuration,
    /// SSH messages buffered per channel before the bastion stops reading the sender.
    #[serde(default = "default_channel_buffer")]
    pub channel_buffer: usize,
    /// Bytes each direction of a relayed channel holds while the receiving side's window is
    /// closed; must cover a few SSH windows (2 MiB each) so full-duplex streams keep moving.
    #[serde(default = "default_relay_buffer")]
    pub relay_buffer: usize,
    /// Bytes a session may queue for its recording writer; past it, that session's relay
    /// waits for the recording disk (other sessions do not).
    #[serde(default = "default_recording_queue")]
    pub recording_queue: usize,
    /// Close a connection with no traffic for this long (`0s`: never).
    #[serde(default)]
    pub idle_timeout: HumanDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            max_channels: default_max_channels(),
            auth_timeout: default_auth_timeout(),
            max_startups: Startups::default(),
            max_startups_per_source: default_max_startups_per_source(),
            auth_rejection_time: default_auth_rejection_time(),
            channel_buffer: default_channel_buffer(),
            relay_buffer: default_relay_buffer(),
            recording_queue: default_recording_queue(),
            idle_timeout: HumanDuration::default(),
        }
    }
}

fn default_max_connections() -> usize {
    1024
}
fn default_max_channels() -> usize {
    16
}
fn default_auth_timeout() -> HumanDuration {
    HumanDuration::from_secs(30)
}
fn default_max_startups_per_source() -> usize {
    32
}
fn default_auth_rejection_time() -> HumanDuration {
    HumanDuration::from_secs(1)
}
fn default_channel_buffer() -> usize {
    32
}
fn default_relay_buffer() -> usize {
    8 << 20
}
fn default_recording_queue() -> usize {
    crate::recording::DEFAULT_RECORDING_QUEUE
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BastionFile {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    ca: CaFile,
    #[serde(default)]
    targets: Vec<TargetFile>,
    #[serde(default)]
    forwarding: Forwarding,
    #[serde(default)]
    session: SessionSettings,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    recordings: Recordings,
    #[serde(default)]
    admin: AdminFile,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    metrics: MetricsFile,
    #[serde(default)]
    web: WebFile,
    #[serde(default)]
    store: jitssh_authority::config::StoreSettings,
}

/// `[metrics]`: the Prometheus scrape endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    /// `host:port` of `/metrics`; unset: no endpoint.
    #[serde(default)]
    listen: Option<SocketAddr>,
}

/// `[web]` as written in bastion.toml.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebFile {
    listen: Option<SocketAddr>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    public_url: Option<String>,
    /// `[web.sso]`: sign-in by the identity provider (the CA's `[sso]` keys).
    sso: Option<jitssh_authority::sso::SsoConfig>,
}

/// The web console's settings (`[web]`), paths resolved.
#[derive(Debug, Clone)]
pub struct WebSettings {
    /// Where HTTPS is served.
    pub listen: SocketAddr,
    /// Certificate chain and key (PEM), or `None` for the self-signed one in `dir`.
    pub cert_key: Option<(PathBuf, PathBuf)>,
    /// Where the console keeps its files (the self-signed certificate).
    pub dir: PathBuf,
    /// What sign-in URLs start with, and the only `Origin` a change is accepted from.
    pub public_url: String,
    /// `[web.sso]`: "Sign in with" the identity provider (authorization code flow with PKCE),
    /// or `None` for certificate sign-in only.
    pub sso: Option<jitssh_authority::sso::SsoConfig>,
}

impl WebFile {
    /// The settings, or `None` when `listen` is not set (the console is off); an error is
    /// `(key, message)`.
    fn resolve(
        self,
        base: &Path,
        data_dir: &Path,
    ) -> Result<Option<WebSettings>, (&'static str, String)> {
        let Some(listen) = self.listen else {
            for (key, set) in [
                ("web.cert", self.cert.is_some()),
                ("web.key", self.key.is_some()),
                ("web.public_url", self.public_url.is_some()),
                ("web.sso", self.sso.is_some()),
            ] {
                if set {
                    return Err((key, "only meaningful with web.listen set".into()));
                }
            }
            return Ok(None);
        };
        let cert_key = match (self.cert, self.key) {
            (Some(cert), Some(key)) => Some((base.join(cert), base.join(key))),
            (None, None) => None,
            (Some(_), None) => return Err(("web.key", "required with web.cert".into())),
            (None, Some(_)) => return Err(("web.cert", "required with web.key".into())),
        };
        let public_url = match self.public_url {
            Some(url) => {
                let url = url.trim_end_matches('/').to_string();
                if !url.starts_with("https://") || url.len() <= "https://".len() {
                    return Err(("web.public_url", "must be an https:// URL".into()));
                }
                url
            }
            None => format!("https://{listen}"),
        };
        if let Some(sso) = &self.sso {
            sso.check().map_err(|(key, message)| {
                (
                    match key.as_str() {
                        "sso.issuer" => "web.sso.issuer",
                        "sso.client_id" => "web.sso.client_id",
                        "sso.scopes" => "web.sso.scopes",
                        _ => "web.sso.timeout",
                    },
                    message,
                )
            })?;
        }
        Ok(Some(WebSettings {
            listen,
            cert_key,
            dir: data_dir.join("web"),
            public_url,
            sso: self.sso,
        }))
    }
}

/// Settings of the admin socket (`[admin]` in bastion.toml; served by [`crate::admin`]).
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// The socket's path.
    pub socket: PathBuf,
    /// Uids allowed besides the bastion's own and root.
    pub allow_uids: Vec<u32>,
}

/// `[admin]`: the admin socket (see [`crate::admin`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminFile {
    /// Socket path (default: `admin.sock` in the data directory).
    socket: Option<PathBuf>,
    /// Uids allowed besides the bastion's own and root.
    #[serde(default)]
    allow_uids: Vec<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaFile {
    #[serde(default)]
    mode: CaMode,
    config: Option<PathBuf>,
    address: Option<String>,
    name: Option<String>,
    host_ca: Option<PathBuf>,
    identity: Option<PathBuf>,
    host_token: Option<String>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum CaMode {
    #[default]
    Embedded,
    Remote,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetFile {
    name: String,
    address: String,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data/bastion")
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2222))
}

pub use crate::names::valid_target_name;

/// Why the auditor's inputs could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuditorSetupError {
    /// The bucket of `[recordings] store`.
    #[error(transparent)]
    Recordings(#[from] jitssh_recstore::StoreError),
    /// The session index of `[store] url`.
    #[error(transparent)]
    Index(#[from] jitssh_core::store::StoreError),
}

impl BastionConfig {
    /// Where the auditor's inputs are for this bastion (recordings, index, audit logs, seal
    /// key, admin socket, retention): what `ssh-bastion sessions ...` and the other auditor
    /// commands run on.
    /// With `[recordings] store`, reads the bucket's credentials (no request is made).
    /// With `[store] url`, connects to the shared session index.
    pub fn auditor(&self) -> Result<jitssh_auditor::Auditor, AuditorSetupError> {
        let index = match &self.store.url {
            None => jitssh_auditor::IndexSource::File(self.session_index_path()),
            Some(_) => jitssh_auditor::IndexSource::Shared(self.open_session_store()?),
        };
        Ok(self.auditor_on(index)?)
    }

    /// [`Self::auditor`] on a session index already open (`serve` shares its own).
    pub fn auditor_on(
        &self,
        index: jitssh_auditor::IndexSource,
    ) -> Result<jitssh_auditor::Auditor, jitssh_recstore::StoreError> {
        let mut seal_key = self.host_key_path().into_os_string();
        seal_key.push(".pub");
        let store = match &self.recordings_store {
            Some(settings) => Some(jitssh_recstore::RemoteRecordings::new(
                settings.connect()?,
                self.recordings.s3_cache_bytes,
            )?),
            None => None,
        };
        Ok(jitssh_auditor::Auditor {
            recordings: self.recordings_dir(),
            index,
            audit_log: self.audit_path(),
            ca_audit_log: match &self.ca {
                CaSettings::Embedded(ca) => Some(ca.audit_path()),
                CaSettings::Remote(_) => None,
            },
            seal_key: PathBuf::from(seal_key),
            admin_socket: self.admin.socket.clone(),
            retain: self.recordings.retain.map(|d| d.as_duration()),
            store,
        })
    }

    /// Loads `path`, or the embedded defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<BastionConfig, ConfigError> {
        match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let origin = path.display().to_string();
                let base = path.parent().unwrap_or(Path::new("."));
                Self::parse(&text, &origin, base)
            }
            None => Self::parse("", EMBEDDED, Path::new(".")),
        }
    }

    /// Parses configuration text; relative paths resolve against `base`.
    pub fn parse(text: &str, origin: &str, base: &Path) -> Result<BastionConfig, ConfigError> {
        let file: BastionFile = config::parse_toml(text, origin)?;
        let invalid = |key: &str, message: String| ConfigError::invalid(origin, text, key, message);
        let data_dir = base.join(&file.data_dir);

        let mut targets = Vec::new();
        let mut names = BTreeSet::new();
        for (i, target) in file.targets.iter().enumerate() {
            if !valid_target_name(&target.name) {
                return Err(invalid(
                    &format!("targets[{i}].name"),
                    format!(
                        "invalid target name {:?} (letters, digits, '.', '-', '_')",
                        target.name
                    ),
                ));
            }
            if !names.insert(target.name.to_ascii_lowercase()) {
                return Err(invalid(
                    &format!("targets[{i}].name"),
                    format!("duplicate target name {:?}", target.name),
                ));
            }
            if split_host_port(&target.address).is_none() {
                return Err(invalid(
                    &format!("targets[{i}].address"),
                    format!("expected host:port, got {:?}", target.address),
                ));
            }
            targets.push(Target {
                name: target.name.clone(),
                address: target.address.clone(),
            });
        }

        let mut ca = Self::resolve_ca(file.ca, base, text, origin)?;
        let names = match file.names {
            Some(names) if names.is_empty() => {
                return Err(invalid("names", "must name at least one host".into()));
            }
            Some(names) => {
                if let Some(bad) = names.iter().find(|n| !valid_target_name(n)) {
                    return Err(invalid("names", format!("invalid host name {bad:?}")));
                }
                names
            }
            None => default_names(file.listen),
        };

        let session = file.session;
        if session.cert_ttl.as_duration() > MAX_SESSION_CERT_TTL || session.cert_ttl.as_secs() == 0
        {
            return Err(invalid(
                "session.cert_ttl",
                format!("must be between 1s and {}s", MAX_SESSION_CERT_TTL.as_secs()),
            ));
        }
        if session.revocation_check.as_secs() == 0 {
            return Err(invalid(
                "session.revocation_check",
                "must be at least 1s".into(),
            ));
        }
        if session.connect_timeout.as_secs() == 0 {
            return Err(invalid(
                "session.connect_timeout",
                "must be at least 1s".into(),
            ));
        }
        let limits = file.limits;
        for (key, value) in [
            ("limits.max_connections", limits.max_connections),
            ("limits.max_channels", limits.max_channels),
            ("limits.channel_buffer", limits.channel_buffer),
            (
                "limits.max_startups_per_source",
                limits.max_startups_per_source,
            ),
        ] {
            if value == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if limits.relay_buffer < 64 * 1024 {
            return Err(invalid(
                "limits.relay_buffer",
                "must be at least 65536 bytes".into(),
            ));
        }
        if limits.recording_queue < 64 * 1024 {
            return Err(invalid(
                "limits.recording_queue",
                "must be at least 65536 bytes".into(),
            ));
        }
        if limits.auth_timeout.as_secs() == 0 {
            return Err(invalid("limits.auth_timeout", "must be at least 1s".into()));
        }
        if file.recordings.max_buffer < 4096 {
            return Err(invalid(
                "recordings.max_buffer",
                "must be at least 4096 bytes".into(),
            ));
        }
        let recordings_store = match &file.recordings.store {
            Some(url) => Some(
                jitssh_recstore::ObjectStoreSettings::parse(
                    url,
                    file.recordings.s3_endpoint.as_deref(),
                    file.recordings.s3_region.as_deref(),
                    file.recordings
                        .s3_credentials
                        .as_ref()
                        .map(|p| base.join(p))
                        .as_deref(),
                    file.recordings.s3_allow_http,
                )
                .map_err(|e| invalid(&format!("recordings.{}", e.key), e.why))?,
            ),
            None => {
                let r = &file.recordings;
                if r.s3_endpoint.is_some()
                    || r.s3_region.is_some()
                    || r.s3_credentials.is_some()
                    || r.s3_allow_http
                {
                    return Err(invalid(
                        "recordings.store",
                        "the s3_* keys need store = \"s3://bucket/prefix\"".into(),
                    ));
                }
                None
            }
        };
        let store = file
            .store
            .resolve(base)
            .map_err(|(key, why)| invalid(key, why))?;
        let admin = AdminSettings {
            socket: file
                .admin
                .socket
                .map_or_else(|| data_dir.join("admin.sock"), |p| base.join(p)),
            allow_uids: file.admin.allow_uids,
        };
        let audit_index = file.audit.index_heads_every();
        let audit_forward = file.audit.forward.map(|target| target.relative_to(base));
        if let CaSettings::Embedded(ca_config) = &mut ca
            && ca_config.audit_forward.is_none()
        {
            ca_config.audit_forward.clone_from(&audit_forward);
        }
        let web = file
            .web
            .resolve(base, &data_dir)
            .map_err(|(key, message)| invalid(key, message))?;
        if web.as_ref().is_some_and(|w| w.sso.is_some()) && matches!(ca, CaSettings::Remote(_)) {
            return Err(invalid(
                "web.sso",
                "needs the embedded CA: policy.toml's [[sso.groups]] decide who is an auditor, and \
                 a bastion with a remote CA has no policy (auditors sign in by ssh web@bastion)"
                    .into(),
            ));
        }
        Ok(BastionConfig {
            web,
            audit_forward,
            audit_index,
            metrics_listen: file.metrics.listen,
            data_dir,
            listen: file.listen,
            names,
            ca,
            targets,
            forwarding: file.forwarding,
            session,
            limits,
            recordings: file.recordings,
            recordings_store,
            store,
            admin,
            origin: origin.to_string(),
        })
    }

    fn resolve_ca(
        file: CaFile,
        base: &Path,
        text: &str,
        origin: &str,
    ) -> Result<CaSettings, ConfigError> {
        let invalid = |key: &str, message: &str| ConfigError::invalid(origin, text, key, message);
        match file.mode {
            CaMode::Embedded => {
                for (key, set) in [
                    ("ca.address", file.address.is_some()),
                    ("ca.name", file.name.is_some()),
                    ("ca.host_ca", file.host_ca.is_some()),
                    ("ca.identity", file.identity.is_some()),
                    ("ca.host_token", file.host_token.is_some()),
                ] {
                    if set {
                        return Err(invalid(key, "only meaningful with mode = \"remote\""));
                    }
                }
                let ca = match &file.config {
                    Some(path) => CaConfig::load(Some(&base.join(path)))?,
                    None => {
                        let mut ca = CaConfig::load(None)?;
                        ca.data_dir = base.join("data/ca");
                        ca.policy = ca.data_dir.join("policy.toml");
                        ca
                    }
                };
                Ok(CaSettings::Embedded(Box::new(ca)))
            }
            CaMode::Remote => {
                if file.config.is_some() {
                    return Err(invalid(
                        "ca.config",
                        "only meaningful with mode = \"embedded\"",
                    ));
                }
                let required = |key: &str, value: Option<PathBuf>| {
                    value
                        .map(|p| base.join(p))
                        .ok_or_else(|| invalid(key, "required with mode = \"remote\""))
                };
                let address = file
                    .address
                    .ok_or_else(|| invalid("ca.address", "required with mode = \"remote\""))?;
                let Some((host, _)) = split_host_port(&address) else {
                    return Err(invalid("ca.address", "expected host:port"));
                };
                let name = file.name.unwrap_or_else(|| host.to_string());
                Ok(CaSettings::Remote(RemoteCa {
                    name,
                    host_ca: required("ca.host_ca", file.host_ca)?,
                    identity: required("ca.identity", file.identity)?,
                    host_token: file.host_token,
                    address,
                }))
            }
        }
    }

    /// The target called `name` (case-insensitive, as host names are).
    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
    }

    /// The pid file of `ssh-bastion serve`, which `ssh-bastion reload` signals.
    pub fn pid_file_path(&self) -> PathBuf {
        self.data_dir.join("ssh-bastion.pid")
    }

    /// The bastion's host key file.
    pub fn host_key_path(&self) -> PathBuf {
        self.data_dir.join("host_ed25519_key")
    }

    /// The bastion's audit log.
    pub fn audit_path(&self) -> PathBuf {
        self.data_dir.join("audit.log")
    }

    /// Where session recordings go.
    pub fn recordings_dir(&self) -> PathBuf {
        self.data_dir.join("recordings")
    }

    /// Opens the session index `serve` writes and the auditor commands read: `sessions.db`
    /// (created if missing), or the database of `[store] url`, migrated if behind.
    pub fn open_session_store(
        &self,
    ) -> Result<std::sync::Arc<dyn jitssh_core::store::SessionStore>, jitssh_core::store::StoreError>
    {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let audit = std::path::absolute(self.audit_path()).unwrap_or_else(|_| self.audit_path());
        jitssh_authority::backend::open_session_store(
            &self.store,
            &self.session_index_path(),
            format!("{}:{}", host.trim(), audit.display()),
        )
    }

    /// The session index (SQLite) when there is no `[store] url`.
    pub fn session_index_path(&self) -> PathBuf {
        self.data_dir.join("sessions.db")
    }
}

/// This machine's host name, `localhost` and the listen address.
fn default_names(listen: SocketAddr) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if valid_target_name(host) {
            names.push(host.to_string());
        }
    }
    names.push("localhost".to_string());
    names.push(listen.ip().to_string());
    names.dedup();
    names
}

/// Splits `host:port` (or `[v6]:port`); `None` when malformed or the port is not a number.
pub fn split_host_port(address: &str) -> Option<(&str, u16)> {
    let (host, port) = address.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || port == 0 {
        return None;
    }
    Some((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<BastionConfig, String> {
        BastionConfig::parse(text, "bastion.toml", Path::new("/etc/jit")).map_err(|e| e.to_string())
    }

    #[test]
    fn embedded_defaults() {
        let config = BastionConfig::load(None).unwrap();
        assert_eq!(config.data_dir, Path::new("./data/bastion"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:2222");
        assert!(config.names.contains(&"localhost".to_string()));
        assert!(config.names.contains(&"127.0.0.1".to_string()));
        let CaSettings::Embedded(ca) = &config.ca else {
            panic!("embedded by default")
        };
        assert_eq!(ca.data_dir, Path::new("./data/ca"));
        assert!(config.targets.is_empty());
        assert_eq!(config.forwarding, Forwarding::default());
        assert!(!config.forwarding.port && !config.forwarding.agent && !config.forwarding.x11);
    }

    #[test]
    fn targets_and_paths_resolve() {
        let config = parse(
            "data_dir = \"d\"\n[[targets]]\nname = \"web01\"\naddress = \"10.0.0.5:22\"\n\
             [[targets]]\nname = \"db\"\naddress = \"[::1]:2022\"\n",
        )
        .unwrap();
        assert_eq!(config.data_dir, Path::new("/etc/jit/d"));
        assert_eq!(config.target("WEB01").unwrap().address, "10.0.0.5:22");
        assert_eq!(config.target("db").unwrap().address, "[::1]:2022");
        assert!(config.target("web02").is_none());
    }

    #[test]
    fn unknown_key_is_an_error_naming_file_line_and_key() {
        let err = parse("listen = \"127.0.0.1:2222\"\n[[targets]]\nname = \"a\"\naddress = \"h:22\"\nport = 22\n")
            .unwrap_err();
        assert!(err.starts_with("bastion.toml:5:"), "{err}");
        assert!(err.contains("port"), "{err}");
        let err = parse("[ca]\nmode = \"embedded\"\nconfg = \"x\"\n").unwrap_err();
        assert!(err.starts_with("bastion.toml:3:"), "{err}");
        assert!(err.contains("confg"), "{err}");
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = parse("[[targets]]\nname = \"a b\"\naddress = \"h:22\"\n").unwrap_err();
        assert!(err.contains("targets[0].name"), "{err}");
        assert!(err.starts_with("bastion.toml:2:"), "{err}");
        let err = parse("[[targets]]\nname = \"a\"\naddress = \"h\"\n").unwrap_err();
        assert!(err.contains("targets[0].address"), "{err}");
        let err = parse(
            "[[targets]]\nname = \"a\"\naddress = \"h:1\"\n[[targets]]\nname = \"A\"\naddress = \"h:2\"\n",
        )
        .unwrap_err();
        assert!(err.contains("duplicate"), "{err}");
        let err = parse("[session]\ncert_ttl = \"1h\"\n").unwrap_err();
        assert!(err.contains("session.cert_ttl"), "{err}");
        let err = parse("[ca]\nmode = \"cloud\"\n").unwrap_err();
        assert!(err.contains("ca.mode"), "{err}");
        let err = parse("names = []\n").unwrap_err();
        assert!(err.contains("bastion.toml:1: key names"), "{err}");
        let err = parse("names = [\"a b\"]\n").unwrap_err();
        assert!(err.contains("invalid host name"), "{err}");
        let err = parse("[limits]\nmax_channels = 0\n").unwrap_err();
        assert!(err.contains("limits.max_channels"), "{err}");
        let err = parse("[recordings]\non_failure = \"shrug\"\n").unwrap_err();
        assert!(err.contains("recordings.on_failure"), "{err}");
        let config = parse("[recordings]\non_failure = \"continue\"\nretain = \"30d\"\n").unwrap();
        assert_eq!(config.recordings.policy().on_failure, OnFailure::Continue);
        assert_eq!(
            config.recordings.retain,
            Some(HumanDuration::from_secs(30 * 86400))
        );
    }

    #[test]
    fn remote_mode_requires_its_keys_and_embedded_refuses_them() {
        let err = parse("[ca]\nmode = \"remote\"\n").unwrap_err();
        assert!(err.contains("ca.address"), "{err}");
        let err = parse("[ca]\nmode = \"remote\"\naddress = \"ca:2200\"\n").unwrap_err();
        assert!(err.contains("ca.host_ca"), "{err}");
        let config = parse(
            "[ca]\nmode = \"remote\"\naddress = \"ca.example:2200\"\nhost_ca = \"h.pub\"\n\
             identity = \"id\"\n",
        )
        .unwrap();
        let CaSettings::Remote(remote) = config.ca else {
            panic!("remote")
        };
        assert_eq!(remote.name, "ca.example");
        assert_eq!(remote.identity, Path::new("/etc/jit/id"));
        let err = parse("[ca]\naddress = \"ca:2200\"\n").unwrap_err();
        assert!(
            err.contains("ca.address") && err.contains("remote"),
            "{err}"
        );
        // Sign-in by the identity provider needs the policy, which only the embedded CA has.
        let err = parse(
            "[ca]\nmode = \"remote\"\naddress = \"ca.example:2200\"\nhost_ca = \"h.pub\"\n\
             identity = \"id\"\n[web]\nlisten = \"127.0.0.1:8443\"\n[web.sso]\n\
             issuer = \"https://idp.example\"\nclient_id = \"jitssh-web\"\n",
        )
        .unwrap_err();
        assert!(
            err.contains("web.sso") && err.contains("embedded CA"),
            "{err}"
        );
    }

    #[test]
    fn the_documented_example_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/bastion.toml");
        let config = BastionConfig::load(Some(&path)).unwrap();
        let defaults = BastionConfig::load(None).unwrap();
        assert_eq!(config.listen, defaults.listen);
        assert_eq!(config.forwarding, defaults.forwarding);
        assert_eq!(config.recordings, defaults.recordings);
        assert_eq!(config.session.env, defaults.session.env);
        assert_eq!(config.limits.channel_buffer, defaults.limits.channel_buffer);
    }

    #[test]
    fn the_documented_session_index_store_parses() {
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/bastion.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bastion.toml");
        std::fs::write(&path, &example).unwrap();
        let config = BastionConfig::load(Some(&path)).unwrap();
        assert_eq!(config.store.url, None, "sessions.db by default");
        let text = example
            .replace("# url = \"postgres://", "url = \"postgres://")
            .replace("# password_file = ", "password_file = ");
        assert_ne!(text, example, "config/bastion.toml documents [store] url");
        std::fs::write(&path, text).unwrap();
        let config = BastionConfig::load(Some(&path)).unwrap();
        assert!(
            config
                .store
                .url
                .as_deref()
                .is_some_and(|u| u.starts_with("postgres://jitssh_bastion@db.example.com:5432/"))
        );
        assert_eq!(
            config.store.password_file,
            Some(dir.path().join("db-password"))
        );
        assert_eq!(config.store.connect_timeout.as_secs(), 5);
        assert_eq!(config.store.pool_size, 16);
        let err = parse("[store]\nurl = \"postgres://db/j?sslmode=prefer\"\n").unwrap_err();
        assert!(err.contains("store.url"), "{err}");
        let err = parse("[store]\npool_size = 0\n").unwrap_err();
        assert!(err.contains("store.pool_size"), "{err}");
    }

    #[test]
    fn the_documented_store_keys_parse() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/bastion.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let keys: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.starts_with("store = ") || l.starts_with("s3_"))
            .collect();
        assert_eq!(keys.len(), 6, "{keys:?}");
        let config = parse(&format!("[recordings]\n{}\n", keys.join("\n"))).unwrap();
        let store = config.recordings_store.unwrap();
        assert_eq!(
            (store.bucket.as_str(), store.prefix.as_str()),
            ("recordings", "bastion-1")
        );
        assert_eq!(store.region.as_deref(), Some("eu-west-1"));
        assert_eq!(config.recordings.s3_cache_bytes, 1 << 30);
        // Plain http to a non-loopback endpoint, and s3_* keys without a store, are refused.
        let err = parse(
            "[recordings]\nstore = \"s3://recs\"\ns3_endpoint = \"http://10.1.2.3:3900\"\ns3_allow_http = true\n",
        )
        .unwrap_err();
        assert!(err.contains("recordings.s3_allow_http"), "{err}");
        let err = parse("[recordings]\ns3_region = \"x\"\n").unwrap_err();
        assert!(err.contains("recordings.store"), "{err}");
    }

    #[test]
    fn split_host_port_handles_v6_and_garbage() {
        assert_eq!(split_host_port("h:22"), Some(("h", 22)));
        assert_eq!(split_host_port("[::1]:22"), Some(("::1", 22)));
        assert_eq!(split_host_port("h:0"), None);
        assert_eq!(split_host_port(":22"), None);
        assert_eq!(split_host_port("h:x"), None);
    }
}
