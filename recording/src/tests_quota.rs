//! Recording quotas on disk: a pty channel past the session quota, a disk below its floor,
//! what is no longer stored, and a recording that still verifies.

use std::sync::Arc;

use serde_json::Value;

use super::tests::{cast_output, events_of, start, verify};
use super::*;

fn pty_shell() -> ChannelKind {
    ChannelKind::Shell {
        pty: Some(Pty {
            term: "xterm".into(),
            cols: 80,
            rows: 24,
        }),
    }
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn a_pty_channel_past_the_session_quota_keeps_size_and_digest() {
    let root = tempfile::tempdir().unwrap();
    let policy = RecordingPolicy {
        max_session_bytes: 64 * 1024,
        record_input: true,
        ..Default::default()
    };
    let (rec, key) = start(root.path(), policy);
    let mut ch = rec.channel(0, pty_shell()).unwrap();
    ch.input(b"typed-before\r").unwrap();
    let data: Vec<u8> = (0..20_000)
        .flat_map(|i| format!("line {i}\r\n").into_bytes())
        .collect();
    for piece in data.chunks(4096) {
        ch.output(piece).unwrap();
    }
    ch.input(b"typed-after\r").unwrap();
    ch.resize(100, 40).unwrap();
    rec.flush().unwrap();
    let hit = rec.take_quota().expect("the quota was reached");
    assert_eq!((hit.kind, hit.limit), (QuotaKind::Session, 64 * 1024));
    assert!(rec.take_quota().is_none(), "handed over once");
    let summary = ch.finish().unwrap();
    assert_eq!(
        summary.bulk_out.as_ref().map(|b| b.reason),
        Some(BulkReason::Quota)
    );
    assert_eq!(summary.bytes_out, data.len() as u64);
    assert_eq!(summary.sha256_out, Some(sha256_hex(&data)));
    let session = rec.finish("client closed");
    let dir = &session.dir;

    let stored: u64 = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert!(stored < 64 * 1024 + 8 * 1024, "{stored} bytes stored");
    let cast = cast_output(&dir.join("chan-1.cast"));
    assert!(
        cast.contains("recording quota of 65536 bytes is reached"),
        "{cast}"
    );
    assert!(cast.contains(&sha256_hex(&data)));
    assert!(!cast.contains("line 19999"));
    let all = std::fs::read_to_string(dir.join("chan-1.cast")).unwrap();
    assert!(all.contains("typed-before") && !all.contains("typed-after"));
    assert!(!all.contains("[100,40]") && !all.contains("\"100x40\""));
    let quota = events_of(dir, "recording.quota");
    assert_eq!(quota.len(), 1);
    assert_eq!(quota[0]["quota"], Value::from("session"));
    let report = verify(dir, &key);
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.bulk.len(), 1, "{report}");
}

#[test]
fn below_the_disk_floor_a_running_session_stops_storing_content() {
    let root = tempfile::tempdir().unwrap();
    let policy = RecordingPolicy {
        min_free_bytes: u64::MAX,
        ..Default::default()
    };
    let quotas = Arc::new(Quotas::new(root.path(), &policy));
    assert!(quotas.admit().is_err(), "no new session");
    let (rec, key) = start(root.path(), policy);
    rec.account_to(quotas.account("alice"));
    let mut ch = rec.channel(0, pty_shell()).unwrap();
    ch.output(b"not stored\r\n").unwrap();
    let hit = rec.take_quota().expect("hit");
    assert_eq!(hit.kind, QuotaKind::Disk);
    ch.finish().unwrap();
    let session = rec.finish("client closed");
    let cast = cast_output(&session.dir.join("chan-1.cast"));
    assert!(!cast.contains("not stored\r\n"), "{cast}");
    assert!(cast.contains("less than"), "{cast}");
    assert!(verify(&session.dir, &key).is_intact());
}
