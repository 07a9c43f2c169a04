//! Issuance over the CA's SSH API on loopback, with 32 concurrent clients.
//!
//! `cargo bench -p ssh-ca --bench api` (add `-- --requests N` to change the total). Prints
//! certificates per second and p50/p99 latency for (a) a new SSH connection per certificate
//! (handshake, host certificate check, publickey auth, exec) and (b) many certificates over one
//! connection per client. Server and clients share this process and the machine's cores.
//! Then (c) (a) again against `ssh-ca serve` in its own process, whose CPU time per
//! certificate gives what the CA alone can sustain on this machine's cores (its capacity):
//! on a 2-core machine the clients of (a) and (b) take about half of the CPU. `SSH_CA_BIN`
//! names another build's `ssh-ca` for (c), to compare two builds.

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

/// `ssh-ca serve`, killed when dropped (also when the bench panics).
struct Server(std::process::Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User plus system CPU time of process `pid` so far (`/proc/PID/stat`, in clock ticks of
/// 10 ms, Linux's fixed USER_HZ).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // After the command name in parentheses: state is field 3, utime and stime 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .map(|f| f.parse().expect("ticks"))
        .collect();
    Duration::from_millis((fields[0] + fields[1]) * 10)
}

/// A new connection per certificate, `per_client` each over `CLIENTS` clients; the latencies.
async fn new_connection_each<F, Fut>(connect: F, per_client: usize) -> Vec<Duration>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = CaClient> + Send,
{
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
    latencies
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
    // Every client comes from 127.0.0.1, and a client's last connection may still be closing
    // on the server's side when it opens the next: above the default 32 per source.
    std::fs::write(
        dir.path().join("ca.toml"),
        "data_dir = \"data\"\npolicy = \"policy.toml\"\nlisten = \"127.0.0.1:0\"\nnames = [\"127.0.0.1\"]\n[limits]\nmax_connections = 512\nmax_startups_per_source = 64\n",
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
    let latencies = new_connection_each(connect.clone(), per_client).await;
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

    // (c) (a) against `ssh-ca serve` in its own process, on the same keys and store.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    std::fs::write(
        dir.path().join("serve.toml"),
        format!(
            "data_dir = \"data\"\npolicy = \"policy.toml\"\nlisten = \"127.0.0.1:{port}\"\n\
             names = [\"127.0.0.1\"]\n[limits]\nmax_connections = 512\nmax_startups_per_source = 64\n"
        ),
    )
    .expect("config");
    // `SSH_CA_BIN` runs another build's `ssh-ca`, to compare two builds' servers.
    let binary =
        std::env::var_os("SSH_CA_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_ssh-ca").into());
    let server = std::process::Command::new(binary)
        .arg("--config")
        .arg(dir.path().join("serve.toml"))
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(Server)
        .expect("ssh-ca serve");
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(&addr).await.is_err() {
        assert!(Instant::now() < deadline, "ssh-ca serve does not listen");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let connect = move || {
        let (addr, host_ca, key) = (addr.clone(), host_ca.clone(), key.clone());
        async move {
            CaClient::connect(&addr, host_ca, key, "bench", Duration::from_secs(30))
                .await
                .expect("connect")
        }
    };
    let cpu_before = cpu_time(server.0.id());
    let clients_before = cpu_time(std::process::id());
    let started = Instant::now();
    let latencies = new_connection_each(connect, per_client).await;
    let elapsed = started.elapsed();
    let server_cpu = cpu_time(server.0.id()) - cpu_before;
    let clients_cpu = cpu_time(std::process::id()) - clients_before;
    let certs = latencies.len();
    report(
        "the same, ssh-ca serve's process",
        certs,
        elapsed,
        latencies,
    );
    let per_cert = server_cpu.as_secs_f64() / certs as f64;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "ssh-ca serve: {:.3} ms CPU per certificate ({:.1}% of one core busy): \
         capacity {:.0} certs/s on {cores} cores",
        per_cert * 1e3,
        server_cpu.as_secs_f64() / elapsed.as_secs_f64() * 100.0,
        cores as f64 / per_cert,
    );
    let per_client_cert = clients_cpu.as_secs_f64() / certs as f64;
    println!(
        "clients (this process): {:.3} ms CPU per certificate; with both on {cores} cores at \
         most {:.0} certs/s",
        per_client_cert * 1e3,
        cores as f64 / (per_cert + per_client_cert),
    );
}
