//! Self-tests proving the harness drives real sshd/ssh correctly.

use jitssh_tests::{Scratch, SignOpts, Ssh, Sshd, keygen, keygen_sign};

/// User certificate auth: exit codes and stdout come through, sshd logs it.
#[test]
fn user_cert_login_and_exit_codes() {
    let scratch = Scratch::new();
    let ca = keygen(scratch.path(), "user_ca");
    let user = keygen(scratch.path(), "alice");
    let cert = keygen_sign(
        &ca.private,
        &user.public,
        &SignOpts::user("alice", &["root"]),
    );

    let sshd = Sshd::builder().trusted_user_ca(&ca.public).start();
    let ssh = Ssh::new(sshd.port())
        .user("root")
        .identity(&user.private)
        .cert(&cert);

    let out = ssh.clone().args(["echo", "hi"]).run();
    assert_eq!(out.status, 0, "{out}");
    assert_eq!(out.stdout_str(), "hi\n");

    let out = ssh.clone().args(["exit 3"]).run();
    assert_eq!(out.status, 3, "{out}");

    let out = ssh.clone().stdin("piped\n").args(["cat"]).run();
    assert_eq!(out.stdout_str(), "piped\n", "{out}");

    let log = sshd.log();
    assert!(log.contains("Accepted publickey for root"), "{log}");
    assert!(log.contains("ID alice (serial 0)"), "{log}");

    // A certificate from a CA the server does not trust is rejected.
    let rogue = keygen(scratch.path(), "rogue_ca");
    let bad = keygen_sign(
        &rogue.private,
        &user.public,
        &SignOpts::user("mallory", &["root"]).output(scratch.file("bad-cert.pub")),
    );
    let out = Ssh::new(sshd.port())
        .user("root")
        .identity(&user.private)
        .cert(&bad)
        .args(["true"])
        .run();
    assert_eq!(out.status, 255, "{out}");
    assert!(out.stderr.contains("Permission denied"), "{out}");
}

/// Host certificates: strict checking succeeds only when the cert names the host.
#[test]
fn host_cert_checked_against_cert_authority() {
    let scratch = Scratch::new();
    let host_ca = keygen(scratch.path(), "host_ca");
    let host_key = keygen(scratch.path(), "host_key");
    let user_ca = keygen(scratch.path(), "user_ca");
    let user = keygen(scratch.path(), "user");
    let user_cert = keygen_sign(
        &user_ca.private,
        &user.public,
        &SignOpts::user("u", &["root"]),
    );
    let known_hosts = scratch.write(
        "known_hosts",
        format!("@cert-authority web01 {}\n", host_ca.public_line()),
    );

    let good = keygen_sign(
        &host_ca.private,
        &host_key.public,
        &SignOpts::host("web01", &["web01"]).output(scratch.file("web01-cert.pub")),
    );
    let other = keygen_sign(
        &host_ca.private,
        &host_key.public,
        &SignOpts::host("other", &["other"]).output(scratch.file("other-cert.pub")),
    );

    let connect = |sshd: &Sshd| {
        Ssh::new(sshd.port())
            .user("root")
            .identity(&user.private)
            .cert(&user_cert)
            .known_hosts(&known_hosts)
            .host("web01")
            .args(["echo", "ok"])
            .run()
    };

    let start = |cert| {
        Sshd::builder()
            .host_key(&host_key.private)
            .host_cert(cert)
            .trusted_user_ca(&user_ca.public)
            .start()
    };

    let sshd = start(&good);
    let out = connect(&sshd);
    assert_eq!(
        (out.status, out.stdout_str().as_str()),
        (0, "ok\n"),
        "{out}"
    );
    drop(sshd);

    let sshd = start(&other);
    let out = connect(&sshd);
    assert_eq!(out.status, 255, "{out}");
    assert!(
        out.stderr.contains("name is not a listed principal"),
        "{out}"
    );
    assert!(out.stderr.contains("Host key verification failed"), "{out}");
}

/// A bad config is reported with sshd's own complaint.
#[test]
#[should_panic(expected = "invalid sshd config")]
fn invalid_config_panics() {
    Sshd::builder().config("NoSuchKeyword yes").start();
}

/// The test clock moves what the project binaries see: a certificate signed with the CA's
/// clock a day ahead starts (minus the CA's clock skew allowance) a day ahead.
#[test]
fn test_clock_moves_the_binaries_clock() {
    let scratch = Scratch::new();
    let ca = jitssh_tests::CaFixture::init(scratch.path(), "");
    let key = keygen(scratch.path(), "alice");
    let unix = |text: &str| -> i64 {
        let out =
            jitssh_tests::run_ok(std::process::Command::new("date").args(["-d", text, "+%s"]));
        out.stdout_str().trim().parse().expect("date +%s")
    };
    let valid_before = |cert: &std::path::Path| -> i64 {
        let info = jitssh_tests::cert_info(cert);
        let valid = info
            .lines()
            .find_map(|l| l.trim().strip_prefix("Valid: from "))
            .expect("Valid line");
        unix(valid.split_whitespace().nth(2).expect("to TIME"))
    };
    let cert = ca.sign(&key, "user", "root", &["--ttl", "1h"]);
    let now = valid_before(&cert);
    ca.clock().advance(86_400);
    assert_eq!(ca.clock().offset(), 86_400);
    let cert = ca.sign(&key, "user", "root", &["--ttl", "1h"]);
    let later = valid_before(&cert);
    assert!(
        (86_400..86_400 + 60).contains(&(later - now)),
        "{now} -> {later}"
    );
}
