//! The `ssh-bastion` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// `--version`: the package version, marked `(test-clock)` in builds whose clock tests can
/// shift (see `jitssh_core::clock`), so nobody deploys one unknowingly.
const VERSION: &str = if jitssh_core::clock::TEST_CLOCK_BUILT {
    concat!(env!("CARGO_PKG_VERSION"), " (test-clock)")
} else {
    env!("CARGO_PKG_VERSION")
};

/// The recording SSH bastion of jitssh: certificate-only front door, a fresh certificate per
/// session to the target, and an audit trail of every login, session and command.
#[derive(Debug, Parser)]
#[command(name = "ssh-bastion", version = VERSION)]
pub struct Cli {
    /// Configuration file (TOML); without it, embedded defaults apply (data in ./data/bastion,
    /// an embedded CA with data in ./data/ca).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Sub-commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bastion (and, in embedded mode, the CA's SSH API) until SIGTERM or Ctrl-C.
    Serve,
    /// Ask the running `ssh-bastion serve` of this configuration to reload (SIGHUP through
    /// its pid file): the embedded CA re-reads its policy; a broken policy is refused, logged,
    /// and the old one kept.
    Reload,
    /// Audit log tools.
    Audit {
        /// What to do with the audit log.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Find, show, search, watch and end sessions.
    Sessions {
        /// What to do.
        #[command(subcommand)]
        command: crate::auditor::args::SessionsCommand,
    },
    /// Replay a session's terminal output with its timing.
    Replay(crate::auditor::args::ReplayArgs),
    /// Export a session as asciicast v2, text or JSON.
    Export(crate::auditor::args::ExportArgs),
    /// Verify recordings against their hash chain and signed seal; names what was altered,
    /// removed or truncated.
    Verify(crate::auditor::args::VerifyArgs),
    /// Delete recordings older than `[recordings] retain` (never a live session's); every
    /// deletion is audited.
    Prune(crate::auditor::args::PruneArgs),
}

/// `ssh-bastion audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the bastion audit log's hash chain (and, all-in-one, the embedded CA's); names
    /// every altered, removed or truncated record. Then every chain in the audit index of the
    /// session index (every bastion's, on a shared PostgreSQL `[store]`): its records, and
    /// that no head went backwards.
    Verify,
    /// Search the audit records in the session index's audit index (every bastion's, on a
    /// shared PostgreSQL `[store]`), newest first; prints each record's line as stored. Exits
    /// 1 when nothing matches.
    Search(AuditSearchArgs),
}

/// `ssh-bastion audit search`.
#[derive(Debug, clap::Args)]
pub struct AuditSearchArgs {
    /// Only this event kind (e.g. `session.exec`, `session.end`).
    #[arg(long, value_name = "KIND")]
    pub event: Option<String>,
    /// Only records this recent (e.g. `1h`, `7d`).
    #[arg(long, value_name = "DURATION")]
    pub since: Option<jitssh_core::duration::HumanDuration>,
    /// Only records containing this text (repeatable: all of them).
    #[arg(long = "contains", value_name = "TEXT")]
    pub contains: Vec<String>,
    /// Only this chain (an id from `audit verify`).
    #[arg(long, value_name = "ID")]
    pub chain: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: usize,
}

impl AuditSearchArgs {
    /// The query these flags ask for.
    pub fn query(&self) -> jitssh_core::store::AuditQuery {
        jitssh_core::store::AuditQuery {
            event: self.event.clone(),
            since: self.since.map(|d| {
                jitssh_core::store::record_time(jitssh_core::unix_now().saturating_sub(d.as_secs()))
            }),
            contains: self.contains.clone(),
            chain: self.chain.clone(),
            limit: self.limit,
        }
    }
}
