//! Revocations reach the bastion through its cached revocation set: a revocation made by
//! `ssh-ca revoke` in another process ends a live session within `session.revocation_check`,
//! although the bastion no longer reads every revocation at every check.

use std::time::{Duration, Instant};

use jitssh_tests::{Bastion, Scratch, run_ok, target, user};

/// Revocations already in the store (and in the bastion's cache) before the one that counts.
const EARLIER: usize = 50;

#[test]
fn a_key_revoked_by_another_process_ends_the_session_within_the_recheck_interval() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    for n in 0..EARLIER {
        run_ok(&mut ca.cmd(["revoke", "--key-id", &format!("gone{n}")]));
    }
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        "[session]\nrevocation_check = \"1s\"\n",
    );
    // The startup log says what was loaded (policy "": no users nor roles here).
    let log = bastion.log();
    assert!(
        log.lines().any(|l| l.contains("ssh-bastion listening")
            && l.contains("targets=1")
            && l.contains("users=0")
            && l.contains("roles=0")),
        "{log}"
    );
    let session = bastion
        .ssh("root@web01", &alice)
        .args(["sleep", "60"])
        .spawn();
    // Admitted: the bastion has read (and cached) the revocations by now.
    bastion.wait_for_audit("\"command\":\"sleep 60\"", Duration::from_secs(10));
    let mut revoke = ca.cmd(["revoke", "--reason", "laptop stolen", "--key"]);
    revoke.arg(&alice.public);
    run_ok(&mut revoke);
    // One re-check interval (1 s), plus the time to tell the client and close.
    let stderr = session.wait_ended_within(Instant::now(), Duration::from_secs(5));
    assert!(
        stderr.contains("your certificate was revoked (certificate key revoked: laptop stolen)"),
        "{stderr}"
    );
    // And a new login with the revoked key is refused at admission.
    let out = bastion.ssh("root@web01", &alice).args(["true"]).run();
    assert_eq!(out.status, 255, "{out}");
}
