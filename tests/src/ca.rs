//! An `ssh-ca` instance in a scratch directory, driven through its real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::keys::KeyPair;
use crate::process::{DEFAULT_TIMEOUT, Output, run, run_ok, run_with};
use crate::tools::project_bin;

/// A CA with its own config file (`ca.toml`), data dir and policy file in `dir`.
pub struct CaFixture {
    dir: PathBuf,
    config: PathBuf,
}

impl CaFixture {
    /// Writes `ca.toml` (data in `ca-data`, policy `policy.toml`) and the given policy, then
    /// runs `ssh-ca init`.
    pub fn init(dir: &Path, policy: &str) -> CaFixture {
        let fixture = Self::configure(dir, policy, "");
        run_ok(&mut fixture.cmd(["init"]));
        fixture
    }

    /// Writes the config and policy only (no `init`); `extra` is appended to `ca.toml`.
    pub fn configure(dir: &Path, policy: &str, extra: &str) -> CaFixture {
        let config = dir.join("ca.toml");
        std::fs::write(
            &config,
            format!("data_dir = \"ca-data\"\npolicy = \"policy.toml\"\n{extra}"),
        )
        .expect("write ca.toml");
        std::fs::write(dir.join("policy.toml"), policy).expect("write policy.toml");
        CaFixture {
            dir: dir.to_path_buf(),
            config,
        }
    }

    /// The config file.
    pub fn config(&self) -> &Path {
        &self.config
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("ca-data")
    }

    /// `ssh-ca --config ca.toml ARGS...`.
    pub fn cmd<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new(project_bin("ssh-ca"));
        cmd.arg("--config").arg(&self.config).args(args);
        cmd
    }

    /// Runs `ssh-ca ARGS...`.
    pub fn run<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run(&mut self.cmd(args))
    }

    /// Runs `ssh-ca ARGS...` with `stdin`.
    pub fn run_stdin<I, S>(&self, args: I, stdin: &[u8]) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_with(&mut self.cmd(args), Some(stdin), DEFAULT_TIMEOUT)
    }

    /// Runs `ssh-ca ARGS...`, panicking unless it succeeds.
    pub fn run_ok<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        run_ok(&mut self.cmd(args))
    }

    /// Writes `ssh-ca pubkey --user|--host` to a file next to the config and returns it.
    pub fn ca_pub_file(&self, kind: &str) -> PathBuf {
        let out = self.run_ok(["pubkey", &format!("--{kind}")]);
        let path = self.dir.join(format!("{kind}_ca.pub"));
        std::fs::write(&path, out.stdout).expect("write CA public key");
        path
    }

    /// Signs `key` offline; `args` are the extra `ssh-ca sign` arguments. The certificate is
    /// written to `<key>-cert.pub` (where ssh looks for it) and its path returned.
    pub fn sign(&self, key: &KeyPair, kind: &str, principals: &str, args: &[&str]) -> PathBuf {
        let cert = key.cert_path();
        let mut cmd = self.cmd(["sign", &format!("--{kind}"), "--principals", principals]);
        cmd.arg("--key")
            .arg(&key.public)
            .arg("--out")
            .arg(&cert)
            .args(args);
        if !args.contains(&"--ttl") {
            cmd.args(["--ttl", "1h"]);
        }
        run_ok(&mut cmd);
        cert
    }

    /// Writes the current KRL to `path`.
    pub fn write_krl(&self, path: &Path) {
        let mut cmd = self.cmd(["krl", "--out"]);
        cmd.arg(path);
        run_ok(&mut cmd);
    }
}
