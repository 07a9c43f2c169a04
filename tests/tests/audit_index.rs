//! One audit trail across instances: each writer's log is its own hash chain, shipped into
//! the store's audit index as it grows; `ssh-ca audit search` queries every chain there and
//! `ssh-ca audit verify` checks them all, including that no chain's head went backwards.
//! (Two CAs on one PostgreSQL store: `ca_postgres`.)

use std::time::Duration;

use jitssh_tests::{CaServer, KeyPair, Scratch, keygen, wait_for};

fn policy(alice: &KeyPair) -> String {
    format!(
        "[[roles]]\nname = \"dev\"\nlogins = [\"{{user}}\"]\nmax_ttl = \"1h\"\n\n[[users]]\nname = \"alice\"\nkeys = [\"{}\"]\nroles = [\"dev\"]\n",
        alice.public_line()
    )
}

fn search(server: &CaServer, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["audit", "search"];
    all.extend_from_slice(args);
    let out = server.ca.run_ok(all);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("each result is a stored JSON record"))
        .collect()
}

#[test]
fn the_cas_records_are_searchable_and_every_chain_verifies() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    let alice = keygen(dir, "alice");
    let server = CaServer::start(dir, &policy(&alice), "[audit]\nhead_interval = \"1s\"\n");
    for _ in 0..3 {
        assert!(
            server
                .ssh("alice", &alice)
                .args(["cert", "--principals", "alice"])
                .run()
                .success()
        );
    }
    // An offline command writes to the same log; the server's shipper indexes it too.
    server
        .ca
        .run_ok(["revoke", "--serial", "1", "--reason", "lost laptop"]);
    wait_for(
        || search(&server, &["--event", "cert.revoked"]).len() == 1,
        Duration::from_secs(20),
        "the offline revocation indexed",
    );
    let issued = search(
        &server,
        &[
            "--event",
            "cert.issued",
            "--since",
            "1h",
            "--contains",
            r#""cert_type":"user""#,
        ],
    );
    assert_eq!(issued.len(), 3, "{issued:#?}");
    let seqs: Vec<u64> = issued.iter().filter_map(|r| r["seq"].as_u64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seqs:?}"
    );
    let revoked = search(&server, &["--contains", "lost laptop"]);
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["event"], "cert.revoked");
    assert!(search(&server, &["--event", "cert.issued", "--limit", "1"]).len() == 1);

    wait_for(
        || {
            let out = server.ca.run(["audit", "verify"]);
            out.status == 0 && String::from_utf8_lossy(&out.stdout).contains("heads recorded")
        },
        Duration::from_secs(20),
        "audit verify: every chain intact, heads recorded",
    );
}

#[test]
fn a_log_cut_short_is_a_head_that_went_backwards() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    let alice = keygen(dir, "alice");
    let server = CaServer::start(dir, &policy(&alice), "[audit]\nhead_interval = \"1s\"\n");
    for _ in 0..4 {
        assert!(
            server
                .ssh("alice", &alice)
                .args(["cert", "--principals", "alice"])
                .run()
                .success()
        );
    }
    let log = server.ca.data_dir().join("audit.log");
    let lines = std::fs::read_to_string(&log)
        .expect("audit log")
        .lines()
        .count();
    wait_for(
        || {
            let out = server.ca.run(["audit", "verify"]);
            String::from_utf8_lossy(&out.stdout).contains(&format!("head seq {lines}"))
        },
        Duration::from_secs(20),
        "the last head recorded",
    );
    drop(server);
    // Cut the log short, head file and all: the file alone now looks intact.
    let text = std::fs::read_to_string(&log).expect("audit log");
    let kept: String = text.lines().take(2).map(|l| format!("{l}\n")).collect();
    std::fs::write(&log, kept).expect("cut the log");
    std::fs::remove_file(log.with_file_name("audit.log.head")).expect("head file");
    let ca = jitssh_tests::CaFixture::configure(dir, &policy(&alice), "");
    let out = ca.run(["audit", "verify"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_ne!(out.status, 0, "{stdout}");
    assert!(
        stdout.contains("head went backwards") && stdout.contains(&format!("seq {lines}")),
        "{stdout}"
    );
}

#[test]
fn the_bastions_records_are_searched_and_its_chain_verified_by_the_auditor_tools() {
    let scratch = Scratch::new();
    let ca = jitssh_tests::Bastion::ca(scratch.path(), "");
    let web01 = jitssh_tests::target(&ca, scratch.path(), "web01", |b| b);
    let alice = jitssh_tests::user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = jitssh_tests::Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        "[audit]\nhead_interval = \"1s\"\n",
    );
    let out = bastion
        .ssh("root@web01", &alice)
        .args(["echo", "indexed-$((6*7))"])
        .run();
    assert!(out.success(), "{out}");
    let tool = |args: &[&str]| {
        jitssh_tests::run(
            std::process::Command::new(jitssh_tests::project_bin("ssh-bastion"))
                .arg("--config")
                .arg(&bastion.config)
                .args(args),
        )
    };
    wait_for(
        || {
            let found = tool(&[
                "audit",
                "search",
                "--event",
                "session.exec",
                "--since",
                "1h",
            ]);
            found.status == 0 && found.stdout_str().contains("indexed-$((6*7))")
        },
        Duration::from_secs(20),
        "the bastion's session.exec searchable",
    );
    let none = tool(&["audit", "search", "--contains", "never-happened-xyz"]);
    assert_eq!(none.status, 1, "nothing matches: exit 1: {none}");
    assert_eq!(none.stdout_str(), "");
    wait_for(
        || {
            let out = tool(&["audit", "verify"]);
            out.status == 0 && out.stdout_str().contains("heads recorded")
        },
        Duration::from_secs(20),
        "audit verify: the bastion's chain intact in the index",
    );
}
