//! What both SSH servers of jitssh (the CA's API and the bastion) are built on.
//!
//! - [`accept`]: the accept loop with a connection budget, an unauthenticated budget
//!   (`max_startups`, per source) and a handshake deadline that shuts the socket itself;
//! - [`hostkey`]: the server's host key, created private on first start;
//! - [`host_cert`]: the server's own host certificate and its renewal at half-life.
//! - [`pidfile`]: the pid file that `reload` signals.
//! - [`metrics`]: the Prometheus recorder and the `/metrics` endpoint.

pub mod accept;
pub mod host_cert;
pub mod hostkey;
pub mod metrics;
pub mod pidfile;
