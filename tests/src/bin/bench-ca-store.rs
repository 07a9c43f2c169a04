//! bench-ca-store: issuance over the CA's SSH API with the store on SQLite, on PostgreSQL
//! with one CA, and on PostgreSQL with two CAs sharing the database (issue 13).
//!
//! Each CA is an [`Authority`] with its own data directory and audit log behind its own SSH
//! API on loopback (as `ssh-ca serve` runs it), all in this process; the PostgreSQL server
//! is the harness's throwaway cluster ([`jitssh_tests::Postgres`]) on the same machine.
//! `--clients` SSH connections (split evenly over the CAs) each ask for certificates over
//! one connection until `--requests` were issued; prints certificates per second, p50 and
//! p99 latency per setup, and the ratios.
//!
//! ```text
//! cargo build --release -p jitssh-tests --bin bench-ca-store
//! ./target/release/bench-ca-store --requests 4000 --clients 32
//! ```

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jitssh_authority::authority::{Authority, OpenOptions};
use jitssh_authority::config::CaConfig;
use jitssh_core::keys::CaSigner;
use jitssh_core::ssh_key::PrivateKey;
use ssh_ca::api::Api;
use ssh_ca::client::CaClient;

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// One CA instance in `dir`, its store at `url` (SQLite when `None`), with the CA keys of
/// `keys_from` copied in (the same CA), or new ones.
fn open(dir: &Path, policy: &str, url: Option<&str>, keys_from: Option<&Path>) -> Arc<Authority> {
    std::fs::create_dir_all(dir.join("data")).expect("data dir");
    std::fs::write(dir.join("policy.toml"), policy).expect("policy");
    let store = url.map_or(String::new(), |url| format!("[store]\nurl = \"{url}\"\n"));
    std::fs::write(
        dir.join("ca.toml"),
        format!(
            "data_dir = \"data\"\npolicy = \"policy.toml\"\nlisten = \"127.0.0.1:0\"\n\
             names = [\"127.0.0.1\"]\n[limits]\nmax_connections = 512\n{store}"
        ),
    )
    .expect("config");
    if let Some(from) = keys_from {
        for entry in std::fs::read_dir(from.join("data")).expect("keys dir") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().to_string();
            if name.ends_with("_ca") || name.ends_with("_ca.pub") {
                std::fs::copy(entry.path(), dir.join("data").join(&name)).expect("copy key");
            }
        }
    }
    let config = CaConfig::load(Some(&dir.join("ca.toml"))).expect("config");
    Arc::new(
        Authority::open(
            config,
            OpenOptions {
                init_keys: true,
                serial_block: 64,
            },
        )
        .expect("authority"),
    )
}

struct Figures {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

async fn run(
    name: &str,
    cas: &[Arc<Authority>],
    key: &PrivateKey,
    requests: usize,
    clients: usize,
) -> Figures {
    let mut addrs = Vec::new();
    for ca in cas {
        let api = Api::bind(ca.clone(), "127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        addrs.push(api.local_addr().expect("addr").to_string());
        tokio::spawn(api.run());
    }
    let host_ca = cas[0].keys().host.key_data().clone();
    let claimed = Arc::new(AtomicUsize::new(0));
    let mut connected = Vec::new();
    for i in 0..clients {
        let client = CaClient::connect(
            &addrs[i % addrs.len()],
            host_ca.clone(),
            key.clone(),
            "bench",
            Duration::from_secs(60),
        )
        .await
        .expect("connect");
        connected.push(client);
    }
    let started = Instant::now();
    let tasks: Vec<_> = connected
        .into_iter()
        .map(|client| {
            let claimed = claimed.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while claimed.fetch_add(1, Ordering::SeqCst) < requests {
                    let t = Instant::now();
                    let out = client.exec("cert --ttl 5m", b"").await.expect("exec");
                    assert_eq!(out.status, Some(0), "{}", out.error_line());
                    latencies.push(t.elapsed());
                }
                client.close().await;
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let figures = Figures {
        rate: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
    };
    println!(
        "{name:<28} {:>6} certs  {:>7.0} certs/s  p50 {:>7.2} ms  p99 {:>7.2} ms",
        latencies.len(),
        figures.rate,
        figures.p50.as_secs_f64() * 1e3,
        figures.p99.as_secs_f64() * 1e3,
    );
    figures
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let requests = arg("--requests", 4000);
    let clients = arg("--clients", 32);
    let scratch = tempfile::tempdir().expect("tempdir");
    let root = scratch.path();
    let user = CaSigner::generate("bench-user");
    let policy = format!(
        "[[roles]]\nname = \"dev\"\nlogins = [\"{{user}}\"]\nhosts = [\"*\"]\nmax_ttl = \"1h\"\n\
         [[users]]\nname = \"bench\"\nkeys = [\"{}\"]\nroles = [\"dev\"]\n",
        user.public_line()
    );
    let key = PrivateKey::from_openssh(user.to_openssh().expect("key")).expect("key");
    println!(
        "{requests} certificates, {clients} SSH connections, {} cores; everything (clients, CAs, \
         PostgreSQL) on this machine",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    let sqlite = open(&root.join("sqlite"), &policy, None, None);
    let lite = run("SQLite, 1 CA", &[sqlite], &key, requests, clients).await;

    let mut pg = jitssh_tests::Postgres::start();
    let url = pg.create_database();
    let first = open(&root.join("pg1"), &policy, Some(&url), None);
    let one = run("PostgreSQL, 1 CA", &[first], &key, requests, clients).await;
    let url2 = pg.create_database();
    let a = open(&root.join("pg2a"), &policy, Some(&url2), None);
    let b = open(
        &root.join("pg2b"),
        &policy,
        Some(&url2),
        Some(&root.join("pg2a")),
    );
    let two = run("PostgreSQL, 2 CAs", &[a, b], &key, requests, clients).await;
    println!(
        "ratios: 2 CAs / 1 CA on PostgreSQL {:.2}x; PostgreSQL 1 CA / SQLite {:.2}x (throughput)",
        two.rate / one.rate,
        one.rate / lite.rate
    );
    pg.stop_server();
}
