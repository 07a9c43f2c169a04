//! Running child processes with timeouts, and background daemons.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Timeout applied by [`run`], [`run_ok`] and [`crate::Ssh::run`] unless
/// overridden.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Poll interval for child processes and [`wait_for`].
const POLL: Duration = Duration::from_millis(10);

/// Result of a finished child process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    /// Exit code, or `-1` if the process was killed by a signal.
    pub status: i32,
    /// Raw stdout.
    pub stdout: Vec<u8>,
    /// Stderr, lossily decoded as UTF-8.
    pub stderr: String,
}

impl Output {
    /// Stdout lossily decoded as UTF-8.
    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Whether the exit code is 0.
    pub fn success(&self) -> bool {
        self.status == 0
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit status {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.stdout_str(),
            self.stderr
        )
    }
}

/// Runs `cmd` to completion with no stdin and the [`DEFAULT_TIMEOUT`].
///
/// # Panics
/// If the command cannot be spawned or times out (the process group is killed
/// and the panic shows everything it printed so far).
pub fn run(cmd: &mut Command) -> Output {
    run_with(cmd, None, DEFAULT_TIMEOUT)
}

/// Like [`run`], but panics with stdout and stderr if the exit code is not 0.
pub fn run_ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    if !out.success() {
        panic!("command failed: {cmd:?}\n{out}");
    }
    out
}

/// Runs `cmd` to completion, feeding it `stdin` (or `/dev/null` when `None`),
/// killing it after `timeout`.
///
/// The child is put in its own process group so that on timeout its helpers
/// (e.g. a `ProxyCommand`) are killed too. Stdout and stderr are always
/// captured, overriding whatever `cmd` had configured.
///
/// # Panics
/// If the command cannot be spawned or times out.
pub fn run_with(cmd: &mut Command, stdin: Option<&[u8]>, timeout: Duration) -> Output {
    let stdin_cfg = if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    };
    cmd.stdin(stdin_cfg)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot spawn {cmd:?}: {e}"));
    let stdout = Collector::start(child.stdout.take().expect("piped stdout"));
    let stderr = Collector::start(child.stderr.take().expect("piped stderr"));
    if let Some(data) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        let data = data.to_vec();
        // A child that exits without reading gives EPIPE; that is fine.
        thread::spawn(move || drop(pipe.write_all(&data)));
    }

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() >= deadline {
            kill_group(&child, libc::SIGKILL);
            let _ = child.wait();
            // Give the readers a moment to pick up the last output.
            let grace = Instant::now() + Duration::from_millis(500);
            stdout.wait_until(grace);
            stderr.wait_until(grace);
            let partial = Output {
                status: -1,
                stdout: stdout.take(),
                stderr: stderr.take_string(),
            };
            panic!("timed out after {timeout:?}, killed: {cmd:?}\n{partial}");
        }
        thread::sleep(POLL);
    };

    // Normally the pipes hit EOF right away; a background grandchild that
    // inherited them could keep them open, so never wait past the deadline.
    let complete = stdout.wait_until(deadline) & stderr.wait_until(deadline);
    if !complete {
        eprintln!(
            "warning: {cmd:?} exited but its output pipes stayed open; output may be truncated"
        );
    }
    Output {
        status: status.code().unwrap_or(-1),
        stdout: stdout.take(),
        stderr: stderr.take_string(),
    }
}

/// Sends `signal` to the process group led by `child` (see `process_group(0)`).
fn kill_group(child: &Child, signal: libc::c_int) {
    let pgid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(-pgid, signal) };
}

/// Reads a pipe to EOF on a thread, keeping what was read so far accessible.
struct Collector {
    buf: Arc<Mutex<Vec<u8>>>,
    handle: JoinHandle<()>,
}

impl Collector {
    fn start(mut pipe: impl Read + Send + 'static) -> Self {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&buf);
        let handle = thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink.lock().unwrap().extend_from_slice(&chunk[..n]),
                }
            }
        });
        Self { buf, handle }
    }

    /// Waits for EOF until `deadline`; returns whether EOF was reached.
    fn wait_until(&self, deadline: Instant) -> bool {
        while !self.handle.is_finished() {
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
        true
    }

    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buf.lock().unwrap())
    }

    fn take_string(&self) -> String {
        String::from_utf8_lossy(&self.take()).into_owned()
    }
}

/// Polls `cond` every 10 ms until it returns true.
///
/// # Panics
/// After `timeout`, with `timed out after ... waiting for {what}`.
pub fn wait_for(mut cond: impl FnMut() -> bool, timeout: Duration, what: &str) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        thread::sleep(POLL);
    }
}

/// A long-running background process whose stdout and stderr go to a log
/// file. It is stopped (SIGTERM, then SIGKILL after 5 s) on drop; if the test
/// is failing, the tail of its log is printed to stderr.
///
/// The process stays in the test's process group, so Ctrl-C on `cargo test`
/// reaches it too.
pub struct Daemon {
    name: String,
    child: Child,
    log: PathBuf,
    exit: Option<i32>,
}

impl Daemon {
    /// Spawns `cmd` with stdin `/dev/null` and stdout+stderr appended to
    /// `log` (created if missing). `name` is used in messages.
    pub fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Self {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap_or_else(|e| panic!("open {}: {e}", log.display()));
        let file2: File = file.try_clone().expect("dup log fd");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {name} ({cmd:?}): {e}"));
        Self {
            name: name.to_owned(),
            child,
            log: log.to_path_buf(),
            exit: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Path of the log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Current contents of the log file (lossy UTF-8).
    pub fn log(&self) -> String {
        fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// `Some(exit code)` (-1 for a signal) once the process has exited.
    pub fn exit_status(&mut self) -> Option<i32> {
        if self.exit.is_none()
            && let Some(status) = self.child.try_wait().expect("try_wait")
        {
            self.exit = Some(status.code().unwrap_or(-1));
        }
        self.exit
    }

    /// Waits until the log contains `needle` and returns the log.
    ///
    /// # Panics
    /// If the process exits first or after `timeout`, showing the log.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let log = self.log();
            if log.contains(needle) {
                return log;
            }
            if let Some(code) = self.exit_status() {
                panic!(
                    "{} exited ({code}) before logging {needle:?}; log:\n{log}",
                    self.name
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {} to log {needle:?}; log:\n{log}",
                    self.name
                );
            }
            thread::sleep(POLL);
        }
    }

    /// Stops the process (SIGTERM, SIGKILL after 5 s) and returns its exit
    /// code (-1 for a signal). Idempotent.
    pub fn stop(&mut self) -> i32 {
        if let Some(code) = self.exit_status() {
            return code;
        }
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) has no memory-safety preconditions; the child has
        // not been reaped yet, so the pid still names it.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.exit_status().is_none() {
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let status = self.child.wait().expect("wait");
                self.exit = Some(status.code().unwrap_or(-1));
                break;
            }
            thread::sleep(POLL);
        }
        self.exit.expect("exited")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "--- last {} lines of {} log ({}) ---",
                tail.len(),
                self.name,
                self.log.display()
            );
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]));
        assert_eq!(out.status, 3);
        assert_eq!(out.stdout_str(), "out\n");
        assert_eq!(out.stderr, "err\n");
    }

    #[test]
    fn feeds_stdin() {
        let out = run_with(&mut Command::new("cat"), Some(b"abc"), DEFAULT_TIMEOUT);
        assert_eq!(out.stdout, b"abc");
    }

    #[test]
    fn signal_is_minus_one() {
        assert_eq!(
            run(Command::new("sh").args(["-c", "kill -9 $$"])).status,
            -1
        );
    }

    #[test]
    #[should_panic(expected = "timed out after")]
    fn timeout_kills_and_panics() {
        run_with(
            Command::new("sh").args(["-c", "echo partial; sleep 30"]),
            None,
            Duration::from_millis(300),
        );
    }

    #[test]
    #[should_panic(expected = "command failed")]
    fn run_ok_panics_on_failure() {
        run_ok(&mut Command::new("false"));
    }
}
