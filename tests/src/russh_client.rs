//! A programmable SSH client (russh) for what OpenSSH's client cannot do on purpose: open
//! channels and leave them idle, watch the order of channel messages, time one channel while
//! another waits.

use std::sync::Arc;

use russh::client;
use russh::keys::PublicKeyOrCertificate;

use crate::keys::KeyPair;

/// Accepts any host key: these tests are about the bastion's channels, and the host
/// certificate checks have their own tests with OpenSSH's client.
pub struct AnyHost;

impl client::Handler for AnyHost {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        _key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        Ok(true)
    }
}

/// Logs in on 127.0.0.1:`port` as `user` (e.g. `root@web01`) with `key` and its certificate
/// (`key.cert_path()`), panicking unless the login is accepted.
pub async fn russh_login(port: u16, user: &str, key: &KeyPair) -> client::Handle<AnyHost> {
    let secret = russh::keys::load_secret_key(&key.private, None).expect("load key");
    let cert = russh::keys::load_openssh_certificate(key.cert_path()).expect("load cert");
    let mut handle = client::connect(
        Arc::new(client::Config::default()),
        ("127.0.0.1", port),
        AnyHost,
    )
    .await
    .expect("connect");
    let auth = handle
        .authenticate_openssh_cert(user, Arc::new(secret), cert)
        .await
        .expect("authenticate");
    assert!(auth.success(), "login accepted");
    handle
}
