//! The benchmark of issue 12: the auditor library's work behind the web console's pages.
//!
//! * **Session list**: a session index filled with `--sessions` (100,000) sessions through
//!   the index API the bastion uses (`SessionMeta::index_record` + `insert_session` when a
//!   session starts, `end_session` when it ends), spread over people, targets, logins and a
//!   year; then [`Auditor::sessions`] (what `sessions list` and the console's list page
//!   call) for the first page of 50, newest first, without a filter and with each filter.
//!   Prints p50/p99 in ms.
//! * **Search**: `--text-mib` (1024) MiB of `.cast` files written by the real recorder
//!   (`jitssh_recording::Recorder`, so format, chain and seal are genuine), several hundred
//!   sessions of varied terminal output; then [`Auditor::grep`] (rendered text, and `--raw`)
//!   for a rare and a common word, in MiB/s of cast bytes, beside `rg` over the same `.cast`
//!   files in the same run.
//!
//! Not a test: it prints figures. Generated data lives in temporary directories (`TMPDIR`,
//! or `--index-dir`/`--rec-dir`) removed at the end.
//!
//! ```text
//! cargo bench -p jitssh-auditor --bench auditor -- [--sessions 100000] [--text-mib 1024] [--runs 50]
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use jitssh_auditor::Auditor;
use jitssh_auditor::args::{FilterArgs, GrepArgs};
use jitssh_core::keys::CaSigner;
use jitssh_core::store::{SessionEnd, SessionIndex, SqliteStore};
use jitssh_recording::{ChannelKind, Pty, Recorder, RecordingPolicy, SessionMeta};

const MIB: u64 = 1 << 20;
const PAGE: usize = 50;
const YEAR: u64 = 365 * 86_400;

struct Options {
    sessions: usize,
    text_mib: u64,
    runs: usize,
    index_dir: Option<PathBuf>,
    rec_dir: Option<PathBuf>,
}

fn main() {
    let mut o = Options {
        sessions: 100_000,
        text_mib: 1024,
        runs: 50,
        index_dir: None,
        rec_dir: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--bench" {
            continue; // what `cargo bench` passes
        }
        let value = args.next();
        let number = value.as_deref().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), number, value) {
            ("--sessions", Some(n), _) => o.sessions = n as usize,
            ("--text-mib", Some(n), _) => o.text_mib = n,
            ("--runs", Some(n), _) => o.runs = n.max(1) as usize,
            ("--index-dir", _, Some(v)) => o.index_dir = Some(v.into()),
            ("--rec-dir", _, Some(v)) => o.rec_dir = Some(v.into()),
            _ => {
                eprintln!(
                    "usage: auditor [--sessions N] [--text-mib N] [--runs N] [--index-dir DIR] [--rec-dir DIR]"
                );
                std::process::exit(2);
            }
        }
    }
    if o.sessions > 0 {
        session_list(&o);
    }
    if o.text_mib > 0 {
        search(&o);
    }
}

fn tempdir(parent: &Option<PathBuf>) -> tempfile::TempDir {
    match parent {
        Some(p) => tempfile::tempdir_in(p),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory")
}

fn auditor(root: &Path, recordings: &Path, index: &Path) -> Auditor {
    Auditor {
        recordings: recordings.to_path_buf(),
        index: index.to_path_buf().into(),
        audit_log: root.join("audit.jsonl"),
        ca_audit_log: None,
        seal_key: root.join("seal.pub"),
        // Nothing listens there: no bastion is running, as when an auditor works on copies.
        admin_socket: root.join("admin.sock"),
        retain: None,
        store: None,
    }
}

/// xorshift64*: reproducible data without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// Skewed towards small values (a few people and targets do most of the work).
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        self.below(a + 1)
    }
}

fn session_id(started_at: u64, rng: &mut Rng) -> String {
    let stamp = chrono::DateTime::from_timestamp(started_at as i64, 0)
        .unwrap_or_default()
        .format("%Y%m%dT%H%M%SZ");
    format!("{stamp}-{:08x}", rng.next() as u32)
}

const LOGINS: [&str; 5] = ["deploy", "root", "app", "postgres", "admin"];

fn session_list(o: &Options) {
    let scratch = tempdir(&o.index_dir);
    let index_path = scratch.path().join("sessions.db");
    let recordings = scratch.path().join("recordings");
    let index = SqliteStore::open_session_index(&index_path).expect("open the index");
    let now = jitssh_core::unix_now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let filled = Instant::now();
    for n in 0..o.sessions {
        // Evenly over the year before now, in start order (as the bastion inserts them).
        let started_at = now - YEAR + (n as u64 * YEAR) / o.sessions as u64;
        let person = format!("person{:03}", rng.skewed(200));
        let meta = SessionMeta {
            id: session_id(started_at, &mut rng),
            key_id: format!("{person}@corp"),
            user: person,
            cert_serial: n as u64 + 1,
            login: LOGINS[rng.skewed(LOGINS.len() as u64) as usize].into(),
            target: format!("host{:04}", rng.skewed(2000)),
            client_addr: format!(
                "192.0.2.{}:{}",
                rng.below(250) + 1,
                40_000 + rng.below(20_000)
            ),
            started_at,
        };
        let dir = jitssh_recording::session_dir(&recordings, &meta.id).expect("id");
        index
            .insert_session(&meta.index_record(&dir))
            .expect("insert");
        // One in a hundred has no end yet (live, or the bastion stopped mid-session).
        if rng.below(100) != 0 {
            let end = SessionEnd {
                ended_at: started_at + 30 + rng.below(4 * 3600),
                bytes_in: rng.below(1 << 20),
                bytes_out: rng.below(1 << 30),
                exit_status: Some(0),
                end_reason: "client closed".into(),
            };
            index.end_session(&meta.id, &end).expect("end");
        }
    }
    drop(index);
    let fill_secs = filled.elapsed().as_secs_f64();
    let db_bytes = std::fs::metadata(&index_path).map(|m| m.len()).unwrap_or(0);
    println!(
        "## Session list: {} sessions indexed in {fill_secs:.1} s ({:.0}/s), sessions.db {:.1} MiB",
        o.sessions,
        o.sessions as f64 / fill_secs,
        db_bytes as f64 / MIB as f64
    );
    println!(
        "Auditor::sessions(filter, Some({PAGE})), {} runs each, fresh Auditor per call (opens the index as a page would):",
        o.runs
    );
    println!("| query | rows | p50 ms | p99 ms |");
    println!("|---|---|---|---|");
    let auditor = auditor(scratch.path(), &recordings, &index_path);
    let day = |d: u64| format!("@{}", now - d * 86_400);
    let cases: Vec<(&str, FilterArgs)> = vec![
        ("no filter", FilterArgs::default()),
        (
            "person (common)",
            FilterArgs {
                user: Some("person000".into()),
                ..Default::default()
            },
        ),
        (
            "person (rare)",
            FilterArgs {
                user: Some("person199".into()),
                ..Default::default()
            },
        ),
        (
            "person (none)",
            FilterArgs {
                user: Some("nobody".into()),
                ..Default::default()
            },
        ),
        (
            "target (common)",
            FilterArgs {
                target: Some("host0000".into()),
                ..Default::default()
            },
        ),
        (
            "target (rare)",
            FilterArgs {
                target: Some("host1999".into()),
                ..Default::default()
            },
        ),
        (
            "login (common)",
            FilterArgs {
                login: Some("deploy".into()),
                ..Default::default()
            },
        ),
        (
            "login (rare)",
            FilterArgs {
                login: Some("admin".into()),
                ..Default::default()
            },
        ),
        (
            "time range (a week, 6 months ago)",
            FilterArgs {
                since: Some(day(187)),
                until: Some(day(180)),
                ..Default::default()
            },
        ),
        (
            "since 24h",
            FilterArgs {
                since: Some("24h".into()),
                ..Default::default()
            },
        ),
        (
            "live (--active)",
            FilterArgs {
                active: true,
                ..Default::default()
            },
        ),
        (
            "person + target + week",
            FilterArgs {
                user: Some("person003".into()),
                target: Some("host0001".into()),
                since: Some(day(187)),
                until: Some(day(180)),
                ..Default::default()
            },
        ),
    ];
    for (name, filter) in &cases {
        let mut times = Vec::with_capacity(o.runs);
        let mut rows = 0;
        for _ in 0..o.runs {
            let t = Instant::now();
            rows = auditor.sessions(filter, Some(PAGE)).expect("list").len();
            times.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (p50, p99) = percentiles(&mut times);
        println!("| {name} | {rows} | {p50:.2} | {p99:.2} |");
    }
}

fn percentiles(times: &mut [f64]) -> (f64, f64) {
    times.sort_by(f64::total_cmp);
    let at = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    (at(0.50), at(0.99))
}

/// Words of the generated output; `RARE` appears about once per 8 MiB, `COMMON` on about
/// one line in ten.
const RARE: &str = "quetzalcoatl";
const COMMON: &str = "timeout";
const WORDS: [&str; 24] = [
    "request",
    "worker",
    "cache",
    "status",
    "upstream",
    "connection",
    "deploy",
    "config",
    "reload",
    "ok",
    "done",
    "GET",
    "POST",
    "path",
    "user",
    "session",
    "bytes",
    "queue",
    "retry",
    "latency",
    "shard",
    "replica",
    "backup",
    "index",
];

/// One line of terminal output: log lines, `ls -l` lines, coloured prompts.
fn line(rng: &mut Rng, out: &mut String) {
    use std::fmt::Write as _;
    match rng.below(10) {
        0 => {
            let _ = write!(
                out,
                "\x1b[1;32mdeploy@host{:04}\x1b[0m:\x1b[1;34m/srv/app\x1b[0m$ tail -n 50 /var/log/app/{}.log",
                rng.below(2000),
                WORDS[rng.below(24) as usize]
            );
        }
        1 => {
            let _ = write!(
                out,
                "-rw-r--r-- 1 app app {:>9} Nov {:>2} {:02}:{:02} {}-{}.{}",
                rng.below(10_000_000),
                rng.below(30) + 1,
                rng.below(24),
                rng.below(60),
                WORDS[rng.below(24) as usize],
                rng.below(1000),
                ["log", "gz", "json", "txt"][rng.below(4) as usize]
            );
        }
        _ => {
            let level = ["INFO", "INFO", "INFO", "WARN", "DEBUG", "ERROR"][rng.below(6) as usize];
            let _ = write!(
                out,
                "2026-11-{:02}T{:02}:{:02}:{:02}.{:03}Z {level} {}[{}]: {} {} id={:016x} {}={}ms",
                rng.below(30) + 1,
                rng.below(24),
                rng.below(60),
                rng.below(60),
                rng.below(1000),
                WORDS[rng.below(24) as usize],
                rng.below(65_536),
                WORDS[rng.below(24) as usize],
                WORDS[rng.below(24) as usize],
                rng.next(),
                WORDS[rng.below(24) as usize],
                rng.below(5000)
            );
        }
    }
    if rng.below(10) == 0 {
        out.push_str(" upstream ");
        out.push_str(COMMON);
    }
    if rng.below(80_000) == 0 {
        out.push(' ');
        out.push_str(RARE);
    }
    out.push_str("\r\n");
}

fn cast_bytes(dir: &Path) -> (u64, usize) {
    let mut bytes = 0;
    let mut files = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read_dir").flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "cast") {
                bytes += entry.metadata().map(|m| m.len()).unwrap_or(0);
                files += 1;
            }
        }
    }
    (bytes, files)
}

fn search(o: &Options) {
    let scratch = tempdir(&o.rec_dir);
    let recordings = scratch.path().join("recordings");
    let index_path = scratch.path().join("sessions.db");
    let index = SqliteStore::open_session_index(&index_path).expect("open the index");
    let key = Arc::new(CaSigner::generate("bastion"));
    let policy = RecordingPolicy {
        max_session_bytes: u64::MAX,
        max_person_bytes: u64::MAX,
        min_free_bytes: 0,
        ..RecordingPolicy::default()
    };
    let target = o.text_mib * MIB;
    // Several hundred sessions: 1 GiB in sessions of about 2.5 MiB of casts each.
    let per_session = (target / 400).max(64 * 1024);
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let written = Instant::now();
    let mut total = 0u64;
    let mut sessions = 0usize;
    let mut text = String::new();
    while total < target {
        let person = format!("person{:03}", rng.skewed(50));
        let meta = SessionMeta {
            id: jitssh_recording::new_session_id(),
            key_id: format!("{person}@corp"),
            user: person,
            cert_serial: sessions as u64 + 1,
            login: "deploy".into(),
            target: format!("host{:04}", rng.skewed(200)),
            client_addr: "192.0.2.10:50022".into(),
            started_at: jitssh_core::unix_now(),
        };
        let recorder = Recorder::start(&recordings, meta.clone(), policy.clone(), Arc::clone(&key))
            .expect("start recording");
        index
            .insert_session(&meta.index_record(&recorder.dir()))
            .expect("index");
        let mut channel = recorder
            .channel(
                0,
                ChannelKind::Shell {
                    pty: Some(Pty {
                        term: "xterm-256color".into(),
                        cols: 200,
                        rows: 50,
                    }),
                },
            )
            .expect("channel");
        let mut session_bytes = 0u64;
        while session_bytes < per_session {
            // Reads of a few KiB, as a relay sees them.
            text.clear();
            while text.len() < 4096 {
                line(&mut rng, &mut text);
            }
            channel.output(text.as_bytes()).expect("output");
            session_bytes += text.len() as u64;
            if rng.below(64) == 0 {
                recorder.flush().expect("flush");
            }
        }
        channel.exit_status(0).expect("exit");
        channel.finish().expect("close channel");
        let summary = recorder.finish("client closed");
        assert!(summary.sealed, "sealed: {:?}", summary.failure);
        index
            .end_session(&meta.id, &summary.index_end())
            .expect("end");
        total += session_bytes;
        sessions += 1;
    }
    drop(index);
    let (bytes, files) = cast_bytes(&recordings);
    let mib = bytes as f64 / MIB as f64;
    println!(
        "\n## Search: {sessions} sessions recorded in {:.1} s; {files} .cast files, {mib:.0} MiB ({:.0} MiB of output written)",
        written.elapsed().as_secs_f64(),
        total as f64 / MIB as f64
    );
    let auditor = auditor(scratch.path(), &recordings, &index_path);
    println!("| search | matching lines | seconds | MiB/s of cast |");
    println!("|---|---|---|---|");
    for word in [RARE, COMMON] {
        for raw in [false, true] {
            let args = GrepArgs {
                pattern: word.into(),
                filter: FilterArgs::default(),
                ignore_case: false,
                ids: Vec::new(),
                raw,
            };
            let mut out = Counter(0);
            let t = Instant::now();
            auditor.grep(&args, &mut out).expect("grep");
            let secs = t.elapsed().as_secs_f64();
            let mode = if raw { "--raw" } else { "rendered" };
            println!(
                "| auditor grep {mode} `{word}` | {} | {secs:.2} | {:.0} |",
                out.0,
                mib / secs
            );
        }
        let t = Instant::now();
        let rg = Command::new("rg")
            .args(["--no-config", "-c", "--no-filename", "-g", "*.cast", word])
            .arg(&recordings)
            .output();
        let secs = t.elapsed().as_secs_f64();
        match rg {
            Ok(out) => {
                let count: u64 = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter_map(|l| l.trim().parse::<u64>().ok())
                    .sum();
                println!(
                    "| rg `{word}` over the .cast files | {count} (cast lines) | {secs:.2} | {:.0} |",
                    mib / secs
                );
            }
            Err(e) => println!("| rg `{word}` | not run: {e} | | |"),
        }
    }
}

/// Counts output lines (the matches) without keeping them.
struct Counter(u64);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.iter().filter(|&&b| b == b'\n').count() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
