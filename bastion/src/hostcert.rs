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

/// Re-issues the certificate at half-life and swaps a configuration built with it (by
/// `build`) into `config`, which new connections use. A failure is logged and retried at the
/// next half-life; the old certificate stays valid until then.
pub async fn renew(
    authority: Arc<Authority>,
    key: PrivateKey,
    names: Vec<String>,
    config: Arc<RwLock<Arc<Config>>>,
    build: impl Fn(Certificate) -> Config + Send + 'static,
) {
    loop {
        tokio::time::sleep(HOST_CERT_TTL / 2).await;
        let issued = {
            let (authority, key, names) = (authority.clone(), key.clone(), names.clone());
            tokio::task::spawn_blocking(move || issue(&authority, &key, &names)).await
        };
        match issued {
            Ok(Ok(cert)) => {
                let fresh = Arc::new(build(cert));
                *config.write().unwrap_or_else(|p| p.into_inner()) = fresh;
                tracing::info!("renewed the bastion's host certificate");
            }
            Ok(Err(err)) => tracing::error!("cannot renew the bastion's host certificate: {err}"),
            Err(err) => tracing::error!("host certificate renewal failed: {err}"),
        }
    }
}
