//! The bastion's own host certificate, from the embedded CA's host CA: clients that trust the
//! host CA (`@cert-authority` in known_hosts) reach the bastion without trust on first use.
//! Issued at start for the configured `names`, renewed at half-life while serving.

use std::sync::{Arc, RwLock};

use jitssh_authority::authority::{Authority, IssueError};
use jitssh_core::ssh_key::{Certificate, PrivateKey};
use jitssh_server::host_cert::{host_cert_spec, renew_at_half_life};
use russh::server::Config;
use serde_json::json;

/// Issues a host certificate for `key` naming `names`, recorded and audited by the CA.
pub fn issue(
    authority: &Authority,
    key: &PrivateKey,
    names: &[String],
) -> Result<Certificate, IssueError> {
    let spec = host_cert_spec(
        key,
        "ssh-bastion",
        names,
        authority.config().clock_skew.as_duration(),
    );
    Ok(authority
        .issue(
            spec,
            "ssh-bastion",
            None,
            json!({ "bastion_host_cert": true }),
        )?
        .certificate)
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
    let install = |cert| {
        let fresh = Arc::new(build(cert));
        *config.write().unwrap_or_else(|p| p.into_inner()) = fresh;
    };
    renew_at_half_life(
        current.valid_before(),
        "bastion",
        "the bastion's host certificate",
        obtain,
        install,
    )
    .await;
}

/// Issues a host certificate for the bastion's `key` naming a target (`names`: its name and
/// address), for inner connections of `ssh -J` (see [`crate::jump`]). Its key id says so.
pub fn issue_for_target(
    authority: &Authority,
    key: &PrivateKey,
    names: &[String],
) -> Result<Certificate, IssueError> {
    let key_id = format!(
        "ssh-bastion for {}",
        names.first().map_or("", String::as_str)
    );
    let spec = host_cert_spec(
        key,
        &key_id,
        names,
        authority.config().clock_skew.as_duration(),
    );
    Ok(authority
        .issue(
            spec,
            "ssh-bastion",
            None,
            json!({ "bastion_host_cert": true, "jump_target": names.first() }),
        )?
        .certificate)
}
