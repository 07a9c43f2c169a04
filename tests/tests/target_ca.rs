//! The target CA: targets trust only the CA that signs the bastion's session certificates (and
//! break-glass ones), set up from `ssh-ca sshd-config`, so a person's own certificate never
//! walks around the bastion; `direct = true` roles get short break-glass certificates that log
//! straight in and are audited and listed as such; old data directories get the key on upgrade.

use std::path::Path;
use std::process::Command;

use jitssh_tests::{
    Bastion, CaFixture, KeyPair, Scratch, Ssh, Sshd, cert_info, keygen, run_ok, target,
};

/// Roles: `ops` (no break-glass) and `oncall` (`direct = true`, max_ttl 4h so the 1h
/// break-glass cap is what limits). alice is on call, bob is not.
fn policy(alice: &KeyPair, bob: &KeyPair) -> String {
    format!(
        r#"
[[roles]]
name = "ops"
logins = ["root"]
hosts = ["web*"]
max_ttl = "8h"
default_ttl = "2h"

[[roles]]
name = "oncall"
logins = ["root"]
hosts = ["web*"]
max_ttl = "4h"
default_ttl = "3h"
direct = true

[[users]]
name = "alice"
keys = ["{}"]
roles = ["oncall"]

[[users]]
name = "bob"
keys = ["{}"]
roles = ["ops"]
"#,
        alice.public_line(),
        bob.public_line()
    )
}

/// A bastion with its embedded CA (whose API serves `cert`), one target set up by the harness
/// from `ssh-ca sshd-config --write`, and alice and bob.
struct World {
    scratch: Scratch,
    ca: CaFixture,
    web01: Sshd,
    bastion: Bastion,
    known_hosts: std::path::PathBuf,
    alice: KeyPair,
    bob: KeyPair,
}

impl World {
    fn new() -> World {
        let scratch = Scratch::new();
        let alice = keygen(scratch.path(), "alice");
        let bob = keygen(scratch.path(), "bob");
        let ca = Bastion::ca(scratch.path(), &policy(&alice, &bob));
        let web01 = target(&ca, scratch.path(), "web01", |b| b);
        let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
        let known_hosts = scratch.write("known_hosts", ca.run_ok(["known-hosts"]).stdout);
        World {
            scratch,
            ca,
            web01,
            bastion,
            known_hosts,
            alice,
            bob,
        }
    }

    /// `ssh -p CA_API USER@localhost ARGS...` (the CA API of the embedded CA).
    fn api(&self, user: &str, key: &KeyPair, args: &[&str]) -> jitssh_tests::Output {
        Ssh::new(self.bastion.ca_port)
            .user(user)
            .identity(&key.private)
            .known_hosts(&self.known_hosts)
            .host("localhost")
            .args(args)
            .run()
    }

    /// A certificate from the CA API, written next to `key` as `<name>`.
    fn cert(&self, user: &str, key: &KeyPair, args: &[&str], name: &str) -> std::path::PathBuf {
        let out = self.api(user, key, args);
        assert_eq!(out.status, 0, "cert {args:?}: {out}");
        self.scratch.write(name, out.stdout)
    }

    /// Plain `ssh root@web01 echo hi` straight to the target with `key` and `cert`.
    fn direct_login(&self, key: &KeyPair, cert: &Path) -> jitssh_tests::Output {
        Ssh::new(self.web01.port())
            .user("root")
            .identity(&key.private)
            .cert(cert)
            .args(["echo", "hi"])
            .run()
    }

    fn ca_audit(&self) -> String {
        std::fs::read_to_string(self.ca.data_dir().join("audit.log")).unwrap_or_default()
    }
}

/// `SHA256:...` of a public key file.
fn fingerprint(public: &Path) -> String {
    run_ok(Command::new("ssh-keygen").arg("-lf").arg(public))
        .stdout_str()
        .split_whitespace()
        .nth(1)
        .expect("fingerprint")
        .to_string()
}

/// The `Signing CA:` fingerprint of a certificate.
fn signing_ca(cert: &Path) -> String {
    let info = cert_info(cert);
    info.lines()
        .find_map(|l| l.trim().strip_prefix("Signing CA:"))
        .and_then(|rest| rest.split_whitespace().nth(1))
        .unwrap_or_else(|| panic!("no Signing CA in {info}"))
        .to_string()
}

#[test]
fn a_persons_own_certificate_is_refused_by_the_target_while_the_bastion_session_reaches_it() {
    let w = World::new();
    let target_ca = w.ca.ca_pub_file("target");
    let user_ca = w.ca.ca_pub_file("user");
    assert_ne!(fingerprint(&target_ca), fingerprint(&user_ca));

    // The target was set up from `ssh-ca sshd-config --write`: it trusts the target CA only.
    let config = std::fs::read_to_string(w.web01.config_path()).unwrap();
    let trusted = config
        .lines()
        .find_map(|l| l.strip_prefix("TrustedUserCAKeys "))
        .expect("TrustedUserCAKeys line")
        .trim_matches('"')
        .to_string();
    assert!(trusted.ends_with("jitssh-target-ca.pub"), "{config}");
    let trusted = std::fs::read_to_string(&trusted).unwrap();
    assert_eq!(trusted, std::fs::read_to_string(&target_ca).unwrap());
    let user_line = std::fs::read_to_string(&user_ca).unwrap();
    let user_key = user_line.split_whitespace().nth(1).unwrap();
    assert!(!trusted.contains(user_key), "the user CA is not trusted");

    // alice's own certificate, from the CA API: the bastion's door, not the target's.
    let own = w.cert(
        "alice",
        &w.alice,
        &["cert", "--principals", "root"],
        "alice-own-cert.pub",
    );
    assert_eq!(signing_ca(&own), fingerprint(&user_ca));
    let out = w.direct_login(&w.alice, &own);
    assert_eq!(
        out.status, 255,
        "the target refuses a person's own cert: {out}"
    );
    assert!(!out.stdout_str().contains("hi"), "{out}");
    assert!(
        !w.web01.log().contains("Accepted publickey"),
        "{}",
        w.web01.log()
    );

    // Through the bastion, with that same certificate, the session certificate gets in.
    std::fs::copy(&own, w.alice.cert_path()).unwrap();
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo", "hi"])
        .run();
    assert_eq!(out.stdout_str(), "hi\n", "{out}");
    let log = w.web01.log();
    let accepted = log
        .lines()
        .find(|l| l.contains("Accepted publickey for root"))
        .unwrap_or_else(|| panic!("no accepted login in:\n{log}"));
    assert!(
        accepted.contains("session="),
        "a session certificate: {accepted}"
    );
    assert!(
        accepted.contains(&format!("CA ED25519 {}", fingerprint(&target_ca))),
        "signed by the target CA: {accepted}"
    );
}

#[test]
fn a_direct_role_gets_a_short_break_glass_certificate_for_the_targets_listed_for_auditors() {
    let w = World::new();
    let target_ca = w.ca.ca_pub_file("target");
    let whoami = w.api("alice", &w.alice, &["whoami"]).stdout_str();
    assert!(
        whoami.contains("role oncall:") && whoami.contains("break-glass: cert --direct"),
        "{whoami}"
    );
    let whoami = w.api("bob", &w.bob, &["whoami"]).stdout_str();
    assert!(!whoami.contains("break-glass"), "{whoami}");

    // alice (oncall, direct = true): a break-glass certificate, capped at 1h although her role
    // defaults to 3h, signed by the target CA, its key id marked.
    let glass = w.cert(
        "alice",
        &w.alice,
        &["cert", "--direct", "--reason", "INC-7"],
        "alice-glass-cert.pub",
    );
    let info = cert_info(&glass);
    assert!(info.contains("Key ID: \"alice break-glass\""), "{info}");
    assert_eq!(signing_ca(&glass), fingerprint(&target_ca));
    let serial = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial:"))
        .expect("Serial")
        .trim()
        .to_string();
    let valid = info
        .lines()
        .find_map(|l| l.trim().strip_prefix("Valid: from "))
        .expect("Valid");
    let words: Vec<&str> = valid.split_whitespace().collect();
    let unix = |text: &str| -> i64 {
        run_ok(Command::new("date").args(["-d", text, "+%s"]))
            .stdout_str()
            .trim()
            .parse()
            .unwrap()
    };
    let lifetime = unix(words[2]) - unix(words[0]);
    // valid_after is backdated by the clock skew allowance (default 5m at most).
    assert!(
        (3600..=3600 + 300).contains(&lifetime),
        "at most 1h (plus skew): {valid}"
    );

    // Plain ssh straight into the target, no bastion.
    let out = w.direct_login(&w.alice, &glass);
    assert_eq!(out.stdout_str(), "hi\n", "{out}");
    assert!(
        w.web01.log().contains("ID alice break-glass"),
        "{}",
        w.web01.log()
    );

    // The audit log says break-glass, with the reason.
    let audit = w.ca_audit();
    let record = audit
        .lines()
        .find(|l| l.contains("\"cert.issued\"") && l.contains("alice break-glass"))
        .unwrap_or_else(|| panic!("no break-glass issue record in:\n{audit}"));
    assert!(record.contains("\"break_glass\":true"), "{record}");
    assert!(record.contains("\"ca\":\"target\""), "{record}");
    assert!(record.contains("INC-7"), "{record}");

    // The auditor's listing shows it, and only break-glass certificates: not alice's ordinary
    // certificate, nor the session certificates the bastion minted.
    let own = w.cert(
        "alice",
        &w.alice,
        &["cert", "--principals", "root"],
        "alice-own-cert.pub",
    );
    std::fs::copy(&own, w.alice.cert_path()).unwrap();
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo", "hi"])
        .run();
    assert_eq!(out.stdout_str(), "hi\n", "{out}");
    let everything = w.ca.run_ok(["issued"]).stdout_str();
    assert!(everything.contains("session="), "{everything}");
    let listing = w.ca.run_ok(["issued", "--break-glass"]).stdout_str();
    let rows: Vec<&str> = listing.lines().skip(1).collect();
    assert_eq!(rows.len(), 1, "{listing}");
    assert!(
        rows[0].trim_start().starts_with(&format!("{serial} ")),
        "{listing}"
    );
    assert!(
        rows[0].contains("alice") && rows[0].contains("oncall") && rows[0].contains("INC-7"),
        "{listing}"
    );

    // Fails closed: a break-glass certificate opens neither the bastion nor the CA API.
    std::fs::copy(&glass, w.alice.cert_path()).unwrap();
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo", "hi"])
        .run();
    assert_ne!(
        out.status, 0,
        "the bastion refuses a target-CA certificate: {out}"
    );
    assert!(!out.stdout_str().contains("hi"), "{out}");

    // Revoked by its serial, it is refused by the target once its KRL is refreshed (the KRL
    // lists it under the target CA).
    w.ca.run_ok(["revoke", "--serial", &serial, "--reason", "INC-7"]);
    let krl = w.scratch.path().join("web01-etc-ssh/jitssh-revoked.krl");
    assert!(krl.exists());
    w.ca.write_krl(&krl);
    let out = w.direct_login(&w.alice, &glass);
    assert_eq!(out.status, 255, "revoked: {out}");
}

#[test]
fn a_role_without_direct_is_refused_a_break_glass_certificate_with_the_reason() {
    let w = World::new();
    let before = w.ca.run_ok(["issued", "--break-glass"]).stdout_str();

    let out = w.api("bob", &w.bob, &["cert", "--direct", "--reason", "INC-8"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr
            .contains("no role of user bob allows direct (break-glass) certificates"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "nothing issued: {out}");
    let out = w.api(
        "bob",
        &w.bob,
        &["cert", "--direct", "--role", "ops", "--reason", "INC-8"],
    );
    assert!(
        out.stderr
            .contains("role ops does not allow direct (break-glass) certificates"),
        "{out}"
    );
    let audit = w.ca_audit();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("\"cert.denied\"") && l.contains("\"direct\":true")),
        "{audit}"
    );
    assert_eq!(
        w.ca.run_ok(["issued", "--break-glass"]).stdout_str(),
        before
    );

    // Beyond the role's max_ttl is refused too, not silently cut to the break-glass cap.
    let out = w.api(
        "alice",
        &w.alice,
        &["cert", "--direct", "--ttl", "5h", "--reason", "x"],
    );
    assert!(out.stderr.contains("exceeds max_ttl 4h"), "{out}");

    // bob's own certificate does not reach the target either.
    let own = w.cert("bob", &w.bob, &["cert"], "bob-cert.pub");
    let out = w.direct_login(&w.bob, &own);
    assert_eq!(out.status, 255, "{out}");
}

#[test]
fn offline_break_glass_signing_is_capped_marked_and_needs_a_reason() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let key = keygen(scratch.path(), "oncall");
    let sign = |extra: &[&str]| {
        let mut cmd = ca.cmd(["sign", "--target", "--principals", "root", "--key"]);
        cmd.arg(&key.public).args(extra);
        jitssh_tests::run(&mut cmd)
    };
    let out = sign(&["--ttl", "2h", "--reason", "INC-9"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("at most 1h"), "{out}");
    let out = sign(&["--ttl", "30m"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("needs --reason"), "{out}");
    assert!(
        ca.run_ok(["issued", "--break-glass"])
            .stdout_str()
            .lines()
            .nth(1)
            .is_none(),
        "nothing signed"
    );

    let out = sign(&["--ttl", "30m", "--reason", "INC-9", "--key-id", "carol"]);
    assert_eq!(out.status, 0, "{out}");
    let cert = scratch.write("oncall-cert.pub", out.stdout);
    let info = cert_info(&cert);
    assert!(info.contains("Key ID: \"carol break-glass\""), "{info}");
    assert_eq!(signing_ca(&cert), fingerprint(&ca.ca_pub_file("target")));
    let listing = ca.run_ok(["issued", "--break-glass"]).stdout_str();
    assert!(
        listing.contains("operator:") && listing.contains("INC-9"),
        "{listing}"
    );

    // A target set up from `ssh-ca sshd-config` takes it.
    let trust = ca.sshd_trust_lines(&scratch.path().join("etc-ssh"));
    let mut builder = Sshd::builder();
    for line in &trust {
        builder = builder.config(line);
    }
    let sshd = builder.start();
    let out = Ssh::new(sshd.port())
        .user("root")
        .identity(&key.private)
        .cert(&cert)
        .args(["echo", "hi"])
        .run();
    assert_eq!(out.stdout_str(), "hi\n", "{out}");
}

/// Files of a data directory from before the target CA, byte for byte.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    ["user_ca", "user_ca.pub", "host_ca", "host_ca.pub"]
        .iter()
        .map(|name| {
            (
                name.to_string(),
                std::fs::read(dir.join(name)).expect("old key file"),
            )
        })
        .collect()
}

#[test]
fn an_old_data_dir_gets_the_target_ca_on_upgrade_and_keeps_its_keys() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let user = keygen(scratch.path(), "user");
    ca.sign(&user, "user", "root", &[]);
    let data = ca.data_dir();
    // As an older ssh-ca left it: no target CA key, and a store that records only the user
    // and host CA (`{"user":..,"host":..}`, as the older version wrote it).
    std::fs::remove_file(data.join("target_ca")).unwrap();
    std::fs::remove_file(data.join("target_ca.pub")).unwrap();
    let store = rusqlite::Connection::open(data.join("store.db")).unwrap();
    let changed = store
        .execute(
            "UPDATE meta SET value = json_remove(value, '$.target') WHERE name = 'ca_keys'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(store);
    let old = snapshot(&data);

    // Any command that opens the CA upgrades it, audited.
    let printed = ca.run_ok(["pubkey", "--target"]).stdout_str();
    assert!(data.join("target_ca").exists());
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(data.join("target_ca"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(
        std::fs::read_to_string(data.join("target_ca.pub")).unwrap(),
        printed
    );
    assert_eq!(snapshot(&data), old, "old keys byte-for-byte unchanged");
    let audit = std::fs::read_to_string(data.join("audit.log")).unwrap();
    let added: Vec<&str> = audit
        .lines()
        .filter(|l| l.contains("\"ca.key_added\""))
        .collect();
    assert_eq!(added.len(), 1, "{audit}");
    let target_fp = fingerprint(&data.join("target_ca.pub"));
    assert!(added[0].contains(&target_fp), "{}", added[0]);

    // Later opens keep that key; the old issued certificates and the audit chain stand.
    ca.run_ok(["krl"]);
    ca.run_ok(["sshd-config"]);
    assert_eq!(fingerprint(&data.join("target_ca.pub")), target_fp);
    assert_eq!(ca.run_ok(["pubkey", "--target"]).stdout_str(), printed);
    let audit = std::fs::read_to_string(data.join("audit.log")).unwrap();
    assert_eq!(audit.matches("\"ca.key_added\"").count(), 1, "{audit}");
    assert!(ca.run_ok(["issued"]).stdout_str().contains("root"));
    ca.run_ok(["audit", "verify"]);
    assert_eq!(snapshot(&data), old);

    // Fails closed: the store now records the target CA, so a lost or swapped target CA key
    // is refused, never silently replaced (a new one would be a CA the targets do not trust
    // and the KRL does not cover).
    let aside = scratch.mkdir("aside");
    std::fs::rename(data.join("target_ca"), aside.join("target_ca")).unwrap();
    let out = ca.run(["krl"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("refusing to mix them") && out.stderr.contains(&target_fp),
        "{out}"
    );
    let mut sign = ca.cmd([
        "sign",
        "--target",
        "--principals",
        "root",
        "--ttl",
        "5m",
        "--reason",
        "x",
        "--key",
    ]);
    let out = jitssh_tests::run(sign.arg(&user.public));
    assert_ne!(out.status, 0, "nothing signed by a stray key: {out}");
    std::fs::remove_file(data.join("target_ca")).unwrap();
    std::fs::rename(aside.join("target_ca"), data.join("target_ca")).unwrap();
    ca.run_ok(["krl"]);
    ca.run_ok(["audit", "verify"]);
}

#[test]
fn no_target_ca_key_is_made_where_the_old_keys_are_not() {
    // Fails closed: a directory without the user and host CA keys gets no target key.
    let scratch = Scratch::new();
    let ca = CaFixture::configure(scratch.path(), "", "");
    let out = ca.run(["pubkey", "--target"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("run `ssh-ca init`"), "{out}");
    let out = ca.run(["krl"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(!ca.data_dir().join("target_ca").exists());

    // Half an old directory (the host CA key lost): refused, naming it; nothing created.
    let ca = CaFixture::init(&scratch.mkdir("half"), "");
    let data = ca.data_dir();
    for name in ["target_ca", "target_ca.pub", "host_ca"] {
        std::fs::remove_file(data.join(name)).unwrap();
    }
    let out = ca.run(["krl"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("host_ca"), "{out}");
    assert!(!data.join("target_ca").exists());
}
