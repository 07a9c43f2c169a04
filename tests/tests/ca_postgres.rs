//! Two `ssh-ca serve` instances on one PostgreSQL database (issue 13): distinct serials and
//! an audit record for every certificate, also through a kill -9; a database restart while
//! they serve; a revocation through one instance in the other's KRL, refused by a real
//! sshd; a schema newer than the binary refused, and `ssh-ca migrate`.
//!
//! The load comes from the project's own API client (russh, the same SSH protocol as
//! `ssh`), so thousands of requests do not need thousands of processes.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use jitssh_core::ssh_key::{Certificate, PrivateKey, PublicKey, public::KeyData};
use jitssh_tests::{
    Bastion, CaServer, Daemon, KeyPair, Postgres, Scratch, Ssh, Sshd, keygen, run, run_ok, target,
    user, wait_for,
};
use ssh_ca::client::CaClient;

const POLICY_ROLES: &str = r#"
[[roles]]
name = "dev"
logins = ["{user}", "root"]
hosts = ["*"]
max_ttl = "1h"
"#;

fn policy(alice: &KeyPair) -> String {
    format!(
        "{POLICY_ROLES}\n[[users]]\nname = \"alice\"\nkeys = [\"{}\"]\nroles = [\"dev\"]\n",
        alice.public_line()
    )
}

fn store_section(url: &str) -> String {
    format!("[store]\nurl = \"{url}\"\nconnect_timeout = \"2s\"\nstatement_timeout = \"5s\"\n")
}

/// Two CAs with the same keys (copied, as an operator would) on one database.
struct Pair {
    one: CaServer,
    two: CaServer,
    _dirs: (Scratch, Scratch),
    alice: KeyPair,
}

fn start_pair(url: &str) -> Pair {
    start_pair_with(url, "")
}

/// [`start_pair`] with `extra` top-level lines in both ca.toml files.
fn start_pair_with(url: &str, extra: &str) -> Pair {
    let dir1 = Scratch::new();
    let dir2 = Scratch::new();
    let alice = keygen(dir1.path(), "alice");
    let config = format!("{extra}{}", store_section(url));
    let one = CaServer::start(dir1.path(), &policy(&alice), &config);
    // The second instance gets the first one's CA keys (they are what the store records).
    let data2 = dir2.path().join("ca-data");
    std::fs::create_dir_all(&data2).unwrap();
    for entry in std::fs::read_dir(one.ca.data_dir()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with("_ca") || name.ends_with("_ca.pub") {
            std::fs::copy(entry.path(), data2.join(&name)).unwrap();
        }
    }
    let two = CaServer::start(dir2.path(), &policy(&alice), &config);
    Pair {
        one,
        two,
        _dirs: (dir1, dir2),
        alice,
    }
}

/// A pair of CAs on one database that admit bastions holding `identity` (`bastion_keys`),
/// with a target web01 and a user bob certified by their (shared) keys.
struct Fleet {
    scratch: Scratch,
    identity: KeyPair,
    pair: Pair,
    web01: Sshd,
    bob: KeyPair,
}

fn start_fleet(url: &str) -> Fleet {
    let scratch = Scratch::new();
    let identity = keygen(scratch.path(), "bastion_id");
    let pair = start_pair_with(
        url,
        &format!("bastion_keys = [\"{}\"]\n", identity.public_line()),
    );
    let web01 = target(&pair.one.ca, scratch.path(), "web01", |b| b);
    let bob = user(
        &pair.one.ca,
        scratch.path(),
        "bob",
        &["root"],
        &["web*"],
        &[],
    );
    Fleet {
        scratch,
        identity,
        pair,
        web01,
        bob,
    }
}

impl Fleet {
    /// A remote-CA bastion in `dir` on CA `n` (0: one, 1: two).
    fn bastion(&self, n: usize, dir: &Path, ca_lines: &str, extra: &str) -> Bastion {
        let ca = [&self.pair.one, &self.pair.two][n];
        remote_bastion(ca, dir, &self.identity, &self.web01, ca_lines, extra)
    }
}

/// A remote-CA bastion in `dir` on `ca`, holding `identity`, reaching `web01`; `ca_lines`
/// are more `[ca]` lines, `extra` more bastion.toml.
fn remote_bastion(
    ca: &CaServer,
    dir: &Path,
    identity: &KeyPair,
    web01: &Sshd,
    ca_lines: &str,
    extra: &str,
) -> Bastion {
    Bastion::start_remote(
        dir,
        &format!("127.0.0.1:{}", ca.port),
        &ca.ca.ca_pub_file("host"),
        &identity.private,
        ca_lines,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        extra,
    )
}

fn host_ca(server: &CaServer) -> KeyData {
    let line = server.ca.run_ok(["pubkey", "--host"]).stdout_str();
    PublicKey::from_openssh(line.trim())
        .unwrap()
        .key_data()
        .clone()
}

fn private_key(key: &KeyPair) -> PrivateKey {
    PrivateKey::read_openssh_file(&key.private).unwrap()
}

fn serial_of(line: &str) -> u64 {
    Certificate::from_openssh(line.trim())
        .unwrap_or_else(|e| panic!("not a certificate ({e}): {line}"))
        .serial()
}

/// Every `cert.issued` serial in a CA's audit log.
fn audited(server: &CaServer, event: &str) -> HashSet<u64> {
    std::fs::read_to_string(server.ca.data_dir().join("audit.log"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == event)
        .filter_map(|v| v["serial"].as_u64())
        .collect()
}

/// Serials the database holds, by state (0 released, 1 pending, 2 unreleased).
fn stored(pg: &Postgres, db: &str) -> HashMap<u64, i32> {
    pg.psql(db, "SELECT serial, state FROM issued")
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (serial, state) = l.split_once('|').unwrap();
            (serial.parse().unwrap(), state.parse().unwrap())
        })
        .collect()
}

fn db_name(url: &str) -> String {
    url.rsplit('/')
        .next()
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_string()
}

/// `ssh-ca serve` again on the same config (same port), logging to a new file.
fn restart(server: &mut CaServer, log: &str) {
    let dir = server.ca.config().parent().unwrap().to_path_buf();
    let mut daemon = Daemon::spawn(
        "ssh-ca serve",
        &mut server.ca.cmd(["serve"]),
        &dir.join(log),
    );
    daemon.wait_for_log("CA API listening", Duration::from_secs(30));
    server.daemon = daemon;
}

fn kill_9(server: &mut CaServer) {
    let pid = libc::pid_t::try_from(server.daemon.pid()).unwrap();
    // SAFETY: kill(2) has no memory-safety preconditions; the daemon is our live child.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    wait_for(
        || server.daemon.exit_status().is_some(),
        Duration::from_secs(10),
        "the killed CA to exit",
    );
}

/// `workers` clients on `addr`, each asking for certificates until `total` were handed out
/// (shared counter); a failed request (the CA died, the connection broke) is retried on a
/// new connection until `deadline`. Returns the certificate lines and the errors seen.
async fn issue(
    addr: String,
    host_ca: KeyData,
    key: PrivateKey,
    workers: usize,
    total: usize,
    issued: Arc<AtomicUsize>,
    deadline: Instant,
) -> (Vec<String>, Vec<String>) {
    let claimed = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..workers)
        .map(|_| {
            let (addr, host_ca, key) = (addr.clone(), host_ca.clone(), key.clone());
            let (claimed, issued) = (claimed.clone(), issued.clone());
            tokio::spawn(async move {
                let mut lines = Vec::new();
                let mut errors = Vec::new();
                let mut client: Option<CaClient> = None;
                while claimed.fetch_add(1, Ordering::SeqCst) < total {
                    loop {
                        assert!(
                            Instant::now() < deadline,
                            "no certificate by the deadline; errors: {errors:?}"
                        );
                        if client.is_none() {
                            match CaClient::connect(
                                &addr,
                                host_ca.clone(),
                                key.clone(),
                                "alice",
                                Duration::from_secs(20),
                            )
                            .await
                            {
                                Ok(c) => client = Some(c),
                                Err(err) => {
                                    errors.push(format!("connect: {err}"));
                                    tokio::time::sleep(Duration::from_millis(100)).await;
                                    continue;
                                }
                            }
                        }
                        let Some(c) = &client else { continue };
                        match c.exec("cert --ttl 5m", b"").await {
                            Ok(out) if out.status == Some(0) => {
                                lines.push(String::from_utf8(out.stdout).unwrap());
                                issued.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Ok(out) => {
                                errors.push(out.error_line());
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            Err(err) => {
                                errors.push(format!("exec: {err}"));
                                client = None;
                            }
                        }
                    }
                }
                if let Some(c) = client {
                    c.close().await;
                }
                (lines, errors)
            })
        })
        .collect();
    let mut lines = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (l, e) = task.await.unwrap();
        lines.extend(l);
        errors.extend(e);
    }
    (lines, errors)
}

fn addr(server: &CaServer) -> String {
    format!("127.0.0.1:{}", server.port)
}

/// 2 CAs x 1,000 concurrent issuances on one database, one CA kill -9'd mid-run and
/// restarted: 2,000 distinct serials, each audited by the CA that handed it out and stored
/// as released; the killed CA's in-flight ones audited as unreleased on its restart.
#[test]
fn two_cas_issue_two_thousand_distinct_audited_serials_through_a_kill_9() {
    let mut pg = Postgres::start();
    let url = pg.create_database();
    let mut pair = start_pair(&url);
    let host_ca = host_ca(&pair.one);
    let key = private_key(&pair.alice);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    let issued_one = Arc::new(AtomicUsize::new(0));
    let load_one = runtime.spawn(issue(
        addr(&pair.one),
        host_ca.clone(),
        key.clone(),
        25,
        1000,
        issued_one.clone(),
        deadline,
    ));
    let load_two = runtime.spawn(issue(
        addr(&pair.two),
        host_ca.clone(),
        key.clone(),
        25,
        1000,
        Arc::new(AtomicUsize::new(0)),
        deadline,
    ));
    // Mid-run: kill -9 the first CA, and start it again.
    wait_for(
        || issued_one.load(Ordering::SeqCst) >= 300,
        Duration::from_secs(120),
        "300 certificates from CA 1",
    );
    kill_9(&mut pair.one);
    let killed_at = issued_one.load(Ordering::SeqCst);
    restart(&mut pair.one, "ca-serve-restarted.log");
    let (lines_one, errors_one) = runtime.block_on(load_one).unwrap();
    let (lines_two, errors_two) = runtime.block_on(load_two).unwrap();
    assert!(killed_at < 1000, "killed mid-run ({killed_at} issued)");
    assert!(
        !errors_one.is_empty(),
        "requests in flight at the kill failed (and were retried)"
    );
    assert!(
        errors_two.is_empty(),
        "CA 2 served throughout: {errors_two:?}"
    );
    assert_eq!((lines_one.len(), lines_two.len()), (1000, 1000));

    let serials_one: Vec<u64> = lines_one.iter().map(|l| serial_of(l)).collect();
    let serials_two: Vec<u64> = lines_two.iter().map(|l| serial_of(l)).collect();
    let all: HashSet<u64> = serials_one.iter().chain(&serials_two).copied().collect();
    assert_eq!(all.len(), 2000, "2,000 distinct serials");

    let audited_one = audited(&pair.one, "cert.issued");
    let audited_two = audited(&pair.two, "cert.issued");
    for serial in &serials_one {
        assert!(
            audited_one.contains(serial),
            "serial {serial} not audited by CA 1"
        );
    }
    for serial in &serials_two {
        assert!(
            audited_two.contains(serial),
            "serial {serial} not audited by CA 2"
        );
    }
    let stored = stored(&pg, &db_name(&url));
    for serial in &all {
        assert_eq!(
            stored.get(serial),
            Some(&0),
            "serial {serial} stored as released"
        );
    }
    // Nothing is left pending: what the killed CA had in flight was audited as unreleased
    // by it on restart (and never handed out); CA 2 left CA 1's rows alone.
    assert!(
        !stored.values().any(|state| *state == 1),
        "pending rows left"
    );
    let unreleased: HashSet<u64> = stored
        .iter()
        .filter(|(_, state)| **state == 2)
        .map(|(serial, _)| *serial)
        .collect();
    assert!(
        unreleased.is_disjoint(&all),
        "an unreleased one was handed out"
    );
    assert_eq!(unreleased, audited(&pair.one, "cert.unreleased"));
    assert!(audited(&pair.two, "cert.unreleased").is_empty());
    pg.stop_server();
}

/// PostgreSQL stopped while both CAs serve: requests fail with a clear error and nothing
/// is handed out without its record; once it is back, both serve again on their own.
#[test]
fn a_database_restart_fails_requests_clearly_and_service_resumes_by_itself() {
    let mut pg = Postgres::start();
    let url = pg.create_database();
    let pair = start_pair(&url);
    let host_ca = host_ca(&pair.one);
    let key = private_key(&pair.alice);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ask = |server: &CaServer| -> Result<String, String> {
        runtime.block_on(async {
            let client = CaClient::connect(
                &addr(server),
                host_ca.clone(),
                key.clone(),
                "alice",
                Duration::from_secs(30),
            )
            .await
            .map_err(|e| format!("connect: {e}"))?;
            let out = client
                .exec("cert --ttl 5m", b"")
                .await
                .map_err(|e| format!("exec: {e}"))?;
            client.close().await;
            if out.status == Some(0) {
                Ok(String::from_utf8(out.stdout).unwrap())
            } else {
                Err(out.error_line())
            }
        })
    };
    let mut handed_out = Vec::new();
    for server in [&pair.one, &pair.two] {
        handed_out.push(ask(server).unwrap());
    }

    // Connections logged in before the database stops.
    let held: Vec<CaClient> = [&pair.one, &pair.two]
        .iter()
        .map(|server| {
            runtime
                .block_on(CaClient::connect(
                    &addr(server),
                    host_ca.clone(),
                    key.clone(),
                    "alice",
                    Duration::from_secs(30),
                ))
                .unwrap()
        })
        .collect();
    pg.stop_server();
    for (server, client) in [&pair.one, &pair.two].into_iter().zip(&held) {
        // A logged-in client's request fails, saying why, within the timeouts.
        let started = Instant::now();
        let out = runtime.block_on(client.exec("cert --ttl 5m", b"")).unwrap();
        assert_ne!(out.status, Some(0), "no certificate without the database");
        let err = out.error_line();
        assert!(
            err.contains("database unavailable") && !err.contains('\n'),
            "one clear line: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "took {:?}",
            started.elapsed()
        );
        // A new login is refused (revocations cannot be checked: fail closed), and OpenSSH
        // shows why.
        let out = server
            .ssh("alice", &pair.alice)
            .option("BatchMode=no")
            .args(["cert", "--ttl", "5m"])
            .run();
        assert_ne!(out.status, 0, "{out}");
        assert!(
            out.stderr
                .contains("the CA cannot check revocations right now; try again later"),
            "{out}"
        );
        assert!(out.stdout.is_empty(), "{out}");
    }

    pg.start_server();
    for server in [&pair.one, &pair.two] {
        let mut line = None;
        wait_for(
            || {
                line = ask(server).ok();
                line.is_some()
            },
            Duration::from_secs(30),
            "issuance to resume after the database restart",
        );
        handed_out.extend(line);
    }
    let stored = stored(&pg, &db_name(&url));
    for line in &handed_out {
        let serial = serial_of(line);
        assert_eq!(stored.get(&serial), Some(&0), "serial {serial} recorded");
    }
    let logged = pair.one.daemon.log();
    assert!(logged.contains("database unavailable"), "{logged}");
}

/// A revocation through CA 1 (its offline command on the shared database) is in the KRL CA 2
/// serves at once, and a target sshd given that KRL refuses the certificate.
#[test]
fn a_revocation_through_one_ca_is_in_the_other_cas_krl_and_sshd_refuses() {
    let mut pg = Postgres::start();
    let url = pg.create_database();
    let pair = start_pair(&url);
    let scratch = Scratch::new();
    let out = pair
        .two
        .ssh("alice", &pair.alice)
        .args(["cert", "--principals", "root", "--ttl", "30m"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    let cert = scratch.write("alice-cert.pub", &out.stdout);
    let serial = serial_of(&out.stdout_str());
    let fetch_krl = |path: &Path| {
        let out = pair.two.ssh("alice", &pair.alice).args(["krl"]).run();
        assert_eq!(out.status, 0, "{out}");
        std::fs::write(path, &out.stdout).unwrap();
    };
    let krl = scratch.file("revoked.krl");
    fetch_krl(&krl);
    let sshd = Sshd::builder()
        .trusted_user_ca(pair.two.ca.ca_pub_file("user"))
        .revoked_keys(&krl)
        .start();
    let login = || {
        Ssh::new(sshd.port())
            .user("root")
            .identity(&pair.alice.private)
            .cert(&cert)
            .args(["echo", "hi"])
            .run()
    };
    assert_eq!(login().stdout_str(), "hi\n");

    pair.one.ca.run_ok([
        "revoke",
        "--serial",
        &serial.to_string(),
        "--reason",
        "laptop stolen",
    ]);
    fetch_krl(&krl);
    let test = run(std::process::Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(&krl)
        .arg(&cert));
    assert!(
        test.stdout_str().contains("REVOKED"),
        "CA 2's KRL lists the serial: {test}"
    );
    let out = login();
    assert_ne!(out.status, 0, "{out}");
    assert_eq!(out.stdout_str(), "");
    pg.stop_server();
}

/// A database a newer release migrated: `ssh-ca serve` refuses with one line and writes
/// nothing; `ssh-ca migrate` on a fresh database applies the steps and says which.
#[test]
fn serve_refuses_a_newer_schema_and_migrate_says_what_it_applied() {
    let mut pg = Postgres::start();
    let url = pg.create_database();
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let ca =
        jitssh_tests::CaFixture::configure(scratch.path(), &policy(&alice), &store_section(&url));
    let out = ca.run_ok(["migrate"]).stdout_str();
    assert!(
        out.contains("CA store schema migrated from version 0 to 2")
            && out.contains("base tables")
            && out.contains("audit index"),
        "{out}"
    );
    let again = ca.run_ok(["migrate"]).stdout_str();
    assert!(again.contains("schema version 2 is up to date"), "{again}");

    pg.psql(
        &db_name(&url),
        "UPDATE jitssh_schema SET version = 7 WHERE what = 'CA store'",
    );
    let out = ca.run(["serve"]);
    assert_ne!(out.status, 0, "{out}");
    let err = out.stderr.trim();
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(
        err.contains("CA store schema version 7 is newer than this program knows (2)"),
        "{err}"
    );
    assert!(!err.contains("password"), "{err}");
    // migrate refuses too, the same way.
    let out = ca.run(["migrate"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("is newer than this program knows"),
        "{out}"
    );
    pg.stop_server();
}

/// A bastion in remote-CA mode pointed at CA 2: a key revoked through CA 1 ends the live
/// session within the bastion's re-check interval (it fetches CA 2's KRL, which has it).
#[test]
fn a_revocation_through_ca_1_ends_a_live_session_on_a_bastion_of_ca_2() {
    let mut pg = Postgres::start();
    let url = pg.create_database();
    let fleet = start_fleet(&url);
    let bastion = fleet.bastion(
        1,
        fleet.scratch.path(),
        "",
        "[session]\nrevocation_check = \"1s\"\n",
    );
    let session = bastion
        .ssh("root@web01", &fleet.bob)
        .args(["sleep", "60"])
        .spawn();
    bastion.wait_for_audit("\"command\":\"sleep 60\"", Duration::from_secs(20));
    let mut revoke = fleet
        .pair
        .one
        .ca
        .cmd(["revoke", "--reason", "laptop stolen", "--key"]);
    revoke.arg(&fleet.bob.public);
    run_ok(&mut revoke);
    // One re-check interval (1 s: a KRL fetch from CA 2), plus telling the client.
    let stderr = session.wait_ended_within(Instant::now(), Duration::from_secs(6));
    assert!(stderr.contains("revoked"), "{stderr}");
    pg.stop_server();
}

/// Part 3 of the scale-out: each CA's audit log is its own chain; both land in the shared
/// database's audit index, so `ssh-ca audit search` on either instance sees both, and
/// `ssh-ca audit verify` checks both chains (and that neither head went backwards).
#[test]
fn both_cas_audit_chains_are_searched_and_verified_in_one_place() {
    let mut pg = Postgres::start();
    let url = pg.create_database();
    let pair = start_pair_with(&url, "[audit]\nhead_interval = \"1s\"\n");
    for (server, n) in [(&pair.one, 2), (&pair.two, 3)] {
        for _ in 0..n {
            let out = server
                .ssh("alice", &pair.alice)
                .args(["cert", "--principals", "alice"])
                .run();
            assert_eq!(out.status, 0, "{out}");
        }
    }
    let user_certs = |server: &CaServer| -> usize {
        let out = server.ca.run_ok([
            "audit",
            "search",
            "--event",
            "cert.issued",
            "--contains",
            r#""cert_type":"user""#,
        ]);
        out.stdout_str().lines().count()
    };
    wait_for(
        || user_certs(&pair.one) == 5 && user_certs(&pair.two) == 5,
        Duration::from_secs(30),
        "both instances' issuances searchable from either",
    );
    wait_for(
        || {
            let out = pair.one.ca.run(["audit", "verify"]);
            let text = out.stdout_str();
            out.status == 0 && text.matches("heads recorded").count() == 2
        },
        Duration::from_secs(30),
        "audit verify on CA 1: two chains, both intact",
    );
    pg.stop_server();
}

/// Issue 13, the session index across bastions: two bastions (remote-CA mode, one on each CA
/// of a pair) with `[store] url` on the deployment's database. A session through each;
/// `ssh-bastion sessions list` with either bastion's config lists both, and both bastions'
/// audit chains are in the audit index: `ssh-ca audit search` through CA 1 finds both
/// sessions' commands.
#[test]
fn two_bastions_index_their_sessions_and_audit_in_one_database() {
    let mut pg = Postgres::start();
    let url = pg.create_database();
    let Fleet {
        scratch,
        identity,
        pair,
        web01,
        bob,
    } = start_fleet(&url);
    let dirs = [Scratch::new(), Scratch::new()];
    let extra = format!("[audit]\nhead_interval = \"1s\"\n\n{}", store_section(&url));
    // Each bastion enrolled as its own host (its own host key) with the shared name as an
    // alias: its host certificate names the name behind the load balancer.
    let tokens: Vec<String> = (1..=2)
        .map(|n| {
            let added = pair.one.ca.run_ok([
                "host",
                "add",
                &format!("bastion-{n}.example"),
                "--alias",
                "bastion.example",
                "--ttl",
                "1h",
            ]);
            let token = added.stdout_str();
            token.lines().last().expect("token").trim().to_string()
        })
        .collect();
    let bastions: Vec<Bastion> = [&pair.one, &pair.two]
        .into_iter()
        .zip(&dirs)
        .zip(&tokens)
        .map(|((ca, dir), token)| {
            remote_bastion(
                ca,
                dir.path(),
                &identity,
                &web01,
                &format!("host_token = \"{token}\"\n"),
                &extra,
            )
        })
        .collect();
    let mut local_ids = Vec::new();
    for (n, bastion) in bastions.iter().enumerate() {
        let out = bastion
            .ssh("root@web01", &bob)
            .args(["echo", &format!("through-bastion-{n}")])
            .run();
        assert_eq!(out.status, 0, "{out}");
        let recorded = jitssh_tests::session_recordings(&bastion.data_dir().join("recordings"));
        assert_eq!(recorded.len(), 1, "one session recorded on bastion {n}");
        local_ids.push(
            recorded[0]
                .file_name()
                .unwrap()
                .to_string_lossy()
                .to_string(),
        );
        assert!(
            !bastion.data_dir().join("sessions.db").exists(),
            "bastion {n} indexes in PostgreSQL, not sessions.db"
        );
    }
    local_ids.sort();
    for (n, bastion) in bastions.iter().enumerate() {
        let mut listed = bastion.session_ids(&[]);
        listed.sort();
        assert_eq!(listed, local_ids, "sessions list with bastion {n}'s config");
    }
    let searched = |needle: &str| -> bool {
        let out = pair
            .one
            .ca
            .run(["audit", "search", "--event", "session.exec"]);
        out.status == 0 && out.stdout_str().contains(needle)
    };
    wait_for(
        || searched("through-bastion-0") && searched("through-bastion-1"),
        Duration::from_secs(30),
        "both bastions' session.exec records searchable through CA 1",
    );
    // And through the auditor tools of either bastion.
    let bastion_search = run(
        std::process::Command::new(jitssh_tests::project_bin("ssh-bastion"))
            .arg("--config")
            .arg(&bastions[1].config)
            .args(["audit", "search", "--event", "session.exec"]),
    );
    assert!(
        bastion_search.stdout_str().contains("through-bastion-0")
            && bastion_search.stdout_str().contains("through-bastion-1"),
        "{bastion_search}"
    );
    // A client that knows only the host CA, for the shared name, with strict checking,
    // reaches either instance.
    let known_hosts = scratch.write(
        "known_hosts_shared_name",
        format!(
            "@cert-authority bastion.example {}",
            std::fs::read_to_string(pair.one.ca.ca_pub_file("host")).expect("host CA")
        ),
    );
    for (n, bastion) in bastions.iter().enumerate() {
        let out = Ssh::new(bastion.port)
            .user("root@web01")
            .identity(&bob.private)
            .cert(bob.cert_path())
            .known_hosts(&known_hosts)
            .host("bastion.example")
            .args(["true"])
            .run();
        assert_eq!(out.status, 0, "bastion {n} under the shared name: {out}");
    }
    drop(bastions);
    pg.stop_server();
}

/// Several bastions behind one name, on one database and one object store: bastion 1 is
/// kill -9'd mid-session while a session on bastion 2 goes on untouched; bastion 1 restarts
/// and uploads the cut recording; `verify` run with bastion 2's configuration (which finds
/// it only in the bucket) reports it exactly as `verify` on bastion 1's spool did before.
#[test]
fn a_bastion_killed_mid_session_leaves_the_other_untouched_and_its_recording_verifiable_from_the_bucket()
 {
    let mut pg = Postgres::start();
    let url = pg.create_database();
    let garage = jitssh_tests::Garage::start("recordings");
    let Fleet {
        scratch,
        identity,
        pair,
        web01,
        bob,
    } = start_fleet(&url);
    let credentials = scratch.file("s3-credentials");
    garage.credentials_file(&credentials);
    let dirs = [Scratch::new(), Scratch::new()];
    let extra = format!(
        "{}\n[recordings]\n{}",
        store_section(&url),
        garage.recordings_keys("fleet", &credentials)
    );
    let start = |n: usize| {
        let ca = [&pair.one, &pair.two][n];
        remote_bastion(ca, dirs[n].path(), &identity, &web01, "", &extra)
    };
    let mut bastions = vec![start(0), start(1)];
    let terminal = |bastion: &Bastion| {
        let ssh = bastion.ssh("root@web01", &bob).flag("-tt").command();
        jitssh_tests::Tmux::start(scratch.path(), &ssh, 100, 30)
    };
    let (term1, term2) = (terminal(&bastions[0]), terminal(&bastions[1]));
    term1.type_line("echo one-before-$((6*7))");
    term1.wait_for("one-before-42", Duration::from_secs(20));
    term2.type_line("echo two-before-$((6*7))");
    term2.wait_for("two-before-42", Duration::from_secs(20));
    let spool = bastions[0].data_dir().join("recordings");
    let cut = jitssh_tests::session_recordings(&spool)
        .pop()
        .expect("bastion 1's session in its spool");
    let id = cut.file_name().unwrap().to_string_lossy().to_string();
    wait_for(
        || {
            std::fs::read_to_string(cut.join("chan-1.cast"))
                .is_ok_and(|cast| cast.contains("one-before-42"))
        },
        Duration::from_secs(20),
        "bastion 1's output flushed to its spool",
    );

    // SAFETY: kill(2) has no memory-safety preconditions; the daemon is our live child.
    unsafe { libc::kill(bastions[0].daemon.pid() as libc::pid_t, libc::SIGKILL) };
    wait_for(
        || bastions[0].daemon.exit_status().is_some(),
        Duration::from_secs(20),
        "bastion 1 gone",
    );
    // Bastion 2's session goes on as if nothing happened.
    term2.type_line("echo two-after-$((6*7))");
    term2.wait_for("two-after-42", Duration::from_secs(20));
    drop(term1);
    let verify = |bastion: &Bastion| {
        run(
            std::process::Command::new(jitssh_tests::project_bin("ssh-bastion"))
                .arg("--config")
                .arg(&bastion.config)
                .args(["verify", &id]),
        )
    };
    let on_disk = verify(&bastions[0]);
    assert_eq!(on_disk.status, 1, "{on_disk}");
    assert!(on_disk.stdout_str().contains("UNSEALED"), "{on_disk}");

    bastions[0] = start(0);
    wait_for(
        || {
            jitssh_tests::session_recordings(&spool).is_empty()
                && garage
                    .objects()
                    .iter()
                    .any(|(key, _)| key.contains(&id) && key.ends_with("events.jsonl"))
        },
        Duration::from_secs(60),
        "bastion 1's cut recording uploaded at its restart",
    );
    let from_bucket = verify(&bastions[1]);
    assert_eq!(from_bucket.status, 1, "{from_bucket}");
    assert_eq!(from_bucket.stdout_str(), on_disk.stdout_str());

    term2.type_line("exit");
    term2.wait_exit(Duration::from_secs(10));
    // Both sessions in the one index, from either bastion's configuration.
    let listed = bastions[0].session_ids(&[]);
    assert_eq!(listed.len(), 2, "{listed:?}");
    drop(bastions);
    pg.stop_server();
}

/// A bastion whose session index is on PostgreSQL (all-in-one; its CA on SQLite).
struct IndexedBastion {
    pg: Postgres,
    _scratch: Scratch,
    ca: jitssh_tests::CaFixture,
    web01: Sshd,
    alice: KeyPair,
    bastion: Bastion,
    extra: String,
}

impl IndexedBastion {
    fn start() -> IndexedBastion {
        let mut pg = Postgres::start();
        let url = pg.create_database();
        let scratch = Scratch::new();
        let ca = Bastion::ca(scratch.path(), "");
        let web01 = target(&ca, scratch.path(), "web01", |b| b);
        let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
        let extra = store_section(&url);
        let bastion = Bastion::start(
            &ca,
            &[("web01", format!("127.0.0.1:{}", web01.port()))],
            &extra,
        );
        IndexedBastion {
            pg,
            _scratch: scratch,
            ca,
            web01,
            alice,
            bastion,
            extra,
        }
    }

    /// A session that starts with the database up and ends while it is down: it goes on,
    /// ends sealed and audited, and its index end fails (logged). A login meanwhile is
    /// refused with the reason.
    fn session_ending_in_an_outage(&mut self) {
        let ssh = self
            .bastion
            .ssh("root@web01", &self.alice)
            .args(["sleep 3; echo ended-during-the-outage"]);
        let client = std::thread::spawn(move || ssh.run());
        self.bastion
            .wait_for_audit("\"event\":\"session.start\"", Duration::from_secs(20));
        self.pg.stop_server();
        let out = client.join().expect("client");
        assert!(
            out.success() && out.stdout_str().contains("ended-during-the-outage"),
            "the session goes on through the outage: {out}"
        );
        self.bastion
            .wait_for_audit("\"event\":\"session.end\"", Duration::from_secs(20));
        wait_for(
            || {
                self.bastion
                    .log()
                    .contains("cannot complete the session index")
            },
            Duration::from_secs(20),
            "the failed index write in the log",
        );
        let refused = self
            .bastion
            .ssh("root@web01", &self.alice)
            .args(["true"])
            .run();
        assert!(!refused.success(), "a login during the outage: {refused}");
        assert!(
            refused.stderr.contains("session index"),
            "the person is told why: {refused}"
        );
    }

    /// Waits until `sessions list --json` shows the one session with its end; that row.
    fn ended_row(&self) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.bastion.cli(&["sessions", "list", "--json"]);
            let ended = out.success().then(|| {
                out.stdout_str()
                    .lines()
                    .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                    .find(|v| !v["ended_at"].is_null())
            });
            if let Some(Some(row)) = ended {
                assert_eq!(row["end_reason"], "the client disconnected", "{row}");
                assert_eq!(row["exit_status"], 0, "{row}");
                assert_eq!(row["unfinished"], false, "{row}");
                return row;
            }
            assert!(
                Instant::now() < deadline,
                "the session's index row is still without an end: {out}\n{}",
                self.bastion.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Issue 13, a bastion whose session index is on PostgreSQL through a database outage: a
/// session that ends while the database is down is sealed and audited as ever, and its index
/// row is completed once the database is back (before, it stayed without an end and showed
/// as `unfinished`, a crash's mark, for good); a login during the outage is refused with a
/// reason.
#[test]
fn a_session_ending_during_a_database_outage_is_indexed_once_it_is_back() {
    let mut w = IndexedBastion::start();
    w.session_ending_in_an_outage();
    w.pg.start_server();
    w.ended_row();
    assert!(
        w.bastion.log().contains("session index reachable again"),
        "{}",
        w.bastion.log()
    );
    w.pg.stop_server();
}

/// The same, but the bastion stops while the end still waits for the database: at its next
/// start (the database back) the row is completed from the recording's seal.
#[test]
fn a_session_end_lost_with_the_bastion_is_completed_from_the_seal_at_its_next_start() {
    let mut w = IndexedBastion::start();
    w.session_ending_in_an_outage();
    w.bastion.daemon.stop();
    w.pg.start_server();
    w.bastion = Bastion::start(
        &w.ca,
        &[("web01", format!("127.0.0.1:{}", w.web01.port()))],
        &w.extra,
    );
    w.ended_row();
    assert!(
        w.bastion.log().contains("completed from their seals"),
        "{}",
        w.bastion.log()
    );
    w.pg.stop_server();
}
