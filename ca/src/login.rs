//! `ssh-ca login`: on the person's machine, fetch a certificate from the CA API with the
//! system `ssh` and install it without ever leaving a broken file behind.
//!
//! The system `ssh` does the talking, so the person's known_hosts (`@cert-authority` line),
//! passphrase prompts, agent and ssh_config all apply as they do for `ssh ca cert`. What this
//! adds: the answer is checked (a user certificate for this key) and written next to the key
//! through a temporary file and a rename, so a denial, a dropped connection or garbage never
//! touches the previous certificate (with `ssh ca cert > key-cert.pub` the shell truncated it
//! first). `--agent` then loads key and certificate into ssh-agent for exactly the
//! certificate's remaining lifetime.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use clap::Args;
use jitssh_core::duration::HumanDuration;
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::{Certificate, PrivateKey};
use jitssh_core::unix_now;

use jitssh_authority::authority::write_atomic;
use jitssh_core::fsmode::PUBLIC_FILE;

/// Longest answer accepted from the CA (a certificate is a few kilobytes at most).
const MAX_ANSWER: usize = 64 * 1024;

/// `ssh-ca login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The CA API as USER@HOST[:PORT] (port defaults to 2200).
    #[arg(long, value_name = "USER@HOST[:PORT]")]
    pub ca: String,
    /// Your private key; the certificate is written to KEY-cert.pub.
    #[arg(long, short = 'i', value_name = "KEY")]
    pub identity: Option<PathBuf>,
    /// Logins wanted (comma-separated); default: all your roles allow.
    #[arg(long, value_name = "LOGINS")]
    pub principals: Option<String>,
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
    #[arg(long, value_name = "ID", conflicts_with = "sso")]
    pub request: Option<String>,
    /// Sign in at your organisation's identity provider instead of using an enrolled key: the
    /// CA shows a URL and a code to enter in any browser, then certifies this key (connects as
    /// user `sso`, whatever --ca names).
    #[arg(long)]
    pub sso: bool,
    /// Also add key and certificate to ssh-agent, for the certificate's lifetime (ssh-add -t).
    #[arg(long)]
    pub agent: bool,
    /// An extra `ssh -o` option (repeatable), e.g. UserKnownHostsFile=~/.ssh/jitssh_known_hosts.
    #[arg(long = "ssh-option", short = 'o', value_name = "OPTION")]
    pub ssh_options: Vec<String>,
}

/// Where the CA API is: login name, host, port.
fn split_ca(ca: &str) -> Result<(String, String, String)> {
    let (user, rest) = ca
        .rsplit_once('@')
        .filter(|(user, rest)| !user.is_empty() && !rest.is_empty())
        .with_context(|| format!("--ca {ca:?}: expected USER@HOST[:PORT]"))?;
    let (dial, host) = ssh_ca::client::split_addr(rest);
    let port = dial.rsplit_once(':').map_or("2200", |(_, port)| port);
    if [user, host.as_str()]
        .iter()
        .any(|part| part.starts_with('-') || part.chars().any(char::is_whitespace))
    {
        bail!("--ca {ca:?}: expected USER@HOST[:PORT]");
    }
    Ok((user.to_string(), host, port.to_string()))
}

/// The person's default key: ~/.ssh/id_ed25519.
fn default_identity() -> Result<PathBuf> {
    let home = std::env::var_os("HOME").context("HOME is not set; give --identity")?;
    Ok(PathBuf::from(home).join(".ssh").join("id_ed25519"))
}

/// `KEY-cert.pub`, where ssh and ssh-add look for a key's certificate.
fn cert_path(key: &Path) -> PathBuf {
    let mut path = key.as_os_str().to_os_string();
    path.push("-cert.pub");
    PathBuf::from(path)
}

/// The `cert` (or, with `--sso`, `login`) command line sent to the CA API, each argument
/// quoted.
fn cert_command(args: &LoginArgs) -> String {
    let mut words = vec![if args.sso { "login" } else { "cert" }.to_string()];
    let mut push = |flag: &str, value: Option<String>| {
        if let Some(value) = value {
            words.push(flag.to_string());
            words.push(shell_words::quote(&value).into_owned());
        }
    };
    push("--principals", args.principals.clone());
    push("--ttl", args.ttl.map(|t| t.to_string()));
    push("--reason", args.reason.clone());
    push("--role", args.role.clone());
    push("--request", args.request.clone());
    words.join(" ")
}

/// Runs `ssh-ca login`; returns a line for the person.
pub fn login(args: &LoginArgs) -> Result<String> {
    let (user, host, port) = split_ca(&args.ca)?;
    // SSO sign-ins log in as `sso` (any key; the identity provider says who you are).
    let user = if args.sso { "sso".to_string() } else { user };
    let key_path = match &args.identity {
        Some(path) => path.clone(),
        None => default_identity()?,
    };
    let key_text = std::fs::read_to_string(&key_path)
        .with_context(|| format!("cannot read your key {}", key_path.display()))?;
    // The public half is readable even when the private half has a passphrase.
    let key = PrivateKey::from_openssh(&key_text)
        .with_context(|| format!("{}: not an OpenSSH private key", key_path.display()))?;
    let out = cert_path(&key_path);

    let mut ssh = Command::new("ssh");
    ssh.arg("-p").arg(&port).arg("-i").arg(&key_path);
    for option in &args.ssh_options {
        ssh.arg("-o").arg(option);
    }
    ssh.args(["-o", "IdentitiesOnly=yes", "-l"])
        .arg(&user)
        .arg("--")
        .arg(&host)
        .arg(cert_command(args))
        .stdin(Stdio::null())
        // The CA's messages (with --sso: the URL and code to sign in with) reach the person
        // as they come.
        .stderr(Stdio::inherit());
    let answer = ssh.output().context("cannot run ssh")?;
    if !answer.status.success() {
        bail!(
            "no certificate ({}); {} was left unchanged",
            match answer.status.code() {
                Some(255) => "ssh could not log in to the CA, see above".to_string(),
                Some(code) => format!("the CA refused with status {code}, see above"),
                None => "ssh was killed".to_string(),
            },
            out.display()
        );
    }
    if answer.stdout.len() > MAX_ANSWER {
        bail!(
            "the CA's answer is too long; {} left unchanged",
            out.display()
        );
    }
    let text = String::from_utf8_lossy(&answer.stdout).trim().to_string();
    let cert = Certificate::from_openssh(&text).map_err(|e| {
        anyhow::anyhow!(
            "the CA's answer is not a certificate ({e}); {} left unchanged",
            out.display()
        )
    })?;
    if cert.cert_type() != CertType::User || cert.public_key() != key.public_key().key_data() {
        bail!(
            "the CA returned a certificate that is not a user certificate for {}; {} left unchanged",
            key_path.display(),
            out.display()
        );
    }
    write_atomic(&out, format!("{text}\n").as_bytes(), PUBLIC_FILE)
        .with_context(|| format!("cannot write {}", out.display()))?;
    let left = cert.valid_before().saturating_sub(unix_now());
    let mut said = format!(
        "certificate serial {} for {} written to {} (valid for {})",
        cert.serial(),
        cert.valid_principals().join(","),
        out.display(),
        HumanDuration::from_secs(left)
    );
    if args.agent {
        add_to_agent(&key_path, left)?;
        said.push_str("; added to ssh-agent for as long");
    }
    Ok(said)
}

/// `ssh-add -t LEFT KEY`: ssh-add loads `KEY-cert.pub` with the key, and the agent forgets
/// both when the certificate expires.
fn add_to_agent(key: &Path, left: u64) -> Result<()> {
    if left == 0 {
        bail!("the certificate has already expired; not adding it to ssh-agent");
    }
    let status = Command::new("ssh-add")
        .arg("-t")
        .arg(left.to_string())
        .arg(key)
        .status()
        .context("cannot run ssh-add")?;
    if !status.success() {
        bail!("ssh-add failed ({status}); the certificate is written but not in the agent");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_addresses() {
        let parts = |ca: &str| split_ca(ca).ok();
        assert_eq!(
            parts("alice@ca.example"),
            Some(("alice".into(), "ca.example".into(), "2200".into()))
        );
        assert_eq!(
            parts("alice@127.0.0.1:2222"),
            Some(("alice".into(), "127.0.0.1".into(), "2222".into()))
        );
        assert_eq!(parts("ca.example"), None);
        assert_eq!(parts("@ca"), None);
        assert_eq!(parts("alice@-oProxyCommand=x"), None);
    }
}
