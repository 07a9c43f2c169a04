//! Recording quotas: a person with a pty cannot fill the bastion's disk. Past
//! `max_session_bytes` (or the person's `max_person_bytes`) terminal output is recorded as
//! size and SHA-256 only, with a note in the cast, `recording.quota` in the audit log and a
//! seal that still verifies; below `min_free_bytes` new sessions are refused, audited.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jitssh_tests::{
    Bastion, CaFixture, KeyPair, Output, Scratch, Sshd, asciinema_cat, run, session_recordings,
    target, tool, user,
};

struct World {
    scratch: Scratch,
    ca: CaFixture,
    bastion: Bastion,
    web01: Sshd,
    alice: KeyPair,
    extra: String,
}

fn world(extra: &str) -> World {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        extra,
    );
    World {
        scratch,
        ca,
        bastion,
        web01,
        alice,
        extra: extra.to_owned(),
    }
}

impl World {
    /// Stops the bastion and starts it again on the same data.
    fn restart(&mut self) {
        self.bastion.daemon.stop();
        self.bastion = Bastion::start(
            &self.ca,
            &[("web01", format!("127.0.0.1:{}", self.web01.port()))],
            &self.extra,
        );
    }

    /// `ssh -tt root@web01 COMMAND` through the bastion.
    fn pty(&self, command: &str) -> Output {
        let out = self
            .bastion
            .ssh("root@web01", &self.alice)
            .flag("-tt")
            .args([command])
            .timeout(Duration::from_secs(120))
            .run();
        assert!(out.success(), "exit {}: {}", out.status, out.stderr);
        out
    }

    /// The recording of the session whose journal contains `needle`, once it is sealed.
    fn recording_with(&self, needle: &str) -> PathBuf {
        let root = self.bastion.data_dir().join("recordings");
        let mut found = None;
        jitssh_tests::wait_for(
            || {
                found = session_recordings(&root).into_iter().find(|d| {
                    d.join("seal.json").exists()
                        && std::fs::read_to_string(d.join("events.jsonl"))
                            .is_ok_and(|e| e.contains(needle))
                });
                found.is_some()
            },
            Duration::from_secs(10),
            "the session's recording",
        );
        found.expect("found")
    }

    /// `ssh-bastion verify ID`.
    fn verify(&self, dir: &Path) -> Output {
        let id = dir.file_name().expect("id").to_string_lossy().into_owned();
        run(Command::new(jitssh_tests::project_bin("ssh-bastion"))
            .arg("--config")
            .arg(&self.bastion.config)
            .args(["verify", &id]))
    }

    /// SHA-256 (hex) of `data`, by `sha256sum`.
    fn sha256(&self, data: &[u8]) -> String {
        let file = self.scratch.write("received", data);
        let out = run(Command::new(tool("sha256sum")).arg(&file));
        let text = out.stdout_str();
        text.split_whitespace()
            .next()
            .expect("sha256sum output")
            .to_owned()
    }
}

/// Bytes of the files in `dir`.
fn stored(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .expect("recording dir")
        .flatten()
        .map(|e| e.metadata().map_or(0, |m| m.len()))
        .sum()
}

fn seal(dir: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dir.join("seal.json")).expect("seal")).expect("json")
}

const MIB: u64 = 1 << 20;

#[test]
fn pty_output_past_the_session_quota_is_kept_as_size_and_digest() {
    let w = world("[recordings]\nmax_session_bytes = 1048576\n");
    // 4 MiB of text (base64 of 3 MiB) through a pty.
    let out = w.pty("echo quota-start; head -c 3145728 /dev/urandom | base64; echo quota-end");
    assert!(out.stdout.len() as u64 > 4 * MIB, "{}", out.stdout.len());
    let received = w.sha256(&out.stdout);

    let dir = w.recording_with("quota-start");
    let size = stored(&dir);
    eprintln!(
        "recorded {size} bytes for {} bytes of output",
        out.stdout.len()
    );
    assert!(
        size < MIB + 128 * 1024,
        "the recording is bounded by the quota: {size} bytes"
    );
    // The seal vouches for the size and digest of everything the client received.
    let seal = seal(&dir);
    let channel = &seal["channels"][0];
    assert_eq!(channel["bulk_out"]["reason"], "quota", "{channel}");
    assert_eq!(channel["bytes_out"], out.stdout.len() as u64, "{channel}");
    assert_eq!(channel["sha256_out"], received.as_str(), "{channel}");
    // A replay shows where recording stopped and the digest of the whole output.
    let played = asciinema_cat(&dir.join("chan-1.cast"));
    let text = played.stdout_str();
    for needle in [
        "quota-start",
        "recording quota of 1048576 bytes is reached",
        received.as_str(),
    ] {
        assert!(text.contains(needle), "{needle} not in the replay");
    }
    assert!(
        !text.contains("quota-end"),
        "output past the quota was stored"
    );
    let verified = w.verify(&dir);
    assert!(verified.success(), "{verified}");
    let audit = w
        .bastion
        .wait_for_audit("\"event\":\"recording.quota\"", Duration::from_secs(10));
    assert!(audit.contains("\"quota\":\"session\""), "{audit}");
}

#[test]
fn a_person_past_their_quota_is_recorded_as_size_and_digest_across_restarts() {
    let mut w = world("[recordings]\nmax_person_bytes = 1048576\nperson_window = \"1h\"\n");
    // The first session stays under the person's quota and is stored in full.
    w.pty("echo first-session; head -c 600000 /dev/urandom | base64");
    let first = w.recording_with("first-session");
    assert!(!seal(&first)["channels"][0]["bulk_out"].is_object());
    // A restart does not forget it: the second session reaches the quota.
    w.restart();
    let out = w.pty("echo second-session; head -c 600000 /dev/urandom | base64");
    let second = w.recording_with("second-session");
    assert!(
        stored(&first) + stored(&second) < MIB + 128 * 1024,
        "{} + {}",
        stored(&first),
        stored(&second)
    );
    let channel = &seal(&second)["channels"][0];
    assert_eq!(channel["bulk_out"]["reason"], "quota", "{channel}");
    assert_eq!(channel["sha256_out"], w.sha256(&out.stdout).as_str());
    let verified = w.verify(&second);
    assert!(verified.success(), "{verified}");
    let audit = w
        .bastion
        .wait_for_audit("\"event\":\"recording.quota\"", Duration::from_secs(10));
    assert!(audit.contains("\"quota\":\"person\""), "{audit}");
}

#[test]
fn below_the_free_space_floor_new_sessions_are_refused_and_audited() {
    // A floor above any disk's free space: the real disk is "low".
    let w = world("[recordings]\nmin_free_bytes = 9223372036854775807\n");
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo", "unrecorded"])
        .run();
    assert_eq!(out.status, 255, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(out.stderr.contains("the recordings disk is low"), "{out}");
    let audit = w
        .bastion
        .wait_for_audit("\"event\":\"recording.failed\"", Duration::from_secs(10));
    assert!(audit.contains("min_free_bytes"), "{audit}");
    let log = w.bastion.log();
    assert!(
        log.contains("recordings disk below min_free_bytes"),
        "no alert in the log: {log}"
    );
}
