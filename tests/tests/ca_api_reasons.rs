//! Refusals at the CA API carry their real reason in the CA's audit log.

use std::time::Duration;

use jitssh_tests::{CaServer, Scratch, SignOpts, keygen, keygen_sign, wait_for};

#[test]
fn an_undecodable_certificate_is_audited_at_the_ca_api() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let policy = format!(
        "[[roles]]\nname = \"dev\"\nlogins = [\"{{user}}\"]\nhosts = [\"web*\"]\nmax_ttl = \"1h\"\n\n\
         [[users]]\nname = \"alice\"\nkeys = [\"{}\"]\nroles = [\"dev\"]\n",
        alice.public_line()
    );
    let server = CaServer::start(scratch.path(), &policy, "");
    // ssh offers the certificate next to the key: one with a repeated extension, which
    // cannot be decoded (ssh-keygen writes the extension twice).
    let other_ca = keygen(scratch.path(), "other_ca");
    keygen_sign(
        &other_ca.private,
        &alice.public,
        &SignOpts::user("alice", &["alice"])
            .validity("-5m:+1h")
            .option("clear")
            .option("extension:permit-pty")
            .option("extension:permit-pty"),
    );
    let out = server
        .ssh("alice", &alice)
        .cert(alice.cert_path())
        .args(["whoami"])
        .run();
    assert_ne!(out.status, 0, "{out}");
    let audit_path = server.ca.data_dir().join("audit.log");
    let audit = || std::fs::read_to_string(&audit_path).unwrap_or_default();
    wait_for(
        || audit().contains("api.login_refused"),
        Duration::from_secs(10),
        "an api.login_refused record",
    );
    let text = audit();
    let line = text
        .lines()
        .find(|l| l.contains("api.login_refused"))
        .expect("the record");
    assert!(line.contains("cannot be decoded"), "{line}");
    assert!(line.contains("\"peer\":\"127.0.0.1:"), "{line}");
}
