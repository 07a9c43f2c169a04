//! Building, signing and verifying OpenSSH certificates.
//!
//! Signing turns a policy [`Grant`] (or an operator's explicit request) into a certificate.
//! Verification is the bastion's half of the trust model: russh only checks a certificate's
//! signature against the CA key *embedded in it*, so trust, type, validity, principals,
//! `source-address` and critical options are all decided here, as a pure function.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::keys::CaSigner;
use crate::policy::{Grant, RoleGrant};
use crate::ssh_key::certificate::{Builder, CertType};
use crate::ssh_key::public::KeyData;
use crate::ssh_key::{Certificate, HashAlg};

/// The extension carrying the roles and target patterns of a user certificate, so the bastion
/// can decide which targets a login reaches without asking the CA. sshd ignores it.
pub const GRANT_EXTENSION: &str = "jit-grant@jitssh";

/// Critical options this project understands; a certificate with any other is refused.
pub const KNOWN_CRITICAL_OPTIONS: [&str; 2] = ["force-command", "source-address"];

/// What a user certificate's grant extension says: which logins reach which targets, by role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantClaims {
    /// One entry per role in effect.
    pub roles: Vec<RoleGrant>,
}

impl GrantClaims {
    /// Is `login` on `target` allowed by some role of this grant?
    pub fn allows(&self, login: &str, target: &str) -> bool {
        self.roles.iter().any(|role| {
            role.logins.iter().any(|l| l == login)
                && crate::pattern::host_list_matches(&role.hosts, target)
        })
    }

    /// Reads the claims from a certificate; `Ok(None)` when it has no grant extension.
    pub fn from_certificate(cert: &Certificate) -> Result<Option<GrantClaims>, CertError> {
        match cert.extensions().get(GRANT_EXTENSION) {
            None => Ok(None),
            Some(value) => serde_json::from_str(value)
                .map(Some)
                .map_err(|err| CertError::BadGrant(err.to_string())),
        }
    }
}

/// Everything a certificate will say, before it gets a serial number and a signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertSpec {
    /// User or host certificate.
    pub cert_type: CertType,
    /// The key being certified.
    pub subject: KeyData,
    /// Key id: names the person or host; sshd logs it.
    pub key_id: String,
    /// Logins (user certs) or host names (host certs). Never empty.
    pub principals: Vec<String>,
    /// Unix time the certificate starts being valid.
    pub valid_after: u64,
    /// Unix time it stops being valid (exclusive).
    pub valid_before: u64,
    /// Critical options such as `force-command` and `source-address`.
    pub critical_options: BTreeMap<String, String>,
    /// Extensions such as `permit-pty` and [`GRANT_EXTENSION`].
    pub extensions: BTreeMap<String, String>,
}

/// Errors building, signing or reading certificates.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// A certificate must name at least one principal; OpenSSH treats none as "anyone".
    #[error("refusing to sign a certificate with no principals")]
    EmptyPrincipals,
    /// A principal is malformed.
    #[error("invalid principal: {0}")]
    BadPrincipal(String),
    /// The validity window is empty or reversed.
    #[error("invalid validity: valid_before {before} is not after valid_after {after}")]
    BadValidity {
        /// Start.
        after: u64,
        /// End.
        before: u64,
    },
    /// The grant extension could not be read.
    #[error("malformed {GRANT_EXTENSION} extension: {0}")]
    BadGrant(String),
    /// The ssh-key library refused the certificate.
    #[error("cannot build certificate: {0}")]
    Build(#[from] crate::ssh_key::Error),
}

impl CertSpec {
    /// The user certificate a policy grant allows, valid from `now - skew` for the grant's TTL.
    pub fn from_grant(grant: &Grant, subject: KeyData, now: u64, skew: u64) -> CertSpec {
        let mut critical_options = BTreeMap::new();
        if let Some(command) = &grant.force_command {
            critical_options.insert("force-command".to_string(), command.clone());
        }
        if let Some(addresses) = &grant.source_address {
            critical_options.insert("source-address".to_string(), addresses.join(","));
        }
        let mut extensions: BTreeMap<String, String> = grant
            .extensions
            .iter()
            .map(|name| split_extension(name))
            .collect();
        let claims = GrantClaims {
            roles: grant.roles.clone(),
        };
        if let Ok(json) = serde_json::to_string(&claims) {
            extensions.insert(GRANT_EXTENSION.to_string(), json);
        }
        CertSpec {
            cert_type: CertType::User,
            subject,
            key_id: grant.key_id.clone(),
            principals: grant.principals.clone(),
            valid_after: now.saturating_sub(skew),
            valid_before: now.saturating_add(grant.ttl.as_secs()),
            critical_options,
            extensions,
        }
    }

    /// Signs the certificate with `ca` under `serial`.
    pub fn sign(&self, serial: u64, ca: &CaSigner) -> Result<Certificate, CertError> {
        if self.principals.is_empty() {
            return Err(CertError::EmptyPrincipals);
        }
        for principal in &self.principals {
            crate::policy::check_principal(principal).map_err(CertError::BadPrincipal)?;
        }
        if self.valid_before <= self.valid_after {
            return Err(CertError::BadValidity {
                after: self.valid_after,
                before: self.valid_before,
            });
        }
        let mut nonce = [0u8; Builder::RECOMMENDED_NONCE_SIZE];
        rand::fill(&mut nonce);
        let mut builder = Builder::new(
            nonce.to_vec(),
            self.subject.clone(),
            self.valid_after,
            self.valid_before,
        )?;
        builder.serial(serial)?;
        builder.cert_type(self.cert_type)?;
        builder.key_id(self.key_id.clone())?;
        for principal in &self.principals {
            builder.valid_principal(principal.clone())?;
        }
        for (name, value) in &self.critical_options {
            builder.critical_option(name.clone(), value.clone())?;
        }
        for (name, value) in &self.extensions {
            builder.extension(name.clone(), value.clone())?;
        }
        Ok(builder.sign(ca)?)
    }
}

/// `name=value` → (name, value); `name` → (name, "").
pub fn split_extension(text: &str) -> (String, String) {
    match text.split_once('=') {
        Some((name, value)) => (name.to_string(), value.to_string()),
        None => (text.to_string(), String::new()),
    }
}

/// What the verifier must see for a certificate to be accepted.
#[derive(Debug, Clone)]
pub struct Expectations<'a> {
    /// The CA keys trusted for this certificate type.
    pub trusted_cas: &'a [KeyData],
    /// User or host.
    pub cert_type: CertType,
    /// Unix time now.
    pub now: u64,
    /// The login (user certs) or host name (host certs) being asked for.
    pub principal: &'a str,
    /// The connecting peer's address, for `source-address`.
    pub peer: Option<IpAddr>,
}

/// Why a certificate was refused. Messages are for the log and the person refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Signed by a CA we do not trust for this kind of certificate.
    #[error("certificate signed by an untrusted CA ({0})")]
    UntrustedCa(String),
    /// The signature does not verify.
    #[error("certificate signature is invalid")]
    BadSignature,
    /// A host certificate presented as a user certificate, or the reverse.
    #[error("{got} certificate presented where a {expected} certificate is required")]
    WrongType {
        /// Wanted.
        expected: &'static str,
        /// Presented.
        got: &'static str,
    },
    /// Before `valid_after`.
    #[error("certificate is not valid before {}", utc(*.0))]
    NotYetValid(u64),
    /// At or after `valid_before`.
    #[error("certificate expired at {}", utc(*.0))]
    Expired(u64),
    /// No principals: refused rather than read as "anyone".
    #[error("certificate has no principals")]
    NoPrincipals,
    /// The requested login / host name is not among the principals.
    #[error("{0:?} is not a principal of this certificate (principals: {1})")]
    PrincipalNotAllowed(String, String),
    /// A critical option we do not understand.
    #[error("certificate has unsupported critical option {0:?}")]
    UnknownCriticalOption(String),
    /// `source-address` does not include the peer (or the option is malformed).
    #[error("source-address {0:?} does not allow {1}")]
    SourceAddress(String, String),
}

/// Unix seconds as `2026-11-23 18:00:00Z` for refusal messages (the raw number if out of
/// range).
fn utc(unix: u64) -> String {
    i64::try_from(unix)
        .ok()
        .and_then(|secs| chrono::DateTime::from_timestamp(secs, 0))
        .map_or_else(
            || unix.to_string(),
            |t| t.format("%Y-%m-%d %H:%M:%SZ").to_string(),
        )
}

fn type_name(cert_type: CertType) -> &'static str {
    if cert_type.is_host() { "host" } else { "user" }
}

/// Checks a certificate against the trust model (everything but revocation, which needs the
/// KRL or store). Pure: the caller provides the clock and the peer.
pub fn verify(cert: &Certificate, want: &Expectations<'_>) -> Result<(), Rejection> {
    let signer = cert.signature_key().fingerprint(HashAlg::Sha256);
    if !want
        .trusted_cas
        .iter()
        .any(|ca| ca.fingerprint(HashAlg::Sha256) == signer)
    {
        return Err(Rejection::UntrustedCa(signer.to_string()));
    }
    cert.verify_signature()
        .map_err(|_| Rejection::BadSignature)?;
    if cert.cert_type() != want.cert_type {
        return Err(Rejection::WrongType {
            expected: type_name(want.cert_type),
            got: type_name(cert.cert_type()),
        });
    }
    if want.now < cert.valid_after() {
        return Err(Rejection::NotYetValid(cert.valid_after()));
    }
    if want.now >= cert.valid_before() {
        return Err(Rejection::Expired(cert.valid_before()));
    }
    let principals = cert.valid_principals();
    if principals.is_empty() {
        return Err(Rejection::NoPrincipals);
    }
    if !principals.iter().any(|p| p == want.principal) {
        return Err(Rejection::PrincipalNotAllowed(
            want.principal.to_string(),
            principals.join(","),
        ));
    }
    for (name, value) in cert.critical_options().iter() {
        match name.as_str() {
            "force-command" => {}
            "source-address" => check_source_address(value, want.peer)?,
            other => return Err(Rejection::UnknownCriticalOption(other.to_string())),
        }
    }
    Ok(())
}

/// Does the comma-separated `source-address` list include `peer`? Malformed lists fail closed.
pub fn check_source_address(list: &str, peer: Option<IpAddr>) -> Result<(), Rejection> {
    let reject = || {
        Rejection::SourceAddress(
            list.to_string(),
            peer.map_or("an unknown address".to_string(), |p| p.to_string()),
        )
    };
    let peer = peer.ok_or_else(reject)?;
    let peer = canonical_ip(peer);
    for entry in list.split(',') {
        let entry = entry.trim();
        let matches = if let Ok(net) = entry.parse::<ipnet::IpNet>() {
            net.contains(&peer)
        } else if let Ok(addr) = entry.parse::<IpAddr>() {
            canonical_ip(addr) == peer
        } else {
            return Err(reject());
        };
        if matches {
            return Ok(());
        }
    }
    Err(reject())
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) compare as the IPv4 address they carry.
fn canonical_ip(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests;
