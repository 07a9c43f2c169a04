//! Keys and certificates made with the real `ssh-keygen`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::process::run_ok;
use crate::tools::tool;

/// An OpenSSH key pair on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPair {
    /// Private key file (mode 0600).
    pub private: PathBuf,
    /// Public key file (`<private>.pub`).
    pub public: PathBuf,
}

impl KeyPair {
    /// The pair whose private key is `private` and public key `<private>.pub`.
    pub fn from_private(private: impl Into<PathBuf>) -> Self {
        let private = private.into();
        let mut public = private.clone().into_os_string();
        public.push(".pub");
        Self {
            private,
            public: public.into(),
        }
    }

    /// The public key line (`ssh-ed25519 AAAA... comment`), without newline.
    pub fn public_line(&self) -> String {
        fs::read_to_string(&self.public)
            .unwrap_or_else(|e| panic!("read {}: {e}", self.public.display()))
            .trim()
            .to_owned()
    }

    /// Where `ssh-keygen -s` writes the certificate for this key
    /// (`<private>-cert.pub`), which is also where `ssh` looks for it by
    /// default.
    pub fn cert_path(&self) -> PathBuf {
        let mut cert = self.private.clone().into_os_string();
        cert.push("-cert.pub");
        cert.into()
    }
}

/// Generates an unencrypted ed25519 key `dir/name` (+ `dir/name.pub`) with
/// comment `name`.
///
/// # Panics
/// If ssh-keygen fails, e.g. because `dir/name` already exists.
pub fn keygen(dir: &Path, name: &str) -> KeyPair {
    let pair = KeyPair::from_private(dir.join(name));
    run_ok(
        Command::new(tool("ssh-keygen"))
            .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
            .arg(&pair.private),
    );
    pair
}

/// What to put in a certificate made by [`keygen_sign`].
#[derive(Clone, Debug, Default)]
pub struct SignOpts {
    /// Key identity (`-I`), logged by sshd as `ID <identity>`.
    pub identity: String,
    /// Principals (`-n`, comma-joined). Empty means "valid for any
    /// principal" for user certs (ssh-keygen's default).
    pub principals: Vec<String>,
    /// Host certificate (`-h`) instead of a user certificate.
    pub host: bool,
    /// Validity interval (`-V`), e.g. `"-5m:+1h"`, `"always:forever"`.
    pub validity: Option<String>,
    /// Serial number (`-z`).
    pub serial: Option<u64>,
    /// Certificate options (`-O`), e.g. `"clear"`, `"force-command=/bin/true"`.
    pub options: Vec<String>,
    /// Move the certificate here instead of leaving it at
    /// `<key>-cert.pub` (useful for several certs of the same key).
    pub output: Option<PathBuf>,
}

impl SignOpts {
    /// A user certificate with identity `identity` for `principals`.
    pub fn user(identity: &str, principals: &[&str]) -> Self {
        Self {
            identity: identity.to_owned(),
            principals: principals.iter().map(|p| (*p).to_owned()).collect(),
            ..Self::default()
        }
    }

    /// A host certificate with identity `identity` for `principals`
    /// (host names).
    pub fn host(identity: &str, principals: &[&str]) -> Self {
        Self {
            host: true,
            ..Self::user(identity, principals)
        }
    }

    /// Sets the validity interval (`-V`).
    pub fn validity(mut self, validity: &str) -> Self {
        self.validity = Some(validity.to_owned());
        self
    }

    /// Sets the serial number (`-z`).
    pub fn serial(mut self, serial: u64) -> Self {
        self.serial = Some(serial);
        self
    }

    /// Adds a certificate option (`-O`).
    pub fn option(mut self, option: &str) -> Self {
        self.options.push(option.to_owned());
        self
    }

    /// Sets where the certificate should end up.
    pub fn output(mut self, path: impl Into<PathBuf>) -> Self {
        self.output = Some(path.into());
        self
    }
}

/// Signs the public key `key_pub` with the CA private key `ca` using
/// `ssh-keygen -s`, returning the certificate's path (`<key>-cert.pub`, or
/// [`SignOpts::output`]). Meant for "foreign CA" certificates in negative
/// tests and for host certs.
///
/// # Panics
/// If ssh-keygen fails (its output is shown).
pub fn keygen_sign(ca: &Path, key_pub: &Path, opts: &SignOpts) -> PathBuf {
    let mut cmd = Command::new(tool("ssh-keygen"));
    cmd.arg("-q")
        .arg("-s")
        .arg(ca)
        .arg("-I")
        .arg(&opts.identity);
    if !opts.principals.is_empty() {
        cmd.arg("-n").arg(opts.principals.join(","));
    }
    if opts.host {
        cmd.arg("-h");
    }
    if let Some(validity) = &opts.validity {
        cmd.arg("-V").arg(validity);
    }
    if let Some(serial) = opts.serial {
        cmd.arg("-z").arg(serial.to_string());
    }
    for option in &opts.options {
        cmd.arg("-O").arg(option);
    }
    cmd.arg(key_pub);
    run_ok(&mut cmd);

    let name = key_pub.to_str().expect("UTF-8 key path");
    let cert = PathBuf::from(format!(
        "{}-cert.pub",
        name.strip_suffix(".pub").unwrap_or(name)
    ));
    match &opts.output {
        Some(out) if *out != cert => {
            fs::rename(&cert, out)
                .unwrap_or_else(|e| panic!("mv {} {}: {e}", cert.display(), out.display()));
            out.clone()
        }
        _ => cert,
    }
}

/// Human-readable certificate description: the output of `ssh-keygen -L -f`.
pub fn cert_info(cert: &Path) -> String {
    run_ok(
        Command::new(tool("ssh-keygen"))
            .arg("-L")
            .arg("-f")
            .arg(cert),
    )
    .stdout_str()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Scratch;

    #[test]
    fn keygen_and_sign() {
        let scratch = Scratch::new();
        let ca = keygen(scratch.path(), "ca");
        let user = keygen(scratch.path(), "user");
        assert!(user.public_line().starts_with("ssh-ed25519 "));
        assert!(user.public_line().ends_with(" user"));

        let opts = SignOpts::user("alice", &["root", "bob"])
            .validity("-5m:+1h")
            .serial(42);
        let cert = keygen_sign(&ca.private, &user.public, &opts);
        assert_eq!(cert, user.cert_path());
        let info = cert_info(&cert);
        assert!(
            info.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
            "{info}"
        );
        assert!(info.contains("Key ID: \"alice\""), "{info}");
        assert!(info.contains("Serial: 42"), "{info}");

        let host = keygen_sign(
            &ca.private,
            &user.public,
            &SignOpts::host("h", &["web01"]).output(scratch.file("host-cert.pub")),
        );
        assert!(cert_info(&host).contains("host certificate"));
    }
}
