//! Shadow mode: `shadow_policy` in ca.toml is evaluated beside the enforced policy for every
//! certificate decision and never enforced. Driven with the real `ssh` client against
//! `ssh-ca serve`; the differences are read back with `ssh-ca shadow report` and from the
//! audit log.

use std::path::Path;
use std::time::Duration;

use jitssh_tests::{CaFixture, CaServer, Issuer, KeyPair, Scratch, TestKey, keygen, run_with};

/// A policy with role `dev` (logins `{user}`, `deploy`; `max_ttl` as given), role `ops`
/// (login root, reason required) and the given users.
fn policy(dev_max_ttl: &str, users: &[(&str, &KeyPair, &str)]) -> String {
    let mut text = format!(
        r#"
[[roles]]
name = "dev"
logins = ["{{user}}", "deploy"]
hosts = ["web*"]
max_ttl = "{dev_max_ttl}"
default_ttl = "15m"

[[roles]]
name = "ops"
logins = ["root"]
hosts = ["db*"]
max_ttl = "1h"
require_reason = true
"#
    );
    for (name, key, roles) in users {
        text.push_str(&format!(
            "\n[[users]]\nname = \"{name}\"\nkeys = [\"{}\"]\nroles = [{roles}]\n",
            key.public_line()
        ));
    }
    text
}

const SHADOW: &str = "shadow_policy = \"policy.next.toml\"\n";

/// Starts `ssh-ca serve` with `enforced` as policy.toml and `shadow` as policy.next.toml.
fn start(dir: &Path, enforced: &str, shadow: &str) -> CaServer {
    std::fs::write(dir.join("policy.next.toml"), shadow).unwrap();
    CaServer::start(dir, enforced, SHADOW)
}

/// The `policy.shadow` records of the audit log, parsed.
fn shadow_records(server: &CaServer) -> Vec<serde_json::Value> {
    let log = std::fs::read_to_string(server.ca.data_dir().join("audit.log")).unwrap();
    log.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["event"] == "policy.shadow")
        .collect()
}

fn count_events(server: &CaServer, event: &str) -> usize {
    let log = std::fs::read_to_string(server.ca.data_dir().join("audit.log")).unwrap();
    log.lines()
        .filter(|l| l.contains(&format!("\"event\":\"{event}\"")))
        .count()
}

/// Certificates issued to alice (the CA API's own host certificate is issued too).
fn issued_to_alice(server: &CaServer) -> usize {
    let log = std::fs::read_to_string(server.ca.data_dir().join("audit.log")).unwrap();
    log.lines()
        .filter(|l| {
            l.contains("\"event\":\"cert.issued\"") && l.contains("\"requested_by\":\"alice\"")
        })
        .count()
}

fn report_json(server: &CaServer) -> serde_json::Value {
    let out = server
        .ca
        .run_ok(["shadow", "report", "--since", "1d", "--json"]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_stricter_shadow_reports_would_deny_while_the_request_is_issued() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let users = [("alice", &alice, "\"dev\"")];
    let server = start(
        scratch.path(),
        &policy("8h", &users),
        &policy("30m", &users),
    );

    // Within both policies: the same decision, nothing extra written.
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--ttl", "10m"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    assert!(
        shadow_records(&server).is_empty(),
        "same decision: no record"
    );

    // --dry-run shows both decisions and records nothing.
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--ttl", "2h", "--dry-run"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    let text = out.stdout_str();
    assert!(text.contains("dry run: nothing was signed"), "{text}");
    assert!(
        text.contains(
            "shadow policy (not enforced): would deny: ttl 2h exceeds max_ttl 30m for role dev"
        ),
        "{text}"
    );
    assert!(
        shadow_records(&server).is_empty(),
        "a dry run audits nothing"
    );

    // Allowed by the enforced policy: issued, and the shadow's denial is audited.
    let issued_before = issued_to_alice(&server);
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--ttl", "2h"])
        .run();
    assert_eq!(out.status, 0, "the enforced policy decides: {out}");
    assert!(out.stdout_str().contains("-cert-v01@openssh.com"), "{out}");
    assert_eq!(issued_to_alice(&server), issued_before + 1);
    let records = shadow_records(&server);
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["kind"], "would_deny");
    assert_eq!(record["user"], "alice");
    assert_eq!(record["via"], "cert");
    assert_eq!(record["rule"], "ttl 2h exceeds max_ttl 30m for role dev");
    assert_eq!(record["enforced"]["allowed"], true);
    assert_eq!(record["enforced"]["ttl"], "2h");
    assert_eq!(record["shadow"]["allowed"], false);

    let out = server.ca.run_ok(["shadow", "report", "--since", "7d"]);
    let table = out.stdout_str();
    let row = table
        .lines()
        .find(|l| l.starts_with("newly deny"))
        .unwrap_or_else(|| panic!("a would-deny row: {table}"));
    assert!(row.contains("alice"), "{row}");
    assert!(row.contains("dev"), "{row}");
    assert!(
        row.contains("ttl 2h exceeds max_ttl 30m for role dev"),
        "{row}"
    );
    assert!(table.contains("1 decision(s) would differ"), "{table}");

    let json = report_json(&server);
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1, "{json}");
    assert_eq!(rows[0]["kind"], "would_deny");
    assert_eq!(rows[0]["count"], 1);
    assert_eq!(rows[0]["roles"], "dev");
    assert_eq!(rows[0]["latest"]["enforced"]["allowed"], true);
}

#[test]
fn a_more_permissive_shadow_reports_would_allow_and_the_request_stays_denied() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let server = start(
        scratch.path(),
        &policy("8h", &[("alice", &alice, "\"dev\"")]),
        &policy("8h", &[("alice", &alice, "\"dev\", \"ops\"")]),
    );
    let ask = ["cert", "--principals", "root", "--reason", "INC-7"];

    let mut dry = ask.to_vec();
    dry.push("--dry-run");
    let out = server.ssh("alice", &alice).args(dry).run();
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.clone().contains("denied"), "{out}");
    let text = out.stdout_str();
    assert!(
        text.contains("shadow policy (not enforced): would allow it:"),
        "{text}"
    );
    assert!(text.contains("role ops"), "the shadow's rules: {text}");

    let out = server.ssh("alice", &alice).args(ask).run();
    assert_ne!(out.status, 0, "the enforced denial stands: {out}");
    assert!(!out.stdout_str().contains("cert-v01"), "{out}");
    assert_eq!(issued_to_alice(&server), 0);
    assert_eq!(count_events(&server, "cert.denied"), 1);

    let records = shadow_records(&server);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["kind"], "would_allow");
    assert_eq!(records[0]["enforced"]["allowed"], false);
    assert_eq!(records[0]["shadow"]["allowed"], true);
    assert_eq!(records[0]["shadow"]["principals"][0], "root");

    let table = server.ca.run_ok(["shadow", "report"]).stdout_str();
    let row = table
        .lines()
        .find(|l| l.starts_with("newly allow"))
        .unwrap_or_else(|| panic!("a would-allow row: {table}"));
    assert!(row.contains("alice") && row.contains("ops"), "{row}");
}

#[test]
fn identical_decisions_write_no_shadow_record() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let text = policy("8h", &[("alice", &alice, "\"dev\"")]);
    let server = start(scratch.path(), &text, &text);
    let allowed = server
        .ssh("alice", &alice)
        .args(["cert", "--ttl", "1h"])
        .run();
    assert_eq!(allowed.status, 0, "{allowed}");
    let denied = server
        .ssh("alice", &alice)
        .args(["cert", "--principals", "root"])
        .run();
    assert_ne!(denied.status, 0, "{denied}");
    assert_eq!(issued_to_alice(&server), 1);
    assert_eq!(count_events(&server, "cert.denied"), 1);
    assert!(shadow_records(&server).is_empty());
    let table = server.ca.run_ok(["shadow", "report"]).stdout_str();
    assert!(
        table.contains("decided as the enforced one every time"),
        "{table}"
    );
}

#[test]
fn a_broken_shadow_is_refused_at_sighup_and_the_old_one_kept() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let users = [("alice", &alice, "\"dev\"")];
    let mut server = start(
        scratch.path(),
        &policy("8h", &users),
        &policy("30m", &users),
    );

    // A broken shadow file, and at the same SIGHUP an enforced change (alice gains ops).
    std::fs::write(
        scratch.file("policy.next.toml"),
        "[[roles]]\nname = \"broken\"\nmax_ttl = \"forever\"\n",
    )
    .unwrap();
    std::fs::write(
        scratch.file("policy.toml"),
        policy("8h", &[("alice", &alice, "\"dev\", \"ops\"")]),
    )
    .unwrap();
    server.hangup();
    let log = server
        .daemon
        .wait_for_log("shadow policy reload refused", Duration::from_secs(10));
    assert!(
        log.contains("policy.next.toml"),
        "the error names the file: {log}"
    );
    assert!(
        log.contains("policy reloaded"),
        "the enforced one still reloads: {log}"
    );
    assert_eq!(count_events(&server, "policy.shadow_reload_refused"), 1);

    // The old shadow (max_ttl 30m, no ops) is still compared against.
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--ttl", "2h", "--role", "dev"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    let records = shadow_records(&server);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["kind"], "would_deny");
    assert_eq!(
        records[0]["rule"],
        "ttl 2h exceeds max_ttl 30m for role dev"
    );
    // The new enforced policy is in force; the old shadow knows no ops for alice.
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--principals", "root", "--reason", "INC-9"])
        .run();
    assert_eq!(out.status, 0, "the enforced reload took: {out}");
    assert_eq!(shadow_records(&server).len(), 2);

    // A fixed shadow file is taken at the next SIGHUP.
    std::fs::write(
        scratch.file("policy.next.toml"),
        policy("8h", &[("alice", &alice, "\"dev\", \"ops\"")]),
    )
    .unwrap();
    server.hangup();
    server
        .daemon
        .wait_for_log("shadow policy reloaded", Duration::from_secs(10));
    let out = server
        .ssh("alice", &alice)
        .args(["cert", "--ttl", "2h", "--role", "dev"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    assert_eq!(shadow_records(&server).len(), 2, "now the same decision");
}

#[test]
fn a_broken_shadow_file_stops_serve_at_start() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    std::fs::write(
        scratch.file("policy.next.toml"),
        "[[roles]]\nname = \"broken\"\nmax_ttl = \"forever\"\n",
    )
    .unwrap();
    let ca = CaFixture::configure(
        scratch.path(),
        &policy("8h", &[("alice", &alice, "\"dev\"")]),
        &format!(
            "listen = \"127.0.0.1:{}\"\n{SHADOW}",
            jitssh_tests::free_port()
        ),
    );
    let out = run_with(&mut ca.cmd(["serve"]), None, Duration::from_secs(30));
    assert_ne!(out.status, 0, "{out}");
    let err = out.stderr.clone();
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ssh-ca:") && last.contains("policy.next.toml"),
        "one line naming the file: {err}"
    );
}

/// A workload's token decision is shadowed too: a shadow with a shorter default TTL for the
/// workload's role is a would-change of the TTL, naming the shadow's rule; the certificate
/// issued has the enforced TTL.
#[test]
fn a_workload_decision_is_shadowed_as_a_would_change() {
    let scratch = Scratch::new();
    let key = TestKey::rsa("rsa-1");
    let issuer = Issuer::start(&[&key]);
    let workload_policy = |max: &str, default: &str| {
        format!(
            r#"
[[roles]]
name = "deploy"
logins = ["root"]
hosts = ["web*"]
max_ttl = "{max}"
default_ttl = "{default}"

[[workloads]]
name = "ci"
issuer = "{}"
audience = "jitssh"
roles = ["deploy"]
match = {{ sub = "job" }}
"#,
            issuer.url
        )
    };
    let server = start(
        scratch.path(),
        &workload_policy("1h", "30m"),
        &workload_policy("10m", "5m"),
    );
    let job = keygen(scratch.path(), "job");
    let cert = |extra: &[&str]| {
        let token = key.sign(&issuer.claims("jitssh", "job", serde_json::json!({})));
        server
            .ssh("workload", &job)
            .args(["cert", "--token-file", "-"])
            .args(extra)
            .stdin(format!("{token}\n"))
            .run()
    };

    let out = cert(&["--dry-run"]);
    assert_eq!(out.status, 0, "{out}");
    let text = out.stdout_str();
    assert!(
        text.contains("shadow policy (not enforced): would issue it with another ttl:"),
        "{text}"
    );
    assert!(
        shadow_records(&server).is_empty(),
        "a dry run audits nothing"
    );

    let out = cert(&[]);
    assert_eq!(out.status, 0, "{out}");
    let records = shadow_records(&server);
    assert_eq!(records.len(), 1, "{records:?}");
    let record = &records[0];
    assert_eq!(record["kind"], "would_change");
    assert_eq!(record["via"], "workload");
    assert_eq!(record["user"], "workload:ci");
    assert_eq!(record["changed"], serde_json::json!(["ttl"]));
    assert_eq!(record["enforced"]["ttl"], "30m");
    assert_eq!(record["shadow"]["ttl"], "5m");
    assert!(
        record["rule"].as_str().unwrap().contains("deploy"),
        "the shadow's rule: {record}"
    );
    let table = server.ca.run_ok(["shadow", "report"]).stdout_str();
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("change grant") && l.contains("workload:ci")),
        "{table}"
    );
}

/// An SSO sign-in is shadowed with the shadow's own `[[sso.groups]]`: a shadow that maps
/// carol's IdP group to no role is a would-deny naming that rule, while the enforced policy
/// issues her certificate. Real OpenID Provider, real `ssh-ca login --sso`.
#[test]
fn an_sso_sign_in_is_shadowed_with_the_shadows_groups() {
    let scratch = Scratch::new();
    let carol = keygen(scratch.path(), "carol");
    let idp = jitssh_tests::Idp::start(
        scratch.path(),
        r#"{"carol": {"email": "carol@example.com", "preferred_username": "carol", "groups": ["ops"]}}"#,
    );
    let role =
        "[[roles]]\nname = \"ops\"\nlogins = [\"root\"]\nhosts = [\"web*\"]\nmax_ttl = \"1h\"\n";
    let enforced = format!("{role}\n[[sso.groups]]\nclaim = \"ops\"\nroles = [\"ops\"]\n");
    std::fs::write(scratch.file("policy.next.toml"), role).unwrap();
    let server = CaServer::start(
        scratch.path(),
        &enforced,
        &format!(
            "{SHADOW}[sso]\nissuer = \"{}\"\nclient_id = \"jitssh\"\nname_claim = \"email\"\ngroups_claim = \"groups\"\n",
            idp.issuer
        ),
    );
    let mut cmd = std::process::Command::new(jitssh_tests::project_bin("ssh-ca"));
    cmd.arg("login")
        .arg("--ca")
        .arg(format!("sso@localhost:{}", server.port))
        .arg("-i")
        .arg(&carol.private)
        .arg("--sso");
    for option in [
        "BatchMode=yes",
        "StrictHostKeyChecking=yes",
        "GlobalKnownHostsFile=/dev/null",
        "IdentityAgent=none",
    ] {
        cmd.args(["-o", option]);
    }
    cmd.arg("-o").arg(format!(
        "UserKnownHostsFile={}",
        server.known_hosts.display()
    ));
    cmd.env_remove("SSH_AUTH_SOCK");
    let (out, person) = jitssh_tests::sso_login(
        &mut cmd,
        &idp,
        "carol",
        false,
        Duration::ZERO,
        Duration::from_secs(60),
    );
    assert!(person.expect("URL and code shown").success());
    assert_eq!(out.status, 0, "the enforced policy issues: {out}");
    let records = shadow_records(&server);
    assert_eq!(records.len(), 1, "{records:?}");
    assert_eq!(records[0]["kind"], "would_deny");
    assert_eq!(records[0]["via"], "sso");
    assert_eq!(records[0]["user"], "carol@example.com");
    assert!(
        records[0]["rule"]
            .as_str()
            .unwrap()
            .contains("no role for your groups at the identity provider (ops)"),
        "{}",
        records[0]
    );
}
