//! Audit events streamed to a SIEM as they are written (`[audit] forward`): a real syslog
//! collector (rsyslogd) receives every record of the CA in order, none lost across a restart
//! of the collector; the all-in-one bastion streams its own log and its embedded CA's.

use std::path::Path;
use std::time::Duration;

use jitssh_tests::{
    Bastion, CaServer, KeyPair, Rsyslog, Scratch, Sshd, free_port, keygen, target, user, wait_for,
};

fn log_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The audit record carried by an RFC 5424 message (after `<PRI>1 TIME HOST APP PID MSGID - `).
fn record_of(message: &str) -> &str {
    message.splitn(8, ' ').nth(7).unwrap_or("")
}

/// Records of all collectors, first copies only (at-least-once delivery may repeat one after a
/// reconnection), asserting they never go backwards.
fn delivered_in_order(messages: &[String]) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    let mut last_seq = 0u64;
    for message in messages {
        let record = record_of(message).to_owned();
        if seen.contains(&record) {
            continue;
        }
        let seq =
            serde_json::from_str::<serde_json::Value>(&record).expect("record is JSON")["seq"]
                .as_u64()
                .expect("record has a seq");
        assert!(
            seq > last_seq,
            "record {seq} arrived after {last_seq}: {messages:#?}"
        );
        last_seq = seq;
        seen.push(record);
    }
    seen
}

fn issue(server: &CaServer, user: &str, key: &KeyPair) -> bool {
    server
        .ssh(user, key)
        .args(["cert", "--principals", user])
        .run()
        .success()
}

#[test]
fn a_syslog_collector_gets_every_ca_record_in_order_across_its_restart() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    let alice = keygen(dir, "alice");
    let stranger = keygen(dir, "stranger");
    let policy = format!(
        "[[roles]]\nname = \"dev\"\nlogins = [\"{{user}}\"]\nmax_ttl = \"1h\"\n\n[[users]]\nname = \"alice\"\nkeys = [\"{}\"]\nroles = [\"dev\"]\n",
        alice.public_line()
    );
    let port = free_port();
    let mut first = Rsyslog::start(dir, "first", port);
    let server = CaServer::start(
        dir,
        &policy,
        &format!("[audit]\nforward = \"syslog+tcp://127.0.0.1:{port}\"\n"),
    );
    let audit_log = server.ca.data_dir().join("audit.log");
    for _ in 0..3 {
        assert!(issue(&server, "alice", &alice));
    }
    wait_for(
        || first.messages().len() >= log_lines(&audit_log).len(),
        Duration::from_secs(20),
        "the collector to receive the first records",
    );
    let before = first.messages();
    let header: Vec<&str> = before[0].splitn(8, ' ').collect();
    assert_eq!(header[0], "<86>1", "authpriv.info, RFC 5424: {}", before[0]);
    assert_eq!(header[3], "ssh-ca", "{}", before[0]);
    assert!(
        before
            .iter()
            .any(|m| m.split(' ').nth(5) == Some("cert.issued")),
        "the event kind is the MSGID: {before:#?}"
    );

    // The collector goes away; the CA goes on issuing and refusing meanwhile.
    first.stop();
    for _ in 0..2 {
        assert!(issue(&server, "alice", &alice));
    }
    assert!(
        !issue(&server, "alice", &stranger),
        "an unknown key is refused"
    );
    let written = log_lines(&audit_log);
    assert!(written.len() > before.len() + 2, "{written:#?}");

    let second = Rsyslog::start(dir, "second", port);
    wait_for(
        || {
            let all: Vec<String> = first
                .messages()
                .into_iter()
                .chain(second.messages())
                .collect();
            delivered_in_order(&all).len() >= written.len()
        },
        Duration::from_secs(30),
        "the records written while the collector was down",
    );
    let all: Vec<String> = first
        .messages()
        .into_iter()
        .chain(second.messages())
        .collect();
    assert_eq!(
        delivered_in_order(&all),
        written,
        "every record, byte for byte, in order, none lost"
    );
}

#[test]
fn the_all_in_one_bastion_streams_its_log_and_its_embedded_cas() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    let ca = Bastion::ca(dir, "");
    let web01: Sshd = target(&ca, dir, "web01", |b| b);
    let alice = user(&ca, dir, "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        "[audit]\nforward = \"file:siem.jsonl\"\n",
    );
    let out = bastion.ssh("root@web01", &alice).args(["echo", "hi"]).run();
    assert!(out.success(), "{out}");
    bastion.wait_for_audit("session.end", Duration::from_secs(10));

    let siem = dir.join("siem.jsonl");
    let bastion_log = bastion.data_dir().join("audit.log");
    let ca_log = ca.data_dir().join("audit.log");
    wait_for(
        || {
            let got = log_lines(&siem);
            let want: Vec<String> = log_lines(&bastion_log)
                .into_iter()
                .chain(log_lines(&ca_log))
                .collect();
            want.iter().all(|line| got.contains(line))
        },
        Duration::from_secs(20),
        "both logs in the SIEM file",
    );
    let got = log_lines(&siem);
    for log in [&bastion_log, &ca_log] {
        let lines = log_lines(log);
        assert!(!lines.is_empty());
        let positions: Vec<usize> = lines
            .iter()
            .map(|line| got.iter().position(|g| g == line).expect("forwarded"))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "each log in its order"
        );
    }
    assert!(got.iter().any(|l| l.contains("\"event\":\"session.end\"")));
}
