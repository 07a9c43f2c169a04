//! `[sso]` in `policy.toml`: which roles a person signed in through the organisation's
//! identity provider holds, decided by their groups there.
//!
//! ```toml
//! [[sso.groups]]
//! claim = "ops"            # a value of the configured groups claim
//! roles = ["dev", "lead"]
//! ```
//!
//! A person signed in through SSO has no entry under `[[users]]`: their name comes from the
//! ID token and their roles from this table, evaluated afresh at every login, so removing
//! them from a group at the identity provider takes their roles away at the next login.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::User;

/// `[sso]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SsoFile {
    #[serde(default)]
    pub(super) groups: Vec<GroupRule>,
}

/// One `[[sso.groups]]` entry: members of the group `claim` hold `roles`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRule {
    /// A value of the groups claim (a group name or id, as the identity provider sends it).
    pub claim: String,
    /// Roles its members hold.
    pub roles: Vec<String>,
}

/// The validated `[sso]` rules.
#[derive(Debug, Clone, Default)]
pub struct SsoPolicy {
    groups: Vec<GroupRule>,
}

/// Longest SSO person name accepted (an e-mail address, a user name or a `sub`).
pub const MAX_SSO_NAME_LEN: usize = 128;

impl SsoPolicy {
    /// Validates `[sso]`: every rule names a group and at least one known role.
    pub(super) fn from_file(
        file: SsoFile,
        role_known: impl Fn(&str) -> bool,
    ) -> Result<SsoPolicy, (String, String)> {
        for (i, rule) in file.groups.iter().enumerate() {
            let key = |field: &str| format!("sso.groups[{i}].{field}");
            if rule.claim.is_empty() {
                return Err((key("claim"), "claim is empty".into()));
            }
            if rule.roles.is_empty() {
                return Err((
                    key("roles"),
                    "a group rule must name at least one role".into(),
                ));
            }
            if let Some(unknown) = rule.roles.iter().find(|r| !role_known(r)) {
                return Err((key("roles"), format!("unknown role {unknown:?}")));
            }
        }
        Ok(SsoPolicy {
            groups: file.groups,
        })
    }

    /// The group rules, in file order.
    pub fn groups(&self) -> &[GroupRule] {
        &self.groups
    }

    /// The person `name` with the roles their `groups` map to (none when no rule matches),
    /// and the groups that matched (for the audit record).
    pub fn person(&self, name: &str, groups: &[String]) -> (User, Vec<String>) {
        let mut roles = BTreeSet::new();
        let mut matched = Vec::new();
        for rule in &self.groups {
            if groups.contains(&rule.claim) {
                roles.extend(rule.roles.iter().cloned());
                matched.push(rule.claim.clone());
            }
        }
        let user = User {
            name: name.to_string(),
            keys: Vec::new(),
            roles: roles.into_iter().collect(),
        };
        (user, matched)
    }
}

/// Checks a person's name from an ID token before it goes into a key id, audit records and
/// `{user}` logins: bounded, printable, no whitespace or commas, not a reserved API user.
pub fn check_person_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("the identity provider sent an empty name".into());
    }
    if name.chars().count() > MAX_SSO_NAME_LEN {
        return Err(format!(
            "the name from the identity provider is longer than {MAX_SSO_NAME_LEN} characters"
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || matches!(c, ',' | '*' | '?' | '"' | '\''))
    {
        return Err(format!(
            "the name from the identity provider contains {bad:?}"
        ));
    }
    if super::RESERVED_USER_NAMES.contains(&name) {
        return Err(format!("the name {name:?} is reserved for the CA API"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(groups: &[(&str, &[&str])]) -> SsoPolicy {
        SsoPolicy {
            groups: groups
                .iter()
                .map(|(claim, roles)| GroupRule {
                    claim: claim.to_string(),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                })
                .collect(),
        }
    }

    #[test]
    fn groups_map_to_the_union_of_their_roles() {
        let sso = policy(&[("ops", &["dev"]), ("leads", &["lead", "dev"])]);
        let (user, matched) = sso.person("a@x", &["leads".into(), "ops".into(), "x".into()]);
        assert_eq!(user.roles, vec!["dev".to_string(), "lead".to_string()]);
        assert_eq!(matched, vec!["ops".to_string(), "leads".to_string()]);
        let (user, matched) = sso.person("a@x", &["other".into()]);
        assert!(user.roles.is_empty() && matched.is_empty());
    }

    #[test]
    fn names_are_checked() {
        assert!(check_person_name("alice@example.com").is_ok());
        assert!(check_person_name("").is_err());
        assert!(check_person_name("a b").is_err());
        assert!(check_person_name("a,b").is_err());
        assert!(check_person_name("host").is_err());
        assert!(check_person_name(&"x".repeat(129)).is_err());
    }

    #[test]
    fn unknown_roles_are_refused() {
        let file = SsoFile {
            groups: vec![GroupRule {
                claim: "ops".into(),
                roles: vec!["nope".into()],
            }],
        };
        let err = SsoPolicy::from_file(file, |_| false).unwrap_err();
        assert_eq!(err.0, "sso.groups[0].roles");
    }
}
