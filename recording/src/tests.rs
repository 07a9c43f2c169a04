//! End-to-end tests of the recorder: files on disk, the real `asciinema`, `sha256sum` and
//! `ssh-keygen`, a real `kill -9`, tampering and verification, write failures.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use base64::Engine as _;
use jitssh_core::keys::CaSigner;
use jitssh_core::store::{SessionIndex, SqliteStore};
use serde_json::Value;

use super::*;

pub(super) fn key() -> Arc<CaSigner> {
    Arc::new(CaSigner::generate("bastion"))
}

pub(super) fn meta() -> SessionMeta {
    SessionMeta {
        id: new_session_id(),
        user: "alice".into(),
        key_id: "alice@corp INC-42".into(),
        cert_serial: 4711,
        login: "deploy".into(),
        target: "web01".into(),
        client_addr: "192.0.2.10:50022".into(),
        started_at: jitssh_core::unix_now(),
    }
}

fn shell() -> ChannelKind {
    ChannelKind::Shell {
        pty: Some(Pty {
            term: "xterm-256color".into(),
            cols: 100,
            rows: 30,
        }),
    }
}

pub(super) fn start(root: &Path, policy: RecordingPolicy) -> (Recorder, Arc<CaSigner>) {
    let key = key();
    let rec = Recorder::start(root, meta(), policy, Arc::clone(&key)).unwrap();
    (rec, key)
}

pub(super) fn lines(path: &Path) -> Vec<String> {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

pub(super) fn json_lines(path: &Path) -> Vec<Value> {
    lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The `o` events of a cast, concatenated.
pub(super) fn cast_output(path: &Path) -> String {
    json_lines(path)[1..]
        .iter()
        .filter(|e| e[1] == "o")
        .map(|e| e[2].as_str().unwrap().to_owned())
        .collect()
}

pub(super) fn events_of(dir: &Path, kind: &str) -> Vec<Value> {
    json_lines(&dir.join("events.jsonl"))
        .into_iter()
        .filter(|e| e["event"] == kind)
        .collect()
}

/// Runs `asciinema cat` on a pty (it insists on a terminal) and returns (success, output).
pub(super) fn asciinema_cat(cast: &Path) -> (bool, String) {
    match Command::new("asciinema").arg("--version").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("asciinema not found: apt-get install asciinema")
        }
        other => assert!(
            other.unwrap().status.success(),
            "asciinema --version failed"
        ),
    }
    let command = format!("asciinema cat '{}'", cast.display());
    let out = match Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
    {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("script not found: apt-get install bsdutils")
        }
        other => other.unwrap(),
    };
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

pub(super) fn verify(dir: &Path, key: &CaSigner) -> VerifyReport {
    verify_session(dir, &key.public_key()).unwrap()
}

pub(super) fn problems(report: &VerifyReport) -> Vec<String> {
    report.problems.iter().map(ToString::to_string).collect()
}

#[test]
fn multibyte_characters_split_across_reads_are_never_garbled() {
    let root = tempfile::tempdir().unwrap();
    let (rec, _) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec.channel(0, shell()).unwrap();
    let e = "é".as_bytes();
    let crab = "🦀".as_bytes();
    ch.output(&[b'a', e[0]]).unwrap();
    ch.output(&[e[1], b'b']).unwrap();
    ch.output(&crab[..1]).unwrap();
    ch.output(&crab[1..]).unwrap();
    ch.finish().unwrap();
    let summary = rec.finish("client closed");
    let cast = summary.dir.join("chan-1.cast");
    let events: Vec<String> = json_lines(&cast)[1..]
        .iter()
        .map(|e| e[2].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["a", "éb", "🦀"]);
    assert!(!fs::read_to_string(&cast).unwrap().contains('\u{fffd}'));
    assert!(events_of(&summary.dir, "data.raw").is_empty());
}

#[test]
fn invalid_bytes_stay_playable_and_are_kept_losslessly() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec.channel(0, shell()).unwrap();
    let chunks: [&[u8]; 4] = [b"ok ", b"bin\xff\xfe ", b"\xe2\x82", b"x tail\xf0\x9f"];
    for c in chunks {
        ch.output(c).unwrap();
    }
    ch.finish().unwrap();
    let summary = rec.finish("client closed");
    let cast = summary.dir.join("chan-1.cast");
    assert_eq!(
        cast_output(&cast),
        "ok bin\u{fffd}\u{fffd} \u{fffd}x tail\u{fffd}"
    );
    // Rebuild the raw stream: data.raw bytes where present, else the event's UTF-8.
    let raw: std::collections::HashMap<u64, Vec<u8>> = events_of(&summary.dir, "data.raw")
        .iter()
        .map(|e| {
            assert_eq!(e["file"], "chan-1.cast");
            let data = base64::engine::general_purpose::STANDARD
                .decode(e["data"].as_str().unwrap())
                .unwrap();
            (e["line"].as_u64().unwrap(), data)
        })
        .collect();
    let mut rebuilt = Vec::new();
    for (i, event) in json_lines(&cast).iter().enumerate().skip(1) {
        match raw.get(&(i as u64 + 1)) {
            Some(bytes) => rebuilt.extend_from_slice(bytes),
            None => rebuilt.extend_from_slice(event[2].as_str().unwrap().as_bytes()),
        }
    }
    assert_eq!(rebuilt, chunks.concat());
    assert!(verify(&summary.dir, &key).is_intact());
}

#[test]
fn resize_events_and_input_only_when_the_policy_says_so() {
    for record_input in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let policy = RecordingPolicy {
            record_input,
            ..Default::default()
        };
        let (rec, _) = start(root.path(), policy);
        let mut ch = rec.channel(3, shell()).unwrap();
        ch.input(b"secret\r").unwrap();
        ch.output(b"$ ").unwrap();
        ch.resize(120, 40).unwrap();
        let summary = ch.finish().unwrap();
        assert_eq!((summary.bytes_in, summary.bytes_out), (7, 2));
        let dir = rec.finish("client closed").dir;
        let cast = json_lines(&dir.join("chan-1.cast"));
        let header = &cast[0];
        assert_eq!(
            (header["width"].as_u64(), header["height"].as_u64()),
            (Some(100), Some(30))
        );
        assert_eq!(header["env"]["TERM"], "xterm-256color");
        assert_eq!(header["jitssh"]["channel"], 3);
        let kinds: Vec<(String, String)> = cast[1..]
            .iter()
            .map(|e| (e[1].as_str().unwrap().into(), e[2].as_str().unwrap().into()))
            .collect();
        let mut want = vec![("o".into(), "$ ".into()), ("r".into(), "120x40".into())];
        if record_input {
            want.insert(0, ("i".into(), "secret\r".into()));
        }
        assert_eq!(kinds, want, "record_input = {record_input}");
        assert!(
            !fs::read_to_string(dir.join("events.jsonl"))
                .unwrap()
                .contains("secret")
                || record_input
        );
    }
}

#[test]
fn output_reaches_the_file_on_flush_not_before() {
    let root = tempfile::tempdir().unwrap();
    let (rec, _) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec.channel(0, shell()).unwrap();
    ch.output(b"hello").unwrap();
    let cast = rec.dir().join("chan-1.cast");
    assert_eq!(fs::read(&cast).unwrap(), b"", "buffered until flush");
    rec.flush().unwrap();
    let written = lines(&cast);
    assert_eq!(written.len(), 2);
    assert!(written[1].ends_with(",\"o\",\"hello\"]"), "{}", written[1]);
    // The chain covers what was flushed.
    let chain = json_lines(&rec.dir().join("chain.jsonl"));
    assert!(
        chain
            .iter()
            .any(|e| e["file"] == "chan-1.cast" && e["lines"].as_array().unwrap().len() == 2)
    );
}

#[test]
fn buffer_limit_writes_without_a_flush() {
    let root = tempfile::tempdir().unwrap();
    let policy = RecordingPolicy {
        max_buffer: 4096,
        ..Default::default()
    };
    let (rec, _) = start(root.path(), policy);
    let mut ch = rec.channel(0, shell()).unwrap();
    for _ in 0..100 {
        ch.output(&[b'x'; 100]).unwrap();
    }
    let on_disk = fs::metadata(rec.dir().join("chan-1.cast")).unwrap().len();
    assert!(on_disk > 10_000 - 4096, "only {on_disk} bytes written");
}

#[test]
fn finished_recording_plays_in_asciinema_and_verifies() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec.channel(0, shell()).unwrap();
    let parts: [&[u8]; 5] = [
        b"$ ls\r\n",
        b"caf\xc3",
        b"\xa9 \xf0",
        b"\x9f\xa6\x80\r\n",
        b"\x1b[1mbold\x1b[0m\r\n",
    ];
    for p in parts {
        ch.output(p).unwrap();
    }
    ch.resize(90, 20).unwrap();
    ch.exit_status(0).unwrap();
    ch.finish().unwrap();
    let summary = rec.finish("client closed");
    assert!(summary.sealed, "{:?}", summary.failure);
    assert_eq!(summary.exit_status, Some(0));
    assert_eq!(summary.dir, session_dir(root.path(), &summary.id).unwrap());

    let (ok, printed) = asciinema_cat(&summary.dir.join("chan-1.cast"));
    assert!(ok, "asciinema cat failed: {printed}");
    assert_eq!(printed.as_bytes(), parts.concat());

    let report = verify(&summary.dir, &key);
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.seal, SealStatus::Sealed);
    let manifest = report.manifest.unwrap();
    assert_eq!(manifest.session.cert_serial, 4711);
    assert_eq!(manifest.end_reason, "client closed");
    assert!(report.files.iter().all(|f| f.lines == f.verified_lines));
}

#[test]
fn seal_verifies_with_stock_ssh_keygen() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), RecordingPolicy::default());
    rec.channel(0, shell()).unwrap().output(b"x").unwrap();
    let dir = rec.finish("client closed").dir;
    let signers = root.path().join("allowed_signers");
    fs::write(&signers, format!("bastion {}\n", key.public_line())).unwrap();
    let run = || {
        Command::new("ssh-keygen")
            .args(["-Y", "verify", "-f"])
            .arg(&signers)
            .args(["-I", "bastion", "-n", SEAL_NAMESPACE, "-s"])
            .arg(dir.join("seal.json.sig"))
            .stdin(File::open(dir.join("seal.json")).unwrap())
            .output()
    };
    let out = match run() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("ssh-keygen not found: apt-get install openssh-client")
        }
        other => other.unwrap(),
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And it rejects an altered seal.
    let seal = dir.join("seal.json");
    let text = fs::read_to_string(&seal).unwrap();
    fs::write(&seal, text.replace("client closed", "client closex")).unwrap();
    assert!(!run().unwrap().status.success());
}

/// A sealed recording of a shell with ten output events; returns its directory and key.
fn sealed_session(root: &Path) -> (PathBuf, Arc<CaSigner>) {
    let (rec, key) = start(root, RecordingPolicy::default());
    let mut ch = rec.channel(0, shell()).unwrap();
    for i in 1..=10 {
        ch.output(format!("line {i}\r\n").as_bytes()).unwrap();
    }
    ch.finish().unwrap();
    let summary = rec.finish("client closed");
    assert!(summary.sealed);
    (summary.dir, key)
}

pub(super) fn rewrite(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
    let mut l = lines(path);
    f(&mut l);
    fs::write(path, l.iter().map(|x| format!("{x}\n")).collect::<String>()).unwrap();
}

#[test]
fn altered_byte_is_named_by_line() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = sealed_session(root.path());
    rewrite(&dir.join("chan-1.cast"), |l| {
        l[4] = l[4].replace("line 4", "line X");
    });
    let report = verify(&dir, &key);
    assert_eq!(problems(&report), ["chan-1.cast line 5: altered"]);
    assert!(!report.is_intact());
}

#[test]
fn removed_line_is_named_with_its_recorded_number() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = sealed_session(root.path());
    rewrite(&dir.join("chan-1.cast"), |l| {
        l.remove(6);
    });
    let report = verify(&dir, &key);
    assert_eq!(
        problems(&report),
        ["chan-1.cast line 7: removed (recorded line numbers; missing before line 7 of the file)"]
    );
}

#[test]
fn inserted_line_is_named() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = sealed_session(root.path());
    rewrite(&dir.join("chan-1.cast"), |l| {
        l.insert(3, r#"[0.5,"o","rm -rf /\r\n"]"#.into());
    });
    assert_eq!(
        problems(&verify(&dir, &key)),
        ["chan-1.cast line 4: inserted"]
    );
}

#[test]
fn truncated_file_is_named() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = sealed_session(root.path());
    rewrite(&dir.join("chan-1.cast"), |l| l.truncate(4));
    assert_eq!(
        problems(&verify(&dir, &key)),
        ["chan-1.cast lines 5-11: truncated (recorded line numbers; the file ends after line 4)"]
    );
    // A partial last line too.
    let mut f = OpenOptions::new()
        .append(true)
        .open(dir.join("chan-1.cast"))
        .unwrap();
    f.write_all(b"[0.9,\"o\",\"li").unwrap();
    let report = problems(&verify(&dir, &key));
    assert!(
        report.contains(&"chan-1.cast line 5: torn (partial last line)".to_owned()),
        "{report:?}"
    );
}

#[test]
fn truncating_the_chain_too_is_caught_by_the_seal() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = sealed_session(root.path());
    rewrite(&dir.join("chain.jsonl"), |l| {
        l.pop();
    });
    let report = verify(&dir, &key);
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.file == "chain.jsonl" && p.kind == ProblemKind::Truncated),
        "{report}"
    );
}

#[test]
fn altered_or_removed_chain_entries_are_named() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = sealed_session(root.path());
    let chain = dir.join("chain.jsonl");
    let original = fs::read(&chain).unwrap();
    rewrite(&chain, |l| {
        l[1] = l[1].replacen("\"first\":", "\"first\": ", 1);
    });
    let report = verify(&dir, &key);
    assert!(
        problems(&report)
            .contains(&"chain.jsonl line 2: altered (entry does not match its hash)".to_owned()),
        "{report}"
    );
    fs::write(&chain, &original).unwrap();
    rewrite(&chain, |l| {
        l.remove(1);
    });
    let report = verify(&dir, &key);
    assert!(
        problems(&report)
            .iter()
            .any(|p| p.starts_with("chain.jsonl line 2: chain broken (does not follow")),
        "{report}"
    );
}

#[test]
fn altered_seal_or_foreign_key_is_invalid() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = sealed_session(root.path());
    let report = verify_session(&dir, &CaSigner::generate("other").public_key()).unwrap();
    assert!(
        matches!(&report.seal, SealStatus::Invalid(why) if why.to_string().contains("untrusted key")),
        "{report}"
    );
    let seal = dir.join("seal.json");
    let text = fs::read_to_string(&seal).unwrap();
    fs::write(&seal, text.replace("client closed", "client closex")).unwrap();
    let report = verify(&dir, &key);
    assert!(
        matches!(&report.seal, SealStatus::Invalid(why) if why.to_string().contains("seal altered")),
        "{report}"
    );
    assert!(!report.is_intact());
}

#[test]
fn missing_and_unexpected_files_are_named() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = sealed_session(root.path());
    fs::rename(dir.join("chan-1.cast"), dir.join("other.cast")).unwrap();
    assert_eq!(
        problems(&verify(&dir, &key)),
        ["chan-1.cast: missing", "other.cast: unexpected file"]
    );
}

#[test]
fn what_a_writer_at_work_leaves_is_told_from_damage() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = sealed_session(root.path());
    // Caught mid-seal: the signature is in place, the seal still under its temporary name;
    // the shell's last line half written.
    let seal = fs::read(dir.join("seal.json")).unwrap();
    fs::remove_file(dir.join("seal.json")).unwrap();
    fs::write(dir.join(".seal.json.tmp"), &seal).unwrap();
    OpenOptions::new()
        .append(true)
        .open(dir.join("chan-1.cast"))
        .unwrap()
        .write_all(b"[0.9, \"o\", \"hal")
        .unwrap();
    let report = verify(&dir, &key);
    assert_eq!(report.seal, SealStatus::Unsealed, "{report}");
    assert_eq!(
        problems(&report),
        [
            "chan-1.cast line 12: torn (partial last line)",
            ".seal.json.tmp: unexpected file"
        ]
    );
    assert!(report.problems.iter().all(Problem::in_flight), "{report}");

    // Anything else is damage, live or not.
    fs::write(dir.join(".seal.json.tmp.old"), b"x").unwrap();
    fs::write(dir.join("seal.json.tmp"), b"x").unwrap();
    let report = verify(&dir, &key);
    let damage: Vec<String> = report
        .problems
        .iter()
        .filter(|p| !p.in_flight())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        damage,
        [
            ".seal.json.tmp.old: unexpected file",
            "seal.json.tmp: unexpected file"
        ],
        "{report}"
    );
}

/// Runs as a child of `kill_9_leaves_a_playable_verifiable_prefix`; a no-op otherwise.
#[test]
fn child_records_until_killed() {
    let (Ok(root), Ok(id)) = (
        std::env::var("JITSSH_REC_ROOT"),
        std::env::var("JITSSH_REC_ID"),
    ) else {
        return;
    };
    let key = CaSigner::generate("bastion");
    fs::write(Path::new(&root).join("key.pub"), key.public_line()).unwrap();
    let rec = Recorder::start(
        Path::new(&root),
        SessionMeta { id, ..meta() },
        RecordingPolicy::default(),
        Arc::new(key),
    )
    .unwrap();
    let mut ch = rec.channel(0, shell()).unwrap();
    ch.output(b"before the crash \xc3").unwrap();
    ch.output(b"\xa9\r\n").unwrap();
    rec.flush().unwrap();
    ch.output(b"never flushed\r\n").unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn kill_9_leaves_a_playable_verifiable_prefix() {
    let root = tempfile::tempdir().unwrap();
    let id = new_session_id();
    let module = module_path!().split_once("::").map_or("", |(_, rest)| rest);
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", &format!("{module}::child_records_until_killed")])
        .args(["--nocapture", "--test-threads=1"])
        .env("JITSSH_REC_ROOT", root.path())
        .env("JITSSH_REC_ID", &id)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let ready = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.trim_end().ends_with("READY"));
    assert!(ready, "child did not get ready");
    child.kill().unwrap(); // SIGKILL: no destructor, no flush
    child.wait().unwrap();

    let dir = session_dir(root.path(), &id).unwrap();
    let (ok, printed) = asciinema_cat(&dir.join("chan-1.cast"));
    assert!(ok, "asciinema cat failed: {printed}");
    assert_eq!(printed, "before the crash é\r\n");

    let key_line = fs::read_to_string(root.path().join("key.pub")).unwrap();
    let key = jitssh_core::ssh_key::PublicKey::from_openssh(key_line.trim()).unwrap();
    let report = verify_session(&dir, &key).unwrap();
    assert_eq!(report.seal, SealStatus::Unsealed, "{report}");
    assert!(report.problems.is_empty(), "{report}");
    let cast = report
        .files
        .iter()
        .find(|f| f.name == "chan-1.cast")
        .unwrap();
    assert_eq!((cast.lines, cast.verified_lines), (3, 3), "{report}");
    assert!(report.to_string().contains("UNSEALED"), "{report}");
}

#[test]
fn write_failure_terminates_by_default() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec.channel(0, shell()).unwrap();
    ch.output(b"kept\r\n").unwrap();
    rec.flush().unwrap();
    rec.redirect_channel_file(1, OpenOptions::new().write(true).open("/dev/full").unwrap());
    ch.output(b"lost\r\n").unwrap();
    let err = rec.flush().unwrap_err();
    assert!(
        matches!(
            &err,
            RecordingError::Io {
                action: "write",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("chan-1.cast"), "{err}");
    let again = ch.output(b"more").unwrap_err();
    assert!(matches!(again, RecordingError::Failed { .. }), "{again}");
    assert!(rec.flush().is_err());
    assert!(rec.take_degraded().is_none());

    let summary = rec.finish("recording failed");
    assert!(
        summary
            .failure
            .as_deref()
            .unwrap()
            .contains("No space left"),
        "{summary:?}"
    );
    // What was written before the failure is still sealed and verifiable.
    assert!(summary.sealed);
    let report = verify(&summary.dir, &key);
    assert!(report.is_intact(), "{report}");
    assert!(report.manifest.unwrap().failure.is_some());
    assert_eq!(cast_output(&summary.dir.join("chan-1.cast")), "kept\r\n");
}

#[test]
fn write_failure_can_continue_degraded() {
    let root = tempfile::tempdir().unwrap();
    let policy = RecordingPolicy {
        on_failure: OnFailure::Continue,
        ..Default::default()
    };
    let (rec, _) = start(root.path(), policy);
    let mut ch = rec.channel(0, shell()).unwrap();
    rec.redirect_channel_file(1, OpenOptions::new().write(true).open("/dev/full").unwrap());
    ch.output(b"lost\r\n").unwrap();
    rec.flush().unwrap();
    ch.output(b"not recorded\r\n").unwrap();
    rec.flush().unwrap();
    let degraded = rec.take_degraded().expect("reported once");
    assert!(degraded.to_string().contains("No space left"), "{degraded}");
    assert!(rec.take_degraded().is_none());
    let summary = ch.finish().unwrap();
    assert_eq!(summary.bytes_out, 20, "still counted");
    let summary = rec.finish("client closed");
    assert!(summary.failure.is_some());
    let degraded = events_of(&summary.dir, "recording.degraded");
    assert_eq!(degraded.len(), 1);
    assert!(
        degraded[0]["error"]
            .as_str()
            .unwrap()
            .contains("chan-1.cast")
    );
}

#[test]
fn start_fails_cleanly_when_the_directory_cannot_be_made() {
    let root = tempfile::tempdir().unwrap();
    let m = meta();
    let dir = session_dir(root.path(), &m.id).unwrap();
    fs::create_dir_all(dir.parent().unwrap()).unwrap();
    fs::write(&dir, b"a file where the directory goes").unwrap();
    let err = Recorder::start(root.path(), m, RecordingPolicy::default(), key()).unwrap_err();
    assert!(
        matches!(
            err,
            RecordingError::Io {
                action: "create directory",
                ..
            }
        ),
        "{err}"
    );
    let bad = SessionMeta {
        id: "../escape".into(),
        ..meta()
    };
    assert!(matches!(
        Recorder::start(root.path(), bad, RecordingPolicy::default(), key()),
        Err(RecordingError::InvalidId(_))
    ));
}

pub(super) fn sha256sum(path: &Path) -> String {
    let out = match Command::new("sha256sum").arg(path).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("sha256sum not found: apt-get install coreutils")
        }
        other => other.unwrap(),
    };
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

#[test]
fn transfers_record_bytes_and_sha256_not_content() {
    for content in [false, true] {
        let root = tempfile::tempdir().unwrap();
        let policy = RecordingPolicy {
            transfer_content: content,
            ..Default::default()
        };
        let (rec, key) = start(root.path(), policy);
        let upload: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let download = b"C0644 5 file\n\0".to_vec();
        let mut ch = rec
            .channel(
                1,
                ChannelKind::Exec {
                    command: "scp -t /tmp".into(),
                    pty: None,
                },
            )
            .unwrap();
        for piece in upload.chunks(32 * 1024) {
            ch.input(piece).unwrap();
        }
        ch.output(&download).unwrap();
        ch.exit_status(0).unwrap();
        let summary = ch.finish().unwrap();
        let files = root.path().join("data");
        fs::create_dir(&files).unwrap();
        fs::write(files.join("up"), &upload).unwrap();
        fs::write(files.join("down"), &download).unwrap();
        assert_eq!(summary.bytes_in, upload.len() as u64);
        assert_eq!(summary.bytes_out, download.len() as u64);
        assert_eq!(
            summary.sha256_in.as_deref(),
            Some(sha256sum(&files.join("up")).as_str())
        );
        assert_eq!(
            summary.sha256_out.as_deref(),
            Some(sha256sum(&files.join("down")).as_str())
        );

        let session = rec.finish("client closed");
        let dir = &session.dir;
        let closed = events_of(dir, "channel.close");
        assert_eq!(
            closed[0]["summary"]["sha256_in"],
            summary.sha256_in.clone().unwrap().as_str()
        );
        let content_file = dir.join("chan-1.transfer.jsonl");
        assert!(!dir.join("chan-1.cast").exists());
        assert_eq!(content_file.exists(), content);
        if content {
            let mut up = Vec::new();
            for e in json_lines(&content_file) {
                if e[1] == "up" {
                    up.extend(
                        base64::engine::general_purpose::STANDARD
                            .decode(e[2].as_str().unwrap())
                            .unwrap(),
                    );
                }
            }
            assert_eq!(up, upload);
        } else {
            let total: u64 = fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().metadata().unwrap().len())
                .sum();
            assert!(total < 20_000, "content was stored: {total} bytes");
        }
        assert!(verify(dir, &key).is_intact());
    }
}

#[test]
fn exec_records_command_output_and_exit_status() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec
        .channel(
            0,
            ChannelKind::Exec {
                command: "uname -a".into(),
                pty: None,
            },
        )
        .unwrap();
    ch.output(b"Linux web01\n").unwrap();
    ch.stderr(b"warning\n").unwrap();
    ch.exit_status(2).unwrap();
    let summary = ch.finish().unwrap();
    assert_eq!(
        (summary.bytes_out, summary.bytes_err, summary.exit_status),
        (12, 8, Some(2))
    );
    assert_eq!(summary.sha256_out, None, "not a transfer");
    let mut sftp = rec
        .channel(
            1,
            ChannelKind::Subsystem {
                name: "sftp".into(),
            },
        )
        .unwrap();
    sftp.output(b"\0\0\0\x05\x02").unwrap();
    sftp.exit_signal("TERM").unwrap();
    let session = rec.finish("client closed");
    assert_eq!(session.exit_status, Some(2));
    assert_eq!((session.bytes_out, session.channels.len()), (25, 2));
    assert_eq!(session.channels[1].exit_signal.as_deref(), Some("TERM"));
    let cast = json_lines(&session.dir.join("chan-1.cast"));
    assert_eq!(cast[0]["command"], "uname -a");
    assert_eq!(
        cast_output(&session.dir.join("chan-1.cast")),
        "Linux web01\nwarning\n"
    );
    let exits = events_of(&session.dir, "channel.exit");
    assert_eq!(exits[0]["status"], 2);
    assert_eq!(exits[1]["signal"], "TERM");
    assert!(verify(&session.dir, &key).is_intact());
}

#[test]
fn summary_completes_the_session_index() {
    let root = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_session_index(&root.path().join("store.db")).unwrap();
    let m = meta();
    let rec = Recorder::start(
        &root.path().join("rec"),
        m.clone(),
        RecordingPolicy::default(),
        key(),
    )
    .unwrap();
    store.insert_session(&m.index_record(&rec.dir())).unwrap();
    let mut ch = rec.channel(0, shell()).unwrap();
    ch.input(b"exit\r").unwrap();
    ch.output(b"bye\r\n").unwrap();
    ch.exit_status(0).unwrap();
    let summary = rec.finish("client closed");
    assert!(store.end_session(&m.id, &summary.index_end()).unwrap());
    let row = store.session(&m.id).unwrap().unwrap();
    assert_eq!(
        (row.bytes_in, row.bytes_out, row.exit_status),
        (5, 5, Some(0))
    );
    assert_eq!(row.cert_serial, 4711);
    assert_eq!(Path::new(&row.recording), summary.dir);
}

#[test]
fn recorders_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Recorder>();
    assert_send_sync::<ChannelRecorder>();
}

#[test]
fn unsealed_recording_still_names_damage_and_unchained_lines() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec.channel(0, shell()).unwrap();
    for i in 1..=5 {
        ch.output(format!("line {i}\r\n").as_bytes()).unwrap();
    }
    let dir = rec.dir();
    drop(ch);
    drop(rec); // not finished: written out, not sealed
    assert!(!dir.join("seal.json").exists());
    let report = verify(&dir, &key);
    assert_eq!(report.seal, SealStatus::Unsealed);
    assert!(report.problems.is_empty(), "{report}");

    // Lines written after the last chain entry (a crash between the two writes).
    let cast = dir.join("chan-1.cast");
    let mut f = OpenOptions::new().append(true).open(&cast).unwrap();
    f.write_all(b"[9.0,\"o\",\"late\"]\n").unwrap();
    rewrite(&cast, |l| l[2] = l[2].replace("line 2", "line Z"));
    assert_eq!(
        problems(&verify(&dir, &key)),
        [
            "chan-1.cast line 3: altered",
            "chan-1.cast line 7: not covered by the chain (written after the last chain entry, before the bastion stopped)",
        ]
    );
}

/// A caller tells a full disk from every other failure by type, not by reading the message:
/// the first write error, the refusals after it, and the writer's error all say so.
#[test]
fn a_full_disk_is_told_apart_from_other_failures() {
    let root = tempfile::tempdir().unwrap();
    let (rec, _) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec.channel(0, shell()).unwrap();
    rec.redirect_channel_file(1, OpenOptions::new().write(true).open("/dev/full").unwrap());
    ch.output(b"lost\r\n").unwrap();
    let err = rec.flush().unwrap_err();
    assert!(err.is_disk_full(), "{err}");
    let again = ch.output(b"more").unwrap_err();
    assert!(
        matches!(again, RecordingError::Failed { .. }) && again.is_disk_full(),
        "{again}"
    );
    let write = crate::WriteError::from(again);
    assert!(write.is_disk_full(), "{write}");
    assert!(!crate::WriteError::QueueFull.is_disk_full());
    rec.finish("disk full");

    // A directory that cannot be made is not a full disk.
    let m = meta();
    let dir = session_dir(root.path(), &m.id).unwrap();
    fs::create_dir_all(dir.parent().unwrap()).unwrap();
    fs::write(&dir, b"a file where the directory goes").unwrap();
    let err = Recorder::start(root.path(), m, RecordingPolicy::default(), key()).unwrap_err();
    assert!(!err.is_disk_full(), "{err}");
}
