//! Locating external tools and the project's own binaries.

use std::env;
use std::path::{Path, PathBuf};

/// Debian package providing each external tool the tests use.
const PACKAGES: &[(&str, &str)] = &[
    ("sshd", "openssh-server"),
    ("ssh", "openssh-client"),
    ("ssh-keygen", "openssh-client"),
    ("ssh-agent", "openssh-client"),
    ("ssh-add", "openssh-client"),
    ("scp", "openssh-client"),
    ("sftp", "openssh-client"),
    ("plink", "putty-tools"),
    ("puttygen", "putty-tools"),
    ("asciinema", "asciinema"),
    ("tmux", "tmux"),
    ("node", "nodejs"),
    ("script", "bsdutils"),
    ("setpriv", "util-linux"),
    ("sha256sum", "coreutils"),
    ("rsyslogd", "rsyslog"),
    ("promtool", "prometheus"),
];

/// Directories searched in addition to `$PATH` (`sshd` lives in `/usr/sbin`,
/// which is often not on a non-root `$PATH`).
const EXTRA_DIRS: &[&str] = &["/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// Absolute path of the external tool `name` (e.g. `"sshd"`, `"ssh-keygen"`,
/// `"plink"`).
///
/// `sshd` is always `/usr/sbin/sshd` (it must be run by absolute path, it
/// re-executes itself). Others are searched in `$PATH` and the usual system
/// dirs.
///
/// # Panics
/// If the tool is not installed, with a message naming the Debian package to
/// install, e.g. `sshd not found: apt-get install openssh-server`.
pub fn tool(name: &str) -> PathBuf {
    let found = if name == "sshd" {
        Some(PathBuf::from("/usr/sbin/sshd")).filter(|p| is_executable(p))
    } else {
        search_path(name)
    };
    found.unwrap_or_else(|| {
        let package = PACKAGES
            .iter()
            .find(|(tool, _)| *tool == name)
            .map_or(name, |(_, package)| package);
        panic!("{name} not found: apt-get install {package}")
    })
}

fn search_path(name: &str) -> Option<PathBuf> {
    let path_var = env::var_os("PATH").unwrap_or_default();
    env::split_paths(&path_var)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_absolute() && is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Path of the project binary `name` (`"ssh-ca"`, `"ssh-bastion"`) built by
/// cargo.
///
/// The directory is `$JITSSH_BIN_DIR` if set, otherwise the cargo profile dir
/// derived from the running test executable (`target/<profile>/deps/x` →
/// `target/<profile>/`).
///
/// Note that `cargo test -p jitssh-tests` does not build other packages'
/// binaries; build them first with `cargo build --workspace`.
///
/// # Panics
/// If the binary does not exist: ``binary ssh-ca not built: run `cargo build --workspace` ``.
pub fn project_bin(name: &str) -> PathBuf {
    let dir = match env::var_os("JITSSH_BIN_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => profile_dir(),
    };
    let bin = dir.join(name);
    if !is_executable(&bin) {
        panic!(
            "binary {name} not built: run `cargo build --workspace` (looked for {})",
            bin.display()
        );
    }
    bin
}

/// `target/<profile>/` for the running executable.
fn profile_dir() -> PathBuf {
    let exe = env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("exe has a parent dir").to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_installed_tools() {
        assert_eq!(tool("sshd"), PathBuf::from("/usr/sbin/sshd"));
        assert!(tool("ssh-keygen").is_absolute());
    }

    #[test]
    #[should_panic(expected = "no-such-tool-xyz not found: apt-get install no-such-tool-xyz")]
    fn missing_tool_panics() {
        tool("no-such-tool-xyz");
    }

    #[test]
    #[should_panic(expected = "binary no-such-bin not built: run `cargo build --workspace`")]
    fn missing_bin_panics() {
        project_bin("no-such-bin");
    }
}
