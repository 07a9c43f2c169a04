//! `ca.toml`: where the authority keeps its data, where it listens, and its policy.
//!
//! Relative paths in a config file are relative to that file's directory, so a config can be
//! moved with its data. Without `--config`, embedded defaults apply, relative to the current
//! directory (data in `./data/ca`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use jitssh_core::audit::forward::{AuditSection, ForwardTarget};
use jitssh_core::config::{self, ConfigError};
use jitssh_core::duration::HumanDuration;
use jitssh_core::ssh_key::PublicKey;
use jitssh_server::accept::Startups;
use serde::Deserialize;

/// The CA's configuration, with paths resolved.
#[derive(Debug, Clone)]
pub struct CaConfig {
    /// Keys, store, audit log and KRL live here.
    pub data_dir: PathBuf,
    /// Address of the SSH API.
    pub listen: SocketAddr,
    /// The policy file.
    pub policy: PathBuf,
    /// Whether the policy file must exist (true when a config names it).
    pub policy_required: bool,
    /// A second policy evaluated beside `policy` and never enforced (shadow mode): where the
    /// two decide differently, a `policy.shadow` audit record says how.
    pub shadow_policy: Option<PathBuf>,
    /// Certificates start this long before issuance, for clients whose clocks lag.
    pub clock_skew: HumanDuration,
    /// Names the CA's own host certificate carries (default: hostname, localhost, listen IP).
    pub names: Vec<String>,
    /// Where this configuration came from (a path, or `<embedded defaults>`).
    pub origin: String,
    /// Limits of the SSH API.
    pub limits: Limits,
    /// How long an access request waits for a decision.
    pub request_expiry: HumanDuration,
    /// Keys of bastions allowed to ask for per-session certificates (user `bastion`).
    pub bastion_keys: Vec<PublicKey>,
    /// Where `serve` streams the audit log as it is written (`[audit] forward`).
    pub audit_forward: Option<ForwardTarget>,
    /// How often the audit chain's head is recorded in the store's audit index; `None` when
    /// the log is not indexed (`[audit] index = false`).
    pub audit_index: Option<std::time::Duration>,
    /// Where `serve` answers Prometheus scrapes (`[metrics] listen`); none by default.
    pub metrics_listen: Option<SocketAddr>,
    /// Sign-in through the organisation's identity provider (`ssh sso@ca login`), if set.
    pub sso: Option<crate::sso::SsoConfig>,
    /// Where the CA's state lives (`[store]`): `store.db` in the data directory, or a
    /// PostgreSQL database shared by several CA instances.
    pub store: StoreSettings,
}

/// `[store]`: the CA's state on PostgreSQL instead of `<data_dir>/store.db`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// `postgres://user@host:port/db?sslmode=verify-full&sslrootcert=PATH`; unset: SQLite.
    #[serde(default)]
    pub url: Option<String>,
    /// File holding the database password (instead of one in the url).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Time allowed to connect, or to wait for a pooled connection.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout: HumanDuration,
    /// Time the database lets one statement (or lock wait) run.
    #[serde(default = "default_statement_timeout")]
    pub statement_timeout: HumanDuration,
    /// Connections kept open at most.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

impl StoreSettings {
    /// Checks the url and pool size and makes `password_file` relative to `base` (the
    /// configuration file's directory); a bad key comes back as `(key, why)`.
    pub fn resolve(mut self, base: &Path) -> Result<StoreSettings, (&'static str, String)> {
        if let Some(url) = &self.url
            && let Err(err) = jitssh_postgres::url::StoreUrl::parse(url)
        {
            return Err(("store.url", err.to_string()));
        }
        if self.pool_size == 0 {
            return Err(("store.pool_size", "must be at least 1".into()));
        }
        self.password_file = self.password_file.map(|p| base.join(p));
        Ok(self)
    }
}

impl Default for StoreSettings {
    fn default() -> Self {
        StoreSettings {
            url: None,
            password_file: None,
            connect_timeout: default_connect_timeout(),
            statement_timeout: default_statement_timeout(),
            pool_size: default_pool_size(),
        }
    }
}

fn default_connect_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}
fn default_statement_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_pool_size() -> usize {
    16
}

/// `[metrics]`: the Prometheus scrape endpoint.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsFile {
    /// `host:port` of `/metrics`; unset: no endpoint.
    #[serde(default)]
    listen: Option<SocketAddr>,
}

/// Resource limits of the SSH API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Time allowed from TCP connect to authenticated; then the socket is closed.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout: HumanDuration,
    /// Budget of unauthenticated connections, `start:rate:full` as OpenSSH's `MaxStartups`.
    #[serde(default)]
    pub max_startups: Startups,
    /// Unauthenticated connections from one source address.
    #[serde(default = "default_max_startups_per_source")]
    pub max_startups_per_source: usize,
    /// A connection idle this long is closed.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: HumanDuration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: default_max_connections(),
            handshake_timeout: default_handshake_timeout(),
            max_startups: Startups::default(),
            max_startups_per_source: default_max_startups_per_source(),
            idle_timeout: default_idle_timeout(),
        }
    }
}

fn default_max_connections() -> usize {
    256
}
fn default_handshake_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}
fn default_max_startups_per_source() -> usize {
    32
}
fn default_idle_timeout() -> HumanDuration {
    HumanDuration::from_secs(60)
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CaFile {
    #[serde(default = "default_data_dir")]
    data_dir: PathBuf,
    #[serde(default = "default_listen")]
    listen: SocketAddr,
    #[serde(default)]
    policy: Option<PathBuf>,
    #[serde(default)]
    shadow_policy: Option<PathBuf>,
    #[serde(default = "default_clock_skew")]
    clock_skew: HumanDuration,
    #[serde(default)]
    names: Option<Vec<String>>,
    #[serde(default)]
    limits: Limits,
    #[serde(default = "default_request_expiry")]
    request_expiry: HumanDuration,
    #[serde(default)]
    bastion_keys: Vec<String>,
    #[serde(default)]
    audit: AuditSection,
    #[serde(default)]
    metrics: MetricsFile,
    sso: Option<crate::sso::SsoConfig>,
    #[serde(default)]
    store: StoreSettings,
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data/ca")
}
fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 2200))
}
fn default_clock_skew() -> HumanDuration {
    HumanDuration::from_secs(120)
}
fn default_request_expiry() -> HumanDuration {
    HumanDuration::from_secs(3600)
}

/// Origin name of the built-in configuration.
pub const EMBEDDED: &str = "<embedded defaults>";

impl CaConfig {
    /// Loads `path`, or the embedded defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<CaConfig, ConfigError> {
        match path {
            Some(path) => {
                let file: CaFile = config::load_toml(path)?;
                let base = path.parent().unwrap_or(Path::new("."));
                Self::resolve(file, base, &path.display().to_string())
            }
            None => {
                let file: CaFile = config::parse_toml("", EMBEDDED)?;
                Self::resolve(file, Path::new("."), EMBEDDED)
            }
        }
    }

    fn resolve(file: CaFile, base: &Path, origin: &str) -> Result<CaConfig, ConfigError> {
        let data_dir = base.join(&file.data_dir);
        let (policy, policy_required) = match &file.policy {
            Some(policy) => (base.join(policy), true),
            None => (data_dir.join("policy.toml"), false),
        };
        let names = match file.names {
            Some(names) if names.is_empty() => {
                return Err(ConfigError::invalid(origin, "", "names", "names is empty"));
            }
            Some(names) => names,
            None => default_names(file.listen),
        };
        if file.limits.max_connections == 0 {
            return Err(ConfigError::invalid(
                origin,
                "",
                "limits.max_connections",
                "must be at least 1",
            ));
        }
        if file.limits.max_startups_per_source == 0 {
            return Err(ConfigError::invalid(
                origin,
                "",
                "limits.max_startups_per_source",
                "must be at least 1",
            ));
        }
        let mut bastion_keys = Vec::new();
        for line in &file.bastion_keys {
            let key = PublicKey::from_openssh(line.trim()).map_err(|err| {
                ConfigError::invalid(
                    origin,
                    "",
                    "bastion_keys",
                    format!("not an OpenSSH public key: {err}"),
                )
            })?;
            bastion_keys.push(key);
        }
        if let Some(Err((key, message))) = file.sso.as_ref().map(|sso| sso.check()) {
            return Err(ConfigError::invalid(origin, "", &key, message));
        }
        let store = file
            .store
            .resolve(base)
            .map_err(|(key, message)| ConfigError::invalid(origin, "", key, message))?;
        Ok(CaConfig {
            audit_index: file.audit.index_heads_every(),
            store,
            audit_forward: file.audit.forward.map(|target| target.relative_to(base)),
            metrics_listen: file.metrics.listen,
            sso: file.sso,
            bastion_keys,
            data_dir,
            listen: file.listen,
            policy,
            policy_required,
            shadow_policy: file.shadow_policy.map(|p| base.join(p)),
            clock_skew: file.clock_skew,
            names,
            origin: origin.to_string(),
            limits: file.limits,
            request_expiry: file.request_expiry,
        })
    }

    /// The store, for messages: the PostgreSQL url (no password) or the SQLite file.
    pub fn store_name(&self) -> String {
        match &self.store.url {
            Some(url) => jitssh_postgres::url::StoreUrl::parse(url)
                .map(|u| u.display)
                .unwrap_or_else(|_| url.clone()),
            None => crate::authority::absolute(&self.store_path())
                .display()
                .to_string(),
        }
    }

    /// The store database (SQLite; unused with `[store] url`).
    pub fn store_path(&self) -> PathBuf {
        self.data_dir.join("store.db")
    }

    /// The audit log.
    pub fn audit_path(&self) -> PathBuf {
        self.data_dir.join("audit.log")
    }

    /// The KRL kept up to date on every revocation.
    pub fn krl_path(&self) -> PathBuf {
        self.data_dir.join("revoked.krl")
    }
}

fn default_names(listen: SocketAddr) -> Vec<String> {
    let mut names = Vec::new();
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if !host.is_empty() {
            names.push(host.to_string());
        }
    }
    names.push("localhost".to_string());
    names.push(listen.ip().to_string());
    names.dedup();
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults() {
        let config = CaConfig::load(None).unwrap();
        assert_eq!(config.data_dir, Path::new("./data/ca"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:2200");
        assert!(!config.policy_required);
        assert!(config.names.contains(&"localhost".to_string()));
    }

    #[test]
    fn paths_are_relative_to_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.toml");
        std::fs::write(&path, "data_dir = \"d\"\npolicy = \"p.toml\"\n").unwrap();
        let config = CaConfig::load(Some(&path)).unwrap();
        assert_eq!(config.data_dir, dir.path().join("d"));
        assert_eq!(config.policy, dir.path().join("p.toml"));
        assert!(config.policy_required);
    }

    #[test]
    fn unknown_key_is_an_error_naming_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.toml");
        std::fs::write(&path, "listen = \"127.0.0.1:2200\"\nlisten_port = 1\n").unwrap();
        let err = CaConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("ca.toml:2"), "{err}");
        assert!(err.contains("listen_port"), "{err}");
    }

    #[test]
    fn the_documented_sso_section_parses() {
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ca.toml"),
        )
        .unwrap();
        let at = example.find("# [sso]").unwrap();
        let section: String = example[at..]
            .lines()
            .map(|l| l.strip_prefix("# ").unwrap_or(l))
            .collect::<Vec<_>>()
            .join("\n");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.toml");
        std::fs::write(&path, format!("{}\n{section}\n", &example[..at])).unwrap();
        let sso = CaConfig::load(Some(&path)).unwrap().sso.unwrap();
        assert_eq!(sso.client_id, "jitssh");
        assert_eq!(sso.name_claim, crate::sso::NameClaim::Email);
        assert_eq!(sso.timeout.as_secs(), 5);
        assert!(CaConfig::load(Some(&dir.path().join("../nope.toml"))).is_err());
    }

    #[test]
    fn the_documented_audit_index_keys_parse() {
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ca.toml"),
        )
        .unwrap();
        let text = example
            .replace("# index = true", "index = false")
            .replace("# head_interval = \"1m\"", "head_interval = \"5m\"");
        assert_ne!(text, example, "config/ca.toml documents [audit] index");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.toml");
        std::fs::write(&path, &text).unwrap();
        assert_eq!(CaConfig::load(Some(&path)).unwrap().audit_index, None);
        std::fs::write(&path, text.replace("index = false", "index = true")).unwrap();
        assert_eq!(
            CaConfig::load(Some(&path)).unwrap().audit_index,
            Some(std::time::Duration::from_secs(300))
        );
    }

    #[test]
    fn the_documented_store_section_parses_and_sqlite_stays_the_default() {
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ca.toml"),
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.toml");
        std::fs::write(&path, &example).unwrap();
        let config = CaConfig::load(Some(&path)).unwrap();
        assert_eq!(config.store.url, None, "SQLite by default");
        assert_eq!(config.store.connect_timeout.as_secs(), 5);
        let text = example
            .replace("# url = \"postgres://", "url = \"postgres://")
            .replace("# password_file = ", "password_file = ");
        assert_ne!(text, example, "config/ca.toml documents [store] url");
        std::fs::write(&path, text).unwrap();
        let config = CaConfig::load(Some(&path)).unwrap();
        assert!(
            config
                .store_name()
                .starts_with("postgres://jitssh_ca@db.example.com:5432/jitssh")
        );
        assert_eq!(
            config.store.password_file,
            Some(dir.path().join("db-password"))
        );
        assert_eq!(config.store.pool_size, 16);
        std::fs::write(&path, "[store]\nurl = \"postgres://db/j?sslmode=prefer\"\n").unwrap();
        let err = CaConfig::load(Some(&path)).unwrap_err().to_string();
        assert!(
            err.contains("store.url") && err.contains("sslmode=prefer"),
            "{err}"
        );
    }

    #[test]
    fn the_documented_shadow_policy_line_parses() {
        let example = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/ca.toml"),
        )
        .unwrap();
        let text = example.replace("# shadow_policy = ", "shadow_policy = ");
        assert_ne!(text, example, "config/ca.toml documents shadow_policy");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.toml");
        std::fs::write(&path, text).unwrap();
        let config = CaConfig::load(Some(&path)).unwrap();
        assert_eq!(
            config.shadow_policy,
            Some(dir.path().join("policy.next.toml"))
        );
        assert_eq!(CaConfig::load(None).unwrap().shadow_policy, None);
    }

    #[test]
    fn sso_without_openid_or_with_a_bad_issuer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.toml");
        for (text, key) in [
            (
                "[sso]\nissuer = \"ftp://x\"\nclient_id = \"c\"\n",
                "sso.issuer",
            ),
            (
                "[sso]\nissuer = \"https://x\"\nclient_id = \"c\"\nscopes = [\"email\"]\n",
                "sso.scopes",
            ),
            (
                "[sso]\nissuer = \"https://x\"\nclient_id = \"c\"\nname_claim = \"nick\"\n",
                "name_claim",
            ),
        ] {
            std::fs::write(&path, text).unwrap();
            let err = CaConfig::load(Some(&path)).unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
        }
    }
}
