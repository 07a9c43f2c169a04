//! Bulk output of commands without a pty, end to end on disk: the switch on the limit and
//! on binary output, digests checked with the real `sha256sum`, casts played by the real
//! `asciinema`, terminal channels that never switch, verification and tampering.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

use super::seal::write_seal;
use super::tests::{
    asciinema_cat, events_of, json_lines, problems, rewrite, sha256sum, start, verify,
};
use super::*;

fn exec(command: &str) -> ChannelKind {
    ChannelKind::Exec {
        command: command.into(),
        pty: None,
    }
}

fn with_limit(limit: u64) -> RecordingPolicy {
    RecordingPolicy {
        exec_output_limit: limit,
        ..Default::default()
    }
}

/// `sha256sum` of `data`, through a file in `dir`.
fn sha256sum_of(dir: &Path, data: &[u8]) -> String {
    let path = dir.join("copy-of-the-output");
    fs::write(&path, data).unwrap();
    sha256sum(&path)
}

/// Cast line numbers of the recorder's notes, as the journal names them.
fn note_lines(dir: &Path) -> BTreeSet<u64> {
    ["output.bulk", "output.bulk.end"]
        .iter()
        .flat_map(|kind| events_of(dir, kind))
        .map(|e| e["line"].as_u64().unwrap())
        .collect()
}

/// The `o` text of a cast without the notes: the output as recorded.
fn output_without_notes(dir: &Path, cast: &str) -> String {
    let notes = note_lines(dir);
    json_lines(&dir.join(cast))
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(i, e)| e[1] == "o" && !notes.contains(&(*i as u64 + 1)))
        .map(|(_, e)| e[2].as_str().unwrap().to_owned())
        .collect()
}

/// The `o` text of a cast line (1-based).
fn cast_line(dir: &Path, cast: &str, line: u64) -> String {
    json_lines(&dir.join(cast))[line as usize - 1][2]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn text_past_the_limit_is_kept_as_size_and_digest() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), with_limit(4096));
    let mut ch = rec.channel(0, exec("cat /var/log/app.log")).unwrap();
    let data: Vec<u8> = (0..3000)
        .flat_map(|i| format!("log line {i}\n").into_bytes())
        .collect();
    for piece in data.chunks(1000) {
        ch.output(piece).unwrap();
    }
    ch.exit_status(0).unwrap();
    let summary = ch.finish().unwrap();
    let digest = sha256sum_of(root.path(), &data);
    assert_eq!(
        summary.bulk_out,
        Some(BulkSwitch {
            reason: BulkReason::Limit,
            offset: 4096
        })
    );
    assert_eq!(summary.bytes_out, data.len() as u64);
    assert_eq!(summary.sha256_out.as_deref(), Some(digest.as_str()));
    assert_eq!((summary.bulk_err, summary.sha256_err), (None, None));

    let session = rec.finish("client closed");
    let dir = &session.dir;
    let switch = events_of(dir, "output.bulk");
    assert_eq!(switch.len(), 1);
    assert_eq!(
        (
            &switch[0]["seq"],
            &switch[0]["stream"],
            &switch[0]["reason"]
        ),
        (
            &Value::from(1),
            &Value::from("stdout"),
            &Value::from("limit")
        )
    );
    assert_eq!(switch[0]["offset"], 4096);
    assert_eq!(switch[0]["file"], "chan-1.cast");
    let end = events_of(dir, "output.bulk.end");
    assert_eq!(end[0]["bytes"], data.len() as u64);
    assert_eq!(end[0]["sha256"], digest.as_str());

    // The cast holds the first 4096 bytes exactly, then the notes.
    assert_eq!(
        output_without_notes(dir, "chan-1.cast").as_bytes(),
        &data[..4096]
    );
    let note = cast_line(dir, "chan-1.cast", switch[0]["line"].as_u64().unwrap());
    assert!(note.contains("from byte 4096 on"), "{note}");
    let last = cast_line(dir, "chan-1.cast", end[0]["line"].as_u64().unwrap());
    let more = data.len() - 4096;
    assert!(
        last.contains(&format!("continued for {more} bytes"))
            && last.contains(&format!(
                "all {} bytes of stdout have SHA-256 {digest}",
                data.len()
            )),
        "{last}"
    );
    let cast = dir.join("chan-1.cast");
    assert!(fs::metadata(&cast).unwrap().len() < 8192, "cast too big");

    let (ok, printed) = asciinema_cat(&cast);
    assert!(ok, "asciinema cat failed: {printed}");
    assert!(printed.starts_with("log line 0\n"), "{printed}");
    assert!(
        printed.trim_end().ends_with(&format!("{digest}]")),
        "{printed}"
    );

    let report = verify(dir, &key);
    assert!(report.is_intact(), "{report}");
    assert_eq!(
        report.bulk,
        [BulkStatus {
            seq: 1,
            stream: "stdout".into(),
            reason: BulkReason::Limit,
            offset: 4096,
            bytes: Some(data.len() as u64),
            sha256: Some(digest.clone()),
        }]
    );
    assert!(
        report
            .to_string()
            .contains(&format!("all {} bytes have SHA-256 {digest}", data.len())),
        "{report}"
    );
    let manifest = report.manifest.unwrap();
    assert_eq!(manifest.channels[0].sha256_out.as_deref(), Some(&*digest));
}

#[test]
fn binary_output_switches_at_once_and_stderr_stays_readable() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec
        .channel(0, exec("sh -c 'echo header; head -c 4M /dev/zero'"))
        .unwrap();
    let mut data = b"header\n".to_vec();
    data.resize(4 << 20, 0);
    // The header and the first zeros arrive in one read.
    for piece in data.chunks(32 << 10) {
        ch.output(piece).unwrap();
    }
    ch.stderr(b"head: warning: about to end\n").unwrap();
    ch.exit_status(0).unwrap();
    // Not finished explicitly: the session closes the channel and writes the end note.
    drop(ch);
    let session = rec.finish("client closed");
    let dir = &session.dir;
    let summary = &session.channels[0];
    let digest = sha256sum_of(root.path(), &data);
    assert_eq!(
        summary.bulk_out,
        Some(BulkSwitch {
            reason: BulkReason::Binary,
            offset: 7
        })
    );
    assert_eq!(summary.sha256_out.as_deref(), Some(digest.as_str()));
    assert_eq!(summary.bulk_err, None, "stderr is text, under the limit");
    assert_eq!(summary.bytes_err, 28);

    let text = output_without_notes(dir, "chan-1.cast");
    assert_eq!(text, "header\nhead: warning: about to end\n");
    let all: u64 = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(all < 20_000, "the zeros were stored: {all} bytes");
    let (ok, printed) = asciinema_cat(&dir.join("chan-1.cast"));
    assert!(ok, "asciinema cat failed: {printed}");
    assert!(
        printed.contains("stdout is binary; from byte 7 on"),
        "{printed}"
    );
    assert!(printed.contains(&digest), "{printed}");
    let report = verify(dir, &key);
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.bulk[0].reason, BulkReason::Binary);
}

#[test]
fn terminal_channels_never_switch() {
    let pty = Some(Pty {
        term: "xterm".into(),
        cols: 80,
        rows: 24,
    });
    for kind in [
        ChannelKind::Exec {
            command: "top".into(),
            pty: pty.clone(),
        },
        ChannelKind::Shell { pty },
        ChannelKind::Shell { pty: None },
    ] {
        let root = tempfile::tempdir().unwrap();
        let (rec, key) = start(root.path(), with_limit(1024));
        let mut ch = rec.channel(0, kind.clone()).unwrap();
        let mut data = vec![b'x'; 5000];
        data.extend_from_slice(&[0u8; 5000]);
        for piece in data.chunks(1000) {
            ch.output(piece).unwrap();
        }
        let summary = ch.finish().unwrap();
        assert_eq!((summary.bulk_out, summary.sha256_out), (None, None));
        let dir = rec.finish("client closed").dir;
        assert!(events_of(&dir, "output.bulk").is_empty(), "{kind:?}");
        let text = super::tests::cast_output(&dir.join("chan-1.cast"));
        assert_eq!(text.as_bytes(), data, "{kind:?}");
        assert!(verify(&dir, &key).is_intact());
    }
}

#[test]
fn small_exec_output_is_recorded_as_before() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec.channel(0, exec("uptime")).unwrap();
    ch.output(b" 10:00:00 up 5 days\n").unwrap();
    let summary = ch.finish().unwrap();
    assert_eq!((summary.bulk_out, summary.sha256_out), (None, None));
    let dir = rec.finish("client closed").dir;
    let events = fs::read_to_string(dir.join("events.jsonl")).unwrap();
    assert!(!events.contains("bulk"), "{events}");
    let seal = fs::read_to_string(dir.join("seal.json")).unwrap();
    assert!(!seal.contains("bulk"), "{seal}");
    let report = verify(&dir, &key);
    assert!(report.is_intact() && report.bulk.is_empty(), "{report}");
}

/// A sealed session whose stdout went bulk at byte 7.
fn bulk_session(
    root: &Path,
) -> (
    std::path::PathBuf,
    std::sync::Arc<jitssh_core::keys::CaSigner>,
) {
    let (rec, key) = start(root, RecordingPolicy::default());
    let mut ch = rec.channel(0, exec("cat /bin/ls")).unwrap();
    ch.output(b"header\n").unwrap();
    ch.output(&[0u8; 4096]).unwrap();
    ch.finish().unwrap();
    let dir = rec.finish("client closed").dir;
    (dir, key)
}

#[test]
fn tampering_with_the_digest_is_detected() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = bulk_session(root.path());
    let digest = events_of(&dir, "output.bulk.end")[0]["sha256"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = "0".repeat(64);

    // In the seal: its signature no longer matches.
    let seal = dir.join("seal.json");
    let original_seal = fs::read_to_string(&seal).unwrap();
    fs::write(&seal, original_seal.replace(&digest, &forged)).unwrap();
    let report = verify(&dir, &key);
    assert!(
        matches!(&report.seal, SealStatus::Invalid(why) if why.to_string().contains("seal altered")),
        "{report}"
    );
    fs::write(&seal, &original_seal).unwrap();

    // In the journal: the chain names the lines.
    let events = dir.join("events.jsonl");
    let original_events = fs::read(&events).unwrap();
    let mut altered = Vec::new();
    rewrite(&events, |l| {
        for (i, line) in l.iter_mut().enumerate() {
            if line.contains(&digest) {
                *line = line.replace(&digest, &forged);
                altered.push(i + 1);
            }
        }
    });
    // output.bulk.end and channel.close, one after the other; and the journal no longer
    // agrees with the seal.
    let (a, b) = (altered[0], altered[1]);
    assert_eq!((altered.len(), a + 1), (2, b));
    let found = problems(&verify(&dir, &key));
    assert_eq!(found[0], format!("events.jsonl lines {a}-{b}: altered"));
    assert!(
        found[1].contains(&format!("SHA-256 {forged} says the journal")),
        "{found:?}"
    );
    assert_eq!(found.len(), 2, "{found:?}");
    fs::write(&events, &original_events).unwrap();

    // In the cast's end note.
    let notes = note_lines(&dir);
    let last = *notes.iter().max().unwrap();
    rewrite(&dir.join("chan-1.cast"), |l| {
        l[last as usize - 1] = l[last as usize - 1].replace(&digest, &forged);
    });
    assert_eq!(
        problems(&verify(&dir, &key)),
        [format!("chan-1.cast line {last}: altered")]
    );
}

#[test]
fn a_seal_disagreeing_with_the_journal_is_a_mismatch() {
    let root = tempfile::tempdir().unwrap();
    let (dir, key) = bulk_session(root.path());
    assert!(verify(&dir, &key).is_intact());
    // Whoever holds the key re-signs a seal with another digest: the chained journal still
    // tells the truth.
    let mut manifest: Manifest =
        serde_json::from_slice(&fs::read(dir.join("seal.json")).unwrap()).unwrap();
    manifest.channels[0].sha256_out = Some("0".repeat(64));
    write_seal(&dir, &manifest, &key).unwrap();
    let report = verify(&dir, &key);
    assert_eq!(report.seal, SealStatus::Sealed);
    let found = problems(&report);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0]
            .starts_with("events.jsonl: seal mismatch (channel 1 stdout: 4103 bytes with SHA-256"),
        "{found:?}"
    );
    // And a seal that forgets the switch.
    manifest.channels[0].bulk_out = None;
    write_seal(&dir, &manifest, &key).unwrap();
    assert!(
        problems(&verify(&dir, &key))
            .iter()
            .any(|p| p.contains("the journal says channel 1 stdout switched to bulk")),
    );
}

#[test]
fn a_crash_in_bulk_mode_leaves_the_switch_on_record() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), RecordingPolicy::default());
    let mut ch = rec.channel(0, exec("cat /dev/urandom")).unwrap();
    ch.output(&[0u8; 1000]).unwrap();
    let dir = rec.dir();
    drop(ch);
    drop(rec); // not finished: written out, unsealed
    let report = verify(&dir, &key);
    assert_eq!(report.seal, SealStatus::Unsealed);
    assert!(report.problems.is_empty(), "{report}");
    assert_eq!(report.bulk.len(), 1);
    assert_eq!((report.bulk[0].offset, report.bulk[0].bytes), (0, None));
    assert!(report.to_string().contains("lost"), "{report}");
    let note = cast_line(&dir, "chan-1.cast", 2);
    assert!(note.contains("stdout is binary"), "{note}");
}

#[test]
fn the_limit_comes_from_the_policy_and_zero_keeps_only_notes() {
    let root = tempfile::tempdir().unwrap();
    let (rec, key) = start(root.path(), with_limit(0));
    let mut ch = rec.channel(0, exec("echo hi")).unwrap();
    ch.output(b"hi\n").unwrap();
    ch.finish().unwrap();
    let dir = rec.finish("client closed").dir;
    assert_eq!(output_without_notes(&dir, "chan-1.cast"), "");
    let start = events_of(&dir, "session.start");
    assert_eq!(start[0]["policy"]["exec_output_limit"], 0);
    assert!(verify(&dir, &key).is_intact());
}
