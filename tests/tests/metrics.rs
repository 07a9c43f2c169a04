//! Prometheus metrics (`[metrics] listen`): scraped after a known set of actions, the counters
//! hold exactly what happened, and `promtool check metrics` (Debian's `prometheus`) accepts
//! the exposition.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use jitssh_tests::{
    Bastion, CaServer, KeyPair, Scratch, free_port, keygen, run_ok, run_with, target, tool, user,
    wait_for,
};

/// `GET /metrics` over plain HTTP/1.0; the body.
fn scrape(port: u16) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to /metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("send the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the response");
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    assert!(
        head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
        "{head}"
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_owned()
}

/// Samples by `name{label="value",...}` with labels sorted, so the exporter's label order does
/// not matter.
fn samples(body: &str) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (series, value) = line.rsplit_once(' ').expect("name value");
        let key = match series.split_once('{') {
            Some((name, labels)) => {
                let mut labels: Vec<&str> = labels.trim_end_matches('}').split(',').collect();
                labels.sort_unstable();
                format!("{name}{{{}}}", labels.join(","))
            }
            None => series.to_owned(),
        };
        out.insert(key, value.parse().expect("a number"));
    }
    out
}

fn value(samples: &BTreeMap<String, f64>, key: &str) -> f64 {
    *samples
        .get(key)
        .unwrap_or_else(|| panic!("no {key} in {samples:#?}"))
}

fn promtool_accepts(body: &str) {
    let out = run_with(
        Command::new(tool("promtool")).args(["check", "metrics"]),
        Some(body.as_bytes()),
        jitssh_tests::DEFAULT_TIMEOUT,
    );
    assert!(out.success(), "promtool check metrics: {out}\n{body}");
}

fn policy(users: &[(&str, &KeyPair)]) -> String {
    let mut text =
        String::from("[[roles]]\nname = \"dev\"\nlogins = [\"{user}\"]\nmax_ttl = \"1h\"\n");
    for (name, key) in users {
        text.push_str(&format!(
            "\n[[users]]\nname = \"{name}\"\nkeys = [\"{}\"]\nroles = [\"dev\"]\n",
            key.public_line()
        ));
    }
    text
}

#[test]
fn ca_counters_hold_exactly_what_happened_and_promtool_accepts_them() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let erin = keygen(scratch.path(), "erin");
    let metrics_port = free_port();
    let server = CaServer::start(
        scratch.path(),
        &policy(&[("alice", &alice), ("erin", &erin)]),
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
    );

    // Before anyone asked: only the API's own host certificate was issued, and its expiry shows.
    let before = samples(&scrape(metrics_port));
    let expiry = value(
        &before,
        "jitssh_host_certificate_expiry_timestamp_seconds{server=\"ca_api\"}",
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(expiry > now, "the API host certificate is valid: {expiry}");
    let own = "jitssh_ca_certificates_issued_total{ca=\"host\",cert_type=\"host\",role=\"none\"}";
    assert_eq!(value(&before, own), 1.0);
    assert!(
        !before
            .keys()
            .any(|k| k.starts_with("jitssh_ca_certificates") && k != own),
        "{before:#?}"
    );

    // Two certificates, one policy denial (ttl over max_ttl), one revoked key refused.
    for _ in 0..2 {
        let out = server
            .ssh("alice", &alice)
            .args(["cert", "--principals", "alice"])
            .run();
        assert!(out.success(), "{out}");
    }
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--principals", "alice", "--ttl", "5h"])
        .run();
    assert!(!out.success(), "{out}");
    let mut revoke = server.ca.cmd(["revoke", "--reason", "stolen", "--key"]);
    revoke.arg(&erin.public);
    run_ok(&mut revoke);
    let out = server
        .ssh("alice", &alice)
        .stdin(std::fs::read(&erin.public).unwrap())
        .args(["cert", "--principals", "alice"])
        .run();
    assert!(!out.success(), "{out}");

    let body = scrape(metrics_port);
    let after = samples(&body);
    assert_eq!(
        value(
            &after,
            "jitssh_ca_certificates_issued_total{ca=\"user\",cert_type=\"user\",role=\"dev\"}"
        ),
        2.0
    );
    assert_eq!(
        value(
            &after,
            "jitssh_ca_certificates_denied_total{reason=\"policy\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &after,
            "jitssh_ca_certificates_denied_total{reason=\"revoked\"}"
        ),
        1.0
    );
    assert_eq!(value(&after, own), 1.0);
    assert_eq!(
        value(&after, "jitssh_ca_issuance_duration_seconds_count"),
        3.0,
        "the host certificate and alice's two"
    );
    assert_eq!(
        value(
            &after,
            "jitssh_connections_total{outcome=\"admitted\",server=\"ca_api\"}"
        ),
        4.0,
        "one connection per ssh"
    );
    assert_eq!(
        value(&after, "jitssh_connections_open{server=\"ca_api\"}"),
        0.0
    );
    assert_eq!(value(&after, "jitssh_ca_revocations"), 1.0);
    assert!(value(&after, "jitssh_ca_krl_age_seconds") >= 0.0);
    promtool_accepts(&body);
}

#[test]
fn bastion_counters_follow_logins_and_sessions_and_promtool_accepts_them() {
    let scratch = Scratch::new();
    let dir = scratch.path();
    let ca = Bastion::ca(dir, "");
    let web01 = target(&ca, dir, "web01", |b| b);
    let alice = user(&ca, dir, "alice", &["root"], &["web*"], &[]);
    let metrics_port = free_port();
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        &format!("[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n"),
    );
    let before = samples(&scrape(metrics_port));
    assert!(
        value(
            &before,
            "jitssh_host_certificate_expiry_timestamp_seconds{server=\"bastion\"}"
        ) > 0.0
    );
    assert!(
        !before.keys().any(|k| k.starts_with("jitssh_bastion_")),
        "nothing yet: {before:#?}"
    );

    for _ in 0..2 {
        let out = bastion.ssh("root@web01", &alice).args(["echo", "hi"]).run();
        assert!(out.success(), "{out}");
    }
    let out = bastion.ssh("nobody@web01", &alice).args(["true"]).run();
    assert!(!out.success(), "{out}");
    // session.end is written after the person's ssh has gone.
    let ends = |audit: &str| audit.matches("\"event\":\"session.end\"").count();
    wait_for(
        || ends(&bastion.audit()) == 2,
        std::time::Duration::from_secs(10),
        "both sessions to end",
    );
    let refused = bastion
        .audit()
        .matches("\"event\":\"login.refused\"")
        .count() as f64;
    assert!(refused >= 1.0);

    let body = scrape(metrics_port);
    let after = samples(&body);
    assert_eq!(
        value(&after, "jitssh_bastion_sessions_total{target=\"web01\"}"),
        2.0
    );
    assert_eq!(
        value(&after, "jitssh_bastion_sessions_live{target=\"web01\"}"),
        0.0
    );
    assert_eq!(
        value(&after, "jitssh_bastion_logins_total{outcome=\"accepted\"}"),
        2.0
    );
    assert_eq!(
        value(&after, "jitssh_bastion_logins_total{outcome=\"refused\"}"),
        refused,
        "one per login.refused record"
    );
    assert_eq!(
        value(
            &after,
            "jitssh_connections_total{outcome=\"admitted\",server=\"bastion\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &after,
            "jitssh_ca_certificates_issued_total{ca=\"target\",cert_type=\"user\",role=\"none\"}"
        ),
        2.0,
        "one session certificate per session, from the embedded CA"
    );
    // `echo hi` twice: three bytes each way out of the target, nothing sent to it; every byte
    // recorded, nothing queued once the sessions ended.
    assert_eq!(
        value(
            &after,
            "jitssh_bastion_relayed_bytes_total{direction=\"from_target\"}"
        ),
        6.0
    );
    assert_eq!(value(&after, "jitssh_recording_bytes_total"), 6.0);
    assert_eq!(value(&after, "jitssh_recording_failures_total"), 0.0);
    assert_eq!(value(&after, "jitssh_recording_queued_bytes"), 0.0);
    promtool_accepts(&body);
}
