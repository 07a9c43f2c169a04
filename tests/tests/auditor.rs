//! The auditor's tools against sessions made through a real `ssh-bastion serve` with the
//! real OpenSSH client in a real terminal (tmux), checked with the real `asciinema`. The tests
//! that read recordings only through the tools run twice: recordings on the bastion's disk, and
//! uploaded to an object store (a real Garage; `[recordings] store`) and gone from its spool.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jitssh_tests::{
    Bastion, Garage, KeyPair, Output, Scratch, Sshd, Tmux, asciinema_cat, project_bin, run,
    session_recordings, target, tool, user,
};

/// Where the bastion keeps finished recordings.
#[derive(Clone, Copy)]
enum Recordings {
    /// Its recordings directory (the default).
    Local,
    /// An S3 bucket (Garage); the directory is only the spool.
    Bucket,
}

struct World {
    scratch: Scratch,
    bastion: Bastion,
    _web01: Sshd,
    alice: KeyPair,
    /// The object store, when recordings go to a bucket.
    garage: Option<Garage>,
}

fn world(extra: &str) -> World {
    world_on(Recordings::Local, extra)
}

fn world_on(recordings: Recordings, extra: &str) -> World {
    let scratch = Scratch::new();
    let garage = match recordings {
        Recordings::Local => None,
        Recordings::Bucket => Some(Garage::start("recordings")),
    };
    let extra = match &garage {
        Some(garage) => {
            let credentials = scratch.file("s3-credentials");
            garage.credentials_file(&credentials);
            let keys = garage.recordings_keys("auditor", &credentials);
            match extra.find("[recordings]\n") {
                Some(at) => {
                    let end = at + "[recordings]\n".len();
                    format!("{}{keys}{}", &extra[..end], &extra[end..])
                }
                None => format!("{extra}\n[recordings]\n{keys}"),
            }
        }
        None => extra.to_owned(),
    };
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        &extra,
    );
    World {
        scratch,
        bastion,
        _web01: web01,
        alice,
        garage,
    }
}

/// One test per place recordings are kept: `local::NAME` and `bucket::NAME`.
macro_rules! on_disk_and_in_a_bucket {
    ($($case:ident),* $(,)?) => {
        mod local {
            $(#[test] fn $case() { super::$case(super::Recordings::Local) })*
        }
        mod bucket {
            $(#[test] fn $case() { super::$case(super::Recordings::Bucket) })*
        }
    };
}

on_disk_and_in_a_bucket!(
    an_interactive_session_is_listed_exported_searched_and_replayed,
    output_shown_then_hidden_is_found_by_grep_and_text_export,
    a_target_typed_in_another_case_is_recorded_and_found_as_configured,
);

impl World {
    /// With a bucket: waits until every finished recording is uploaded and gone from the
    /// spool, so what the tools show next can only come from the bucket.
    fn settled(&self) {
        if self.garage.is_none() {
            return;
        }
        let spool = self.bastion.data_dir().join("recordings");
        let deadline = Instant::now() + Duration::from_secs(60);
        while !session_recordings(&spool).is_empty() {
            assert!(
                Instant::now() < deadline,
                "recordings still in the spool: {:?}",
                session_recordings(&spool)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ssh-bastion --config bastion.toml ARGS...`.
    fn cli(&self, args: &[&str]) -> Output {
        run(Command::new(project_bin("ssh-bastion"))
            .arg("--config")
            .arg(&self.bastion.config)
            .args(args))
    }

    /// Like [`World::cli`], and it must succeed.
    fn cli_ok(&self, args: &[&str]) -> Output {
        let out = self.cli(args);
        assert!(out.success(), "ssh-bastion {args:?}: {out}");
        out
    }

    /// An interactive `ssh -tt root@web01` through the bastion in a 100x30 terminal.
    fn terminal(&self) -> Tmux {
        let ssh = self
            .bastion
            .ssh("root@web01", &self.alice)
            .flag("-tt")
            .command();
        Tmux::start(self.scratch.path(), &ssh, 100, 30)
    }

    /// Ids of the sessions `sessions list --json ARGS` returns, newest first.
    fn session_ids(&self, args: &[&str]) -> Vec<String> {
        self.bastion.session_ids(args)
    }

    /// A finished `ssh root@web01 COMMAND`; its session id.
    fn exec(&self, command: &str) -> String {
        self.exec_with(command, false)
    }

    /// A finished `ssh root@web01 COMMAND`, on a pty (`-tt`) if `tty`; its session id.
    fn exec_with(&self, command: &str, tty: bool) -> String {
        let known = self.session_ids(&[]);
        let before = self
            .bastion
            .audit()
            .matches("\"event\":\"session.end\"")
            .count();
        let mut ssh = self.bastion.ssh("root@web01", &self.alice).args([command]);
        if tty {
            ssh = ssh.flag("-tt");
        }
        let out = ssh.run();
        assert!(out.success(), "{out}");
        let deadline = Instant::now() + Duration::from_secs(10);
        while self
            .bastion
            .audit()
            .matches("\"event\":\"session.end\"")
            .count()
            <= before
        {
            assert!(Instant::now() < deadline, "no session.end");
            std::thread::sleep(Duration::from_millis(20));
        }
        self.settled();
        let mut new: Vec<String> = self
            .session_ids(&[])
            .into_iter()
            .filter(|id| !known.contains(id))
            .collect();
        assert_eq!(new.len(), 1, "one new session");
        new.remove(0)
    }

    fn recording(&self, id: &str) -> PathBuf {
        self.bastion
            .data_dir()
            .join("recordings")
            .join(&id[0..4])
            .join(&id[4..6])
            .join(&id[6..8])
            .join(id)
    }
}

/// 1-based number of the first line of `path` containing `needle`.
fn line_with(path: &Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .expect("read")
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no {needle:?} in {}", path.display()))
        + 1
}

fn an_interactive_session_is_listed_exported_searched_and_replayed(recordings: Recordings) {
    let w = world_on(recordings, "");
    let term = w.terminal();
    term.type_line("echo mark-$((6*7))");
    term.wait_for("mark-42", Duration::from_secs(20));
    term.type_line("exit");
    term.wait_exit(Duration::from_secs(10));
    w.bastion
        .wait_for_audit("\"event\":\"session.end\"", Duration::from_secs(10));
    w.settled();

    // Listed with the right person, login and target.
    let table = w
        .cli_ok(&["sessions", "list", "--user", "alice"])
        .stdout_str();
    let ids = w.session_ids(&["--user", "alice", "--target", "web01", "--login", "root"]);
    assert_eq!(ids.len(), 1, "{table}");
    let id = &ids[0];
    let row = table
        .lines()
        .find(|l| l.starts_with(id.as_str()))
        .unwrap_or_else(|| panic!("{id} not in\n{table}"));
    assert!(
        row.contains(" alice ") && row.contains(" root@web01 "),
        "{row}"
    );
    let none = w
        .cli_ok(&["sessions", "list", "--user", "bob"])
        .stdout_str();
    assert_eq!(none.trim(), "no sessions match");
    let shown = w.cli_ok(&["sessions", "show", id]).stdout_str();
    assert!(shown.contains("#1 shell (pty"), "{shown}");
    assert!(shown.contains("session certificate   serial"), "{shown}");

    // asciicast that asciinema plays.
    let cast = w.scratch.file("session.cast");
    w.cli_ok(&["export", id, "--out", cast.to_str().expect("utf-8")]);
    let played = asciinema_cat(&cast);
    assert!(played.stdout_str().contains("mark-42"), "{played}");
    let play = run(Command::new(tool("script")).args([
        "-qec",
        &format!(
            "'{}' play --speed 50 --idle-time-limit 0.1 '{}'",
            tool("asciinema").display(),
            cast.display()
        ),
        "/dev/null",
    ]));
    assert!(
        play.success() && play.stdout_str().contains("mark-42"),
        "{play}"
    );
    let stdout_export = w.cli_ok(&["export", id]).stdout;
    assert_eq!(stdout_export, std::fs::read(&cast).expect("read cast"));

    // Text without escape sequences.
    let text = w.cli_ok(&["export", id, "--format", "text"]).stdout_str();
    assert!(text.contains("\nmark-42\n"), "{text}");
    assert!(
        text.contains("echo mark-$((6*7))"),
        "the typed command: {text}"
    );
    assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
    let json = w.cli_ok(&["export", id, "--format", "json"]).stdout_str();
    let doc: serde_json::Value = serde_json::from_str(&json).expect("one JSON document");
    assert_eq!(doc["session"]["target"], "web01");

    // grep finds it, with an offset replay accepts.
    let found = w.cli_ok(&["sessions", "grep", "mark-4[0-9]"]).stdout_str();
    let lines: Vec<&str> = found.lines().collect();
    assert_eq!(lines.len(), 1, "{found}");
    let fields: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        (fields[0], fields[2], fields[3]),
        (id.as_str(), "#1", "mark-42"),
        "{found}"
    );
    let missing = w.cli(&["sessions", "grep", "never-typed-xyz"]);
    assert_eq!(missing.status, 1, "grep exits 1 without a match: {missing}");

    // Replay at 100x: finishes, prints the output in order.
    let replay = w.cli_ok(&["replay", id, "--speed", "100"]);
    let out = replay.stdout_str();
    let typed = out.find("echo mark-$((6*7))").expect("the typed command");
    let result = out.find("mark-42\r\n").expect("its output");
    assert!(typed < result, "{out:?}");
    assert!(replay.stderr.contains("finished"), "{replay}");
    let from = w.cli_ok(&["replay", id, "--from", fields[1], "--speed", "100"]);
    assert!(from.stdout_str().contains("mark-42"), "{from}");
    // In a terminal: keys control it, q quits long before the end.
    let mut slow = Command::new(project_bin("ssh-bastion"));
    slow.arg("--config")
        .arg(&w.bastion.config)
        .args(["replay", id, "--speed", "0.01"]);
    let player = Tmux::start(w.scratch.path(), &slow, 100, 30);
    player.wait_for("q quit", Duration::from_secs(10));
    player.type_keys("+");
    player.type_keys("q");
    assert_eq!(player.wait_exit(Duration::from_secs(3)), 0);
    let screen = player.capture();
    assert!(
        screen.contains(&format!("replay {id}: stopped")),
        "{screen}"
    );

    let bad = w.cli(&["replay", id, "--from", "banana"]);
    assert_eq!(bad.status, 1, "{bad}");
    assert!(bad.stderr.contains("invalid offset \"banana\""), "{bad}");
}

#[test]
fn tampering_is_found_and_named_and_untouched_recordings_pass() {
    let w = world("");
    let altered = w.exec("echo first-session");
    let removed = w.exec("echo second-session");
    let untouched = w.exec("echo third-session");
    let all = w.cli_ok(&["verify"]).stdout_str();
    assert!(all.contains("3 intact, 0 not"), "{all}");

    // One byte of a recording changed.
    let cast = w.recording(&altered).join("chan-1.cast");
    let line = line_with(&cast, "first-session");
    let mut bytes = std::fs::read(&cast).expect("read");
    let at = bytes
        .windows(5)
        .position(|w| w == b"first")
        .expect("the output is there");
    bytes[at] = b'F';
    std::fs::write(&cast, bytes).expect("write");
    let out = w.cli(&["verify", &altered]);
    assert_eq!(out.status, 1, "{out}");
    assert!(
        out.stdout_str()
            .contains(&format!("chan-1.cast line {line}: altered")),
        "{out}"
    );

    // A journal line deleted.
    let journal = w.recording(&removed).join("events.jsonl");
    let text = std::fs::read_to_string(&journal).expect("read");
    let kept: Vec<&str> = text
        .lines()
        .enumerate()
        .filter(|(i, _)| *i != 1)
        .map(|(_, l)| l)
        .collect();
    std::fs::write(&journal, kept.join("\n") + "\n").expect("write");
    let out = w.cli(&["verify", &removed]);
    assert_eq!(out.status, 1, "{out}");
    assert!(
        out.stdout_str().contains("events.jsonl line 2: removed"),
        "{out}"
    );

    let out = w.cli_ok(&["verify", &untouched]);
    assert!(out.stdout_str().contains("sealed, intact"), "{out}");

    // The audit logs: the bastion's and, all-in-one, the embedded CA's.
    let audit_log = w.bastion.data_dir().join("audit.log");
    let out = w.cli_ok(&["audit", "verify"]);
    assert_eq!(out.stdout_str().matches(": intact, ").count(), 2, "{out}");
    let log = std::fs::read(&audit_log).expect("read");
    let end = log[..log.len() - 1]
        .iter()
        .rposition(|&b| b == b'\n')
        .expect("several records")
        + 1;
    std::fs::write(&audit_log, &log[..end]).expect("truncate");
    let out = w.cli(&["audit", "verify"]);
    assert_eq!(out.status, 1, "{out}");
    assert!(
        out.stdout_str()
            .contains(&format!("{}: ", audit_log.display()))
            && out.stdout_str().contains("(log truncated)"),
        "{out}"
    );
}

/// Output of a child process, collected as it comes.
fn collect(mut pipe: impl Read + Send + 'static) -> Arc<Mutex<Vec<u8>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = pipe.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().expect("lock").extend_from_slice(&buf[..n]);
        }
    });
    seen
}

fn text(seen: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8_lossy(&seen.lock().expect("lock")).into_owned()
}

#[test]
fn watch_follows_a_live_session_and_kill_ends_it_with_a_message() {
    let w = world("");
    let socket = w.bastion.data_dir().join("admin.sock");
    let mode = std::fs::metadata(&socket)
        .expect("admin socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only the bastion's user and root");

    let term = w.terminal();
    term.type_line("for i in $(seq 1 600); do echo tick-$i; sleep 0.1; done");
    term.wait_for("tick-3", Duration::from_secs(20));
    let ids = w.session_ids(&["--active"]);
    assert_eq!(ids.len(), 1);
    let id = ids[0].clone();

    let mut watcher = Command::new(project_bin("ssh-bastion"))
        .arg("--config")
        .arg(&w.bastion.config)
        .args(["sessions", "watch", &id])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the watcher");
    let watched = collect(watcher.stdout.take().expect("stdout"));
    let watcher_err = collect(watcher.stderr.take().expect("stderr"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&watched).contains("tick-") {
        assert!(
            Instant::now() < deadline,
            "the watcher saw nothing: {}",
            text(&watcher_err)
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    let started = Instant::now();
    let out = w.cli_ok(&["sessions", "kill", &id, "--reason", "security review"]);
    let status = term.wait_exit(Duration::from_secs(5));
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "ended after {took:?}");
    assert!(out.stdout_str().contains("ended"), "{out}");
    assert_ne!(status, 0, "the client ends with an error status");
    let screen = term.capture();
    assert!(
        screen.contains("session ended: ended by an auditor: security review"),
        "the person is told why:\n{screen}"
    );

    let deadline = Instant::now() + Duration::from_secs(5);
    while watcher.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the watcher did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        text(&watcher_err).contains("ended"),
        "{}",
        text(&watcher_err)
    );

    let audit = w
        .bastion
        .wait_for_audit("\"event\":\"session.end\"", Duration::from_secs(5));
    let kill = audit
        .lines()
        .find(|l| l.contains("\"event\":\"session.kill\""))
        .unwrap_or_else(|| panic!("no session.kill in\n{audit}"));
    assert!(
        kill.contains("security review") && kill.contains(&id),
        "{kill}"
    );
    assert!(audit.contains("\"event\":\"session.watch\""), "{audit}");
    let again = w.cli(&["sessions", "kill", &id]);
    assert_eq!(again.status, 1, "{again}");
    assert!(again.stderr.contains("no live session"), "{again}");
    let shown = w.cli_ok(&["sessions", "show", &id]).stdout_str();
    assert!(
        shown.contains("ended by an auditor: security review"),
        "{shown}"
    );
}

#[test]
fn only_allowed_uids_may_use_the_admin_socket() {
    // A socket others can reach, so the bastion's own check (SO_PEERCRED) is what refuses.
    let open = Scratch::new();
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let socket = open.file("admin.sock");
    let w = world(&format!(
        "[admin]\nsocket = \"{}\"\nallow_uids = [4242]\n",
        socket.display()
    ));
    let mode = std::fs::metadata(&socket)
        .expect("socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o666);
    // nobody, with a config naming only the socket.
    let config = open.write(
        "nobody.toml",
        format!("[admin]\nsocket = \"{}\"\n", socket.display()),
    );
    let out = run(Command::new(tool("setpriv"))
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(project_bin("ssh-bastion"))
        .arg("--config")
        .arg(&config)
        .args(["sessions", "kill", "20261123T180000Z-0a1b2c3d"]));
    assert_eq!(out.status, 1, "{out}");
    assert!(
        out.stderr
            .contains("uid 65534 may not use the admin socket"),
        "{out}"
    );
    let audit = w
        .bastion
        .wait_for_audit("\"event\":\"admin.denied\"", Duration::from_secs(5));
    assert!(audit.contains("\"uid\":65534"), "{audit}");
}

#[test]
fn prune_deletes_old_recordings_audited_but_never_a_live_session() {
    let w = world("[recordings]\nretain = \"30d\"\n");
    let old = w.exec("echo old-session");
    let recent = w.exec("echo recent-session");
    let term = w.terminal();
    term.type_line("echo live-$((6*7))");
    term.wait_for("live-42", Duration::from_secs(20));
    let live = w.session_ids(&["--active"]).remove(0);
    for id in [&old, &live] {
        let dir = w.recording(id);
        let touch = run(Command::new(tool("touch"))
            .args(["-d", "100 days ago"])
            .arg(&dir)
            .args(
                std::fs::read_dir(&dir)
                    .expect("dir")
                    .map(|e| e.expect("entry").path()),
            ));
        assert!(touch.success(), "{touch}");
    }

    let dry = w.cli_ok(&["prune", "--dry-run"]).stdout_str();
    assert!(dry.contains(&format!("would prune {old}")), "{dry}");
    assert!(dry.contains(&format!("kept   {live}: live")), "{dry}");
    assert!(!dry.contains(&recent), "{dry}");
    assert!(w.recording(&old).exists());

    let pruned = w.cli_ok(&["prune"]).stdout_str();
    assert!(pruned.contains(&format!("pruned {old}")), "{pruned}");
    assert!(!w.recording(&old).exists());
    assert!(w.recording(&live).exists() && w.recording(&recent).exists());
    let audit = w.bastion.audit();
    let record = audit
        .lines()
        .find(|l| l.contains("\"event\":\"recording.pruned\""))
        .unwrap_or_else(|| panic!("no recording.pruned in\n{audit}"));
    assert!(record.contains(&old), "{record}");
    assert!(w.cli_ok(&["audit", "verify"]).success());
    let gone = w.cli(&["export", &old]);
    assert_eq!(gone.status, 1, "{gone}");
    assert!(gone.stderr.contains("gone"), "{gone}");
    term.type_line("exit");
    term.wait_exit(Duration::from_secs(10));
}

/// A remote command printing what would act on an auditor's terminal (clipboard write,
/// title changes, cursor and device queries, a DCS request, an 8-bit OSC as U+009D) between
/// a coloured word and a plain one.
const HOSTILE: &str = r"printf '\033[31mRED-%s\033[0m\n\033]52;c;cHduZWQ=\007\033]0;pwned-title\007\033]2;pwned-two\033\\\033[6n\033[c\033P$qm\033\\\302\2350;c1-pwned\007VISIBLE-%s\n' WORD TEXT";

/// Byte strings that must never reach the auditor's terminal.
const ACTING: [&[u8]; 8] = [
    b"\x1b]",
    b"\x1bP",
    b"\x1b[6n",
    b"\x1b[c",
    b"\xc2\x9d",
    b"pwned",
    b"cHduZWQ",
    b"\x07",
];

fn assert_harmless(what: &str, out: &[u8]) {
    let shown = String::from_utf8_lossy(out);
    for bad in ACTING {
        assert!(
            !out.windows(bad.len()).any(|w| w == bad),
            "{what}: {:?} in {shown:?}",
            String::from_utf8_lossy(bad)
        );
    }
    assert!(
        shown.contains("\x1b[31mRED-WORD\x1b[0m") && shown.contains("VISIBLE-TEXT"),
        "{what}: the colours and the text stay: {shown:?}"
    );
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_users_output_cannot_act_on_the_auditors_terminal() {
    let w = world("");
    let id = w.exec(HOSTILE);

    // The recording keeps the evidence as it was.
    let cast = std::fs::read(w.recording(&id).join("chan-1.cast")).expect("cast");
    assert!(contains(&cast, b"52;c;cHduZWQ="), "recorded as it was");

    let replay = w.cli_ok(&["replay", &id, "--speed", "100"]);
    assert_harmless("replay", &replay.stdout);

    // Exports are JSON text: no escape character and no C1 control raw in them.
    for format in ["asciicast", "json"] {
        let out = w.cli_ok(&["export", &id, "--format", format]).stdout;
        assert!(
            !contains(&out, b"\x1b") && !contains(&out, b"\xc2\x9d"),
            "{format}: {:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(
            contains(&out, b"\\u009d0;c1-pwned"),
            "{format}: the data is still there"
        );
    }
    let cast = w.scratch.file("hostile.cast");
    w.cli_ok(&["export", &id, "--out", cast.to_str().expect("utf-8")]);
    let played = asciinema_cat(&cast);
    assert!(played.stdout_str().contains("VISIBLE-TEXT"), "{played}");
    let plain = w.cli_ok(&["export", &id, "--format", "text"]).stdout;
    assert!(
        !contains(&plain, b"\x1b") && !contains(&plain, b"\xc2\x9d"),
        "{plain:?}"
    );

    // Watched live: the command waits for the watcher, then prints the same.
    let go = w.scratch.file("go");
    let command = format!(
        "while [ ! -e '{}' ]; do sleep 0.05; done; {HOSTILE}",
        go.display()
    );
    let mut client = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args([command])
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ssh");
    let deadline = Instant::now() + Duration::from_secs(20);
    let live = loop {
        if let Some(live) = w.session_ids(&["--active"]).pop() {
            break live;
        }
        assert!(Instant::now() < deadline, "the session did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut watcher = Command::new(project_bin("ssh-bastion"))
        .arg("--config")
        .arg(&w.bastion.config)
        .args(["sessions", "watch", &live])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the watcher");
    let watched = collect(watcher.stdout.take().expect("stdout"));
    let watcher_err = collect(watcher.stderr.take().expect("stderr"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !text(&watcher_err).contains("watching session") {
        assert!(Instant::now() < deadline, "{}", text(&watcher_err));
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::write(&go, b"").expect("go");
    assert!(client.wait().expect("ssh").success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while watcher.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the watcher did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    let watched = watched.lock().expect("lock").clone();
    assert_harmless("watch", &watched);
}

fn output_shown_then_hidden_is_found_by_grep_and_text_export(recordings: Recordings) {
    let w = world_on(recordings, "");
    let printf = r"printf 'secret1\r      \rsecret2\b\b\b\b\b\b\b       \rsecret3\033[2K\r\033[?1049h\033[Hsecret4\033[2J\033[?1049lall done\n'";
    // Without a pty, and on one (the way a person's terminal shows it).
    for tty in [false, true] {
        let id = w.exec_with(printf, tty);
        shown_then_hidden_is_found(&w, &id);
    }
}

fn shown_then_hidden_is_found(w: &World, id: &str) {
    let text = w.cli_ok(&["export", id, "--format", "text"]).stdout_str();
    for n in 1..=4 {
        let secret = format!("secret{n}");
        assert!(text.lines().any(|l| l == secret), "{secret} in {text:?}");
        for raw in [&[][..], &["--raw"][..]] {
            let mut args = vec!["sessions", "grep", &secret, "--id", id];
            args.extend_from_slice(raw);
            let found = w.cli_ok(&args).stdout_str();
            let lines: Vec<&str> = found.lines().collect();
            assert_eq!(lines.len(), 1, "{args:?}: {found}");
            assert!(
                lines[0].starts_with(id) && lines[0].ends_with(&secret),
                "{args:?}: {found}"
            );
        }
    }
}

fn a_target_typed_in_another_case_is_recorded_and_found_as_configured(recordings: Recordings) {
    let w = world_on(recordings, "");
    let out = w
        .bastion
        .ssh("root@WEB01", &w.alice)
        .args(["echo upper-$((6*7))"])
        .run();
    assert!(out.success(), "{out}");
    assert!(out.stdout_str().contains("upper-42"), "{out}");
    w.bastion
        .wait_for_audit("\"event\":\"session.end\"", Duration::from_secs(10));
    w.settled();
    for target in ["web01", "WEB01", "Web01"] {
        let listed = w
            .cli_ok(&["sessions", "list", "--json", "--target", target])
            .stdout_str();
        let rows: Vec<serde_json::Value> = listed
            .lines()
            .map(|l| serde_json::from_str(l).expect("JSON line"))
            .collect();
        assert_eq!(rows.len(), 1, "--target {target}: {listed}");
        assert_eq!(rows[0]["target"], "web01", "recorded as configured");
        let found = w
            .cli_ok(&["sessions", "grep", "upper-42", "--target", target])
            .stdout_str();
        assert_eq!(found.lines().count(), 1, "--target {target}: {found}");
    }
    let audit = w.bastion.audit();
    let start = audit
        .lines()
        .find(|l| l.contains("\"event\":\"session.start\""))
        .unwrap_or_else(|| panic!("no session.start in\n{audit}"));
    assert!(start.contains("\"target\":\"web01\""), "{start}");
    // Logins stay exact: `ROOT` is another account.
    let none = w
        .cli_ok(&["sessions", "list", "--login", "ROOT"])
        .stdout_str();
    assert_eq!(none.trim(), "no sessions match");
}

#[test]
fn a_session_whose_client_has_exited_is_not_listed_as_active() {
    let w = world("");
    for round in 0..5 {
        let out = w
            .bastion
            .ssh("root@web01", &w.alice)
            .args([format!("echo round-{round}")])
            .run();
        assert!(out.success(), "{out}");
        // Right after the client exits, as an auditor would look.
        let table = w.cli_ok(&["sessions", "list"]).stdout_str();
        assert!(!table.contains("active"), "round {round}:\n{table}");
        let active = w.session_ids(&["--active"]);
        assert!(active.is_empty(), "round {round}: {active:?}");
    }
}

/// The sessions the bastion's admin socket lists: (id, ending) pairs.
fn live_list(socket: &Path) -> Vec<(String, bool)> {
    use std::io::{BufRead, Write};
    let mut stream = std::os::unix::net::UnixStream::connect(socket).expect("admin socket");
    stream.write_all(b"{\"op\":\"list\"}\n").expect("send");
    let mut line = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut line)
        .expect("reply");
    let reply: serde_json::Value = serde_json::from_str(&line).expect("JSON reply");
    reply["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("not a session list: {line}"))
        .iter()
        .map(|s| {
            let id = s["id"].as_str().expect("id").to_owned();
            (id, s["ending"].as_bool().unwrap_or(false))
        })
        .collect()
}

/// Whoever finds a session gone from the bastion's live list finds its recording sealed and
/// its end recorded (meanwhile it is listed as ending), so `verify` right after a client
/// exits never sees a seal half written.
#[test]
fn a_session_leaves_the_live_list_only_once_sealed_and_ended() {
    let w = world("");
    let socket = w.bastion.data_dir().join("admin.sock");
    for round in 0..3 {
        let ssh = w
            .bastion
            .ssh("root@web01", &w.alice)
            .args([format!("sleep 0.5; echo round-{round}")]);
        let client = std::thread::spawn(move || ssh.run());
        let deadline = Instant::now() + Duration::from_secs(20);
        let id = loop {
            if let Some((id, _)) = live_list(&socket).into_iter().next() {
                break id;
            }
            assert!(
                Instant::now() < deadline,
                "round {round}: never listed live"
            );
            std::thread::sleep(Duration::from_millis(5));
        };
        // As often as the socket answers, until the session is gone.
        while live_list(&socket).iter().any(|(live, _)| *live == id) {
            assert!(Instant::now() < deadline, "round {round}: {id} stays live");
        }
        assert!(
            w.recording(&id).join("seal.json").is_file(),
            "round {round}: {id} left the live list unsealed"
        );
        let ended =
            w.bastion.audit().lines().any(|l| {
                l.contains("\"event\":\"session.end\"") && l.contains(&format!("\"{id}\""))
            });
        assert!(
            ended,
            "round {round}: {id} left the live list before session.end"
        );
        let out = client.join().expect("client thread");
        assert!(out.success(), "{out}");
        let verified = w.cli_ok(&["verify", &id]).stdout_str();
        assert!(verified.contains("sealed, intact"), "{verified}");
    }
}

#[test]
fn a_real_terminal_replaying_a_session_types_nothing_back() {
    let w = world("");
    let id = w.exec(HOSTILE);
    // In tmux: the replay, then whatever the terminal typed into its own input meanwhile
    // (its answers to the session's queries), read without waiting for a newline.
    let script = format!(
        "'{}' --config '{}' replay {id} --speed 100 </dev/null 2>/dev/null; \
         stty -icanon -echo min 0 time 5; printf 'typed:'; head -c 100 | od -An -c; echo ':end'",
        project_bin("ssh-bastion").display(),
        w.bastion.config.display()
    );
    let mut sh = Command::new(tool("sh"));
    sh.args(["-c", &script]);
    let term = Tmux::start(w.scratch.path(), &sh, 100, 30);
    assert_eq!(term.wait_exit(Duration::from_secs(20)), 0);
    let screen = term.capture();
    assert!(screen.contains("VISIBLE-TEXT"), "{screen}");
    let typed = screen
        .split("typed:")
        .nth(1)
        .and_then(|rest| rest.split(":end").next())
        .unwrap_or_else(|| panic!("{screen}"));
    assert_eq!(typed.trim(), "", "the terminal answered: {screen}");
}
