//! Access policy: who may get which certificate, and why a request was refused.
//!
//! The policy file lists roles (what a certificate may allow) and users (who they are, by
//! their SSH public keys, and which roles they hold). [`Policy::evaluate`] is a pure function
//! from (user, request, now) to a [`Grant`] or a [`Denial`]: no I/O, so every rule can be tested
//! in isolation and `cert --dry-run` can show exactly which rule decided each part.
//!
//! Safe defaults: a role must name at least one login (never an empty principal list, which
//! OpenSSH would treat as "any principal"), the most restrictive value wins when several roles
//! combine, and anything ambiguous is a denial that says how to disambiguate.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::{self, ConfigError};
use crate::duration::HumanDuration;
use crate::hours::AllowedHours;
use crate::ssh_key::{HashAlg, PublicKey};

pub mod host_tokens;
pub mod workloads;
pub use workloads::WorkloadRule;

/// The extensions OpenSSH's `ssh-keygen` puts in a user certificate by default.
pub const DEFAULT_USER_EXTENSIONS: [&str; 5] = [
    "permit-X11-forwarding",
    "permit-agent-forwarding",
    "permit-port-forwarding",
    "permit-pty",
    "permit-user-rc",
];

/// SSH user names the CA API gives a fixed meaning (`host` for host enrolment and renewal,
/// `bastion` for per-session certificates, `sso` for sign-in at the identity provider,
/// `workload` for certificates by token, `web` for auditors' sign-in to the bastion's web
/// console), so no policy user may take them.
pub const RESERVED_USER_NAMES: [&str; 5] = ["host", "bastion", "sso", "workload", "web"];

/// Longest reason text we record; reasons go into audit records and certificate key ids.
pub const MAX_REASON_LEN: usize = 256;

/// Longest lifetime of a direct (break-glass) certificate, whatever the role allows: it
/// walks around the bastion's recording, so it should outlive the outage by little.
pub const MAX_DIRECT_TTL: Duration = Duration::from_secs(60 * 60);

/// Marks direct (break-glass) certificates: in their key id, audit records and listings.
pub const BREAK_GLASS: &str = "break-glass";

/// Longest principal (login) we accept, as OpenSSH bounds user names too.
pub const MAX_PRINCIPAL_LEN: usize = 256;

/// The policy file as written (`policy.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    defaults: Defaults,
    #[serde(default)]
    roles: Vec<Role>,
    #[serde(default)]
    users: Vec<UserFile>,
    #[serde(default)]
    sso: sso::SsoFile,
    #[serde(default)]
    workloads: Vec<WorkloadRule>,
    #[serde(default)]
    hosts_by_token: Vec<host_tokens::HostTokenRule>,
}

/// Settings that apply when a role does not say otherwise.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Extensions of user certificates (default: OpenSSH's usual `permit-*` set).
    #[serde(default = "default_extensions")]
    pub extensions: Vec<String>,
    /// TTL of a role that sets no `default_ttl` (capped by its `max_ttl`).
    #[serde(default = "default_ttl")]
    pub default_ttl: HumanDuration,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            extensions: default_extensions(),
            default_ttl: default_ttl(),
        }
    }
}

fn default_extensions() -> Vec<String> {
    DEFAULT_USER_EXTENSIONS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

fn default_certificates_per_approval() -> u32 {
    1
}

fn default_ttl() -> HumanDuration {
    HumanDuration::from_secs(3600)
}

/// A role: the logins (principals) a certificate may carry, the targets they reach, and the
/// conditions of issuance.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Role {
    /// Unique role name.
    pub name: String,
    /// Remote logins (certificate principals). `{user}` expands to the user's name.
    pub logins: Vec<String>,
    /// Target name patterns the bastion lets these logins reach (`web*`, `!web-secret`).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Longest certificate lifetime this role allows.
    pub max_ttl: HumanDuration,
    /// Lifetime when the request names none (default: `[defaults].default_ttl`, capped).
    #[serde(default)]
    pub default_ttl: Option<HumanDuration>,
    /// Certificate extensions (default: `[defaults].extensions`).
    #[serde(default)]
    pub extensions: Option<Vec<String>>,
    /// Forced command (critical option `force-command`).
    #[serde(default)]
    pub force_command: Option<String>,
    /// Allowed client addresses (critical option `source-address`), CIDR or address.
    #[serde(default)]
    pub source_address: Option<Vec<String>>,
    /// Requests must give a reason (ticket, incident).
    #[serde(default)]
    pub require_reason: bool,
    /// Distinct approvals an access request needs before a certificate is issued.
    #[serde(default)]
    pub approvals: u32,
    /// Roles whose members may approve requests for this role.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Certificates one approved request may mint (default 1, like a one-time grant: a
    /// second certificate needs a second approval).
    #[serde(default = "default_certificates_per_approval")]
    pub certificates_per_approval: u32,
    /// When certificates for this role may be issued and used.
    #[serde(default, skip_serializing)]
    pub allowed_hours: Option<AllowedHours>,
    /// Break-glass: members may ask for a direct certificate (`cert --direct`), signed by the
    /// target CA, that logs straight into targets while the bastion is down. Short (at most
    /// [`MAX_DIRECT_TTL`]), marked `break-glass`, unrecorded by the bastion. Default off.
    #[serde(default)]
    pub direct: bool,
    /// Members may use the auditors' web console (`ssh web@bastion` signs them in): the
    /// certificate's grant says so, so the bastion decides without the policy. Default off.
    #[serde(default)]
    pub auditor: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserFile {
    name: String,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    roles: Vec<String>,
}

/// A person (or automation identity) known to the CA.
#[derive(Debug, Clone)]
pub struct User {
    /// Unique user name; goes into the certificate key id.
    pub name: String,
    /// Keys the user authenticates with.
    pub keys: Vec<PublicKey>,
    /// Names of the roles the user holds.
    pub roles: Vec<String>,
}

/// A validated policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    defaults: Defaults,
    roles: BTreeMap<String, Role>,
    users: BTreeMap<String, User>,
    /// SHA-256 fingerprint of a key -> user name.
    key_owner: HashMap<String, String>,
    /// Roles of people signed in through SSO, by group (`[[sso.groups]]`).
    sso: sso::SsoPolicy,
    /// `[[workloads]]`: tokens that get certificates (see [`workloads`]).
    workloads: Vec<WorkloadRule>,
    /// `[[hosts_by_token]]`: tokens that get host certificates (see [`host_tokens`]).
    hosts_by_token: Vec<host_tokens::HostTokenRule>,
}

/// What a caller asks for. Every field is optional; the policy fills in the rest.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertRequest {
    /// Logins wanted; default: everything the roles allow.
    pub principals: Option<Vec<String>>,
    /// Lifetime wanted; default: the roles' default TTL.
    pub ttl: Option<HumanDuration>,
    /// Why access is needed (ticket, incident).
    pub reason: Option<String>,
    /// Limit the grant to this one role.
    pub role: Option<String>,
    /// An approved access request this certificate is issued under.
    pub approved: Option<ApprovedWindow>,
    /// A direct (break-glass) certificate for the targets: only roles with `direct = true`.
    pub direct: bool,
}

/// An approved just-in-time request: the role it unlocks and the window it is valid in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovedWindow {
    /// Request id; goes into the key id.
    pub request_id: String,
    /// The role the request was approved for.
    pub role: String,
    /// Unix time the approved access ends.
    pub not_after: u64,
    /// The reason given when requesting.
    pub reason: Option<String>,
}

/// One role's share of a grant: what the bastion needs to decide without a database lookup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleGrant {
    /// Role name.
    pub name: String,
    /// Logins this role grants (templates expanded), restricted to the certificate's principals.
    pub logins: Vec<String>,
    /// Target patterns these logins reach.
    pub hosts: Vec<String>,
    /// The role makes its holder an auditor (the bastion's web console); omitted when false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub auditor: bool,
}

/// Which rule decided one part of a grant (for `--dry-run` and audit records).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// The part of the certificate, e.g. `principals`, `ttl`.
    pub part: &'static str,
    /// The value chosen.
    pub value: String,
    /// The rule that chose it.
    pub rule: String,
}

/// What the policy allows for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The user the certificate is for.
    pub user: String,
    /// Roles in effect, with what each grants.
    pub roles: Vec<RoleGrant>,
    /// Certificate principals (logins). Never empty.
    pub principals: Vec<String>,
    /// Certificate lifetime from issuance.
    pub ttl: Duration,
    /// Extensions (names; empty values).
    pub extensions: Vec<String>,
    /// `force-command` critical option.
    pub force_command: Option<String>,
    /// `source-address` critical option (comma-joined in the certificate).
    pub source_address: Option<Vec<String>>,
    /// The reason given, if any.
    pub reason: Option<String>,
    /// The access request this grant is issued under, if any.
    pub request_id: Option<String>,
    /// Certificate key id: names the person (and the request, and `break-glass`).
    pub key_id: String,
    /// A direct (break-glass) certificate for the targets, to be signed by the target CA.
    pub direct: bool,
    /// Which rule decided each part.
    pub trace: Vec<Decision>,
}

/// A refusal, with the reason a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Denial {
    /// One line saying why, e.g. "ttl 5h exceeds max_ttl 1h for role dev".
    pub reason: String,
}

fn deny(reason: impl Into<String>) -> Denial {
    Denial {
        reason: reason.into(),
    }
}

/// Is `name` a valid role or user name (letters, digits, `-`, `_`, `.`)?
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Checks a principal (login or host name) for a certificate: non-empty, bounded, and free of
/// characters that would change its meaning in OpenSSH (commas, whitespace, control characters).
pub fn check_principal(principal: &str) -> Result<(), String> {
    if principal.is_empty() {
        return Err("empty principal".into());
    }
    if principal.len() > MAX_PRINCIPAL_LEN {
        return Err(format!(
            "principal longer than {MAX_PRINCIPAL_LEN} characters"
        ));
    }
    if let Some(bad) = principal
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == ',' || *c == '*' || *c == '?')
    {
        return Err(format!("principal {principal:?} contains {bad:?}"));
    }
    Ok(())
}

/// Checks a `source-address` entry: an IP address or CIDR block.
pub fn check_source_address(entry: &str) -> Result<(), String> {
    if entry.parse::<ipnet::IpNet>().is_ok() || entry.parse::<std::net::IpAddr>().is_ok() {
        Ok(())
    } else {
        Err(format!("{entry:?} is not an IP address or CIDR block"))
    }
}

fn expand_login(template: &str, user: &str) -> String {
    template.replace("{user}", user)
}

impl Policy {
    /// Loads and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates policy text; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Policy, ConfigError> {
        let file: PolicyFile = config::parse_toml(text, origin)?;
        let invalid =
            |key: String, message: String| ConfigError::invalid(origin, text, &key, message);

        let mut roles = BTreeMap::new();
        for (i, role) in file.roles.iter().enumerate() {
            let key = |field: &str| format!("roles[{i}].{field}");
            if !valid_name(&role.name) {
                return Err(invalid(
                    key("name"),
                    format!("invalid role name {:?}", role.name),
                ));
            }
            if role.logins.is_empty() {
                return Err(invalid(
                    key("logins"),
                    "a role must name at least one login (empty principals would allow any)".into(),
                ));
            }
            for login in &role.logins {
                check_principal(&expand_login(login, "user"))
                    .map_err(|why| invalid(key("logins"), why))?;
            }
            if role.max_ttl.as_secs() == 0 {
                return Err(invalid(
                    key("max_ttl"),
                    "max_ttl must be more than 0s".into(),
                ));
            }
            if let Some(default) = role.default_ttl
                && (default > role.max_ttl || default.as_secs() == 0)
            {
                return Err(invalid(
                    key("default_ttl"),
                    format!(
                        "default_ttl {default} must be between 1s and max_ttl {}",
                        role.max_ttl
                    ),
                ));
            }
            for entry in role.source_address.iter().flatten() {
                check_source_address(entry).map_err(|why| invalid(key("source_address"), why))?;
            }
            if role.source_address.as_ref().is_some_and(Vec::is_empty) {
                return Err(invalid(
                    key("source_address"),
                    "source_address is empty".into(),
                ));
            }
            if role.force_command.as_deref().is_some_and(str::is_empty) {
                return Err(invalid(
                    key("force_command"),
                    "force_command is empty".into(),
                ));
            }
            if role.certificates_per_approval == 0 {
                return Err(invalid(
                    key("certificates_per_approval"),
                    "certificates_per_approval must be at least 1".into(),
                ));
            }
            if role.approvals > 0 && role.approvers.is_empty() {
                return Err(invalid(
                    key("approvers"),
                    format!(
                        "role {} needs {} approvals but names no approvers",
                        role.name, role.approvals
                    ),
                ));
            }
            if roles.insert(role.name.clone(), role.clone()).is_some() {
                return Err(invalid(
                    key("name"),
                    format!("duplicate role {:?}", role.name),
                ));
            }
        }
        for (i, role) in file.roles.iter().enumerate() {
            if let Some(unknown) = role.approvers.iter().find(|r| !roles.contains_key(*r)) {
                return Err(invalid(
                    format!("roles[{i}].approvers"),
                    format!("unknown role {unknown:?}"),
                ));
            }
        }

        let mut users = BTreeMap::new();
        let mut key_owner = HashMap::new();
        for (i, user) in file.users.iter().enumerate() {
            let key = |field: &str| format!("users[{i}].{field}");
            if !valid_name(&user.name) {
                return Err(invalid(
                    key("name"),
                    format!("invalid user name {:?}", user.name),
                ));
            }
            if RESERVED_USER_NAMES.contains(&user.name.as_str()) {
                return Err(invalid(
                    key("name"),
                    format!(
                        "user name {:?} is reserved (the CA API's hosts, bastions and SSO sign-ins log in as it)",
                        user.name
                    ),
                ));
            }
            if let Some(unknown) = user.roles.iter().find(|r| !roles.contains_key(*r)) {
                return Err(invalid(key("roles"), format!("unknown role {unknown:?}")));
            }
            let mut keys = Vec::new();
            for (k, line) in user.keys.iter().enumerate() {
                let public = PublicKey::from_openssh(line.trim()).map_err(|err| {
                    invalid(
                        key("keys"),
                        format!(
                            "key {} of user {} is not an OpenSSH public key: {err}",
                            k + 1,
                            user.name
                        ),
                    )
                })?;
                let fingerprint = public.fingerprint(HashAlg::Sha256).to_string();
                if let Some(other) = key_owner.insert(fingerprint.clone(), user.name.clone()) {
                    return Err(invalid(
                        key("keys"),
                        format!(
                            "key {fingerprint} belongs to both {other} and {}",
                            user.name
                        ),
                    ));
                }
                keys.push(public);
            }
            let entry = User {
                name: user.name.clone(),
                keys,
                roles: user.roles.clone(),
            };
            if users.insert(user.name.clone(), entry).is_some() {
                return Err(invalid(
                    key("name"),
                    format!("duplicate user {:?}", user.name),
                ));
            }
        }
        let sso = sso::SsoPolicy::from_file(file.sso, |r| roles.contains_key(r))
            .map_err(|(key, message)| invalid(key, message))?;
        let role_names = roles.keys().map(String::as_str).collect();
        workloads::validate(&file.workloads, &role_names)
            .map_err(|(key, message)| invalid(key, message))?;
        host_tokens::validate(&file.hosts_by_token)
            .map_err(|(key, message)| invalid(key, message))?;
        Ok(Policy {
            defaults: file.defaults,
            roles,
            users,
            key_owner,
            sso,
            workloads: file.workloads,
            hosts_by_token: file.hosts_by_token,
        })
    }

    /// The `[sso]` rules: roles of people signed in through the identity provider.
    pub fn sso(&self) -> &sso::SsoPolicy {
        &self.sso
    }

    /// The user who owns this public key, if any.
    pub fn user_by_key(&self, key: &PublicKey) -> Option<&User> {
        let fingerprint = key.fingerprint(HashAlg::Sha256).to_string();
        self.key_owner
            .get(&fingerprint)
            .and_then(|name| self.users.get(name))
    }

    /// A user by name.
    pub fn user(&self, name: &str) -> Option<&User> {
        self.users.get(name)
    }

    /// A role by name.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// All users.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// All roles.
    pub fn roles(&self) -> impl Iterator<Item = &Role> {
        self.roles.values()
    }

    /// The defaults section.
    pub fn defaults(&self) -> &Defaults {
        &self.defaults
    }

    /// Members of any of these roles (for approvals).
    pub fn members_of<'a>(&'a self, roles: &'a [String]) -> impl Iterator<Item = &'a User> + 'a {
        self.users
            .values()
            .filter(move |u| u.roles.iter().any(|r| roles.contains(r)))
    }

    /// The default TTL of a role: its own, or the policy default capped by its max.
    pub fn default_ttl(&self, role: &Role) -> HumanDuration {
        role.default_ttl
            .unwrap_or(self.defaults.default_ttl)
            .min(role.max_ttl)
    }

    /// The `[[workloads]]` rules, in file order.
    pub fn workloads(&self) -> &[WorkloadRule] {
        &self.workloads
    }

    /// The `[[hosts_by_token]]` rules, in file order.
    pub fn hosts_by_token(&self) -> &[host_tokens::HostTokenRule] {
        &self.hosts_by_token
    }

    /// Decides what certificate `user` may get for `request` at unix time `now`.
    ///
    /// Pure: the same inputs always give the same answer.
    pub fn evaluate(&self, user: &str, request: &CertRequest, now: u64) -> Result<Grant, Denial> {
        let user = self
            .users
            .get(user)
            .ok_or_else(|| deny(format!("unknown user {user:?}")))?;
        self.evaluate_for(user, request, now)
    }

    /// [`Policy::evaluate`] for an identity that is not under `[[users]]`: a person signed in
    /// through SSO (roles from [`SsoPolicy::person`]) or a workload admitted by a
    /// `[[workloads]]` rule (that rule's roles). Every rule of the roles applies the same way.
    pub fn evaluate_for(
        &self,
        user: &User,
        request: &CertRequest,
        now: u64,
    ) -> Result<Grant, Denial> {
        let mut trace = Vec::new();
        let reason = check_reason(request)?;

        let mut candidates = self.candidate_roles(user, request)?;
        if request.direct {
            candidates.retain(|role| role.direct);
            if candidates.is_empty() {
                return Err(deny(match &request.role {
                    Some(role) => format!(
                        "role {role} does not allow direct (break-glass) certificates (direct = true): go through the bastion"
                    ),
                    None => format!(
                        "no role of user {} allows direct (break-glass) certificates (direct = true): go through the bastion",
                        user.name
                    ),
                }));
            }
        }
        let wanted = match &request.principals {
            Some(principals) => {
                if principals.is_empty() {
                    return Err(deny("empty principal list: name at least one login"));
                }
                for principal in principals {
                    check_principal(principal).map_err(deny)?;
                }
                Some(principals.iter().cloned().collect::<BTreeSet<String>>())
            }
            None => None,
        };

        // Roles that grant at least one wanted login; with none named, every candidate.
        let mut effective = Vec::new();
        let mut skipped = Vec::new();
        for role in candidates {
            let logins: Vec<String> = role
                .logins
                .iter()
                .map(|l| expand_login(l, &user.name))
                .collect();
            if let Some(wanted) = &wanted
                && !logins.iter().any(|l| wanted.contains(l))
            {
                continue;
            }
            match self.usable(role, request, reason.is_some(), now) {
                Ok(window_end) => effective.push((role, logins, window_end)),
                Err(why) => skipped.push(why),
            }
        }
        if effective.is_empty() {
            if let Some(why) = skipped.into_iter().next() {
                return Err(why);
            }
            return Err(match &wanted {
                Some(wanted) => deny(format!(
                    "login {} is not granted to {} by any role ({})",
                    wanted.iter().next().map(String::as_str).unwrap_or(""),
                    user.name,
                    self.describe_logins(user)
                )),
                None => deny(format!(
                    "user {} has no role that can issue a certificate",
                    user.name
                )),
            });
        }
        for why in &skipped {
            trace.push(Decision {
                part: "roles",
                value: "skipped".into(),
                rule: why.reason.clone(),
            });
        }

        // Every wanted login must be granted by some effective role.
        let granted: BTreeSet<&String> = effective.iter().flat_map(|(_, l, _)| l.iter()).collect();
        if let Some(wanted) = &wanted
            && let Some(missing) = wanted.iter().find(|w| !granted.contains(w))
        {
            return Err(deny(format!(
                "login {missing} is not granted to {} by any usable role ({})",
                user.name,
                self.describe_logins(user)
            )));
        }
        let principals: Vec<String> = match &wanted {
            Some(wanted) => wanted.iter().cloned().collect(),
            None => granted.iter().map(|s| s.to_string()).collect(),
        };
        let role_names: Vec<&str> = effective.iter().map(|(r, _, _)| r.name.as_str()).collect();
        trace.push(Decision {
            part: "roles",
            value: role_names.join(","),
            rule: match &request.role {
                Some(role) => format!("--role {role}"),
                None => format!("roles of user {} granting the logins", user.name),
            },
        });
        trace.push(Decision {
            part: "principals",
            value: principals.join(","),
            rule: if wanted.is_some() {
                "requested, each granted by a role".into()
            } else {
                "all logins of the roles".into()
            },
        });

        let mut ttl = self.decide_ttl(request, &effective, now, &mut trace)?;
        if request.direct && ttl > MAX_DIRECT_TTL {
            ttl = MAX_DIRECT_TTL;
            trace.push(Decision {
                part: "ttl",
                value: HumanDuration::from_secs(ttl.as_secs()).to_string(),
                rule: "cut to the break-glass maximum".into(),
            });
        }
        let extensions = self.decide_extensions(&effective, &mut trace);
        let force_command = decide_single(
            &effective,
            "force_command",
            |r| r.force_command.clone(),
            &mut trace,
        )?;
        let source_address = decide_single(
            &effective,
            "source_address",
            |r| r.source_address.clone(),
            &mut trace,
        )?;

        let roles = effective
            .iter()
            .map(|(role, logins, _)| RoleGrant {
                name: role.name.clone(),
                logins: logins
                    .iter()
                    .filter(|l| principals.contains(l))
                    .cloned()
                    .collect(),
                hosts: role.hosts.clone(),
                auditor: role.auditor,
            })
            .collect();
        let request_id = request.approved.as_ref().map(|a| a.request_id.clone());
        let mut key_id = match &request_id {
            Some(id) => format!("{} request={id}", user.name),
            None => user.name.clone(),
        };
        if request.direct {
            key_id.push(' ');
            key_id.push_str(BREAK_GLASS);
            trace.push(Decision {
                part: "signed by",
                value: "target CA".into(),
                rule: "--direct (break-glass), allowed by direct = true".into(),
            });
        }
        Ok(Grant {
            user: user.name.clone(),
            roles,
            principals,
            ttl,
            extensions,
            force_command,
            source_address,
            reason,
            request_id,
            key_id,
            direct: request.direct,
            trace,
        })
    }

    /// The roles a request may draw on: the user's, narrowed by `--role` or an approval.
    fn candidate_roles(&self, user: &User, request: &CertRequest) -> Result<Vec<&Role>, Denial> {
        let only = match (&request.role, &request.approved) {
            (Some(asked), Some(approved)) if *asked != approved.role => {
                return Err(deny(format!(
                    "request {} was approved for role {}, not {asked}",
                    approved.request_id, approved.role
                )));
            }
            (_, Some(approved)) => Some(&approved.role),
            (Some(asked), None) => Some(asked),
            (None, None) => None,
        };
        if let Some(only) = only
            && !user.roles.contains(only)
        {
            return Err(deny(format!(
                "user {} does not have role {only}",
                user.name
            )));
        }
        Ok(user
            .roles
            .iter()
            .filter(|r| only.is_none_or(|o| o == *r))
            .filter_map(|r| self.roles.get(r))
            .collect())
    }

    /// Can this role issue now? Returns the end of its allowed window (if limited).
    fn usable(
        &self,
        role: &Role,
        request: &CertRequest,
        has_reason: bool,
        now: u64,
    ) -> Result<Option<u64>, Denial> {
        let approved_for_role = request.approved.as_ref().filter(|a| a.role == role.name);
        if role.approvals > 0 && approved_for_role.is_none() {
            return Err(deny(format!(
                "role {} requires an approved access request ({} approval{} from {}): run `request --role {} --ttl D --reason TEXT`",
                role.name,
                role.approvals,
                if role.approvals == 1 { "" } else { "s" },
                role.approvers.join(", "),
                role.name
            )));
        }
        if role.require_reason && !has_reason {
            return Err(deny(format!(
                "role {} requires a reason (--reason TEXT)",
                role.name
            )));
        }
        let mut end = None;
        if let Some(hours) = &role.allowed_hours {
            match hours.end_if_inside(now) {
                Some(window_end) => end = Some(window_end),
                None => {
                    return Err(deny(format!(
                        "role {} may only be used during {hours}",
                        role.name
                    )));
                }
            }
        }
        if let Some(approved) = approved_for_role {
            if approved.not_after <= now {
                return Err(deny(format!("request {} has expired", approved.request_id)));
            }
            end = Some(end.map_or(approved.not_after, |e: u64| e.min(approved.not_after)));
        }
        Ok(end)
    }

    fn decide_ttl(
        &self,
        request: &CertRequest,
        effective: &[(&Role, Vec<String>, Option<u64>)],
        now: u64,
        trace: &mut Vec<Decision>,
    ) -> Result<Duration, Denial> {
        let (tightest, max_ttl) = effective
            .iter()
            .map(|(role, _, _)| (role, role.max_ttl))
            .min_by_key(|(_, ttl)| *ttl)
            .ok_or_else(|| deny("no role in effect"))?;
        let mut ttl = match request.ttl {
            Some(ttl) if ttl.as_secs() == 0 => return Err(deny("ttl must be more than 0s")),
            Some(ttl) if ttl > max_ttl => {
                return Err(deny(format!(
                    "ttl {ttl} exceeds max_ttl {max_ttl} for role {}",
                    tightest.name
                )));
            }
            Some(ttl) => {
                trace.push(Decision {
                    part: "ttl",
                    value: ttl.to_string(),
                    rule: format!(
                        "requested, within max_ttl {max_ttl} of role {}",
                        tightest.name
                    ),
                });
                ttl.as_secs()
            }
            None => {
                let (role, ttl) = effective
                    .iter()
                    .map(|(role, _, _)| (role, self.default_ttl(role)))
                    .min_by_key(|(_, ttl)| *ttl)
                    .ok_or_else(|| deny("no role in effect"))?;
                trace.push(Decision {
                    part: "ttl",
                    value: ttl.to_string(),
                    rule: format!("default_ttl of role {}", role.name),
                });
                ttl.as_secs()
            }
        };
        let window_end = effective.iter().filter_map(|(_, _, end)| *end).min();
        if let Some(end) = window_end {
            let left = end.saturating_sub(now);
            if left < ttl {
                ttl = left;
                trace.push(Decision {
                    part: "ttl",
                    value: HumanDuration::from_secs(left).to_string(),
                    rule: "cut to the end of the allowed hours or approved window".into(),
                });
            }
        }
        if ttl == 0 {
            return Err(deny("the allowed window has ended"));
        }
        Ok(Duration::from_secs(ttl))
    }

    fn decide_extensions(
        &self,
        effective: &[(&Role, Vec<String>, Option<u64>)],
        trace: &mut Vec<Decision>,
    ) -> Vec<String> {
        let mut result: Option<BTreeSet<String>> = None;
        for (role, _, _) in effective {
            let set: BTreeSet<String> = role
                .extensions
                .clone()
                .unwrap_or_else(|| self.defaults.extensions.clone())
                .into_iter()
                .collect();
            result = Some(match result {
                None => set,
                Some(prev) => prev.intersection(&set).cloned().collect(),
            });
        }
        let extensions: Vec<String> = result.unwrap_or_default().into_iter().collect();
        trace.push(Decision {
            part: "extensions",
            value: extensions.join(","),
            rule: if effective.len() > 1 {
                "extensions every role allows".into()
            } else {
                "role extensions (or [defaults].extensions)".into()
            },
        });
        extensions
    }

    fn describe_logins(&self, user: &User) -> String {
        let parts: Vec<String> = user
            .roles
            .iter()
            .filter_map(|r| self.roles.get(r))
            .map(|r| {
                let logins: Vec<String> = r
                    .logins
                    .iter()
                    .map(|l| expand_login(l, &user.name))
                    .collect();
                format!("{}: {}", r.name, logins.join(", "))
            })
            .collect();
        if parts.is_empty() {
            "no roles".into()
        } else {
            parts.join("; ")
        }
    }
}

fn check_reason(request: &CertRequest) -> Result<Option<String>, Denial> {
    let reason = request
        .reason
        .clone()
        .or_else(|| request.approved.as_ref().and_then(|a| a.reason.clone()));
    match reason {
        None => Ok(None),
        Some(reason) if reason.trim().is_empty() => Err(deny("the reason is empty")),
        Some(reason) if reason.len() > MAX_REASON_LEN => Err(deny(format!(
            "the reason is longer than {MAX_REASON_LEN} characters"
        ))),
        Some(reason) if reason.chars().any(char::is_control) => {
            Err(deny("the reason contains control characters"))
        }
        Some(reason) => Ok(Some(reason.trim().to_string())),
    }
}

/// A setting that must be the same for every role that sets it (force_command,
/// source_address): a role that sets it restricts the whole certificate; two roles that set
/// different values cannot share one certificate.
fn decide_single<T: Clone + PartialEq + std::fmt::Debug>(
    effective: &[(&Role, Vec<String>, Option<u64>)],
    part: &'static str,
    value_of: impl Fn(&Role) -> Option<T>,
    trace: &mut Vec<Decision>,
) -> Result<Option<T>, Denial> {
    let mut chosen: Option<(T, &str)> = None;
    for (role, _, _) in effective {
        if let Some(value) = value_of(role) {
            match &chosen {
                Some((prev, prev_role)) if *prev != value => {
                    return Err(deny(format!(
                        "roles {prev_role} and {} set different {part}; choose one with --role",
                        role.name
                    )));
                }
                Some(_) => {}
                None => chosen = Some((value, &role.name)),
            }
        }
    }
    if let Some((value, role)) = &chosen {
        trace.push(Decision {
            part,
            value: format!("{value:?}"),
            rule: format!("role {role}"),
        });
    }
    Ok(chosen.map(|(value, _)| value))
}

pub mod shadow;
pub mod sso;
#[cfg(test)]
mod tests;

pub use sso::SsoPolicy;
