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

/// The ciphers `ssh -v` reports for every key exchange of a connection (the first and each
/// rekey), server to client.
fn negotiated_ciphers(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|l| l.split_once("kex: server->client cipher: "))
        .filter_map(|(_, rest)| rest.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// The bastion's cipher order decides on the front door: OpenSSH's default list puts
/// chacha20-poly1305 first, yet the connection runs AES-GCM (a fraction of the bastion's CPU
/// per byte, docs/benchmarks.md), and keeps it across rekeys; a client that lists no GCM (like
/// Debian's paramiko 2.12, CTR only) or only chacha20 still gets a cipher it speaks.
#[test]
fn the_front_door_prefers_aes_gcm_over_the_clients_order_and_keeps_other_clients() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");

    // Default client settings; 4 MiB with a rekey every 1 MiB.
    let out = bastion
        .ssh("root@web01", &alice)
        .option("LogLevel=DEBUG1")
        .option("RekeyLimit=1M")
        .args(["head", "-c", "4M", "/dev/zero"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    assert_eq!(out.stdout.len(), 4 << 20, "every byte arrives");
    let ciphers = negotiated_ciphers(&out.stderr);
    assert!(ciphers.len() >= 2, "rekeyed: {ciphers:?}");
    assert!(
        ciphers.iter().all(|c| c == "aes128-gcm@openssh.com"),
        "{ciphers:?}"
    );

    for (offer, expected) in [
        ("aes128-ctr,aes256-ctr", "aes256-ctr"),
        (
            "chacha20-poly1305@openssh.com",
            "chacha20-poly1305@openssh.com",
        ),
    ] {
        let out = bastion
            .ssh("root@web01", &alice)
            .option("LogLevel=DEBUG1")
            .option(&format!("Ciphers={offer}"))
            .args(["echo", "ok"])
            .run();
        assert_eq!(out.status, 0, "{offer}: {out}");
        assert_eq!(out.stdout, b"ok\n", "{offer}");
        assert_eq!(negotiated_ciphers(&out.stderr), [expected], "{offer}");
    }
}
