//! Sign-in at the front door: `ssh web@bastion` with an auditor's certificate prints a
//! one-time URL for the web console. The certificate gets every check of a jump login (CA,
//! type, validity, source address, grant, revocation, see [`crate::admission`]), and its
//! grant must hold a role with `auditor = true`.

use jitssh_core::cert::GrantClaims;
use jitssh_core::ssh_key::Certificate;

use crate::admission::{self, Context, Refusal};

/// The reserved user name that signs in to the web console.
pub const SIGNIN_USER: &str = "web";

/// An auditor admitted at `ssh web@bastion`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebAdmitted {
    /// The certificate signed in with (its revocation is checked on every page).
    pub cert: Certificate,
    /// The person (the key id's first word).
    pub person: String,
    /// The certificate's serial.
    pub serial: u64,
    /// Unix time the certificate expires: the browser session ends then too.
    pub valid_before: u64,
}

/// Decides whether `cert` may sign in to the web console.
pub fn admit_auditor(
    _user: &str,
    cert: &Certificate,
    ctx: &Context<'_>,
) -> Result<WebAdmitted, Refusal> {
    let person = admission::person_of(cert).to_string();
    let admitted = admission::admit_jump(&person, cert, ctx)?;
    let auditor = match GrantClaims::from_certificate(cert) {
        Ok(Some(claims)) => claims.roles.iter().any(|r| r.auditor),
        Ok(None) => return Err(Refusal::NoGrant),
        Err(err) => return Err(Refusal::BadGrant(err.to_string())),
    };
    if !auditor {
        return Err(Refusal::NotAuditor);
    }
    Ok(WebAdmitted {
        cert: cert.clone(),
        person,
        serial: admitted.serial,
        valid_before: admitted.valid_before,
    })
}

/// What `ssh web@bastion` prints: the one-time URL, or why there is none.
pub fn message(console: Option<&super::Console>, admitted: &WebAdmitted) -> (String, u32) {
    let Some(console) = console else {
        return (
            "bastion: the web console is off ([web] listen is not set)\r\n".into(),
            1,
        );
    };
    match console.sessions.mint_link(
        &admitted.person,
        admitted.valid_before,
        jitssh_core::unix_now(),
        super::Credential::Certificate(std::sync::Arc::new(admitted.cert.clone())),
    ) {
        Some(link) => (
            format!(
                "{}/signin/{link}\r\n(valid once, for {} seconds)\r\n",
                console.settings.public_url,
                super::auth::LINK_TTL.as_secs()
            ),
            0,
        ),
        None => (
            "bastion: too many sign-ins waiting; try again in a minute\r\n".into(),
            1,
        ),
    }
}
