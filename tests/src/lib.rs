//! Integration-test harness for `ssh-ca` and `ssh-bastion`.
//!
//! Tests drive the *real* OpenSSH tools (`sshd`, `ssh`, `scp`, `sftp`,
//! `ssh-keygen`), PuTTY's `plink` and `asciinema` on loopback. Everything here
//! panics on failure instead of returning errors: a missing tool or a broken
//! environment must fail the test, never skip it.
//!
//! Environment variables:
//! * `JITSSH_BIN_DIR` — directory holding the project binaries (default: the
//!   cargo profile dir the test executable was built into).
//! * `JITSSH_TEST_CLOCK` — set by the harness for the binaries it starts ([`TestClock`]).
//! * `JITSSH_KEEP_TMP=1` — keep the scratch directories of failing tests.
//!
//! Every child process is run with a timeout (see [`DEFAULT_TIMEOUT`]) so a
//! hung `ssh` can never hang the suite.

mod agent;
mod bastion;
mod ca;
mod clock;
mod flood;
mod garage;
mod issuer;
mod jump;
mod keys;
mod net;
mod oidc;
mod postgres;
mod process;
mod russh_client;
mod scratch;
mod ssh;
mod sshd;
mod syslog;
mod tmux;
mod tools;

pub use agent::Agent;
pub use bastion::{Bastion, asciinema_cat, grant, session_recordings, target, user};
pub use ca::{CaFixture, CaServer};
pub use clock::{TEST_CLOCK_ENV, TestClock};
pub use flood::{Flood, FloodState};
pub use garage::{GARAGE_REGION, Garage, garage_bin};
pub use issuer::{Issuer, TestKey, tokens};
pub use jump::JumpConfig;
pub use keys::{KeyPair, SignOpts, cert_info, keygen, keygen_sign};
pub use net::free_port;
pub use oidc::{Idp, oidc_dir, sso_login};
pub use postgres::{PG_USER, Postgres};
pub use process::{DEFAULT_TIMEOUT, Daemon, Output, run, run_ok, run_with, wait_for};
pub use russh_client::{AnyHost, russh_login};
pub use scratch::Scratch;
pub use ssh::{Running, Ssh};
pub use sshd::{Sshd, SshdBuilder};
pub use syslog::Rsyslog;
pub use tmux::Tmux;
pub use tools::{project_bin, tool};
