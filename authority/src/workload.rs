//! Certificates for workloads (CI jobs, Kubernetes service accounts) admitted by a verified
//! token and a `[[workloads]]` rule, with no enrolled key. The token has been verified and the
//! rule chosen before this module runs (the CA API does both); here the policy's role rules
//! decide the certificate as for a person, the token id is spent, and everything is audited
//! with the workload's identity, issuer and subject.

use jitssh_core::audit::AuditEvent;
use jitssh_core::cert::CertSpec;
use jitssh_core::keys::CaKind;
use jitssh_core::policy::{CertRequest, Denial, Grant, User};
use jitssh_core::ssh_key::HashAlg;
use jitssh_core::ssh_key::public::KeyData;
use jitssh_core::unix_now;
use serde_json::json;

use crate::authority::{Authority, IssueError, Issued};
use crate::metrics::DenialCategory;

/// A workload as its verified token and the matching rule describe it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// Its identity name (the rule's template expanded).
    pub name: String,
    /// The token's issuer.
    pub issuer: String,
    /// The token's subject (`sub`).
    pub sub: String,
    /// The token id (`jti`), when the token has one: spent on first use.
    pub jti: Option<String>,
    /// The token's expiry (unix seconds): a spent `jti` is remembered until then.
    pub expires_at: u64,
    /// Index of the `[[workloads]]` rule that admitted it.
    pub rule: usize,
    /// The rule's roles.
    pub roles: Vec<String>,
}

impl WorkloadIdentity {
    /// Who requested, in audit records and the store.
    pub fn requested_by(&self) -> String {
        format!("workload:{}", self.name)
    }

    /// The certificate key id: identity, issuer and subject, so a log line on a target says
    /// which pipeline or service account it was.
    pub fn key_id(&self) -> String {
        format!(
            "workload:{} iss={} sub={}",
            self.name,
            self.issuer,
            printable(&self.sub)
        )
    }

    fn details(&self, grant: Option<&Grant>) -> serde_json::Value {
        json!({
            "workload": self.name,
            "issuer": self.issuer,
            "sub": self.sub,
            "jti": self.jti,
            "token_expires_at": self.expires_at,
            "rule": format!("workloads[{}]", self.rule),
            "roles": grant.map(|g| g.roles.iter().map(|r| r.name.clone()).collect::<Vec<_>>()),
            "break_glass": grant.is_some_and(|g| g.direct),
        })
    }
}

/// What `workload` would get for `request` now, without signing or spending anything.
pub fn plan(
    authority: &Authority,
    workload: &WorkloadIdentity,
    subject: KeyData,
    request: &CertRequest,
) -> Result<(Grant, CertSpec), Denial> {
    plan_at(authority, workload, subject, request, unix_now())
}

/// [`plan`] with the shadow policy's decision at the same time beside it (`None` without a
/// shadow policy), for `cert --dry-run`. Audits nothing.
pub fn plan_with_shadow(
    authority: &Authority,
    workload: &WorkloadIdentity,
    subject: KeyData,
    request: &CertRequest,
) -> crate::shadow::PlanWithShadow {
    let now = unix_now();
    let shadow = authority.shadow_evaluate(|shadow| shadow_grant(shadow, workload, request, now));
    (plan_at(authority, workload, subject, request, now), shadow)
}

/// The workload as a policy user: the roles of the `[[workloads]]` rule that admitted it.
fn as_user(workload: &WorkloadIdentity) -> User {
    User {
        name: workload.name.clone(),
        keys: Vec::new(),
        roles: workload.roles.clone(),
    }
}

/// The shadow policy's decision for `workload`. The workload keeps the roles of the enforced
/// policy's `[[workloads]]` rule (the token was matched there); the shadow's role rules apply.
fn shadow_grant(
    shadow: &jitssh_core::policy::Policy,
    workload: &WorkloadIdentity,
    request: &CertRequest,
    now: u64,
) -> Result<Grant, Denial> {
    shadow.evaluate_for(&as_user(workload), request, now)
}

fn plan_at(
    authority: &Authority,
    workload: &WorkloadIdentity,
    subject: KeyData,
    request: &CertRequest,
    now: u64,
) -> Result<(Grant, CertSpec), Denial> {
    let mut grant = authority
        .policy()
        .evaluate_for(&as_user(workload), request, now)?;
    // The key id starts with the identity name; it names issuer and subject too.
    grant.key_id = grant.key_id.replacen(&workload.name, &workload.key_id(), 1);
    let spec = CertSpec::from_grant(
        &grant,
        subject,
        now,
        authority.config().clock_skew.as_secs(),
    );
    Ok((grant, spec))
}

/// Issues `workload` a certificate for `subject` as the policy allows; spends the token id
/// first (a reused one is refused). Every refusal is audited as `cert.denied`.
pub fn issue(
    authority: &Authority,
    workload: &WorkloadIdentity,
    subject: KeyData,
    request: &CertRequest,
) -> Result<Issued, IssueError> {
    let fingerprint = subject.fingerprint(HashAlg::Sha256).to_string();
    let now = unix_now();
    let planned = plan_at(authority, workload, subject, request, now);
    authority.shadow_decision(
        "workload",
        &workload.requested_by(),
        planned.as_ref().map(|(grant, _)| grant),
        |shadow| shadow_grant(shadow, workload, request, now),
    );
    let (grant, spec) = match planned {
        Ok(planned) => planned,
        Err(denial) => return Err(refuse(authority, workload, &fingerprint, denial)?),
    };
    if let Some(jti) = &workload.jti {
        let fresh = authority.store().spend_token(
            &workload.issuer,
            jti,
            workload.expires_at,
            unix_now(),
        )?;
        if !fresh {
            let denial = Denial {
                reason: format!(
                    "token id {} was already used (a workload token is good for one certificate)",
                    printable(jti)
                ),
            };
            return Err(refuse(authority, workload, &fingerprint, denial)?);
        }
    }
    let details = workload.details(Some(&grant));
    let requested_by = workload.requested_by();
    let ca = if grant.direct {
        CaKind::Target
    } else {
        CaKind::User
    };
    authority.issue_signed_by(ca, spec, &requested_by, grant.reason.as_deref(), details)
}

/// Audits a refusal of `workload` and returns it as the error to answer with.
fn refuse(
    authority: &Authority,
    workload: &WorkloadIdentity,
    fingerprint: &str,
    denial: Denial,
) -> Result<IssueError, IssueError> {
    authority.audit().append(
        AuditEvent::new("cert.denied")
            .with("requested_by", workload.requested_by())
            .with("subject", fingerprint)
            .with("reason", denial.reason.as_str())
            .with("details", workload.details(None)),
    )?;
    Ok(IssueError::Denied(denial))
}

/// Audits a token refused before any rule admitted it (bad signature, wrong audience,
/// expired, unknown issuer...). `claimed` are the token's unverified `iss` and `sub`, for the
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
            .with("requested_by", "workload")
            .with("subject", fingerprint)
            .with("category", DenialCategory::Token.as_str())
            .with("reason", reason)
            .with(
                "details",
                json!({
                    "token_refused": true,
                    "claimed_issuer": claimed_issuer.map(printable),
                    "claimed_sub": claimed_sub.map(printable),
                }),
            ),
    )?;
    Ok(())
}

pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .take(200)
        .map(|c| if c.is_control() || c == ' ' { '?' } else { c })
        .collect()
}
