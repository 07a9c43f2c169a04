//! The auditor's commands on recordings made with the real [`Recorder`], a real session
//! index and audit log and the real `asciinema`. (Those that need the bastion's admin socket
//! are the bastion's tests: `bastion/tests/auditor_live.rs`.)

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use jitssh_core::audit::{AuditEvent, AuditLog};
use jitssh_core::keys::CaSigner;
use jitssh_core::store::{SessionIndex, SqliteStore};
use serde_json::Value;

use super::args::*;
use super::*;
use jitssh_recording::{ChannelKind, Pty, Recorder, RecordingPolicy, SessionMeta, new_session_id};

struct World {
    _dir: tempfile::TempDir,
    auditor: Auditor,
    key: Arc<CaSigner>,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let key = Arc::new(CaSigner::generate("bastion"));
    let seal_key = root.join("host_ed25519_key.pub");
    fs::write(&seal_key, key.public_line()).unwrap();
    let auditor = Auditor {
        recordings: root.join("recordings"),
        index: root.join("sessions.db").into(),
        audit_log: root.join("audit.log"),
        ca_audit_log: None,
        seal_key,
        admin_socket: root.join("admin.sock"),
        retain: None,
        store: None,
    };
    World {
        _dir: dir,
        auditor,
        key,
    }
}

fn meta(user: &str) -> SessionMeta {
    SessionMeta {
        id: new_session_id(),
        user: user.into(),
        key_id: format!("{user}@corp"),
        cert_serial: 4711,
        login: "deploy".into(),
        target: "web01".into(),
        client_addr: "192.0.2.10:50022".into(),
        started_at: jitssh_core::unix_now(),
    }
}

fn pty() -> Option<Pty> {
    Some(Pty {
        term: "xterm-256color".into(),
        cols: 80,
        rows: 24,
    })
}

impl World {
    /// A finished session: a shell where `echo hello` was typed, an exec, an sftp transfer;
    /// indexed, audited, sealed. Returns its id.
    fn session(&self, user: &str) -> String {
        let meta = meta(user);
        let id = meta.id.clone();
        let index = SqliteStore::open_session_index(index_path(&self.auditor)).unwrap();
        let rec = Recorder::start(
            &self.auditor.recordings,
            meta.clone(),
            RecordingPolicy::default(),
            self.key.clone(),
        )
        .unwrap();
        index
            .insert_session(&meta.index_record(&rec.dir()))
            .unwrap();
        let audit = AuditLog::open(&self.auditor.audit_log).unwrap();
        audit
            .append(
                AuditEvent::new("session.start")
                    .with("session", id.as_str())
                    .with("session_cert_serial", 99),
            )
            .unwrap();
        let mut shell = rec.channel(0, ChannelKind::Shell { pty: pty() }).unwrap();
        shell
            .output(b"\x1b]0;deploy@web01: ~\x07\x1b[01;32mdeploy@web01\x1b[00m:~$ ")
            .unwrap();
        std::thread::sleep(Duration::from_millis(100));
        shell.output(b"echo hellx\x08\x1b[Ko\r\n").unwrap();
        std::thread::sleep(Duration::from_millis(100));
        shell.output(b"hello\r\n$ ").unwrap();
        shell.exit_status(0).unwrap();
        shell.finish().unwrap();
        let mut exec = rec
            .channel(
                1,
                ChannelKind::Exec {
                    command: "uptime".into(),
                    pty: None,
                },
            )
            .unwrap();
        exec.output(b" 10:00:00 up 5 days\nload 0.10\n").unwrap();
        exec.exit_status(0).unwrap();
        exec.finish().unwrap();
        let mut sftp = rec
            .channel(
                2,
                ChannelKind::Subsystem {
                    name: "sftp".into(),
                },
            )
            .unwrap();
        sftp.input(b"uploaded bytes").unwrap();
        sftp.finish().unwrap();
        let summary = rec.finish("the client disconnected");
        index.end_session(&id, &summary.index_end()).unwrap();
        audit
            .append(
                AuditEvent::new("session.end")
                    .with("session", id.as_str())
                    .with("reason", "the client disconnected"),
            )
            .unwrap();
        id
    }

    fn dir(&self, id: &str) -> PathBuf {
        jitssh_recording::session_dir(&self.auditor.recordings, id).unwrap()
    }

    fn run(
        &self,
        f: impl FnOnce(&Auditor, &mut dyn Write) -> Result<Outcome, AuditorError>,
    ) -> (Outcome, String) {
        let mut out = Vec::new();
        let outcome = f(&self.auditor, &mut out).unwrap();
        (outcome, String::from_utf8(out).unwrap())
    }
}

fn list_args() -> ListArgs {
    ListArgs {
        filter: FilterArgs::default(),
        limit: None,
        json: false,
    }
}

fn export_args(id: &str, format: ExportFormat) -> ExportArgs {
    ExportArgs {
        id: id.into(),
        format,
        out: None,
        channel: None,
    }
}

fn grep_args(pattern: &str) -> GrepArgs {
    GrepArgs {
        pattern: pattern.into(),
        filter: FilterArgs::default(),
        ignore_case: false,
        ids: Vec::new(),
        raw: false,
    }
}

fn verify_args(id: &str) -> VerifyArgs {
    VerifyArgs {
        ids: vec![id.into()],
        key: None,
    }
}

/// `asciinema cat FILE` on a pty (it insists on one); (success, output).
fn asciinema_cat(cast: &Path) -> (bool, String) {
    match Command::new("asciinema").arg("--version").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            panic!("asciinema not found: apt-get install asciinema")
        }
        other => assert!(other.unwrap().status.success(), "asciinema --version"),
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

#[test]
fn sessions_are_listed_newest_first_and_filtered() {
    let w = world();
    let a = w.session("alice");
    std::thread::sleep(Duration::from_millis(1100));
    let b = w.session("bob");
    let (_, table) = w.run(|a, out| a.list(&list_args(), out));
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("ID"), "{table}");
    assert!(
        lines[1].starts_with(&b) && lines[2].starts_with(&a),
        "{table}"
    );
    assert!(
        lines[2].contains("alice") && lines[2].contains("deploy@web01"),
        "{table}"
    );
    assert!(!lines[2].contains("active"), "ended: {table}");

    let mut args = list_args();
    args.filter.user = Some("alice".into());
    args.json = true;
    let (_, json) = w.run(|a, out| a.list(&args, out));
    let rows: Vec<Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], a.as_str());
    assert_eq!(rows[0]["exit_status"], 0);
    assert!(rows[0]["recording_bytes"].as_u64().unwrap() > 0);

    args.filter.since = Some("yesterday".into());
    let err = w
        .auditor
        .list(&args, &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid time \"yesterday\""), "{err}");
}

#[test]
fn show_names_certificates_commands_transfers_and_audit_events() {
    let w = world();
    let id = w.session("alice");
    let (_, text) = w.run(|a, out| a.show(&id, out));
    for needle in [
        "deploy@web01",
        "serial 4711, key id \"alice@corp\"",
        "session certificate   serial 99",
        "#1 shell (pty xterm-256color 80x24)  exit 0",
        "#2 exec \"uptime\"  exit 0",
        "#3 subsystem sftp",
        "sha256 ",
        "session.start",
        "session.end",
        "the client disconnected",
    ] {
        assert!(text.contains(needle), "{needle:?} in:\n{text}");
    }
    let err = w
        .auditor
        .show("20261123T180000Z-0a1b2c3d", &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("no session"), "{err}");
    let err = w
        .auditor
        .show("../../etc", &mut Vec::new())
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid session id"), "{err}");
}

#[test]
fn asciicast_export_drops_a_torn_line_and_plays_in_asciinema() {
    let w = world();
    let id = w.session("alice");
    let cast = w.dir(&id).join("chan-1.cast");
    let original = fs::read_to_string(&cast).unwrap();
    // The bastion was killed mid-write.
    fs::OpenOptions::new()
        .append(true)
        .open(&cast)
        .unwrap()
        .write_all(b"[0.9,\"o\",\"half a li")
        .unwrap();
    let mut args = export_args(&id, ExportFormat::Asciicast);
    args.channel = Some(1);
    let (_, exported) = w.run(|a, out| a.export(&args, out));
    assert_eq!(exported, original, "line for line, torn line left out");

    // Both terminal channels, one after the other.
    let out_file = w._dir.path().join("s.cast");
    let mut args = export_args(&id, ExportFormat::Asciicast);
    args.out = Some(out_file.clone());
    w.run(|a, out| a.export(&args, out));
    let mode = fs::metadata(&out_file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert!(
        fs::read_to_string(&out_file)
            .unwrap()
            .contains(r#"" 10:00:00 up 5 days\r\nload 0.10\r\n""#)
    );
    let (ok, played) = asciinema_cat(&out_file);
    assert!(ok, "asciinema cat failed: {played}");
    assert!(
        played.contains("hello") && played.contains("up 5 days"),
        "{played}"
    );
    let times: Vec<f64> = fs::read_to_string(&out_file)
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()[0]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|t| t[0] <= t[1]), "{times:?}");
}

#[test]
fn text_export_is_what_the_person_saw_without_escapes() {
    let w = world();
    let id = w.session("alice");
    let (_, text) = w.run(|a, out| a.export(&export_args(&id, ExportFormat::Text), out));
    assert!(
        !text.contains('\u{1b}') && !text.contains('\u{8}'),
        "{text:?}"
    );
    assert!(text.contains("deploy@web01:~$ echo hello\n"), "{text}");
    assert!(text.contains("\nhello\n"), "{text}");
    assert!(
        text.contains("--- channel 2: exec \"uptime\" ---"),
        "{text}"
    );
    // No pty: the person's terminal returned the carriage at each newline.
    assert!(
        text.contains("\n 10:00:00 up 5 days\nload 0.10\n"),
        "{text}"
    );

    let (_, json) = w.run(|a, out| a.export(&export_args(&id, ExportFormat::Json), out));
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["sealed"], true);
    assert_eq!(doc["session"]["user"], "alice");
    assert_eq!(doc["channels"].as_array().unwrap().len(), 2);
    assert!(doc["journal"].as_array().unwrap().len() > 5);
}

#[test]
fn grep_finds_rendered_text_with_an_offset_replay_accepts() {
    let w = world();
    let id = w.session("alice");
    let other = w.session("bob");
    let (outcome, found) = w.run(|a, out| a.grep(&grep_args("^hello$"), out));
    assert_eq!(outcome, Outcome::Ok);
    let lines: Vec<&str> = found.lines().collect();
    assert_eq!(lines.len(), 2, "{found}");
    let mine = lines.iter().find(|l| l.starts_with(&id)).unwrap();
    let fields: Vec<&str> = mine.split_whitespace().collect();
    assert_eq!(fields[2], "#1");
    assert_eq!(fields[3], "hello");
    let offset = timefmt::parse_offset(fields[1]).unwrap();
    assert!(offset >= 0.1, "after the two pauses: {mine}");
    // Escape sequences never match.
    let (outcome, _) = w.run(|a, out| a.grep(&grep_args("01;32m|\\x08|\\x1b"), out));
    assert_eq!(outcome, Outcome::Failed);
    // Typed-over text was shown, so it is found (as the line it was on, before the fix).
    let (_, found) = w.run(|a, out| a.grep(&grep_args("hellx"), out));
    assert_eq!(found.lines().count(), 2, "{found}");
    assert!(
        found.lines().all(|l| l.ends_with("$ echo hellx")),
        "{found}"
    );
    let mut args = grep_args("DEPLOY@WEB01:~\\$ echo hello");
    args.ignore_case = true;
    args.filter.user = Some("bob".into());
    let (_, found) = w.run(|a, out| a.grep(&args, out));
    assert!(
        found.starts_with(&other) && found.lines().count() == 1,
        "{found}"
    );
    let err = w
        .auditor
        .grep(&grep_args("(unclosed"), &mut Vec::new())
        .unwrap_err();
    assert!(err.to_string().starts_with("invalid pattern"), "{err}");
}

#[test]
fn replay_plays_output_in_order_and_from_an_offset() {
    let w = world();
    let id = w.session("alice");
    let rec = w.auditor.recording(&id).unwrap();
    let segments = rec.timeline(None).unwrap();
    let timing = replay::Timing {
        speed: 100.0,
        max_idle: None,
        from: 0.0,
    };
    let mut out = Vec::new();
    let mut progress = Vec::new();
    let played = replay::play(
        &segments,
        timing,
        &mut out,
        replay::Progress::Lines(&mut progress),
        None,
        &id,
    )
    .unwrap();
    assert_eq!(played, replay::Played::Finished);
    let out = String::from_utf8(out).unwrap();
    let prompt = out.find("deploy@web01").unwrap();
    let hello = out.find("hello\r\n$ ").unwrap();
    let uptime = out.find("up 5 days").unwrap();
    assert!(prompt < hello && hello < uptime, "{out:?}");
    let progress = String::from_utf8(progress).unwrap();
    assert!(progress.contains(&format!("replay {id}: ")), "{progress}");

    // From the end: everything is written at once, without waiting.
    let timing = replay::Timing {
        speed: 1.0,
        max_idle: None,
        from: jitssh_recording::reader::total(&segments),
    };
    let started = std::time::Instant::now();
    let mut again = Vec::new();
    replay::play(
        &segments,
        timing,
        &mut again,
        replay::Progress::Lines(&mut Vec::new()),
        None,
        &id,
    )
    .unwrap();
    assert!(started.elapsed() < Duration::from_millis(50));
    assert_eq!(String::from_utf8(again).unwrap(), out);

    let bad = ReplayArgs {
        id: id.clone(),
        speed: 0.0,
        max_idle: None,
        from: None,
        channel: None,
    };
    assert!(
        w.auditor
            .replay(&bad)
            .unwrap_err()
            .to_string()
            .contains("--speed")
    );
}

#[test]
fn verify_names_the_altered_and_the_removed_line() {
    let w = world();
    let id = w.session("alice");
    let untouched = w.session("bob");
    let (outcome, text) = w.run(|a, out| a.verify(&verify_args(&id), out));
    assert_eq!(outcome, Outcome::Ok, "{text}");
    assert!(text.contains("sealed, intact"), "{text}");

    // One byte of the recording changed.
    let cast = w.dir(&id).join("chan-1.cast");
    let mut bytes = fs::read(&cast).unwrap();
    let at = bytes.windows(5).position(|w| w == b"hello").unwrap();
    bytes[at] = b'j';
    fs::write(&cast, &bytes).unwrap();
    let (outcome, text) = w.run(|a, out| a.verify(&verify_args(&id), out));
    assert_eq!(outcome, Outcome::Failed);
    assert!(text.contains("chan-1.cast line 4: altered"), "{text}");

    // A journal line deleted.
    let journal = w.dir(&untouched).join("events.jsonl");
    let lines: Vec<String> = fs::read_to_string(&journal)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let kept: Vec<&str> = lines
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .map(|(_, l)| l.as_str())
        .collect();
    fs::write(&journal, kept.join("\n") + "\n").unwrap();
    let (outcome, text) = w.run(|a, out| a.verify(&verify_args(&untouched), out));
    assert_eq!(outcome, Outcome::Failed);
    assert!(text.contains("events.jsonl line 3: removed"), "{text}");

    // Every recording at once; a wrong key fails them all.
    let (outcome, text) = w.run(|a, out| {
        a.verify(
            &VerifyArgs {
                ids: Vec::new(),
                key: None,
            },
            out,
        )
    });
    assert_eq!(outcome, Outcome::Failed);
    assert!(text.contains("0 intact, 2 not"), "{text}");
    let other = w._dir.path().join("other.pub");
    fs::write(&other, CaSigner::generate("x").public_line()).unwrap();
    let fresh = w.session("carol");
    let args = VerifyArgs {
        ids: vec![fresh],
        key: Some(other),
    };
    let (outcome, text) = w.run(|a, out| a.verify(&args, out));
    assert_eq!(outcome, Outcome::Failed);
    assert!(text.contains("untrusted key"), "{text}");
}

#[test]
fn audit_verify_reports_a_truncated_log() {
    let w = world();
    w.session("alice");
    let (outcome, text) = w.run(|a, out| a.audit_verify(out));
    assert_eq!(outcome, Outcome::Ok, "{text}");
    assert!(text.contains("intact, 2 records"), "{text}");
    let log = fs::read(&w.auditor.audit_log).unwrap();
    let first_line = log.iter().position(|&b| b == b'\n').unwrap() + 1;
    fs::write(&w.auditor.audit_log, &log[..first_line]).unwrap();
    let (outcome, text) = w.run(|a, out| a.audit_verify(out));
    assert_eq!(outcome, Outcome::Failed);
    assert!(text.contains("DAMAGED"), "{text}");
    assert!(text.to_lowercase().contains("truncated"), "{text}");
}

#[test]
fn planted_escape_sequences_are_shown_not_interpreted() {
    assert_eq!(list::printable("eve\u{1b}[2J\r"), "eve\\u{1b}[2J\\r");
    assert_eq!(list::printable("alice é"), "alice é");
}

#[test]
fn a_recording_cut_by_a_crash_is_reported_unsealed_with_what_still_verifies() {
    let w = world();
    let meta = meta("alice");
    let id = meta.id.clone();
    let rec = Recorder::start(
        &w.auditor.recordings,
        meta,
        RecordingPolicy::default(),
        w.key.clone(),
    )
    .unwrap();
    let mut shell = rec.channel(0, ChannelKind::Shell { pty: pty() }).unwrap();
    shell.output(b"$ make deploy\r\n").unwrap();
    rec.flush().unwrap();
    // The bastion dies: nothing is sealed.
    drop(shell);
    drop(rec);
    let (outcome, text) = w.run(|a, out| a.verify(&verify_args(&id), out));
    assert_eq!(outcome, Outcome::Failed, "{text}");
    assert!(text.contains("UNSEALED"), "{text}");
    assert!(
        text.contains("chan-1.cast: 2 of 2 lines verified"),
        "{text}"
    );
    // What is there still replays and renders.
    let (_, text) = w.run(|a, out| a.export(&export_args(&id, ExportFormat::Text), out));
    assert_eq!(text, "$ make deploy\n");
}

/// A sealed session with two downloads through `ssh host cmd`: a binary one, and a text one
/// past the limit. Returns its id and the two outputs.
fn bulk_session(w: &World) -> (String, Vec<u8>, Vec<u8>) {
    let meta = meta("carol");
    let id = meta.id.clone();
    let rec = Recorder::start(
        &w.auditor.recordings,
        meta,
        RecordingPolicy::default(),
        w.key.clone(),
    )
    .unwrap();
    let exec = |command: &str| ChannelKind::Exec {
        command: command.into(),
        pty: None,
    };
    let mut tgz = b"\x1f\x8b\x08\x00".to_vec();
    tgz.resize(64 << 10, 0);
    let mut ch = rec.channel(0, exec("tar cz /srv")).unwrap();
    ch.stderr(b"tar: Removing leading `/' from member names\n")
        .unwrap();
    for piece in tgz.chunks(32 << 10) {
        ch.output(piece).unwrap();
    }
    ch.finish().unwrap();
    let log: Vec<u8> = (0..60_000)
        .flat_map(|i| format!("request {i:>8} served\n").into_bytes())
        .collect();
    let mut ch = rec.channel(1, exec("cat /var/log/app.log")).unwrap();
    for piece in log.chunks(32 << 10) {
        ch.output(piece).unwrap();
    }
    ch.finish().unwrap();
    assert!(rec.finish("the client disconnected").sealed);
    (id, tgz, log)
}

#[test]
fn bulk_output_is_shown_exported_searched_and_verified() {
    use sha2::{Digest, Sha256};
    let w = world();
    let (id, tgz, log) = bulk_session(&w);
    let (tgz_sha, log_sha) = (
        hex::encode(Sha256::digest(&tgz)),
        hex::encode(Sha256::digest(&log)),
    );
    let (_, text) = w.run(|a, out| a.show(&id, out));
    for needle in [
        format!(
            "stdout: {} bytes from the first byte recorded as size and SHA-256 only (binary); sha256 of all {} bytes: {tgz_sha}",
            tgz.len(),
            tgz.len()
        ),
        format!(
            "stdout: {} bytes after the first 1.0 MiB recorded as size and SHA-256 only (over the limit); sha256 of all {} bytes: {log_sha}",
            log.len() - (1 << 20),
            log.len()
        ),
    ] {
        assert!(text.contains(&needle), "{needle:?} in:\n{text}");
    }

    // The asciicast says where output stops and how it continued; asciinema plays it.
    let out_file = w._dir.path().join("bulk.cast");
    let mut args = export_args(&id, ExportFormat::Asciicast);
    args.out = Some(out_file.clone());
    w.run(|a, out| a.export(&args, out));
    let (ok, played) = asciinema_cat(&out_file);
    assert!(ok, "asciinema cat failed: {played}");
    assert!(
        played.contains("Removing leading") && played.contains(&tgz_sha),
        "{played}"
    );
    let (_, text) = w.run(|a, out| a.export(&export_args(&id, ExportFormat::Text), out));
    assert!(
        text.contains(&format!(
            "[ssh-bastion: stdout continued for {} bytes, not stored; all {} bytes of stdout have SHA-256 {log_sha}]",
            log.len() - (1 << 20),
            log.len()
        )),
        "{text}"
    );
    assert!(text.contains("request        0 served\n"), "{text}");
    let (_, json) = w.run(|a, out| a.export(&export_args(&id, ExportFormat::Json), out));
    let doc: Value = serde_json::from_str(&json).unwrap();
    let bulk = &doc["channels"][1]["bulk"][0];
    assert_eq!(
        (&bulk["stream"], &bulk["reason"], &bulk["offset"]),
        (
            &Value::from("stdout"),
            &Value::from("limit"),
            &Value::from(1 << 20)
        )
    );
    assert_eq!(bulk["sha256"], log_sha.as_str());

    // grep finds the notes, with an offset.
    let mut args = grep_args("not stored");
    args.ids = vec![id.clone()];
    let (outcome, found) = w.run(|a, out| a.grep(&args, out));
    assert_eq!(outcome, Outcome::Ok);
    assert_eq!(found.lines().count(), 2, "{found}");
    assert!(found.contains(" #1 ") && found.contains(" #2 "), "{found}");

    let (outcome, report) = w.run(|a, out| a.verify(&verify_args(&id), out));
    assert_eq!(outcome, Outcome::Ok, "{report}");
    assert!(
        report.contains(&format!("all {} bytes have SHA-256 {log_sha}", log.len())),
        "{report}"
    );
}

/// Filters `chunks` as one stream.
fn filtered(chunks: &[&[u8]]) -> Vec<u8> {
    let mut filter = termfilter::TermFilter::new();
    let mut out = Vec::new();
    for chunk in chunks {
        filter.feed(chunk, &mut out);
    }
    out
}

/// What a hostile session prints to act on the auditor's terminal, with the drawing around
/// it that must survive.
const HOSTILE: &[u8] = b"\x1b[31mred\x1b[0m \
\x1b]52;c;ZWNobyBwd25lZAo=\x07\
\x1b]0;fake title\x1b\\\
\x1b]2;other title\x07\
\x1b[6n\x1b[c\x1b[>c\x1b[=c\x1b[5n\x1b[?6n\
\x1bP$qm\x1b\\\x1bP+q544e\x1b\\\
\x1b_apc\x1b\\\x1b^pm\x1b\\\x1bXsos\x1b\\\
\x1bZ\x05\
\x1b[14t\x1b[8;100;100t\x1b[21t\x1b[?1000h\x1b[?2004h\x1b[2h\x1b[>4;2m\x1b[?1h\
\xc2\x9d52;c;cHduZWQ=\x07\xc2\x9b6n\x9b6n\x9d0;raw title\x07\xc2\x90$qm\xc2\x9c\
visible\x1b[1;1H\x1b[2J\x1b[K\x1b[?1049h\x1b[?25l\x1b(0q\x1b(B\x1b[?1049l\x1b[?25h\r\n";

#[test]
fn the_terminal_filter_passes_drawing_and_drops_what_acts_on_the_terminal() {
    let out = filtered(&[HOSTILE]);
    let text = String::from_utf8(out.clone()).expect("valid UTF-8 out");
    assert_eq!(
        text,
        "\x1b[31mred\x1b[0m visible\x1b[1;1H\x1b[2J\x1b[K\x1b[?1049h\x1b[?25l\x1b(0q\x1b(B\x1b[?1049l\x1b[?25h\r\n"
    );
    // No string introducer, no query, no C1 control in any form.
    for bad in [
        &b"\x1b]"[..],
        b"\x1bP",
        b"\x1b_",
        b"\x1b^",
        b"\x1bX",
        b"\x1bZ",
        b"\x05",
        b"[6n",
        b"[c",
        b"\xc2\x9d",
        b"\x9b",
    ] {
        assert!(
            !out.windows(bad.len()).any(|w| w == bad),
            "{bad:?} in {text:?}"
        );
    }
}

#[test]
fn the_terminal_filter_handles_sequences_split_anywhere() {
    let whole = filtered(&[HOSTILE]);
    // Every split point, and one byte at a time.
    for at in 0..HOSTILE.len() {
        let (a, b) = HOSTILE.split_at(at);
        assert_eq!(filtered(&[a, b]), whole, "split at {at}");
    }
    let bytes: Vec<&[u8]> = HOSTILE.chunks(1).collect();
    assert_eq!(filtered(&bytes), whole);
    // A UTF-8 character split across chunks arrives whole.
    assert_eq!(
        filtered(&[b"caf\xc3", b"\xa9 \xe2\x82", b"\xac"]),
        "café €".as_bytes()
    );
}

#[test]
fn the_terminal_filter_keeps_drawing_modes_and_rewrites_c1_csi() {
    // Only the drawing modes of a mixed DECSET survive.
    assert_eq!(filtered(&[b"\x1b[?1049;1000;25h"]), b"\x1b[?1049;25h");
    assert_eq!(filtered(&[b"\x1b[?1000;1006h"]), b"");
    // An 8-bit CSI that draws is written in its 7-bit form; one that asks is dropped.
    assert_eq!(filtered(&[b"\xc2\x9b1mx\x9b2Jy"]), b"\x1b[1mx\x1b[2Jy");
    assert_eq!(filtered(&[b"a\xc2\x9b6nb"]), b"ab");
    // Cursor style, scroll region, insert mode pass; keyboard lock does not.
    assert_eq!(
        filtered(&[b"\x1b[2 q\x1b[3;20r\x1b[4h"]),
        b"\x1b[2 q\x1b[3;20r\x1b[4h"
    );
    assert_eq!(filtered(&[b"\x1b[2h\x1b[4;2h"]), b"");
    // Controls inside a sequence run; CAN cancels it.
    assert_eq!(filtered(&[b"\x1b[3\r1mX\x1b[3\x186nY"]), b"\r\x1b[31mX6nY");
    // What replay and watch write at the end to undo a session's drawing state is drawing
    // only.
    assert_eq!(filtered(&[termfilter::RESTORE]), termfilter::RESTORE);
    // Bytes that are not UTF-8 become U+FFFD; other C1 controls vanish.
    assert_eq!(
        filtered(&[b"a\xffb\xc0\xafc\xc2\x85d\x84e"]),
        "a\u{fffd}b\u{fffd}\u{fffd}cde".as_bytes()
    );
}

#[test]
fn the_terminal_filter_state_is_bounded() {
    // An endless string and an endless control sequence: nothing comes out, nothing grows.
    let mut filter = termfilter::TermFilter::new();
    let mut out = Vec::new();
    filter.feed(b"\x1b]52;c;", &mut out);
    for _ in 0..1000 {
        filter.feed(&[b'A'; 1024], &mut out);
    }
    filter.feed(b"\x07ok", &mut out);
    assert_eq!(out, b"ok");
    let mut long = b"\x1b[".to_vec();
    long.extend(std::iter::repeat_n(b'1', 100_000));
    long.extend_from_slice(b"mok");
    assert_eq!(filtered(&[&long]), b"ok");
}

#[test]
fn json_and_asciicast_exports_escape_c1_controls() {
    let w = world();
    let meta = meta("mallory");
    let id = meta.id.clone();
    let rec = Recorder::start(
        &w.auditor.recordings,
        meta,
        RecordingPolicy::default(),
        w.key.clone(),
    )
    .unwrap();
    let mut shell = rec.channel(0, ChannelKind::Shell { pty: pty() }).unwrap();
    shell
        .output("\u{9d}52;c;cHduZWQ=\u{7}\u{9b}6n plain".as_bytes())
        .unwrap();
    shell.finish().unwrap();
    rec.finish("the client disconnected");
    for format in [ExportFormat::Asciicast, ExportFormat::Json] {
        let mut out = Vec::new();
        w.auditor
            .export(&export_args(&id, format), &mut out)
            .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)),
            "{format:?}: {text:?}"
        );
        assert!(
            text.contains("\\u009d52;c;cHduZWQ=") && text.contains("\\u009b6n plain"),
            "{text}"
        );
        // Still JSON meaning the same characters.
        let last = text.lines().last().unwrap();
        let value: Value = serde_json::from_str(if format == ExportFormat::Json {
            &text
        } else {
            last
        })
        .unwrap();
        assert!(value.to_string().contains('\u{9d}'));
    }
}

/// Output hidden after it was shown: overwritten after `\r`, backspaced over, erased,
/// drawn on the alternate screen and cleared; each chunk a separate write.
const HIDDEN: [&[u8]; 5] = [
    b"$ run\r\nsecret1\r      \r",
    b"secret2\x08\x08\x08\x08\x08\x08\x08       \r",
    b"secret3\x1b[2K\r",
    b"\x1b[?1049h\x1b[Hsecret4\x1b[2J\x1b[?1049l",
    b"$ exit\r\n",
];

#[test]
fn text_shown_then_hidden_is_exported_and_found_rendered_and_raw() {
    let w = world();
    let meta = meta("mallory");
    let id = meta.id.clone();
    let index = SqliteStore::open_session_index(index_path(&w.auditor)).unwrap();
    let rec = Recorder::start(
        &w.auditor.recordings,
        meta.clone(),
        RecordingPolicy::default(),
        w.key.clone(),
    )
    .unwrap();
    index
        .insert_session(&meta.index_record(&rec.dir()))
        .unwrap();
    let mut shell = rec.channel(0, ChannelKind::Shell { pty: pty() }).unwrap();
    for chunk in HIDDEN {
        shell.output(chunk).unwrap();
    }
    shell.finish().unwrap();
    let summary = rec.finish("the client disconnected");
    index.end_session(&id, &summary.index_end()).unwrap();

    let (_, text) = w.run(|a, out| a.export(&export_args(&id, ExportFormat::Text), out));
    for raw in [false, true] {
        for n in 1..=4 {
            let secret = format!("secret{n}");
            assert!(text.lines().any(|l| l == secret), "{secret} in {text:?}");
            let mut args = grep_args(&format!("^{secret}$"));
            args.raw = raw;
            let (outcome, found) = w.run(|a, out| a.grep(&args, out));
            assert_eq!(outcome, Outcome::Ok, "{secret} (raw: {raw})");
            assert_eq!(found.lines().count(), 1, "{found}");
            assert!(found.starts_with(&id), "{found}");
        }
    }
    // Raw lines have no escape sequences either.
    let mut args = grep_args("\\x1b|\\[2K|1049");
    args.raw = true;
    assert_eq!(w.run(|a, out| a.grep(&args, out)).0, Outcome::Failed);
}

#[test]
fn a_session_without_an_end_is_active_only_if_the_bastion_has_it_live() {
    let w = world();
    let meta = meta("alice");
    let index = SqliteStore::open_session_index(index_path(&w.auditor)).unwrap();
    index
        .insert_session(&meta.index_record(&w.auditor.recordings.join("x")))
        .unwrap();
    // No bastion running: the person's session cannot be running either.
    let (_, table) = w.run(|a, out| a.list(&list_args(), out));
    assert!(
        table.contains("unfinished") && !table.contains("active"),
        "{table}"
    );
    let mut args = list_args();
    args.filter.active = true;
    let (_, table) = w.run(|a, out| a.list(&args, out));
    assert_eq!(table.trim(), "no sessions match");
    let info = |ending| super::LiveInfo {
        id: meta.id.clone(),
        user: meta.user.clone(),
        login: meta.login.clone(),
        target: meta.target.clone(),
        started_at: meta.started_at,
        ending,
    };
    let row = index.session(&meta.id).unwrap().unwrap();
    let live = super::Liveness::Known(vec![info(false)]);
    assert_eq!(live.status(&row), super::Status::Active);
    let live = super::Liveness::Known(vec![info(true)]);
    assert_eq!(live.status(&row), super::Status::Ending);
    assert_eq!(
        super::Liveness::Unknown.status(&row),
        super::Status::MaybeActive
    );
}

#[test]
fn a_pty_of_unknown_size_renders_as_80_columns() {
    // `ssh -tt` without a local terminal asks for a 0x0 pty.
    let w = world();
    let meta = meta("alice");
    let id = meta.id.clone();
    let rec = Recorder::start(
        &w.auditor.recordings,
        meta,
        RecordingPolicy::default(),
        w.key.clone(),
    )
    .unwrap();
    let pty = Some(Pty {
        term: "xterm".into(),
        cols: 0,
        rows: 0,
    });
    let mut shell = rec.channel(0, ChannelKind::Shell { pty }).unwrap();
    shell
        .output(b"hello world\rHELLO\r\nsecond line\r\n")
        .unwrap();
    shell.finish().unwrap();
    rec.finish("the client disconnected");
    let (_, text) = w.run(|a, out| a.export(&export_args(&id, ExportFormat::Text), out));
    assert_eq!(text, "hello world\nHELLO world\nsecond line\n");
}

#[test]
fn list_and_show_never_print_c1_controls_from_names_or_audit_values() {
    let w = world();
    let id = w.session("eve\u{9d}52;c;cHduZWQ=\u{7}");
    AuditLog::open(&w.auditor.audit_log)
        .unwrap()
        .append(
            AuditEvent::new("session.shell")
                .with("session", id.as_str())
                .with("pty", serde_json::json!({"term": "x\u{9b}6n\u{1b}[c"})),
        )
        .unwrap();
    let mut json = list_args();
    json.json = true;
    for (what, out) in [
        ("list", w.run(|a, out| a.list(&list_args(), out)).1),
        ("list --json", w.run(|a, out| a.list(&json, out)).1),
        ("show", w.run(|a, out| a.show(&id, out)).1),
    ] {
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "{what}: {out:?}"
        );
        assert!(out.contains("eve"), "{what}: {out}");
    }
}

/// The `sessions.db` these tests index in.
fn index_path(auditor: &Auditor) -> &Path {
    match &auditor.index {
        crate::IndexSource::File(path) => path,
        crate::IndexSource::Shared(_) => panic!("these tests index in sessions.db"),
    }
}
