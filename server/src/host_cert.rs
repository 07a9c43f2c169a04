//! A server's own host certificate: what it says, and its renewal at half-life.
//!
//! Both servers (the CA API and the bastion) present a host certificate so clients that trust
//! the host CA (`@cert-authority` in known_hosts) connect without trust on first use. The
//! certificate is short (a week), so a long-running server renews it at half its remaining life;
//! a failed renewal keeps the old certificate in use and is retried a minute later.

use std::collections::BTreeMap;
use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use jitssh_core::cert::CertSpec;
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::{Certificate, PrivateKey};
use jitssh_core::unix_now;

/// Lifetime of a server's own host certificate.
pub const HOST_CERT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// The certificate a server asks its CA for: a host certificate for `key` naming `names`,
/// valid from `clock_skew` ago for [`HOST_CERT_TTL`], identified by `key_id` (the program).
pub fn host_cert_spec(
    key: &PrivateKey,
    key_id: &str,
    names: &[String],
    clock_skew: Duration,
) -> CertSpec {
    let now = unix_now();
    CertSpec {
        cert_type: CertType::Host,
        subject: key.public_key().key_data().clone(),
        key_id: key_id.to_string(),
        principals: names.to_vec(),
        valid_after: now.saturating_sub(clock_skew.as_secs()),
        valid_before: now + HOST_CERT_TTL.as_secs(),
        critical_options: BTreeMap::new(),
        extensions: BTreeMap::new(),
    }
}

/// How long to wait before renewing a certificate valid until `valid_before`: half its
/// remaining life, at least a minute.
pub fn renewal_delay(valid_before: u64) -> Duration {
    Duration::from_secs((valid_before.saturating_sub(unix_now()) / 2).max(60))
}

/// Renews a certificate valid until `valid_before` at half its remaining life, for ever:
/// `obtain` asks the CA (embedded or remote) for a fresh one and `install` puts it in use for
/// new connections. `what` names the certificate in the log. A failure is logged and retried a
/// minute later; the certificate in use stays meanwhile. Its expiry is the gauge
/// `jitssh_host_certificate_expiry_timestamp_seconds{server}`, so monitoring sees a renewal
/// that keeps failing long before clients do.
pub async fn renew_at_half_life<F, Fut, E>(
    mut valid_before: u64,
    server: &'static str,
    what: &str,
    mut obtain: F,
    mut install: impl FnMut(Certificate),
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Certificate, E>>,
    E: Display,
{
    let expiry = metrics::gauge!(jitssh_core::metrics::names::HOST_CERT_EXPIRY, "server" => server);
    expiry.set(valid_before as f64);
    loop {
        tokio::time::sleep(renewal_delay(valid_before)).await;
        match obtain().await {
            Ok(cert) => {
                valid_before = cert.valid_before();
                expiry.set(valid_before as f64);
                install(cert);
                tracing::info!("renewed {what}");
            }
            Err(err) => tracing::error!("cannot renew {what}: {err}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_waits_half_the_remaining_life_and_at_least_a_minute() {
        let now = unix_now();
        assert_eq!(renewal_delay(now + 7200).as_secs().abs_diff(3600), 0);
        assert_eq!(renewal_delay(now + 10), Duration::from_secs(60));
        assert_eq!(renewal_delay(0), Duration::from_secs(60));
    }

    #[test]
    fn the_spec_is_a_host_certificate_for_the_key_and_names() {
        let key = PrivateKey::random(&mut rand::rng(), jitssh_core::ssh_key::Algorithm::Ed25519)
            .expect("a fresh ed25519 key");
        let names = vec!["bastion.example".to_string()];
        let spec = host_cert_spec(&key, "ssh-bastion", &names, Duration::from_secs(60));
        assert_eq!(spec.cert_type, CertType::Host);
        assert_eq!(spec.principals, names);
        assert_eq!(spec.key_id, "ssh-bastion");
        assert_eq!(
            spec.valid_before - spec.valid_after,
            HOST_CERT_TTL.as_secs() + 60
        );
        assert_eq!(&spec.subject, key.public_key().key_data());
    }
}
