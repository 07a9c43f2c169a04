//! `[[workloads]]` in `policy.toml`: which verified tokens (CI jobs, Kubernetes service
//! accounts) get certificates, under which identity and roles. No key is enrolled: a workload
//! proves who it is with a token its platform signed, and the certificate is issued for the key
//! it logged in with.
//!
//! ```toml
//! [[workloads]]
//! name = "ci-{repository}"          # identity: a template over the token's claims
//! issuer = "https://token.actions.githubusercontent.com"
//! audience = "jitssh"
//! jwks = "discovery"                # or a JWKS URL, or a file path
//! roles = ["deploy"]
//! match = { repository = "acme/deploy", ref = "refs/heads/main" }
//! ```
//!
//! A rule matches a token of its issuer and audience when every `match` condition holds: the
//! claim (a dotted path reaches nested claims, e.g. `kubernetes.io.namespace`) is a string
//! matching the pattern (`*` and `?` wildcards; no wildcard means equal). A rule must have at
//! least one condition: an issuer such as GitHub's signs tokens for every repository on it.
//! The first matching rule, in file order, decides.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde::Deserialize;
use serde_json::Value;

use crate::pattern::wildcard_match;

/// Longest workload identity name after expansion.
pub const MAX_WORKLOAD_NAME: usize = 64;

/// One `[[workloads]]` rule as written.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WorkloadRule {
    /// The workload identity: a template where `{claim}` is replaced by that claim's value
    /// (characters other than letters, digits, `-`, `_`, `.` become `-`).
    pub name: String,
    /// The token issuer (`iss`), exactly.
    pub issuer: String,
    /// The audience the token must carry (`aud`).
    pub audience: String,
    /// Where the issuer's keys are: `discovery` (default), a JWKS URL, or a JWKS file path.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Conditions on claims: claim name (or dotted path) = pattern.
    #[serde(rename = "match")]
    pub conditions: BTreeMap<String, String>,
    /// Roles the workload holds when the rule matches.
    pub roles: Vec<String>,
}

/// Where a rule's issuer keys are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JwksLocation {
    /// The issuer's discovery document's `jwks_uri`.
    Discovery,
    /// A JWKS URL.
    Url(String),
    /// A JWKS file.
    File(PathBuf),
}

/// What every token rule (`[[workloads]]`, `[[hosts_by_token]]`) says about the token
/// itself: whose it is, for whom, where its issuer's keys are, and conditions on its claims.
/// The CA API verifies tokens for any such rule the same way (one verifier path).
pub trait TokenRule {
    /// The token issuer (`iss`), exactly.
    fn issuer(&self) -> &str;
    /// The audience the token must carry (`aud`).
    fn audience(&self) -> &str;
    /// Where the issuer's keys are, as written (`None`: discovery).
    fn jwks(&self) -> Option<&str>;
    /// Conditions on claims: claim name (or dotted path) = pattern.
    fn conditions(&self) -> &BTreeMap<String, String>;

    /// Where this rule's issuer keys are.
    fn jwks_location(&self) -> JwksLocation {
        match self.jwks() {
            None | Some("discovery") => JwksLocation::Discovery,
            Some(url) if url.starts_with("https://") || url.starts_with("http://") => {
                JwksLocation::Url(url.to_string())
            }
            Some(path) => JwksLocation::File(PathBuf::from(path)),
        }
    }

    /// Whether every condition holds for `claims`; else the first that does not, said in
    /// one line.
    fn check(&self, claims: &serde_json::Map<String, Value>) -> Result<(), String> {
        for (claim, pattern) in self.conditions() {
            match lookup(claims, claim) {
                Some(Value::String(value)) if wildcard_match(pattern, value) => {}
                Some(Value::String(value)) => {
                    return Err(format!(
                        "{claim} is {:?}, not {pattern:?}",
                        printable(value)
                    ));
                }
                Some(_) => return Err(format!("{claim} is not a string")),
                None => return Err(format!("token has no {claim} claim")),
            }
        }
        Ok(())
    }
}

impl TokenRule for WorkloadRule {
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

/// Checks the parts every token rule shares: issuer URL, audience, at least one well-formed
/// `match` condition. `key` names a field of the rule for the error.
pub fn validate_token_rule(
    rule: &impl TokenRule,
    key: impl Fn(&str) -> String,
) -> Result<(), RuleError> {
    if !(rule.issuer().starts_with("https://") || rule.issuer().starts_with("http://")) {
        return Err((
            key("issuer"),
            format!("issuer {:?} is not a URL", rule.issuer()),
        ));
    }
    if rule.audience().is_empty() {
        return Err((key("audience"), "audience is empty".into()));
    }
    if rule.conditions().is_empty() {
        return Err((
            key("match"),
            "a token rule needs at least one match condition (the issuer signs tokens for others too)".into(),
        ));
    }
    if let Some((claim, _)) = rule
        .conditions()
        .iter()
        .find(|(c, p)| c.is_empty() || p.is_empty())
    {
        return Err((
            key("match"),
            format!("empty claim name or pattern ({claim:?})"),
        ));
    }
    Ok(())
}

impl WorkloadRule {
    /// The workload identity name for `claims`.
    pub fn identity(&self, claims: &serde_json::Map<String, Value>) -> Result<String, String> {
        let mut out = String::new();
        let mut rest = self.name.as_str();
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                return Err(format!("unclosed {{ in name template {:?}", self.name));
            };
            let claim = &rest[open + 1..open + close];
            match lookup(claims, claim) {
                Some(Value::String(value)) => out.push_str(&sanitize(value)),
                Some(Value::Number(n)) => out.push_str(&n.to_string()),
                _ => {
                    return Err(format!(
                        "name template needs claim {claim}, not in the token"
                    ));
                }
            }
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        if out.is_empty() || out.len() > MAX_WORKLOAD_NAME {
            return Err(format!(
                "workload name {:?} is empty or longer than {MAX_WORKLOAD_NAME}",
                printable(&out)
            ));
        }
        Ok(out)
    }
}

/// A rule's problem found at load time (field, message).
pub type RuleError = (String, String);

/// Checks the rules against the policy's role names.
pub fn validate(rules: &[WorkloadRule], roles: &BTreeSet<&str>) -> Result<(), RuleError> {
    for (i, rule) in rules.iter().enumerate() {
        let key = |field: &str| format!("workloads[{i}].{field}");
        validate_token_rule(rule, key)?;
        if rule.name.is_empty() || rule.name.matches('{').count() != rule.name.matches('}').count()
        {
            return Err((
                key("name"),
                format!("invalid name template {:?}", rule.name),
            ));
        }
        if rule.roles.is_empty() {
            return Err((
                key("roles"),
                "a workload rule needs at least one role".into(),
            ));
        }
        if let Some(unknown) = rule.roles.iter().find(|r| !roles.contains(r.as_str())) {
            return Err((key("roles"), format!("unknown role {unknown:?}")));
        }
    }
    Ok(())
}

/// The rule that admits a verified token of `issuer` with audience `audience`: the workload's
/// identity name and the rule's index, or why none admits it (naming each rule that refused).
pub fn resolve<'r>(
    rules: &'r [WorkloadRule],
    issuer: &str,
    audiences: &[&str],
    claims: &serde_json::Map<String, Value>,
) -> Result<(usize, &'r WorkloadRule, String), String> {
    let mut refusals = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        if rule.issuer != issuer || !audiences.contains(&rule.audience.as_str()) {
            continue;
        }
        match rule.check(claims).and_then(|()| rule.identity(claims)) {
            Ok(name) => return Ok((i, rule, name)),
            Err(why) => refusals.push(format!("workloads[{i}] ({}): {why}", rule.name)),
        }
    }
    if refusals.is_empty() {
        return Err(format!("no [[workloads]] rule for issuer {issuer}"));
    }
    Err(format!("no workload rule matches: {}", refusals.join("; ")))
}

/// A claim by name, or by dotted path into nested objects (`kubernetes.io.namespace`: keys
/// may contain dots themselves, so every split is tried).
pub fn lookup<'c>(claims: &'c serde_json::Map<String, Value>, path: &str) -> Option<&'c Value> {
    if let Some(value) = claims.get(path) {
        return Some(value);
    }
    path.match_indices('.')
        .find_map(|(dot, _)| match claims.get(&path[..dot]) {
            Some(Value::Object(inner)) => lookup(inner, &path[dot + 1..]),
            _ => None,
        })
}

fn sanitize(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect()
}

pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .take(120)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rule(conditions: &[(&str, &str)]) -> WorkloadRule {
        WorkloadRule {
            name: "ci-{repository}".into(),
            issuer: "https://ci.example".into(),
            audience: "jitssh".into(),
            jwks: None,
            conditions: conditions
                .iter()
                .map(|(c, p)| (c.to_string(), p.to_string()))
                .collect(),
            roles: vec!["deploy".into()],
        }
    }

    fn claims(value: Value) -> serde_json::Map<String, Value> {
        value.as_object().cloned().unwrap()
    }

    #[test]
    fn conditions_match_exactly_or_by_glob_and_name_the_first_failure() {
        let github = claims(json!({
            "sub": "repo:acme/deploy:ref:refs/heads/main", "repository": "acme/deploy",
            "ref": "refs/heads/main", "environment": "prod",
        }));
        assert!(
            rule(&[("sub", "repo:acme/deploy:ref:refs/heads/main")])
                .check(&github)
                .is_ok()
        );
        assert!(
            rule(&[("repository", "acme/*"), ("ref", "refs/heads/main")])
                .check(&github)
                .is_ok()
        );
        assert_eq!(
            rule(&[("ref", "refs/heads/release-*")])
                .check(&github)
                .unwrap_err(),
            "ref is \"refs/heads/main\", not \"refs/heads/release-*\""
        );
        assert_eq!(
            rule(&[("job_workflow_ref", "x")])
                .check(&github)
                .unwrap_err(),
            "token has no job_workflow_ref claim"
        );
        assert_eq!(
            rule(&[("sub", "x")]).identity(&github).unwrap(),
            "ci-acme-deploy"
        );
    }

    #[test]
    fn nested_kubernetes_claims_are_reached_by_dotted_paths() {
        let k8s = claims(json!({
            "sub": "system:serviceaccount:prod:deployer",
            "kubernetes.io": {"namespace": "prod", "serviceaccount": {"name": "deployer"}},
        }));
        let rule = rule(&[
            ("kubernetes.io.namespace", "prod"),
            ("kubernetes.io.serviceaccount.name", "deploy*"),
        ]);
        assert!(rule.check(&k8s).is_ok());
        assert_eq!(
            lookup(&k8s, "kubernetes.io.serviceaccount.name"),
            Some(&json!("deployer"))
        );
    }

    #[test]
    fn resolve_takes_the_first_matching_rule_of_the_issuer_and_audience() {
        let token = claims(
            json!({"sub": "repo:acme/other:ref:refs/heads/main", "repository": "acme/other"}),
        );
        let rules = vec![
            rule(&[("repository", "acme/deploy")]),
            rule(&[("repository", "acme/*")]),
        ];
        let (index, _, name) = resolve(&rules, "https://ci.example", &["jitssh"], &token).unwrap();
        assert_eq!((index, name.as_str()), (1, "ci-acme-other"));
        let err = resolve(&rules[..1], "https://ci.example", &["jitssh"], &token).unwrap_err();
        assert_eq!(
            err,
            "no workload rule matches: workloads[0] (ci-{repository}): repository is \"acme/other\", not \"acme/deploy\""
        );
        assert!(resolve(&rules, "https://other.example", &["jitssh"], &token).is_err());
        assert!(resolve(&rules, "https://ci.example", &["else"], &token).is_err());
    }

    #[test]
    fn rules_without_conditions_or_with_unknown_roles_are_refused() {
        let roles: BTreeSet<&str> = ["deploy"].into_iter().collect();
        assert!(validate(&[rule(&[("sub", "x")])], &roles).is_ok());
        let (field, why) = validate(&[rule(&[])], &roles).unwrap_err();
        assert_eq!(field, "workloads[0].match");
        assert!(why.contains("at least one match condition"), "{why}");
        let mut unknown = rule(&[("sub", "x")]);
        unknown.roles = vec!["root".into()];
        assert!(
            validate(&[unknown], &roles)
                .unwrap_err()
                .1
                .contains("unknown role")
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/policy.toml");
        let policy = crate::policy::Policy::load(&path).unwrap();
        let rule = &policy.workloads()[0];
        assert_eq!(rule.issuer, "https://token.actions.githubusercontent.com");
        assert_eq!(rule.jwks_location(), JwksLocation::Discovery);
        assert_eq!(rule.conditions.len(), 3);
    }
}
