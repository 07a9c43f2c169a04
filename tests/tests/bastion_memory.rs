//! Flow control: a client that stops reading stalls its target instead of growing the
//! bastion's memory.

use std::process::Stdio;
use std::time::{Duration, Instant};

use jitssh_tests::{Bastion, Scratch, target, user};

const LIMIT_KIB: u64 = 64 * 1024;

/// Resident set size of `pid`, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[test]
fn a_client_that_stops_reading_does_not_grow_the_bastion() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let pid = bastion.daemon.pid();
    let before = rss_kib(pid);

    // The target offers 1 GiB; ssh's stdout is a pipe nobody reads, so ssh stops reading
    // its channel once the pipe and its window are full.
    let mut child = bastion
        .ssh("root@web01", &alice)
        .args(["head", "-c", "1G", "/dev/zero"])
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ssh");
    bastion.wait_for_audit("head -c 1G", Duration::from_secs(10));

    let mut peak = 0;
    let watch_until = Instant::now() + Duration::from_secs(4);
    while Instant::now() < watch_until {
        peak = peak.max(rss_kib(pid));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "the transfer is stalled, not finished"
    );
    eprintln!("bastion RSS: {before} KiB before, peak {peak} KiB while stalled");
    assert!(
        peak < LIMIT_KIB,
        "bastion RSS {peak} KiB while a client does not read (limit {LIMIT_KIB} KiB)"
    );

    let _ = child.kill();
    let _ = child.wait();
    // Still serving, and the stalled session ended.
    let out = bastion.ssh("root@web01", &alice).args(["echo", "ok"]).run();
    assert_eq!(out.stdout_str(), "ok\n", "{out}");
}
