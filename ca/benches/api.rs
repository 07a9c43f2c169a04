//! Issuance over the CA's SSH API on loopback, with 32 concurrent clients.
//!
//! `cargo bench -p ssh-ca --bench api` (add `-- --requests N` to change the total). Prints
//! certificates per second and p50/p99 latency for (a) a new SSH connection per certificate
//! (handshake, host certificate check, publickey auth, exec) and (b) many certificates over one
//! connection per client. Server and clients share this process and the machine's cores.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jitssh_authority::authority::{Authority, OpenOptions};
use jitssh_authority::config::CaConfig;
use jitssh_core::keys::CaSigner;
use jitssh_core::ssh_key::PrivateKey;
use ssh_ca::api::Api;
use ssh_ca::client::CaClient;

const CLIENTS: usize = 32;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn report(name: &str, total: usize, elapsed: Duration, mut latencies: Vec<Duration>) {
    latencies.sort();
    println!(
        "{name:<34} {total:>6} certs  {:>8.0} certs/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        total as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
    );
}

async fn one_cert(client: &CaClient) {
    let out = client.exec("cert --ttl 5m", b"").await.expect("exec");
    assert_eq!(out.status, Some(0), "{}", out.error_line());
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let requests: usize = std::env::args()
        .skip_while(|a| a != "--requests")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(3200);
    let dir = tempfile::tempdir().expect("tempdir");
    let user = CaSigner::generate("bench-user");
    let policy = format!(
        "[[roles]]\nname = \"dev\"\nlogins = [\"{{user}}\"]\nhosts = [\"*\"]\nmax_ttl = \"1h\"\n\
         [[users]]\nname = \"bench\"\nkeys = [\"{}\"]\nroles = [\"dev\"]\n",
        user.public_line()
    );
    std::fs::write(dir.path().join("policy.toml"), policy).expect("policy");
    std::fs::write(
        dir.path().join("ca.toml"),
        "data_dir = \"data\"\npolicy = \"policy.toml\"\nlisten = \"127.0.0.1:0\"\nnames = [\"127.0.0.1\"]\n[limits]\nmax_connections = 512\n",
    )
    .expect("config");
    let config = CaConfig::load(Some(&dir.path().join("ca.toml"))).expect("config");
    let authority = Arc::new(
        Authority::open(
            config,
            OpenOptions {
                init_keys: true,
                serial_block: 256,
            },
        )
        .expect("authority"),
    );
    let host_ca = authority.keys().host.key_data().clone();
    let api = Api::bind(authority.clone(), "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("bind");
    let addr = api.local_addr().expect("addr").to_string();
    tokio::spawn(api.run());
    let key = PrivateKey::from_openssh(user.to_openssh().expect("key")).expect("key");
    let per_client = requests / CLIENTS;
    let connect = {
        let (addr, host_ca, key) = (addr.clone(), host_ca.clone(), key.clone());
        move || {
            let (addr, host_ca, key) = (addr.clone(), host_ca.clone(), key.clone());
            async move {
                CaClient::connect(&addr, host_ca, key, "bench", Duration::from_secs(30))
                    .await
                    .expect("connect")
            }
        }
    };
    println!(
        "CA API on {addr}, {CLIENTS} concurrent clients, {} cores",
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );

    // (a) a new connection per certificate.
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let connect = connect.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = Instant::now();
                    let client = connect().await;
                    one_cert(&client).await;
                    client.close().await;
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.expect("task"));
    }
    report(
        "new connection per certificate",
        latencies.len(),
        started.elapsed(),
        latencies,
    );

    // (b) one connection per client, many certificates each.
    let started = Instant::now();
    let tasks: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let connect = connect.clone();
            tokio::spawn(async move {
                let client = connect().await;
                let mut latencies = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t = Instant::now();
                    one_cert(&client).await;
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
    report(
        "many certificates per connection",
        latencies.len(),
        started.elapsed(),
        latencies,
    );
}
