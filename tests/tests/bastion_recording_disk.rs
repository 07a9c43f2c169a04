//! A recording disk that blocks slows only the session recorded on it.
//!
//! How one session's disk is made to block, for real: the session connects (OpenSSH
//! connection multiplexing, no channel yet), its recording directory then gets its own small
//! ext4 file system (a loop mount over the directory; the channel files are created there
//! when the channels open), the session starts streaming terminal output on several
//! channels, and the file system is frozen with `fsfreeze` (what an administrator's snapshot
//! or a hung storage array does: every write and sync on it waits). Another session, on the
//! unfrozen recordings disk, must then move its 64 MiB about as fast as it did before.
//! Needs root (mount, losetup, fsfreeze); fails naming what is missing otherwise.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jitssh_tests::{Bastion, KeyPair, Scratch, Sshd, session_recordings, target, tool, user};

/// Terminal channels the stuck session streams on (more than the bastion has workers).
const STUCK_CHANNELS: usize = 4;

/// Runs `cmd` as root tooling; panics with its output if it fails.
fn sh(cmd: &mut Command) {
    let out = jitssh_tests::run_with(cmd, None, Duration::from_secs(30));
    assert!(out.success(), "{out}");
}

/// A small ext4 file system mounted over `dir` and frozen; thawed and unmounted on drop
/// (also when the test fails: a frozen file system would hang everything that touches it).
struct FrozenDisk {
    mount: PathBuf,
    frozen: bool,
}

impl FrozenDisk {
    fn mount(image: &Path, dir: &Path) -> FrozenDisk {
        sh(Command::new("truncate").arg("-s").arg("64M").arg(image));
        sh(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(image));
        sh(Command::new("mount")
            .args(["-o", "loop"])
            .arg(image)
            .arg(dir));
        sh(Command::new("chmod").arg("700").arg(dir));
        FrozenDisk {
            mount: dir.to_path_buf(),
            frozen: false,
        }
    }

    fn freeze(&mut self) {
        sh(Command::new("fsfreeze").arg("-f").arg(&self.mount));
        self.frozen = true;
    }

    fn thaw(&mut self) {
        if self.frozen {
            self.frozen = false;
            sh(Command::new("fsfreeze").arg("-u").arg(&self.mount));
        }
    }
}

impl Drop for FrozenDisk {
    fn drop(&mut self) {
        if self.frozen {
            let _ = Command::new("fsfreeze").arg("-u").arg(&self.mount).status();
        }
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}

/// Child processes killed on drop.
struct Children(Vec<Child>);

impl Drop for Children {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// These tests mount file systems: they need root, loop devices, mkfs.ext4 and fsfreeze. A
/// machine without them fails the test with what to install, never skips it.
fn require_freezable_disks() {
    // SAFETY: geteuid(2) has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    assert!(
        root,
        "these tests mount file systems: run them as root (CI does)"
    );
    for (tool, package) in [
        ("mkfs.ext4", "e2fsprogs"),
        ("fsfreeze", "util-linux"),
        ("losetup", "mount"),
        ("mount", "mount"),
    ] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "{tool} not found: apt-get install {package}");
    }
    assert!(
        Path::new("/dev/loop-control").exists(),
        "no /dev/loop-control: this machine cannot attach loop devices (modprobe loop)"
    );
}

/// 64 MiB of output from the target to the person, checked by SHA-256 here.
fn download_64m(bastion: &Bastion, key: &KeyPair, timeout: Duration) -> Duration {
    let started = Instant::now();
    let mut cmd = bastion
        .ssh("root@web01", key)
        .args(["head -c 67108864 /dev/zero"])
        .command();
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().expect("spawn ssh");
    let stdout = child.stdout.take().expect("stdout");
    let sum = Command::new(tool("sha256sum"))
        .stdin(Stdio::from(stdout))
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn sha256sum");
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("wait ssh") {
            assert!(status.success(), "ssh: {status}");
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("64 MiB did not get through in {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let took = started.elapsed();
    let summed = sum.wait_with_output().expect("sha256sum");
    let digest = String::from_utf8_lossy(&summed.stdout).to_string();
    assert!(
        digest.starts_with("3b6a07d0d404fab4e23b6d34bc6696a6a312dd92821332385e5af7c01c421351"),
        "sha256 of what arrived: {digest}"
    );
    took
}

#[test]
fn a_blocked_recording_disk_slows_only_its_own_session() {
    require_freezable_disks();
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01: Sshd = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bob = user(&ca, scratch.path(), "bob", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        "[limits]\nrecording_queue = 65536\n",
    );
    let root = bastion.data_dir().join("recordings");

    // Bob's throughput with every disk healthy.
    let baseline = download_64m(&bastion, &bob, Duration::from_secs(120));

    // Alice connects without a channel; her recording directory gets its own disk.
    let before = session_recordings(&root);
    let control = scratch.path().join("alice.ctl");
    let master = bastion
        .ssh("root@web01", &alice)
        .flag("-M")
        .flag("-S")
        .flag(&control)
        .flag("-N")
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ssh master");
    let mut children = Children(vec![master]);
    jitssh_tests::wait_for(
        || control.exists() && session_recordings(&root).len() == before.len() + 1,
        Duration::from_secs(20),
        "alice's session and her recording",
    );
    let alice_dir = session_recordings(&root)
        .into_iter()
        .find(|dir| !before.contains(dir))
        .expect("alice's recording");
    let mut disk = FrozenDisk::mount(&scratch.path().join("alice-disk.img"), &alice_dir);

    // Alice streams terminal output on several channels, recorded on that disk.
    let outputs: Vec<PathBuf> = (0..STUCK_CHANNELS)
        .map(|k| scratch.path().join(format!("alice-{k}.out")))
        .collect();
    for out in &outputs {
        let file = std::fs::File::create(out).expect("output file");
        let child = bastion
            .ssh("root@web01", &alice)
            .flag("-S")
            .flag(&control)
            .flag("-tt")
            .args(["while :; do head -c 30000 /dev/urandom | base64; sleep 0.02; done"])
            .command()
            .stdin(Stdio::piped())
            .stdout(file)
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn alice's channel");
        children.0.push(child);
    }
    let streaming = || {
        (1..=STUCK_CHANNELS).all(|k| {
            std::fs::metadata(alice_dir.join(format!("chan-{k}.cast"))).is_ok_and(|m| m.len() > 0)
        }) && outputs
            .iter()
            .all(|o| std::fs::metadata(o).is_ok_and(|m| m.len() > 0))
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !streaming() {
        if Instant::now() > deadline {
            let files: Vec<_> = std::fs::read_dir(&alice_dir)
                .map(|d| {
                    d.flatten()
                        .map(|e| (e.file_name(), e.metadata().map(|m| m.len()).ok()))
                        .collect()
                })
                .unwrap_or_default();
            let sizes: Vec<_> = outputs
                .iter()
                .map(|o| std::fs::metadata(o).map(|m| m.len()).ok())
                .collect();
            panic!(
                "alice's channels are not streaming onto her disk: {files:?}, outputs {sizes:?}\n{}",
                bastion.log()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    disk.freeze();
    let size = |outputs: &[PathBuf]| -> u64 {
        outputs
            .iter()
            .map(|o| std::fs::metadata(o).map_or(0, |m| m.len()))
            .sum()
    };
    // Alice's relay stops once her recording queue is full: her output stops growing.
    let mut last = (size(&outputs), Instant::now());
    jitssh_tests::wait_for(
        || {
            let now = size(&outputs);
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() > Duration::from_secs(2)
        },
        Duration::from_secs(30),
        "alice's output to stall behind her blocked recording",
    );
    let stalled_at = size(&outputs);

    // Bob, on the healthy disk, keeps his throughput.
    let blocked = download_64m(&bastion, &bob, baseline * 10 + Duration::from_secs(30));
    let alice_meanwhile = size(&outputs) - stalled_at;
    eprintln!(
        "bob's 64 MiB: {baseline:?} before, {blocked:?} while alice's disk was frozen; \
         alice moved {alice_meanwhile} bytes meanwhile"
    );
    assert!(
        blocked <= baseline * 4 + Duration::from_secs(2),
        "bob slowed from {baseline:?} to {blocked:?} by alice's blocked recording"
    );
    // Back-pressure held alice: at most what was in flight (queue, SSH windows, pty).
    assert!(
        alice_meanwhile < 16 << 20,
        "alice moved {alice_meanwhile} bytes with her recording blocked"
    );

    // Thawed, alice's recording catches up and her session goes on.
    disk.thaw();
    let resumed = size(&outputs);
    jitssh_tests::wait_for(
        || size(&outputs) > resumed + 100_000,
        Duration::from_secs(30),
        "alice's output to resume after the thaw",
    );
    drop(children);
    bastion.wait_for_audit("\"event\":\"session.end\"", Duration::from_secs(20));
}

/// Alice's session with her channel recorded on a 256 KiB tmpfs that fills up, under
/// `extra` config; returns her channel's output and the bastion.
fn alice_on_a_full_disk(extra: &str) -> (jitssh_tests::Output, Bastion, Scratch, Sshd) {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01: Sshd = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        extra,
    );
    let root = bastion.data_dir().join("recordings");
    let control = scratch.path().join("alice.ctl");
    let master = bastion
        .ssh("root@web01", &alice)
        .flag("-M")
        .flag("-S")
        .flag(&control)
        .flag("-N")
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ssh master");
    let _children = Children(vec![master]);
    jitssh_tests::wait_for(
        || control.exists() && session_recordings(&root).len() == 1,
        Duration::from_secs(20),
        "alice's session and her recording",
    );
    let dir = session_recordings(&root).remove(0);
    sh(Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k,mode=0700", "tmpfs"])
        .arg(&dir));
    let _unmount = Unmount(dir);
    let out = bastion
        .ssh("root@web01", &alice)
        .flag("-S")
        .flag(&control)
        .flag("-tt")
        .args(["head -c 4194304 /dev/urandom | base64; echo all-sent"])
        .timeout(Duration::from_secs(60))
        .run();
    (out, bastion, scratch, web01)
}

/// Unmounts a directory on drop.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_recording_disk_that_fills_mid_session_ends_the_session_under_terminate() {
    require_freezable_disks();
    let (out, bastion, _scratch, _web01) = alice_on_a_full_disk("");
    assert!(
        !out.stdout_str().contains("all-sent"),
        "the session went on unrecorded: {} bytes",
        out.stdout.len()
    );
    let audit = bastion.wait_for_audit("the recording failed", Duration::from_secs(20));
    assert!(audit.contains("No space left on device"), "{audit}");
}

#[test]
fn a_recording_disk_that_fills_mid_session_is_audited_under_continue() {
    require_freezable_disks();
    let (out, bastion, _scratch, _web01) =
        alice_on_a_full_disk("[recordings]\non_failure = \"continue\"\n");
    assert!(out.stdout_str().contains("all-sent"), "{out}");
    bastion.wait_for_audit("\"event\":\"recording.degraded\"", Duration::from_secs(20));
}
