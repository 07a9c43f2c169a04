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
    /// every altered, removed or truncated record.
    Verify,
}
