//! Host certificates by identity token: a cloud VM (or a Kubernetes node, a SPIFFE-style
//! workload) proves which machine it is with the token its platform signed, and gets a host
//! certificate for the host key it logged in with. No `ssh-ca host add`, no join token, and no
//! enrolment is stored: the VM renews by sending a fresh token, so the platform's word is
//! checked afresh each time (a deleted VM gets no token, hence no certificate).
//!
//! The token has been verified and the `[[hosts_by_token]]` rule chosen before this module runs
//! (the CA API does both, on the same path as workload tokens). Here the token id is spent, the
//! names are checked against enrolled hosts, and everything is audited.

use std::collections::BTreeMap;

use jitssh_core::audit::AuditEvent;
use jitssh_core::cert::CertSpec;
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::{HashAlg, PublicKey};
use jitssh_core::unix_now;
use serde_json::json;

use crate::authority::{Authority, IssueError, Issued};
use crate::hosts::{HostError, key_line};
use crate::metrics::DenialCategory;
use crate::workload::printable;

/// A host as its verified token and the matching rule describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostTokenIdentity {
    /// Its names (the rule's templates expanded): the certificate's principals, first is the
    /// main one.
    pub names: Vec<String>,
    /// The token's issuer.
    pub issuer: String,
    /// The token's subject (`sub`).
    pub sub: String,
    /// The token id (`jti`), when the token has one: spent on first use.
    pub jti: Option<String>,
    /// The token's expiry (unix seconds): a spent `jti` is remembered until then.
    pub expires_at: u64,
    /// Index of the `[[hosts_by_token]]` rule that admitted it.
    pub rule: usize,
    /// The certificate's lifetime (the rule's `ttl`).
    pub ttl_secs: u64,
}

impl HostTokenIdentity {
    fn main_name(&self) -> &str {
        self.names.first().map_or("-", String::as_str)
    }

    /// Who requested, in audit records and the store.
    pub fn requested_by(&self) -> String {
        format!("host:{}", self.main_name())
    }

    fn details(&self) -> serde_json::Value {
        json!({
            "host": self.main_name(),
            "names": self.names,
            "via": "token",
            "issuer": self.issuer,
            "sub": self.sub,
            "jti": self.jti,
            "token_expires_at": self.expires_at,
            "rule": format!("hosts_by_token[{}]", self.rule),
        })
    }
}

/// Issues `host` a host certificate for `key`, its principals the rule's names. Refused (and
/// audited as `cert.denied`) when a name belongs to a host enrolled with `ssh-ca host add` under
/// another key, or the token id was already spent.
pub fn issue(
    authority: &Authority,
    host: &HostTokenIdentity,
    key: &PublicKey,
) -> Result<Issued, HostError> {
    let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
    if host.names.is_empty() {
        return Err(refuse(
            authority,
            host,
            &fingerprint,
            "the rule gave no names",
        )?);
    }
    let line = key_line(key);
    for enrolled in authority.store().hosts()? {
        let taken = host
            .names
            .iter()
            .find(|n| **n == enrolled.name || enrolled.aliases.contains(n));
        if let Some(name) = taken
            && enrolled.key.as_deref() != Some(line.as_str())
        {
            let why = format!(
                "host name {name} belongs to host {} enrolled with `ssh-ca host add` (another key)",
                enrolled.name
            );
            return Err(refuse(authority, host, &fingerprint, &why)?);
        }
    }
    if let Some(jti) = &host.jti {
        let fresh =
            authority
                .store()
                .spend_token(&host.issuer, jti, host.expires_at, unix_now())?;
        if !fresh {
            let why = format!(
                "token id {} was already used (an identity token is good for one certificate)",
                printable(jti)
            );
            return Err(refuse(authority, host, &fingerprint, &why)?);
        }
    }
    let now = unix_now();
    let spec = CertSpec {
        cert_type: CertType::Host,
        subject: key.key_data().clone(),
        key_id: format!(
            "host:{} iss={} sub={}",
            host.main_name(),
            host.issuer,
            printable(&host.sub)
        ),
        principals: host.names.clone(),
        valid_after: now.saturating_sub(authority.config().clock_skew.as_secs()),
        valid_before: now + host.ttl_secs,
        critical_options: BTreeMap::new(),
        extensions: BTreeMap::new(),
    };
    Ok(authority.issue(spec, &host.requested_by(), None, host.details())?)
}

/// Audits a refusal of `host` and returns it as the error to answer with.
fn refuse(
    authority: &Authority,
    host: &HostTokenIdentity,
    fingerprint: &str,
    reason: &str,
) -> Result<HostError, HostError> {
    authority.audit().append(
        AuditEvent::new("cert.denied")
            .with("requested_by", host.requested_by())
            .with("subject", fingerprint)
            .with("category", DenialCategory::Token.as_str())
            .with("reason", reason)
            .with("details", host.details()),
    )?;
    Ok(HostError::Refused(format!("denied: {reason}")))
}

/// Audits a host's token refused before any rule admitted it (bad signature, wrong audience,
/// expired, no matching rule...). `claimed` are the token's unverified `iss` and `sub`, for the
/// investigation only: they are marked as claims, not identities.
pub fn audit_refused_token(
    authority: &Authority,
    fingerprint: &str,
    reason: &str,
    claimed_issuer: Option<&str>,
    claimed_sub: Option<&str>,
) -> Result<(), IssueError> {
    authority.audit().append(
        AuditEvent::new("cert.denied")
            .with("requested_by", "host")
            .with("subject", fingerprint)
            .with("category", DenialCategory::Token.as_str())
            .with("reason", reason)
            .with(
                "details",
                json!({
                    "via": "token",
                    "token_refused": true,
                    "claimed_issuer": claimed_issuer.map(printable),
                    "claimed_sub": claimed_sub.map(printable),
                }),
            ),
    )?;
    Ok(())
}
