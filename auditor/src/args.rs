//! The auditor's command-line arguments (`sessions ...`, `replay`, `export`, `verify`,
//! `prune`); `ssh-bastion`'s command line embeds them.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

/// `ssh-bastion sessions ...`.
#[derive(Debug, Subcommand)]
pub enum SessionsCommand {
    /// List sessions, newest first.
    List(ListArgs),
    /// One session in full: who, where, certificates, channels, transfers, audit events.
    Show {
        /// Session id.
        id: String,
    },
    /// Search recordings' output (as text) for a regular expression; prints session id,
    /// offset and line, so `replay ID --from OFFSET` jumps there.
    Grep(GrepArgs),
    /// Follow a live session's output, read-only (through the bastion's admin socket).
    Watch {
        /// Session id.
        id: String,
    },
    /// End a live session now; the person is told why, and it is audited.
    Kill {
        /// Session id.
        id: String,
        /// Why (told to the person and written to the audit log).
        #[arg(long, default_value = "ended by an auditor")]
        reason: String,
    },
}

/// Which sessions, from the session index.
#[derive(Debug, Clone, Default, Args)]
pub struct FilterArgs {
    /// Only this person.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Only this login on the target.
    #[arg(long)]
    pub login: Option<String>,
    /// Running at or after this time: `24h` (ago), `2026-11-23`, `2026-11-23T18:00`, `@UNIX`.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Started at or before this time (same forms as --since).
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only sessions still running.
    #[arg(long)]
    pub active: bool,
}

/// `sessions list`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Which sessions.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// At most this many.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// JSON lines (one session per line) instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `sessions grep`.
#[derive(Debug, Clone, Args)]
pub struct GrepArgs {
    /// Regular expression (Rust `regex` syntax), matched against each line of text.
    pub pattern: String,
    /// Which sessions to search.
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Match without regard to case.
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Only these sessions (repeatable); default: every session the filters select.
    #[arg(long = "id", value_name = "ID")]
    pub ids: Vec<String>,
    /// Search the output as it was written (escape sequences removed, lines split at
    /// newlines and carriage returns) instead of the rendered screen text.
    #[arg(long)]
    pub raw: bool,
}

/// `replay`.
#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    /// Session id.
    pub id: String,
    /// Playback speed factor (2 = twice as fast).
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    /// Longest pause, in seconds, however long the person was idle.
    #[arg(long, value_name = "SECONDS")]
    pub max_idle: Option<f64>,
    /// Start at this offset (as `sessions grep` prints it: 1:23.4, 83.4, 1m23s); what came
    /// before is written at once, so the screen is right.
    #[arg(long, value_name = "OFFSET")]
    pub from: Option<String>,
    /// Only this channel (as numbered by `sessions show`); default: every terminal
    /// channel, one after the other.
    #[arg(long, value_name = "N")]
    pub channel: Option<u32>,
}

/// `export` formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// asciicast v2, for `asciinema play` and `asciinema cat`.
    Asciicast,
    /// The text a person saw (terminal control sequences rendered).
    Text,
    /// The journal and every event, as one JSON document.
    Json,
}

/// `export`.
#[derive(Debug, Clone, Args)]
pub struct ExportArgs {
    /// Session id.
    pub id: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "asciicast")]
    pub format: ExportFormat,
    /// Write here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Only this channel; default: every terminal channel, one after the other.
    #[arg(long, value_name = "N")]
    pub channel: Option<u32>,
}

/// `verify`.
#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    /// Session ids; default: every recording on disk.
    pub ids: Vec<String>,
    /// Trust this public key (OpenSSH format) for seals instead of the bastion's own.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

/// `prune`.
#[derive(Debug, Clone, Args)]
pub struct PruneArgs {
    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Retention for this run instead of `[recordings] retain` (e.g. `90d`).
    #[arg(long, value_name = "DURATION")]
    pub retain: Option<String>,
}
