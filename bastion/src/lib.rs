//! ssh-bastion: the recording SSH bastion of jitssh.
//!
//! The front door ([`front`]) admits only user certificates that pass every check of the
//! trust model ([`admission`]); each session reaches its target ([`upstream`]) with a fresh
//! key and a certificate minted for it by the CA ([`issuer`], in process or [`remote`]);
//! [`pump`] relays channels with bounded memory; each [`session`] is one task that owns its
//! state (a [`session::Phase`], pure transitions) and ends it when the certificate expires or
//! is revoked; [`answers`] answers requests later so a slow target delays only its own
//! channel; [`server`] ties it together for `ssh-bastion serve`.

pub mod admin;
pub mod admission;
pub mod answers;
pub mod audit;
pub mod auditor;
pub mod cli;
pub mod config;
pub mod door;
pub mod front;
pub mod hostcert;
pub mod issuer;
pub mod jump;
pub mod login;
pub mod pump;
pub mod recorded;
pub mod recording;
pub mod remote;
pub mod requests;
pub mod server;
pub mod session;
pub mod upstream;
