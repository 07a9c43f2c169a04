//! `ssh-ca ssh-config`: the client side of the fleet in one command, like `step ssh config`.
//!
//! It prints (or with `--write` installs, each file atomically) what a person's machine needs:
//! the known_hosts `@cert-authority` line for the host CA, a `Host` block per target (or
//! pattern) with `ProxyJump` to the bastion, and the `Include` line for `~/.ssh/config`;
//! `--format putty` gives PuTTY's host-CA entry (`~/.putty/sshhostcas/`), and
//! `--plain-host-keys` pinned host-key lines for clients that cannot verify host certificates
//! (paramiko, Fabric).
//!
//! The trust root is the host CA public key. It comes from the CA's own files (the operator
//! runs this on the CA machine, or anyone runs it with `--host-ca` and the public key they got
//! from the operator), never from the network: asking the CA API for it would mean trusting
//! the API's host key on first use, the very thing this output is meant to remove.
//! `--plain-host-keys` does reach the bastion, but accepts only a host certificate signed by
//! that CA and naming the host, and prints the key it certifies.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use clap::{Args, ValueEnum};
use jitssh_authority::authority::write_atomic;
use jitssh_authority::config::CaConfig;
use jitssh_core::cert::{self, Expectations};
use jitssh_core::keys::CaKeys;
use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::{Algorithm, PublicKey};
use jitssh_core::unix_now;
use russh::keys::PublicKeyOrCertificate;

use jitssh_core::fsmode::PUBLIC_FILE;

/// The name of PuTTY's host-CA entry and of the directory under `~/.ssh`.
const NAME: &str = "jitssh";

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// OpenSSH: known_hosts, ssh_config, Include.
    Openssh,
    /// PuTTY: a host-CA entry (~/.putty/sshhostcas/jitssh).
    Putty,
}

/// `ssh-ca ssh-config`.
#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// The bastion, HOST[:PORT] (port defaults to 22).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub bastion: String,
    /// Your name at the bastion (default: ssh's, your local user name).
    #[arg(long)]
    pub user: Option<String>,
    /// A target reached through the bastion (repeatable).
    #[arg(long = "target", value_name = "NAME")]
    pub targets: Vec<String>,
    /// A host pattern reached through the bastion, e.g. '*.internal' (repeatable).
    #[arg(long = "pattern", value_name = "PATTERN")]
    pub patterns: Vec<String>,
    /// Host names the host CA is trusted for.
    #[arg(long, default_value = "*", value_name = "PATTERN")]
    pub domain: String,
    /// The host CA public key (file or key line); default: this CA's own.
    #[arg(long, value_name = "HOST_CA_PUB")]
    pub host_ca: Option<String>,
    /// Which client.
    #[arg(long, value_enum, default_value_t = Format::Openssh)]
    pub format: Format,
    /// Print pinned host-key lines (the bastion's key, checked against the host CA) for
    /// clients that cannot verify host certificates.
    #[arg(long)]
    pub plain_host_keys: bool,
    /// Install the files instead of printing them.
    #[arg(long)]
    pub write: bool,
    /// Where to install: default ~/.ssh (openssh) or ~/.putty (putty).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// A host name, pattern or user name that goes into a config file: no whitespace, quotes,
/// commas or control characters, so it cannot start another directive.
fn checked<'a>(what: &str, value: &'a str) -> Result<&'a str> {
    let bad = value.is_empty()
        || value.starts_with('-')
        || value
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | ',' | '#'));
    if bad {
        bail!("{what} {value:?}: expected a host name or pattern without spaces or quotes");
    }
    Ok(value)
}

/// `path` for an ssh_config line, quoted if it has spaces.
fn config_path(path: &Path) -> String {
    let text = path.display().to_string();
    if text.contains(char::is_whitespace) {
        format!("\"{text}\"")
    } else {
        text
    }
}

/// The bastion as (host, port).
fn bastion_addr(bastion: &str) -> Result<(String, u16)> {
    let (host, port) = match bastion.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => (
            host.trim_matches(['[', ']']),
            port.parse::<u16>()
                .with_context(|| format!("--bastion {bastion:?}: bad port"))?,
        ),
        _ => (bastion.trim_matches(['[', ']']), 22),
    };
    Ok((checked("--bastion", host)?.to_string(), port))
}

/// known_hosts' name for `host` at `port`.
fn known_hosts_name(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Runs `ssh-ca ssh-config`.
pub fn ssh_config(config: &CaConfig, args: &SshConfigArgs) -> Result<()> {
    let host_ca = match &args.host_ca {
        Some(arg) => crate::renew::host_ca_key(arg)?,
        None => CaKeys::load(&config.data_dir)?.host.public_key(),
    };
    let domain = checked("--domain", &args.domain)?;
    let (bastion, port) = bastion_addr(&args.bastion)?;
    if let Some(user) = &args.user {
        checked("--user", user)?;
    }
    for name in args.targets.iter().chain(&args.patterns) {
        checked("--target/--pattern", name)?;
    }
    if args.plain_host_keys {
        return plain_host_keys(&host_ca, &bastion, port, &args.targets);
    }
    match args.format {
        Format::Openssh => openssh(args, &host_ca, domain, &bastion, port),
        Format::Putty => putty(args, &host_ca, domain),
    }
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .context("HOME is not set; give --dir")
}

fn openssh(
    args: &SshConfigArgs,
    host_ca: &PublicKey,
    domain: &str,
    bastion: &str,
    port: u16,
) -> Result<()> {
    let ssh_dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => home()?.join(".ssh"),
    };
    let ours = ssh_dir.join(NAME);
    let known_hosts_path = ours.join("known_hosts");
    let config_file = ours.join("config");
    let ca_line = host_ca
        .to_openssh()
        .context("cannot encode the host CA key")?;
    let known_hosts = format!("@cert-authority {domain} {ca_line}\n");
    let jump = match &args.user {
        Some(user) => format!("{user}@{bastion}:{port}"),
        None => format!("{bastion}:{port}"),
    };
    let trust = format!(
        "    UserKnownHostsFile {} ~/.ssh/known_hosts\n",
        config_path(&known_hosts_path)
    );
    let mut text = String::from(
        "# Written by `ssh-ca ssh-config`: the hosts behind the jitssh bastion, reached\n\
         # through it (ProxyJump), and the host CA that vouches for them and for the bastion.\n",
    );
    text.push_str(&format!("Host {bastion}\n{trust}"));
    let behind: Vec<&str> = args
        .targets
        .iter()
        .chain(&args.patterns)
        .map(String::as_str)
        .collect();
    if !behind.is_empty() {
        text.push_str(&format!(
            "Host {}\n    ProxyJump {jump}\n{trust}",
            behind.join(" ")
        ));
    }
    let include = format!("Include {}", config_path(&config_file));
    if !args.write {
        println!("# {}", known_hosts_path.display());
        print!("{known_hosts}");
        println!("\n# {}", config_file.display());
        print!("{text}");
        println!("\n# at the top of {}", ssh_dir.join("config").display());
        println!("{include}");
        return Ok(());
    }
    std::fs::create_dir_all(&ours).with_context(|| format!("cannot create {}", ours.display()))?;
    write_atomic(&known_hosts_path, known_hosts.as_bytes(), PUBLIC_FILE)
        .with_context(|| format!("cannot write {}", known_hosts_path.display()))?;
    write_atomic(&config_file, text.as_bytes(), PUBLIC_FILE)
        .with_context(|| format!("cannot write {}", config_file.display()))?;
    let main_config = ssh_dir.join("config");
    let current = match std::fs::read_to_string(&main_config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", main_config.display())),
    };
    if !current.lines().any(|line| line.trim() == include) {
        // First in the file: an Include after a `Host` line would apply to that host only.
        let updated = format!("{include}\n\n{current}");
        write_atomic(&main_config, updated.as_bytes(), 0o600)
            .with_context(|| format!("cannot write {}", main_config.display()))?;
    }
    eprintln!(
        "wrote {} and {}; {} includes it",
        known_hosts_path.display(),
        config_file.display(),
        main_config.display()
    );
    Ok(())
}

/// PuTTY's host-CA record (`~/.putty/sshhostcas/NAME`, PuTTY 0.78: `PublicKey` is the key
/// blob in base64, `Validity` the percent-encoded host expression, then the RSA signature
/// kinds the CA may use).
fn putty(args: &SshConfigArgs, host_ca: &PublicKey, domain: &str) -> Result<()> {
    let blob = host_ca
        .to_bytes()
        .context("cannot encode the host CA key")?;
    let rsa = matches!(host_ca.algorithm(), Algorithm::Rsa { .. });
    let record = format!(
        "PublicKey={}\nValidity={}\nPermitRSASHA1=0\nPermitRSASHA256={}\nPermitRSASHA512={}\n",
        base64::engine::general_purpose::STANDARD.encode(blob),
        percent_encode(domain),
        u8::from(rsa),
        u8::from(rsa),
    );
    let putty_dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => home()?.join(".putty"),
    };
    let path = putty_dir.join("sshhostcas").join(NAME);
    if !args.write {
        println!("# {}", path.display());
        print!("{record}");
        return Ok(());
    }
    let dir = putty_dir.join("sshhostcas");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_atomic(&path, record.as_bytes(), PUBLIC_FILE)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// PuTTY's percent-encoding of stored strings: `%`, controls and non-ASCII as `%XX`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b == b'%' || !(b' '..=b'~').contains(&b) {
                format!("%{b:02X}")
            } else {
                char::from(b).to_string()
            }
        })
        .collect()
}

/// Prints `[bastion]:port KEY` and `TARGET KEY` lines with the bastion's host key, fetched
/// from the bastion and accepted only inside a host certificate from `host_ca` naming the
/// bastion. The targets get the same key: through the bastion, their SSH is answered by it.
fn plain_host_keys(
    host_ca: &PublicKey,
    bastion: &str,
    port: u16,
    targets: &[String],
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let key = runtime.block_on(certified_host_key(host_ca, bastion, port))?;
    let line = PublicKey::new(key.key_data().clone(), "")
        .to_openssh()
        .context("cannot encode the host key")?;
    println!("{} {line}", known_hosts_name(bastion, port));
    for target in targets {
        println!("{target} {line}");
    }
    Ok(())
}

struct Capture {
    host_ca: PublicKey,
    name: String,
    seen: Arc<Mutex<Result<PublicKey, String>>>,
}

impl russh::client::Handler for Capture {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let verdict = match key {
            PublicKeyOrCertificate::PublicKey { .. } => {
                Err("it presented a plain host key, not a host certificate".to_string())
            }
            PublicKeyOrCertificate::Certificate(certificate) => cert::verify(
                certificate,
                &Expectations {
                    trusted_cas: std::slice::from_ref(self.host_ca.key_data()),
                    cert_type: CertType::Host,
                    now: unix_now(),
                    principal: &self.name,
                    peer: None,
                },
            )
            .map(|()| PublicKey::new(certificate.public_key().clone(), ""))
            .map_err(|rejection| rejection.to_string()),
        };
        let ok = verdict.is_ok();
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = verdict;
        Ok(ok)
    }
}

async fn certified_host_key(host_ca: &PublicKey, host: &str, port: u16) -> Result<PublicKey> {
    let mut config = russh::client::Config::default();
    config.preferred.host_key_certificates = std::borrow::Cow::Owned(vec![
        Algorithm::Ed25519,
        Algorithm::Ecdsa {
            curve: jitssh_core::ssh_key::EcdsaCurve::NistP256,
        },
    ]);
    let seen = Arc::new(Mutex::new(Err("no answer".to_string())));
    let capture = Capture {
        host_ca: host_ca.clone(),
        name: host.to_string(),
        seen: seen.clone(),
    };
    let connecting = russh::client::connect(Arc::new(config), (host, port), capture);
    let result = tokio::time::timeout(Duration::from_secs(20), connecting).await;
    let verdict = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
    match result {
        Err(_) => bail!("{host}:{port} did not answer within 20s"),
        Ok(Ok(handle)) => {
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, "", "")
                .await;
            verdict.map_err(|why| anyhow::anyhow!("{host}:{port} is not trusted: {why}"))
        }
        Ok(Err(err)) => match verdict {
            Err(why) if why != "no answer" => bail!("{host}:{port} is not trusted: {why}"),
            _ => bail!("cannot reach {host}:{port}: {err}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_inject_directives() {
        assert!(checked("x", "web01").is_ok());
        assert!(checked("x", "*.internal").is_ok());
        assert!(checked("x", "web01\n    ProxyCommand sh").is_err());
        assert!(checked("x", "web01 #").is_err());
        assert!(checked("x", "-oProxyCommand=x").is_err());
        assert!(checked("x", "").is_err());
    }

    #[test]
    fn addresses_and_encodings() {
        assert_eq!(
            bastion_addr("bastion:2222").unwrap(),
            ("bastion".into(), 2222)
        );
        assert_eq!(bastion_addr("bastion").unwrap(), ("bastion".into(), 22));
        assert!(bastion_addr("bastion:x").is_err());
        assert_eq!(known_hosts_name("b", 22), "b");
        assert_eq!(known_hosts_name("b", 2222), "[b]:2222");
        assert_eq!(percent_encode("*.a%b"), "*.a%25b");
    }
}
