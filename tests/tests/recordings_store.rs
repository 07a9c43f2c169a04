//! Recordings in object storage (`[recordings] store = "s3://..."`) on a real S3 server
//! (Garage), through a real `ssh-bastion serve`, real sshd and ssh: uploaded when the session
//! ends, read back by every auditor command with the same output as from disk, uploaded after
//! a crash as unsealed, pruned in the bucket, and kept in the spool while the store is down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use jitssh_tests::{
    Bastion, CaFixture, Garage, KeyPair, Output, Scratch, Sshd, Tmux, asciinema_cat, project_bin,
    run, session_recordings, target, user,
};

struct World {
    scratch: Scratch,
    ca: CaFixture,
    bastion: Bastion,
    web01: Sshd,
    alice: KeyPair,
    garage: Garage,
    extra: String,
}

/// A bastion recording to a fresh Garage bucket (`extra`: more `[recordings]` keys).
fn world(extra: &str) -> World {
    let garage = Garage::start("recordings");
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let credentials = scratch.file("s3-credentials");
    garage.credentials_file(&credentials);
    let extra = format!(
        "[recordings]\n{}{extra}",
        garage.recordings_keys("site-a", &credentials)
    );
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        &extra,
    );
    World {
        scratch,
        ca,
        bastion,
        web01,
        alice,
        garage,
        extra,
    }
}

impl World {
    /// `ssh-bastion --config CONFIG ARGS...` on the bastion's clock.
    fn cli_with(&self, config: &Path, args: &[&str]) -> Output {
        let mut cmd = Command::new(project_bin("ssh-bastion"));
        cmd.arg("--config").arg(config).args(args);
        self.bastion.clock().apply(&mut cmd);
        run(&mut cmd)
    }

    fn cli(&self, args: &[&str]) -> Output {
        self.cli_with(&self.bastion.config, args)
    }

    fn cli_ok(&self, args: &[&str]) -> Output {
        let out = self.cli(args);
        assert!(out.success(), "ssh-bastion {args:?}: {out}");
        out
    }

    fn spool(&self) -> PathBuf {
        self.bastion.data_dir().join("recordings")
    }

    /// Session ids in the index, newest first.
    fn session_ids(&self) -> Vec<String> {
        self.bastion.session_ids(&[])
    }

    /// A finished `ssh root@web01 COMMAND`; its session id.
    fn exec(&self, command: &str) -> String {
        self.exec_with(command, false)
    }

    /// A finished `ssh [-tt] root@web01 COMMAND`; its session id.
    fn exec_with(&self, command: &str, tty: bool) -> String {
        let known = self.session_ids();
        let ends = self.ends();
        let mut ssh = self.bastion.ssh("root@web01", &self.alice).args([command]);
        if tty {
            ssh = ssh.flag("-tt");
        }
        let out = ssh.run();
        assert!(out.success(), "{out}");
        wait(|| self.ends() > ends, "session.end");
        let new: Vec<String> = self
            .session_ids()
            .into_iter()
            .filter(|id| !known.contains(id))
            .collect();
        assert_eq!(new.len(), 1, "one new session");
        new[0].clone()
    }

    fn ends(&self) -> usize {
        self.bastion
            .audit()
            .matches("\"event\":\"session.end\"")
            .count()
    }

    /// Object names of session `id` in the bucket, listed through the S3 API.
    fn stored(&self, id: &str) -> Vec<String> {
        let base = format!("site-a/{}/{}/{}/{id}/", &id[0..4], &id[4..6], &id[6..8]);
        self.garage
            .objects()
            .into_iter()
            .filter_map(|(key, _)| key.strip_prefix(&base).map(str::to_owned))
            .collect()
    }

    /// Waits until session `id` is in the bucket with `last` among its objects and the spool
    /// no longer has it.
    fn wait_uploaded(&self, id: &str, last: &str) {
        wait(
            || {
                self.stored(id).iter().any(|n| n == last)
                    && !session_recordings(&self.spool())
                        .iter()
                        .any(|d| d.ends_with(id))
            },
            &format!("{id} uploaded ({last}) and gone from the spool"),
        );
    }

    fn terminal(&self) -> Tmux {
        let ssh = self
            .bastion
            .ssh("root@web01", &self.alice)
            .flag("-tt")
            .command();
        Tmux::start(self.scratch.path(), &ssh, 100, 30)
    }

    /// Restarts the bastion on the same data directory and configuration.
    fn restart(&mut self) {
        self.bastion = Bastion::start(
            &self.ca,
            &[("web01", format!("127.0.0.1:{}", self.web01.port()))],
            &self.extra,
        );
    }
}

fn wait(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).expect("copy");
        }
    }
}

#[test]
fn a_session_is_uploaded_and_every_auditor_command_reads_it_as_from_disk() {
    let mut w = world("");
    let term = w.terminal();
    term.type_line("echo mark-$((6*7))");
    term.wait_for("mark-42", Duration::from_secs(20));
    term.type_line("exit");
    term.wait_exit(Duration::from_secs(10));
    w.bastion
        .wait_for_audit("\"event\":\"session.end\"", Duration::from_secs(10));
    let shell = w.session_ids().remove(0);
    // Over 8 MiB of terminal output: its cast is a multipart upload.
    let exec = w.exec_with(
        "echo exec-$((7*6)); head -c 9000000 /dev/zero | tr '\\0' x; echo",
        true,
    );

    // In the bucket, listed through the S3 API; the spool is empty.
    w.wait_uploaded(&shell, "seal.json.sig");
    w.wait_uploaded(&exec, "seal.json.sig");
    for id in [&shell, &exec] {
        let names = w.stored(id);
        for file in [
            "events.jsonl",
            "chain.jsonl",
            "chan-1.cast",
            "seal.json",
            "seal.json.sig",
        ] {
            assert!(
                names.iter().any(|n| n == file),
                "{id}: no {file} in {names:?}"
            );
        }
    }
    assert!(session_recordings(&w.spool()).is_empty(), "spool not empty");
    let big = w
        .garage
        .objects()
        .into_iter()
        .find(|(k, _)| k.contains(exec.as_str()) && k.ends_with("chan-1.cast"))
        .expect("the exec cast");
    assert!(big.1 > 8 << 20, "a multipart upload: {big:?}");
    assert!(
        w.bastion.log().contains("recording uploaded"),
        "{}",
        w.bastion.log()
    );

    // Every reading command, from the bucket...
    let commands: Vec<Vec<&str>> = vec![
        vec!["verify"],
        vec!["verify", &shell],
        vec!["sessions", "show", &shell],
        vec!["sessions", "show", &exec],
        vec!["export", &shell],
        vec!["export", &shell, "--format", "text"],
        vec!["export", &shell, "--format", "json"],
        vec!["export", &exec, "--format", "text"],
        vec!["sessions", "grep", "mark-4[0-9]"],
        vec!["sessions", "grep", "exec-42"],
        vec!["replay", &shell, "--speed", "100"],
        vec!["sessions", "list"],
    ];
    let from_bucket: Vec<Output> = commands.iter().map(|c| w.cli(c)).collect();
    for (c, out) in commands.iter().zip(&from_bucket) {
        assert!(out.success(), "ssh-bastion {c:?} from the bucket: {out}");
    }
    let verify = from_bucket[0].stdout_str();
    assert!(verify.contains("2 intact, 0 not"), "{verify}");
    assert!(from_bucket[8].stdout_str().contains("mark-42"));
    assert!(
        !from_bucket[11].stdout_str().contains("pruned"),
        "{}",
        from_bucket[11]
    );
    let shown = from_bucket[2].stdout_str();
    let location = format!(
        "s3://recordings/site-a/{}/{}/{}/{shell}",
        &shell[0..4],
        &shell[4..6],
        &shell[6..8]
    );
    assert!(shown.contains(&location), "{shown}");
    let cast = w.scratch.write("shell.cast", &from_bucket[4].stdout);
    assert!(asciinema_cat(&cast).stdout_str().contains("mark-42"));

    // ... and from the same recordings on disk, with a bastion that has no store: the same.
    let local_config = w.scratch.file("bastion-local.toml");
    let text = std::fs::read_to_string(&w.bastion.config).expect("config");
    let text: String = text
        .lines()
        .filter(|l| !l.starts_with("store") && !l.starts_with("s3_"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&local_config, text).expect("write config");
    let local_root = w.scratch.path().join("local-copy");
    for id in [&shell, &exec] {
        let rel = format!("{}/{}/{}/{id}", &id[0..4], &id[4..6], &id[6..8]);
        let dir = local_root.join(&rel);
        std::fs::create_dir_all(&dir).expect("mkdir");
        for name in w.stored(id) {
            let data = w.garage.get(&format!("site-a/{rel}/{name}"));
            std::fs::write(dir.join(name), data).expect("write");
        }
    }
    // The spool is the local recordings directory: the copies go there for the local run,
    // once the bastion is stopped (its uploader would take them back to the bucket).
    let spool = w.spool();
    w.bastion.daemon.stop();
    copy_tree(&local_root, &spool);
    let from_disk: Vec<Output> = commands
        .iter()
        .map(|c| w.cli_with(&local_config, c))
        .collect();
    // `sessions show` names where the recording is: the bucket, or the directory.
    let places: Vec<(String, String)> = [&shell, &exec]
        .iter()
        .map(|id| {
            let rel = format!("{}/{}/{}/{id}", &id[0..4], &id[4..6], &id[6..8]);
            (
                format!("s3://recordings/site-a/{rel}"),
                spool.join(&rel).display().to_string(),
            )
        })
        .collect();
    for ((c, bucket), disk) in commands.iter().zip(&from_bucket).zip(&from_disk) {
        assert!(disk.success(), "ssh-bastion {c:?} from disk: {disk}");
        let mut bucket_out = bucket.stdout_str();
        for (s3, local) in &places {
            bucket_out = bucket_out.replace(s3, local);
        }
        if c[0] == "sessions" && c[1] == "list" {
            // The live column depends on the bastion running, which it no longer is.
            continue;
        }
        assert_eq!(
            bucket_out,
            disk.stdout_str(),
            "ssh-bastion {c:?}: bucket vs disk"
        );
    }
}

/// `verify` of everything in the bucket with a cache that keeps nothing but the recording in
/// use: each is fetched when its turn comes (not all first), so none is evicted before it
/// is checked.
#[test]
fn verify_reads_every_recording_of_the_bucket_through_a_cache_bounded_to_one() {
    let w = world("s3_cache_bytes = 1\n");
    let mut ids = Vec::new();
    for n in 0..3 {
        let id = w.exec(&format!("echo session-{n}; seq 1 2000"));
        w.wait_uploaded(&id, "seal.json.sig");
        ids.push(id);
    }
    let out = w.cli_ok(&["verify"]);
    let text = out.stdout_str();
    for id in &ids {
        assert!(
            text.contains(&format!("session {id}: sealed, intact")),
            "{text}"
        );
    }
    assert!(text.contains("3 intact, 0 not"), "{text}");
    // `verify` with no ids goes in id order; two sessions may start in the same second.
    ids.sort();
    let named: Vec<&str> = std::iter::once("verify")
        .chain(ids.iter().map(String::as_str))
        .collect();
    let again = w.cli_ok(&named).stdout_str();
    assert_eq!(again, text, "named or not, the same reports");
}

#[test]
fn a_recording_tampered_with_in_the_bucket_is_named_as_on_disk() {
    let w = world("");
    let id = w.exec("echo first-session");
    w.wait_uploaded(&id, "seal.json.sig");
    let key = format!(
        "site-a/{}/{}/{}/{id}/chan-1.cast",
        &id[0..4],
        &id[4..6],
        &id[6..8]
    );
    let mut cast = w.garage.get(&key);
    let line = String::from_utf8_lossy(&cast)
        .lines()
        .position(|l| l.contains("first-session"))
        .expect("the output")
        + 1;
    let at = cast
        .windows(5)
        .position(|b| b == b"first")
        .expect("the output");
    cast[at] = b'F';
    w.garage.put(&key, cast);
    let out = w.cli(&["verify", &id]);
    assert_eq!(out.status, 1, "{out}");
    assert!(
        out.stdout_str()
            .contains(&format!("chan-1.cast line {line}: altered")),
        "{out}"
    );
}

#[test]
fn a_bastion_killed_mid_session_uploads_the_unsealed_recording_at_its_next_start() {
    let mut w = world("");
    let term = w.terminal();
    term.type_line("echo before-crash-$((6*7))");
    term.wait_for("before-crash-42", Duration::from_secs(20));
    let id = w.session_ids().remove(0);
    // Wait for the one-second flush to put the output on disk.
    let spooled = w
        .spool()
        .join(&id[0..4])
        .join(&id[4..6])
        .join(&id[6..8])
        .join(&id);
    wait(
        || {
            std::fs::read_to_string(spooled.join("chan-1.cast"))
                .is_ok_and(|c| c.contains("before-crash-42"))
        },
        "the output in the spool",
    );
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(w.bastion.daemon.pid() as libc::pid_t, libc::SIGKILL) };
    wait(
        || w.bastion.daemon.exit_status().is_some(),
        "the bastion gone",
    );
    drop(term);
    assert!(spooled.join("events.jsonl").is_file(), "the spool keeps it");
    assert!(!spooled.join("seal.json").exists());
    assert!(w.stored(&id).is_empty(), "not uploaded yet");
    // What verify says about it on disk.
    let on_disk = w.cli(&["verify", &id]);
    assert_eq!(on_disk.status, 1, "{on_disk}");
    assert!(on_disk.stdout_str().contains("UNSEALED"), "{on_disk}");

    w.restart();
    w.wait_uploaded(&id, "events.jsonl");
    assert!(
        w.bastion
            .log()
            .contains("left in the spool by the last run"),
        "{}",
        w.bastion.log()
    );
    let names = w.stored(&id);
    assert!(
        !names.iter().any(|n| n.starts_with("seal.json")),
        "{names:?}"
    );
    let from_bucket = w.cli(&["verify", &id]);
    assert_eq!(from_bucket.status, 1, "{from_bucket}");
    assert_eq!(from_bucket.stdout_str(), on_disk.stdout_str());
    let text = w.cli_ok(&["export", &id, "--format", "text"]).stdout_str();
    assert!(text.contains("before-crash-42"), "{text}");
}

#[test]
fn prune_deletes_old_recordings_in_the_bucket_audited() {
    let w = world("retain = \"30d\"\n");
    let old = w.exec("echo old-session");
    w.wait_uploaded(&old, "seal.json.sig");

    // Within the retention: kept.
    let kept = w.cli_ok(&["prune"]).stdout_str();
    assert!(kept.contains("pruned 0 recording(s)"), "{kept}");
    assert!(!w.stored(&old).is_empty());

    // 31 days later (the auditor's clock only: the sessions ran on the real one).
    let later = jitssh_tests::TestClock::in_dir(&w.scratch.mkdir("later"));
    later.advance(31 * 86_400);
    let at_later = |args: &[&str]| {
        let mut cmd = Command::new(project_bin("ssh-bastion"));
        cmd.arg("--config").arg(&w.bastion.config).args(args);
        later.apply(&mut cmd);
        run(&mut cmd)
    };
    let dry = at_later(&["prune", "--dry-run"]);
    assert!(dry.success(), "{dry}");
    assert!(
        dry.stdout_str().contains(&format!("would prune {old}")),
        "{dry}"
    );
    assert!(!w.stored(&old).is_empty(), "a dry run deletes nothing");
    let pruned = at_later(&["prune"]);
    assert!(pruned.success(), "{pruned}");
    assert!(
        pruned.stdout_str().contains(&format!("pruned {old}")),
        "{pruned}"
    );
    assert!(w.stored(&old).is_empty(), "the objects are deleted");
    let audit = w.bastion.audit();
    let record = audit
        .lines()
        .find(|l| l.contains("\"event\":\"recording.pruned\""))
        .unwrap_or_else(|| panic!("no recording.pruned in\n{audit}"));
    assert!(
        record.contains(&old) && record.contains("s3://recordings/site-a/"),
        "{record}"
    );
    assert!(record.contains("\"sealed\":true"), "{record}");
    assert!(w.cli_ok(&["audit", "verify"]).success());
    let gone = w.cli(&["export", &old]);
    assert_eq!(gone.status, 1, "{gone}");
    assert!(gone.stderr.contains("gone"), "{gone}");
}

#[test]
fn with_the_store_down_sessions_record_to_the_spool_and_upload_when_it_is_back() {
    let mut w = world("");
    w.garage.stop();
    let id = w.exec("echo while-down");
    let spooled = w
        .spool()
        .join(&id[0..4])
        .join(&id[4..6])
        .join(&id[6..8])
        .join(&id);
    let needle = "cannot upload recordings";
    w.bastion
        .daemon
        .wait_for_log(needle, Duration::from_secs(60));
    assert!(
        spooled.join("seal.json.sig").is_file(),
        "sealed in the spool"
    );
    // A second session while down is recorded too.
    let second = w.exec("echo still-down");
    w.garage.restart();
    w.wait_uploaded(&id, "seal.json.sig");
    w.wait_uploaded(&second, "seal.json.sig");
    let log = w.bastion.log();
    assert_eq!(log.matches(needle).count(), 1, "one error line: {log}");
    assert!(log.contains("object store reachable again"), "{log}");
    let out = w.cli_ok(&["verify", &id, &second]).stdout_str();
    assert!(out.contains("2 intact, 0 not"), "{out}");
}
