//! Offline CA (`ssh-ca init | sign | revoke | krl | known-hosts | sshd-config | audit verify`)
//! against the real OpenSSH tools: ssh-keygen reads our certificates, sshd enforces them and
//! our KRL, ssh verifies our host certificates.

use std::collections::HashSet;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use jitssh_tests::{
    CaFixture, KeyPair, Scratch, SignOpts, Ssh, Sshd, cert_info, keygen, keygen_sign, run, run_ok,
};

fn ssh_as(sshd: &Sshd, login: &str, key: &KeyPair) -> Ssh {
    Ssh::new(sshd.port())
        .user(login)
        .identity(&key.private)
        .cert(key.cert_path())
}

fn target(ca: &CaFixture, extra: &[&str]) -> Sshd {
    let mut builder = Sshd::builder().trusted_user_ca(ca.ca_pub_file("user"));
    for line in extra {
        builder = builder.config(line);
    }
    builder.start()
}

#[test]
fn ssh_keygen_reads_our_user_and_host_certificates() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let alice = keygen(scratch.path(), "alice");
    let cert = ca.sign(
        &alice,
        "user",
        "alice,deploy",
        &[
            "--ttl",
            "2h",
            "--key-id",
            "alice@example",
            "--force-command",
            "/usr/bin/uptime",
            "--source-address",
            "10.0.0.0/8,192.168.1.1",
            "--reason",
            "INC-42",
        ],
    );
    let info = cert_info(&cert);
    assert!(
        info.contains("Type: ssh-ed25519-cert-v01@openssh.com user certificate"),
        "{info}"
    );
    assert!(info.contains("Key ID: \"alice@example\""), "{info}");
    assert!(info.contains("Serial: 1"), "{info}");
    assert!(
        info.contains("alice\n") && info.contains("deploy\n"),
        "{info}"
    );
    assert!(info.contains("force-command /usr/bin/uptime"), "{info}");
    assert!(
        info.contains("source-address 10.0.0.0/8,192.168.1.1"),
        "{info}"
    );
    assert!(
        info.contains("permit-pty") && info.contains("permit-port-forwarding"),
        "{info}"
    );
    let validity = info
        .lines()
        .find(|l| l.trim_start().starts_with("Valid:"))
        .expect("validity line");
    let (from, to) = parse_validity(validity);
    let span = to - from;
    assert!(
        (2 * 3600..=2 * 3600 + 300).contains(&span),
        "2h plus clock skew: {validity}"
    );

    // Explicit extensions replace the defaults.
    let bob = keygen(scratch.path(), "bob");
    let cert = ca.sign(
        &bob,
        "user",
        "bob",
        &[
            "--extension",
            "permit-pty",
            "--extension",
            "login@example.com=x",
        ],
    );
    let info = cert_info(&cert);
    assert!(
        info.contains("permit-pty") && info.contains("login@example.com"),
        "{info}"
    );
    assert!(!info.contains("permit-port-forwarding"), "{info}");

    let host = keygen(scratch.path(), "host");
    let cert = ca.sign(&host, "host", "web01,web01.example.com", &["--ttl", "30d"]);
    let info = cert_info(&cert);
    assert!(
        info.contains("Type: ssh-ed25519-cert-v01@openssh.com host certificate"),
        "{info}"
    );
    assert!(info.contains("Serial: 3"), "{info}");
    assert!(info.contains("web01.example.com"), "{info}");
    assert!(info.contains("Extensions: (none)"), "{info}");
    let signing_ca = ca.ca_pub_file("host");
    let fingerprint = run_ok(Command::new("ssh-keygen").arg("-lf").arg(&signing_ca)).stdout_str();
    let fingerprint = fingerprint.split_whitespace().nth(1).expect("fingerprint");
    assert!(info.contains(fingerprint), "signed by the host CA: {info}");
}

/// `Valid: from 2026-11-23T18:00:00 to 2026-11-23T20:02:00` → seconds since midnight-ish
/// numbers good enough to subtract.
fn parse_validity(line: &str) -> (i64, i64) {
    let words: Vec<&str> = line.split_whitespace().collect();
    let secs = |s: &str| -> i64 {
        let date = &s[..10];
        let time = &s[11..];
        let day: i64 = date[8..10].parse().unwrap();
        let parts: Vec<i64> = time.split(':').map(|p| p.parse().unwrap()).collect();
        day * 86_400 + parts[0] * 3600 + parts[1] * 60 + parts[2]
    };
    (secs(words[2]), secs(words[4]))
}

#[test]
fn sshd_accepts_our_user_certificate_and_refuses_bad_ones() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let krl = scratch.file("revoked.krl");
    ca.write_krl(&krl);
    let sshd = target(&ca, &[&format!("RevokedKeys {}", krl.display())]);

    // Accepted, and sshd logs the key id and serial.
    let alice = keygen(scratch.path(), "alice");
    ca.sign(&alice, "user", "root", &["--key-id", "alice"]);
    let out = ssh_as(&sshd, "root", &alice).args(["echo", "hi"]).run();
    assert_eq!(
        (out.status, out.stdout_str().as_str()),
        (0, "hi\n"),
        "{out}"
    );
    assert!(sshd.log().contains("ID alice (serial 1)"), "{}", sshd.log());

    // Another principal.
    let bob = keygen(scratch.path(), "bob");
    ca.sign(&bob, "user", "bob", &[]);
    let out = ssh_as(&sshd, "root", &bob).args(["true"]).run();
    assert_eq!(out.status, 255, "cert for another principal: {out}");

    // Expired: 1s lifetime, signed by a CA whose clock is an hour behind, so it expired an
    // hour ago by sshd's (real) clock.
    let late = keygen(scratch.path(), "late");
    ca.clock().advance(-3600);
    ca.sign(&late, "user", "root", &["--ttl", "1s"]);
    ca.clock().advance(3600);
    let out = ssh_as(&sshd, "root", &late).args(["true"]).run();
    assert_eq!(out.status, 255, "expired cert: {out}");

    // Another CA.
    let rogue_ca = keygen(scratch.path(), "rogue_ca");
    let mallory = keygen(scratch.path(), "mallory");
    keygen_sign(
        &rogue_ca.private,
        &mallory.public,
        &SignOpts::user("mallory", &["root"]),
    );
    let out = ssh_as(&sshd, "root", &mallory).args(["true"]).run();
    assert_eq!(out.status, 255, "cert from another CA: {out}");

    // A host certificate used as a user certificate (even one from our user CA's sibling).
    let sneaky = keygen(scratch.path(), "sneaky");
    ca.sign(&sneaky, "host", "root", &[]);
    let out = ssh_as(&sshd, "root", &sneaky).args(["true"]).run();
    assert_eq!(out.status, 255, "host cert as user cert: {out}");

    // Revoked by serial, by key id, by key: the KRL reaches sshd.
    let carol = keygen(scratch.path(), "carol");
    let dave = keygen(scratch.path(), "dave");
    let erin = keygen(scratch.path(), "erin");
    let carol_cert = ca.sign(&carol, "user", "root", &["--key-id", "carol"]);
    ca.sign(&dave, "user", "root", &["--key-id", "dave-laptop"]);
    ca.sign(&erin, "user", "root", &["--key-id", "erin"]);
    for who in [&carol, &dave, &erin] {
        let out = ssh_as(&sshd, "root", who).args(["true"]).run();
        assert_eq!(out.status, 0, "before revocation: {out}");
    }
    let serial = cert_info(&carol_cert)
        .lines()
        .find_map(|l| l.trim().strip_prefix("Serial: ").map(str::to_string))
        .expect("serial");
    ca.run_ok(["revoke", "--serial", &serial, "--reason", "laptop stolen"]);
    ca.run_ok(["revoke", "--key-id", "dave-laptop"]);
    let mut cmd = ca.cmd(["revoke", "--key"]);
    cmd.arg(&erin.public);
    run_ok(&mut cmd);
    ca.write_krl(&krl);
    for (who, cert) in [(&carol, "carol"), (&dave, "dave"), (&erin, "erin")] {
        let out = ssh_as(&sshd, "root", who).args(["true"]).run();
        assert_eq!(out.status, 255, "{cert} revoked: {out}");
        let check = run(Command::new("ssh-keygen")
            .arg("-Q")
            .arg("-f")
            .arg(&krl)
            .arg(who.cert_path()));
        assert!(
            check.stdout_str().contains("REVOKED"),
            "ssh-keygen -Q {cert}: {check}"
        );
    }
    let out = ssh_as(&sshd, "root", &alice).args(["true"]).run();
    assert_eq!(out.status, 0, "others unaffected: {out}");
    let check = run(Command::new("ssh-keygen")
        .arg("-Q")
        .arg("-f")
        .arg(&krl)
        .arg(alice.cert_path()));
    assert_eq!(check.status, 0, "{check}");
    let again = ca.run_ok(["revoke", "--key-id", "dave-laptop"]);
    assert!(again.stdout_str().contains("already revoked"), "{again}");
}

#[test]
fn force_command_and_source_address_are_enforced_by_sshd() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let sshd = target(&ca, &[]);

    let forced = keygen(scratch.path(), "forced");
    ca.sign(&forced, "user", "root", &["--force-command", "echo forced"]);
    let out = ssh_as(&sshd, "root", &forced).args(["echo", "hi"]).run();
    assert_eq!(out.stdout_str(), "forced\n", "{out}");

    let elsewhere = keygen(scratch.path(), "elsewhere");
    ca.sign(
        &elsewhere,
        "user",
        "root",
        &["--source-address", "10.9.9.9/32"],
    );
    let out = ssh_as(&sshd, "root", &elsewhere).args(["true"]).run();
    assert_eq!(out.status, 255, "source-address excludes 127.0.0.1: {out}");

    let local = keygen(scratch.path(), "local");
    ca.sign(&local, "user", "root", &["--source-address", "127.0.0.0/8"]);
    let out = ssh_as(&sshd, "root", &local).args(["echo", "ok"]).run();
    assert_eq!(out.stdout_str(), "ok\n", "{out}");
}

#[test]
fn ssh_trusts_our_host_certificate_only_for_the_named_host() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let known_hosts = scratch.write(
        "known_hosts",
        ca.run_ok(["known-hosts", "--domain", "*.example.com,web01"])
            .stdout,
    );
    let known = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        known.starts_with("@cert-authority *.example.com,web01 ssh-ed25519 "),
        "{known}"
    );
    let user = keygen(scratch.path(), "user");
    ca.sign(&user, "user", "root", &[]);

    let host_key = keygen(scratch.path(), "ssh_host_ed25519_key");
    let start = |name: &str| {
        let cert = ca.sign(&host_key, "host", name, &["--ttl", "1d"]);
        Sshd::builder()
            .host_key(&host_key.private)
            .host_cert(&cert)
            .trusted_user_ca(ca.ca_pub_file("user"))
            .start()
    };
    let connect = |sshd: &Sshd| {
        ssh_as(sshd, "root", &user)
            .known_hosts(&known_hosts)
            .host("web01")
            .args(["echo", "trusted"])
            .run()
    };

    let sshd = start("web01");
    let out = connect(&sshd);
    assert_eq!(out.stdout_str(), "trusted\n", "{out}");
    drop(sshd);

    let sshd = start("db01");
    let out = connect(&sshd);
    assert_eq!(out.status, 255, "{out}");
    assert!(out.stderr.contains("Host key verification failed"), "{out}");
}

#[test]
fn sshd_config_helper_output_configures_a_working_target() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let trust_dir = scratch.mkdir("etc-ssh");
    let mut cmd = ca.cmd(["sshd-config", "--write", "--dir"]);
    cmd.arg(&trust_dir);
    let out = run_ok(&mut cmd).stdout_str();
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("TrustedUserCAKeys") || l.starts_with("RevokedKeys"))
        .collect();
    assert_eq!(lines.len(), 2, "{out}");
    let mut builder = Sshd::builder();
    for line in &lines {
        builder = builder.config(line);
    }
    let sshd = builder.start();
    // Targets trust the target CA only: a break-glass certificate gets in, a person's own
    // (user CA) certificate does not.
    let user = keygen(scratch.path(), "user");
    ca.sign(&user, "user", "root", &[]);
    let out = ssh_as(&sshd, "root", &user).args(["echo", "ok"]).run();
    assert_eq!(out.status, 255, "{out}");
    ca.sign(&user, "target", "root", &["--reason", "INC-1"]);
    let out = ssh_as(&sshd, "root", &user).args(["echo", "ok"]).run();
    assert_eq!(out.stdout_str(), "ok\n", "{out}");
}

/// 1,000 signings from concurrent processes, some killed with SIGKILL mid-flight: no serial is
/// ever issued twice, every certificate handed out has its audit record, and the log verifies.
#[test]
fn serials_are_unique_under_concurrency_and_kill_9() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let key = keygen(scratch.path(), "k");
    let workers = 8;
    let per_worker = 125;
    let handed_out: Vec<Vec<u64>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let ca = &ca;
                let key = &key;
                let scratch = &scratch;
                scope.spawn(move || {
                    let mut serials = Vec::new();
                    for i in 0..per_worker {
                        let mut cmd = ca.cmd([
                            "sign",
                            "--user",
                            "--principals",
                            "root",
                            "--ttl",
                            "5m",
                            "--key",
                        ]);
                        cmd.arg(&key.public);
                        cmd.stdout(std::process::Stdio::piped())
                            .stderr(std::process::Stdio::null());
                        let mut child = cmd.spawn().expect("spawn ssh-ca");
                        if (i + w) % 10 == 3 {
                            // Kill a tenth of them at varying points of their run.
                            std::thread::sleep(Duration::from_millis(
                                ((i * 7 + w * 3) % 25) as u64,
                            ));
                            let _ = child.kill();
                        }
                        let out = child.wait_with_output().expect("wait ssh-ca");
                        if out.status.success() {
                            let line = String::from_utf8_lossy(&out.stdout).to_string();
                            serials.push(serial_of(&line, scratch.path()));
                        }
                    }
                    serials
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("worker"))
            .collect()
    });
    let all: Vec<u64> = handed_out.into_iter().flatten().collect();
    let unique: HashSet<u64> = all.iter().copied().collect();
    assert_eq!(unique.len(), all.len(), "a serial was issued twice");
    assert!(all.len() >= 850, "most signings succeed: {}", all.len());

    // Restart: the next serial is above everything handed out.
    let after = ca.run_ok([
        "sign",
        "--user",
        "--principals",
        "root",
        "--ttl",
        "5m",
        "--key",
        key.public.to_str().unwrap(),
    ]);
    let next = serial_of(&after.stdout_str(), scratch.path());
    assert!(next > *unique.iter().max().unwrap());

    // What `ssh-ca issued` lists (it reconciles first what killed processes left behind).
    let listed: Vec<u64> = ca
        .run_ok(["issued", "--limit", "100000"])
        .stdout_str()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    assert!(listed.len() >= unique.len(), "{} listed", listed.len());

    // Every handed-out certificate has its audit record, and the chain verifies.
    let verify = ca.run(["audit", "verify"]);
    assert_eq!(verify.status, 0, "{verify}");
    let log = std::fs::read_to_string(ca.data_dir().join("audit.log")).unwrap();
    let audited: HashSet<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "cert.issued")
        .filter_map(|v| v["serial"].as_u64())
        .collect();
    for serial in &unique {
        assert!(
            audited.contains(serial),
            "serial {serial} handed out without an audit record"
        );
    }
    // Every stored certificate has an audit record too: issued, or unreleased when its process
    // died before handing it out (then nobody received it).
    let unreleased: HashSet<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "cert.unreleased")
        .filter_map(|v| v["serial"].as_u64())
        .collect();
    let missing: Vec<&u64> = listed
        .iter()
        .filter(|s| !audited.contains(s) && !unreleased.contains(s))
        .collect();
    assert!(
        missing.is_empty(),
        "`ssh-ca issued` lists {} certificates without an audit record: {missing:?}",
        missing.len()
    );
    assert!(
        unreleased.is_disjoint(&unique),
        "a certificate a client received is marked unreleased"
    );
}

fn serial_of(cert_line: &str, dir: &std::path::Path) -> u64 {
    static PROBES: AtomicUsize = AtomicUsize::new(0);
    let path = dir.join(format!(
        "probe-{}-cert.pub",
        PROBES.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&path, cert_line).unwrap();
    let info = cert_info(&path);
    info.lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("Serial: ")
                .and_then(|s| s.parse().ok())
        })
        .unwrap_or_else(|| panic!("no serial in {info}"))
}

#[test]
fn audit_verify_passes_intact_and_names_the_tampered_line() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let key = keygen(scratch.path(), "k");
    for _ in 0..5 {
        ca.sign(&key, "user", "root", &[]);
    }
    let out = ca.run(["audit", "verify"]);
    assert_eq!(out.status, 0, "{out}");
    assert!(out.stdout_str().contains("OK, 6 records"), "{out}");

    let path = ca.data_dir().join("audit.log");
    let original = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<String> = original.lines().map(str::to_string).collect();
    lines[3] = lines[3].replacen("\"root\"", "\"toor\"", 1);
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let out = ca.run(["audit", "verify"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stdout_str().contains("line 4"),
        "names the altered line: {out}"
    );

    // Truncation (the last records cut off) is detected too.
    let kept: Vec<&str> = original.lines().take(4).collect();
    std::fs::write(&path, kept.join("\n") + "\n").unwrap();
    let out = ca.run(["audit", "verify"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stdout_str().contains("truncated"), "{out}");
}

/// `ssh-ca sign` killed with SIGKILL at points spread over its whole run, many times: every
/// certificate `ssh-ca issued` lists has an audit record (`cert.issued`, or `cert.unreleased`
/// when its process died before handing it out), and the log verifies.
#[test]
fn every_stored_certificate_is_audited_after_kill_9() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let key = keygen(scratch.path(), "k");
    let sign = || {
        let mut cmd = ca.cmd(["sign", "--user", "--principals", "root", "--ttl", "5m"]);
        cmd.arg("--key").arg(&key.public);
        cmd.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        cmd
    };
    // How long one signing takes while 4 run at once, to spread the kills over it.
    let started = std::time::Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..5 {
                    assert!(sign().status().expect("run ssh-ca").success());
                }
            });
        }
    });
    let run_time = started.elapsed() / 5;
    std::thread::scope(|scope| {
        for w in 0..4u32 {
            let sign = &sign;
            scope.spawn(move || {
                for i in 0..60u32 {
                    let mut child = sign().spawn().expect("spawn ssh-ca");
                    let fraction = f64::from((i * 37 + w * 11) % 100) / 100.0;
                    std::thread::sleep(run_time.mul_f64(1.2 * fraction));
                    let _ = child.kill();
                    let _ = child.wait();
                }
            });
        }
    });
    let listed: Vec<u64> = ca
        .run_ok(["issued", "--limit", "100000"])
        .stdout_str()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect();
    let verify = ca.run(["audit", "verify"]);
    assert_eq!(verify.status, 0, "{verify}");
    let log = std::fs::read_to_string(ca.data_dir().join("audit.log")).unwrap();
    let audited: HashSet<u64> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "cert.issued" || v["event"] == "cert.unreleased")
        .filter_map(|v| v["serial"].as_u64())
        .collect();
    eprintln!(
        "{} certificates stored, {} audited as unreleased",
        listed.len(),
        log.matches("\"cert.unreleased\"").count()
    );
    let missing: Vec<&u64> = listed.iter().filter(|s| !audited.contains(s)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} listed certificates have no audit record: {missing:?}",
        missing.len(),
        listed.len()
    );
}
