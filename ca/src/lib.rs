//! ssh-ca: the certificate authority of jitssh.
//!
//! [`authority::Authority`] issues and revokes; [`commands`] are the operator's offline
//! commands; [`cli`] parses them.

pub mod authority;
pub mod cli;
pub mod commands;
pub mod config;
pub mod revocation;
