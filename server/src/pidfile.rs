//! The server's pid file, so that `ssh-bastion reload` / `ssh-ca reload` signal exactly the
//! server of this configuration (`pgrep -f` matched other users' processes, and none of ours
//! once `--config` changed).
//!
//! The file lives in the data directory (the service's own, mode 0700), is written when the
//! server starts and removed when it exits. `reload` checks, before signalling, that the pid
//! is alive and is a process of the expected program (`/proc/PID/comm`), so a stale file
//! whose pid was reused by something else is refused rather than signalled.

use std::path::{Path, PathBuf};

use rustix::process::{Pid, Signal, kill_process};

/// Errors of the pid file and of signalling the server.
#[derive(Debug, thiserror::Error)]
pub enum PidFileError {
    /// The file cannot be read or written.
    #[error("{}: {why}", path.display())]
    Io {
        /// The pid file.
        path: PathBuf,
        /// Why.
        why: std::io::Error,
    },
    /// Another server of this configuration runs.
    #[error("{program} already runs with this data directory (pid {pid}, see {})", path.display())]
    AlreadyRunning {
        /// The program.
        program: String,
        /// Its pid.
        pid: u32,
        /// The pid file.
        path: PathBuf,
    },
    /// No server of this configuration runs.
    #[error("{program} is not running with this configuration (no live process in {})", path.display())]
    NotRunning {
        /// The program.
        program: String,
        /// The pid file.
        path: PathBuf,
    },
    /// The signal could not be sent.
    #[error("cannot signal pid {pid}: {why}")]
    Signal {
        /// The pid.
        pid: u32,
        /// Why.
        why: std::io::Error,
    },
}

/// The pid file of a running server; removed on drop (if it still names this process).
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
}

impl PidFile {
    /// Writes this process's pid to `path` (atomically), refusing if the file names a live
    /// `program` process.
    pub fn create(path: &Path, program: &str) -> Result<PidFile, PidFileError> {
        if let Some(pid) = live_pid(path, program) {
            return Err(PidFileError::AlreadyRunning {
                program: program.to_string(),
                pid,
                path: path.to_path_buf(),
            });
        }
        let io = |why| PidFileError::Io {
            path: path.to_path_buf(),
            why,
        };
        let temp = path.with_extension(format!("pid.tmp.{}", std::process::id()));
        std::fs::write(&temp, format!("{}\n", std::process::id())).map_err(io)?;
        std::fs::rename(&temp, path).map_err(io)?;
        Ok(PidFile {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if read_pid(&self.path) == Some(std::process::id()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The pid in `path` if it is a live process whose name is `program` (Linux truncates
/// `comm` to 15 bytes; so is the comparison).
fn live_pid(path: &Path, program: &str) -> Option<u32> {
    let pid = read_pid(path)?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let expected: String = program.chars().take(15).collect();
    (comm.trim_end() == expected).then_some(pid)
}

/// Sends SIGHUP (reload) to the `program` whose pid is in `path`; returns its pid.
pub fn signal_reload(path: &Path, program: &str) -> Result<u32, PidFileError> {
    let pid = live_pid(path, program).ok_or_else(|| PidFileError::NotRunning {
        program: program.to_string(),
        path: path.to_path_buf(),
    })?;
    let target = i32::try_from(pid)
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| PidFileError::NotRunning {
            program: program.to_string(),
            path: path.to_path_buf(),
        })?;
    kill_process(target, Signal::HUP).map_err(|e| PidFileError::Signal { pid, why: e.into() })?;
    Ok(pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_refused_twice_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        let me = me.trim_end();
        let file = PidFile::create(&path, me).unwrap();
        assert_eq!(read_pid(&path), Some(std::process::id()));
        assert!(matches!(
            PidFile::create(&path, me),
            Err(PidFileError::AlreadyRunning { .. })
        ));
        drop(file);
        assert!(!path.exists());
        assert!(matches!(
            signal_reload(&path, me),
            Err(PidFileError::NotRunning { .. })
        ));
    }

    #[test]
    fn a_stale_pid_of_another_program_is_not_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.pid");
        std::fs::write(&path, format!("{}\n", std::process::id())).unwrap();
        assert!(matches!(
            signal_reload(&path, "not-this-program"),
            Err(PidFileError::NotRunning { .. })
        ));
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(
            signal_reload(&path, "not-this-program"),
            Err(PidFileError::NotRunning { .. })
        ));
    }
}
