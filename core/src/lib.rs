//! The domain of jitssh, below both programs: certificates (build, verify), CA keys, the KRL
//! and the cached revocation set, access policy, the store, the hash-chained audit log,
//! configuration loading and the clock every decision reads.
//!
//! Everything here that decides something (policy evaluation, certificate verification,
//! pattern matching) is a pure function, so it can be tested in isolation.

pub mod audit;
pub mod cert;
pub mod clock;
pub mod config;
pub mod duration;
pub mod fsmode;
pub mod hours;
pub mod keys;
pub mod krl;
pub mod metrics;
pub mod pattern;
pub mod policy;
pub mod revocation;
pub mod store;
pub mod timefmt;

use russh::keys::signature;
/// The one ssh-key version in the build: the one russh uses (a second version would give
/// type mismatches at every boundary with russh).
pub use russh::keys::ssh_key;

/// Seconds since the Unix epoch, now, from the one clock every decision reads ([`clock`]).
pub use clock::unix_now;
