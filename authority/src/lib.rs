//! The certificate authority's core, used by the `ssh-ca` program and linked by the bastion
//! (its all-in-one mode and its embedded issuer) without any command-line parsing.
//!
//! [`authority::Authority`] issues and revokes, with every decision audited; [`requests`] are
//! approval requests; [`hosts`] joins hosts and renews their certificates;
//! [`session_cert`] is what the bastion asks for a session; [`revocation`] keeps the cached
//! revocation set and the KRL; [`commit`] writes a certificate and its audit record together.

pub mod authority;
pub mod backend;
pub mod cert_text;
pub mod commit;
pub mod config;
pub mod denials;
pub mod host_token;
pub mod hosts;
pub mod join_guard;
pub mod metrics;
pub mod requests;
pub mod revocation;
pub mod session_cert;
pub mod shadow;
pub mod sso;
pub mod workload;
