//! Command builder for the real OpenSSH `ssh` client.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{DEFAULT_TIMEOUT, Output, run_with};
use crate::tools::tool;

/// How the server's host key is checked.
#[derive(Clone, Debug)]
enum HostCheck {
    /// `StrictHostKeyChecking=no`, `UserKnownHostsFile=/dev/null`.
    Insecure,
    /// `StrictHostKeyChecking=yes` against this file.
    KnownHosts(PathBuf),
}

/// An `ssh` invocation against `127.0.0.1:<port>`, isolated from the
/// machine's and user's configuration.
///
/// Always passes `-F /dev/null -o BatchMode=yes -o IdentitiesOnly=yes
/// -o IdentityAgent=none -o ConnectTimeout=10 -o LogLevel=ERROR
/// -o GlobalKnownHostsFile=/dev/null -p PORT`. Host keys are not checked
/// unless [`Ssh::known_hosts`] is used.
///
/// ```no_run
/// # use jitssh_tests::Ssh;
/// # let (port, key, cert) = (22, "id", "id-cert.pub");
/// let out = Ssh::new(port).user("root").identity(key).cert(cert).args(["echo", "hi"]).run();
/// assert_eq!(out.stdout_str(), "hi\n");
/// ```
#[derive(Clone, Debug)]
pub struct Ssh {
    port: u16,
    user: Option<String>,
    host: Option<String>,
    identity: Option<PathBuf>,
    cert: Option<PathBuf>,
    host_check: HostCheck,
    options: Vec<String>,
    flags: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    remote: Vec<OsString>,
    timeout: Duration,
}

impl Ssh {
    /// `ssh -p port 127.0.0.1`, with the defaults above.
    pub fn new(port: u16) -> Self {
        Self {
            port,
            user: None,
            host: None,
            identity: None,
            cert: None,
            host_check: HostCheck::Insecure,
            options: Vec::new(),
            flags: Vec::new(),
            stdin: None,
            remote: Vec::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// Remote user name (`-l`).
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Private key to authenticate with (`-i`). Must be mode 0600.
    pub fn identity(mut self, key: impl AsRef<Path>) -> Self {
        self.identity = Some(key.as_ref().to_path_buf());
        self
    }

    /// User certificate to present (`-o CertificateFile=`).
    pub fn cert(mut self, cert: impl AsRef<Path>) -> Self {
        self.cert = Some(cert.as_ref().to_path_buf());
        self
    }

    /// Check the host key strictly against this known_hosts file
    /// (`UserKnownHostsFile=<path>`, `StrictHostKeyChecking=yes`).
    pub fn known_hosts(mut self, path: impl AsRef<Path>) -> Self {
        self.host_check = HostCheck::KnownHosts(path.as_ref().to_path_buf());
        self
    }

    /// Accept any host key (the default).
    pub fn insecure_host(mut self) -> Self {
        self.host_check = HostCheck::Insecure;
        self
    }

    /// Pretend the server is called `name`: the destination becomes `name`
    /// with `-o HostName=127.0.0.1 -o HostKeyAlias=name`, so known_hosts
    /// lookups (`@cert-authority name ...`) and host certificate principal
    /// checks use `name`.
    pub fn host(mut self, name: &str) -> Self {
        self.host = Some(name.to_owned());
        self
    }

    /// An extra `-o Key=Value` option. Options given here come before the
    /// built-in ones, and ssh keeps the first value, so they override.
    pub fn option(mut self, option: &str) -> Self {
        self.options.push(option.to_owned());
        self
    }

    /// An extra raw flag placed before the destination, e.g. `"-tt"`, `"-v"`.
    pub fn flag(mut self, flag: impl Into<OsString>) -> Self {
        self.flags.push(flag.into());
        self
    }

    /// Bytes fed to ssh's stdin (default: `/dev/null`).
    pub fn stdin(mut self, data: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(data.into());
        self
    }

    /// The remote command words (appended after the destination).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.remote.extend(args.into_iter().map(Into::into));
        self
    }

    /// Timeout for [`Ssh::run`] (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The fully configured `ssh` command, e.g. to spawn it interactively.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(tool("ssh"));
        cmd.args(["-F", "/dev/null"]);
        for option in &self.options {
            cmd.arg("-o").arg(option);
        }
        for option in [
            "BatchMode=yes",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "ConnectTimeout=10",
            "LogLevel=ERROR",
            "GlobalKnownHostsFile=/dev/null",
        ] {
            cmd.arg("-o").arg(option);
        }
        match &self.host_check {
            HostCheck::Insecure => {
                cmd.args([
                    "-o",
                    "StrictHostKeyChecking=no",
                    "-o",
                    "UserKnownHostsFile=/dev/null",
                ]);
            }
            HostCheck::KnownHosts(path) => {
                cmd.args(["-o", "StrictHostKeyChecking=yes", "-o"]);
                cmd.arg(opt("UserKnownHostsFile=", path));
            }
        }
        if let Some(key) = &self.identity {
            cmd.arg("-i").arg(key);
        }
        if let Some(cert) = &self.cert {
            cmd.arg("-o").arg(opt("CertificateFile=", cert));
        }
        if let Some(user) = &self.user {
            cmd.arg("-l").arg(user);
        }
        cmd.arg("-p").arg(self.port.to_string());
        cmd.args(&self.flags);
        match &self.host {
            Some(name) => {
                cmd.args(["-o", "HostName=127.0.0.1", "-o"]);
                cmd.arg(format!("HostKeyAlias={name}"));
                cmd.arg("--").arg(name);
            }
            None => {
                cmd.args(["--", "127.0.0.1"]);
            }
        }
        cmd.args(&self.remote);
        cmd
    }

    /// Runs ssh to completion.
    ///
    /// # Panics
    /// If ssh runs longer than the timeout (it is killed, and the panic
    /// shows what it printed).
    pub fn run(&self) -> Output {
        run_with(&mut self.command(), self.stdin.as_deref(), self.timeout)
    }

    /// Starts ssh in the background (stdin closed, stdout and stderr captured), for a
    /// session that something else is to end; see [`Running::wait_ended_within`].
    ///
    /// # Panics
    /// If ssh cannot be started.
    pub fn spawn(&self) -> Running {
        let child = self
            .command()
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ssh");
        Running(child)
    }
}

/// An ssh started with [`Ssh::spawn`].
pub struct Running(pub std::process::Child);

impl Running {
    /// Waits until ssh exits, at most `limit` from `since`; what it wrote to stderr.
    ///
    /// # Panics
    /// If it is still running then (the session was not ended in time).
    pub fn wait_ended_within(mut self, since: std::time::Instant, limit: Duration) -> String {
        while self.0.try_wait().expect("try_wait").is_none() {
            assert!(
                since.elapsed() < limit,
                "session still running {:?} after it should have ended",
                since.elapsed()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = self.0.wait_with_output().expect("ssh output");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

/// `key` + `path` as one `-o` argument. ssh splits option values on
/// whitespace, so such paths are quoted.
fn opt(key: &str, path: &Path) -> OsString {
    let s = path.to_str().expect("UTF-8 path");
    if s.contains(char::is_whitespace) {
        format!("{key}\"{s}\"").into()
    } else {
        format!("{key}{s}").into()
    }
}
