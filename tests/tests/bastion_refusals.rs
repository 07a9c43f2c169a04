//! What `ssh-bastion` refuses, each for its own reason, told to a real `ssh` user on stderr
//! and written to the audit log.

use std::time::Duration;

use jitssh_tests::{
    Bastion, CaFixture, KeyPair, Output, Scratch, SignOpts, Sshd, keygen, keygen_sign, run_ok,
    target, user,
};

const HINT: &str =
    "this bastion accepts certificates only; get one with: ssh -p 2200 <you>@<ca> cert";

struct World {
    scratch: Scratch,
    ca: CaFixture,
    bastion: Bastion,
    _targets: Vec<Sshd>,
}

/// A bastion with `web01` (good), `db01` (good, outside the usual grant), and the extra
/// targets `extra` returns (name, sshd).
fn world(extra: impl FnOnce(&CaFixture, &Scratch) -> Vec<(&'static str, Sshd)>) -> World {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let mut targets = vec![
        ("web01", target(&ca, scratch.path(), "web01", |b| b)),
        ("db01", target(&ca, scratch.path(), "db01", |b| b)),
    ];
    targets.extend(extra(&ca, &scratch));
    let addresses: Vec<(&str, String)> = targets
        .iter()
        .map(|(name, sshd)| (*name, format!("127.0.0.1:{}", sshd.port())))
        .collect();
    let bastion = Bastion::start(&ca, &addresses, "");
    World {
        scratch,
        ca,
        bastion,
        _targets: targets.into_iter().map(|(_, sshd)| sshd).collect(),
    }
}

fn plain_world() -> World {
    world(|_, _| Vec::new())
}

impl World {
    /// A person with a good certificate: `root` on `web*`.
    fn alice(&self) -> KeyPair {
        user(
            &self.ca,
            self.scratch.path(),
            "alice",
            &["root"],
            &["web*"],
            &[],
        )
    }

    /// `ssh USER@bastion echo hi` as an interactive user would run it (no BatchMode, so the
    /// client comes back to hear why it was refused).
    fn try_login(&self, user: &str, key: &KeyPair, with_cert: bool) -> Output {
        let mut ssh = jitssh_tests::Ssh::new(self.bastion.port)
            .option("BatchMode=no")
            .user(user)
            .identity(&key.private)
            .args(["echo", "hi"]);
        if with_cert {
            ssh = ssh.cert(key.cert_path());
        }
        ssh.run()
    }
}

fn assert_refused(out: &Output, reason: &str) {
    assert_eq!(out.status, 255, "refused: {out}");
    assert!(out.stdout.is_empty(), "nothing ran: {out}");
    assert!(
        out.stderr.contains(reason),
        "stderr names the reason {reason:?}: {out}"
    );
}

fn assert_audited_refusal(bastion: &Bastion, reason: &str) {
    let audit = bastion.wait_for_audit(reason, Duration::from_secs(5));
    let line = audit
        .lines()
        .find(|l| l.contains(reason))
        .expect("audit line");
    assert!(line.contains("\"event\":\"login.refused\""), "{line}");
    assert!(!audit.contains("login.accepted"), "{audit}");
}

#[test]
fn a_plain_key_is_told_to_get_a_certificate() {
    let w = plain_world();
    let key = keygen(w.scratch.path(), "plain");
    let out = w.try_login("root@web01", &key, false);
    assert_refused(&out, HINT);
    assert_audited_refusal(&w.bastion, "certificates only");
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let w = plain_world();
    let other_ca = keygen(w.scratch.path(), "other_ca");
    let key = keygen(w.scratch.path(), "mallory");
    let grant = jitssh_tests::grant("ops", &["root"], &["*"]);
    keygen_sign(
        &other_ca.private,
        &key.public,
        &SignOpts::user("mallory", &["root"])
            .validity("-5m:+1h")
            .option(&format!("extension:{grant}")),
    );
    let out = w.try_login("root@web01", &key, true);
    assert_refused(&out, "certificate signed by an untrusted CA");
    assert_audited_refusal(&w.bastion, "untrusted CA");
}

#[test]
fn a_host_certificate_is_not_a_user_certificate() {
    let w = plain_world();
    let key = keygen(w.scratch.path(), "sneaky");
    // Signed by the *user* CA, so only the type is wrong. OpenSSH's client will not even
    // offer a host certificate for user authentication; PuTTY does.
    let cert = keygen_sign(
        &w.ca.data_dir().join("user_ca"),
        &key.public,
        &SignOpts::host("sneaky", &["root"]).validity("-5m:+1h"),
    );
    let mut plink = w.bastion.plink("root@web01", &key, &cert);
    let out = jitssh_tests::run(plink.arg("echo").arg("hi"));
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr
            .contains("host certificate presented where a user certificate is required"),
        "{out}"
    );
    assert_audited_refusal(&w.bastion, "host certificate presented");
}

#[test]
fn an_expired_certificate_is_refused() {
    let w = plain_world();
    // A 1s certificate from a CA whose clock is an hour behind: expired an hour ago by the
    // real clock russh checks with.
    w.ca.clock().advance(-3600);
    let key = user(
        &w.ca,
        w.scratch.path(),
        "late",
        &["root"],
        &["web*"],
        &["--ttl", "1s"],
    );
    w.ca.clock().advance(3600);
    let out = w.try_login("root@web01", &key, true);
    assert_refused(&out, "certificate expired at");
    assert_audited_refusal(&w.bastion, "certificate expired at");
}

#[test]
fn a_revoked_certificate_is_refused() {
    let w = plain_world();
    let alice = w.alice();
    let out = w.try_login("root@web01", &alice, true);
    assert!(out.success(), "valid before revocation: {out}");
    let info = jitssh_tests::cert_info(&alice.cert_path());
    let serial = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial: "))
        .expect("serial")
        .to_owned();
    run_ok(
        &mut w
            .ca
            .cmd(["revoke", "--serial", &serial, "--reason", "laptop stolen"]),
    );
    let out = w.try_login("root@web01", &alice, true);
    assert_refused(&out, "revoked");
    let audit = w.bastion.wait_for_audit("revoked", Duration::from_secs(5));
    assert!(audit.contains("\"event\":\"login.refused\""), "{audit}");
}

#[test]
fn a_login_outside_the_principals_is_refused() {
    let w = plain_world();
    let alice = w.alice();
    let out = w.try_login("nobody@web01", &alice, true);
    assert_refused(&out, "\"nobody\" is not a principal of this certificate");
    assert_audited_refusal(&w.bastion, "is not a principal");
}

#[test]
fn a_target_outside_the_grant_is_refused() {
    let w = plain_world();
    let alice = w.alice();
    let out = w.try_login("root@db01", &alice, true);
    assert_refused(
        &out,
        "certificate does not grant login \"root\" on target \"db01\"",
    );
    assert_audited_refusal(&w.bastion, "does not grant");
}

#[test]
fn an_unknown_target_is_refused() {
    let w = plain_world();
    let alice = w.alice();
    let out = w.try_login("root@web99", &alice, true);
    assert_refused(&out, "unknown target \"web99\"");
    assert_audited_refusal(&w.bastion, "unknown target");
}

#[test]
fn a_certificate_without_a_grant_is_refused() {
    let w = plain_world();
    let key = keygen(w.scratch.path(), "nogrant");
    w.ca.sign(&key, "user", "root", &["--extension", "permit-pty"]);
    let out = w.try_login("root@web01", &key, true);
    assert_refused(&out, "carries no grant");
    assert_audited_refusal(&w.bastion, "carries no grant");
}

#[test]
fn a_source_address_mismatch_is_refused() {
    let w = plain_world();
    let key = user(
        &w.ca,
        w.scratch.path(),
        "remote",
        &["root"],
        &["web*"],
        &["--source-address", "10.9.9.0/24"],
    );
    let out = w.try_login("root@web01", &key, true);
    assert_refused(
        &out,
        "source-address \"10.9.9.0/24\" does not allow 127.0.0.1",
    );
    assert_audited_refusal(&w.bastion, "source-address");
}

#[test]
fn garbage_user_strings_are_refused_cleanly() {
    let w = plain_world();
    let alice = w.alice();
    let huge = format!("root@{}", "w".repeat(5000));
    for (user, reason) in [
        ("root@web 01", "invalid target name"),
        (huge.as_str(), "user string longer than"),
        ("ro%ot@web01", "invalid login \"ro%ot\""),
    ] {
        let out = w.try_login(user, &alice, true);
        assert_refused(&out, reason);
    }
    // A login without a target is a jump login (`ssh -J`, see bastion_proxyjump): it opens
    // no session, and says how to use it.
    let out = w
        .bastion
        .ssh("root", &alice)
        .option("LogLevel=INFO")
        .args(["echo", "hi"])
        .run();
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(
        out.stderr
            .contains("a jump login (no target) opens no session: use ssh -J"),
        "{out}"
    );
    // Still serving.
    let out = w
        .bastion
        .ssh("root@web01", &alice)
        .args(["echo", "ok"])
        .run();
    assert_eq!(out.stdout_str(), "ok\n", "{out}");
}

/// Targets whose host identity is wrong: the login is fine, the session is refused.
#[test]
fn targets_must_present_a_host_certificate_from_our_ca_naming_them() {
    let w = world(|ca, scratch| {
        let foreign_ca = keygen(scratch.path(), "foreign_host_ca");
        let foreign_key = keygen(scratch.path(), "web02_host_key");
        let foreign_cert = keygen_sign(
            &foreign_ca.private,
            &foreign_key.public,
            &SignOpts::host("web02", &["web02"]).validity("-5m:+1h"),
        );
        let web02 = Sshd::builder()
            .host_key(&foreign_key.private)
            .host_cert(foreign_cert)
            .trusted_user_ca(ca.ca_pub_file("target"))
            .start();
        let misnamed_key = keygen(scratch.path(), "web03_host_key");
        ca.sign(&misnamed_key, "host", "web99", &["--ttl", "1h"]);
        let web03 = Sshd::builder()
            .host_key(&misnamed_key.private)
            .host_cert(misnamed_key.cert_path())
            .trusted_user_ca(ca.ca_pub_file("target"))
            .start();
        let web04 = Sshd::builder()
            .trusted_user_ca(ca.ca_pub_file("target"))
            .start();
        vec![("web02", web02), ("web03", web03), ("web04", web04)]
    });
    let alice = w.alice();
    for (target, reason) in [
        (
            "web02",
            "host certificate of target web02 refused: certificate signed by an untrusted CA",
        ),
        (
            "web03",
            "host certificate of target web03 refused: \"web03\" is not a principal",
        ),
        ("web04", "target web04 presented a plain host key (SHA256:"),
    ] {
        let out = w
            .bastion
            .ssh(&format!("root@{target}"), &alice)
            .args(["echo", "hi"])
            .run();
        assert_refused(&out, reason);
        w.bastion
            .wait_for_audit(&format!("\"target\":\"{target}\""), Duration::from_secs(5));
    }
    let audit = w.bastion.audit();
    assert_eq!(
        audit.matches("\"event\":\"session.target_failed\"").count(),
        3,
        "{audit}"
    );
    assert!(!audit.contains("\"event\":\"session.start\""), "{audit}");
    // The good target still works.
    let out = w
        .bastion
        .ssh("root@web01", &alice)
        .args(["echo", "hi"])
        .run();
    assert_eq!(out.stdout_str(), "hi\n", "{out}");
}

#[test]
fn ssh_minus_l_is_refused_with_a_message_when_not_permitted() {
    let w = plain_world();
    let alice = w.alice();
    let local = jitssh_tests::free_port();
    // LogLevel INFO, ssh's default: that is where it reports refused channels.
    let mut ssh = w
        .bastion
        .ssh("root@web01", &alice)
        .option("LogLevel=INFO")
        .flag("-L")
        .flag(format!("127.0.0.1:{local}:127.0.0.1:22"))
        .args(["sleep", "3"])
        .command();
    let child = ssh
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    // Connect to the forwarded port once ssh listens; the bastion refuses the channel.
    jitssh_tests::wait_for(
        || std::net::TcpStream::connect(("127.0.0.1", local)).is_ok(),
        Duration::from_secs(10),
        "ssh -L to listen",
    );
    let out = child.wait_with_output().expect("ssh output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("open failed: administratively prohibited: bastion: port forwarding is not permitted by the bastion's policy"),
        "{stderr}"
    );
    let audit = w
        .bastion
        .wait_for_audit("direct-tcpip", Duration::from_secs(5));
    assert!(audit.contains("\"event\":\"session.denied\""), "{audit}");
}
