//! ssh-ca: the certificate authority of jitssh, as a program.
//!
//! The authority itself is the `jitssh-authority` crate; this crate serves it over SSH
//! ([`api`]), speaks to that API as a client ([`client`]) and holds the binaries' edge
//! ([`edge`]: one-line errors, quiet on a closed pipe). The operator's command line (`cli`,
//! `commands`, `renew`) lives in the binary.

pub mod api;
pub mod client;
pub mod edge;
pub mod sso;
