//! The CA as an SSH service (`ssh-ca serve`), driven with the real `ssh` client: certificates
//! on demand, denials with reasons, just-in-time approvals, host join and renewal, load and
//! abuse.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jitssh_tests::{
    CaServer, KeyPair, Scratch, Ssh, Sshd, cert_info, keygen, run, run_ok, wait_for,
};

fn policy(users: &[(&str, &KeyPair, &str)], extra_roles: &str) -> String {
    let mut text = String::from(
        r#"
[[roles]]
name = "dev"
logins = ["{user}", "deploy"]
hosts = ["web*"]
max_ttl = "8h"
default_ttl = "1h"

[[roles]]
name = "ops"
logins = ["root"]
hosts = ["db*"]
max_ttl = "1h"
require_reason = true

[[roles]]
name = "prod"
logins = ["root"]
hosts = ["prod*"]
max_ttl = "2h"
approvals = 1
approvers = ["lead"]

[[roles]]
name = "lead"
logins = ["{user}"]
max_ttl = "1h"
"#,
    );
    text.push_str(extra_roles);
    for (name, key, roles) in users {
        text.push_str(&format!(
            "\n[[users]]\nname = \"{name}\"\nkeys = [\"{}\"]\nroles = [{roles}]\n",
            key.public_line()
        ));
    }
    text
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn field<'a>(info: &'a str, name: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in {info}"))
        .trim()
}

/// `Valid: from A to B` as unix seconds, via `date -d`.
fn validity(info: &str) -> (u64, u64) {
    let valid = field(info, "Valid:");
    let words: Vec<&str> = valid.split_whitespace().collect();
    let unix = |text: &str| -> u64 {
        let out = run_ok(Command::new("date").args(["-d", text, "+%s"]));
        out.stdout_str().trim().parse().unwrap()
    };
    (unix(words[1]), unix(words[3]))
}

#[test]
fn alice_gets_a_certificate_over_ssh_and_logs_into_sshd() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let server = CaServer::start(
        scratch.path(),
        &policy(&[("alice", &alice, "\"dev\", \"ops\"")], ""),
        "",
    );

    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--ttl", "2h", "--principals", "deploy"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    let cert = scratch.write("alice-cert.pub", &out.stdout);
    let info = cert_info(&cert);
    assert!(info.contains("Key ID: \"alice\""), "{info}");
    assert_eq!(
        field(&info, "Principals:"),
        "",
        "principals listed on the next lines"
    );
    assert!(info.contains("                deploy"), "{info}");
    assert!(
        !info.contains("                alice\n"),
        "only the requested login: {info}"
    );
    let (from, to) = validity(&info);
    assert!(
        (2 * 3600..=2 * 3600 + 180).contains(&(to - from)),
        "{from}..{to}"
    );
    assert!(to.abs_diff(now() + 7200) < 60);

    // The certificate works against a real sshd that trusts the user CA.
    let sshd = Sshd::builder()
        .trusted_user_ca(server.ca.ca_pub_file("user"))
        .start();
    // sshd here has no account "deploy": log in as root with a root certificate instead.
    let out = server
        .ssh("alice", &alice)
        .args([
            "cert",
            "--principals",
            "root",
            "--reason",
            "INC-42",
            "--ttl",
            "30m",
        ])
        .run();
    assert_eq!(out.status, 0, "{out}");
    let root_cert = scratch.write("alice-root-cert.pub", &out.stdout);
    let out = Ssh::new(sshd.port())
        .user("root")
        .identity(&alice.private)
        .cert(&root_cert)
        .args(["echo", "hi"])
        .run();
    assert_eq!(out.stdout_str(), "hi\n", "{out}");
    assert!(sshd.log().contains("ID alice"), "{}", sshd.log());

    // The key on stdin is certified when given.
    let laptop = keygen(scratch.path(), "laptop");
    let out = server
        .ssh("alice", &alice)
        .stdin(std::fs::read(&laptop.public).unwrap())
        .args(["cert", "--principals", "alice"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    let cert = scratch.write("laptop-cert.pub", &out.stdout);
    let fingerprint =
        run_ok(Command::new("ssh-keygen").arg("-lf").arg(&laptop.public)).stdout_str();
    let fingerprint = fingerprint.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        cert_info(&cert).contains(&fingerprint),
        "certifies the stdin key"
    );

    // whoami and ca-keys.
    let out = server.ssh("alice", &alice).args(["whoami"]).run();
    assert!(
        out.stdout_str()
            .contains("role dev: logins alice,deploy; hosts web*"),
        "{out}"
    );
    let out = server.ssh("alice", &alice).args(["ca-keys"]).run();
    assert!(
        out.stdout_str().starts_with("user-ca ssh-ed25519 "),
        "{out}"
    );

    // --dry-run signs nothing and explains.
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--dry-run", "--principals", "deploy"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    let text = out.stdout_str();
    assert!(
        text.contains("nothing was signed") && text.contains("default_ttl of role dev"),
        "{text}"
    );
    let issued = server.ca.run_ok(["issued"]).stdout_str();
    assert_eq!(
        issued.lines().count(),
        1 + 4,
        "3 user certs + the API host cert: {issued}"
    );

    // help works.
    let out = server.ssh("alice", &alice).args(["help"]).run();
    assert!(out.stdout_str().contains("request"), "{out}");
}

#[test]
fn denials_exit_non_zero_with_the_reason() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let stranger = keygen(scratch.path(), "stranger");
    // A role usable only on a day that is not today (the day after tomorrow, so midnight
    // passing during the test changes nothing).
    let later = run_ok(Command::new("date").args(["-u", "-d", "+2 days", "+%a"])).stdout_str();
    let night = format!(
        "\n[[roles]]\nname = \"night\"\nlogins = [\"nightly\"]\nmax_ttl = \"1h\"\nallowed_hours = \"{} 00:00-24:00 UTC\"\n",
        later.trim()
    );
    let server = CaServer::start(
        scratch.path(),
        &policy(&[("alice", &alice, "\"dev\", \"ops\", \"night\"")], &night),
        "",
    );
    let cases: [(&[&str], &str); 5] = [
        (
            &["cert", "--ttl", "9h", "--principals", "deploy"],
            "ttl 9h exceeds max_ttl 8h for role dev",
        ),
        (&["cert", "--role", "ops"], "role ops requires a reason"),
        (
            &["cert", "--principals", "postgres"],
            "login postgres is not granted",
        ),
        (
            &["cert", "--role", "night"],
            "role night may only be used during",
        ),
        (&["cert", "--ttl", "banana"], "banana"),
    ];
    for (args, reason) in cases {
        let out = server.ssh("alice", &alice).args(args.iter().copied()).run();
        assert_ne!(out.status, 0, "{args:?}: {out}");
        assert!(out.stderr.contains(reason), "{args:?}: {out}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout: {out}");
    }
    // An unknown key cannot log in at all; a known key under another name neither.
    let out = server.ssh("stranger", &stranger).args(["cert"]).run();
    assert_eq!(out.status, 255, "{out}");
    assert!(out.stderr.contains("Permission denied"), "{out}");
    let out = server.ssh("bob", &alice).args(["cert"]).run();
    assert_eq!(out.status, 255, "{out}");
    // Denials are audited.
    let log = std::fs::read_to_string(server.ca.data_dir().join("audit.log")).unwrap();
    assert!(log.matches("\"cert.denied\"").count() >= 4, "{log}");
    // On that day the same request succeeds.
    server.ca.clock().advance(2 * 86_400);
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--role", "night"])
        .run();
    assert_eq!(out.status, 0, "allowed on its day: {out}");
}

#[test]
fn approval_flow_with_requester_approver_and_bystander() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let bob = keygen(scratch.path(), "bob");
    let carol = keygen(scratch.path(), "carol");
    let server = CaServer::start(
        scratch.path(),
        &policy(
            &[
                ("alice", &alice, "\"dev\", \"prod\", \"lead\""),
                ("bob", &bob, "\"lead\""),
                ("carol", &carol, "\"dev\""),
            ],
            "",
        ),
        "request_expiry = \"10m\"\n",
    );
    let ssh = |who: &str, key: &KeyPair, args: &[&str]| {
        server.ssh(who, key).args(args.iter().copied()).run()
    };

    // Without a request, prod is refused and says how to ask.
    let out = ssh("alice", &alice, &["cert", "--role", "prod"]);
    assert!(
        out.stderr.contains("requires an approved access request"),
        "{out}"
    );

    let out = ssh(
        "alice",
        &alice,
        &[
            "request",
            "--role",
            "prod",
            "--ttl",
            "30m",
            "--reason",
            "'CHG-7 deploy'",
        ],
    );
    assert_eq!(out.status, 0, "{out}");
    let id = out.stdout_str().trim().to_string();
    assert!(id.starts_with("req-"), "{id}");

    // Pending: no certificate yet.
    let out = ssh("alice", &alice, &["cert", "--request", &id]);
    assert!(out.stderr.contains("pending"), "{out}");
    // Self-approval refused, even though alice holds the approver role.
    let out = ssh("alice", &alice, &["approve", &id]);
    assert!(
        out.stderr
            .contains("cannot approve or deny your own request"),
        "{out}"
    );
    // Bystander refused.
    let out = ssh("carol", &carol, &["approve", &id]);
    assert!(
        out.stderr.contains("requires one of the roles: lead"),
        "{out}"
    );
    // bob sees it pending and approves.
    let out = ssh("bob", &bob, &["requests"]);
    assert!(
        out.stdout_str().contains(&id) && out.stdout_str().contains("pending"),
        "{out}"
    );
    let out = ssh("carol", &carol, &["requests"]);
    assert!(
        !out.stdout_str().contains(&id),
        "bystander does not see it: {out}"
    );
    let out = ssh("bob", &bob, &["approve", &id]);
    assert_eq!(out.status, 0, "{out}");
    assert!(
        out.stdout_str().contains("access granted to alice"),
        "{out}"
    );
    let approved_at = now();

    // Only the requester can use it; the certificate lies inside the window, names the request.
    let out = ssh("bob", &bob, &["cert", "--request", &id]);
    assert!(out.stderr.contains("not yours"), "{out}");
    let out = ssh("alice", &alice, &["cert", "--request", &id, "--ttl", "3h"]);
    assert!(out.stderr.contains("exceeds max_ttl"), "{out}");
    let out = ssh("alice", &alice, &["cert", "--request", &id]);
    assert_eq!(out.status, 0, "{out}");
    let cert = scratch.write("prod-cert.pub", &out.stdout);
    let info = cert_info(&cert);
    assert!(
        info.contains(&format!("Key ID: \"alice request={id}\"")),
        "{info}"
    );
    let (_, valid_before) = validity(&info);
    assert!(
        valid_before <= approved_at + 30 * 60 + 2,
        "inside the approved window: {info}"
    );
    assert!(info.contains("                root"), "{info}");

    // A denied request yields nothing; an expired one neither.
    let out = ssh(
        "alice",
        &alice,
        &[
            "request", "--role", "prod", "--ttl", "10m", "--reason", "CHG-8",
        ],
    );
    let denied = out.stdout_str().trim().to_string();
    let out = ssh("bob", &bob, &["deny", &denied]);
    assert!(out.stderr.contains("reason is required"), "{out}");
    let out = ssh(
        "bob",
        &bob,
        &["deny", &denied, "--reason", "'not during the freeze'"],
    );
    assert_eq!(out.status, 0, "{out}");
    let out = ssh("alice", &alice, &["cert", "--request", &denied]);
    assert!(out.stderr.contains("denied"), "{out}");

    let out = ssh(
        "alice",
        &alice,
        &[
            "request", "--role", "prod", "--ttl", "10m", "--reason", "CHG-9",
        ],
    );
    let expiring = out.stdout_str().trim().to_string();
    // Nobody decides within request_expiry: the CA's clock moves past it.
    server.ca.clock().advance(10 * 60 + 1);
    let out = ssh("bob", &bob, &["approve", &expiring]);
    assert!(out.stderr.contains("expired"), "{out}");
    let out = ssh("alice", &alice, &["cert", "--request", &expiring]);
    assert!(out.stderr.contains("expired"), "{out}");

    // Every step is in the audit log.
    let log = std::fs::read_to_string(server.ca.data_dir().join("audit.log")).unwrap();
    for event in [
        "request.created",
        "request.granted",
        "request.denied",
        "request.decision_refused",
    ] {
        assert!(log.contains(&format!("\"{event}\"")), "{event}");
    }
    let verify = server.ca.run(["audit", "verify"]);
    assert_eq!(verify.status, 0, "{verify}");
}

/// `ssh-ca host renew` against `server`, as a host would run it.
fn host_renew(
    server: &CaServer,
    ca_key: &Path,
    key: &Path,
    out: &Path,
    extra: &[&str],
) -> jitssh_tests::Output {
    let mut cmd = Command::new(jitssh_tests::project_bin("ssh-ca"));
    server.ca.clock().apply(&mut cmd);
    cmd.args([
        "host",
        "renew",
        "--ca",
        &format!("localhost:{}", server.port),
        "--ca-key",
    ])
    .arg(ca_key)
    .arg("--key")
    .arg(key)
    .arg("--out")
    .arg(out)
    .args(extra);
    run(&mut cmd)
}

#[test]
fn a_host_joins_renews_atomically_and_loses_renewal_when_removed() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let server = CaServer::start(
        scratch.path(),
        &policy(&[("alice", &alice, "\"dev\"")], ""),
        "",
    );
    let out = server.ca.run_ok([
        "host",
        "add",
        "web01",
        "--alias",
        "web01.example.com",
        "--ttl",
        "1h",
    ]);
    let token = out.stdout_str().lines().last().unwrap().trim().to_string();
    let host_ca = server.ca.ca_pub_file("host");
    let host_key = keygen(scratch.path(), "ssh_host_ed25519_key");
    let cert_path = scratch.file("ssh_host_ed25519_key-cert.pub");
    let renew =
        |extra: &[&str]| host_renew(&server, &host_ca, &host_key.private, &cert_path, extra);

    // A wrong token, then the right one; the token is then useless.
    let out = renew(&["--token", "jt-0000"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("invalid, spent or expired join token"),
        "{out}"
    );
    assert!(!cert_path.exists());
    let out = renew(&["--token", &token]);
    assert_eq!(out.status, 0, "{out}");
    let info = cert_info(&cert_path);
    assert!(
        info.contains("host certificate") && info.contains("web01.example.com"),
        "{info}"
    );
    let other_key = keygen(scratch.path(), "intruder_key");
    let intruder_cert = scratch.file("intruder-cert.pub");
    let out = host_renew(
        &server,
        &host_ca,
        &other_key.private,
        &intruder_cert,
        &["--token", &token],
    );
    assert_ne!(out.status, 0, "spent token: {out}");

    // sshd serves it; ssh with the @cert-authority line accepts it.
    let user_cert = server
        .ssh("alice", &alice)
        .args(["cert", "--principals", "alice"])
        .run();
    assert_eq!(user_cert.status, 0, "{user_cert}");
    let sshd = Sshd::builder()
        .host_key(&host_key.private)
        .host_cert(&cert_path)
        .trusted_user_ca(server.ca.ca_pub_file("user"))
        .start();
    let known = scratch.write(
        "known_hosts",
        format!(
            "@cert-authority web01 {}",
            std::fs::read_to_string(&host_ca).unwrap()
        ),
    );
    let root_cert = server.ca.sign(&alice, "user", "root", &[]);
    let out = Ssh::new(sshd.port())
        .user("root")
        .identity(&alice.private)
        .cert(&root_cert)
        .known_hosts(&known)
        .host("web01")
        .args(["echo", "host-cert-ok"])
        .run();
    assert_eq!(out.stdout_str(), "host-cert-ok\n", "{out}");

    // Fresh certificate: nothing to do. --force renews atomically, keeping the file mode.
    std::fs::set_permissions(&cert_path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let serial = field(&cert_info(&cert_path), "Serial:").to_string();
    let out = renew(&[]);
    assert_eq!(out.status, 0, "{out}");
    assert!(out.stdout_str().contains("nothing to do"), "{out}");
    let marker = scratch.file("reloaded");
    let out = renew(&[
        "--force",
        "--reload-cmd",
        &format!("touch {}", marker.display()),
    ]);
    assert_eq!(out.status, 0, "{out}");
    assert!(marker.exists(), "reload command ran");
    let renewed = cert_info(&cert_path);
    assert_ne!(field(&renewed, "Serial:"), serial);
    let mode = std::fs::metadata(&cert_path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "mode kept");

    // Renewed by itself once less than a third of its life is left (1h + 2m clock skew):
    // not after 35 minutes, after 41.
    let serial = field(&renewed, "Serial:").to_string();
    server.ca.clock().advance(35 * 60);
    let out = renew(&[]);
    assert!(out.stdout_str().contains("nothing to do"), "{out}");
    server.ca.clock().advance(6 * 60);
    let out = renew(&[]);
    assert_eq!(out.status, 0, "{out}");
    assert!(!out.stdout_str().contains("nothing to do"), "{out}");
    assert_ne!(field(&cert_info(&cert_path), "Serial:"), serial, "renewed");

    // Removed: renewal fails and the old certificate stays in place.
    server.ca.run_ok(["host", "remove", "web01"]);
    let before = std::fs::read(&cert_path).unwrap();
    let out = renew(&["--force"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("not enrolled"), "{out}");
    assert_eq!(std::fs::read(&cert_path).unwrap(), before);

    // A CA whose host certificate does not chain to the given host CA is refused.
    let wrong_ca = keygen(scratch.path(), "wrong_ca");
    let out = host_renew(
        &server,
        &wrong_ca.public,
        &host_key.private,
        &cert_path,
        &["--force"],
    );
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("not trusted"), "{out}");
}

#[test]
fn two_hundred_concurrent_cert_requests() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let server = CaServer::start(
        scratch.path(),
        &policy(&[("alice", &alice, "\"dev\"")], ""),
        "",
    );
    let lines: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..20)
            .map(|_| {
                scope.spawn(|| {
                    (0..10)
                        .map(|_| {
                            let out = server
                                .ssh("alice", &alice)
                                .args(["cert", "--ttl", "5m"])
                                .run();
                            assert_eq!(out.status, 0, "{out}");
                            out.stdout_str()
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    assert_eq!(lines.len(), 200);
    let mut serials = HashSet::new();
    for (i, line) in lines.iter().enumerate() {
        let path = scratch.write(format!("c{i}-cert.pub"), line);
        let serial: u64 = field(&cert_info(&path), "Serial:").parse().unwrap();
        assert!(serials.insert(serial), "serial {serial} twice");
    }
    let log = std::fs::read_to_string(server.ca.data_dir().join("audit.log")).unwrap();
    let audited: HashSet<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "cert.issued")
        .filter_map(|v| v["serial"].as_u64())
        .collect();
    assert!(serials.is_subset(&audited), "every certificate audited");
}

#[test]
fn garbage_stalls_and_connection_floods_leave_it_serving() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let server = CaServer::start(
        scratch.path(),
        &policy(&[("alice", &alice, "\"dev\"")], ""),
        "[limits]\nhandshake_timeout = \"2s\"\nmax_connections = 64\n",
    );
    let addr = format!("127.0.0.1:{}", server.port);

    // Garbage: the server answers with its banner and hangs up; no crash.
    let mut garbage = TcpStream::connect(&addr).unwrap();
    garbage
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let noise: Vec<u8> = (0..64 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let _ = garbage.write_all(&noise);
    let mut sink = Vec::new();
    let _ = garbage.read_to_end(&mut sink);

    // A stalled handshake is dropped after the handshake timeout.
    let mut stalled = TcpStream::connect(&addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let _ = stalled.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "stalled connection was dropped"
    );
    assert!(String::from_utf8_lossy(&buf).starts_with("SSH-2.0-"));

    // 500 quick connect/disconnects.
    for _ in 0..500 {
        if let Ok(stream) = TcpStream::connect(&addr) {
            drop(stream);
        }
    }
    wait_for(
        || server.ssh("alice", &alice).args(["whoami"]).run().status == 0,
        Duration::from_secs(20),
        "the API to serve again",
    );
    let out = server.ssh("alice", &alice).args(["cert"]).run();
    assert_eq!(out.status, 0, "{out}");
    let mut daemon = server.daemon;
    assert_eq!(daemon.exit_status(), None, "still running");
}

#[test]
fn sighup_reloads_the_policy_and_keeps_the_old_one_when_broken() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let mut server = CaServer::start(
        scratch.path(),
        &policy(&[("alice", &alice, "\"dev\"")], ""),
        "",
    );
    let policy_path = scratch.file("policy.toml");
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--principals", "root"])
        .run();
    assert_ne!(out.status, 0, "{out}");

    std::fs::write(
        &policy_path,
        policy(&[("alice", &alice, "\"dev\", \"lead\", \"ops\"")], ""),
    )
    .unwrap();
    server.hangup();
    let log = server
        .daemon
        .wait_for_log("policy reloaded", Duration::from_secs(10));
    assert!(
        log.lines()
            .any(|l| l.contains("policy reloaded") && l.contains("users=1 roles=4")),
        "the reload says what it loaded: {log}"
    );
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--principals", "root", "--reason", "x"])
        .run();
    assert_eq!(out.status, 0, "new policy in force: {out}");

    std::fs::write(
        &policy_path,
        "[[roles]]\nname = \"broken\"\nmax_ttl = \"forever\"\n",
    )
    .unwrap();
    server.hangup();
    let log = server
        .daemon
        .wait_for_log("policy reload refused", Duration::from_secs(10));
    assert!(log.contains("policy.toml"), "the error names the file");
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--principals", "root", "--reason", "x"])
        .run();
    assert_eq!(out.status, 0, "old policy kept: {out}");
}

/// Each identity runs only its own commands, and the CA re-checks the person's certificate
/// before minting a session certificate for a bastion.
#[test]
fn identities_are_confined_and_session_certificates_are_rechecked() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let bastion = keygen(scratch.path(), "bastion_id");
    let stranger = keygen(scratch.path(), "stranger");
    let server = CaServer::start(
        scratch.path(),
        &policy(&[("alice", &alice, "\"dev\"")], ""),
        &format!("bastion_keys = [\"{}\"]\n", bastion.public_line()),
    );
    // Only a listed key is the bastion; users and hosts cannot ask for session certificates.
    let out = server.ssh("bastion", &stranger).args(["ca-keys"]).run();
    assert_eq!(out.status, 255, "unlisted bastion key: {out}");
    let out = server
        .ssh("alice", &alice)
        .args([
            "session-cert",
            "--login",
            "deploy",
            "--target",
            "web01",
            "--session",
            "s",
        ])
        .run();
    assert!(
        out.stderr
            .contains("session-cert is for the bastion's identity"),
        "{out}"
    );
    let out = server.ssh("host", &stranger).args(["cert"]).run();
    assert!(out.stderr.contains("as user `host` you may run"), "{out}");
    let out = server.ssh("bastion", &bastion).args(["cert"]).run();
    assert!(
        out.stderr.contains("as user `bastion` you may run"),
        "{out}"
    );

    let user_cert = server.ssh("alice", &alice).args(["cert"]).run();
    assert_eq!(user_cert.status, 0, "{user_cert}");
    let session_key = keygen(scratch.path(), "session");
    let ask = |cert_line: &[u8], login: &str, target: &str| {
        let mut stdin = cert_line.to_vec();
        stdin.extend_from_slice(session_key.public_line().as_bytes());
        stdin.push(b'\n');
        server
            .ssh("bastion", &bastion)
            .stdin(stdin)
            .args([
                "session-cert",
                "--login",
                login,
                "--target",
                target,
                "--session",
                "s-1",
                "--client",
                "127.0.0.1",
                "--source-address",
                "127.0.0.1",
            ])
            .run()
    };
    let out = ask(&user_cert.stdout, "deploy", "web01");
    assert_eq!(out.status, 0, "{out}");
    let cert = scratch.write("session-cert.pub", &out.stdout);
    let info = cert_info(&cert);
    assert!(
        info.contains("Key ID: \"alice session=s-1 serial="),
        "{info}"
    );
    assert!(info.contains("source-address 127.0.0.1"), "{info}");

    let out = ask(&user_cert.stdout, "deploy", "db01");
    assert!(
        out.stderr.contains("does not grant deploy@db01"),
        "target outside the grant: {out}"
    );
    let out = ask(&user_cert.stdout, "root", "web01");
    assert!(
        out.stderr.contains("is not a principal"),
        "login outside the principals: {out}"
    );
    let rogue = keygen(scratch.path(), "rogue_ca");
    let forged = jitssh_tests::keygen_sign(
        &rogue.private,
        &alice.public,
        &jitssh_tests::SignOpts::user("alice", &["deploy"]).output(scratch.file("forged-cert.pub")),
    );
    let out = ask(&std::fs::read(&forged).unwrap(), "deploy", "web01");
    assert!(out.stderr.contains("untrusted CA"), "another CA: {out}");
    let serial = field(
        &cert_info(&scratch.write("alice-cert.pub", &user_cert.stdout)),
        "Serial:",
    )
    .to_string();
    server.ca.run_ok(["revoke", "--serial", &serial]);
    let out = ask(&user_cert.stdout, "deploy", "web01");
    assert!(out.stderr.contains("revoked"), "revoked: {out}");
}

/// `ssh` as a person runs it (no BatchMode), so it comes back to hear why it was refused.
fn interactive(server: &CaServer, user: &str, key: &KeyPair) -> Ssh {
    server.ssh(user, key).option("BatchMode=no")
}

fn audit_events(server: &CaServer, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(server.ca.data_dir().join("audit.log"))
        .unwrap()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == kind)
        .collect()
}

/// A revoked key neither logs in to the CA API nor gets certified (given on stdin, signed
/// offline, or as a host key), and a user whose name is a revoked key id cannot log in; each
/// refusal says why and is audited.
#[test]
fn a_revoked_key_gets_no_login_and_no_certificate() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let erin = keygen(scratch.path(), "erin");
    let carol = keygen(scratch.path(), "carol");
    let server = CaServer::start(
        scratch.path(),
        &policy(
            &[
                ("alice", &alice, "\"dev\""),
                ("erin", &erin, "\"dev\""),
                ("carol", &carol, "\"dev\""),
            ],
            "",
        ),
        "",
    );
    let out = server.ssh("erin", &erin).args(["cert"]).run();
    assert_eq!(out.status, 0, "before revocation: {out}");

    let mut revoke = server
        .ca
        .cmd(["revoke", "--reason", "laptop-stolen", "--key"]);
    revoke.arg(&erin.public);
    run_ok(&mut revoke);

    // erin's key no longer logs in, and she is told why.
    let out = interactive(&server, "erin", &erin).args(["cert"]).run();
    assert_eq!(out.status, 255, "{out}");
    assert!(
        out.stderr.contains("is revoked: laptop-stolen"),
        "explains: {out}"
    );
    // Nobody can have erin's key certified (stdin).
    let out = server
        .ssh("alice", &alice)
        .stdin(std::fs::read(&erin.public).unwrap())
        .args(["cert", "--principals", "alice"])
        .run();
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("is revoked"), "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    // Nor offline.
    let mut sign = server.ca.cmd([
        "sign",
        "--user",
        "--principals",
        "root",
        "--ttl",
        "5m",
        "--key",
    ]);
    sign.arg(&erin.public);
    let out = run(&mut sign);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("is revoked"), "{out}");

    // A revoked key id naming the person refuses the person.
    server
        .ca
        .run_ok(["revoke", "--key-id", "carol", "--reason", "left"]);
    let out = interactive(&server, "carol", &carol).args(["whoami"]).run();
    assert_eq!(out.status, 255, "{out}");
    assert!(
        out.stderr.contains("key id \"carol\" is revoked: left"),
        "{out}"
    );

    // A revoked host key cannot renew (nor log in as host).
    let token = server
        .ca
        .run_ok(["host", "add", "web01"])
        .stdout_str()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let host_key = keygen(scratch.path(), "ssh_host_ed25519_key");
    let out = server.ssh("host", &host_key).args(["join", &token]).run();
    assert_eq!(out.status, 0, "{out}");
    let mut revoke = server.ca.cmd(["revoke", "--key"]);
    revoke.arg(&host_key.public);
    run_ok(&mut revoke);
    let out = interactive(&server, "host", &host_key)
        .args(["host-cert"])
        .run();
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("is revoked"), "{out}");

    // alice is unaffected; every refusal is audited.
    let out = server.ssh("alice", &alice).args(["cert"]).run();
    assert_eq!(out.status, 0, "{out}");
    let refused = audit_events(&server, "api.login_refused");
    assert!(
        refused
            .iter()
            .any(|e| e["user"] == "erin" && e["reason"].as_str().unwrap().contains("revoked")),
        "{refused:?}"
    );
    assert!(refused.iter().any(|e| e["user"] == "carol"), "{refused:?}");
    let denied = audit_events(&server, "cert.denied");
    assert!(
        denied
            .iter()
            .filter(|e| e["reason"].as_str().unwrap_or("").contains("is revoked"))
            .count()
            >= 2,
        "{denied:?}"
    );
    let verify = server.ca.run(["audit", "verify"]);
    assert_eq!(verify.status, 0, "{verify}");
}

/// alice cannot have bob's enrolled key certified (bob would then log in recorded as alice);
/// an unknown key is told it is not enrolled instead of a bare "Permission denied".
#[test]
fn another_persons_key_is_not_certified_and_unknown_keys_are_told_why() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let bob = keygen(scratch.path(), "bob");
    let stranger = keygen(scratch.path(), "stranger");
    let server = CaServer::start(
        scratch.path(),
        &policy(
            &[("alice", &alice, "\"dev\""), ("bob", &bob, "\"dev\"")],
            "",
        ),
        "",
    );
    let out = server
        .ssh("alice", &alice)
        .stdin(std::fs::read(&bob.public).unwrap())
        .args(["cert", "--principals", "alice"])
        .run();
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("is enrolled for another user"), "{out}");
    assert!(
        !out.stderr.contains("bob"),
        "does not name the owner: {out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
    let denied = audit_events(&server, "cert.denied");
    assert!(
        denied
            .iter()
            .any(|e| e["user"] == "alice" && e["owner"] == "bob"),
        "{denied:?}"
    );

    let out = interactive(&server, "stranger", &stranger)
        .args(["cert"])
        .run();
    assert_eq!(out.status, 255, "{out}");
    assert!(out.stderr.contains("is not enrolled for stranger"), "{out}");
    let out = interactive(&server, "bob", &alice).args(["cert"]).run();
    assert_eq!(out.status, 255, "{out}");
    assert!(out.stderr.contains("is not enrolled for bob"), "{out}");
    // Unknown keys (anyone can make them up) are audited once per source and window, then
    // summed up: no fsync per attempt.
    for _ in 0..5 {
        let stranger = keygen(scratch.path(), "stranger2");
        let out = server.ssh("stranger", &stranger).args(["cert"]).run();
        assert_eq!(out.status, 255, "{out}");
        std::fs::remove_file(&stranger.private).unwrap();
        std::fs::remove_file(&stranger.public).unwrap();
    }
    let refused = audit_events(&server, "api.login_refused");
    let strangers: Vec<_> = refused.iter().filter(|e| e["user"] == "stranger").collect();
    assert_eq!(strangers.len(), 1, "{refused:?}");
    let mut server = server;
    server.daemon.stop();
    let summary: Vec<_> = audit_events(&server, "api.login_refused")
        .into_iter()
        .filter(|e| e["summary"] == true)
        .collect();
    assert_eq!(summary.len(), 1, "{summary:?}");
    assert!(summary[0]["refused"].as_u64().unwrap() >= 5, "{summary:?}");
}

/// An approval mints one certificate by default (a second needs a new approval); a role may
/// allow a few with `certificates_per_approval`.
#[test]
fn an_approval_mints_a_bounded_number_of_certificates() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let bob = keygen(scratch.path(), "bob");
    let twice = "\n[[roles]]\nname = \"twice\"\nlogins = [\"root\"]\nmax_ttl = \"1h\"\napprovals = 1\napprovers = [\"lead\"]\ncertificates_per_approval = 2\n";
    let server = CaServer::start(
        scratch.path(),
        &policy(
            &[
                ("alice", &alice, "\"prod\", \"twice\""),
                ("bob", &bob, "\"lead\""),
            ],
            twice,
        ),
        "",
    );
    let approved = |role: &str| {
        let out = server
            .ssh("alice", &alice)
            .args([
                "request", "--role", role, "--ttl", "30m", "--reason", "CHG-1",
            ])
            .run();
        assert_eq!(out.status, 0, "{out}");
        let id = out.stdout_str().trim().to_string();
        let out = server.ssh("bob", &bob).args(["approve", &id]).run();
        assert_eq!(out.status, 0, "{out}");
        id
    };
    let cert = |id: &str| {
        server
            .ssh("alice", &alice)
            .args(["cert", "--request", id])
            .run()
    };

    let once = approved("prod");
    // A refused attempt (ttl too long) does not use the approval up.
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--request", &once, "--ttl", "3h"])
        .run();
    assert_ne!(out.status, 0, "{out}");
    let out = cert(&once);
    assert_eq!(out.status, 0, "first certificate: {out}");
    let out = cert(&once);
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("already used for its 1 certificate"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");

    let id = approved("twice");
    for n in 0..2 {
        let out = cert(&id);
        assert_eq!(out.status, 0, "certificate {n}: {out}");
    }
    let out = cert(&id);
    assert!(
        out.stderr.contains("already used for its 2 certificates"),
        "{out}"
    );
    let denied = audit_events(&server, "cert.denied");
    assert!(
        denied
            .iter()
            .any(|e| e["reason"].as_str().unwrap_or("").contains("already used")),
        "{denied:?}"
    );
}

/// Join tokens cannot be sprayed: after a few failures a source is told to retry later
/// without the store being consulted, failures are audited in aggregate, and the token of a
/// successful join appears neither in the CA's log nor in its audit log.
#[test]
fn join_spraying_is_rate_limited_and_tokens_stay_out_of_logs() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let server = CaServer::start(
        scratch.path(),
        &policy(&[("alice", &alice, "\"dev\"")], ""),
        "",
    );
    let token = server
        .ca
        .run_ok(["host", "add", "web01"])
        .stdout_str()
        .lines()
        .last()
        .unwrap()
        .trim()
        .to_string();
    let host_key = keygen(scratch.path(), "ssh_host_ed25519_key");
    let out = server.ssh("host", &host_key).args(["join", &token]).run();
    assert_eq!(out.status, 0, "{out}");
    let log = server.daemon.log();
    assert!(!log.contains(&token), "the CA log holds the token: {log}");
    assert!(log.contains("join jt-<redacted"), "{log}");
    let audit = std::fs::read_to_string(server.ca.data_dir().join("audit.log")).unwrap();
    assert!(!audit.contains(&token), "the audit log holds the token");

    let sprayer = keygen(scratch.path(), "sprayer");
    let mut invalid = 0;
    let mut limited = 0;
    for i in 0..12 {
        let guess = format!("jt-{i:048x}");
        let out = server.ssh("host", &sprayer).args(["join", &guess]).run();
        assert_ne!(out.status, 0, "{out}");
        if out.stderr.contains("invalid, spent or expired join token") {
            invalid += 1;
        } else if out.stderr.contains("too many failed joins, retry in") {
            limited += 1;
        } else {
            panic!("unexpected answer: {out}");
        }
    }
    assert_eq!((invalid, limited), (5, 7), "5 tries, then refused");
    let denied = audit_events(&server, "host.join_denied");
    assert_eq!(denied.len(), 1, "one record opens the window: {denied:?}");
    assert!(audit_events(&server, "host.join_refused").is_empty());
    // The rest of the window is summed up in one record (here when the CA stops).
    let mut server = server;
    server.daemon.stop();
    let denied = audit_events(&server, "host.join_denied");
    assert_eq!(denied.len(), 2, "{denied:?}");
    assert_eq!(
        (&denied[1]["refused"], &denied[1]["rate_limited"]),
        (&serde_json::json!(4), &serde_json::json!(7)),
        "{denied:?}"
    );
}
