//! Every session through `ssh-bastion` is recorded: terminal sessions as asciicast that stock
//! `asciinema` plays, transfers as sizes and digests, all sealed at the end; and a session
//! that cannot be recorded does not happen (unless the policy says to go on, audited).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jitssh_tests::{
    Bastion, KeyPair, Scratch, Sshd, asciinema_cat, session_recordings, target, tool, user,
};

struct World {
    scratch: Scratch,
    bastion: Bastion,
    _web01: Sshd,
    alice: KeyPair,
}

fn world(extra: &str, prepare: impl FnOnce(&Path)) -> World {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    prepare(&scratch.path().join("bastion-data"));
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        extra,
    );
    World {
        scratch,
        bastion,
        _web01: web01,
        alice,
    }
}

/// The recording of the only session that ended so far.
fn only_recording(w: &World) -> PathBuf {
    w.bastion
        .wait_for_audit("\"event\":\"session.end\"", Duration::from_secs(10));
    let all = session_recordings(&w.bastion.data_dir().join("recordings"));
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().expect("one recording")
}

#[test]
fn a_pty_session_is_recorded_as_asciicast_and_sealed() {
    let w = world("", |_| {});
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .flag("-tt")
        .stdin("echo rec-$((6*7))\nexit\n")
        .run();
    assert!(out.success(), "{out}");
    let dir = only_recording(&w);
    let cast = dir.join("chan-1.cast");
    let played = asciinema_cat(&cast);
    assert!(played.stdout_str().contains("rec-42"), "{played}");
    let header = std::fs::read_to_string(&cast).expect("cast");
    assert!(header.starts_with("{\"version\":2"), "{header}");
    assert!(dir.join("seal.json").exists() && dir.join("seal.json.sig").exists());
    let audit = w.bastion.audit();
    assert!(audit.contains("\"sealed\":true"), "{audit}");
    // Stock OpenSSH verifies the seal with the bastion's public key.
    let signers = w.scratch.write(
        "allowed_signers",
        format!(
            "bastion {}\n",
            std::fs::read_to_string(w.bastion.data_dir().join("host_ed25519_key.pub"))
                .expect("host key")
                .trim()
        ),
    );
    let seal = std::fs::read(dir.join("seal.json")).expect("seal");
    let verified = jitssh_tests::run_with(
        Command::new(tool("ssh-keygen"))
            .args(["-Y", "verify", "-f"])
            .arg(&signers)
            .args(["-I", "bastion", "-n", "jitssh-recording", "-s"])
            .arg(dir.join("seal.json.sig")),
        Some(&seal),
        Duration::from_secs(20),
    );
    assert!(verified.success(), "{verified}");
}

#[test]
fn exec_output_and_transfers_are_recorded() {
    let w = world("", |_| {});
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo", "exec-recorded"])
        .run();
    assert!(out.success(), "{out}");
    let dir = only_recording(&w);
    let played = asciinema_cat(&dir.join("chan-1.cast"));
    assert!(played.stdout_str().contains("exec-recorded"), "{played}");

    // An sftp upload: recorded as size and digest, not content.
    let file = w
        .scratch
        .write("payload.txt", "secret transfer content\n".repeat(1000));
    let target_path = w.scratch.file("uploaded.txt");
    let mut sftp = Command::new(tool("sftp"));
    sftp.args(w.bastion.copy_options("root@web01", &w.alice))
        .args(["-b", "-", "127.0.0.1"]);
    let batch = format!("put {} {}\n", file.display(), target_path.display());
    let out = jitssh_tests::run_with(&mut sftp, Some(batch.as_bytes()), Duration::from_secs(60));
    assert!(out.success(), "{out}");
    w.bastion
        .wait_for_audit("\"name\":\"sftp\"", Duration::from_secs(5));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let sftp_dir = loop {
        let all = session_recordings(&w.bastion.data_dir().join("recordings"));
        if let Some(dir) = all.iter().find(|d| {
            std::fs::read_to_string(d.join("events.jsonl"))
                .is_ok_and(|e| e.contains("sftp") && e.contains("session.end"))
        }) {
            break dir.clone();
        }
        assert!(std::time::Instant::now() < deadline, "no sftp recording");
        std::thread::sleep(Duration::from_millis(50));
    };
    let events = std::fs::read_to_string(sftp_dir.join("events.jsonl")).expect("events");
    assert!(events.contains("sha256_in"), "{events}");
    let everything: String = std::fs::read_dir(&sftp_dir)
        .expect("dir")
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(
        !everything.contains("secret transfer content"),
        "transfer content is not stored by default"
    );
}

#[test]
fn a_download_through_exec_is_recorded_as_size_and_digest() {
    let w = world("[recordings]\nexec_output_limit = 65536\n", |_| {});
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo start; echo careful >&2; head -c 8388608 /dev/zero"])
        .timeout(Duration::from_secs(120))
        .run();
    assert!(out.success(), "exit {}: {}", out.status, out.stderr);
    assert_eq!(out.stdout.len(), 6 + (8 << 20));
    assert!(out.stdout.starts_with(b"start\n"));
    // What an auditor does with a copy of the output.
    let copy = w.scratch.write("download", &out.stdout);
    let summed = jitssh_tests::run_with(
        Command::new(tool("sha256sum")).arg(&copy),
        None,
        Duration::from_secs(20),
    );
    let digest = summed.stdout_str();
    let digest = digest.split_whitespace().next().expect("sha256sum output");

    let dir = only_recording(&w);
    let seal: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("seal.json")).expect("seal"))
            .expect("seal json");
    let channel = &seal["channels"][0];
    assert_eq!(channel["bytes_out"], 6 + (8 << 20), "{channel}");
    assert_eq!(channel["sha256_out"], digest, "{channel}");
    assert_eq!(channel["bulk_out"]["reason"], "binary", "{channel}");
    assert_eq!(channel["bulk_out"]["offset"], 6, "{channel}");
    assert!(channel.get("bulk_err").is_none(), "{channel}");
    let events = std::fs::read_to_string(dir.join("events.jsonl")).expect("events");
    assert!(events.contains("\"event\":\"output.bulk\""), "{events}");
    let stored: u64 = std::fs::read_dir(&dir)
        .expect("dir")
        .flatten()
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum();
    assert!(
        stored < 64 * 1024,
        "the download was stored: {stored} bytes"
    );
    let played = asciinema_cat(&dir.join("chan-1.cast"));
    for needle in ["start", "careful", "stdout is binary", digest] {
        assert!(played.stdout_str().contains(needle), "{needle} in {played}");
    }
}

#[test]
fn a_session_that_cannot_be_recorded_does_not_happen() {
    // The recordings root is a file: nothing can be recorded.
    let w = world("", |data| {
        std::fs::create_dir_all(data).expect("mkdir");
        std::fs::write(data.join("recordings"), "not a directory").expect("write");
    });
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo", "unrecorded"])
        .run();
    assert_eq!(out.status, 255, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr.contains("the session cannot be recorded"),
        "{out}"
    );
    w.bastion
        .wait_for_audit("\"event\":\"recording.failed\"", Duration::from_secs(5));
}

#[test]
fn under_the_continue_policy_an_unrecorded_session_goes_on_and_is_audited() {
    let w = world("[recordings]\non_failure = \"continue\"\n", |data| {
        std::fs::create_dir_all(data).expect("mkdir");
        std::fs::write(data.join("recordings"), "not a directory").expect("write");
    });
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo", "unrecorded"])
        .run();
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout_str(), "unrecorded\n");
    w.bastion
        .wait_for_audit("\"event\":\"recording.degraded\"", Duration::from_secs(5));
}

#[test]
fn kill_9_of_the_bastion_mid_session_leaves_a_playable_verifiable_prefix() {
    use std::io::Write as _;
    let mut w = world("", |_| {});
    let mut ssh = w
        .bastion
        .ssh("root@web01", &w.alice)
        .flag("-tt")
        .command()
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn ssh");
    let mut input = ssh.stdin.take().expect("stdin");
    input
        .write_all(b"echo before-crash-$((6*7))\n")
        .expect("type");
    // The recorder flushes at least every second: wait until the output is on disk.
    let root = w.bastion.data_dir().join("recordings");
    jitssh_tests::wait_for(
        || {
            session_recordings(&root).iter().any(|dir| {
                std::fs::read_to_string(dir.join("chan-1.cast"))
                    .is_ok_and(|cast| cast.contains("before-crash-42"))
            })
        },
        Duration::from_secs(15),
        "the session's output in its recording",
    );
    let pid = libc::pid_t::try_from(w.bastion.daemon.pid()).expect("pid");
    // SAFETY: kill(2) has no memory-safety preconditions; the bastion is our live child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert_eq!(w.bastion.daemon.stop(), -1, "killed by a signal");
    drop(input);
    let _ = ssh.kill();
    let _ = ssh.wait();

    let all = session_recordings(&root);
    assert_eq!(all.len(), 1, "{all:?}");
    let dir = &all[0];
    assert!(!dir.join("seal.json").exists(), "no seal after a crash");
    let played = asciinema_cat(&dir.join("chan-1.cast"));
    assert!(played.success(), "{played}");
    assert!(played.stdout_str().contains("before-crash-42"), "{played}");
    // The auditor's verify reports it unsealed, with what is still verifiable.
    let id = dir.file_name().expect("id").to_string_lossy().to_string();
    let verify = jitssh_tests::run(
        Command::new(jitssh_tests::project_bin("ssh-bastion"))
            .arg("--config")
            .arg(&w.bastion.config)
            .args(["verify", &id]),
    );
    assert_ne!(verify.status, 0, "{verify}");
    let report = verify.stdout_str();
    assert!(report.contains("UNSEALED"), "{verify}");
    assert!(
        report.contains("chan-1.cast: ") && report.contains("lines verified"),
        "{verify}"
    );
}
