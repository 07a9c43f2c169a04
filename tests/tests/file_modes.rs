//! What `ssh-ca` and `ssh-bastion` create is for their own user, whatever umask they are
//! started with: directories 0700, files 0600, except the KRL (0644, public by design).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jitssh_tests::{Bastion, CaFixture, Scratch, run_ok, target, user, wait_for};

/// `cmd`, run by `sh` after `umask 000`.
fn under_umask_000(cmd: &Command) -> Command {
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg("umask 000; exec \"$0\" \"$@\"")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    sh
}

/// Sets the test process's umask while alive (for daemons the harness spawns itself).
struct Umask(libc::mode_t);

impl Umask {
    fn set(mask: libc::mode_t) -> Umask {
        // SAFETY: umask(2) only swaps the process's file creation mask; this file has a
        // single test, so no other test thread creates files meanwhile.
        Umask(unsafe { libc::umask(mask) })
    }
}

impl Drop for Umask {
    fn drop(&mut self) {
        // SAFETY: as in `Umask::set`.
        unsafe {
            libc::umask(self.0);
        }
    }
}

/// Every path under `root` with its mode bits.
fn walk(root: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut found = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("metadata");
        let is_dir = meta.is_dir();
        found.push((path.clone(), meta.permissions().mode() & 0o7777, is_dir));
        if is_dir {
            for entry in std::fs::read_dir(&path).expect("read_dir").flatten() {
                stack.push(entry.path());
            }
        }
    }
    found
}

#[test]
fn data_is_private_under_umask_000() {
    let scratch = Scratch::new();
    let ca = CaFixture::configure(scratch.path(), "", "");
    run_ok(&mut under_umask_000(&ca.cmd(["init"])));
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    run_ok(&mut under_umask_000(
        ca.cmd(["krl", "--out"]).arg(scratch.file("exported.krl")),
    ));
    let bastion = {
        let _open = Umask::set(0);
        Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "")
    };
    let out = bastion
        .ssh("root@web01", &alice)
        .flag("-tt")
        .args(["echo recorded-$((6*7))"])
        .run();
    assert!(out.success(), "{out}");
    let data = bastion.data_dir();
    wait_for(
        || {
            walk(&data.join("recordings"))
                .iter()
                .any(|(p, _, _)| p.ends_with("seal.json"))
        },
        Duration::from_secs(10),
        "the sealed recording",
    );

    let mut bad = Vec::new();
    let mut seen = Vec::new();
    for root in [ca.data_dir(), data] {
        for (path, mode, is_dir) in walk(&root) {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            seen.push(name.clone().unwrap_or_default());
            let want_ok = if is_dir {
                mode == 0o700
            } else if name.as_deref() == Some("revoked.krl") {
                mode == 0o644
            } else {
                mode & 0o077 == 0
            };
            if !want_ok {
                bad.push(format!("{:o} {}", mode, path.display()));
            }
        }
    }
    // What the walk must have covered: keys, stores with their WAL, audit logs and heads,
    // the KRL, a recording.
    for name in [
        "user_ca",
        "store.db",
        "store.db-wal",
        "sessions.db",
        "sessions.db-wal",
        "audit.log",
        "revoked.krl",
        "host_ed25519_key",
        "chan-1.cast",
        "seal.json",
    ] {
        assert!(
            seen.iter().any(|s| s == name),
            "{name} not found in {seen:?}"
        );
    }
    assert!(bad.is_empty(), "too open:\n{}", bad.join("\n"));
    // The KRL exported on request is public too, whatever the umask.
    let exported = std::fs::metadata(scratch.file("exported.krl")).expect("exported KRL");
    assert_eq!(exported.permissions().mode() & 0o777, 0o644);
}
