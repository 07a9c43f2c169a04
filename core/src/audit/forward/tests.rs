use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use super::*;
use crate::audit::{AuditEvent, AuditLog};

fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn append(log: &AuditLog, n: usize) {
    for i in 0..n {
        log.append(AuditEvent::new("test.event").with("i", i as u64))
            .unwrap();
    }
}

#[test]
fn targets_parse_and_bad_ones_say_why() {
    assert_eq!(
        "stdout".parse::<ForwardTarget>().unwrap(),
        ForwardTarget::Stdout
    );
    assert_eq!(
        "file:audit.jsonl".parse::<ForwardTarget>().unwrap(),
        ForwardTarget::File(PathBuf::from("audit.jsonl"))
    );
    assert_eq!(
        "syslog+tcp://siem.example.com:6514"
            .parse::<ForwardTarget>()
            .unwrap(),
        ForwardTarget::Syslog {
            transport: Transport::Tcp,
            address: "siem.example.com:6514".to_owned()
        }
    );
    assert_eq!(
        "syslog+udp://[::1]:514".parse::<ForwardTarget>().unwrap(),
        ForwardTarget::Syslog {
            transport: Transport::Udp,
            address: "[::1]:514".to_owned()
        }
    );
    for bad in [
        "",
        "syslog://x:1",
        "syslog+tcp://host",
        "syslog+tcp://:514",
        "syslog+tcp://h:0",
        "file:",
    ] {
        let err = bad.parse::<ForwardTarget>().unwrap_err().to_string();
        assert!(
            err.contains("not understood") && !err.contains('\n'),
            "{bad}: {err}"
        );
    }
    assert_eq!(
        ForwardTarget::File(PathBuf::from("a.jsonl")).relative_to(Path::new("/etc/jitssh")),
        ForwardTarget::File(PathBuf::from("/etc/jitssh/a.jsonl"))
    );
}

#[test]
fn records_reach_a_file_once_each_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.log");
    let out = dir.path().join("siem.jsonl");
    let log = AuditLog::open(&log_path).unwrap();
    append(&log, 3);
    let forwarder = Forwarder::start(&log_path, ForwardTarget::File(out.clone()), "test").unwrap();
    wait_until("the first records", || log_lines(&out).len() == 3);
    append(&log, 2);
    wait_until("the next records", || log_lines(&out).len() == 5);
    assert_eq!(forwarder.stats().delivered.load(Ordering::Relaxed), 5);
    forwarder.shutdown();

    // Written while no forwarder runs: picked up from the cursor, nothing sent twice.
    append(&log, 1);
    let forwarder = Forwarder::start(&log_path, ForwardTarget::File(out.clone()), "test").unwrap();
    wait_until("the record written while stopped", || {
        log_lines(&out).len() == 6
    });
    forwarder.shutdown();
    assert_eq!(log_lines(&out), log_lines(&log_path));
}

#[test]
fn a_partly_written_line_waits_and_an_over_long_one_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("audit.log");
    let first = br#"{"seq":1,"time":"2026-12-01T00:00:00.000Z","event":"a","prev":"0","hash":"1"}"#;
    let mut content = first.to_vec();
    content.push(b'\n');
    content.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
    content.push(b'\n');
    content.extend_from_slice(br#"{"seq":3,"time":"2026-12-01T00:00:01.000Z","event":"c"#);
    std::fs::write(&log, &content).unwrap();

    let batch = read_batch(&log, Cursor::default()).unwrap();
    assert_eq!(batch.lines.len(), 1, "the torn last line is not sent");
    assert_eq!(batch.lines[0].json, first);
    assert_eq!(batch.dropped, 1);
    assert_eq!(
        batch.end.offset,
        (first.len() + 1 + MAX_LINE + 10 + 1) as u64
    );
    assert_eq!(batch.end.seq, 1);

    let rest = read_batch(&log, batch.end).unwrap();
    assert!(rest.lines.is_empty() && rest.end == batch.end);
}

#[test]
fn a_cursor_past_the_end_of_a_replaced_log_starts_over() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.log");
    let out = dir.path().join("siem.jsonl");
    let log = AuditLog::open(&log_path).unwrap();
    append(&log, 2);
    Cursor {
        offset: 1_000_000,
        seq: 99,
    }
    .save(&side_path(&log_path, ".forward"))
    .unwrap();
    let forwarder = Forwarder::start(&log_path, ForwardTarget::File(out.clone()), "test").unwrap();
    wait_until("the whole log", || log_lines(&out).len() == 2);
    forwarder.shutdown();
}

/// Reads RFC 6587 octet-counted frames until the connection ends.
fn read_frames(stream: TcpStream) -> Vec<String> {
    let mut reader = BufReader::new(stream);
    let mut frames = Vec::new();
    loop {
        let mut len = Vec::new();
        if reader.read_until(b' ', &mut len).unwrap_or(0) == 0 {
            return frames;
        }
        len.pop();
        let len: usize = std::str::from_utf8(&len).unwrap().parse().unwrap();
        let mut message = vec![0; len];
        if reader.read_exact(&mut message).is_err() {
            return frames;
        }
        frames.push(String::from_utf8(message).unwrap());
    }
}

fn seq_of(frame: &str) -> u64 {
    let json = &frame[frame.find('{').unwrap()..];
    serde_json::from_str::<serde_json::Value>(json).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

#[test]
fn syslog_tcp_frames_are_rfc5424_and_a_collector_restart_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("audit.log");
    let log = AuditLog::open(&log_path).unwrap();
    append(&log, 3);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let target = ForwardTarget::Syslog {
        transport: Transport::Tcp,
        address: address.to_string(),
    };
    let forwarder = Forwarder::start(&log_path, target, "ssh-ca").unwrap();

    // First collector: reads the first records, then goes away.
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(1500)))
        .unwrap();
    let first = read_frames(stream);
    drop(listener);
    assert!(!first.is_empty());
    let header = first[0].split(' ').collect::<Vec<_>>();
    assert_eq!(header[0], "<86>1", "authpriv.info, syslog version 1");
    assert!(header[1].ends_with('Z'), "{}", first[0]);
    assert_eq!(header[3], "ssh-ca");
    assert_eq!(header[4], std::process::id().to_string());
    assert_eq!(header[6], "-");

    // Written while no collector listens.
    append(&log, 4);
    std::thread::sleep(Duration::from_millis(300));
    let listener = TcpListener::bind(address).unwrap();
    let (stream, _) = listener.accept().unwrap();
    stream
        .set_read_timeout(Some(Duration::from_millis(2500)))
        .unwrap();
    let second = read_frames(stream);

    let mut seen: Vec<u64> = Vec::new();
    for seq in first.iter().chain(&second).map(|f| seq_of(f)) {
        if !seen.contains(&seq) {
            assert!(
                seen.last().is_none_or(|&last| seq > last),
                "out of order: {seq} after {seen:?}"
            );
            seen.push(seq);
        }
    }
    assert_eq!(seen, (1..=7).collect::<Vec<_>>(), "every record, in order");
    forwarder.shutdown();
}
