//! The `ssh-bastion` command line.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// The recording SSH bastion of jitssh: certificate-only front door, a fresh certificate per
/// session to the target, and an audit trail of every login, session and command.
#[derive(Debug, Parser)]
#[command(name = "ssh-bastion", version)]
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
}

/// `ssh-bastion audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the bastion audit log's hash chain; names the first altered, removed or
    /// truncated record.
    Verify,
}
