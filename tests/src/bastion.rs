//! An `ssh-bastion serve` (embedded CA) in a scratch directory, real sshd targets with host
//! certificates from its CA, and user certificates carrying a grant.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::ca::CaFixture;
use crate::clock::TestClock;
use crate::keys::{KeyPair, keygen};
use crate::net::free_port;
use crate::process::Daemon;
use crate::ssh::Ssh;
use crate::sshd::{Sshd, SshdBuilder};
use crate::tools::project_bin;

/// How long [`Bastion::start`] waits for the bastion to listen.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Fresh port pairs to try when one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// A running bastion with an embedded CA.
///
/// Files in `dir`: `ca.toml`, `policy.toml`, `ca-data/` (the CA), `bastion.toml`,
/// `bastion-data/` (host key, audit log, recordings) and `bastion.log`.
pub struct Bastion {
    /// The bastion process (stopped on drop).
    pub daemon: Daemon,
    /// The front door's port on 127.0.0.1.
    pub port: u16,
    /// The embedded CA API's port.
    pub ca_port: u16,
    /// The config file.
    pub config: PathBuf,
    dir: PathBuf,
}

impl Bastion {
    /// Initialises the CA of `dir` (if not done yet) and returns it, so targets and user
    /// certificates can be made before the bastion starts.
    pub fn ca(dir: &Path, policy: &str) -> CaFixture {
        let ca = CaFixture::configure(dir, policy, "");
        if !ca.data_dir().join("user_ca").exists() {
            crate::process::run_ok(&mut ca.cmd(["init"]));
        }
        ca
    }

    /// Writes `bastion.toml` (targets as `(name, "host:port")`, `extra` TOML appended) and
    /// starts `ssh-bastion serve` with the embedded CA of `ca`, retrying with fresh ports if
    /// one was taken meanwhile.
    ///
    /// Refusals are fast (`auth_rejection_time = "0s"`) unless `extra` sets `[limits]`.
    pub fn start(ca: &CaFixture, targets: &[(&str, String)], extra: &str) -> Bastion {
        Self::start_with_ca(ca, targets, extra, "")
    }

    /// [`Bastion::start`] with `ca_extra` appended to the embedded CA's `ca.toml` (e.g. an
    /// `[sso]` section).
    pub fn start_with_ca(
        ca: &CaFixture,
        targets: &[(&str, String)],
        extra: &str,
        ca_extra: &str,
    ) -> Bastion {
        let dir = ca
            .config()
            .parent()
            .expect("ca.toml has a directory")
            .to_path_buf();
        let policy = std::fs::read_to_string(dir.join("policy.toml")).unwrap_or_default();
        Self::launch(&dir, targets, extra, |ca_port| {
            CaFixture::configure(
                &dir,
                &policy,
                &format!(
                    "listen = \"127.0.0.1:{ca_port}\"\nnames = [\"localhost\", \"127.0.0.1\"]\n{ca_extra}"
                ),
            );
            "[ca]\nmode = \"embedded\"\nconfig = \"ca.toml\"\n".to_string()
        })
    }

    /// Like [`Bastion::start`], but with a separate CA reached over SSH: `ca_address` is its
    /// API, `host_ca` the host CA public key file, `identity` the bastion's key (listed in the
    /// CA's `bastion_keys`), `ca_lines` more `[ca]` keys (e.g. `host_token = "..."`). Files go
    /// to `dir`.
    pub fn start_remote(
        dir: &Path,
        ca_address: &str,
        host_ca: &Path,
        identity: &Path,
        ca_lines: &str,
        targets: &[(&str, String)],
        extra: &str,
    ) -> Bastion {
        Self::launch(dir, targets, extra, |_| {
            format!(
                "[ca]\nmode = \"remote\"\naddress = \"{ca_address}\"\nhost_ca = \"{}\"\nidentity = \"{}\"\n{ca_lines}",
                host_ca.display(),
                identity.display()
            )
        })
    }

    fn launch(
        dir: &Path,
        targets: &[(&str, String)],
        extra: &str,
        mut ca_section: impl FnMut(u16) -> String,
    ) -> Bastion {
        let dir = dir.to_path_buf();
        let config = dir.join("bastion.toml");
        let log = dir.join("bastion.log");
        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            let ca_port = free_port();
            let mut text = format!(
                "data_dir = \"bastion-data\"\nlisten = \"127.0.0.1:{port}\"\n\n{}\n",
                ca_section(ca_port)
            );
            for (name, address) in targets {
                let _ = writeln!(
                    text,
                    "[[targets]]\nname = \"{name}\"\naddress = \"{address}\"\n"
                );
            }
            if !extra.contains("[limits]") {
                text.push_str("[limits]\nauth_rejection_time = \"0s\"\n\n");
            }
            text.push_str(extra);
            std::fs::write(&config, text).expect("write bastion.toml");
            let _ = std::fs::remove_file(&log);
            let mut cmd = Command::new(project_bin("ssh-bastion"));
            cmd.arg("--config").arg(&config).arg("serve");
            TestClock::in_dir(&dir).apply(&mut cmd);
            let mut daemon = Daemon::spawn("ssh-bastion", &mut cmd, &log);
            let ready = format!("ssh-bastion listening on 127.0.0.1:{port}");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                let text = daemon.log();
                if text.contains(&ready) {
                    return Bastion {
                        daemon,
                        port,
                        ca_port,
                        config,
                        dir,
                    };
                }
                if let Some(code) = daemon.exit_status() {
                    if text.contains("Address already in use") && attempt < PORT_ATTEMPTS {
                        break;
                    }
                    panic!("ssh-bastion exited ({code}) during startup; log:\n{text}");
                }
                if Instant::now() >= deadline {
                    panic!("ssh-bastion not listening after {START_TIMEOUT:?}; log:\n{text}");
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// `ssh -p PORT -l USER 127.0.0.1` with `key` and its certificate (`<key>-cert.pub`).
    pub fn ssh(&self, user: &str, key: &KeyPair) -> Ssh {
        Ssh::new(self.port)
            .user(user)
            .identity(&key.private)
            .cert(key.cert_path())
    }

    /// The clock of this bastion (and of its embedded CA).
    pub fn clock(&self) -> TestClock {
        TestClock::in_dir(&self.dir)
    }

    /// The bastion's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("bastion-data")
    }

    /// The bastion's audit log so far.
    pub fn audit(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("audit.log")).unwrap_or_default()
    }

    /// Waits until the audit log contains `needle` and returns it.
    ///
    /// # Panics
    /// After `timeout`, showing the audit log.
    pub fn wait_for_audit(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let audit = self.audit();
            if audit.contains(needle) {
                return audit;
            }
            if Instant::now() >= deadline {
                panic!("audit log has no {needle:?} after {timeout:?}:\n{audit}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The bastion's log so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// `ssh-bastion --config CONFIG ARGS...` (an auditor's command), on the bastion's clock.
    pub fn cli(&self, args: &[&str]) -> crate::Output {
        let mut cmd = std::process::Command::new(crate::project_bin("ssh-bastion"));
        cmd.arg("--config").arg(&self.config).args(args);
        self.clock().apply(&mut cmd);
        crate::run(&mut cmd)
    }

    /// The ids `sessions list --json FILTERS...` returns, newest first.
    ///
    /// # Panics
    /// When the command fails or prints something else.
    pub fn session_ids(&self, filters: &[&str]) -> Vec<String> {
        let mut args = vec!["sessions", "list", "--json"];
        args.extend_from_slice(filters);
        let out = self.cli(&args);
        assert!(out.success(), "ssh-bastion sessions list: {out}");
        out.stdout_str()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("JSON line");
                v["id"].as_str().expect("id").to_owned()
            })
            .collect()
    }

    /// `SHA256:...` fingerprint of the bastion's host key.
    pub fn host_key_fingerprint(&self) -> String {
        let out = crate::process::run_ok(
            Command::new(crate::tools::tool("ssh-keygen"))
                .arg("-l")
                .arg("-f")
                .arg(self.data_dir().join("host_ed25519_key.pub")),
        );
        out.stdout_str()
            .split_whitespace()
            .nth(1)
            .expect("fingerprint")
            .to_owned()
    }
}

/// A real sshd target called `name`: host key with a host certificate from `ca`'s host CA
/// naming `name`, trusting what `ssh-ca sshd-config` sets up (the target CA and the KRL, files
/// in `dir/<name>-etc-ssh`), as operators set targets up. `configure` may add sshd settings.
pub fn target(
    ca: &CaFixture,
    dir: &Path,
    name: &str,
    configure: impl FnOnce(SshdBuilder) -> SshdBuilder,
) -> Sshd {
    let key = keygen(dir, &format!("{name}_host_key"));
    ca.sign(&key, "host", name, &["--ttl", "1h"]);
    let mut builder = Sshd::builder()
        .host_key(&key.private)
        .host_cert(key.cert_path());
    for line in ca.sshd_trust_lines(&dir.join(format!("{name}-etc-ssh"))) {
        builder = builder.config(&line);
    }
    configure(builder).start()
}

/// The grant extension argument for `ssh-ca sign`: logins `logins` on hosts `hosts`.
pub fn grant(role: &str, logins: &[&str], hosts: &[&str]) -> String {
    let quote = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("\"{i}\""))
            .collect::<Vec<_>>()
            .join(",")
    };
    format!(
        "jit-grant@jitssh={{\"roles\":[{{\"name\":\"{role}\",\"logins\":[{}],\"hosts\":[{}]}}]}}",
        quote(logins),
        quote(hosts)
    )
}

/// A key `name` in `dir` with a user certificate from `ca`: key id `name`, principals
/// `logins`, the usual `permit-*` extensions plus a grant of `logins` on `hosts`, and any
/// `extra` `ssh-ca sign` arguments (e.g. `--ttl 5s`, `--force-command x`).
pub fn user(
    ca: &CaFixture,
    dir: &Path,
    name: &str,
    logins: &[&str],
    hosts: &[&str],
    extra: &[&str],
) -> KeyPair {
    let key = keygen(dir, name);
    let grant = grant("ops", logins, hosts);
    let mut args = vec!["--key-id", name, "--extension", &grant];
    let has_extensions = extra.contains(&"--extension");
    let defaults = [
        "permit-pty",
        "permit-port-forwarding",
        "permit-agent-forwarding",
        "permit-X11-forwarding",
    ];
    if !has_extensions {
        for ext in defaults {
            args.push("--extension");
            args.push(ext);
        }
    }
    args.extend_from_slice(extra);
    ca.sign(&key, "user", &logins.join(","), &args);
    key
}

impl Bastion {
    /// The `-o` options `scp` and `sftp` need to go through the bastion as `user` with `key`
    /// and its certificate (destination host `127.0.0.1`, port via [`Bastion::port`]).
    pub fn copy_options(&self, user: &str, key: &KeyPair) -> Vec<std::ffi::OsString> {
        let mut options: Vec<std::ffi::OsString> = Vec::new();
        for option in [
            "BatchMode=yes",
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "GlobalKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            "ConnectTimeout=10",
        ] {
            options.push("-o".into());
            options.push(option.into());
        }
        options.push("-o".into());
        options.push(format!("User={user}").into());
        options.push("-o".into());
        let mut cert = std::ffi::OsString::from("CertificateFile=");
        cert.push(key.cert_path());
        options.push(cert);
        options.push("-i".into());
        options.push(key.private.clone().into());
        options.push("-P".into());
        options.push(self.port.to_string().into());
        options
    }
}

impl Bastion {
    /// `plink -batch -ssh -P PORT -i KEY.ppk -cert CERT -l USER -hostkey FP 127.0.0.1`: PuTTY
    /// through the bastion, pinning the bastion's host key. The key is converted to PuTTY's
    /// format with `puttygen` first (`<key>.ppk`).
    pub fn plink(&self, user: &str, key: &KeyPair, cert: &Path) -> Command {
        let mut ppk = key.private.clone().into_os_string();
        ppk.push(".ppk");
        let ppk = PathBuf::from(ppk);
        if !ppk.exists() {
            crate::process::run_ok(
                Command::new(crate::tools::tool("puttygen"))
                    .arg(&key.private)
                    .args(["-O", "private", "-o"])
                    .arg(&ppk),
            );
        }
        let mut cmd = Command::new(crate::tools::tool("plink"));
        cmd.args(["-batch", "-ssh", "-P", &self.port.to_string(), "-i"])
            .arg(&ppk)
            .arg("-cert")
            .arg(cert)
            .args([
                "-l",
                user,
                "-hostkey",
                &self.host_key_fingerprint(),
                "127.0.0.1",
            ]);
        cmd
    }
}

/// `asciinema cat CAST` (which needs a terminal: run under `script`), returning what it
/// printed.
pub fn asciinema_cat(cast: &Path) -> crate::process::Output {
    let asciinema = crate::tools::tool("asciinema");
    let command = format!("'{}' cat '{}'", asciinema.display(), cast.display());
    crate::process::run_ok(Command::new(crate::tools::tool("script")).args([
        "-qec",
        &command,
        "/dev/null",
    ]))
}

/// Session directories under a recordings root (`YYYY/MM/DD/<id>`, each with its
/// `events.jsonl`), sorted.
pub fn session_recordings(root: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.join("events.jsonl").exists() {
                found.push(path);
            } else if path.is_dir() {
                stack.push(path);
            }
        }
    }
    found.sort();
    found
}
