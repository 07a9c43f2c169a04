//! The auditor's live commands (`sessions watch`, `kill`, and `prune`, which keeps live
//! sessions) against the bastion's real admin socket: the two sides of
//! `jitssh_auditor::protocol`, with recordings made by the real recorder.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jitssh_core::audit::{AuditEvent, AuditLog};
use jitssh_core::keys::CaSigner;
use jitssh_core::store::{SessionIndex, SqliteStore};

use ssh_bastion::admin::{self, AdminSettings, LiveInfo, LiveSessions};
use ssh_bastion::auditor::args::*;
use ssh_bastion::auditor::{Auditor, AuditorError, Outcome};
use ssh_bastion::recording::{
    ChannelKind, Pty, Recorder, RecordingPolicy, SessionMeta, new_session_id,
};

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
        let (index, rec) = self.start(&meta);
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

    /// A session started: the index with its row, and its recorder.
    fn start(&self, meta: &SessionMeta) -> (SqliteStore, Recorder) {
        let jitssh_auditor::IndexSource::File(path) = &self.auditor.index else {
            panic!("these tests index in sessions.db");
        };
        let index = SqliteStore::open_session_index(path).unwrap();
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
        (index, rec)
    }

    /// The bastion's admin socket for this world's auditor, served on a runtime of
    /// `workers` threads: the runtime, the live registry behind the socket, the server (keep
    /// all three while the test uses the socket).
    fn serve_admin(
        &self,
        workers: usize,
    ) -> (
        tokio::runtime::Runtime,
        Arc<LiveSessions>,
        admin::AdminServer,
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .enable_all()
            .build()
            .unwrap();
        let live = LiveSessions::new();
        let audit =
            ssh_bastion::audit::Audit::new(AuditLog::open(&self.auditor.audit_log).unwrap());
        let settings = AdminSettings {
            socket: self.auditor.admin_socket.clone(),
            allow_uids: Vec::new(),
        };
        let server = runtime
            .block_on(async { admin::serve(&settings, live.clone(), audit) })
            .unwrap();
        (runtime, live, server)
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

/// Sets a file's modification time.
fn set_mtime(path: &Path, unix: u64) {
    let file = fs::File::options()
        .write(true)
        .open(path)
        .or_else(|_| fs::File::open(path))
        .unwrap();
    file.set_modified(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(unix))
        .unwrap();
}

/// Ages a recording by setting its files' modification times `days` back.
fn age(dir: &Path, days: u64) {
    let then = jitssh_core::unix_now() - days * 86_400;
    for entry in fs::read_dir(dir).unwrap() {
        set_mtime(&entry.unwrap().path(), then);
    }
    set_mtime(dir, then);
}

#[test]
fn prune_deletes_old_recordings_audited_and_keeps_live_ones() {
    let mut w = world();
    let old = w.session("alice");
    let live_old = w.session("bob");
    let recent = w.session("carol");
    age(&w.dir(&old), 100);
    age(&w.dir(&live_old), 100);
    w.auditor.retain = Some(Duration::from_secs(90 * 86_400));

    let (_runtime, live, _server) = w.serve_admin(1);
    let _registration = live.register(LiveInfo {
        id: live_old.clone(),
        user: "bob".into(),
        login: "deploy".into(),
        target: "web01".into(),
        started_at: 1,
        ending: false,
    });

    let args = PruneArgs {
        dry_run: true,
        retain: None,
    };
    let (_, text) = w.run(|a, out| a.prune(&args, out));
    assert!(text.contains(&format!("would prune {old}")), "{text}");
    assert!(text.contains(&format!("kept   {live_old}: live")), "{text}");
    assert!(!text.contains(&recent), "{text}");
    assert!(w.dir(&old).exists(), "dry run deletes nothing");

    let args = PruneArgs {
        dry_run: false,
        retain: None,
    };
    let (_, text) = w.run(|a, out| a.prune(&args, out));
    assert!(text.contains(&format!("pruned {old}")), "{text}");
    assert!(!w.dir(&old).exists());
    assert!(w.dir(&live_old).exists() && w.dir(&recent).exists());
    let log = fs::read_to_string(&w.auditor.audit_log).unwrap();
    let record = log
        .lines()
        .find(|l| l.contains("recording.pruned"))
        .unwrap_or_else(|| panic!("no recording.pruned in {log}"));
    assert!(
        record.contains(&old) && record.contains("chain_last_hash"),
        "{record}"
    );
    let (_, table) = w.run(|a, out| a.list(&list_args(), out));
    let row = table.lines().find(|l| l.starts_with(&old)).unwrap();
    assert!(row.ends_with("pruned"), "{row}");
    let err = w.auditor.replay(&ReplayArgs {
        id: old.clone(),
        speed: 1.0,
        max_idle: None,
        from: None,
        channel: None,
    });
    assert!(err.unwrap_err().to_string().contains("gone"));

    w.auditor.retain = None;
    let err = w.auditor.prune(&args, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("no retention set"), "{err}");
}

#[test]
fn watch_follows_a_live_session_and_kill_ends_it() {
    let w = world();
    let (runtime, live, _server) = w.serve_admin(2);
    let registration = Arc::new(live.register(LiveInfo {
        id: "20261123T180000Z-0a1b2c3d".into(),
        user: "alice".into(),
        login: "root".into(),
        target: "web01".into(),
        started_at: 1,
        ending: false,
    }));
    // The session: publishes output until killed.
    let session = registration.clone();
    let ended = runtime.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        loop {
            tokio::select! {
                request = session.kill_requested() => {
                    let message = request.message();
                    session.close();
                    request.done();
                    return message;
                }
                _ = tick.tick() => session.publish(b"tick\r\n"),
            }
        }
    });
    let watcher = {
        let auditor = w.auditor.clone();
        std::thread::spawn(move || {
            let mut out = Vec::new();
            let outcome = auditor.watch("20261123T180000Z-0a1b2c3d", &mut out);
            (outcome.map_err(|e| e.to_string()), out)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    let (_, text) = w.run(|a, out| a.kill("20261123T180000Z-0a1b2c3d", "policy check", out));
    assert!(text.contains("ended"), "{text}");
    let message = runtime.block_on(ended).unwrap();
    assert_eq!(message, "ended by an auditor: policy check");
    let (outcome, seen) = watcher.join().unwrap();
    assert_eq!(outcome.unwrap(), Outcome::Ok);
    assert!(String::from_utf8(seen).unwrap().contains("tick\r\n"));
    let log = fs::read_to_string(&w.auditor.audit_log).unwrap();
    assert!(log.contains("\"event\":\"session.watch\""), "{log}");
    assert!(
        log.contains("\"event\":\"session.kill\"") && log.contains("policy check"),
        "{log}"
    );

    let err = w
        .auditor
        .kill("20261123T180000Z-0a1b2c3d", "again", &mut Vec::new());
    assert!(err.unwrap_err().to_string().contains("no live session"));
    drop(_server);
    let err = w
        .auditor
        .watch("20261123T180000Z-0a1b2c3d", &mut Vec::new());
    assert!(err.unwrap_err().to_string().contains("not running"));
}

/// The auditor tells, by type, a bastion that is not running from one that refuses.
#[test]
fn the_auditor_tells_a_refusal_from_a_bastion_not_running() {
    use ssh_bastion::auditor::AdminFailure;
    let w = world();
    let err = w
        .auditor
        .watch("20261123T180000Z-0a1b2c3d", &mut Vec::new());
    assert!(
        matches!(
            err,
            Err(AuditorError::Admin {
                why: AdminFailure::NotRunning(_),
                ..
            })
        ),
        "{err:?}"
    );
    let (_runtime, _live, _server) = w.serve_admin(1);
    let err = w
        .auditor
        .kill("20261123T180000Z-0a1b2c3d", "why", &mut Vec::new());
    match err {
        Err(AuditorError::Admin {
            why: AdminFailure::Refused(why),
            ..
        }) => assert!(why.contains("no live session"), "{why}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// A session whose person has left is listed as ending while the bastion seals it: `verify`
/// forgives what the sealing writer leaves (its temporary files), `sessions list` says
/// "ending" and `--active` leaves it out, it can no longer be killed. Once unregistered the
/// same leftovers are what a crash mid-seal left, and `verify` fails naming them.
#[test]
fn a_session_being_sealed_is_ending_not_damaged_and_a_crash_mid_seal_is_named() {
    let w = world();
    let meta = meta("dave");
    let id = meta.id.clone();
    let (_index, rec) = w.start(&meta);
    let mut shell = rec.channel(0, ChannelKind::Shell { pty: pty() }).unwrap();
    shell.output(b"$ exit\r\n").unwrap();
    shell.finish().unwrap();
    // Caught as the bastion seals: the signature in place, the seal under its temporary name,
    // the end not yet in the index.
    let dir = rec.finish("the client disconnected").dir;
    fs::rename(dir.join("seal.json"), dir.join(".seal.json.tmp")).unwrap();

    let (_runtime, live, _server) = w.serve_admin(1);
    let registration = live.register(LiveInfo {
        id: id.clone(),
        user: "dave".into(),
        login: "deploy".into(),
        target: "web01".into(),
        started_at: meta.started_at,
        ending: false,
    });
    let (_, ended) = live.subscribe(&id).unwrap();
    registration.ending();
    assert!(*ended.borrow(), "watchers are told the session ended");

    let verify = VerifyArgs {
        ids: vec![id.clone()],
        key: None,
    };
    let (outcome, text) = w.run(|a, out| a.verify(&verify, out));
    assert_eq!(outcome, Outcome::Ok, "{text}");
    assert!(
        text.contains("UNSEALED") && text.contains("the session is ending"),
        "{text}"
    );
    let (_, table) = w.run(|a, out| a.list(&list_args(), out));
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("ending") && !row.contains("active"), "{row}");
    let active = ListArgs {
        filter: FilterArgs {
            active: true,
            ..FilterArgs::default()
        },
        ..list_args()
    };
    let (_, table) = w.run(|a, out| a.list(&active, out));
    assert_eq!(table.trim(), "no sessions match");
    let err = w.auditor.kill(&id, "too late", &mut Vec::new());
    assert!(
        err.unwrap_err().to_string().contains("already being ended"),
        "an ending session cannot be killed"
    );

    // The bastion went away mid-seal: nobody is completing it.
    registration.close();
    let (outcome, text) = w.run(|a, out| a.verify(&verify, out));
    assert_eq!(outcome, Outcome::Failed, "{text}");
    assert!(
        text.contains(".seal.json.tmp: unexpected file") && !text.contains("ending"),
        "{text}"
    );
    let (_, table) = w.run(|a, out| a.list(&list_args(), out));
    let row = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(row.contains("unfinished"), "{row}");
}
