//! Every refusal and every session end carries its real reason in the audit log (and, where
//! the person can be told, on their terminal).

use std::time::Duration;

use jitssh_tests::{
    Bastion, CaFixture, KeyPair, Scratch, SignOpts, free_port, grant, keygen, keygen_sign, target,
    user,
};

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

/// A person's key with a certificate from the bastion's own user CA, signed by `ssh-keygen`
/// with validity `validity` (`-V`), the usual grant on `web*` and the extensions `extensions`
/// (in that order: `ssh-keygen` writes a repeated one twice).
fn certificate(
    ca: &CaFixture,
    dir: &Scratch,
    name: &str,
    validity: &str,
    extensions: &[&str],
) -> KeyPair {
    let key = keygen(dir.path(), name);
    let grant = grant("ops", &["root"], &["web*"]);
    let mut opts = SignOpts::user(name, &["root"])
        .validity(validity)
        .option("clear")
        .option(&format!("extension:{grant}"));
    for extension in extensions {
        opts = opts.option(&format!("extension:{extension}"));
    }
    keygen_sign(&ca.data_dir().join("user_ca"), &key.public, &opts);
    key
}

/// `ssh root@web01 echo hi` as an interactive client (it comes back to hear the reason).
fn interactive_login(bastion: &Bastion, key: &KeyPair) -> jitssh_tests::Output {
    jitssh_tests::Ssh::new(bastion.port)
        .option("BatchMode=no")
        .user("root@web01")
        .identity(&key.private)
        .cert(key.cert_path())
        .args(["echo", "hi"])
        .run()
}

/// The bastion's audit record of a refused login mentioning `reason`.
fn refusal_record(bastion: &Bastion, reason: &str) -> String {
    let audit = bastion.wait_for_audit(reason, Duration::from_secs(10));
    let line = audit
        .lines()
        .find(|l| l.contains(reason))
        .expect("an audit line")
        .to_string();
    assert!(line.contains("\"event\":\"login.refused\""), "{line}");
    assert!(!audit.contains("login.accepted"), "{audit}");
    line
}

#[test]
fn expired_and_not_yet_valid_certificates_are_refused_with_that_reason() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");

    let late = certificate(&ca, &scratch, "late", "-2h:-1h", &["permit-pty"]);
    let out = interactive_login(&bastion, &late);
    assert_eq!(out.status, 255, "{out}");
    assert!(
        out.stderr.contains("certificate expired at 20"),
        "told why: {out}"
    );
    let line = refusal_record(&bastion, "certificate expired at 20");
    assert!(line.contains("\"person\":\"late\""), "{line}");

    let early = certificate(&ca, &scratch, "early", "+1h:+2h", &["permit-pty"]);
    let out = interactive_login(&bastion, &early);
    assert_eq!(out.status, 255, "{out}");
    assert!(
        out.stderr.contains("certificate is not valid before 20"),
        "told why: {out}"
    );
    let line = refusal_record(&bastion, "certificate is not valid before 20");
    assert!(line.contains("\"person\":\"early\""), "{line}");
}

#[test]
fn a_certificate_with_a_repeated_extension_is_audited() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let twice = certificate(
        &ca,
        &scratch,
        "twice",
        "-5m:+1h",
        &["permit-pty", "permit-pty"],
    );
    let out = interactive_login(&bastion, &twice);
    assert_eq!(out.status, 255, "{out}");
    assert!(out.stdout.is_empty(), "nothing ran: {out}");
    let line = refusal_record(&bastion, "cannot be decoded");
    assert!(line.contains("\"peer\":\"127.0.0.1:"), "{line}");
}
