//! The `ssh-ca` command line (operators, offline on the CA machine).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use jitssh_core::duration::HumanDuration;

/// `--version`: the package version, marked `(test-clock)` in builds whose clock tests can
/// shift (see `jitssh_core::clock`), so nobody deploys one unknowingly.
const VERSION: &str = if jitssh_core::clock::TEST_CLOCK_BUILT {
    concat!(env!("CARGO_PKG_VERSION"), " (test-clock)")
} else {
    env!("CARGO_PKG_VERSION")
};

/// The SSH certificate authority of jitssh: short-lived user and host certificates,
/// revocation that reaches sshd, and a tamper-evident audit log.
#[derive(Debug, Parser)]
#[command(name = "ssh-ca", version = VERSION)]
pub struct Cli {
    /// Configuration file (TOML); without it, embedded defaults apply (data in ./data/ca).
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
    /// Create the user, host and target CA keys (refuses to overwrite).
    Init,
    /// Print a CA public key line.
    Pubkey(KindArg),
    /// Sign a certificate offline (bootstrap, break-glass).
    Sign(SignArgs),
    /// Revoke certificates by serial, key id, or key.
    Revoke(RevokeArgs),
    /// Write the KRL (OpenSSH binary format) for sshd's RevokedKeys.
    Krl(KrlArgs),
    /// Print the sshd_config lines (and files) a target needs.
    SshdConfig(SshdConfigArgs),
    /// Print the @cert-authority line for known_hosts.
    KnownHosts(KnownHostsArgs),
    /// List issued certificates, newest first.
    Issued(IssuedArgs),
    /// Serve the CA's SSH API (certificates on demand, approvals, host renewal).
    Serve,
    /// Bring the store's schema up to date (also done by every start) and say what was
    /// applied; with several instances on one PostgreSQL database, run it once before
    /// starting the upgraded ones.
    Migrate,
    /// Hosts: enrol, list, remove; renew a host certificate (on the host).
    Host {
        /// What to do with hosts.
        #[command(subcommand)]
        command: HostCommand,
    },
    /// On your machine: fetch a certificate from the CA API (over ssh) and install it
    /// atomically next to your key; a denial leaves the old one untouched.
    Login(crate::login::LoginArgs),
    /// Client setup: known_hosts line, ssh_config with ProxyJump, Include line (or PuTTY's
    /// host-CA entry, or pinned host keys); printed, or installed with --write.
    SshConfig(crate::ssh_config::SshConfigArgs),
    /// Ask the running `ssh-ca serve` of this configuration to reload its policy (SIGHUP
    /// through its pid file, `ssh-ca.pid` in the data directory).
    Reload,
    /// Shadow mode: what the shadow policy (`shadow_policy` in ca.toml) would decide
    /// differently, from the audit log.
    Shadow {
        /// What to do.
        #[command(subcommand)]
        command: ShadowCommand,
    },
    /// Audit log tools.
    Audit {
        /// What to do with the audit log.
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// `--user`, `--host` or `--target`.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct KindArg {
    /// The user CA (signs people's certificates: bastion and CA API).
    #[arg(long)]
    pub user: bool,
    /// The host CA (signs host certificates).
    #[arg(long)]
    pub host: bool,
    /// The target CA (targets trust only it; `sign --target` is break-glass: at most 1h,
    /// key id marked break-glass).
    #[arg(long)]
    pub target: bool,
}

/// `ssh-ca sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// Which CA signs: `--user` or `--host`.
    #[command(flatten)]
    pub kind: KindArg,
    /// Public key to certify: a file, or `-` for standard input.
    #[arg(long, value_name = "PUB")]
    pub key: PathBuf,
    /// Principals: logins (user certs) or host names (host certs), comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub principals: Vec<String>,
    /// Lifetime, e.g. 1h, 30m, 7d.
    #[arg(long, value_name = "DURATION")]
    pub ttl: HumanDuration,
    /// Key id (default: the key's comment, or the first principal).
    #[arg(long)]
    pub key_id: Option<String>,
    /// force-command critical option.
    #[arg(long, value_name = "CMD")]
    pub force_command: Option<String>,
    /// source-address critical option: addresses or CIDR blocks, comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "CIDR")]
    pub source_address: Vec<String>,
    /// Extension NAME or NAME=VALUE (repeatable); replaces the default permit-* set.
    #[arg(long, value_name = "NAME")]
    pub extension: Vec<String>,
    /// Why (recorded in the audit log and store).
    #[arg(long)]
    pub reason: Option<String>,
    /// Write the certificate here instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `ssh-ca revoke`.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("what").required(true).multiple(false))]
pub struct RevokeArgs {
    /// Certificate serial number.
    #[arg(long, group = "what")]
    pub serial: Option<u64>,
    /// Every certificate with this key id.
    #[arg(long, group = "what")]
    pub key_id: Option<String>,
    /// A public key (file, or `-` for stdin): the key and all its certificates.
    #[arg(long, group = "what", value_name = "PUB")]
    pub key: Option<PathBuf>,
    /// Why (recorded).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `ssh-ca krl`.
#[derive(Debug, Args)]
pub struct KrlArgs {
    /// Write here (atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `ssh-ca sshd-config`.
#[derive(Debug, Args)]
pub struct SshdConfigArgs {
    /// Directory on the target where the trust files go.
    #[arg(long, default_value = "/etc/ssh", value_name = "DIR")]
    pub dir: PathBuf,
    /// Also write the trust files (target CA key, KRL) into --dir.
    #[arg(long)]
    pub write: bool,
}

/// `ssh-ca known-hosts`.
#[derive(Debug, Args)]
pub struct KnownHostsArgs {
    /// Host name pattern the host CA is trusted for.
    #[arg(long, default_value = "*", value_name = "PATTERN")]
    pub domain: String,
}

/// `ssh-ca issued`.
#[derive(Debug, Args)]
pub struct IssuedArgs {
    /// How many to show.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Only direct (break-glass) certificates, with who asked, why and their roles.
    #[arg(long)]
    pub break_glass: bool,
}

/// `ssh-ca shadow ...`.
#[derive(Debug, Subcommand)]
pub enum ShadowCommand {
    /// Sum up the shadow policy's differences (would newly deny, would newly allow, would
    /// change the certificate) by user, role and rule, with the latest example of each.
    Report(ShadowReportArgs),
}

/// `ssh-ca shadow report`.
#[derive(Debug, Args)]
pub struct ShadowReportArgs {
    /// Only decisions this recent.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub since: HumanDuration,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `ssh-ca audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check the hash chain; names the first altered, removed or truncated record. Then every
    /// chain in the store's audit index (each CA and bastion of a deployment on one store):
    /// its records, and that no head went backwards.
    Verify,
    /// Search the audit records of every instance in the store's audit index, newest first;
    /// prints each record's line as stored (JSON, one per line).
    Search(AuditSearchArgs),
}

/// `ssh-ca audit search`.
#[derive(Debug, Args)]
pub struct AuditSearchArgs {
    /// Only this event kind (e.g. `cert.issued`, `session.start`).
    #[arg(long, value_name = "KIND")]
    pub event: Option<String>,
    /// Only records this recent.
    #[arg(long, value_name = "DURATION")]
    pub since: Option<HumanDuration>,
    /// Only records containing this text (repeatable: all of them).
    #[arg(long = "contains", value_name = "TEXT")]
    pub contains: Vec<String>,
    /// Only this chain (an id from `ssh-ca audit verify`).
    #[arg(long, value_name = "ID")]
    pub chain: Option<String>,
    /// At most this many records.
    #[arg(long, default_value_t = 100, value_name = "N")]
    pub limit: usize,
}

/// `ssh-ca host ...`.
#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Enrol a host; prints a one-time join token alone on the last line.
    Add(HostAddArgs),
    /// List enrolled hosts.
    List,
    /// Remove a host: it can no longer renew.
    Remove {
        /// Host name.
        name: String,
    },
    /// On the host: fetch or renew its certificate from the CA's SSH API.
    Renew(RenewArgs),
}

/// `ssh-ca host add`.
#[derive(Debug, Args)]
pub struct HostAddArgs {
    /// Host name (first principal).
    pub name: String,
    /// Further names (repeatable).
    #[arg(long = "alias", value_name = "A")]
    pub aliases: Vec<String>,
    /// Lifetime of its certificates.
    #[arg(long, default_value = "7d", value_name = "DURATION")]
    pub ttl: HumanDuration,
    /// How long the join token stays valid.
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub token_ttl: HumanDuration,
}

/// `ssh-ca host renew`.
#[derive(Debug, Args)]
pub struct RenewArgs {
    /// The CA's SSH API, HOST:PORT (port defaults to 2200).
    #[arg(long, value_name = "ADDR")]
    pub ca: String,
    /// The host CA public key (file or key line) that the CA API's certificate must chain to.
    #[arg(long, value_name = "HOST_CA_PUB")]
    pub ca_key: String,
    /// The host's private key (e.g. /etc/ssh/ssh_host_ed25519_key).
    #[arg(long, value_name = "HOSTKEY")]
    pub key: PathBuf,
    /// Where the certificate goes (replaced atomically).
    #[arg(long, value_name = "CERTFILE")]
    pub out: PathBuf,
    /// One-time join token (first contact).
    #[arg(long, conflicts_with = "identity_token_file")]
    pub token: Option<String>,
    /// Hosts without `host add`: a file with the identity token the platform signed for
    /// this VM (`[[hosts_by_token]]` on the CA), `-` for stdin; fetch a fresh one per run.
    #[arg(long, value_name = "FILE")]
    pub identity_token_file: Option<PathBuf>,
    /// Command run after a new certificate is written (e.g. `systemctl reload ssh`).
    #[arg(long, value_name = "CMD")]
    pub reload_cmd: Option<String>,
    /// Renew even if more than a third of the lifetime is left.
    #[arg(long)]
    pub force: bool,
}
