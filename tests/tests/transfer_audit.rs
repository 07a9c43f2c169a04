//! Transfers audited per file: files moved through `ssh-bastion` by OpenSSH `sftp`, `scp`
//! (SFTP mode and legacy `-O`, recursive too) and paramiko each appear in the recording with
//! their path, direction, size and the SHA-256 `sha256sum` gives; renames and removes with
//! their paths; `sessions show` and `export --format json` list them, and `verify` still
//! passes. A malformed SFTP packet ends its channel with an audit record; the bastion stays
//! up.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use jitssh_tests::{
    Bastion, KeyPair, Output, Scratch, Sshd, project_bin, run, run_ok, run_with, target, tool, user,
};
use serde_json::Value;

struct World {
    scratch: Scratch,
    bastion: Bastion,
    _web01: Sshd,
    alice: KeyPair,
}

fn world() -> World {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    World {
        scratch,
        bastion,
        _web01: web01,
        alice,
    }
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new(tool("sha256sum")).arg(path));
    out.stdout_str()
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}

/// A file of `len` pseudo-random bytes.
fn make_file(path: &Path, len: usize, seed: u32) {
    let mut x = seed.wrapping_mul(2_654_435_761) | 1;
    let data: Vec<u8> = (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect();
    std::fs::write(path, data).expect("write test file");
}

fn text(path: &Path) -> String {
    path.to_str().expect("utf-8 path").to_owned()
}

impl World {
    fn cli(&self, args: &[&str]) -> Output {
        run(Command::new(project_bin("ssh-bastion"))
            .arg("--config")
            .arg(&self.bastion.config)
            .args(args))
    }

    fn cli_ok(&self, args: &[&str]) -> Output {
        let out = self.cli(args);
        assert!(out.success(), "ssh-bastion {args:?}: {out}");
        out
    }

    /// Waits until `n` sessions ended (each is sealed before its `session.end`).
    fn wait_sessions_ended(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let audit = self.bastion.audit();
            if audit.matches("\"event\":\"session.end\"").count() >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "fewer than {n} sessions ended:\n{audit}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn session_ids(&self) -> Vec<String> {
        self.bastion.session_ids(&[])
    }

    /// Every session's per-file records (from `export --format json`) and the text of
    /// every `sessions show`.
    fn transfers(&self) -> (Vec<Value>, String) {
        let mut records = Vec::new();
        let mut shown = String::new();
        for id in self.session_ids() {
            let json = self
                .cli_ok(&["export", &id, "--format", "json"])
                .stdout_str();
            let doc: Value = serde_json::from_str(json.trim()).expect("export JSON");
            records.extend(
                doc["transfers"]
                    .as_array()
                    .expect("a transfers array")
                    .iter()
                    .cloned(),
            );
            shown.push_str(&self.cli_ok(&["sessions", "show", &id]).stdout_str());
        }
        (records, shown)
    }

    fn copy(&self, extra: &[&str], from: &str, to: &str) {
        let mut scp = Command::new(tool("scp"));
        scp.args(self.bastion.copy_options("root@web01", &self.alice))
            .args(extra)
            .arg(from)
            .arg(to);
        run_ok(&mut scp);
    }
}

/// The file record of `path` moving `direction` over `protocol`, which must be whole with
/// the size and SHA-256 of `local` (a copy of the file), and show in `sessions show`.
fn assert_file(
    records: &[Value],
    shown: &str,
    protocol: &str,
    direction: &str,
    path: &str,
    local: &Path,
) {
    let found = records
        .iter()
        .find(|r| r["protocol"] == protocol && r["direction"] == direction && r["path"] == path);
    let Some(record) = found else {
        panic!("no {protocol} {direction} of {path} in {records:#?}");
    };
    let about: Vec<&Value> = records.iter().filter(|r| r["path"] == path).collect();
    let digest = sha256(local);
    let size = std::fs::metadata(local).expect("local copy").len();
    assert_eq!(record["whole"], true, "{record}, of {about:#?}");
    assert_eq!(record["size"], size, "{record}, of {about:#?}");
    assert_eq!(record["sha256"], digest.as_str(), "{record}, of {about:#?}");
    assert_eq!(record["status"], "ok", "{record}, of {about:#?}");
    let line = format!("{direction:<8} {path}  {size} bytes  sha256 {digest}");
    assert!(shown.contains(&line), "no {line:?} in:\n{shown}");
}

fn assert_op(records: &[Value], op: &str, path: &str, to: Option<&str>) {
    let found = records.iter().any(|r| {
        r["op"] == op
            && r["path"] == path
            && r["status"] == "ok"
            && to.is_none_or(|to| r["to"] == to)
    });
    assert!(found, "no {op} of {path} in {records:#?}");
}

#[test]
fn openssh_sftp_batch_put_get_rename_remove_are_audited_per_file() {
    let w = world();
    let local = w.scratch.file("local");
    let remote = w.scratch.file("remote");
    std::fs::create_dir_all(&local).expect("mkdir");
    std::fs::create_dir_all(&remote).expect("mkdir");
    let files = [("big.bin", 3 << 20), ("small.txt", 1000), ("empty", 0)];
    for (i, (name, len)) in files.iter().enumerate() {
        make_file(&local.join(name), *len, i as u32);
    }
    let r = |name: &str| text(&remote.join(name));
    let batch = format!(
        "put {l}/big.bin {rb}\nput {l}/small.txt {rs}\nput {l}/empty {re}\n\
         get {rb} {l}/big.back\nrename {rs} {rr}\nrm {re}\nmkdir {rd}\nrmdir {rd}\nchmod 600 {rr}\n",
        l = text(&local),
        rb = r("big.bin"),
        rs = r("small.txt"),
        re = r("empty"),
        rr = r("renamed.txt"),
        rd = r("dir"),
    );
    let mut sftp = Command::new(tool("sftp"));
    sftp.args(w.bastion.copy_options("root@web01", &w.alice))
        .arg("-b")
        .arg("-")
        .arg("127.0.0.1");
    let out = run_with(&mut sftp, Some(batch.as_bytes()), Duration::from_secs(60));
    assert!(out.success(), "{out}");
    w.wait_sessions_ended(1);

    let (records, shown) = w.transfers();
    for (name, _) in files {
        assert_file(
            &records,
            &shown,
            "sftp",
            "upload",
            &r(name),
            &local.join(name),
        );
    }
    assert_file(
        &records,
        &shown,
        "sftp",
        "download",
        &r("big.bin"),
        &local.join("big.back"),
    );
    assert_op(&records, "rename", &r("small.txt"), Some(&r("renamed.txt")));
    assert_op(&records, "remove", &r("empty"), None);
    assert_op(&records, "mkdir", &r("dir"), None);
    assert_op(&records, "rmdir", &r("dir"), None);
    assert_op(&records, "setstat", &r("renamed.txt"), None);
    for line in [
        format!("sftp rename   {} -> {}", r("small.txt"), r("renamed.txt")),
        format!("sftp remove   {}", r("empty")),
    ] {
        assert!(shown.contains(&line), "no {line:?} in:\n{shown}");
    }
    // The records are in the journal, under the hash chain and the seal.
    let verified = w.cli_ok(&["verify"]).stdout_str();
    assert!(!verified.contains("FAIL"), "{verified}");
}

#[test]
fn scp_in_both_modes_up_and_down_and_recursive_is_audited_per_file() {
    let w = world();
    let local = w.scratch.file("local");
    let remote = w.scratch.file("remote");
    for dir in [
        "local/tree/sub",
        "remote/sftp",
        "remote/rcp",
        "back-sftp",
        "back-rcp",
    ] {
        std::fs::create_dir_all(w.scratch.file(dir)).expect("mkdir");
    }
    make_file(&local.join("a.bin"), 200_000, 1);
    make_file(&local.join("b.txt"), 10, 2);
    make_file(&local.join("tree/t1"), 70_000, 3);
    make_file(&local.join("tree/sub/t2"), 5, 4);
    let at = |path: &Path| format!("127.0.0.1:{}", text(path));
    let mut sessions = 0;
    for (mode, protocol, extra) in [("sftp", "sftp", &[][..]), ("rcp", "scp", &["-O"][..])] {
        let dir = remote.join(mode);
        let back = w.scratch.file(format!("back-{mode}"));
        // Two files up into a directory, one down, a tree up and back down.
        let mut up = Command::new(tool("scp"));
        up.args(w.bastion.copy_options("root@web01", &w.alice))
            .args(extra)
            .arg(local.join("a.bin"))
            .arg(local.join("b.txt"))
            .arg(at(&dir));
        run_ok(&mut up);
        w.copy(extra, &at(&dir.join("a.bin")), &text(&back.join("a.bin")));
        let recursive: Vec<&str> = extra.iter().copied().chain(["-r"]).collect();
        w.copy(&recursive, &text(&local.join("tree")), &at(&dir));
        w.copy(&recursive, &at(&dir.join("tree")), &text(&back));
        sessions += 4;
        w.wait_sessions_ended(sessions);
        let (records, shown) = w.transfers();
        let r = |name: &str| text(&dir.join(name));
        for name in ["a.bin", "b.txt", "tree/t1", "tree/sub/t2"] {
            assert_file(
                &records,
                &shown,
                protocol,
                "upload",
                &r(name),
                &local.join(name),
            );
        }
        assert_file(
            &records,
            &shown,
            protocol,
            "download",
            &r("a.bin"),
            &back.join("a.bin"),
        );
        for name in ["tree/t1", "tree/sub/t2"] {
            assert_file(
                &records,
                &shown,
                protocol,
                "download",
                &r(name),
                &back.join(name),
            );
        }
    }
    let verified = w.cli_ok(&["verify"]).stdout_str();
    assert!(!verified.contains("FAIL"), "{verified}");
}

#[test]
fn paramiko_put_get_rename_remove_are_audited_per_file() {
    let w = world();
    let local = w.scratch.file("local");
    let remote = w.scratch.file("remote");
    std::fs::create_dir_all(&local).expect("mkdir");
    std::fs::create_dir_all(&remote).expect("mkdir");
    make_file(&local.join("one.bin"), 300_000, 7);
    make_file(&local.join("two.txt"), 4000, 8);
    let r = |name: &str| text(&remote.join(name));
    let script = format!(
        r#"
import paramiko
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
client.connect("127.0.0.1", port={port}, username="root@web01", key_filename={key:?},
               look_for_keys=False, allow_agent=False, timeout=20)
sftp = client.open_sftp()
sftp.put({l1:?}, {r1:?})
sftp.put({l2:?}, {r2:?})
sftp.get({r1:?}, {back:?})
sftp.rename({r2:?}, {r3:?})
sftp.remove({r1:?})
sftp.close()
client.close()
"#,
        port = w.bastion.port,
        key = text(&w.alice.private),
        l1 = text(&local.join("one.bin")),
        l2 = text(&local.join("two.txt")),
        r1 = r("one.bin"),
        r2 = r("two.txt"),
        r3 = r("three.txt"),
        back = text(&local.join("one.back")),
    );
    // Debian's python3 with python3-paramiko (see .ci/run).
    let out = run(Command::new("/usr/bin/python3").arg("-c").arg(&script));
    assert!(out.success(), "{out}");
    w.wait_sessions_ended(1);
    let (records, shown) = w.transfers();
    assert_file(
        &records,
        &shown,
        "sftp",
        "upload",
        &r("one.bin"),
        &local.join("one.bin"),
    );
    assert_file(
        &records,
        &shown,
        "sftp",
        "upload",
        &r("two.txt"),
        &local.join("two.txt"),
    );
    assert_file(
        &records,
        &shown,
        "sftp",
        "download",
        &r("one.bin"),
        &local.join("one.back"),
    );
    assert_op(&records, "rename", &r("two.txt"), Some(&r("three.txt")));
    assert_op(&records, "remove", &r("one.bin"), None);
}

#[test]
fn a_malformed_sftp_packet_ends_the_channel_with_an_audit_record_and_the_bastion_stays_up() {
    let w = world();
    // The sftp subsystem, then a packet claiming 4 GiB, then garbage: the bastion must end
    // the channel (the client sees EOF/close) without passing it on.
    let script = format!(
        r#"
import paramiko, sys, time
client = paramiko.SSHClient()
client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
client.connect("127.0.0.1", port={port}, username="root@web01", key_filename={key:?},
               look_for_keys=False, allow_agent=False, timeout=20)
chan = client.get_transport().open_session()
chan.invoke_subsystem("sftp")
chan.sendall(b"\x00\x00\x00\x05\x01\x00\x00\x00\x03")
chan.settimeout(20)
version = chan.recv(1024)
chan.sendall(b"\xff\xff\xff\xff" + b"garbage" * 100)
deadline = time.time() + 20
while time.time() < deadline:
    if chan.recv(1024) == b"":
        break
print("closed" if chan.closed or chan.eof_received else "open", len(version))
# The connection (session) goes on: another channel still works.
_, stdout, _ = client.exec_command("echo still-here")
sys.stdout.write(stdout.read().decode())
client.close()
"#,
        port = w.bastion.port,
        key = text(&w.alice.private),
    );
    let out = run(Command::new("/usr/bin/python3").arg("-c").arg(&script));
    assert!(out.success(), "{out}");
    let stdout = out.stdout_str();
    assert!(stdout.starts_with("closed"), "{out}");
    assert!(stdout.contains("still-here"), "{out}");
    let audit = w
        .bastion
        .wait_for_audit("\"event\":\"transfer.malformed\"", Duration::from_secs(10));
    assert!(
        audit.contains("over the 262144-byte limit"),
        "the reason is in the audit log: {audit}"
    );
    w.wait_sessions_ended(1);
    let (records, shown) = w.transfers();
    assert!(
        records.iter().any(|r| r["op"] == "malformed"
            && r["status"]
                .as_str()
                .is_some_and(|s| s.contains("malformed sftp from the client"))),
        "{records:#?}"
    );
    assert!(shown.contains("sftp malformed"), "{shown}");
    // The bastion is still up for the next person.
    let again = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo", "next"])
        .run();
    assert!(again.success(), "{}", again.stderr);
    let verified = w.cli_ok(&["verify"]).stdout_str();
    assert!(!verified.contains("FAIL"), "{verified}");
}
