//! The bastion's own host certificate, from the embedded CA's host CA: clients that trust the
//! host CA (`@cert-authority` in known_hosts) reach the bastion without trust on first use.
//! Issued at start for the configured `names`, renewed at half-life while serving.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jitssh_shared::cert::CertSpec;
use jitssh_shared::ssh_key::certificate::CertType;
use jitssh_shared::ssh_key::{Certificate, PrivateKey};
use jitssh_shared::unix_now;
use russh::server::Config;
use serde_json::json;
use ssh_ca::authority::{Authority, IssueError};

/// Lifetime of the bastion's host certificate.
pub const HOST_CERT_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

/// Issues a host certificate for `key` naming `names`, recorded and audited by the CA.
pub fn issue(
    authority: &Authority,
    key: &PrivateKey,
    names: &[String],
) -> Result<Certificate, IssueError> {
    let now = unix_now();
    let spec = CertSpec {
        cert_type: CertType::Host,
        subject: key.public_key().key_data().clone(),
        key_id: "ssh-bastion".to_string(),
        principals: names.to_vec(),
        valid_after: now.saturating_sub(authority.config().clock_skew.as_secs()),
        valid_before: now + HOST_CERT_TTL.as_secs(),
        critical_options: BTreeMap::new(),
        extensions: BTreeMap::new(),
    };
    Ok(authority
        .issue(
            spec,
            "ssh-bastion",
            None,
            json!({ "bastion_host_cert": true }),
        )?
        .certificate)
}

/// How long to wait before renewing a certificate valid until `valid_before`: half its
/// remaining life, at least a minute.
fn renewal_delay(valid_before: u64) -> Duration {
    Duration::from_secs((valid_before.saturating_sub(unix_now()) / 2).max(60))
}

/// Renews the certificate at half its remaining life with `obtain` (the embedded CA, or the
/// remote CA's API) and swaps a configuration built with it (by `build`) into `config`, which
/// new connections use. A failure is logged and retried a minute later; the old certificate
/// stays in use meanwhile.
pub async fn renew<F, Fut>(
    current: Certificate,
    obtain: F,
    config: Arc<RwLock<Arc<Config>>>,
    build: impl Fn(Certificate) -> Config + Send + 'static,
) where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<Certificate, String>> + Send,
{
    let mut valid_before = current.valid_before();
    loop {
        tokio::time::sleep(renewal_delay(valid_before)).await;
        match obtain().await {
            Ok(cert) => {
                valid_before = cert.valid_before();
                let fresh = Arc::new(build(cert));
                *config.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                tracing::info!("renewed the bastion's host certificate");
            }
            Err(err) => tracing::error!("cannot renew the bastion's host certificate: {err}"),
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
}
