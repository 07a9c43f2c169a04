//! Shadow mode: a second policy evaluated beside the enforced one, never enforced.
//!
//! The authority evaluates every certificate decision against both policies with the same
//! inputs and the same clock, and [`compare`] says whether (and how) the two outcomes differ.
//! A difference is audited as `policy.shadow`; `ssh-ca shadow report` summarises those
//! records so an operator can see what a policy change would do before enforcing it.
//!
//! Pure: no I/O, so each kind of difference is tested here in isolation.

use serde::Serialize;
use serde_json::{Value, json};

use super::{Denial, Grant};

/// How the shadow outcome differs from the enforced one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShadowKind {
    /// Enforced allows, shadow would deny.
    WouldDeny,
    /// Enforced denies, shadow would allow.
    WouldAllow,
    /// Both allow, with a different certificate (roles, principals, TTL, ...).
    WouldChange,
}

impl ShadowKind {
    /// The name used in audit records and reports (`would_deny`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ShadowKind::WouldDeny => "would_deny",
            ShadowKind::WouldAllow => "would_allow",
            ShadowKind::WouldChange => "would_change",
        }
    }
}

/// A difference between the enforced and the shadow decision, ready to audit.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowDiff {
    /// What kind of difference.
    pub kind: ShadowKind,
    /// The certificate parts that differ when both allow (`roles`, `ttl`, ...); empty otherwise.
    pub changed: Vec<&'static str>,
    /// The roles concerned: of the grant that exists (the enforced one when both allow).
    pub roles: Vec<String>,
    /// The rule that makes the difference: the shadow's denial reason (would deny), the
    /// enforced denial reason (would allow), or the shadow rules of the changed parts.
    pub rule: String,
    /// The enforced outcome, as [`outcome`] describes it.
    pub enforced: Value,
    /// The shadow outcome, as [`outcome`] describes it.
    pub shadow: Value,
}

/// Compares two decisions for the same request. `None` when they agree: same verdict and,
/// when both allow, the same certificate (roles with their logins and hosts, principals, TTL,
/// extensions, critical options, direct). Reasons, request ids and key ids come from the
/// request, not the policy, and are not compared; neither is the trace (which rule decided),
/// since two policies may word the same outcome differently.
pub fn compare(
    enforced: &Result<Grant, Denial>,
    shadow: &Result<Grant, Denial>,
) -> Option<ShadowDiff> {
    let (kind, changed, roles, rule) = match (enforced, shadow) {
        (Err(_), Err(_)) => return None,
        (Ok(grant), Err(denial)) => (
            ShadowKind::WouldDeny,
            Vec::new(),
            role_names(grant),
            denial.reason.clone(),
        ),
        (Err(denial), Ok(grant)) => (
            ShadowKind::WouldAllow,
            Vec::new(),
            role_names(grant),
            denial.reason.clone(),
        ),
        (Ok(now), Ok(next)) => {
            let changed = changed_parts(now, next);
            if changed.is_empty() {
                return None;
            }
            let rules: Vec<String> = next
                .trace
                .iter()
                .filter(|d| changed.contains(&d.part))
                .map(|d| format!("{} {}: {}", d.part, d.value, d.rule))
                .collect();
            let rule = if rules.is_empty() {
                format!("{} differ", changed.join(", "))
            } else {
                rules.join("; ")
            };
            (ShadowKind::WouldChange, changed, role_names(now), rule)
        }
    };
    Some(ShadowDiff {
        kind,
        changed,
        roles,
        rule,
        enforced: outcome(enforced),
        shadow: outcome(shadow),
    })
}

/// The parts of two grants that differ, in certificate order.
fn changed_parts(a: &Grant, b: &Grant) -> Vec<&'static str> {
    let mut changed = Vec::new();
    if a.roles != b.roles {
        changed.push("roles");
    }
    if a.principals != b.principals {
        changed.push("principals");
    }
    if a.ttl != b.ttl {
        changed.push("ttl");
    }
    if a.extensions != b.extensions {
        changed.push("extensions");
    }
    if a.force_command != b.force_command {
        changed.push("force_command");
    }
    if a.source_address != b.source_address {
        changed.push("source_address");
    }
    if a.direct != b.direct {
        changed.push("direct");
    }
    changed
}

fn role_names(grant: &Grant) -> Vec<String> {
    grant.roles.iter().map(|r| r.name.clone()).collect()
}

/// One decision as JSON for audit records and `--dry-run`: `allowed`, and either the
/// certificate with the rule behind each part (`trace`) or the denial `reason`.
pub fn outcome(decision: &Result<Grant, Denial>) -> Value {
    match decision {
        Ok(grant) => json!({
            "allowed": true,
            "roles": role_names(grant),
            "principals": grant.principals,
            "ttl": crate::duration::HumanDuration::from_secs(grant.ttl.as_secs()).to_string(),
            "extensions": grant.extensions,
            "force_command": grant.force_command,
            "source_address": grant.source_address,
            "direct": grant.direct,
            "trace": grant.trace,
        }),
        Err(denial) => json!({ "allowed": false, "reason": denial.reason }),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::policy::{Decision, RoleGrant};

    fn grant(roles: &[&str], ttl: u64) -> Grant {
        Grant {
            user: "alice".into(),
            roles: roles
                .iter()
                .map(|r| RoleGrant {
                    name: r.to_string(),
                    logins: vec!["alice".into()],
                    hosts: vec!["web*".into()],
                    auditor: false,
                })
                .collect(),
            principals: vec!["alice".into()],
            ttl: Duration::from_secs(ttl),
            extensions: vec!["permit-pty".into()],
            force_command: None,
            source_address: None,
            reason: None,
            request_id: None,
            key_id: "alice".into(),
            direct: false,
            trace: vec![Decision {
                part: "ttl",
                value: format!("{ttl}s"),
                rule: format!("default_ttl of role {}", roles[0]),
            }],
        }
    }

    fn denied(reason: &str) -> Result<Grant, Denial> {
        Err(Denial {
            reason: reason.into(),
        })
    }

    #[test]
    fn the_same_grant_is_no_difference() {
        assert_eq!(
            compare(&Ok(grant(&["dev"], 3600)), &Ok(grant(&["dev"], 3600))),
            None
        );
    }

    #[test]
    fn a_differently_worded_trace_is_no_difference() {
        let mut other = grant(&["dev"], 3600);
        other.trace[0].rule = "another wording".into();
        other.key_id = "alice other".into();
        assert_eq!(compare(&Ok(grant(&["dev"], 3600)), &Ok(other)), None);
    }

    #[test]
    fn two_denials_are_no_difference_whatever_the_reasons() {
        assert_eq!(compare(&denied("a"), &denied("b")), None);
    }

    #[test]
    fn allowed_then_denied_is_would_deny_with_the_shadow_reason() {
        let diff = compare(
            &Ok(grant(&["dev"], 3600)),
            &denied("ttl 1h exceeds max_ttl 30m for role dev"),
        )
        .expect("a difference");
        assert_eq!(diff.kind, ShadowKind::WouldDeny);
        assert_eq!(diff.rule, "ttl 1h exceeds max_ttl 30m for role dev");
        assert_eq!(diff.roles, vec!["dev".to_string()]);
        assert_eq!(diff.enforced["allowed"], true);
        assert_eq!(diff.shadow["allowed"], false);
        assert_eq!(
            diff.shadow["reason"],
            "ttl 1h exceeds max_ttl 30m for role dev"
        );
    }

    #[test]
    fn denied_then_allowed_is_would_allow_with_the_enforced_reason() {
        let diff =
            compare(&denied("unknown role ops"), &Ok(grant(&["ops"], 600))).expect("a difference");
        assert_eq!(diff.kind, ShadowKind::WouldAllow);
        assert_eq!(diff.rule, "unknown role ops");
        assert_eq!(diff.roles, vec!["ops".to_string()]);
        assert_eq!(diff.shadow["ttl"], "10m");
    }

    #[test]
    fn a_different_ttl_is_would_change_naming_the_shadow_rule() {
        let diff =
            compare(&Ok(grant(&["dev"], 3600)), &Ok(grant(&["dev"], 1800))).expect("a difference");
        assert_eq!(diff.kind, ShadowKind::WouldChange);
        assert_eq!(diff.changed, vec!["ttl"]);
        assert_eq!(diff.rule, "ttl 1800s: default_ttl of role dev");
    }

    #[test]
    fn each_certificate_part_counts() {
        let base = grant(&["dev"], 3600);
        let mut cases: Vec<(&str, Grant)> = Vec::new();
        let mut g = base.clone();
        g.roles[0].hosts = vec!["db*".into()];
        cases.push(("roles", g));
        let mut g = base.clone();
        g.principals = vec!["root".into()];
        cases.push(("principals", g));
        let mut g = base.clone();
        g.extensions.clear();
        cases.push(("extensions", g));
        let mut g = base.clone();
        g.force_command = Some("true".into());
        cases.push(("force_command", g));
        let mut g = base.clone();
        g.source_address = Some(vec!["10.0.0.0/8".into()]);
        cases.push(("source_address", g));
        let mut g = base.clone();
        g.direct = true;
        cases.push(("direct", g));
        for (part, other) in cases {
            let diff = compare(&Ok(base.clone()), &Ok(other)).expect(part);
            assert_eq!(diff.changed, vec![part]);
            assert_eq!(diff.rule, format!("{part} differ"));
        }
    }
}
