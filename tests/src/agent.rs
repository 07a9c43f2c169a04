//! A real `ssh-agent` on a socket in the test's scratch directory, in debug mode (its log
//! says what each key was added with, e.g. its lifetime).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::process::{Daemon, Output, run, run_ok, wait_for};
use crate::tools::tool;

/// `ssh-agent -d -a SOCKET`, stopped when dropped.
pub struct Agent {
    /// The agent's socket (`SSH_AUTH_SOCK`).
    pub socket: PathBuf,
    daemon: Daemon,
}

impl Agent {
    /// Starts an agent listening on `dir/agent.sock`.
    pub fn start(dir: &Path) -> Agent {
        let socket = dir.join("agent.sock");
        let daemon = Daemon::spawn(
            "ssh-agent",
            Command::new(tool("ssh-agent"))
                .arg("-d")
                .arg("-a")
                .arg(&socket),
            &dir.join("agent.log"),
        );
        wait_for(
            || socket.exists(),
            Duration::from_secs(5),
            "ssh-agent socket",
        );
        Agent { socket, daemon }
    }

    /// `ssh-add PRIVATE` (a `PRIVATE-cert.pub` next to it is added too).
    pub fn add(&self, private: &Path) {
        run_ok(self.command("ssh-add").arg(private));
    }

    /// What the agent logged so far.
    pub fn log(&self) -> String {
        self.daemon.log()
    }

    /// `ssh-add -l`.
    pub fn list(&self) -> Output {
        run(self.command("ssh-add").arg("-l"))
    }

    /// `tool` with `SSH_AUTH_SOCK` pointing at this agent.
    pub fn command(&self, name: &str) -> Command {
        let mut cmd = Command::new(tool(name));
        cmd.env("SSH_AUTH_SOCK", &self.socket);
        cmd
    }

    /// The `-o IdentityAgent=...` option for [`crate::Ssh::option`].
    pub fn ssh_option(&self) -> String {
        format!("IdentityAgent={}", self.socket.display())
    }
}
