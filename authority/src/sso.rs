//! Certificates for people signed in through the organisation's identity provider (SSO): the
//! `[sso]` section of the CA's configuration, and issuance for a person who has no entry in
//! `policy.toml` but a verified ID token.
//!
//! The person's name comes from a configured claim (`email`, `preferred_username` or `sub`),
//! their roles from their groups through `[[sso.groups]]` in the policy; from there every
//! rule applies as for an enrolled user (TTL, reasons, approvals, allowed hours). The key id
//! is `NAME sso-sub=SUB` so the bastion, which takes a key id's first word as the person,
//! sees the name, and the audit log keeps the identity provider's stable `sub`.

use jitssh_core::audit::AuditEvent;
use jitssh_core::cert::CertSpec;
use jitssh_core::duration::HumanDuration;
use jitssh_core::policy::sso::check_person_name;
use jitssh_core::policy::{CertRequest, Denial, Policy};
use jitssh_core::ssh_key::public::KeyData;
use jitssh_core::ssh_key::{HashAlg, PublicKey};
use jitssh_core::unix_now;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::authority::{Authority, IssueError, Issued};

/// The claim that names a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NameClaim {
    /// `email` (only when `email_verified` is not false).
    Email,
    /// `preferred_username`.
    PreferredUsername,
    /// `sub`: stable and unique at the issuer, but rarely readable.
    Sub,
}

impl NameClaim {
    /// The claim's name in the token.
    pub fn as_str(self) -> &'static str {
        match self {
            NameClaim::Email => "email",
            NameClaim::PreferredUsername => "preferred_username",
            NameClaim::Sub => "sub",
        }
    }
}

/// `[sso]` in the CA's configuration: the identity provider and this CA's client there.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoConfig {
    /// The issuer URL; `ISSUER/.well-known/openid-configuration` is read for the endpoints.
    pub issuer: String,
    /// This CA's client id at the identity provider (a public client with the device grant).
    pub client_id: String,
    /// The client secret, for identity providers that require one even for the device grant.
    #[serde(default)]
    pub client_secret: Option<String>,
    /// Scopes asked for (default: openid, email, profile, groups).
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim that names the person (default `email`).
    #[serde(default = "default_name_claim")]
    pub name_claim: NameClaim,
    /// The claim listing the person's groups (default `groups`).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Time allowed for one call to the identity provider (discovery, device authorization,
    /// token, keys): when it is down, `login` fails this fast.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
}

fn default_scopes() -> Vec<String> {
    ["openid", "email", "profile", "groups"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}
fn default_name_claim() -> NameClaim {
    NameClaim::Email
}
fn default_groups_claim() -> String {
    "groups".into()
}
fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

impl SsoConfig {
    /// Checks what serde cannot: an http(s) issuer, a client id, `openid` among the scopes.
    pub fn check(&self) -> Result<(), (String, String)> {
        let lower = self.issuer.to_ascii_lowercase();
        if !(lower.starts_with("https://") || lower.starts_with("http://")) {
            return Err((
                "sso.issuer".into(),
                format!("{:?} is not an http(s) URL", self.issuer),
            ));
        }
        if self.client_id.is_empty() {
            return Err(("sso.client_id".into(), "client_id is empty".into()));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            return Err((
                "sso.scopes".into(),
                "scopes must include \"openid\" (the CA verifies an ID token)".into(),
            ));
        }
        if self.timeout.as_secs() == 0 || self.timeout.as_secs() > 60 {
            return Err((
                "sso.timeout".into(),
                "timeout must be between 1s and 60s".into(),
            ));
        }
        Ok(())
    }
}

/// A person as the identity provider vouched for them in a verified ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SsoPerson {
    /// Their name (the configured claim's value).
    pub name: String,
    /// The issuer's stable subject identifier.
    pub sub: String,
    /// The issuer.
    pub issuer: String,
    /// Their groups (the configured groups claim).
    pub groups: Vec<String>,
}

/// Most groups read from a token (a person in more is refused rather than cut silently).
pub const MAX_GROUPS: usize = 256;
/// Longest group name read.
pub const MAX_GROUP_LEN: usize = 256;

/// A claim the configuration needs is missing or unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the ID token's {claim} claim {why}")]
pub struct ClaimError {
    /// The claim.
    pub claim: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// An ID token's verified claims.
pub type Claims = serde_json::Map<String, Value>;

impl SsoPerson {
    /// Reads the person from verified `claims`: the naming claim, `sub`, the groups claim.
    /// The CA's `ssh sso@ca login` and the bastion's web console both name people this way.
    pub fn from_claims(config: &SsoConfig, claims: &Claims) -> Result<SsoPerson, ClaimError> {
        let missing = |claim: &str, why| ClaimError {
            claim: claim.to_string(),
            why,
        };
        let text = |claim: &str| -> Result<String, ClaimError> {
            match claims.get(claim) {
                Some(Value::String(value)) if !value.is_empty() => Ok(value.clone()),
                Some(_) => Err(missing(claim, "is not a non-empty string")),
                None => Err(missing(
                    claim,
                    "is missing (is its scope asked for and granted?)",
                )),
            }
        };
        let sub = text("sub")?;
        let issuer = text("iss")?;
        let name = match config.name_claim {
            NameClaim::Sub => sub.clone(),
            NameClaim::PreferredUsername => text("preferred_username")?,
            NameClaim::Email => {
                if claims.get("email_verified") == Some(&Value::Bool(false)) {
                    return Err(missing("email", "is not verified at the identity provider"));
                }
                text("email")?
            }
        };
        let groups = match claims.get(&config.groups_claim) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::String(one)) => vec![one.clone()],
            Some(Value::Array(many)) => {
                if many.len() > MAX_GROUPS {
                    return Err(missing(&config.groups_claim, "lists too many groups"));
                }
                let mut groups = Vec::new();
                for group in many {
                    match group.as_str() {
                        Some(g) if g.len() <= MAX_GROUP_LEN => groups.push(g.to_string()),
                        _ => {
                            return Err(missing(
                                &config.groups_claim,
                                "holds a non-string or overlong entry",
                            ));
                        }
                    }
                }
                groups
            }
            Some(_) => return Err(missing(&config.groups_claim, "is not a list of strings")),
        };
        Ok(SsoPerson {
            name,
            sub,
            issuer,
            groups,
        })
    }
}

/// Longest `sub` put in a key id.
const MAX_SUB_LEN: usize = 255;

impl Authority {
    /// Issues a user certificate for `person` (signed in through SSO) for `subject`, the key
    /// their SSH login proved they hold. Their roles come from their groups through
    /// `[[sso.groups]]`; every rule of those roles applies. Denials are audited like others.
    pub fn issue_for_sso(
        &self,
        person: &SsoPerson,
        subject: KeyData,
        request: &CertRequest,
    ) -> Result<Issued, IssueError> {
        let fingerprint = subject.fingerprint(HashAlg::Sha256).to_string();
        let policy = self.policy();
        let (_, matched) = policy.sso().person(&person.name, &person.groups);
        let denied = |reason: String| -> Result<Issued, IssueError> {
            self.audit().append(
                AuditEvent::new("cert.denied")
                    .with("user", person.name.as_str())
                    .with("sso_sub", person.sub.as_str())
                    .with("sso_issuer", person.issuer.as_str())
                    .with("sso_groups", person.groups.clone())
                    .with("subject", fingerprint.as_str())
                    .with("reason", reason.as_str()),
            )?;
            Err(IssueError::Denied(Denial { reason }))
        };
        if let Err(why) = check_person_name(&person.name) {
            return denied(why);
        }
        if person.sub.is_empty()
            || person.sub.len() > MAX_SUB_LEN
            || person
                .sub
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return denied(
                "the identity provider's sub is empty, too long or not printable".into(),
            );
        }
        let now = unix_now();
        let decision = sso_decision(&policy, person, &subject, request, now);
        self.shadow_decision("sso", &person.name, decision.as_ref(), |shadow| {
            sso_decision(shadow, person, &subject, request, now)
        });
        let mut grant = match decision {
            Ok(grant) => grant,
            Err(denial) => return denied(denial.reason),
        };
        if let Some(reason) = self.revoked_subject(&subject, Some(&person.name))? {
            return denied(reason);
        }
        grant.key_id = format!("{} sso-sub={}", grant.key_id, person.sub);
        let spec = CertSpec::from_grant(&grant, subject, now, self.config().clock_skew.as_secs());
        let roles: Vec<&str> = grant.roles.iter().map(|r| r.name.as_str()).collect();
        let details = json!({
            "roles": roles,
            "request": grant.request_id,
            "sso": {
                "issuer": person.issuer,
                "sub": person.sub,
                "groups": person.groups,
                "matched_groups": matched,
            },
            "break_glass": grant.direct,
        });
        let ca = if grant.direct {
            jitssh_core::keys::CaKind::Target
        } else {
            jitssh_core::keys::CaKind::User
        };
        self.issue_signed_by(ca, spec, &person.name, grant.reason.as_deref(), details)
    }
}

/// What `policy` decides for `person` and `request` at `now`: the SSO rules that come from
/// the policy (enrolled names and keys stay enrolled users', roles by group) and then every
/// rule of those roles. Pure, so the shadow policy takes the same decision the same way.
fn sso_decision(
    policy: &Policy,
    person: &SsoPerson,
    subject: &KeyData,
    request: &CertRequest,
    now: u64,
) -> Result<jitssh_core::policy::Grant, Denial> {
    let deny = |reason: String| Err(Denial { reason });
    if policy.user(&person.name).is_some() {
        // One name, one person: an enrolled user's name is never taken over through SSO.
        return deny(format!(
            "{} is the name of an enrolled user in policy.toml; SSO names must differ",
            person.name
        ));
    }
    if policy
        .user_by_key(&PublicKey::new(subject.clone(), ""))
        .is_some()
    {
        return deny(format!(
            "key {} is enrolled for a user; sign in through SSO with another key",
            subject.fingerprint(HashAlg::Sha256)
        ));
    }
    let (user, _) = policy.sso().person(&person.name, &person.groups);
    if user.roles.is_empty() {
        let groups = if person.groups.is_empty() {
            "none".to_string()
        } else {
            person.groups.join(",")
        };
        return deny(format!(
            "{}: no role for your groups at the identity provider ({groups}) in [[sso.groups]]",
            person.name
        ));
    }
    policy.evaluate_for(&user, request, now)
}
