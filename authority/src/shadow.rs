//! Shadow mode wiring: every policy decision the authority makes is also taken by the shadow
//! policy (`shadow_policy` in ca.toml) with the same inputs and clock, and a difference is
//! audited as `policy.shadow` (see [`jitssh_core::policy::shadow`] for the comparison).
//!
//! The shadow never changes the enforced decision and never fails a request: a panic while
//! evaluating it or an audit write that fails is logged and the request goes on.

use std::panic::{AssertUnwindSafe, catch_unwind};

use jitssh_core::audit::AuditEvent;
use jitssh_core::cert::CertSpec;
use jitssh_core::policy::shadow::compare;
use jitssh_core::policy::{Denial, Grant, Policy};

use crate::authority::Authority;

/// A plan for `--dry-run`: the enforced decision with the certificate it would sign, and the
/// shadow policy's decision for the same request at the same time (`None` without one).
pub type PlanWithShadow = (
    Result<(Grant, CertSpec), Denial>,
    Option<Result<Grant, Denial>>,
);

/// Kind of the audit record of a difference.
pub const SHADOW_EVENT: &str = "policy.shadow";

impl Authority {
    /// The shadow policy's decision, from `eval` run against it; `None` without a shadow
    /// policy (or if evaluating it panicked, which is logged).
    pub fn shadow_evaluate(
        &self,
        eval: impl FnOnce(&Policy) -> Result<Grant, Denial>,
    ) -> Option<Result<Grant, Denial>> {
        let shadow = self.shadow_policy()?;
        match catch_unwind(AssertUnwindSafe(|| eval(&shadow))) {
            Ok(decision) => Some(decision),
            Err(_) => {
                tracing::error!("the shadow policy's evaluation failed; the request goes on");
                None
            }
        }
    }

    /// Takes the shadow decision (`eval` against the shadow policy) beside the `enforced` one
    /// for `user`, reached through `via` (`cert`, `sso`, `workload`), and audits a difference
    /// as `policy.shadow`. Nothing is written when they agree or without a shadow policy.
    /// Never fails: the enforced decision goes on whatever happens here.
    pub fn shadow_decision(
        &self,
        via: &str,
        user: &str,
        enforced: Result<&Grant, &Denial>,
        eval: impl FnOnce(&Policy) -> Result<Grant, Denial>,
    ) {
        let Some(shadow) = self.shadow_evaluate(eval) else {
            return;
        };
        let enforced = enforced.cloned().map_err(Clone::clone);
        let Some(diff) = compare(&enforced, &shadow) else {
            return;
        };
        let path = self
            .config()
            .shadow_policy
            .as_ref()
            .map(|p| p.display().to_string());
        let event = AuditEvent::new(SHADOW_EVENT)
            .with("via", via)
            .with("user", user)
            .with("kind", diff.kind.as_str())
            .with("roles", diff.roles)
            .with("rule", diff.rule)
            .with("changed", diff.changed)
            .with("enforced", diff.enforced)
            .with("shadow", diff.shadow)
            .with("shadow_policy", path);
        if let Err(err) = self.audit().append(event) {
            tracing::error!(%err, user, "cannot audit a shadow policy difference; the request goes on");
        }
    }
}
