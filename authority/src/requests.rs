//! Just-in-time access requests: request, list, approve, deny, and the approved window a
//! certificate may be issued in.
//!
//! Rules: only roles with `approvals > 0` are requested; approvers must hold one of the role's
//! `approvers` roles and may never approve their own request; N distinct people must approve;
//! an undecided request expires; every step is an audit record.

use jitssh_core::audit::AuditEvent;
use jitssh_core::duration::HumanDuration;
use jitssh_core::policy::{ApprovedWindow, MAX_REASON_LEN, Policy};
use jitssh_core::store::{AccessRequest, RequestDecision, RequestStatus};
use jitssh_core::unix_now;

use crate::authority::{Authority, IssueError};

/// Why a request operation was refused (shown to the caller as is).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// Refused by the rules; the message says why.
    #[error("{0}")]
    Refused(String),
    /// Storage or audit failure.
    #[error(transparent)]
    Internal(#[from] IssueError),
}

impl From<jitssh_core::store::StoreError> for RequestError {
    fn from(err: jitssh_core::store::StoreError) -> Self {
        RequestError::Internal(err.into())
    }
}

impl From<jitssh_core::audit::AuditError> for RequestError {
    fn from(err: jitssh_core::audit::AuditError) -> Self {
        RequestError::Internal(err.into())
    }
}

fn refuse<T>(message: impl Into<String>) -> Result<T, RequestError> {
    Err(RequestError::Refused(message.into()))
}

/// A fresh unguessable request id.
fn new_id() -> String {
    let mut bytes = [0u8; 8];
    rand::fill(&mut bytes);
    format!("req-{}", hex::encode(bytes))
}

fn check_reason(reason: &str) -> Result<(), RequestError> {
    if reason.trim().is_empty() {
        return refuse("a reason is required (--reason TEXT)");
    }
    if reason.len() > MAX_REASON_LEN || reason.chars().any(char::is_control) {
        return refuse(format!(
            "the reason must be at most {MAX_REASON_LEN} printable characters"
        ));
    }
    Ok(())
}

/// `request --role R --ttl D --reason TEXT`: files a request; returns it.
pub fn create(
    authority: &Authority,
    requester: &str,
    role_name: &str,
    ttl: HumanDuration,
    reason: &str,
) -> Result<AccessRequest, RequestError> {
    let policy = authority.policy();
    let user = match policy.user(requester) {
        Some(user) => user,
        None => return refuse(format!("unknown user {requester:?}")),
    };
    let Some(role) = policy.role(role_name) else {
        return refuse(format!("unknown role {role_name:?}"));
    };
    if !user.roles.iter().any(|r| r == role_name) {
        return refuse(format!("user {requester} does not have role {role_name}"));
    }
    if role.approvals == 0 {
        return refuse(format!(
            "role {role_name} needs no approval: run `cert --role {role_name}`"
        ));
    }
    if ttl.as_secs() == 0 {
        return refuse("ttl must be more than 0s");
    }
    if ttl > role.max_ttl {
        return refuse(format!(
            "ttl {ttl} exceeds max_ttl {} for role {role_name}",
            role.max_ttl
        ));
    }
    check_reason(reason)?;
    let now = unix_now();
    let request = AccessRequest {
        id: new_id(),
        requester: requester.to_string(),
        role: role_name.to_string(),
        ttl_secs: ttl.as_secs(),
        reason: reason.trim().to_string(),
        created_at: now,
        decide_by: now + authority.config().request_expiry.as_secs(),
        approvals_needed: role.approvals,
        approvals: Vec::new(),
        denial: None,
        approved_at: None,
        certificates_issued: 0,
    };
    authority.store().create_request(&request)?;
    authority.audit().append(
        AuditEvent::new("request.created")
            .with("request", request.id.as_str())
            .with("requester", requester)
            .with("role", role_name)
            .with("ttl", ttl.to_string())
            .with("reason", request.reason.as_str())
            .with("approvals_needed", role.approvals),
    )?;
    Ok(request)
}

/// May `who` decide on `request` under `policy`? Never the requester; only members of the
/// role's approver roles.
fn check_approver(policy: &Policy, request: &AccessRequest, who: &str) -> Result<(), String> {
    if who == request.requester {
        return Err("you cannot approve or deny your own request".into());
    }
    let role = policy
        .role(&request.role)
        .ok_or_else(|| format!("role {} no longer exists", request.role))?;
    let approver = policy
        .user(who)
        .ok_or_else(|| format!("unknown user {who:?}"))?;
    if !approver.roles.iter().any(|r| role.approvers.contains(r)) {
        return Err(format!(
            "deciding on role {} requires one of the roles: {}",
            request.role,
            role.approvers.join(", ")
        ));
    }
    Ok(())
}

/// Requests `who` may see: their own, and pending ones they may decide on. Newest first.
pub fn visible(authority: &Authority, who: &str) -> Result<Vec<AccessRequest>, RequestError> {
    let policy = authority.policy();
    let now = unix_now();
    Ok(authority
        .store()
        .requests(1000)?
        .into_iter()
        .filter(|r| {
            r.requester == who
                || (r.status(now) == RequestStatus::Pending
                    && check_approver(&policy, r, who).is_ok())
        })
        .collect())
}

/// What `approve`/`deny` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// An approval was added; more are needed.
    Approved {
        /// Approvals so far.
        have: u32,
        /// Approvals needed.
        need: u32,
    },
    /// The last needed approval: access is granted.
    Granted,
    /// Denied.
    Denied,
}

/// `approve ID` or `deny ID --reason TEXT` by `who`.
pub fn decide(
    authority: &Authority,
    id: &str,
    who: &str,
    approve: bool,
    reason: Option<&str>,
) -> Result<(AccessRequest, Outcome), RequestError> {
    if !approve {
        check_reason(reason.unwrap_or(""))?;
    }
    let policy = authority.policy();
    let now = unix_now();
    let mut outcome = Outcome::Denied;
    let changed = authority.store().update_request(id, &mut |request| {
        check_approver(&policy, request, who)?;
        match request.status(now) {
            RequestStatus::Pending => {}
            other => return Err(format!("request {id} is {other}")),
        }
        let decision = RequestDecision {
            by: who.to_string(),
            at: now,
            reason: reason.map(str::to_string),
        };
        if !approve {
            request.denial = Some(decision);
            outcome = Outcome::Denied;
            return Ok(());
        }
        if request.approvals.iter().any(|a| a.by == who) {
            return Err(format!("you already approved request {id}"));
        }
        request.approvals.push(decision);
        let have = request.approvals.len() as u32;
        if have >= request.approvals_needed {
            request.approved_at = Some(now);
            outcome = Outcome::Granted;
        } else {
            outcome = Outcome::Approved {
                have,
                need: request.approvals_needed,
            };
        }
        Ok(())
    })?;
    let request = match changed {
        None => return refuse(format!("no request {id}")),
        Some(Err(why)) => {
            authority.audit().append(
                AuditEvent::new("request.decision_refused")
                    .with("request", id)
                    .with("by", who)
                    .with("approve", approve)
                    .with("reason", why.as_str()),
            )?;
            return refuse(why);
        }
        Some(Ok(request)) => request,
    };
    let kind = match outcome {
        Outcome::Denied => "request.denied",
        Outcome::Approved { .. } => "request.approved",
        Outcome::Granted => "request.granted",
    };
    authority.audit().append(
        AuditEvent::new(kind)
            .with("request", id)
            .with("by", who)
            .with("requester", request.requester.as_str())
            .with("role", request.role.as_str())
            .with("approvals", request.approvals.len())
            .with("reason", reason),
    )?;
    Ok((request, outcome))
}

/// The approved window of request `id` for `who`, to issue a certificate under.
pub fn approved_window(
    authority: &Authority,
    id: &str,
    who: &str,
) -> Result<ApprovedWindow, RequestError> {
    let Some(request) = authority.store().request(id)? else {
        return refuse(format!("no request {id}"));
    };
    if request.requester != who {
        return refuse(format!("request {id} is not yours"));
    }
    match request.status(unix_now()) {
        RequestStatus::Approved { not_after } => Ok(ApprovedWindow {
            request_id: request.id,
            role: request.role,
            not_after,
            reason: Some(request.reason),
        }),
        RequestStatus::Pending => refuse(format!(
            "request {id} is pending ({} of {} approvals)",
            request.approvals.len(),
            request.approvals_needed
        )),
        other => refuse(format!("request {id} is {other}")),
    }
}

/// Takes one of the certificates approved request `id` allows (the role's
/// `certificates_per_approval`, default 1), atomically across processes, so an approval cannot
/// mint certificates over and over until its window ends. Give it back with
/// [`return_certificate`] when no certificate was issued after all.
pub fn take_certificate(authority: &Authority, id: &str, who: &str) -> Result<(), RequestError> {
    let policy = authority.policy();
    let changed = authority.store().update_request(id, &mut |request| {
        let allowed = policy
            .role(&request.role)
            .map_or(1, |role| role.certificates_per_approval);
        if request.certificates_issued >= allowed {
            return Err(format!(
                "request {id} was already used for its {allowed} certificate{}: ask for a new \
                 approval",
                if allowed == 1 { "" } else { "s" }
            ));
        }
        request.certificates_issued += 1;
        Ok(())
    })?;
    match changed {
        None => refuse(format!("no request {id}")),
        Some(Ok(_)) => Ok(()),
        Some(Err(why)) => {
            authority.audit_denial(who, &why)?;
            refuse(why)
        }
    }
}

/// Gives back a certificate taken with [`take_certificate`] that was not issued.
pub fn return_certificate(authority: &Authority, id: &str) -> Result<(), RequestError> {
    authority.store().update_request(id, &mut |request| {
        request.certificates_issued = request.certificates_issued.saturating_sub(1);
        Ok(())
    })?;
    Ok(())
}
