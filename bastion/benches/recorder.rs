//! The recorder's cost per byte of output, in process, on one core.
//!
//! `cargo bench -p ssh-bastion --bench recorder`. Criterion prints bytes/s of output recorded:
//! 64 MiB in 32 KiB reads (the size the proxy hands over), as `head -c 64M /dev/zero`
//! (binary) and as text, from an exec channel without a pty (where bulk output is recorded
//! as size and SHA-256) and from a shell with a pty (always recorded in full, for
//! comparison). Each iteration is a whole session: start, channel, output, seal.
//!
//! The "through the session writer" cases go the way the bastion goes: the relay's tap
//! queues each read for the session's writer thread and waits for room in its 4 MiB queue,
//! the writer records; measured until the seal is written.

// criterion's macros generate public functions without docs.
#![allow(missing_docs)]

use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jitssh_core::keys::CaSigner;
use ssh_bastion::pump::Tap as _;
use ssh_bastion::recorded::{RecordingSetup, SessionRecording};
use ssh_bastion::recording::{ChannelKind, Pty, Quotas, Recorder, RecordingPolicy, SessionMeta};

const TOTAL: usize = 64 << 20;
const READ: usize = 32 << 10;

fn meta() -> SessionMeta {
    SessionMeta {
        id: ssh_bastion::recording::new_session_id(),
        user: "alice".into(),
        key_id: "alice".into(),
        cert_serial: 1,
        login: "deploy".into(),
        target: "web01".into(),
        client_addr: "127.0.0.1:1".into(),
        started_at: jitssh_core::unix_now(),
    }
}

/// Records `TOTAL` bytes of `chunk` repeated on a channel of `kind`.
fn session(root: &std::path::Path, key: &Arc<CaSigner>, kind: ChannelKind, chunk: &[u8]) {
    let rec =
        Recorder::start(root, meta(), RecordingPolicy::default(), key.clone()).expect("start");
    let mut ch = rec.channel(0, kind).expect("channel");
    for _ in 0..TOTAL / chunk.len() {
        ch.output(chunk).expect("output");
    }
    ch.finish().expect("finish");
    assert!(rec.finish("done").sealed);
}

/// Records `TOTAL` bytes of `chunk` through a session's writer thread, as the relay does.
fn queued_session(setup: &RecordingSetup, rt: &tokio::runtime::Runtime, chunk: &[u8]) {
    let rec = SessionRecording::start(setup, meta()).expect("start");
    let kind = ChannelKind::Exec {
        command: "head -c 64M /dev/zero".into(),
        pty: None,
    };
    let mut tap = rec.channel(0, kind).expect("channel").expect("a tap");
    let backlog = tap.backlog().expect("a queue");
    for _ in 0..TOTAL / chunk.len() {
        tap.output(chunk).expect("output");
        rt.block_on(backlog.room());
    }
    tap.finish().expect("finish");
    assert!(rec.finish("done").expect("summary").sealed);
}

fn recording(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = Arc::new(CaSigner::generate("bench"));
    let zeros = vec![0u8; READ];
    let text: Vec<u8> = b"2026-11-23T18:00:00Z web01 app[42]: request served in 3 ms\n"
        .iter()
        .copied()
        .cycle()
        .take(READ)
        .collect();
    let exec = || ChannelKind::Exec {
        command: "head -c 64M /dev/zero".into(),
        pty: None,
    };
    let shell = || ChannelKind::Shell {
        pty: Some(Pty {
            term: "xterm".into(),
            cols: 80,
            rows: 24,
        }),
    };
    let mut group = c.benchmark_group("record 64 MiB");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(TOTAL as u64));
    group.bench_function("exec, no pty, zeros", |b| {
        b.iter(|| session(dir.path(), &key, exec(), &zeros))
    });
    group.bench_function("exec, no pty, text", |b| {
        b.iter(|| session(dir.path(), &key, exec(), &text))
    });
    group.bench_function("shell, pty, text", |b| {
        b.iter(|| session(dir.path(), &key, shell(), &text))
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // The bench's temporary disk may be small: no free-space floor.
    let policy = RecordingPolicy {
        min_free_bytes: 0,
        ..RecordingPolicy::default()
    };
    let index: Arc<dyn jitssh_core::store::SessionStore> = Arc::new(
        jitssh_core::store::SqliteStore::open(&dir.path().join("sessions.db")).expect("index"),
    );
    let setup = RecordingSetup {
        uploads: None,
        root: dir.path().to_path_buf(),
        quotas: Arc::new(Quotas::new(dir.path(), &policy)),
        policy,
        seal_key: key.clone(),
        ends: Arc::new(
            ssh_bastion::index_ends::IndexEnds::start(index.clone()).expect("index writer"),
        ),
        index,
        queue_bytes: ssh_bastion::recorded::DEFAULT_RECORDING_QUEUE,
    };
    group.bench_function("exec, no pty, zeros, through the session writer", |b| {
        b.iter(|| queued_session(&setup, &rt, &zeros))
    });
    group.bench_function("exec, no pty, text, through the session writer", |b| {
        b.iter(|| queued_session(&setup, &rt, &text))
    });
    group.finish();
}

criterion_group!(benches, recording);
criterion_main!(benches);
