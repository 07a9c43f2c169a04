//! Host enrolment and host certificates by proof of possession.
//!
//! An operator enrols a host by name and gets a one-time join token. The host's first contact
//! (`join TOKEN` over SSH, authenticated with its host key) binds that key to the name; from
//! then on the host renews (`host-cert`) by authenticating with the same key. The token is
//! stored only as a SHA-256 hash and is spent on first use.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use jitssh_core::audit::AuditEvent;
use jitssh_core::cert::CertSpec;
use jitssh_core::duration::HumanDuration;
use jitssh_core::policy::check_principal;
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::{HashAlg, PublicKey};
use jitssh_core::store::HostRecord;
use jitssh_core::unix_now;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::authority::{Authority, IssueError, Issued};
use crate::metrics::DenialCategory;

/// Why a host operation was refused.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// Refused; the message says why.
    #[error("{0}")]
    Refused(String),
    /// Storage, audit or signing failure.
    #[error(transparent)]
    Internal(#[from] IssueError),
}

impl From<jitssh_core::store::StoreError> for HostError {
    fn from(err: jitssh_core::store::StoreError) -> Self {
        HostError::Internal(err.into())
    }
}

impl From<jitssh_core::audit::AuditError> for HostError {
    fn from(err: jitssh_core::audit::AuditError) -> Self {
        HostError::Internal(err.into())
    }
}

/// The canonical line of a key (no comment), as stored for enrolled hosts.
pub fn key_line(key: &PublicKey) -> String {
    PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .unwrap_or_default()
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.trim().as_bytes()))
}

/// Enrols `name` (with `aliases`); returns the one-time join token.
pub fn add(
    authority: &Authority,
    name: &str,
    aliases: &[String],
    ttl: HumanDuration,
    token_ttl: HumanDuration,
    by: &str,
) -> Result<String, HostError> {
    for principal in std::iter::once(name).chain(aliases.iter().map(String::as_str)) {
        check_principal(principal)
            .map_err(|why| HostError::Refused(format!("host name: {why}")))?;
    }
    if ttl.as_secs() == 0 || token_ttl.as_secs() == 0 {
        return Err(HostError::Refused(
            "--ttl and --token-ttl must be more than 0s".into(),
        ));
    }
    let mut bytes = [0u8; 24];
    rand::fill(&mut bytes);
    let token = format!("jt-{}", hex::encode(bytes));
    let now = unix_now();
    let record = HostRecord {
        name: name.to_string(),
        aliases: aliases.to_vec(),
        ttl_secs: ttl.as_secs(),
        key: None,
        token_sha256: Some(token_hash(&token)),
        token_expires_at: now + token_ttl.as_secs(),
        created_at: now,
    };
    if !authority.store().add_host(&record)? {
        return Err(HostError::Refused(format!(
            "host {name} is already enrolled (remove it first)"
        )));
    }
    authority.audit().append(
        AuditEvent::new("host.added")
            .with("host", name)
            .with("aliases", aliases.to_vec())
            .with("ttl", ttl.to_string())
            .with("by", by),
    )?;
    Ok(token)
}

/// Removes `name`; it can no longer renew. `false` if unknown.
pub fn remove(authority: &Authority, name: &str, by: &str) -> Result<bool, HostError> {
    let removed = authority.store().remove_host(name)?;
    if removed {
        authority.audit().append(
            AuditEvent::new("host.removed")
                .with("host", name)
                .with("by", by),
        )?;
    }
    Ok(removed)
}

/// First contact: spends `token` and binds `key` to the host, then issues its certificate.
/// Failed attempts are limited per source address and per key, and audited in aggregate
/// ([`crate::join_guard`]); the token itself is never logged nor audited.
pub fn join(
    authority: &Authority,
    token: &str,
    key: &PublicKey,
    peer: Option<IpAddr>,
) -> Result<Issued, HostError> {
    let line = key_line(key);
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    let peer = peer.unwrap_or(IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED));
    let guard = authority.join_guard();
    let now = Instant::now();
    if let Err(wait) = guard.check(peer, &fingerprint, now) {
        let due = guard.failed(peer, &fingerprint, true, now);
        authority.audit().append_batch(due)?;
        return Err(HostError::Refused(format!(
            "too many failed joins, retry in {}s",
            wait.as_secs().max(1)
        )));
    }
    let Some(host) = authority
        .store()
        .join_host(&token_hash(token), &line, unix_now())?
    else {
        let due = guard.failed(peer, &fingerprint, false, now);
        authority.audit().append_batch(due)?;
        return Err(HostError::Refused(
            "invalid, spent or expired join token".into(),
        ));
    };
    authority.audit().append(
        AuditEvent::new("host.joined")
            .with("host", host.name.as_str())
            .with("key", fingerprint)
            .with("token_sha256", token_hash(token)[..12].to_string()),
    )?;
    Ok(issue(authority, &host, key, "join")?)
}

/// `text` with every join token (`jt-` and what follows) replaced by a short hash prefix, for
/// logs: a token in a log is a credential anyone reading the log could spend.
pub fn redact_tokens(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("jt-") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 3..];
        let end = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        let token = &rest[at..at + 3 + end];
        out.push_str(&format!(
            "jt-<redacted sha256:{}>",
            &token_hash(token)[..12]
        ));
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// Renewal: the host proves possession of its enrolled key by authenticating with it.
pub fn renew(authority: &Authority, key: &PublicKey) -> Result<Issued, HostError> {
    let Some(host) = authority.store().host_by_key(&key_line(key))? else {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        authority.audit().append(
            AuditEvent::new("cert.denied")
                .with("requested_by", "host")
                .with("subject", fingerprint)
                .with("category", DenialCategory::UnknownHostKey.as_str())
                .with("reason", "key is not an enrolled host key"),
        )?;
        return Err(HostError::Refused(
            "this key is not enrolled: ask an operator for `ssh-ca host add`, then `join TOKEN`"
                .into(),
        ));
    };
    Ok(issue(authority, &host, key, "renew")?)
}

fn issue(
    authority: &Authority,
    host: &HostRecord,
    key: &PublicKey,
    how: &str,
) -> Result<Issued, IssueError> {
    let now = unix_now();
    let mut principals = vec![host.name.clone()];
    principals.extend(host.aliases.iter().cloned());
    let spec = CertSpec {
        cert_type: CertType::Host,
        subject: key.key_data().clone(),
        key_id: format!("host:{}", host.name),
        principals,
        valid_after: now.saturating_sub(authority.config().clock_skew.as_secs()),
        valid_before: now + host.ttl_secs,
        critical_options: BTreeMap::new(),
        extensions: BTreeMap::new(),
    };
    authority.issue(
        spec,
        &format!("host:{}", host.name),
        None,
        json!({ "host": host.name, "via": how }),
    )
}
