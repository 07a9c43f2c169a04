//! The clock of the project binaries a test started, moved by the test instead of sleeping.
//!
//! Every `ssh-ca` and `ssh-bastion` the harness starts from a scratch directory gets
//! `JITSSH_TEST_CLOCK=<dir>/test-clock`; binaries built with the `test-clock` feature (what
//! `cargo test --workspace` builds, see `jitssh_core::clock`) add the seconds in that file to
//! every time they read. Only our own decisions move: `sshd`, `ssh` and russh's own
//! certificate checks still use the real clock.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::tools::project_bin;

/// The variable naming the offset file (`jitssh_core::clock::TEST_CLOCK_ENV`).
pub const TEST_CLOCK_ENV: &str = "JITSSH_TEST_CLOCK";

/// The offset file of the project binaries started from one scratch directory.
#[derive(Debug, Clone)]
pub struct TestClock {
    path: PathBuf,
}

impl TestClock {
    /// The clock of binaries started from `dir` (no file yet: no offset).
    pub fn in_dir(dir: &Path) -> TestClock {
        TestClock {
            path: dir.join("test-clock"),
        }
    }

    /// Points `cmd` at this clock.
    pub fn apply(&self, cmd: &mut Command) {
        cmd.env(TEST_CLOCK_ENV, &self.path);
    }

    /// The current offset in seconds.
    pub fn offset(&self) -> i64 {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text.trim().parse().expect("test clock file holds seconds"),
            Err(_) => 0,
        }
    }

    /// Moves the binaries' clock by `secs` (negative: back), effective for every time they
    /// read from now on.
    ///
    /// # Panics
    /// If the project binaries were built without the test clock (e.g. by `cargo build`
    /// after `cargo test`): the test would otherwise wait for nothing and fail obscurely.
    pub fn advance(&self, secs: i64) {
        require_test_clock_binaries();
        let next = self.offset() + secs;
        let tmp = self.path.with_extension("tmp");
        std::fs::write(&tmp, format!("{next}\n")).expect("write test clock");
        // Atomic: a binary reading meanwhile sees the old or the new offset, never half.
        std::fs::rename(&tmp, &self.path).expect("install test clock");
    }
}

/// Panics unless `ssh-ca` and `ssh-bastion` say `(test-clock)` in `--version`.
fn require_test_clock_binaries() {
    static CHECKED: OnceLock<()> = OnceLock::new();
    CHECKED.get_or_init(|| {
        for name in ["ssh-ca", "ssh-bastion"] {
            let out = crate::process::run_ok(Command::new(project_bin(name)).arg("--version"));
            assert!(
                out.stdout_str().contains("(test-clock)"),
                "{name} was built without the test clock ({}): run `cargo test --workspace` \
                 (or `cargo build --workspace --features ssh-bastion/test-clock`) first",
                out.stdout_str().trim()
            );
        }
    });
}
