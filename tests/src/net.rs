//! Loopback networking helpers.

use std::net::TcpListener;

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// Binds `127.0.0.1:0`, reads the port the kernel picked and closes the
/// socket. There is a small race: another process (or a parallel test) may
/// grab the port before the caller binds it. [`crate::Sshd`] detects this
/// and retries with a fresh port; other users should be prepared for a bind
/// failure.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}
