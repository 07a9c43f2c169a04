//! A real OpenID Provider for SSO tests: the `oidc-provider` npm package (tests/oidc/, installed
//! by `npm ci` in .ci/run) run by `node` on a free loopback port, and a person completing its
//! device flow by posting its forms over HTTP (tests/oidc/person.mjs).

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::process::{Daemon, Output};

/// How long the provider may take to answer discovery after start.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The test OpenID Provider's directory (package.json, provider.mjs, person.mjs, node_modules).
pub fn oidc_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("oidc")
}

/// A running test OpenID Provider (stopped on drop).
pub struct Idp {
    daemon: Option<Daemon>,
    /// The issuer URL, `http://127.0.0.1:PORT`.
    pub issuer: String,
    /// The accounts file the provider re-reads on every lookup.
    pub accounts: PathBuf,
}

impl Idp {
    /// Writes `accounts` (JSON: `{"login": {"email", "preferred_username", "groups"}}`) to
    /// `dir/idp-accounts.json` and starts the provider, waiting for its discovery document.
    pub fn start(dir: &Path, accounts: &str) -> Idp {
        Idp::start_with(dir, accounts, &[])
    }

    /// [`Idp::start`] with more arguments for provider.mjs (e.g. `--redirect-uri URI`,
    /// which adds the web console's authorization-code client `jitssh-web`).
    pub fn start_with(dir: &Path, accounts: &str, args: &[&str]) -> Idp {
        let modules = oidc_dir().join("node_modules").join("oidc-provider");
        assert!(
            modules.exists(),
            "{} is missing: run `npm ci` in {}",
            modules.display(),
            oidc_dir().display()
        );
        let accounts_file = dir.join("idp-accounts.json");
        std::fs::write(&accounts_file, accounts).expect("write idp accounts");
        for _ in 0..5 {
            let port = crate::net::free_port();
            let mut cmd = Command::new(crate::tools::tool("node"));
            cmd.current_dir(oidc_dir())
                .arg("provider.mjs")
                .arg("--port")
                .arg(port.to_string())
                .arg("--accounts")
                .arg(&accounts_file)
                .args(args);
            let mut daemon = Daemon::spawn("oidc-provider", &mut cmd, &dir.join("idp.log"));
            let issuer = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + START_TIMEOUT;
            loop {
                if daemon.log().contains("listening at") {
                    return Idp {
                        daemon: Some(daemon),
                        issuer,
                        accounts: accounts_file,
                    };
                }
                if daemon.exit_status().is_some() {
                    if daemon.log().contains("EADDRINUSE") {
                        break;
                    }
                    panic!("oidc-provider exited; log:\n{}", daemon.log());
                }
                assert!(
                    Instant::now() < deadline,
                    "oidc-provider not listening after {START_TIMEOUT:?}; log:\n{}",
                    daemon.log()
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        panic!("no free port for oidc-provider after 5 tries");
    }

    /// Rewrites the accounts (the provider sees it at the next lookup).
    pub fn set_accounts(&self, accounts: &str) {
        std::fs::write(&self.accounts, accounts).expect("write idp accounts");
    }

    /// Stops the provider (the identity provider is down from now on).
    pub fn stop(&mut self) {
        self.daemon = None;
    }

    /// The provider's log.
    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }

    /// A person at a browser: opens `url`, enters `code`, confirms (or aborts), signs in as
    /// `login`, consents. Returns what the last page said and whether it was a success.
    pub fn person(&self, url: &str, code: &str, login: &str, abort: bool) -> Output {
        let mut cmd = Command::new(crate::tools::tool("node"));
        cmd.current_dir(oidc_dir())
            .arg("person.mjs")
            .args(["--url", url, "--code", code, "--login", login]);
        if abort {
            cmd.arg("--abort");
        }
        crate::process::run(&mut cmd)
    }
}

/// Runs `cmd` (an `ssh ... sso@ca login` or `ssh-ca login --sso`), and when it shows the
/// verification URL and code on stderr, plays the person (`login`, aborting if `abort`) at
/// `idp` after `dawdle` (a person is slow). Returns the command's output and the person's.
///
/// # Panics
/// If the command prints no URL and code, or does not end within `timeout`.
pub fn sso_login(
    cmd: &mut Command,
    idp: &Idp,
    login: &str,
    abort: bool,
    dawdle: Duration,
    timeout: Duration,
) -> (Output, Option<Output>) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout piped");
    let stderr = child.stderr.take().expect("stderr piped");
    let (lines_to, lines) = mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if lines_to.send(line).is_err() {
                break;
            }
        }
    });
    let out_reader = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let deadline = Instant::now() + timeout;
    let mut stderr_text = String::new();
    let mut person = None;
    let status = loop {
        while let Ok(line) = lines.try_recv() {
            stderr_text.push_str(&line);
            stderr_text.push('\n');
            if person.is_none()
                && let Some((url, code)) = verification(&line)
            {
                std::thread::sleep(dawdle);
                person = Some(idp.person(&url, &code, login, abort));
            }
        }
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code().unwrap_or(-1);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} still running after {timeout:?}; stderr so far:\n{stderr_text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = reader.join();
    while let Ok(line) = lines.try_recv() {
        stderr_text.push_str(&line);
        stderr_text.push('\n');
    }
    let stdout = out_reader.join().unwrap_or_default();
    (
        Output {
            status,
            stdout,
            stderr: stderr_text,
        },
        person,
    )
}

/// `(url, code)` from the CA's "open URL and enter the code CODE" line.
fn verification(line: &str) -> Option<(String, String)> {
    let rest = line.split_once("open ")?.1;
    let (url, rest) = rest.split_once(" and enter the code ")?;
    Some((url.to_string(), rest.trim().to_string()))
}
