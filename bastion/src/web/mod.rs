//! The auditors' web console: sessions, their recordings played in the browser, search, and
//! live sessions, over HTTPS on `[web] listen`.
//!
//! Nobody gets a password: an auditor signs in with the certificate they already have, by
//! `ssh web@bastion` ([`signin`] admits it at the front door and mints a one-time URL), and
//! the browser trades that URL for a session cookie bound to the person and expiring with
//! their certificate ([`auth`]). With `[web.sso]`, an auditor may instead sign in with the
//! organisation's identity provider ([`sso`]: authorization code flow with PKCE; auditors are
//! those whose groups map to an auditor role in the policy). Every page is rendered on the server ([`pages`], escaped
//! by [`html`]); the only scripts are files served from the binary ([`assets`]), so the
//! Content-Security-Policy forbids inline script. TLS is rustls ([`tls`]).

pub mod assets;
pub mod auth;
pub mod html;
pub mod live;
pub mod pages;
pub mod signin;
pub mod sso;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;

use crate::admin::LiveSessions;
use crate::audit::Audit;
use crate::issuer::Issuer;
use jitssh_core::ssh_key::Certificate;

pub use crate::config::WebSettings;
pub use auth::Sessions;

/// What an auditor signed in with: kept with their browser session to check, on each
/// request, that it still holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// Their certificate (`ssh web@bastion`): checked for revocation on every request.
    Certificate(Arc<Certificate>),
    /// A verified ID token from `[web.sso]`'s identity provider: the session ends with it.
    Sso {
        /// The issuer.
        issuer: String,
        /// The person's stable id there.
        sub: String,
    },
}

/// A signed-in auditor, with what they signed in with.
pub type SignedIn = auth::Signed<Credential>;
pub use signin::{SIGNIN_USER, WebAdmitted, admit_auditor};

/// Connections served at once; more wait in the kernel's backlog.
const MAX_CONNECTIONS: usize = 256;
/// Searches (and other work over every recording) at once.
const HEAVY_AT_ONCE: usize = 2;
/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Errors starting the console.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// TLS could not be set up.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// `[web.sso]` could not be set up.
    #[error("web console: [web.sso]: {0}")]
    Sso(#[from] jitssh_identity::FetchError),
    /// `[web.sso]` with a remote CA: the bastion has no policy to map groups to roles.
    #[error(
        "web console: [web.sso] needs the embedded CA (the policy's [[sso.groups]] decide who is an auditor); with a remote CA, auditors sign in by ssh web@bastion"
    )]
    SsoNeedsPolicy,
    /// Listening failed.
    #[error("web console: cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What the console's handlers share.
pub struct Console {
    /// Settings.
    pub settings: WebSettings,
    /// Pending sign-ins and signed-in browsers, with the certificate each signed in with.
    pub sessions: Sessions<Credential>,
    /// Sign-in by the identity provider (`[web.sso]`), when configured.
    pub sso: Option<sso::WebSso>,
    /// The CA, asked on every request whether that certificate was revoked meanwhile.
    pub issuer: Arc<dyn Issuer>,
    /// The auditor library on this bastion's files.
    pub auditor: jitssh_auditor::Auditor,
    /// Live sessions (watch, end).
    pub live: Arc<LiveSessions>,
    /// The bastion's audit log.
    pub audit: Audit,
    /// Work that reads many recordings (search, the integrity filter) runs this many at once;
    /// more wait, so a few browsers cannot take every core and the blocking pool.
    pub heavy: tokio::sync::Semaphore,
}

impl Console {
    /// The console for `settings`.
    pub fn new(
        settings: WebSettings,
        auditor: jitssh_auditor::Auditor,
        live: Arc<LiveSessions>,
        audit: Audit,
        issuer: Arc<dyn Issuer>,
    ) -> Result<Arc<Console>, WebError> {
        let sso = match &settings.sso {
            Some(config) => Some(sso::WebSso::new(config, &settings.public_url)?),
            None => None,
        };
        Ok(Arc::new(Console {
            sso,
            settings,
            sessions: Sessions::new(),
            issuer,
            auditor,
            live,
            audit,
            heavy: tokio::sync::Semaphore::new(HEAVY_AT_ONCE),
        }))
    }
}

/// Binds `[web] listen` and serves the console until the process ends.
pub async fn spawn(console: Arc<Console>) -> Result<(), WebError> {
    let acceptor = tls::acceptor(&console.settings)?;
    let addr = console.settings.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| WebError::Listen { addr, source })?;
    let local = listener.local_addr().unwrap_or(addr);
    tracing::info!(addr = %local, url = %console.settings.public_url, "web console listening on {local}");
    let app = pages::router(console);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, _peer) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!("web console: accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, app) = (acceptor.clone(), app.clone());
            tokio::spawn(async move {
                let _permit = permit;
                let Ok(Ok(tls)) =
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                else {
                    return;
                };
                let io = hyper_util::rt::TokioIo::new(tls);
                let service = hyper_util::service::TowerToHyperService::new(app);
                let _ = hyper::server::conn::http1::Builder::new()
                    .header_read_timeout(HANDSHAKE_TIMEOUT)
                    .timer(hyper_util::rt::TokioTimer::new())
                    .serve_connection(io, service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::BastionConfig;
    use std::path::{Path, PathBuf};

    fn parse(web: &str) -> Result<Option<super::WebSettings>, String> {
        BastionConfig::parse(
            &format!("[web]\n{web}\n"),
            "bastion.toml",
            Path::new("/etc/b"),
        )
        .map(|c| c.web)
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_console_is_off_unless_listen_is_set() {
        assert!(parse("").unwrap().is_none());
        assert!(parse("cert = \"c\"").unwrap_err().contains("web.cert"));
        let on = parse("listen = \"127.0.0.1:8443\"").unwrap().unwrap();
        assert_eq!(on.public_url, "https://127.0.0.1:8443");
        assert!(on.dir.ends_with("web"));
        assert!(on.cert_key.is_none());
    }

    #[test]
    fn web_sso_takes_the_ca_sso_keys_and_is_checked() {
        let on = parse(
            "listen = \"127.0.0.1:8443\"\npublic_url = \"https://b.example\"\n[web.sso]\n\
             issuer = \"https://idp.example\"\nclient_id = \"jitssh-web\"\nname_claim = \"preferred_username\"",
        )
        .unwrap()
        .unwrap();
        let sso = on.sso.unwrap();
        assert_eq!(sso.client_id, "jitssh-web");
        assert_eq!(sso.groups_claim, "groups");
        let no_openid = parse(
            "listen = \"127.0.0.1:8443\"\n[web.sso]\nissuer = \"https://i\"\nclient_id = \"c\"\nscopes = [\"email\"]",
        );
        assert!(no_openid.unwrap_err().contains("web.sso.scopes"));
        let off = parse("[web.sso]\nissuer = \"https://i\"\nclient_id = \"c\"");
        assert!(off.unwrap_err().contains("web.sso"));
        let typo = parse(
            "listen = \"127.0.0.1:8443\"\n[web.sso]\nissuer = \"https://i\"\nclient_id = \"c\"\nclientid = \"x\"",
        );
        assert!(typo.is_err());
    }

    /// The commented `[web]` and `[web.sso]` example in config/bastion.toml parses when
    /// uncommented.
    #[test]
    fn the_documented_web_sso_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/bastion.toml");
        let text = std::fs::read_to_string(path).unwrap();
        let web: String = text
            .split("\n[web]\n")
            .nth(1)
            .and_then(|rest| rest.split("\n[audit]").next())
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.starts_with('[')
                    || l.split_once(" = ").is_some_and(|(k, _)| {
                        k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                    })
            })
            .filter(|l| {
                !l.starts_with("cert") && !l.starts_with("key") && !l.starts_with("client_secret")
            })
            .collect::<Vec<_>>()
            .join("\n");
        let on = parse(&web).unwrap().unwrap();
        assert_eq!(on.sso.unwrap().client_id, "jitssh-web");
    }

    #[test]
    fn a_certificate_needs_its_key_and_urls_are_https() {
        let both = parse("listen = \"0.0.0.0:443\"\ncert = \"w.crt\"\nkey = \"w.key\"")
            .unwrap()
            .unwrap();
        assert_eq!(
            both.cert_key,
            Some((PathBuf::from("/etc/b/w.crt"), PathBuf::from("/etc/b/w.key")))
        );
        let lone = parse("listen = \"0.0.0.0:443\"\ncert = \"w.crt\"");
        assert!(lone.unwrap_err().contains("web.key"));
        let plain = parse("listen = \"0.0.0.0:443\"\npublic_url = \"http://x\"");
        assert!(plain.unwrap_err().contains("web.public_url"));
    }
}
