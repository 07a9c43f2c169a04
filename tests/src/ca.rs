//! An `ssh-ca` instance in a scratch directory, driven through its real binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::clock::TestClock;
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
        self.clock().apply(&mut cmd);
        cmd
    }

    /// The clock of every `ssh-ca` (and bastion) started from this directory.
    pub fn clock(&self) -> TestClock {
        TestClock::in_dir(&self.dir)
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

    /// Writes `ssh-ca pubkey --user|--host|--target` to a file next to the config and returns it.
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

    /// Sets a target's trust up the documented way: runs `ssh-ca sshd-config --write --dir DIR`
    /// (the trust files go into `dir`) and returns the printed `TrustedUserCAKeys` and
    /// `RevokedKeys` lines, for [`crate::SshdBuilder::config`]. Targets so set up trust only
    /// the target CA.
    pub fn sshd_trust_lines(&self, dir: &Path) -> Vec<String> {
        std::fs::create_dir_all(dir).expect("create the target's trust dir");
        let mut cmd = self.cmd(["sshd-config", "--write", "--dir"]);
        cmd.arg(dir);
        let printed = run_ok(&mut cmd).stdout_str();
        let lines: Vec<String> = printed
            .lines()
            .filter(|l| l.starts_with("TrustedUserCAKeys ") || l.starts_with("RevokedKeys "))
            .map(str::to_string)
            .collect();
        assert_eq!(lines.len(), 2, "sshd-config printed:\n{printed}");
        lines
    }

    /// Writes the current KRL to `path`.
    pub fn write_krl(&self, path: &Path) {
        let mut cmd = self.cmd(["krl", "--out"]);
        cmd.arg(path);
        run_ok(&mut cmd);
    }
}

/// A running `ssh-ca serve` with its API on a free loopback port, and a known_hosts file that
/// trusts the host CA (`@cert-authority`), so clients connect with strict checking.
pub struct CaServer {
    /// The CA's files.
    pub ca: CaFixture,
    /// The server process.
    pub daemon: crate::process::Daemon,
    /// The API port.
    pub port: u16,
    /// known_hosts with the `@cert-authority` line.
    pub known_hosts: PathBuf,
}

impl CaServer {
    /// Writes the config (`extra` appended to ca.toml) and policy, starts `ssh-ca serve`, and
    /// waits until it listens. CA keys are created on first start.
    pub fn start(dir: &Path, policy: &str, extra: &str) -> CaServer {
        let port = crate::net::free_port();
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\nnames = [\"localhost\", \"127.0.0.1\"]\n{extra}"
        );
        let ca = CaFixture::configure(dir, policy, &config);
        let mut daemon = crate::process::Daemon::spawn(
            "ssh-ca serve",
            &mut ca.cmd(["serve"]),
            &dir.join("ca-serve.log"),
        );
        daemon.wait_for_log("CA API listening", std::time::Duration::from_secs(20));
        let known_hosts = dir.join("known_hosts_ca");
        let line = ca.run_ok(["known-hosts"]).stdout;
        std::fs::write(&known_hosts, line).expect("write known_hosts");
        CaServer {
            ca,
            daemon,
            port,
            known_hosts,
        }
    }

    /// `ssh -p PORT USER@localhost` with `key`, strict host checking against the host CA.
    pub fn ssh(&self, user: &str, key: &KeyPair) -> crate::ssh::Ssh {
        crate::ssh::Ssh::new(self.port)
            .user(user)
            .identity(&key.private)
            .known_hosts(&self.known_hosts)
            .host("localhost")
    }

    /// Sends SIGHUP (policy reload).
    pub fn hangup(&self) {
        let pid = libc::pid_t::try_from(self.daemon.pid()).expect("pid");
        // SAFETY: kill(2) has no memory-safety preconditions; the daemon is our live child.
        unsafe { libc::kill(pid, libc::SIGHUP) };
    }
}
