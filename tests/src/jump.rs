//! `ssh -J` through the bastion with stock OpenSSH: an ssh_config that holds what the jump's
//! own `ssh` needs too (OpenSSH passes `-F` to the ProxyJump `ssh`, but not `-o` options),
//! trusting hosts only through the host CA's `@cert-authority` line (no TOFU).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bastion::Bastion;
use crate::ca::CaFixture;
use crate::keys::KeyPair;
use crate::tools::tool;

/// An ssh_config for `key` (and its certificate) with `StrictHostKeyChecking yes` and a
/// known_hosts file holding only `@cert-authority * <host CA>`.
pub struct JumpConfig {
    /// The ssh_config file (`ssh -F`).
    pub path: PathBuf,
    /// The bastion's port on 127.0.0.1.
    pub bastion_port: u16,
}

impl JumpConfig {
    /// Writes `<name>.ssh_config` and `<name>.known_hosts` into `dir` for `key`.
    pub fn new(dir: &Path, name: &str, ca: &CaFixture, bastion: &Bastion, key: &KeyPair) -> Self {
        let host_ca = std::fs::read_to_string(ca.ca_pub_file("host")).expect("host CA key");
        let known_hosts = dir.join(format!("{name}.known_hosts"));
        std::fs::write(
            &known_hosts,
            format!("@cert-authority * {}", host_ca.trim()),
        )
        .expect("write known_hosts");
        let path = dir.join(format!("{name}.ssh_config"));
        let config = format!(
            "Host *\n  BatchMode yes\n  IdentitiesOnly yes\n  IdentityAgent none\n  \
             IdentityFile {}\n  CertificateFile {}\n  UserKnownHostsFile {}\n  \
             GlobalKnownHostsFile /dev/null\n  StrictHostKeyChecking yes\n  \
             ConnectTimeout 10\n  LogLevel ERROR\n",
            key.private.display(),
            key.cert_path().display(),
            known_hosts.display(),
        );
        std::fs::write(&path, config).expect("write ssh_config");
        JumpConfig {
            path,
            bastion_port: bastion.port,
        }
    }

    /// The `-J` argument: `PERSON@127.0.0.1:PORT`.
    pub fn jump(&self, person: &str) -> String {
        format!("{person}@127.0.0.1:{}", self.bastion_port)
    }

    /// `TOOL -F CONFIG -J PERSON@bastion` (for `ssh`, `scp`, `sftp`); the caller adds the
    /// target's port (`-p`/`-P`) and destination.
    pub fn command(&self, program: &str, person: &str) -> Command {
        let mut cmd = Command::new(tool(program));
        cmd.arg("-F")
            .arg(&self.path)
            .arg("-J")
            .arg(self.jump(person));
        cmd
    }
}
