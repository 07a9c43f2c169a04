//! The commands of the CA's SSH API (`ssh -p 2200 alice@ca COMMAND`), parsed with clap so
//! `help` and `--help` work, and run synchronously against the [`Authority`].

use std::io::Write;
use std::net::IpAddr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use jitssh_core::duration::HumanDuration;
use jitssh_core::policy::{CertRequest, Denial, Grant};
use jitssh_core::ssh_key::{Certificate, HashAlg, PublicKey};
use jitssh_core::unix_now;

use super::Identity;
use jitssh_authority::authority::{Authority, IssueError};
use jitssh_authority::cert_text::{format_time, spec_summary};
use jitssh_authority::hosts::{self, HostError};
use jitssh_authority::requests::{self, Outcome, RequestError};
use jitssh_authority::session_cert::SessionCertRequest;

/// Longest command line accepted.
pub const MAX_COMMAND_LEN: usize = 4096;

/// The CA's SSH API. Run as `ssh -p 2200 <you>@<ca> COMMAND`.
#[derive(Debug, Parser)]
#[command(
    name = "ssh-ca-api",
    no_binary_name = true,
    disable_version_flag = true
)]
#[command(
    about = "The jitssh CA over SSH: `ssh -p 2200 <you>@<ca> COMMAND`",
    after_help = "Hosts connect as user `host` (join, host-cert); the bastion as user `bastion` (session-cert); people without an enrolled key as user `sso` (login); workloads as user `workload` (cert --token-file - with a JWT on stdin)."
)]
pub struct ApiCli {
    /// What to do.
    #[command(subcommand)]
    pub command: ApiCommand,
}

/// API commands.
#[derive(Debug, Subcommand)]
pub enum ApiCommand {
    /// Get a certificate for the key on stdin (or the key you authenticated with).
    Cert(CertArgs),
    /// Who you are, your roles and what each grants.
    Whoami,
    /// The user, host and target CA public keys.
    CaKeys,
    /// The current KRL (binary) for sshd's RevokedKeys.
    Krl,
    /// Ask for a role that needs approval.
    Request(RequestArgs),
    /// Your requests, and pending ones you may decide on.
    Requests,
    /// Approve a request (never your own).
    Approve(DecideArgs),
    /// Deny a request, with a reason.
    Deny(DecideArgs),
    /// Host first contact: spend a join token, get a host certificate (as user `host`); or,
    /// with `--token-file -`, get one with a signed identity token (`[[hosts_by_token]]`).
    Join {
        /// The one-time token from `ssh-ca host add`.
        #[arg(required_unless_present = "token_file", conflicts_with = "token_file")]
        token: Option<String>,
        /// Hosts without `host add`: an identity token signed by the host's platform (a cloud
        /// VM's instance identity token), read from stdin (`-`); the certificate is for the
        /// key you logged in with, named by the policy's `[[hosts_by_token]]` rule. Renew by
        /// sending a fresh token.
        #[arg(long, value_name = "-")]
        token_file: Option<String>,
    },
    /// Host renewal: a fresh certificate for the enrolled key you authenticated with.
    HostCert,
    /// The bastion asks for a per-session certificate (as user `bastion`).
    SessionCert(SessionCertArgs),
    /// Sign in at the organisation's identity provider, get a certificate for the key you
    /// connected with (as user `sso`: no enrolled key needed).
    Login(LoginArgs),
}

/// `login` (as user `sso`).
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Logins wanted (comma-separated); default: all your roles allow.
    #[arg(long, value_delimiter = ',')]
    pub principals: Option<Vec<String>>,
    /// Lifetime; default: the role's default_ttl.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<HumanDuration>,
    /// Why (ticket, incident); some roles require it.
    #[arg(long)]
    pub reason: Option<String>,
    /// Use only this role.
    #[arg(long)]
    pub role: Option<String>,
}

/// `cert`.
#[derive(Debug, Args)]
pub struct CertArgs {
    /// Logins wanted (comma-separated); default: all your roles allow.
    #[arg(long, value_delimiter = ',')]
    pub principals: Option<Vec<String>>,
    /// Lifetime; default: the role's default_ttl.
    #[arg(long, value_name = "DURATION")]
    pub ttl: Option<HumanDuration>,
    /// Why (ticket, incident); some roles require it.
    #[arg(long)]
    pub reason: Option<String>,
    /// Use only this role.
    #[arg(long)]
    pub role: Option<String>,
    /// Issue under an approved access request.
    #[arg(long, value_name = "ID")]
    pub request: Option<String>,
    /// Sign nothing: show what would be issued and which rule decided each part.
    #[arg(long)]
    pub dry_run: bool,
    /// Break-glass, for when the bastion is down: a certificate the targets accept directly
    /// (signed by the target CA), at most 1h, marked break-glass; only roles with
    /// `direct = true`.
    #[arg(long)]
    pub direct: bool,
    /// Workloads (as user `workload`): a JWT from the CI platform or Kubernetes, read from
    /// stdin (`-`), proves who the workload is; the certificate is for the key you logged in
    /// with.
    #[arg(long, value_name = "-")]
    pub token_file: Option<String>,
}

/// `request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// The role wanted.
    #[arg(long)]
    pub role: String,
    /// How long access should last once approved.
    #[arg(long, value_name = "DURATION")]
    pub ttl: HumanDuration,
    /// Why.
    #[arg(long)]
    pub reason: String,
}

/// `approve` / `deny`.
#[derive(Debug, Args)]
pub struct DecideArgs {
    /// The request id.
    pub id: String,
    /// Why (required to deny).
    #[arg(long)]
    pub reason: Option<String>,
}

/// `session-cert` (stdin: the person's certificate line, then the session public key line).
#[derive(Debug, Args)]
pub struct SessionCertArgs {
    /// Login on the target.
    #[arg(long)]
    pub login: String,
    /// Target name.
    #[arg(long)]
    pub target: String,
    /// Session id.
    #[arg(long)]
    pub session: String,
    /// The person's client address.
    #[arg(long)]
    pub client: Option<IpAddr>,
    /// The bastion's address as the target sees it.
    #[arg(long)]
    pub source_address: Option<IpAddr>,
    /// Lifetime (capped at 10m).
    #[arg(long, default_value = "5m")]
    pub ttl: HumanDuration,
}

impl ApiCommand {
    /// Does this command read stdin?
    pub fn reads_stdin(&self) -> bool {
        matches!(self, ApiCommand::Cert(args) if !args.dry_run || args.token_file.is_some())
            || matches!(self, ApiCommand::SessionCert(_))
            || matches!(
                self,
                ApiCommand::Join {
                    token_file: Some(_),
                    ..
                }
            )
    }
}

/// What a command produced: stdout bytes, one-line stderr, exit status.
#[derive(Debug, Default)]
pub struct CommandOutput {
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: Vec<u8>,
    /// Exit status carried back to the client.
    pub status: u32,
}

impl CommandOutput {
    /// Success with `text` on stdout.
    pub fn ok_text(text: String) -> Self {
        Self::ok(text)
    }

    pub(super) fn ok(stdout: impl Into<Vec<u8>>) -> Self {
        CommandOutput {
            stdout: stdout.into(),
            ..Default::default()
        }
    }

    /// A failure: one line on stderr, exit status 1.
    pub fn fail(message: impl AsRef<str>) -> Self {
        let line: String = message
            .as_ref()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        CommandOutput {
            stderr: format!("ssh-ca: {line}\n").into_bytes(),
            status: 1,
            ..Default::default()
        }
    }
}

/// Parses an exec request's command line; help and usage errors come back as output.
pub fn parse(line: &[u8]) -> Result<ApiCommand, CommandOutput> {
    if line.len() > MAX_COMMAND_LEN {
        return Err(CommandOutput::fail(format!(
            "command longer than {MAX_COMMAND_LEN} bytes"
        )));
    }
    let text =
        std::str::from_utf8(line).map_err(|_| CommandOutput::fail("command is not UTF-8"))?;
    let words = shell_words::split(text)
        .map_err(|e| CommandOutput::fail(format!("cannot parse command: {e}")))?;
    match ApiCli::try_parse_from(words) {
        Ok(cli) => Ok(cli.command),
        Err(err) => {
            use clap::error::ErrorKind;
            let rendered = err.render().to_string();
            Err(match err.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => CommandOutput::ok(rendered),
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => CommandOutput {
                    stdout: rendered.into_bytes(),
                    status: 2,
                    ..Default::default()
                },
                _ => {
                    let line = crate::edge::clap_error_line(&err);
                    let mut out = CommandOutput::fail(format!("{line} (try: help)"));
                    out.status = 2;
                    out
                }
            })
        }
    }
}

/// Runs `command` for `identity` with `stdin` (already collected; empty when none was sent).
pub fn run(
    authority: &Authority,
    identity: &Identity,
    command: ApiCommand,
    stdin: &[u8],
    peer: Option<IpAddr>,
) -> CommandOutput {
    match (identity, command) {
        (_, ApiCommand::CaKeys) => ca_keys(authority),
        (_, ApiCommand::Krl) => match authority.krl() {
            Ok(krl) => CommandOutput::ok(krl.encode()),
            Err(err) => internal(&err),
        },
        (Identity::User { name, key }, ApiCommand::Cert(args)) => {
            cert(authority, name, key, &args, stdin)
        }
        (Identity::User { name, key }, ApiCommand::Whoami) => whoami(authority, name, key),
        (Identity::User { name, .. }, ApiCommand::Request(args)) => {
            match requests::create(authority, name, &args.role, args.ttl, &args.reason) {
                Ok(request) => CommandOutput::ok(format!("{}\n", request.id)),
                Err(err) => request_error(&err),
            }
        }
        (Identity::User { name, .. }, ApiCommand::Requests) => list_requests(authority, name),
        (Identity::User { name, .. }, ApiCommand::Approve(args)) => {
            decide(authority, name, &args, true)
        }
        (Identity::User { name, .. }, ApiCommand::Deny(args)) => {
            decide(authority, name, &args, false)
        }
        (
            Identity::Host { key },
            ApiCommand::Join {
                token: Some(token), ..
            },
        ) => host_result(hosts::join(authority, &token, key, peer)),
        (Identity::Host { key }, ApiCommand::HostCert) => host_result(hosts::renew(authority, key)),
        (Identity::Bastion { .. }, ApiCommand::SessionCert(args)) => {
            session_cert(authority, &args, stdin, peer)
        }
        (_, ApiCommand::Login(_)) => CommandOutput::fail(
            "login signs in at the identity provider as user `sso`: ssh -p 2200 sso@<ca> login",
        ),
        (Identity::Sso { .. }, _) => {
            CommandOutput::fail("as user `sso` you may run: login, ca-keys, krl")
        }
        (Identity::User { .. }, ApiCommand::Join { .. } | ApiCommand::HostCert) => {
            CommandOutput::fail("host commands are for user `host`: ssh host@<ca> ...")
        }
        (Identity::User { .. }, ApiCommand::SessionCert(_)) => {
            CommandOutput::fail("session-cert is for the bastion's identity")
        }
        (Identity::Host { .. }, _) => CommandOutput::fail(
            "as user `host` you may run: join TOKEN, join --token-file - (an identity token on stdin), host-cert, ca-keys, krl",
        ),
        (Identity::Bastion { .. }, _) => {
            CommandOutput::fail("as user `bastion` you may run: session-cert, ca-keys, krl")
        }
        (Identity::Workload { .. }, _) => CommandOutput::fail(
            "as user `workload` you may run: cert --token-file - (a JWT on stdin), ca-keys, krl",
        ),
    }
}

fn internal(err: &dyn std::fmt::Display) -> CommandOutput {
    tracing::error!(%err, "API command failed");
    CommandOutput::fail(format!("internal error: {err}"))
}

pub(super) fn issue_error(err: &IssueError) -> CommandOutput {
    match err {
        IssueError::Denied(denial) => CommandOutput::fail(format!("denied: {denial}")),
        other => internal(other),
    }
}

fn request_error(err: &RequestError) -> CommandOutput {
    match err {
        RequestError::Refused(why) => CommandOutput::fail(why),
        RequestError::Internal(err) => issue_error(err),
    }
}

pub(super) fn host_result(
    result: Result<jitssh_authority::authority::Issued, HostError>,
) -> CommandOutput {
    match result {
        Ok(issued) => CommandOutput::ok(format!("{}\n", issued.line)),
        Err(HostError::Refused(why)) => CommandOutput::fail(why),
        Err(HostError::Internal(err)) => issue_error(&err),
    }
}

fn ca_keys(authority: &Authority) -> CommandOutput {
    let keys = authority.keys();
    CommandOutput::ok(format!(
        "user-ca {}\nhost-ca {}\ntarget-ca {}\n",
        keys.user.public_line(),
        keys.host.public_line(),
        keys.target.public_line()
    ))
}

/// The key to certify: the first key line on stdin, or the authenticated key when stdin is empty.
fn subject_key(stdin: &[u8], authenticated: &PublicKey) -> Result<PublicKey, String> {
    let text =
        std::str::from_utf8(stdin).map_err(|_| "stdin is not a UTF-8 public key".to_string())?;
    match text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
    {
        None => Ok(authenticated.clone()),
        Some(line) => {
            PublicKey::from_openssh(line).map_err(|e| format!("malformed public key on stdin: {e}"))
        }
    }
}

fn cert(
    authority: &Authority,
    user: &str,
    key: &PublicKey,
    args: &CertArgs,
    stdin: &[u8],
) -> CommandOutput {
    if args.token_file.is_some() {
        return CommandOutput::fail(
            "--token-file is for workloads: ssh workload@<ca> cert --token-file - < token.jwt",
        );
    }
    let subject = match subject_key(stdin, key) {
        Ok(subject) => subject,
        Err(why) => return CommandOutput::fail(why),
    };
    let approved = match &args.request {
        Some(id) => match requests::approved_window(authority, id, user) {
            Ok(window) => Some(window),
            Err(err) => return request_error(&err),
        },
        None => None,
    };
    let request = CertRequest {
        principals: args.principals.clone(),
        ttl: args.ttl,
        reason: args.reason.clone(),
        role: args.role.clone(),
        approved,
        direct: args.direct,
    };
    if args.dry_run {
        let (planned, shadow) =
            authority.plan_with_shadow(user, subject.key_data().clone(), &request);
        return dry_run_output(planned, shadow);
    }
    if let Some(id) = &args.request
        && let Err(err) = requests::take_certificate(authority, id, user)
    {
        return request_error(&err);
    }
    match authority.issue_for_user(user, subject.key_data().clone(), &request) {
        Ok(issued) => CommandOutput::ok(format!("{}\n", issued.line)),
        Err(err) => {
            if let Some(id) = &args.request
                && let Err(undo) = requests::return_certificate(authority, id)
            {
                tracing::error!(%undo, request = %id, "cannot give back an unused approval");
            }
            issue_error(&err)
        }
    }
}

/// The answer to `cert --dry-run`: what would be issued (or the denial, on stderr), and,
/// with a shadow policy, what the shadow policy would decide instead (on stdout).
pub(super) fn dry_run_output(
    planned: Result<(Grant, jitssh_core::cert::CertSpec), Denial>,
    shadow: Option<Result<Grant, Denial>>,
) -> CommandOutput {
    let shadow = shadow.map(|s| shadow_text(planned.as_ref().map(|(grant, _)| grant), &s));
    match planned {
        Ok((grant, spec)) => {
            let mut text = dry_run_text(&grant, &spec);
            text.push_str(shadow.as_deref().unwrap_or(""));
            CommandOutput::ok(text)
        }
        Err(denial) => {
            let mut out = CommandOutput::fail(format!("denied: {denial}"));
            out.stdout = shadow.unwrap_or_default().into_bytes();
            out
        }
    }
}

/// The shadow policy's decision beside the enforced one, for `--dry-run`.
fn shadow_text(enforced: Result<&Grant, &Denial>, shadow: &Result<Grant, Denial>) -> String {
    use jitssh_core::policy::shadow::{ShadowKind, compare};
    let head = "shadow policy (not enforced):";
    let enforced = enforced.cloned().map_err(Clone::clone);
    let Some(diff) = compare(&enforced, shadow) else {
        return format!("{head} the same decision\n");
    };
    let Ok(grant) = shadow else {
        return format!("{head} would deny: {}\n", diff.rule);
    };
    let mut out = match diff.kind {
        ShadowKind::WouldChange => {
            format!(
                "{head} would issue it with another {}:\n",
                diff.changed.join(", ")
            )
        }
        _ => format!("{head} would allow it:\n"),
    };
    for decision in &grant.trace {
        out.push_str(&format!(
            "  {:<15} {:<30} <- {}\n",
            decision.part, decision.value, decision.rule
        ));
    }
    out
}

pub(super) fn dry_run_text(grant: &Grant, spec: &jitssh_core::cert::CertSpec) -> String {
    let mut out = String::from("dry run: nothing was signed; this certificate would be issued:\n");
    out.push_str(&spec_summary(spec));
    out.push_str("decided by:\n");
    for decision in &grant.trace {
        out.push_str(&format!(
            "  {:<15} {:<30} <- {}\n",
            decision.part, decision.value, decision.rule
        ));
    }
    out
}

fn whoami(authority: &Authority, user: &str, key: &PublicKey) -> CommandOutput {
    let policy = authority.policy();
    let Some(found) = policy.user(user) else {
        return CommandOutput::fail(format!("unknown user {user:?}"));
    };
    let mut out = format!("user {user}\nkey {}\n", key.fingerprint(HashAlg::Sha256));
    for role_name in &found.roles {
        let Some(role) = policy.role(role_name) else {
            continue;
        };
        let logins: Vec<String> = role
            .logins
            .iter()
            .map(|l| l.replace("{user}", user))
            .collect();
        out.push_str(&format!(
            "role {}: logins {}; hosts {}; max_ttl {}; default_ttl {}",
            role.name,
            logins.join(","),
            if role.hosts.is_empty() {
                "(none)".to_string()
            } else {
                role.hosts.join(",")
            },
            role.max_ttl,
            policy.default_ttl(role)
        ));
        if role.require_reason {
            out.push_str("; reason required");
        }
        if role.direct {
            out.push_str("; break-glass: cert --direct (at most 1h)");
        }
        if role.approvals > 0 {
            out.push_str(&format!(
                "; {} approval(s) from {}",
                role.approvals,
                role.approvers.join(",")
            ));
        }
        if let Some(hours) = &role.allowed_hours {
            out.push_str(&format!("; only {hours}"));
        }
        out.push('\n');
    }
    CommandOutput::ok(out)
}

fn list_requests(authority: &Authority, user: &str) -> CommandOutput {
    let visible = match requests::visible(authority, user) {
        Ok(visible) => visible,
        Err(err) => return request_error(&err),
    };
    let now = unix_now();
    let mut out = Vec::new();
    let _ = writeln!(
        out,
        "{:<20}  {:<12}  {:<12}  {:<9}  {:<9}  {:<6}  REASON",
        "ID", "ROLE", "REQUESTER", "STATUS", "APPROVALS", "TTL"
    );
    for r in visible {
        let _ = writeln!(
            out,
            "{:<20}  {:<12}  {:<12}  {:<9}  {:<9}  {:<6}  {}",
            r.id,
            r.role,
            r.requester,
            r.status(now).to_string(),
            format!("{}/{}", r.approvals.len(), r.approvals_needed),
            HumanDuration::from_secs(r.ttl_secs).to_string(),
            r.reason
        );
    }
    CommandOutput::ok(out)
}

fn decide(authority: &Authority, user: &str, args: &DecideArgs, approve: bool) -> CommandOutput {
    match requests::decide(authority, &args.id, user, approve, args.reason.as_deref()) {
        Ok((request, Outcome::Granted)) => CommandOutput::ok(format!(
            "approved {}: access granted to {} for role {} until {}\n",
            request.id,
            request.requester,
            request.role,
            format_time(request.approved_at.unwrap_or(0) + request.ttl_secs)
        )),
        Ok((request, Outcome::Approved { have, need })) => CommandOutput::ok(format!(
            "approved {} ({have} of {need} approvals)\n",
            request.id
        )),
        Ok((request, Outcome::Denied)) => CommandOutput::ok(format!("denied {}\n", request.id)),
        Err(err) => request_error(&err),
    }
}

fn session_cert(
    authority: &Authority,
    args: &SessionCertArgs,
    stdin: &[u8],
    peer: Option<IpAddr>,
) -> CommandOutput {
    let Ok(text) = std::str::from_utf8(stdin) else {
        return CommandOutput::fail("stdin is not UTF-8");
    };
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let (Some(cert_line), Some(key_line)) = (lines.next(), lines.next()) else {
        return CommandOutput::fail(
            "stdin must hold the user's certificate line and the session public key line",
        );
    };
    let user_cert = match Certificate::from_openssh(cert_line) {
        Ok(cert) => cert,
        Err(err) => return CommandOutput::fail(format!("malformed user certificate: {err}")),
    };
    let subject = match PublicKey::from_openssh(key_line) {
        Ok(key) => key,
        Err(err) => return CommandOutput::fail(format!("malformed session key: {err}")),
    };
    let request = SessionCertRequest {
        user_cert,
        client: args.client,
        login: args.login.clone(),
        target: args.target.clone(),
        session_id: args.session.clone(),
        subject: subject.key_data().clone(),
        source_address: args.source_address.or(peer),
        ttl: Duration::from_secs(args.ttl.as_secs()),
    };
    match authority.issue_session_cert(&request, "bastion") {
        Ok(issued) => CommandOutput::ok(format!("{}\n", issued.line)),
        Err(err) => issue_error(&err),
    }
}
