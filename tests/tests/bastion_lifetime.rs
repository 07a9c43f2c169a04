//! A session lives as long as the certificate behind it: cut when it expires (after a
//! warning) or is revoked, and the audit log says why.

use std::time::{Duration, Instant};

use jitssh_tests::{Bastion, Scratch, run_ok, target, user};

#[test]
fn a_session_is_cut_when_its_certificate_expires() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    // Valid for 6 s from now (the CA backdates the start for clock skew, not the end).
    let alice = user(
        &ca,
        scratch.path(),
        "alice",
        &["root"],
        &["web*"],
        &["--ttl", "6s"],
    );
    let started = Instant::now();
    let out = bastion
        .ssh("root@web01", &alice)
        .args(["sleep", "60"])
        .timeout(Duration::from_secs(30))
        .run();
    let lasted = started.elapsed();
    assert_eq!(out.status, 255, "{out}");
    assert!(
        lasted < Duration::from_secs(15),
        "cut after {lasted:?}: {out}"
    );
    assert!(
        out.stderr.contains("[bastion] your certificate expires in"),
        "warned first: {out}"
    );
    assert!(
        out.stderr
            .contains("session ended: your certificate expired"),
        "told why: {out}"
    );
    let audit = bastion.wait_for_audit("\"event\":\"session.end\"", Duration::from_secs(5));
    let end = audit
        .lines()
        .find(|l| l.contains("\"event\":\"session.end\""))
        .expect("end record");
    assert!(
        end.contains("\"reason\":\"your certificate expired\""),
        "{end}"
    );
    assert!(audit.contains("session.expiry_warning"), "{audit}");
}

#[test]
fn a_session_is_cut_when_its_certificate_is_revoked() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        "[session]\nrevocation_check = \"1s\"\n",
    );
    let session = bastion
        .ssh("root@web01", &alice)
        .args(["sleep", "60"])
        .spawn();
    bastion.wait_for_audit("\"command\":\"sleep 60\"", Duration::from_secs(10));
    run_ok(&mut ca.cmd(["revoke", "--key-id", "alice", "--reason", "offboarded"]));
    let stderr = session.wait_ended_within(Instant::now(), Duration::from_secs(15));
    assert!(
        stderr.contains("session ended: your certificate was revoked"),
        "{stderr}"
    );
    let audit = bastion.wait_for_audit("\"event\":\"session.end\"", Duration::from_secs(5));
    assert!(audit.contains("your certificate was revoked"), "{audit}");
}

#[test]
fn stopping_the_bastion_ends_sessions_with_a_reason() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let mut bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let child = bastion
        .ssh("root@web01", &alice)
        .args(["sleep", "60"])
        .command()
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ssh");
    bastion.wait_for_audit("\"command\":\"sleep 60\"", Duration::from_secs(10));
    let code = bastion.daemon.stop();
    assert_eq!(code, 0, "SIGTERM is a clean stop");
    let out = child.wait_with_output().expect("ssh output");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("session ended: the bastion is shutting down"),
        "{stderr}"
    );
    let audit = bastion.audit();
    assert!(
        audit.contains("\"reason\":\"the bastion is shutting down\""),
        "{audit}"
    );
}
