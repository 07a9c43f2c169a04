//! ssh-ca: the certificate authority of jitssh.
//!
//! [`authority::Authority`] issues and revokes; [`api`] serves it over SSH; [`commands`] are the
//! operator's offline commands; [`cli`] parses them; [`renew`] is the host-side renewal client.

pub mod api;
pub mod authority;
pub mod cert_text;
pub mod cli;
pub mod client;
pub mod commands;
pub mod commit;
pub mod config;
pub mod denials;
pub mod edge;
pub mod hosts;
pub mod join_guard;
pub mod renew;
pub mod requests;
pub mod revocation;
pub mod session_cert;
