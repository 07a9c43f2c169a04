//! The authority: the one place certificates are issued and revoked.
//!
//! Offline operator commands, the SSH API and the bastion all go through [`Authority`], so every
//! certificate gets the same treatment: a serial reserved durably before signing, a record in
//! the store, and an audit record fsynced before the certificate is handed out.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use jitssh_core::audit::{AuditError, AuditEvent, AuditLog};
use jitssh_core::cert::{CertError, CertSpec};
use jitssh_core::config::ConfigError;
use jitssh_core::keys::{CaKeys, CaKind, KeyError};
use jitssh_core::krl::Krl;
use jitssh_core::policy::{CertRequest, Denial, Grant, Policy};
use jitssh_core::revocation::{RevocationCache, RevocationSet};
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::public::KeyData;
use jitssh_core::ssh_key::{Certificate, HashAlg, PublicKey};
use jitssh_core::store::{
    AuditIndex, CaKeyFingerprints, HostStore, IssuedCert, RequestStore, Revocation, Revoked, Store,
    StoreError, TokenStore,
};
use jitssh_core::unix_now;
use serde_json::json;

use crate::commit::GroupCommit;
use crate::config::CaConfig;
use crate::metrics::DenialCategory;
use crate::revocation;

/// Errors opening the authority.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// CA keys missing, unreadable or malformed.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// The policy file is broken.
    #[error(transparent)]
    Policy(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The data directory has no CA keys but its store belongs to other ones (creating new
    /// keys would silently start another CA, e.g. `--config` pointing elsewhere), or the keys
    /// found are not the ones the store belongs to. The message names both, with paths.
    #[error("{0}")]
    KeysNotOfStore(String),
    /// Certificates left pending by a crash could not be reconciled.
    #[error("cannot reconcile unreleased certificates: {0}")]
    Reconcile(#[from] crate::commit::ReconcileError),
}

/// Errors issuing or revoking.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The policy refused; the reason is for the requester.
    #[error("denied: {0}")]
    Denied(#[from] Denial),
    /// The certificate could not be built.
    #[error(transparent)]
    Cert(#[from] CertError),
    /// The store failed; nothing was handed out.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit record could not be written; nothing was handed out.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The certificate could not be recorded (store or audit log); it was not handed out.
    #[error("cannot record the certificate: {0}")]
    Commit(#[from] crate::commit::CommitError),
    /// A host certificate asked of a user-kind CA, or the reverse (a bug, never signed).
    #[error("a {cert_type} certificate cannot be signed by the {ca} CA")]
    WrongCa {
        /// `user` or `host`.
        cert_type: &'static str,
        /// The CA asked for.
        ca: &'static str,
    },
    /// The KRL file could not be written.
    #[error("cannot write KRL {path}: {source}")]
    KrlWrite {
        /// The KRL path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A certificate handed out.
#[derive(Debug, Clone)]
pub struct Issued {
    /// The certificate.
    pub certificate: Certificate,
    /// Its OpenSSH line (`ssh-ed25519-cert-v01@openssh.com AAAA... key-id`).
    pub line: String,
}

/// How the authority opens.
#[derive(Debug, Clone, Copy)]
pub struct OpenOptions {
    /// Create the CA keys when there are none (a server's first start).
    pub init_keys: bool,
    /// Serials reserved per store transaction: 1 for one-shot commands, more for servers.
    pub serial_block: u64,
}

/// Serial numbers leased from the store in blocks: one durable write per block, and a serial
/// is never handed out twice even if the process dies (unused ones are simply skipped).
struct SerialPool {
    block: u64,
    range: Mutex<Range<u64>>,
}

impl SerialPool {
    fn next(&self, store: &dyn Store) -> Result<u64, StoreError> {
        let mut range = self.range.lock().unwrap_or_else(|p| p.into_inner());
        if range.is_empty() {
            *range = store.reserve_serials(self.block)?;
        }
        let serial = range.start;
        range.start += 1;
        Ok(serial)
    }
}

/// Everything the authority keeps durably: certificates, revocations, requests, hosts.
pub trait CaStore: Store + RequestStore + HostStore + TokenStore + AuditIndex {}
impl<T: Store + RequestStore + HostStore + TokenStore + AuditIndex> CaStore for T {}

/// The certificate authority.
pub struct Authority {
    config: CaConfig,
    keys: CaKeys,
    policy: RwLock<Arc<Policy>>,
    /// The shadow policy (`shadow_policy` in ca.toml): evaluated, compared, never enforced.
    shadow: RwLock<Option<Arc<Policy>>>,
    store: Arc<dyn CaStore>,
    audit: AuditLog,
    serials: SerialPool,
    commits: GroupCommit,
    join_guard: crate::join_guard::JoinGuard,
    login_denials: crate::denials::Denials,
    created_keys: bool,
    /// Revocations in memory, kept current with the store (whichever process revokes).
    revocations: RevocationCache,
    /// The last KRL built, with the revocation generation it reflects.
    krl: Mutex<Option<(u64, Krl)>>,
}

impl Authority {
    /// Opens the authority described by `config`.
    pub fn open(config: CaConfig, options: OpenOptions) -> Result<Authority, OpenError> {
        let keys_dir = absolute(&config.data_dir);
        let created_keys = options.init_keys && !CaKeys::exist(&config.data_dir);
        let mut added_target = None;
        let (keys, store) = if created_keys {
            let (store, _) = crate::backend::open(&config)?;
            refuse_other_keys(&*store, &config)?;
            let keys = CaKeys::init(&config.data_dir)?;
            tracing::info!(
                user_ca = %keys.user.fingerprint(),
                host_ca = %keys.host.fingerprint(),
                target_ca = %keys.target.fingerprint(),
                dir = %keys_dir.display(),
                "created CA keys"
            );
            (keys, store)
        } else {
            // Keys first: an offline command run in the wrong place must not create a store.
            // A directory from before the target CA gets that key now (audited below); one
            // without the user and host CA keys gets nothing.
            added_target = CaKeys::add_missing_target(&config.data_dir)?;
            let keys = CaKeys::load(&config.data_dir)?;
            (keys, crate::backend::open(&config)?.0)
        };
        let found = CaKeyFingerprints {
            user: keys.user.fingerprint(),
            host: keys.host.fingerprint(),
            target: Some(keys.target.fingerprint()),
        };
        let recorded = store.record_ca_keys(&found)?;
        if recorded != found {
            return Err(OpenError::KeysNotOfStore(format!(
                "the CA keys in {} (user CA {}, host CA {}, target CA {}) are not the ones {} \
                 belongs to (user CA {}, host CA {}, target CA {}): refusing to mix them; \
                 restore the recorded key files",
                keys_dir.display(),
                found.user,
                found.host,
                found.target.as_deref().unwrap_or("-"),
                config.store_name(),
                recorded.user,
                recorded.host,
                recorded.target.as_deref().unwrap_or("-"),
            )));
        }
        let policy = load_policy(&config)?;
        let shadow = match &config.shadow_policy {
            Some(path) => Some(Arc::new(Policy::load(path)?)),
            None => None,
        };
        let audit = AuditLog::open(&config.audit_path())?;
        audit.observe(crate::metrics::observer());
        if let Some(target) = &added_target {
            let path = keys_dir.join(CaKind::Target.file_name());
            tracing::warn!(
                target_ca = %target.fingerprint(),
                path = %path.display(),
                "created the target CA key (upgrade): roll the targets over to it, see the operator guide"
            );
            audit.append(
                AuditEvent::new("ca.key_added")
                    .with("ca", CaKind::Target.name())
                    .with("fingerprint", target.fingerprint())
                    .with("path", path.display().to_string())
                    .with("user_ca", keys.user.fingerprint())
                    .with("host_ca", keys.host.fingerprint()),
            )?;
        }
        let unreleased = crate::commit::reconcile_unreleased(&*store, &audit)?;
        if unreleased > 0 {
            tracing::warn!(
                count = unreleased,
                "audited certificates a stopped process signed but never handed out (cert.unreleased)"
            );
        }
        Ok(Authority {
            serials: SerialPool {
                block: options.serial_block.max(1),
                range: Mutex::new(0..0),
            },
            config,
            keys,
            policy: RwLock::new(Arc::new(policy)),
            shadow: RwLock::new(shadow),
            store,
            audit,
            commits: GroupCommit::default(),
            join_guard: Default::default(),
            login_denials: crate::denials::Denials::new("api.login_refused"),
            created_keys,
            revocations: RevocationCache::default(),
            krl: Mutex::new(None),
        })
    }

    /// Whether opening created the CA keys (a server's first start).
    pub fn created_keys(&self) -> bool {
        self.created_keys
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &CaConfig {
        &self.config
    }

    /// The CA keys.
    pub fn keys(&self) -> &CaKeys {
        &self.keys
    }

    /// The store.
    pub fn store(&self) -> &dyn CaStore {
        self.store.as_ref()
    }

    /// The store's audit index, for the thread that ships the audit log into it.
    pub fn audit_index(&self) -> Arc<dyn AuditIndex> {
        self.store.clone()
    }

    /// The failed-join limiter (host joins over the API).
    pub fn join_guard(&self) -> &crate::join_guard::JoinGuard {
        &self.join_guard
    }

    /// Refused API logins, audited in aggregate per source.
    pub fn login_denials(&self) -> &crate::denials::Denials {
        &self.login_denials
    }

    /// Writes the aggregated refusal summaries (failed joins, refused logins) whose window
    /// has ended, or all of them with `all` (at shutdown).
    pub fn flush_denials(&self, all: bool) {
        let now = std::time::Instant::now();
        let mut due = self.join_guard.flush(now, all);
        due.extend(self.login_denials.flush(now, all));
        if !due.is_empty()
            && let Err(err) = self.audit.append_batch(due)
        {
            tracing::error!(%err, "cannot audit refusal summaries");
        }
    }

    /// The audit log.
    pub fn audit(&self) -> &AuditLog {
        &self.audit
    }

    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the policy file; on error the old policy stays in force.
    pub fn reload_policy(&self) -> Result<(), ConfigError> {
        let policy = load_policy(&self.config)?;
        *self.policy.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(policy);
        Ok(())
    }

    /// The shadow policy, when one is configured (see [`crate::shadow`]).
    pub fn shadow_policy(&self) -> Option<Arc<Policy>> {
        self.shadow
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Re-reads the shadow policy file, if one is configured (`Ok(false)` when none is); on
    /// error the old shadow policy stays. Independent of [`Authority::reload_policy`]: a broken
    /// shadow file never holds back a change to the enforced policy.
    pub fn reload_shadow_policy(&self) -> Result<bool, ConfigError> {
        let Some(path) = &self.config.shadow_policy else {
            return Ok(false);
        };
        let shadow = Policy::load(path)?;
        *self.shadow.write().unwrap_or_else(|p| p.into_inner()) = Some(Arc::new(shadow));
        Ok(true)
    }

    /// What `user` would get for `request` now, without signing anything.
    pub fn plan(
        &self,
        user: &str,
        subject: KeyData,
        request: &CertRequest,
    ) -> Result<(Grant, CertSpec), Denial> {
        self.plan_at(user, subject, request, unix_now())
    }

    /// [`Authority::plan`] with the shadow policy's decision for the same request at the same
    /// time beside it (`None` without a shadow policy): for `cert --dry-run`. Audits nothing.
    pub fn plan_with_shadow(
        &self,
        user: &str,
        subject: KeyData,
        request: &CertRequest,
    ) -> crate::shadow::PlanWithShadow {
        let now = unix_now();
        let shadow = self.shadow_evaluate(|shadow| shadow.evaluate(user, request, now));
        (self.plan_at(user, subject, request, now), shadow)
    }

    fn plan_at(
        &self,
        user: &str,
        subject: KeyData,
        request: &CertRequest,
        now: u64,
    ) -> Result<(Grant, CertSpec), Denial> {
        let grant = self.policy().evaluate(user, request, now)?;
        let spec = CertSpec::from_grant(&grant, subject, now, self.config.clock_skew.as_secs());
        Ok((grant, spec))
    }

    /// Issues a user certificate as the policy allows, or records and returns the denial.
    pub fn issue_for_user(
        &self,
        user: &str,
        subject: KeyData,
        request: &CertRequest,
    ) -> Result<Issued, IssueError> {
        let fingerprint = subject.fingerprint(HashAlg::Sha256).to_string();
        self.deny_if_revoked(user, &subject, None)?;
        if let Some(owner) = self
            .policy()
            .user_by_key(&PublicKey::new(subject.clone(), ""))
            && owner.name != user
        {
            // Never say whose key it is: the requester may be probing.
            let reason = format!("key {fingerprint} is enrolled for another user");
            self.audit.append(
                AuditEvent::new("cert.denied")
                    .with("user", user)
                    .with("subject", fingerprint)
                    .with("owner", owner.name.as_str())
                    .with("category", DenialCategory::KeyOfOtherUser.as_str())
                    .with("reason", reason.as_str()),
            )?;
            return Err(IssueError::Denied(Denial { reason }));
        }
        let now = unix_now();
        let planned = self.plan_at(user, subject, request, now);
        self.shadow_decision(
            "cert",
            user,
            planned.as_ref().map(|(grant, _)| grant),
            |shadow| shadow.evaluate(user, request, now),
        );
        match planned {
            Ok((grant, spec)) => {
                let roles: Vec<&str> = grant.roles.iter().map(|r| r.name.as_str()).collect();
                if grant.direct {
                    // Break-glass: for the targets, around the bastion; said so in the record.
                    let details = json!({
                        "roles": roles,
                        "request": grant.request_id,
                        "break_glass": true,
                    });
                    return self.issue_signed_by(
                        CaKind::Target,
                        spec,
                        user,
                        grant.reason.as_deref(),
                        details,
                    );
                }
                let details = json!({ "roles": roles, "request": grant.request_id });
                self.issue(spec, user, grant.reason.as_deref(), details)
            }
            Err(denial) => {
                self.audit.append(
                    AuditEvent::new("cert.denied")
                        .with("user", user)
                        .with("subject", fingerprint)
                        .with("category", DenialCategory::Policy.as_str())
                        .with("reason", denial.reason.as_str())
                        .with(
                            "asked",
                            json!({
                                "principals": request.principals,
                                "ttl": request.ttl.map(|t| t.to_string()),
                                "role": request.role,
                                "reason": request.reason,
                                "direct": request.direct,
                            }),
                        ),
                )?;
                Err(IssueError::Denied(denial))
            }
        }
    }

    /// Signs `spec` with the CA of its type (user or host), records it and audits it. The
    /// audit record is durable before this returns, so a certificate never leaves the
    /// authority unrecorded.
    pub fn issue(
        &self,
        spec: CertSpec,
        requested_by: &str,
        reason: Option<&str>,
        details: serde_json::Value,
    ) -> Result<Issued, IssueError> {
        let ca = if spec.cert_type.is_host() {
            CaKind::Host
        } else {
            CaKind::User
        };
        self.issue_signed_by(ca, spec, requested_by, reason, details)
    }

    /// Like [`Authority::issue`], signed by the CA `ca` (the target CA for session and
    /// break-glass certificates). The audit record names the CA.
    pub fn issue_signed_by(
        &self,
        ca: CaKind,
        spec: CertSpec,
        requested_by: &str,
        reason: Option<&str>,
        details: serde_json::Value,
    ) -> Result<Issued, IssueError> {
        if spec.cert_type.is_host() != (ca == CaKind::Host) {
            return Err(IssueError::WrongCa {
                cert_type: type_name(spec.cert_type),
                ca: ca.name(),
            });
        }
        self.deny_if_revoked(requested_by, &spec.subject, Some(&spec.key_id))?;
        let started = std::time::Instant::now();
        let signer = self.keys.signer(ca);
        let serial = self.serials.next(self.store.as_ref())?;
        let certificate = spec.sign(serial, signer)?;
        let line = certificate.to_openssh().map_err(CertError::from)?;
        let cert_type = type_name(spec.cert_type);
        let record = IssuedCert {
            serial,
            cert_type: cert_type.to_string(),
            key_id: spec.key_id.clone(),
            principals: spec.principals.clone(),
            valid_after: spec.valid_after,
            valid_before: spec.valid_before,
            requested_by: requested_by.to_string(),
            reason: reason.map(str::to_string),
            details: details.clone(),
            subject_fingerprint: spec.subject.fingerprint(HashAlg::Sha256).to_string(),
            certificate: line.clone(),
            issued_at: unix_now(),
        };
        let event = AuditEvent::new("cert.issued")
            .with("serial", serial)
            .with("cert_type", cert_type)
            .with("ca", ca.name())
            .with("key_id", spec.key_id.as_str())
            .with("principals", spec.principals.clone())
            .with("valid_after", spec.valid_after)
            .with("valid_before", spec.valid_before)
            .with("requested_by", requested_by)
            .with("reason", reason)
            .with("subject", record.subject_fingerprint.as_str())
            .with("details", details.clone());
        // Break-glass certificates say so at the top of their record, for auditors' filters.
        let event = if details.get("break_glass") == Some(&serde_json::Value::Bool(true)) {
            event.with("break_glass", true)
        } else {
            event
        };
        self.commits
            .commit(self.store.as_ref(), &self.audit, record, event)
            .map_err(IssueError::Commit)?;
        metrics::histogram!(jitssh_core::metrics::names::CA_ISSUANCE_SECONDS)
            .record(started.elapsed().as_secs_f64());
        Ok(Issued { certificate, line })
    }

    /// Records a refusal that happened before policy evaluation (e.g. bad operator input).
    pub fn audit_denial(&self, requested_by: &str, reason: &str) -> Result<(), AuditError> {
        self.audit
            .append(
                AuditEvent::new("cert.denied")
                    .with("requested_by", requested_by)
                    .with("category", DenialCategory::BadRequest.as_str())
                    .with("reason", reason),
            )
            .map(|_| ())
    }

    /// Revokes `item`, audits it, and rewrites the KRL file. `Ok(false)` when already revoked.
    pub fn revoke(
        &self,
        item: Revoked,
        reason: Option<&str>,
        by: &str,
    ) -> Result<bool, IssueError> {
        let revocation = Revocation {
            item: item.clone(),
            reason: reason.map(str::to_string),
            revoked_by: by.to_string(),
            revoked_at: unix_now(),
        };
        let added = self.store.revoke(&revocation)?;
        if added {
            self.audit.append(
                AuditEvent::new("cert.revoked")
                    .with("item", serde_json::to_value(&item).unwrap_or_default())
                    .with("reason", reason)
                    .with("revoked_by", by),
            )?;
        }
        self.write_krl_file()?;
        Ok(added)
    }

    /// The current KRL, built from the store's revocations; rebuilt only when a revocation
    /// was added since the last one (remote bastions fetch it every refresh interval).
    pub fn krl(&self) -> Result<Krl, StoreError> {
        let generation = self.store.revocation_generation()?;
        let mut cached = self.krl.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((built_at, krl)) = &*cached
            && *built_at == generation
        {
            return Ok(krl.clone());
        }
        // Read after the generation: it may hold newer revocations, never fewer.
        let krl = revocation::build_krl(self.store.as_ref(), &self.keys, unix_now())?;
        *cached = Some((generation, krl.clone()));
        Ok(krl)
    }

    /// Writes the KRL to `data_dir/revoked.krl` atomically (temp file + rename).
    pub fn write_krl_file(&self) -> Result<(), IssueError> {
        let bytes = self.krl()?.encode();
        // 0644: public, read by the targets' sshd and whatever distributes it (see
        // `jitssh_core::fsmode`).
        let mode = jitssh_core::fsmode::PUBLIC_FILE;
        write_atomic(&self.config.krl_path(), &bytes, mode).map_err(|source| IssueError::KrlWrite {
            path: self.config.krl_path().display().to_string(),
            source,
        })
    }

    /// Every revocation, as the store has it now: one cheap read while nothing changed.
    pub fn revocations(&self) -> Result<Arc<RevocationSet>, StoreError> {
        self.revocations.current(self.store.as_ref())
    }

    /// Why `cert` is revoked, if it is (by serial, key id or key).
    pub fn revoked_reason(&self, cert: &Certificate) -> Result<Option<String>, StoreError> {
        Ok(self.revocations()?.revoked_reason(cert))
    }

    /// Why `key` (or the key id `key_id`) may not be certified or log in, if it is revoked.
    pub fn revoked_subject(
        &self,
        key: &KeyData,
        key_id: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        Ok(self.revocations()?.key_refusal(key, key_id))
    }

    /// Refuses (audited) to certify a revoked key or under a revoked key id.
    fn deny_if_revoked(
        &self,
        requested_by: &str,
        subject: &KeyData,
        key_id: Option<&str>,
    ) -> Result<(), IssueError> {
        let Some(reason) = self.revoked_subject(subject, key_id)? else {
            return Ok(());
        };
        self.audit.append(
            AuditEvent::new("cert.denied")
                .with("requested_by", requested_by)
                .with("subject", subject.fingerprint(HashAlg::Sha256).to_string())
                .with("key_id", key_id)
                .with("category", DenialCategory::Revoked.as_str())
                .with("reason", reason.as_str()),
        )?;
        Err(IssueError::Denied(Denial { reason }))
    }
}

fn type_name(cert_type: CertType) -> &'static str {
    if cert_type.is_host() { "host" } else { "user" }
}

/// `path` made absolute (for messages that must say exactly where), or as given.
pub fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Before creating CA keys: refuses when the store already belongs to other keys (recorded,
/// or, for a store from before keys were recorded, shown by the certificates it holds).
fn refuse_other_keys(store: &dyn CaStore, config: &CaConfig) -> Result<(), OpenError> {
    let recorded = match store.ca_keys()? {
        Some(keys) => format!("user CA {}, host CA {}", keys.user, keys.host),
        None => match store.issued_count()? {
            0 => return Ok(()),
            n => format!("{n} certificates issued by them"),
        },
    };
    Err(OpenError::KeysNotOfStore(format!(
        "{} belongs to other CA keys ({recorded}), but {} has no CA key files: refusing to \
         create new CA keys next to it; restore user_ca and host_ca there, or point data_dir \
         elsewhere",
        config.store_name(),
        absolute(&config.data_dir).display()
    )))
}

fn load_policy(config: &CaConfig) -> Result<Policy, ConfigError> {
    if !config.policy_required && !config.policy.exists() {
        return Ok(Policy::default());
    }
    Policy::load(&config.policy)
}

/// Replaces `path` with `bytes` so readers see the old or the new content, never a mix. A new
/// file gets `mode` (set explicitly, whatever the umask); a replaced one keeps its mode (an
/// operator's `chmod 640` of a host certificate stays), less group and other write.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let temp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)?;
    let mode = std::fs::metadata(path).map_or(mode, |m| m.permissions().mode() & 0o755);
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)
}
