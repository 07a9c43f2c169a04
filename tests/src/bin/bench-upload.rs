//! bench-upload: recording upload to the object store vs writing it to the local disk
//! (issue 13's benchmark), on a real Garage on loopback.
//!
//! Writes a recording directory of `--mib` MiB (a cast of that size plus a small journal and
//! chain) to the spool with one `write` per MiB and an `fdatasync` at the end (what the
//! recorder does), then uploads it with the bastion's own uploader code
//! (`Bucket::upload`: PUT or multipart in 8 MiB parts, then the confirming listing), then
//! downloads it as the auditor does (`RemoteRecordings::fetch`). Prints MiB/s for each, and
//! the process's peak resident memory, which stays far below the recording's size.
//!
//! ```text
//! cargo build --release -p jitssh-tests --bin bench-upload
//! ./target/release/bench-upload --mib 256 --runs 3
//! ```

use std::io::Write;
use std::time::Instant;

use jitssh_tests::{GARAGE_REGION, Garage, Scratch};

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{name}: not a number")))
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn main() {
    let mib = arg("--mib", 256);
    let runs = arg("--runs", 3);
    let garage = Garage::start("bench");
    let scratch = Scratch::new();
    let credentials = scratch.file("credentials");
    garage.credentials_file(&credentials);
    let settings = jitssh_recstore::ObjectStoreSettings::parse(
        "s3://bench/recordings",
        Some(&garage.endpoint),
        Some(GARAGE_REGION),
        Some(&credentials),
        true,
    )
    .expect("settings");
    let bucket = settings.connect().expect("connect");
    let remote = jitssh_recstore::RemoteRecordings::new(bucket.clone(), u64::MAX).expect("remote");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    // Cast-like content: JSON event lines of printable text, compressible as real output is.
    let mut chunk = Vec::with_capacity(1 << 20);
    let mut t = 0u64;
    while chunk.len() < (1 << 20) - 200 {
        t += 1;
        let _ = writeln!(
            chunk,
            "[{}.{:06}, \"o\", \"line {t} of output: the quick brown fox jumps over the lazy dog\\r\\n\"]",
            t / 1000,
            t % 1000
        );
    }
    chunk.resize(1 << 20, b' ');
    println!(
        "recording of {mib} MiB, {runs} run(s); Garage {}",
        garage.endpoint
    );
    for run in 1..=runs {
        let id = format!("20260101T0000{:02}Z-0000aaaa", run % 60);
        let dir = scratch.path().join("spool").join("2026/01/01").join(&id);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let started = Instant::now();
        {
            let mut cast = std::fs::File::create(dir.join("chan-1.cast")).expect("create");
            for _ in 0..mib {
                cast.write_all(&chunk).expect("write");
            }
            cast.sync_data().expect("fdatasync");
            std::fs::write(dir.join("events.jsonl"), b"{}\n").expect("write");
            std::fs::write(dir.join("chain.jsonl"), b"{}\n").expect("write");
        }
        let local = started.elapsed().as_secs_f64();
        let started = Instant::now();
        let bytes = runtime.block_on(bucket.upload(&id, &dir)).expect("upload");
        let upload = started.elapsed().as_secs_f64();
        std::fs::remove_dir_all(&dir).expect("rm");
        let started = Instant::now();
        let fetched = remote.fetch(&id).expect("fetch").expect("there");
        let download = started.elapsed().as_secs_f64();
        std::fs::remove_dir_all(&fetched).expect("rm");
        let m = bytes as f64 / (1 << 20) as f64;
        println!(
            "run {run}: local write+fdatasync {:.0} MiB/s, upload+confirm {:.0} MiB/s, download {:.0} MiB/s; peak RSS {:.0} MiB",
            m / local,
            m / upload,
            m / download,
            peak_rss_mib()
        );
    }
}
