//! Honest clients log in without a rejection delay: a key that will be refused is refused at
//! its offer (before the client signs), so an OpenSSH client with an agent full of plain keys
//! moves on to its certificate at once, and PuTTY is told why instead of "refused signature
//! despite accepting key".

use std::time::Duration;

use jitssh_tests::{Agent, Bastion, CaServer, Output, Scratch, keygen, run, target, user};

const HINT: &str = "this bastion accepts certificates only";

/// The keys the server answered "accepts key" for in an `ssh -v` run.
fn accepted_offers(out: &Output) -> Vec<&str> {
    out.stderr
        .lines()
        .filter(|l| l.contains("Server accepts key"))
        .collect()
}

#[test]
fn agent_plain_keys_are_refused_at_the_offer_and_the_certificate_logs_in() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    // The shipped rejection time (the harness's default is 0s): every refusal that is not
    // made at the offer would cost a second.
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        "[limits]\nauth_rejection_time = \"1s\"\n",
    );
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);

    // Two plain keys in the agent before alice's key and certificate (`ssh-add` adds a key's
    // `-cert.pub` with it), no IdentitiesOnly: how people's clients really are. The agent
    // offers its keys in order, plain ones first.
    let agent = Agent::start(scratch.path());
    for name in ["agent-one", "agent-two"] {
        agent.add(&keygen(scratch.path(), name).private);
    }
    agent.add(&alice.private);
    let out = jitssh_tests::Ssh::new(bastion.port)
        .user("root@web01")
        .option(&agent.ssh_option())
        .option("IdentitiesOnly=no")
        .option("LogLevel=DEBUG1")
        .args(["echo", "logged-in"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    assert_eq!(out.stdout_str().trim(), "logged-in", "{out}");
    let offered_plain = out
        .stderr
        .lines()
        .filter(|l| l.contains("Offering public key") && !l.contains("CERT"))
        .count();
    assert!(offered_plain >= 2, "plain keys were offered first: {out}");
    let accepted = accepted_offers(&out);
    assert_eq!(accepted.len(), 1, "only the certificate: {out}");
    assert!(accepted[0].contains("CERT"), "{out}");

    // The refusal is in the audit log (once per connection) with its reason.
    let audit = bastion.wait_for_audit(HINT, Duration::from_secs(5));
    let refused: Vec<&str> = audit.lines().filter(|l| l.contains(HINT)).collect();
    assert_eq!(refused.len(), 1, "{audit}");
    assert!(
        refused[0].contains("\"event\":\"login.refused\""),
        "{audit}"
    );
    assert!(audit.contains("login.accepted"), "{audit}");
}

#[test]
fn plink_with_a_plain_key_is_told_why_not_refused_despite_accepting() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let plain = keygen(scratch.path(), "plain");
    // The harness's plink command, minus the certificate.
    let with_cert = bastion.plink("root@web01", &plain, &plain.public);
    let args: Vec<_> = with_cert.get_args().collect();
    let mut plink = std::process::Command::new(with_cert.get_program());
    let mut skip = false;
    for arg in args {
        if std::mem::take(&mut skip) {
            continue;
        }
        if arg == "-cert" {
            skip = true;
            continue;
        }
        plink.arg(arg);
    }
    let out = run(plink.arg("echo").arg("hi"));
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stdout.is_empty(), "{out}");
    assert!(!out.stderr.contains("despite accepting key"), "{out}");
    assert!(out.stderr.contains(HINT), "the person is told why: {out}");
}

#[test]
fn the_ca_api_refuses_a_certificate_at_the_offer_and_takes_the_enrolled_key() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let policy = format!(
        "[[roles]]\nname = \"dev\"\nlogins = [\"deploy\"]\nhosts = [\"web*\"]\nmax_ttl = \"1h\"\n\n\
         [[users]]\nname = \"alice\"\nkeys = [\"{}\"]\nroles = [\"dev\"]\n",
        alice.public_line()
    );
    let server = CaServer::start(scratch.path(), &policy, "");
    let out = server.ssh("alice", &alice).args(["cert"]).run();
    assert_eq!(out.status, 0, "{out}");
    let cert = scratch.write("alice-cert.pub", &out.stdout);

    // ssh offers the certificate before the plain key: the API (which takes plain enrolled
    // keys only) must not accept the certificate's offer and then refuse its signature.
    let out = server
        .ssh("alice", &alice)
        .option(&format!("CertificateFile={}", cert.display()))
        .option("LogLevel=DEBUG1")
        .args(["help"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("Offering public key") && out.stderr.contains("ED25519-CERT"),
        "the certificate was offered: {out}"
    );
    let accepted = accepted_offers(&out);
    assert_eq!(accepted.len(), 1, "{out}");
    assert!(!accepted[0].contains("CERT"), "only the plain key: {out}");
}
