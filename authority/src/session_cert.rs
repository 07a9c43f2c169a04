//! Per-session certificates for the bastion's leg to the target.
//!
//! The bastion never holds a standing credential for targets: for each session it generates a
//! key and asks the CA for a certificate valid a few minutes, for one login, usable only from
//! the bastion's address, whose key id links the person, their certificate serial and the
//! session. The CA re-checks the person's certificate itself, so a bastion cannot mint access
//! that the person's certificate does not grant.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use jitssh_core::cert::{self, CertSpec, Expectations, GrantClaims};
use jitssh_core::ssh_key::Certificate;
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::public::KeyData;
use jitssh_core::unix_now;
use serde_json::json;

use crate::authority::{Authority, IssueError, Issued};

/// Longest lifetime of a session certificate: it only has to outlive the login to the target.
pub const MAX_SESSION_CERT_TTL: Duration = Duration::from_secs(10 * 60);

/// What the bastion asks for.
#[derive(Debug, Clone)]
pub struct SessionCertRequest {
    /// The person's certificate, as presented to the bastion.
    pub user_cert: Certificate,
    /// The person's client address (for the user certificate's `source-address`).
    pub client: Option<IpAddr>,
    /// Remote login on the target.
    pub login: String,
    /// Target name.
    pub target: String,
    /// Session id.
    pub session_id: String,
    /// The session's fresh public key.
    pub subject: KeyData,
    /// The bastion's address as the target sees it (`source-address` of the session cert).
    pub source_address: Option<IpAddr>,
    /// Wanted lifetime (capped at [`MAX_SESSION_CERT_TTL`] and the user cert's expiry).
    pub ttl: Duration,
}

impl Authority {
    /// Checks the person's certificate against the trust model and the grant, then issues the
    /// session certificate.
    pub fn issue_session_cert(
        &self,
        request: &SessionCertRequest,
        requested_by: &str,
    ) -> Result<Issued, IssueError> {
        let now = unix_now();
        let user_cert = &request.user_cert;
        let trusted = [self.keys().user.key_data().clone()];
        let denied = |why: String| -> Result<Issued, IssueError> {
            self.audit_denial(
                requested_by,
                &format!("session certificate for {}: {why}", user_cert.key_id()),
            )?;
            Err(IssueError::Denied(jitssh_core::policy::Denial {
                reason: why,
            }))
        };
        if let Err(rejection) = cert::verify(
            user_cert,
            &Expectations {
                trusted_cas: &trusted,
                cert_type: CertType::User,
                now,
                principal: &request.login,
                peer: request.client,
            },
        ) {
            return denied(rejection.to_string());
        }
        if let Some(why) = self.revoked_reason(user_cert)? {
            return denied(why);
        }
        match GrantClaims::from_certificate(user_cert) {
            Ok(Some(claims)) if claims.allows(&request.login, &request.target) => {}
            Ok(Some(_)) => {
                return denied(format!(
                    "the certificate does not grant {}@{}",
                    request.login, request.target
                ));
            }
            Ok(None) => return denied("the certificate carries no grant for the bastion".into()),
            Err(err) => return denied(err.to_string()),
        }
        let remaining = user_cert.valid_before().saturating_sub(now);
        let ttl = request
            .ttl
            .min(MAX_SESSION_CERT_TTL)
            .as_secs()
            .min(remaining)
            .max(1);
        let mut critical_options = BTreeMap::new();
        if let Some(address) = request.source_address {
            critical_options.insert("source-address".to_string(), address.to_string());
        }
        if let Some(command) = user_cert.critical_options().get("force-command") {
            critical_options.insert("force-command".to_string(), command.clone());
        }
        let extensions = user_cert
            .extensions()
            .iter()
            .filter(|(name, _)| name.starts_with("permit-"))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        let spec = CertSpec {
            cert_type: CertType::User,
            subject: request.subject.clone(),
            key_id: format!(
                "{} session={} serial={}",
                user_cert.key_id(),
                request.session_id,
                user_cert.serial()
            ),
            principals: vec![request.login.clone()],
            valid_after: now.saturating_sub(self.config().clock_skew.as_secs()),
            valid_before: now + ttl,
            critical_options,
            extensions,
        };
        self.issue(
            spec,
            requested_by,
            None,
            json!({
                "session": request.session_id,
                "user_serial": user_cert.serial(),
                "user_key_id": user_cert.key_id(),
                "target": request.target,
            }),
        )
    }
}
