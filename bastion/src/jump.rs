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
    let (mut from_inner, mut to_inner) = tokio::io::split(carried);
    let (mut from_client, mut to_client) = tokio::io::split(stream);
    // Aborted when this future ends or is dropped (e.g. by the caller's deadline).
    let _inbound = AbortOnDrop(tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_client, &mut to_inner).await;
        let _ = to_inner.shutdown().await;
    }));
    let mut outbound = AbortOnDrop(tokio::spawn(async move {
        let _ = tokio::io::copy(&mut from_inner, &mut to_client).await;
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

#[cfg(test)]
mod tests {
    use super::*;

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
