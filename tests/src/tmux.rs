//! A real terminal for interactive tests: a command running in a detached `tmux` session on
//! its own tmux server (socket in a scratch directory), driven with `send-keys` and read
//! with `capture-pane`.
//!
//! The pane stays after the command exits (`remain-on-exit`), so a test can read what the
//! command printed last and its exit status.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::run_ok;
use crate::tools::tool;

/// A command running in a tmux pane.
pub struct Tmux {
    socket: PathBuf,
    /// The command's exit status is written here when it ends (tmux 3.3 does not reliably
    /// record a dead pane's status).
    status_file: PathBuf,
}

/// Name of the one tmux session.
const SESSION: &str = "t";

impl Tmux {
    /// Starts `command` in a `cols` x `rows` terminal; the tmux server's socket goes in `dir`.
    pub fn start(dir: &Path, command: &Command, cols: u16, rows: u16) -> Tmux {
        let id = crate::net::free_port();
        let socket = dir.join(format!("tmux-{id}.sock"));
        let status_file = dir.join(format!("tmux-{id}.status"));
        let line = format!(
            "{}; echo $? > '{}'",
            shell_line(command),
            status_file.display()
        );
        let tmux = Tmux {
            socket,
            status_file,
        };
        run_ok(tmux.cmd().args([
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-s",
            SESSION,
            "-x",
            &cols.to_string(),
            "-y",
            &rows.to_string(),
            &line,
            // In the same tmux command, so the pane stays readable however fast the command ends.
            ";",
            "set-option",
            "-t",
            SESSION,
            "remain-on-exit",
            "on",
        ]));
        tmux
    }

    fn cmd(&self) -> Command {
        let mut cmd = Command::new(tool("tmux"));
        cmd.arg("-S").arg(&self.socket);
        cmd
    }

    /// Types `text` literally, then Enter.
    pub fn type_line(&self, text: &str) {
        run_ok(self.cmd().args(["send-keys", "-t", SESSION, "-l", text]));
        run_ok(self.cmd().args(["send-keys", "-t", SESSION, "Enter"]));
    }

    /// Types `text` literally (no Enter).
    pub fn type_keys(&self, text: &str) {
        run_ok(self.cmd().args(["send-keys", "-t", SESSION, "-l", text]));
    }

    /// What the pane shows now.
    pub fn capture(&self) -> String {
        run_ok(self.cmd().args(["capture-pane", "-p", "-t", SESSION])).stdout_str()
    }

    /// Waits until the pane shows `needle`; returns the pane.
    ///
    /// # Panics
    /// After `timeout`, showing the pane.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.capture();
            if screen.contains(needle) {
                return screen;
            }
            if Instant::now() >= deadline {
                panic!("the terminal never showed {needle:?} in {timeout:?}:\n{screen}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The command's exit status once it has exited, `None` while it runs.
    pub fn exit_status(&self) -> Option<i32> {
        std::fs::read_to_string(&self.status_file)
            .ok()
            .and_then(|text| text.trim().parse().ok())
    }

    /// Waits until the command exits; its status.
    ///
    /// # Panics
    /// After `timeout`, showing the pane.
    pub fn wait_exit(&self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exit_status() {
                return status;
            }
            if Instant::now() >= deadline {
                panic!("still running after {timeout:?}:\n{}", self.capture());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd().arg("kill-server").output();
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// `command` as one shell line (each word single-quoted).
fn shell_line(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|word| {
            let word = word.to_string_lossy();
            format!("'{}'", word.replace('\'', r"'\''"))
        })
        .collect::<Vec<_>>()
        .join(" ")
}
