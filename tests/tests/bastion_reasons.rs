//! Every refusal and every session end carries its real reason in the audit log (and, where
//! the person can be told, on their terminal).

use std::time::Duration;

use jitssh_tests::{Bastion, Scratch, free_port, user};

#[test]
fn a_session_whose_target_is_unreachable_ends_with_that_reason() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    // Nothing listens there.
    let nowhere = format!("127.0.0.1:{}", free_port());
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(&ca, &[("web01", nowhere)], "");
    let out = bastion.ssh("root@web01", &alice).args(["echo", "hi"]).run();
    assert_eq!(out.status, 255, "{out}");
    assert!(
        out.stderr.contains("bastion: "),
        "the person is told: {out}"
    );

    let audit = bastion.wait_for_audit("session.end", Duration::from_secs(10));
    let end = audit
        .lines()
        .find(|l| l.contains("\"event\":\"session.end\""))
        .expect("a session.end record");
    assert!(
        end.contains("target unreachable") && end.contains("refused"),
        "the end record names the target failure: {end}"
    );
    assert!(!end.contains("the client disconnected"), "{end}");
}
