//! File transfers through `ssh-bastion`: scp (SFTP mode and legacy `-O`) and sftp move a
//! 64 MiB file both ways intact.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jitssh_tests::{Bastion, Scratch, run_ok, run_with, target, tool, user};

const SIZE_MIB: u64 = 64;

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new(tool("sha256sum")).arg(path));
    out.stdout_str()
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}

fn random_file(path: &Path, mib: u64) {
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "head -c {mib}M /dev/urandom > '{}'",
        path.display()
    )));
}

#[test]
fn scp_both_modes_and_sftp_move_64_mib_both_ways_intact() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let source = scratch.file("source.bin");
    random_file(&source, SIZE_MIB);
    let digest = sha256(&source);
    let options = bastion.copy_options("root@web01", &alice);

    for (mode, extra) in [("scp", None), ("scp -O", Some("-O"))] {
        let uploaded = scratch.file(format!("up-{}.bin", extra.unwrap_or("sftp")));
        let downloaded = scratch.file(format!("down-{}.bin", extra.unwrap_or("sftp")));
        let started = Instant::now();
        let mut up = Command::new(tool("scp"));
        up.args(&options)
            .args(extra)
            .arg(&source)
            .arg(format!("127.0.0.1:{}", uploaded.display()));
        run_ok(&mut up);
        let mut down = Command::new(tool("scp"));
        down.args(&options)
            .args(extra)
            .arg(format!("127.0.0.1:{}", uploaded.display()))
            .arg(&downloaded);
        run_ok(&mut down);
        eprintln!("{mode}: 2 x {SIZE_MIB} MiB in {:?}", started.elapsed());
        assert_eq!(sha256(&uploaded), digest, "{mode} upload");
        assert_eq!(sha256(&downloaded), digest, "{mode} download");
    }

    let uploaded = scratch.file("up-sftp-batch.bin");
    let downloaded = scratch.file("down-sftp-batch.bin");
    let batch = format!(
        "put {} {}\nget {} {}\n",
        source.display(),
        uploaded.display(),
        uploaded.display(),
        downloaded.display()
    );
    let mut sftp = Command::new(tool("sftp"));
    sftp.args(&options).arg("-b").arg("-").arg("127.0.0.1");
    let out = run_with(&mut sftp, Some(batch.as_bytes()), Duration::from_secs(120));
    assert!(out.success(), "{out}");
    assert_eq!(sha256(&uploaded), digest, "sftp put");
    assert_eq!(sha256(&downloaded), digest, "sftp get");

    let audit = bastion.wait_for_audit("\"name\":\"sftp\"", Duration::from_secs(10));
    assert!(audit.contains("scp -t"), "legacy scp is an exec: {audit}");
}

/// Both directions at full speed at once (`cat` echoing 24 MiB back, far more than every
/// window and queue on the way): no deadlock between the two directions of a channel, and
/// every byte comes back in order.
#[test]
fn a_full_duplex_stream_through_cat_comes_back_intact() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let source = scratch.file("duplex.bin");
    random_file(&source, 24);
    let data = std::fs::read(&source).expect("read source");
    let out = bastion
        .ssh("root@web01", &alice)
        .args(["cat"])
        .stdin(data.clone())
        .timeout(Duration::from_secs(120))
        .run();
    assert!(out.success(), "exit {}: {}", out.status, out.stderr);
    assert_eq!(out.stdout.len(), data.len());
    assert!(out.stdout == data, "the echoed stream differs");
}
