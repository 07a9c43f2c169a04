//! ssh-bastion: the recording SSH bastion of jitssh.
//!
//! The front door ([`front`]) admits only user certificates that pass every check of the
//! trust model ([`admission`]); each session reaches its target ([`upstream`]) with a fresh
//! key and a certificate minted for it by the CA ([`issuer`], in process or [`remote`]);
//! [`pump`] relays channels with bounded memory; each [`session`] is one task that owns its
//! state (a [`session::Phase`], pure transitions) and ends it when the certificate expires or
//! is revoked; [`answers`] answers requests later so a slow target delays only its own
//! channel; [`server`] ties it together for `ssh-bastion serve`.
//!
//! Recordings are the `jitssh-recording` crate ([`recording`]; the relay glue feeding it is
//! [`recorded`]) and the auditor's commands the `jitssh-auditor` crate ([`auditor`]; the
//! server side of its admin socket is [`admin`]).

pub mod admin;
pub mod admission;
pub mod answers;
pub mod audit;
pub mod cli;
pub mod config;
pub mod door;
pub mod front;
pub mod hostcert;
pub mod index_ends;
pub mod issuer;
pub mod jump;
pub mod login;
pub mod metrics;
pub mod names;
pub mod pump;
pub mod recorded;
pub mod remote;
pub mod requests;
pub mod server;
pub mod session;
pub mod upstream;
pub mod web;

/// The recording crate, under the name the bastion's modules have always used.
pub use jitssh_recording as recording;

/// The auditor crate (`ssh-bastion sessions ...`, `replay`, `export`, `verify`, `prune`).
pub use jitssh_auditor as auditor;
