//! The CA's metrics, derived from its audit records as they become durable (so a counter never
//! says a certificate was issued that the audit log does not hold), plus the gauges read at
//! scrape time.

use std::sync::Arc;

use jitssh_core::audit::{AuditRecord, Observer};
use jitssh_core::metrics::names;
use serde_json::Value;

use crate::authority::Authority;

/// Counts `cert.issued` (by certificate type, signing CA and roles) and `cert.denied` (by the
/// record's `category`: a fixed set, see [`DenialCategory`]).
pub fn observer() -> Observer {
    Arc::new(count)
}

fn count(record: &AuditRecord) {
    let fields = &record.event.fields;
    match record.event.kind.as_str() {
        "cert.issued" => {
            let text = |key: &str| {
                fields
                    .get(key)
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned()
            };
            metrics::counter!(
                names::CA_ISSUED,
                "cert_type" => text("cert_type"),
                "ca" => text("ca"),
                "role" => roles(fields.get("details")),
            )
            .increment(1);
        }
        "cert.denied" => {
            let category = fields
                .get("category")
                .and_then(Value::as_str)
                .and_then(DenialCategory::parse)
                .unwrap_or(DenialCategory::Other);
            metrics::counter!(names::CA_DENIED, "reason" => category.as_str()).increment(1);
        }
        _ => {}
    }
}

/// The roles a certificate was issued under, `+`-joined (`dev+ops`), or `none`.
fn roles(details: Option<&Value>) -> String {
    let names: Vec<&str> = details
        .and_then(|d| d.get("roles"))
        .and_then(Value::as_array)
        .map(|roles| roles.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "none".to_owned()
    } else {
        names.join("+")
    }
}

/// Why a certificate was refused, as a bounded label (the audit record keeps the full reason).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DenialCategory {
    /// The policy said no (role, principals, TTL, hours, reason, approval).
    Policy,
    /// The key, key id or certificate is revoked.
    Revoked,
    /// The key is enrolled for another user.
    KeyOfOtherUser,
    /// A host asked with a key no host is enrolled with.
    UnknownHostKey,
    /// The request itself was malformed (bad flags, bad key).
    BadRequest,
    /// A token (SSO, workload) did not verify.
    Token,
    /// Anything not yet categorised.
    Other,
}

impl DenialCategory {
    /// Every category, for documentation and tests.
    pub const ALL: [DenialCategory; 7] = [
        DenialCategory::Policy,
        DenialCategory::Revoked,
        DenialCategory::KeyOfOtherUser,
        DenialCategory::UnknownHostKey,
        DenialCategory::BadRequest,
        DenialCategory::Token,
        DenialCategory::Other,
    ];

    /// The label value, also written as the `category` field of `cert.denied` records.
    pub fn as_str(self) -> &'static str {
        match self {
            DenialCategory::Policy => "policy",
            DenialCategory::Revoked => "revoked",
            DenialCategory::KeyOfOtherUser => "key_of_other_user",
            DenialCategory::UnknownHostKey => "unknown_host_key",
            DenialCategory::BadRequest => "bad_request",
            DenialCategory::Token => "token",
            DenialCategory::Other => "other",
        }
    }

    fn parse(text: &str) -> Option<DenialCategory> {
        Self::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

/// Sets the gauges that are read, not counted: the KRL file's age and the revocations held.
pub fn refresh(authority: &Authority) {
    if let Ok(modified) =
        std::fs::metadata(authority.config().krl_path()).and_then(|m| m.modified())
        && let Ok(age) = modified.elapsed()
    {
        metrics::gauge!(names::CA_KRL_AGE).set(age.as_secs_f64());
    }
    if let Ok(revocations) = authority.revocations() {
        metrics::gauge!(names::CA_REVOCATIONS).set(revocations.len() as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_joined_and_categories_round_trip() {
        assert_eq!(
            roles(Some(&serde_json::json!({"roles": ["dev", "ops"]}))),
            "dev+ops"
        );
        assert_eq!(
            roles(Some(&serde_json::json!({"bastion_host_cert": true}))),
            "none"
        );
        assert_eq!(roles(None), "none");
        for category in DenialCategory::ALL {
            assert_eq!(DenialCategory::parse(category.as_str()), Some(category));
        }
        assert_eq!(DenialCategory::parse("free text"), None);
    }
}
