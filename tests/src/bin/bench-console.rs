//! bench-console: server time of the auditors' web console's session list with many indexed
//! sessions (issue 12's benchmark: 100,000 sessions, first page under 50 ms server time).
//!
//! A real `ssh-bastion serve` with `[web]` on loopback, its session index pre-filled through
//! the index API the bastion itself uses (`SessionMeta::index_record`, `insert_session`,
//! `end_session`) with `--sessions` older sessions over the past year, then `--real` real
//! sessions run through the bastion with `ssh` (so the first page is 50 real recordings, each
//! verified for the page's integrity column, as an auditor's first page would be). An auditor
//! signs in through `ssh web@bastion` and the one-time link; each page is fetched `--runs`
//! times with `curl`, and the server time is curl's time to first byte minus its TLS
//! handshake. Run with `TMPDIR=/dev/shm` to fill the index without an fsync per row on disk:
//!
//! ```text
//! cargo build --release --workspace
//! TMPDIR=/dev/shm JITSSH_BIN_DIR=target/release ./target/release/bench-console --sessions 100000
//! ```

use std::process::Command;
use std::time::Instant;

use jitssh_core::store::{SessionEnd, SessionIndex, SqliteStore};
use jitssh_recording::SessionMeta;
use jitssh_tests::{Bastion, Scratch, keygen, run, target, user};

const YEAR: u64 = 365 * 86_400;

struct Options {
    sessions: usize,
    real: usize,
    runs: usize,
}

fn options() -> Options {
    let mut o = Options {
        sessions: 100_000,
        real: 50,
        runs: 20,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = args.get(i + 1).and_then(|v| v.parse::<usize>().ok());
        match (args[i].as_str(), value) {
            ("--sessions", Some(v)) => o.sessions = v,
            ("--real", Some(v)) => o.real = v,
            ("--runs", Some(v)) => o.runs = v.max(1),
            (other, _) => {
                eprintln!(
                    "bench-console: unknown or incomplete argument {other:?} (--sessions N, --real N, --runs N)"
                );
                std::process::exit(2);
            }
        }
        i += 2;
    }
    o
}

/// A small deterministic generator (xorshift), so runs index the same sessions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn fill_index(path: &std::path::Path, recordings: &std::path::Path, count: usize) {
    let index = SqliteStore::open_session_index(path).expect("open the session index");
    let now = jitssh_core::unix_now();
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let logins = ["deploy", "root", "app", "postgres", "admin"];
    for n in 0..count {
        // Over the year before yesterday, oldest first, as the bastion inserts them.
        let started_at = now - 86_400 - YEAR + (n as u64 * YEAR) / count.max(1) as u64;
        let person = format!("person{:03}", rng.below(200));
        let stamp = chrono_free_stamp(started_at);
        let meta = SessionMeta {
            id: format!("{stamp}-{:08x}", rng.next() as u32),
            key_id: person.clone(),
            user: person,
            cert_serial: n as u64 + 1,
            login: logins[rng.below(5) as usize].into(),
            target: format!("host{:04}", rng.below(2000)),
            client_addr: format!(
                "192.0.2.{}:{}",
                rng.below(250) + 1,
                40_000 + rng.below(20_000)
            ),
            started_at,
        };
        let dir = jitssh_recording::session_dir(recordings, &meta.id).expect("session dir");
        index
            .insert_session(&meta.index_record(&dir))
            .expect("insert a session");
        let end = SessionEnd {
            ended_at: started_at + 30 + rng.below(4 * 3600),
            bytes_in: rng.below(1 << 20),
            bytes_out: rng.below(1 << 30),
            exit_status: Some(0),
            end_reason: "client closed".into(),
        };
        index.end_session(&meta.id, &end).expect("end a session");
    }
}

/// `YYYYMMDDTHHMMSSZ` for a session id, via `date` once per call would be slow: computed.
fn chrono_free_stamp(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

fn main() {
    let o = options();
    let scratch = Scratch::new();
    let dir = scratch.path();
    let ca = Bastion::ca(dir, "");
    let web01 = target(&ca, dir, "web01", |b| b);
    let alice = user(&ca, dir, "alice", &["root"], &["web*"], &[]);
    let audrey = keygen(dir, "audrey");
    let grant = "jit-grant@jitssh={\"roles\":[{\"name\":\"audit\",\"logins\":[\"audrey\"],\"hosts\":[],\"auditor\":true}]}";
    ca.sign(
        &audrey,
        "user",
        "audrey",
        &["--key-id", "audrey", "--extension", grant],
    );

    let data = dir.join("bastion-data");
    std::fs::create_dir_all(&data).expect("bastion data dir");
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod the bastion data dir");
    let filled = Instant::now();
    fill_index(
        &data.join("sessions.db"),
        &data.join("recordings"),
        o.sessions,
    );
    println!(
        "indexed {} sessions in {:.1} s",
        o.sessions,
        filled.elapsed().as_secs_f64()
    );

    let web_port = jitssh_tests::free_port();
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        &format!("[web]\nlisten = \"127.0.0.1:{web_port}\"\n"),
    );
    let base = format!("https://127.0.0.1:{web_port}");
    for n in 0..o.real {
        let out = bastion
            .ssh("root@web01", &alice)
            .args(["echo", &format!("real session {n}")])
            .run();
        assert!(out.success(), "{out}");
    }
    // Wait until the web console listens and the last real session is indexed as ended.
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while !(bastion.log().contains("web console listening")
        && bastion.audit().matches("\"event\":\"session.end\"").count() >= o.real)
    {
        assert!(Instant::now() < deadline, "the bastion did not settle");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    let out = bastion.ssh("web", &audrey).option("BatchMode=no").run();
    assert!(out.success(), "ssh web@bastion: {out}");
    let url = out
        .stdout_str()
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string();
    let signin = run(Command::new("curl").args(["-sk", "-i", &url]));
    let cookie = signin
        .stdout_str()
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .starts_with("set-cookie:")
                .then(|| l["set-cookie:".len()..].trim().to_string())
        })
        .and_then(|c| c.split(';').next().map(str::to_string))
        .expect("a session cookie from the sign-in link");

    println!(
        "\n{} indexed sessions + {} real ones (the newest, so the first page is real recordings, each verified for the integrity column); {} runs per page; server ms = curl's time to first byte minus its TLS handshake\n",
        o.sessions, o.real, o.runs
    );
    println!("| page | p50 ms | p99 ms | rows |");
    println!("|---|---|---|---|");
    let pages = [
        ("first page, newest first", "/sessions"),
        ("second page", "/sessions?page=2"),
        ("person filter (1 of 200)", "/sessions?person=person007"),
        ("target filter (1 of 2000)", "/sessions?target=host0042"),
        (
            "sorted by person (window of 10,000)",
            "/sessions?sort=person&order=asc",
        ),
    ];
    for (label, path) in pages {
        let mut times = Vec::new();
        let mut rows = 0;
        for _ in 0..o.runs {
            let out = run(Command::new("curl").args([
                "-sk",
                "-H",
                &format!("Cookie: {cookie}"),
                "-w",
                "\n%{http_code} %{time_appconnect} %{time_starttransfer}",
                &format!("{base}{path}"),
            ]));
            let text = out.stdout_str();
            let (body, last) = text.rsplit_once('\n').expect("curl's timing line");
            let fields: Vec<&str> = last.split_whitespace().collect();
            assert_eq!(fields.first(), Some(&"200"), "{path}: {last}");
            let connect: f64 = fields[1].parse().expect("time_appconnect");
            let first_byte: f64 = fields[2].parse().expect("time_starttransfer");
            times.push((first_byte - connect) * 1000.0);
            rows = body.matches("<tr><td><a href=\"/sessions/").count();
        }
        times.sort_by(f64::total_cmp);
        println!(
            "| {label} | {:.1} | {:.1} | {rows} |",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
}
