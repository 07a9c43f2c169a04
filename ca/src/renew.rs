//! `ssh-ca host renew`: the host side of host certificates, for automation (a systemd timer).
//!
//! Runs on the host with no access to the CA's files: it proves possession of the host key by
//! authenticating with it, checks the CA API's own host certificate against the host CA key it
//! was given, and replaces the certificate file atomically only when a third or less of the
//! current certificate's lifetime is left (or `--force`). On any failure the old certificate
//! stays in place and the exit status is non-zero.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jitssh_core::ssh_key::certificate::CertType;
use jitssh_core::ssh_key::{Certificate, PrivateKey, PublicKey};
use jitssh_core::unix_now;

use crate::cli::RenewArgs;
use jitssh_authority::authority::write_atomic;
use ssh_ca::client::{CaClient, ClientError};

/// Why renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// A local file could not be read or written.
    #[error("{}: {why}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The host CA key given is not a public key.
    #[error("--ca-key: {0}")]
    CaKey(String),
    /// Talking to the CA failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The CA refused.
    #[error("the CA refused: {0}")]
    Refused(String),
    /// The CA answered with something that is not a valid certificate for our key.
    #[error("the CA returned an unusable certificate: {0}")]
    BadCertificate(String),
    /// The reload command failed (the new certificate is in place).
    #[error("certificate written, but the reload command failed: {0}")]
    Reload(String),
}

/// What renewal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenewOutcome {
    /// The certificate has enough life left.
    StillValid {
        /// Its expiry.
        valid_before: u64,
    },
    /// A new certificate was written.
    Renewed {
        /// Its serial.
        serial: u64,
        /// Its expiry.
        valid_before: u64,
    },
}

fn file_error(path: &Path, why: impl ToString) -> RenewError {
    RenewError::File {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Reads the host CA key from a file, or takes the argument as a key line.
pub(crate) fn host_ca_key(arg: &str) -> Result<PublicKey, RenewError> {
    let text = if Path::new(arg).exists() {
        std::fs::read_to_string(arg).map_err(|e| file_error(Path::new(arg), e))?
    } else {
        arg.to_string()
    };
    let line = text
        .lines()
        .map(str::trim)
        .find_map(|l| {
            l.find("ssh-")
                .or_else(|| l.find("ecdsa-"))
                .map(|at| &l[at..])
        })
        .ok_or_else(|| RenewError::CaKey("no public key found".into()))?;
    PublicKey::from_openssh(line).map_err(|e| RenewError::CaKey(e.to_string()))
}

/// Does the certificate at `path` for `key` still have more than a third of its life?
fn still_valid(path: &Path, key: &PublicKey, now: u64) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let cert = Certificate::from_openssh(text.trim()).ok()?;
    if cert.public_key() != key.key_data() || !cert.cert_type().is_host() {
        return None;
    }
    let lifetime = cert.valid_before().saturating_sub(cert.valid_after());
    let left = cert.valid_before().saturating_sub(now);
    (left * 3 > lifetime).then_some(cert.valid_before())
}

/// The identity token in `path` (`-`: stdin), at most the size the CA accepts.
fn identity_token(path: &Path) -> Result<Vec<u8>, RenewError> {
    use std::io::Read;
    let limit = jitssh_identity::jws::MAX_TOKEN_BYTES as u64 + 2;
    let mut token = Vec::new();
    let read = if path == Path::new("-") {
        std::io::stdin().take(limit).read_to_end(&mut token)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(limit).read_to_end(&mut token))
    };
    read.map_err(|e| file_error(path, e))?;
    if token.iter().all(u8::is_ascii_whitespace) {
        return Err(file_error(path, "no identity token in it"));
    }
    Ok(token)
}

/// Renews as `args` says.
pub async fn renew(args: &RenewArgs) -> Result<RenewOutcome, RenewError> {
    let key_text = std::fs::read_to_string(&args.key).map_err(|e| file_error(&args.key, e))?;
    let key = PrivateKey::from_openssh(&key_text)
        .map_err(|e| file_error(&args.key, format!("not an OpenSSH private key: {e}")))?;
    if key.is_encrypted() {
        return Err(file_error(&args.key, "the host key is encrypted"));
    }
    let public = key.public_key().clone();
    let host_ca = host_ca_key(&args.ca_key)?;
    if !args.force
        && let Some(valid_before) = still_valid(&args.out, &public, unix_now())
    {
        return Ok(RenewOutcome::StillValid { valid_before });
    }
    let client = CaClient::connect(
        &args.ca,
        host_ca.key_data().clone(),
        key,
        "host",
        Duration::from_secs(30),
    )
    .await?;
    let (command, stdin) = match (&args.token, &args.identity_token_file) {
        (Some(token), _) => (format!("join {}", shell_words::quote(token)), Vec::new()),
        (None, Some(path)) => ("join --token-file -".to_string(), identity_token(path)?),
        (None, None) => ("host-cert".to_string(), Vec::new()),
    };
    let output = client.exec(&command, &stdin).await?;
    client.close().await;
    if output.status != Some(0) {
        return Err(RenewError::Refused(output.error_line()));
    }
    let text = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let cert =
        Certificate::from_openssh(&text).map_err(|e| RenewError::BadCertificate(e.to_string()))?;
    check_certificate(&cert, &public, &host_ca)?;
    write_atomic(
        &args.out,
        format!("{text}\n").as_bytes(),
        jitssh_core::fsmode::PUBLIC_FILE,
    )
    .map_err(|e| file_error(&args.out, e))?;
    if let Some(command) = &args.reload_cmd {
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(command)
            .status()
            .map_err(|e| RenewError::Reload(e.to_string()))?;
        if !status.success() {
            return Err(RenewError::Reload(format!(
                "`{command}` exited with {status}"
            )));
        }
    }
    Ok(RenewOutcome::Renewed {
        serial: cert.serial(),
        valid_before: cert.valid_before(),
    })
}

/// The certificate must be a host certificate, for our key, from the host CA we trust.
fn check_certificate(
    cert: &Certificate,
    key: &PublicKey,
    host_ca: &PublicKey,
) -> Result<(), RenewError> {
    if cert.cert_type() != CertType::Host {
        return Err(RenewError::BadCertificate("not a host certificate".into()));
    }
    if cert.public_key() != key.key_data() {
        return Err(RenewError::BadCertificate(
            "it certifies another key".into(),
        ));
    }
    if cert.signature_key() != host_ca.key_data() || cert.verify_signature().is_err() {
        return Err(RenewError::BadCertificate(
            "not signed by the given host CA".into(),
        ));
    }
    Ok(())
}
