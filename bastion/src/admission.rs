//! Who gets in: every check of the trust model applied to a user certificate for one
//! `LOGIN@TARGET`, as a pure function (the caller supplies the clock and the peer). Revocation
//! needs I/O, so the caller asks the CA after [`admit`] and turns the verdict into a refusal
//! with [`revocation_verdict`].
//!
//! russh only checks a certificate's signature against the CA key embedded in it; trust in
//! that CA, the type, the validity window (russh's own check is patched out so the person
//! hears "expired at ...", see vendor/russh/PATCHED.md), principals, critical options,
//! revocation and the grant's target patterns are all decided here.

use std::net::IpAddr;

use jitssh_core::cert::{self, Expectations, GrantClaims, Rejection};
use jitssh_core::ssh_key::Certificate;
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::public::KeyData;

use crate::config::Forwarding;
use crate::login::{BadUserString, LoginTarget};
use crate::names::printable;

/// Why a login was refused. The message is shown to the person and written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The user string is not `LOGIN@TARGET`.
    #[error(transparent)]
    UserString(#[from] BadUserString),
    /// A plain public key: this bastion takes certificates only.
    #[error("this bastion accepts certificates only; get one with: ssh -p 2200 <you>@<ca> cert")]
    PlainKey,
    /// The certificate failed a trust-model check.
    #[error("certificate refused: {0}")]
    Certificate(#[from] Rejection),
    /// The certificate (or its key, or its key id) was revoked.
    #[error("certificate refused: revoked ({0})")]
    Revoked(String),
    /// Revocation could not be checked; fail closed.
    #[error("certificate refused: cannot check revocation ({0})")]
    RevocationUnknown(String),
    /// No grant extension, so no target is reachable with it.
    #[error(
        "certificate refused: it carries no grant for this bastion (no {} extension)",
        cert::GRANT_EXTENSION
    )]
    NoGrant,
    /// The grant extension is malformed.
    #[error("certificate refused: {0}")]
    BadGrant(String),
    /// No target by that name is configured.
    #[error("unknown target {0:?}")]
    UnknownTarget(String),
    /// The inner login of a jump connection is not the outer login's person and key.
    #[error(
        "certificate refused: the login through this jump must be {outer:?}'s own certificate (got {inner:?}'s, or another key)"
    )]
    NotSamePerson {
        /// The person of the jump login.
        outer: String,
        /// The person of the inner login.
        inner: String,
    },
    /// `ssh web@bastion` by someone whose grant holds no auditor role.
    #[error("certificate refused: the web console is for auditors (no role with auditor = true)")]
    NotAuditor,
    /// The grant does not let this login reach this target.
    #[error("certificate does not grant login {login:?} on target {target:?}")]
    NotGranted {
        /// The login asked for.
        login: String,
        /// The target asked for.
        target: String,
    },
}

/// A jump login (`ssh -J PERSON@bastion ...`): no target yet; each target is reached by an
/// inner login through it, admitted on its own (see [`same_person`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JumpAdmitted {
    /// The person: the certificate's key id.
    pub person: String,
    /// The certificate's serial.
    pub serial: u64,
    /// The user string: the person's name or one of the certificate's principals.
    pub login: String,
    /// Unix time the certificate expires.
    pub valid_before: u64,
}

/// The person a key id names: its first word (`alice request=7`, `alice break-glass`).
pub fn person_of(cert: &Certificate) -> &str {
    cert.key_id().split_whitespace().next().unwrap_or("")
}

/// Decides whether `cert` admits the jump login `user` (a bare login): every check of
/// [`admit`] that does not depend on a target. The user string must be the person's name
/// (the key id's first word) or one of the certificate's principals.
pub fn admit_jump(
    user: &str,
    cert: &Certificate,
    ctx: &Context<'_>,
) -> Result<JumpAdmitted, Refusal> {
    let login = crate::login::parse_login(user)?;
    let principals = cert.valid_principals();
    // The principal checked is the user string when it is one; the person's own name is
    // accepted too (it is what `ssh -J alice@bastion` says), checked against any principal
    // so that every other part of the check (CA, type, validity, options) still runs.
    let principal = if principals.contains(&login) {
        login.clone()
    } else if login == person_of(cert) {
        principals.first().cloned().unwrap_or_default()
    } else {
        login.clone()
    };
    cert::verify(
        cert,
        &Expectations {
            trusted_cas: ctx.trusted_user_cas,
            cert_type: CertType::User,
            now: ctx.now,
            principal: &principal,
            peer: ctx.peer,
        },
    )?;
    match GrantClaims::from_certificate(cert) {
        Ok(Some(_)) => {}
        Ok(None) => return Err(Refusal::NoGrant),
        Err(err) => return Err(Refusal::BadGrant(err.to_string())),
    }
    Ok(JumpAdmitted {
        person: cert.key_id().to_string(),
        serial: cert.serial(),
        login,
        valid_before: cert.valid_before(),
    })
}

/// The inner login through a jump connection must be the outer login's person with the
/// same key: a jump connection is never a way for one person to carry another's login.
pub fn same_person(outer: &Certificate, inner: &Certificate) -> Result<(), Refusal> {
    if person_of(outer) == person_of(inner) && outer.public_key() == inner.public_key() {
        Ok(())
    } else {
        Err(Refusal::NotSamePerson {
            outer: printable(person_of(outer)),
            inner: printable(person_of(inner)),
        })
    }
}

/// What the certificate allows beyond a plain session, after the bastion's own policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Permissions {
    /// `permit-pty`.
    pub pty: bool,
    /// `permit-port-forwarding` and the bastion allows port forwarding.
    pub port_forwarding: bool,
    /// `permit-agent-forwarding` and the bastion allows agent forwarding.
    pub agent_forwarding: bool,
    /// `permit-X11-forwarding` and the bastion allows X11 forwarding.
    pub x11_forwarding: bool,
}

impl Permissions {
    /// The intersection of the certificate's extensions and the bastion's forwarding policy.
    pub fn of(cert: &Certificate, policy: &Forwarding) -> Permissions {
        let has = |name: &str| cert.extensions().contains_key(name);
        Permissions {
            pty: has("permit-pty"),
            port_forwarding: policy.port && has("permit-port-forwarding"),
            agent_forwarding: policy.agent && has("permit-agent-forwarding"),
            x11_forwarding: policy.x11 && has("permit-X11-forwarding"),
        }
    }
}

/// An admitted login.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// The person: the certificate's key id.
    pub person: String,
    /// The certificate's serial.
    pub serial: u64,
    /// Login and target.
    pub login_target: LoginTarget,
    /// Roles whose grant matched.
    pub roles: Vec<String>,
    /// `force-command` of the certificate, applied to every session channel.
    pub force_command: Option<String>,
    /// Unix time the certificate expires (the session ends then).
    pub valid_before: u64,
    /// What forwarding and pty use is allowed.
    pub permissions: Permissions,
}

/// Everything [`admit`] needs besides the certificate.
pub struct Context<'a> {
    /// Trusted user CA keys.
    pub trusted_user_cas: &'a [KeyData],
    /// Unix time now.
    pub now: u64,
    /// The TCP peer, for `source-address`.
    pub peer: Option<IpAddr>,
    /// The configured name of the target asked for (names match without regard to case),
    /// or `None` if there is no such target. Admission, the grant check, the audit log and
    /// the session index all use the configured name, so `root@WEB01` is `web01` everywhere.
    pub configured_target: &'a dyn Fn(&str) -> Option<String>,
    /// The bastion's forwarding policy.
    pub forwarding: &'a Forwarding,
}

/// Turns the CA's revocation answer into a refusal: `Ok(None)` is "not revoked",
/// `Ok(Some(why))` revoked, and an error (revocation unknown) refuses too: fail closed.
pub fn revocation_verdict<E: std::fmt::Display>(
    answer: Result<Option<String>, E>,
) -> Result<(), Refusal> {
    match answer {
        Ok(None) => Ok(()),
        Ok(Some(why)) => Err(Refusal::Revoked(why)),
        Err(err) => Err(Refusal::RevocationUnknown(err.to_string())),
    }
}

/// Decides whether `cert` admits the user string `user`.
pub fn admit(user: &str, cert: &Certificate, ctx: &Context<'_>) -> Result<Admitted, Refusal> {
    let mut login_target = LoginTarget::parse(user)?;
    cert::verify(
        cert,
        &Expectations {
            trusted_cas: ctx.trusted_user_cas,
            cert_type: CertType::User,
            now: ctx.now,
            principal: &login_target.login,
            peer: ctx.peer,
        },
    )?;
    let claims = match GrantClaims::from_certificate(cert) {
        Ok(Some(claims)) => claims,
        Ok(None) => return Err(Refusal::NoGrant),
        Err(err) => return Err(Refusal::BadGrant(err.to_string())),
    };
    match (ctx.configured_target)(&login_target.target) {
        Some(name) => login_target.target = name,
        None => return Err(Refusal::UnknownTarget(printable(&login_target.target))),
    }
    if !claims.allows(&login_target.login, &login_target.target) {
        return Err(Refusal::NotGranted {
            login: login_target.login,
            target: login_target.target,
        });
    }
    let roles = claims
        .roles
        .iter()
        .filter(|role| {
            role.logins.contains(&login_target.login)
                && jitssh_core::pattern::host_list_matches(&role.hosts, &login_target.target)
        })
        .map(|role| role.name.clone())
        .collect();
    Ok(Admitted {
        person: cert.key_id().to_string(),
        serial: cert.serial(),
        roles,
        force_command: cert.critical_options().get("force-command").cloned(),
        valid_before: cert.valid_before(),
        permissions: Permissions::of(cert, ctx.forwarding),
        login_target,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use jitssh_core::cert::{CertSpec, GRANT_EXTENSION};
    use jitssh_core::keys::CaSigner;
    use jitssh_core::ssh_key::{Algorithm, PrivateKey};
    use std::collections::BTreeMap;

    const NOW: u64 = 1_700_000_000;

    struct Fixture {
        ca: CaSigner,
        subject: KeyData,
    }

    impl Fixture {
        fn new() -> Fixture {
            let key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519).unwrap();
            Fixture {
                ca: CaSigner::generate("user-ca"),
                subject: key.public_key().key_data().clone(),
            }
        }

        fn spec(&self) -> CertSpec {
            let mut extensions = BTreeMap::new();
            extensions.insert("permit-pty".to_string(), String::new());
            extensions.insert("permit-port-forwarding".to_string(), String::new());
            extensions.insert(
                GRANT_EXTENSION.to_string(),
                r#"{"roles":[{"name":"ops","logins":["deploy"],"hosts":["web*","!web-secret"]}]}"#
                    .to_string(),
            );
            CertSpec {
                cert_type: CertType::User,
                subject: self.subject.clone(),
                key_id: "alice".into(),
                principals: vec!["deploy".into(), "alice".into()],
                valid_after: NOW - 60,
                valid_before: NOW + 3600,
                critical_options: BTreeMap::new(),
                extensions,
            }
        }

        fn cert(&self, spec: &CertSpec) -> Certificate {
            spec.sign(7, &self.ca).unwrap()
        }

        fn admit(&self, user: &str, cert: &Certificate) -> Result<Admitted, Refusal> {
            self.admit_with(user, cert, &Forwarding::default())
        }

        fn admit_with(
            &self,
            user: &str,
            cert: &Certificate,
            forwarding: &Forwarding,
        ) -> Result<Admitted, Refusal> {
            let trusted = [self.ca.key_data().clone()];
            let exists = |name: &str| {
                let name = name.to_ascii_lowercase();
                (name.starts_with("web") || name == "db01").then_some(name)
            };
            admit(
                user,
                cert,
                &Context {
                    trusted_user_cas: &trusted,
                    now: NOW,
                    peer: Some("127.0.0.1".parse().unwrap()),
                    configured_target: &exists,
                    forwarding,
                },
            )
        }
    }

    #[test]
    fn admits_a_granted_login() {
        let f = Fixture::new();
        let cert = f.cert(&f.spec());
        let admitted = f.admit("deploy@web01", &cert).unwrap();
        assert_eq!(admitted.person, "alice");
        assert_eq!(admitted.serial, 7);
        assert_eq!(admitted.roles, ["ops"]);
        assert_eq!(admitted.login_target.target, "web01");
        assert!(admitted.permissions.pty);
        // The target as configured, whatever case the person typed.
        let upper = f.admit("deploy@WEB01", &cert).unwrap();
        assert_eq!(upper.login_target.target, "web01");
        assert!(
            !admitted.permissions.port_forwarding,
            "bastion policy is off"
        );
        let on = Forwarding {
            port: true,
            agent: true,
            x11: true,
        };
        let admitted = f.admit_with("deploy@web01", &cert, &on).unwrap();
        assert!(admitted.permissions.port_forwarding);
        assert!(!admitted.permissions.agent_forwarding, "cert lacks it");
    }

    #[test]
    fn refuses_each_trust_model_failure() {
        let f = Fixture::new();
        let cert = f.cert(&f.spec());
        assert!(matches!(
            f.admit("root@web01", &cert),
            Err(Refusal::Certificate(Rejection::PrincipalNotAllowed(..)))
        ));
        assert_eq!(
            f.admit("alice@web01", &cert),
            Err(Refusal::NotGranted {
                login: "alice".into(),
                target: "web01".into()
            })
        );
        assert!(matches!(
            f.admit("deploy@web-secret", &cert),
            Err(Refusal::NotGranted { .. })
        ));
        assert!(matches!(
            f.admit("deploy@db01", &cert),
            Err(Refusal::NotGranted { .. })
        ));
        assert_eq!(
            f.admit("deploy@nowhere", &cert),
            Err(Refusal::UnknownTarget("nowhere".into()))
        );
        assert!(matches!(
            f.admit("deploy", &cert),
            Err(Refusal::UserString(_))
        ));
        assert_eq!(revocation_verdict::<String>(Ok(None)), Ok(()));
        assert_eq!(
            revocation_verdict::<String>(Ok(Some("serial 7".into()))),
            Err(Refusal::Revoked("serial 7".into()))
        );
        assert!(matches!(
            revocation_verdict(Err("store down")),
            Err(Refusal::RevocationUnknown(_))
        ));

        let mut spec = f.spec();
        spec.extensions.remove(GRANT_EXTENSION);
        assert_eq!(
            f.admit("deploy@web01", &f.cert(&spec)),
            Err(Refusal::NoGrant)
        );
        let mut spec = f.spec();
        spec.extensions
            .insert(GRANT_EXTENSION.to_string(), "{not json".to_string());
        assert!(matches!(
            f.admit("deploy@web01", &f.cert(&spec)),
            Err(Refusal::BadGrant(_))
        ));
        let mut spec = f.spec();
        spec.valid_before = NOW - 1;
        spec.valid_after = NOW - 100;
        assert!(matches!(
            f.admit("deploy@web01", &f.cert(&spec)),
            Err(Refusal::Certificate(Rejection::Expired(_)))
        ));
        let mut spec = f.spec();
        spec.cert_type = CertType::Host;
        assert!(matches!(
            f.admit("deploy@web01", &f.cert(&spec)),
            Err(Refusal::Certificate(Rejection::WrongType { .. }))
        ));
        let mut spec = f.spec();
        spec.critical_options
            .insert("source-address".into(), "10.0.0.0/8".into());
        assert!(matches!(
            f.admit("deploy@web01", &f.cert(&spec)),
            Err(Refusal::Certificate(Rejection::SourceAddress(..)))
        ));
        let mut spec = f.spec();
        spec.critical_options
            .insert("verify-required".into(), String::new());
        assert!(matches!(
            f.admit("deploy@web01", &f.cert(&spec)),
            Err(Refusal::Certificate(Rejection::UnknownCriticalOption(_)))
        ));
        let other = Fixture::new();
        let foreign = other.cert(&other.spec());
        assert!(matches!(
            f.admit("deploy@web01", &foreign),
            Err(Refusal::Certificate(Rejection::UntrustedCa(_)))
        ));
    }

    #[test]
    fn force_command_is_carried() {
        let f = Fixture::new();
        let mut spec = f.spec();
        spec.critical_options
            .insert("force-command".into(), "/usr/bin/uptime".into());
        let admitted = f.admit("deploy@web01", &f.cert(&spec)).unwrap();
        assert_eq!(admitted.force_command.as_deref(), Some("/usr/bin/uptime"));
    }

    fn admit_jump_as(
        f: &Fixture,
        user: &str,
        cert: &Certificate,
        now: u64,
    ) -> Result<JumpAdmitted, Refusal> {
        let trusted = [f.ca.key_data().clone()];
        let none = |_: &str| None;
        admit_jump(
            user,
            cert,
            &Context {
                trusted_user_cas: &trusted,
                now,
                peer: Some("127.0.0.1".parse().unwrap()),
                configured_target: &none,
                forwarding: &Forwarding::default(),
            },
        )
    }

    #[test]
    fn a_jump_login_is_the_person_or_a_principal_and_passes_every_other_check() {
        let f = Fixture::new();
        let mut spec = f.spec();
        spec.principals = vec!["deploy".into()];
        let cert = f.cert(&spec);
        assert_eq!(
            admit_jump_as(&f, "alice", &cert, NOW).unwrap().person,
            "alice"
        );
        assert_eq!(
            admit_jump_as(&f, "deploy", &cert, NOW).unwrap().login,
            "deploy"
        );
        assert!(matches!(
            admit_jump_as(&f, "mallory", &cert, NOW),
            Err(Refusal::Certificate(Rejection::PrincipalNotAllowed(..)))
        ));
        assert!(matches!(
            admit_jump_as(&f, "alice", &cert, NOW + 7200),
            Err(Refusal::Certificate(Rejection::Expired(_)))
        ));
        let other_ca = CaSigner::generate("other");
        let foreign = spec.sign(7, &other_ca).unwrap();
        assert!(matches!(
            admit_jump_as(&f, "alice", &foreign, NOW),
            Err(Refusal::Certificate(Rejection::UntrustedCa(_)))
        ));
        spec.extensions.remove(GRANT_EXTENSION);
        assert_eq!(
            admit_jump_as(&f, "alice", &f.cert(&spec), NOW),
            Err(Refusal::NoGrant)
        );
    }

    #[test]
    fn the_inner_login_must_be_the_same_person_and_key() {
        let f = Fixture::new();
        let alice = f.cert(&f.spec());
        let renewed = {
            let mut spec = f.spec();
            spec.key_id = "alice request=9".into();
            f.cert(&spec)
        };
        assert_eq!(same_person(&alice, &renewed), Ok(()));
        let mut bob_spec = f.spec();
        bob_spec.key_id = "bob".into();
        assert!(matches!(
            same_person(&alice, &f.cert(&bob_spec)),
            Err(Refusal::NotSamePerson { .. })
        ));
        let other_key = Fixture::new();
        let mut spec = other_key.spec();
        spec.key_id = "alice".into();
        let same_name_other_key = spec.sign(8, &f.ca).unwrap();
        assert!(matches!(
            same_person(&alice, &same_name_other_key),
            Err(Refusal::NotSamePerson { .. })
        ));
    }
}
