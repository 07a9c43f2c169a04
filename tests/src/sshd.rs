//! A real OpenSSH server on loopback.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::keys::{KeyPair, keygen};
use crate::net::free_port;
use crate::process::{Daemon, run};
use crate::scratch::Scratch;
use crate::tools::tool;

/// How long [`SshdBuilder::start`] waits for sshd to listen.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How many fresh ports to try when the chosen one was taken meanwhile.
const PORT_ATTEMPTS: usize = 5;

/// Builder for [`Sshd`]; see [`Sshd::builder`].
#[derive(Clone, Debug)]
pub struct SshdBuilder {
    host_key: Option<PathBuf>,
    host_cert: Option<PathBuf>,
    trusted_user_ca: Option<PathBuf>,
    revoked_keys: Option<PathBuf>,
    lines: Vec<String>,
    trailer: Vec<String>,
}

/// A running `/usr/sbin/sshd -D -e` (as root) listening on
/// `127.0.0.1:<port>`, with its own config, host key and log in a private
/// scratch dir. Killed on drop (the log tail is printed if the test failed).
///
/// Fixed settings: `Port`, `ListenAddress 127.0.0.1`, `HostKey`,
/// `AuthorizedKeysFile none`, `StrictModes no`, `UsePAM no`,
/// `PermitRootLogin yes`, `PidFile none`, `LogLevel VERBOSE`,
/// `PasswordAuthentication no`, `KbdInteractiveAuthentication no` and
/// `Subsystem sftp internal-sftp` (needed by `sftp` and by `scp`, which
/// uses the SFTP protocol since OpenSSH 9.0).
pub struct Sshd {
    // Field order matters: the daemon must stop before its dir is removed.
    daemon: Daemon,
    port: u16,
    host_key: KeyPair,
    config: PathBuf,
    scratch: Scratch,
}

impl Sshd {
    /// A builder with no CA, no host certificate and a generated host key.
    pub fn builder() -> SshdBuilder {
        SshdBuilder::new()
    }

    /// The TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// sshd's process id.
    pub fn pid(&self) -> u32 {
        self.daemon.pid()
    }

    /// The host key pair (generated unless given to the builder).
    pub fn host_key(&self) -> &KeyPair {
        &self.host_key
    }

    /// A `known_hosts` line trusting this server's plain host key when
    /// reached as `127.0.0.1` on its port: `[127.0.0.1]:PORT <key>`.
    pub fn known_hosts_line(&self) -> String {
        format!("[127.0.0.1]:{} {}", self.port, self.host_key.public_line())
    }

    /// Path of the generated `sshd_config`.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// sshd's private scratch dir (config, log, generated host key).
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }

    /// Everything sshd has logged so far (its stderr, at `LogLevel VERBOSE`),
    /// e.g. `Accepted publickey for root from 127.0.0.1 port 4711 ssh2:
    /// ED25519-CERT SHA256:... ID alice (serial 0) CA ED25519 SHA256:...`.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// Waits (up to `timeout`) until the log contains `needle`, returning the
    /// log. sshd logs from several processes, so a line may appear slightly
    /// after the client saw the corresponding event.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        self.daemon.wait_for_log(needle, timeout)
    }
}

impl SshdBuilder {
    /// Same as [`Sshd::builder`].
    pub fn new() -> Self {
        Self {
            host_key: None,
            host_cert: None,
            trusted_user_ca: None,
            revoked_keys: None,
            lines: Vec::new(),
            trailer: Vec::new(),
        }
    }

    /// Use this private host key (mode 0600; `<path>.pub` must exist)
    /// instead of generating one.
    pub fn host_key(mut self, private: impl Into<PathBuf>) -> Self {
        self.host_key = Some(private.into());
        self
    }

    /// `HostCertificate`: a certificate for the host key.
    pub fn host_cert(mut self, cert: impl Into<PathBuf>) -> Self {
        self.host_cert = Some(cert.into());
        self
    }

    /// `TrustedUserCAKeys`: a file of user CA public keys.
    pub fn trusted_user_ca(mut self, file: impl Into<PathBuf>) -> Self {
        self.trusted_user_ca = Some(file.into());
        self
    }

    /// `RevokedKeys`: a KRL or a file of revoked public keys.
    pub fn revoked_keys(mut self, file: impl Into<PathBuf>) -> Self {
        self.revoked_keys = Some(file.into());
        self
    }

    /// A raw config line placed *before* the fixed settings. sshd keeps the
    /// first value of most keywords, so this overrides them (e.g.
    /// `"AuthorizedKeysFile /x"`, `"LogLevel DEBUG3"`). A `Subsystem sftp`
    /// line replaces the default one.
    pub fn config(mut self, line: &str) -> Self {
        self.lines.push(line.to_owned());
        self
    }

    /// Raw config text appended at the *end*, where `Match` blocks must go.
    pub fn trailer(mut self, text: &str) -> Self {
        self.trailer.push(text.to_owned());
        self
    }

    /// Writes and validates (`sshd -t`) the config, starts sshd and waits
    /// until it listens.
    ///
    /// # Panics
    /// If the config is invalid (with sshd's complaint) or sshd does not
    /// come up within 10 s (with its log).
    pub fn start(self) -> Sshd {
        fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd (privilege separation dir)");
        let scratch = Scratch::new();
        let host_key = match &self.host_key {
            Some(private) => KeyPair::from_private(private),
            None => keygen(scratch.path(), "ssh_host_ed25519_key"),
        };
        let config = scratch.file("sshd_config");
        let log = scratch.file("sshd.log");
        let sshd = tool("sshd");

        for attempt in 1..=PORT_ATTEMPTS {
            let port = free_port();
            fs::write(&config, self.render(port, &host_key.private)).expect("write sshd_config");
            if attempt == 1 {
                let check = run(Command::new(&sshd).arg("-t").arg("-f").arg(&config));
                if !check.success() {
                    panic!(
                        "invalid sshd config ({}):\n{}\n--- sshd -t ---\n{}{}",
                        config.display(),
                        fs::read_to_string(&config).unwrap_or_default(),
                        check.stdout_str(),
                        check.stderr
                    );
                }
            }
            let _ = fs::remove_file(&log);
            let mut daemon = Daemon::spawn(
                "sshd",
                Command::new(&sshd)
                    .arg("-D")
                    .arg("-e")
                    .arg("-f")
                    .arg(&config),
                &log,
            );
            // This line is logged right after listen(2), by *our* sshd, so
            // unlike a TCP probe it cannot be fooled by another process that
            // grabbed the port (and it leaves no connection noise in the log).
            let ready = format!("Server listening on 127.0.0.1 port {port}.");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                let text = daemon.log();
                if text.contains(&ready) {
                    return Sshd {
                        daemon,
                        port,
                        host_key,
                        config,
                        scratch,
                    };
                }
                if let Some(code) = daemon.exit_status() {
                    if text.contains("Address already in use") && attempt < PORT_ATTEMPTS {
                        break; // port stolen since free_port(): retry
                    }
                    panic!("sshd exited ({code}) during startup; log:\n{text}");
                }
                if Instant::now() >= deadline {
                    panic!(
                        "sshd not listening on port {port} after {START_TIMEOUT:?}; log:\n{text}"
                    );
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        unreachable!("the last attempt either returns or panics")
    }

    /// The sshd_config text for `port`.
    fn render(&self, port: u16, host_key: &Path) -> String {
        let mut c = String::from("# generated by jitssh-tests\n");
        for line in &self.lines {
            let _ = writeln!(c, "{line}");
        }
        let _ = writeln!(c, "Port {port}\nListenAddress 127.0.0.1");
        let _ = writeln!(c, "HostKey {}", quote(host_key));
        if let Some(cert) = &self.host_cert {
            let _ = writeln!(c, "HostCertificate {}", quote(cert));
        }
        if let Some(ca) = &self.trusted_user_ca {
            let _ = writeln!(c, "TrustedUserCAKeys {}", quote(ca));
        }
        if let Some(krl) = &self.revoked_keys {
            let _ = writeln!(c, "RevokedKeys {}", quote(krl));
        }
        c.push_str(
            "AuthorizedKeysFile none\n\
             StrictModes no\n\
             UsePAM no\n\
             PermitRootLogin yes\n\
             PidFile none\n\
             LogLevel VERBOSE\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n",
        );
        let own_sftp = self.lines.iter().any(|l| {
            let mut words = l.split_whitespace();
            words
                .next()
                .is_some_and(|w| w.eq_ignore_ascii_case("subsystem"))
                && words.next() == Some("sftp")
        });
        if !own_sftp {
            c.push_str("Subsystem sftp internal-sftp\n");
        }
        for text in &self.trailer {
            let _ = writeln!(c, "{text}");
        }
        c
    }
}

impl Default for SshdBuilder {
    fn default() -> Self {
        Self::new()
    }
}

/// Double-quotes a path for sshd_config.
fn quote(path: &Path) -> String {
    let s = path.to_str().expect("UTF-8 path in sshd_config");
    assert!(!s.contains('"'), "path with a double quote: {s}");
    format!("\"{s}\"")
}
