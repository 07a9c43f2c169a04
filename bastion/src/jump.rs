//! ProxyJump, terminated and recorded: `ssh -J alice@bastion deploy@web01`.
//!
//! The outer login names no target (the user string is the person's name); on that
//! connection a `direct-tcpip` to a configured target (by name or address, at the target's
//! port) is not tunnelled: the bastion runs its own SSH server over the channel, presenting
//! its host key with a host certificate whose principals name that target, so the client's
//! `@cert-authority` check passes. The inner login is then admitted, recorded and carried to
//! the target exactly like a `LOGIN@TARGET` login ([`crate::front`]), after one more check:
//! it is the outer login's person with the same key ([`crate::admission::same_person`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jitssh_core::ssh_key::{Certificate, PrivateKey};
use jitssh_core::unix_now;
use russh::server::Config;

use crate::config::{BastionConfig, Target};

/// Where host certificates naming a target come from.
#[derive(Clone)]
pub enum TargetCertSource {
    /// The embedded CA's host CA signs them.
    Embedded(Arc<jitssh_authority::authority::Authority>),
    /// None can be had (a remote CA issues the bastion only its own): the inner connection
    /// presents the bastion's own host certificate, and the client must know the key.
    Unavailable(String),
}

/// The server configuration presented to inner connections, per target: the bastion's
/// host key with a host certificate naming the target. Cached; a certificate past half its
/// life is replaced on next use (the old one is used while a new one cannot be had).
pub struct TargetCerts {
    host_key: PrivateKey,
    source: TargetCertSource,
    build: Box<dyn Fn(Option<Certificate>) -> Arc<Config> + Send + Sync>,
    cache: Mutex<HashMap<String, (Certificate, Arc<Config>)>>,
}

impl TargetCerts {
    /// Configurations built by `build` (`None`: the bastion's own) from the host certificates `source` issues for `host_key`.
    pub fn new(
        host_key: PrivateKey,
        source: TargetCertSource,
        build: impl Fn(Option<Certificate>) -> Arc<Config> + Send + Sync + 'static,
    ) -> TargetCerts {
        TargetCerts {
            host_key,
            source,
            build: Box::new(build),
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The principals a target's host certificate carries: its name and the host part of
    /// its address (what a client may type as the `-J` destination).
    pub fn principals(target: &Target) -> Vec<String> {
        let mut names = vec![target.name.clone()];
        if let Some(host) = address_host(&target.address)
            && !host.eq_ignore_ascii_case(&target.name)
        {
            names.push(host.to_string());
        }
        names
    }

    /// The server configuration for inner connections to `target`.
    pub async fn config_for(&self, target: &Target) -> Arc<Config> {
        let now = unix_now();
        let cached = self
            .cache
            .lock()
            .ok()
            .and_then(|cache| cache.get(&target.name).cloned());
        if let Some((cert, config)) = &cached
            && !past_half_life(cert, now)
        {
            return config.clone();
        }
        match self.issue(target).await {
            Ok(cert) => {
                let config = (self.build)(Some(cert.clone()));
                if let Ok(mut cache) = self.cache.lock() {
                    cache.insert(target.name.clone(), (cert, config.clone()));
                }
                config
            }
            Err(why) => {
                tracing::warn!(
                    target = %target.name,
                    "no host certificate naming the target for ssh -J: {why}"
                );
                match cached {
                    Some((cert, config)) if now < cert.valid_before() => config,
                    _ => (self.build)(None),
                }
            }
        }
    }

    async fn issue(&self, target: &Target) -> Result<Certificate, String> {
        match &self.source {
            TargetCertSource::Embedded(authority) => {
                let (authority, key) = (authority.clone(), self.host_key.clone());
                let names = TargetCerts::principals(target);
                tokio::task::spawn_blocking(move || {
                    crate::hostcert::issue_for_target(&authority, &key, &names)
                })
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())
            }
            TargetCertSource::Unavailable(why) => Err(why.clone()),
        }
    }
}

fn past_half_life(cert: &Certificate, now: u64) -> bool {
    let (after, before) = (cert.valid_after(), cert.valid_before());
    now >= after + before.saturating_sub(after) / 2
}

/// The host part of `host:port` (`[v6]:port` too).
fn address_host(address: &str) -> Option<&str> {
    let (host, _port) = address.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

/// The port of `host:port`.
fn address_port(address: &str) -> Option<u32> {
    address.rsplit_once(':')?.1.parse().ok()
}

/// The configured target a `direct-tcpip` to `host:port` reaches: by name (any case) or by
/// its configured address, at the target's own port.
pub fn target_at<'a>(config: &'a BastionConfig, host: &str, port: u32) -> Option<&'a Target> {
    config.targets.iter().find(|t| {
        address_port(&t.address) == Some(port)
            && (t.name.eq_ignore_ascii_case(host)
                || address_host(&t.address).is_some_and(|h| h.eq_ignore_ascii_case(host)))
    })
}

/// The copy size between the outer channel and the inner connection's pipe: one full SSH
/// packet's payload.
const CHUNK: usize = 32 * 1024;

/// How long the end of an inner connection waits for its last bytes (the refusal message,
/// the session's last output) to reach the person.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(10);

/// Serves an inner connection over the `direct-tcpip` channel `stream` with `serve`, which
/// gets the bastion's end of a buffered pipe (`buffer` bytes each way).
///
/// The buffer is what keeps both connections moving: russh's server loop stops reading
/// while a write is pending, and the outer connection's loop stops when this channel's
/// queue is full; with the channel's window closed the two would wait for each other. The
/// inner server's output in flight is bounded by the inner channel windows (a few MiB), so
/// a buffer that covers them (`limits.relay_buffer`) means its writes never wait on the
/// outer window, and the outer channel is always read.
pub async fn carry<S, F, Fut>(stream: S, buffer: usize, serve: F)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + 'static,
    F: FnOnce(tokio::io::DuplexStream) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    use tokio::io::AsyncWriteExt;
    let (inner_end, carried) = tokio::io::duplex(buffer.max(64 * 1024));
    let (from_inner, mut to_inner) = tokio::io::split(carried);
    let (from_client, mut to_client) = tokio::io::split(stream);
    // Aborted when this future ends or is dropped (e.g. by the caller's deadline).
    // Copies in chunks of a full SSH packet (32 KiB, what OpenSSH announces as its maximum)
    // rather than `tokio::io::copy`'s 8 KiB: each write to the channel is one data message,
    // so small chunks meant four times the packets (and per-packet work) on the outer leg.
    let _inbound = AbortOnDrop(tokio::spawn(async move {
        let mut from_client = tokio::io::BufReader::with_capacity(CHUNK, from_client);
        let _ = tokio::io::copy_buf(&mut from_client, &mut to_inner).await;
        let _ = to_inner.shutdown().await;
    }));
    let mut outbound = AbortOnDrop(tokio::spawn(async move {
        let mut from_inner = tokio::io::BufReader::with_capacity(CHUNK, from_inner);
        let _ = tokio::io::copy_buf(&mut from_inner, &mut to_client).await;
        let _ = to_client.shutdown().await;
    }));
    serve(inner_end).await;
    let _ = tokio::time::timeout(DRAIN, &mut outbound.0).await;
}

/// A task that is aborted when this is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why a jump connection must end while it is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JumpEnd {
    /// The outer certificate reached its `valid_before`.
    Expired,
    /// The outer certificate was revoked (the CA's reason).
    Revoked(String),
    /// Revocation could not be checked: fail closed.
    Unverifiable(String),
}

impl std::fmt::Display for JumpEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JumpEnd::Expired => f.write_str("your certificate expired"),
            JumpEnd::Revoked(why) => write!(f, "your certificate was revoked ({why})"),
            JumpEnd::Unverifiable(why) => {
                write!(
                    f,
                    "revocation of your certificate cannot be checked ({why})"
                )
            }
        }
    }
}

/// Whether a jump connection on a certificate valid until `valid_before` must end now, from
/// the revocation verdict (`None`: not checked this time). Pure, so the rules are tested alone.
pub fn jump_end(
    now: u64,
    valid_before: u64,
    verdict: Option<Result<Option<String>, String>>,
) -> Option<JumpEnd> {
    if now >= valid_before {
        return Some(JumpEnd::Expired);
    }
    match verdict {
        Some(Ok(Some(why))) => Some(JumpEnd::Revoked(why)),
        Some(Err(why)) => Some(JumpEnd::Unverifiable(why)),
        Some(Ok(None)) | None => None,
    }
}

/// Watches a jump connection for as long as it is open: when the outer certificate expires or
/// is revoked (checked every `recheck`), the connection is audited as `jump.ended` and closed,
/// with every inner connection it carries. Inner logins re-check their own certificates; this
/// closes the carrier too, so access dies with the certificate on every path. `gone` resolves
/// when the connection's handler is dropped (the connection ended): the watch ends with it.
pub async fn watch(
    handle: russh::server::Handle,
    mut gone: tokio::sync::oneshot::Receiver<()>,
    cert: Certificate,
    jump_id: String,
    issuer: Arc<dyn crate::issuer::Issuer>,
    audit: crate::audit::Audit,
    recheck: std::time::Duration,
) {
    let valid_before = cert.valid_before();
    let mut revocation = tokio::time::interval(recheck);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        let verdict = tokio::select! {
            _ = revocation.tick() => Some(
                issuer.revoked(&cert).await.map_err(|err| err.to_string()),
            ),
            _ = tick.tick() => None,
            _ = &mut gone => return,
        };
        if let Some(end) = jump_end(unix_now(), valid_before, verdict) {
            let event = jitssh_core::audit::AuditEvent::new("jump.ended")
                .with("jump", jump_id.as_str())
                .with("reason", end.to_string());
            audit.record_or_log(event).await;
            let _ = handle
                .disconnect(
                    russh::Disconnect::ByApplication,
                    format!("bastion: {end}"),
                    "en".into(),
                )
                .await;
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jump_ends_when_its_certificate_expires_or_is_revoked_or_cannot_be_checked() {
        assert_eq!(jump_end(99, 100, None), None);
        assert_eq!(jump_end(99, 100, Some(Ok(None))), None);
        assert_eq!(jump_end(100, 100, None), Some(JumpEnd::Expired));
        assert_eq!(
            jump_end(99, 100, Some(Ok(Some("stolen".into())))),
            Some(JumpEnd::Revoked("stolen".into()))
        );
        assert_eq!(
            jump_end(99, 100, Some(Err("CA down".into()))),
            Some(JumpEnd::Unverifiable("CA down".into()))
        );
        assert_eq!(
            JumpEnd::Revoked("key revoked".into()).to_string(),
            "your certificate was revoked (key revoked)"
        );
    }

    #[test]
    fn addresses_split_into_host_and_port() {
        assert_eq!(address_host("10.0.0.5:22"), Some("10.0.0.5"));
        assert_eq!(address_host("[::1]:2222"), Some("::1"));
        assert_eq!(address_port("[::1]:2222"), Some(2222));
        assert_eq!(address_host("web01"), None);
        let target = Target {
            name: "web01".into(),
            address: "127.0.0.1:2222".into(),
        };
        assert_eq!(TargetCerts::principals(&target), ["web01", "127.0.0.1"]);
    }
}
