//! `[[hosts_by_token]]` in `policy.toml`: hosts that get *host* certificates with a signed
//! identity token (a cloud VM's instance identity token, a Kubernetes node's or a SPIFFE-style
//! JWT) instead of `ssh-ca host add` and a join token. Nothing is enrolled: the VM asks its
//! metadata service for a fresh token whenever it needs a certificate, and the certificate is
//! for the host key it logged in with.
//!
//! ```toml
//! [[hosts_by_token]]
//! issuer = "https://accounts.google.com"
//! audience = "https://ca.example.com"
//! jwks = "discovery"
//! match = { "google.compute_engine.project_id" = "acme-prod" }
//! names = ["{google.compute_engine.instance_name}.internal", "{google.compute_engine.instance_id}"]
//! ttl = "7d"
//! ```
//!
//! The rule set is kept apart from `[[workloads]]` on purpose: a workload token (a CI job) can
//! never become a host certificate, and a VM's token never a user certificate, unless a rule of
//! that very kind admits it. The principals come only from the `names` templates: the client
//! chooses none of them. A claim value fills one DNS label: it is lowercased and every
//! character other than `a-z`, `0-9` and `-` (dots too) becomes `-`, so a claim can neither
//! add a wildcard nor climb into another domain.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::workloads::{RuleError, TokenRule, lookup, printable, validate_token_rule};
use crate::duration::HumanDuration;

/// Most names one rule may give a host.
pub const MAX_HOST_NAMES: usize = 16;
/// Longest host name (DNS).
const MAX_HOST_NAME: usize = 253;
/// Longest DNS label.
const MAX_LABEL: usize = 63;

fn default_ttl() -> HumanDuration {
    HumanDuration::from_secs(7 * 24 * 3600)
}

/// One `[[hosts_by_token]]` rule as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HostTokenRule {
    /// The token issuer (`iss`), exactly.
    pub issuer: String,
    /// The audience the token must carry (`aud`).
    pub audience: String,
    /// Where the issuer's keys are: `discovery` (default), a JWKS URL, or a JWKS file path.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Conditions on claims: claim name (or dotted path) = pattern (at least one).
    #[serde(rename = "match")]
    pub conditions: BTreeMap<String, String>,
    /// The certificate's principals: templates where `{claim}` is that claim's value as one
    /// DNS label.
    pub names: Vec<String>,
    /// Lifetime of the host certificate (default 7d, as `ssh-ca host add`).
    #[serde(default = "default_ttl")]
    pub ttl: HumanDuration,
}

impl TokenRule for HostTokenRule {
    fn issuer(&self) -> &str {
        &self.issuer
    }
    fn audience(&self) -> &str {
        &self.audience
    }
    fn jwks(&self) -> Option<&str> {
        self.jwks.as_deref()
    }
    fn conditions(&self) -> &BTreeMap<String, String> {
        &self.conditions
    }
}

impl HostTokenRule {
    /// The host's names (the certificate's principals) for `claims`, in rule order without
    /// duplicates; or why they cannot be made (a missing claim, an invalid name).
    pub fn host_names(
        &self,
        claims: &serde_json::Map<String, Value>,
    ) -> Result<Vec<String>, String> {
        let mut names: Vec<String> = Vec::new();
        for template in &self.names {
            let name = expand(template, |claim| match lookup(claims, claim) {
                Some(Value::String(value)) => Ok(label(value)),
                Some(Value::Number(n)) => Ok(label(&n.to_string())),
                _ => Err(format!(
                    "name template needs claim {claim}, not in the token"
                )),
            })?;
            check_host_name(&name)?;
            if !names.contains(&name) {
                names.push(name);
            }
        }
        Ok(names)
    }
}

/// `template` with each `{claim}` replaced by `value(claim)`.
fn expand(
    template: &str,
    mut value: impl FnMut(&str) -> Result<String, String>,
) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(format!("unclosed {{ in name template {template:?}"));
        };
        out.push_str(&value(&rest[open + 1..open + close])?);
        rest = &rest[open + close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("unopened }} in name template {template:?}"));
    }
    out.push_str(rest);
    Ok(out)
}

/// A claim value as one DNS label: lowercase, `a-z0-9-` only (anything else becomes `-`).
fn label(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

/// A valid host name: non-empty dot-separated labels of `a-z0-9-` (no label empty, longer
/// than 63 or starting or ending with `-`), at most 253 characters.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let invalid = |why: &str| Err(format!("host name {:?} {why}", printable(name)));
    if name.is_empty() {
        return invalid("is empty");
    }
    if name.len() > MAX_HOST_NAME {
        return invalid("is longer than 253 characters");
    }
    for part in name.split('.') {
        if part.is_empty() || part.len() > MAX_LABEL {
            return invalid("has an empty or over-long label");
        }
        if part.starts_with('-') || part.ends_with('-') {
            return invalid("has a label starting or ending with '-'");
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return invalid("has characters other than a-z, 0-9, '-' and '.'");
        }
    }
    Ok(())
}

/// Checks the rules: the token parts as for workloads, and `names` templates that make valid
/// host names.
pub fn validate(rules: &[HostTokenRule]) -> Result<(), RuleError> {
    for (i, rule) in rules.iter().enumerate() {
        let key = |field: &str| format!("hosts_by_token[{i}].{field}");
        validate_token_rule(rule, key)?;
        if rule.names.is_empty() || rule.names.len() > MAX_HOST_NAMES {
            return Err((
                key("names"),
                format!("a host rule needs 1 to {MAX_HOST_NAMES} names"),
            ));
        }
        for template in &rule.names {
            // Every claim stands for a plain label: the rest must make a valid host name.
            let sample = expand(template, |claim| {
                if claim.is_empty() {
                    Err(format!("empty {{}} in name template {template:?}"))
                } else {
                    Ok("x".to_string())
                }
            })
            .and_then(|name| check_host_name(&name));
            if let Err(why) = sample {
                return Err((key("names"), why));
            }
        }
        if rule.ttl.as_secs() == 0 {
            return Err((key("ttl"), "ttl must be more than 0s".into()));
        }
    }
    Ok(())
}

/// The rule that admits a verified token of `issuer` with audiences `audiences`: its index,
/// the rule and the host's names; or why none admits it (naming each rule that refused).
pub fn resolve<'r>(
    rules: &'r [HostTokenRule],
    issuer: &str,
    audiences: &[&str],
    claims: &serde_json::Map<String, Value>,
) -> Result<(usize, &'r HostTokenRule, Vec<String>), String> {
    let mut refusals = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.issuer != issuer || !audiences.contains(&rule.audience.as_str()) {
            continue;
        }
        match rule.check(claims).and_then(|()| rule.host_names(claims)) {
            Ok(names) => return Ok((i, rule, names)),
            Err(why) => refusals.push(format!("hosts_by_token[{i}]: {why}")),
        }
    }
    if refusals.is_empty() {
        return Err(format!("no [[hosts_by_token]] rule for issuer {issuer}"));
    }
    Err(format!("no host rule matches: {}", refusals.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(names: &[&str]) -> HostTokenRule {
        HostTokenRule {
            issuer: "https://accounts.google.com".into(),
            audience: "https://ca.example".into(),
            jwks: None,
            conditions: [(
                "google.compute_engine.project_id".to_string(),
                "acme-prod".to_string(),
            )]
            .into_iter()
            .collect(),
            names: names.iter().map(|n| n.to_string()).collect(),
            ttl: default_ttl(),
        }
    }

    fn gcp(instance_name: &str) -> serde_json::Map<String, Value> {
        json!({
            "sub": "1234567890",
            "google": {"compute_engine": {
                "project_id": "acme-prod", "instance_name": instance_name,
                "instance_id": "5566778899", "zone": "europe-west1-b",
            }},
        })
        .as_object()
        .cloned()
        .unwrap()
    }

    #[test]
    fn names_expand_claims_as_single_lowercase_labels() {
        let rule = rule(&[
            "{google.compute_engine.instance_name}.internal",
            "{google.compute_engine.instance_id}",
            "{google.compute_engine.instance_id}",
        ]);
        assert!(rule.check(&gcp("web-1")).is_ok());
        assert_eq!(
            rule.host_names(&gcp("Web-1")).unwrap(),
            ["web-1.internal", "5566778899"]
        );
        // A claim cannot add labels, wildcards or list separators.
        assert_eq!(
            rule.host_names(&gcp("db.other.example,*x")).unwrap()[0],
            "db-other-example--x.internal"
        );
    }

    #[test]
    fn empty_or_invalid_names_are_refused() {
        let rule = rule(&["{google.compute_engine.instance_name}.internal"]);
        for bad in ["", "-web", "web-", "ü"] {
            let err = rule.host_names(&gcp(bad)).unwrap_err();
            assert!(err.starts_with("host name "), "{bad:?}: {err}");
        }
        let err = rule.host_names(&json!({}).as_object().cloned().unwrap());
        assert_eq!(
            err.unwrap_err(),
            "name template needs claim google.compute_engine.instance_name, not in the token"
        );
    }

    #[test]
    fn rules_need_conditions_and_valid_name_templates() {
        assert!(validate(&[rule(&["{a}.internal"])]).is_ok());
        let mut none = rule(&["{a}"]);
        none.conditions.clear();
        assert_eq!(validate(&[none]).unwrap_err().0, "hosts_by_token[0].match");
        for bad in [
            &[][..],
            &["*.internal"],
            &["{a}..internal"],
            &["{}"],
            &["{a"],
        ] {
            let (field, _) = validate(&[rule(bad)]).unwrap_err();
            assert_eq!(field, "hosts_by_token[0].names", "{bad:?}");
        }
    }

    #[test]
    fn resolve_names_the_rule_and_condition_that_refused() {
        let rules = vec![rule(&["{google.compute_engine.instance_name}"])];
        let mut other = gcp("web-1");
        other["google"]["compute_engine"]["project_id"] = json!("evil");
        let err = resolve(
            &rules,
            "https://accounts.google.com",
            &["https://ca.example"],
            &other,
        )
        .unwrap_err();
        assert_eq!(
            err,
            "no host rule matches: hosts_by_token[0]: google.compute_engine.project_id is \"evil\", not \"acme-prod\""
        );
        let (i, _, names) = resolve(
            &rules,
            "https://accounts.google.com",
            &["https://ca.example"],
            &gcp("web-1"),
        )
        .unwrap();
        assert_eq!((i, names), (0, vec!["web-1".to_string()]));
    }

    #[test]
    fn the_documented_example_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/policy.toml");
        let policy = crate::policy::Policy::load(&path).unwrap();
        let rule = &policy.hosts_by_token()[0];
        assert_eq!(rule.issuer, "https://accounts.google.com");
        assert_eq!(rule.names.len(), 2);
        assert_eq!(rule.ttl.as_secs(), 7 * 24 * 3600);
    }
}
