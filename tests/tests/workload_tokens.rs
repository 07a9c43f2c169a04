//! Workload certificates by token: a CI job or a Kubernetes service account logs in to the
//! CA API as `workload` with any key and sends the JWT its platform signed; no key is
//! enrolled. The issuer is a Kubernetes/CI-style OpenID issuer on loopback (discovery + JWKS)
//! with keys these tests create; the target is a real sshd behind the bastion.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use jitssh_tests::{
    Bastion, CaServer, Issuer, KeyPair, Output, Scratch, Sshd, TestKey, cert_info, keygen, run_ok,
    target, tokens,
};
use serde_json::{Value, json};

const MAIN: &str = "repo:acme/deploy:ref:refs/heads/main";

fn policy(issuer: &str) -> String {
    format!(
        r#"
[[roles]]
name = "deploy"
logins = ["root"]
hosts = ["web*"]
max_ttl = "1h"
default_ttl = "30m"

[[workloads]]
name = "ci-{{repository}}"
issuer = "{issuer}"
audience = "jitssh"
roles = ["deploy"]
match = {{ sub = "{MAIN}" }}
"#
    )
}

/// The issuer with an RSA and a P-256 key, the CA serving its API, a target and a bastion.
struct World {
    scratch: Scratch,
    issuer: Issuer,
    rsa: TestKey,
    ec: TestKey,
    server: CaServer,
    identity: KeyPair,
    host_ca: PathBuf,
    web01: Sshd,
}

impl World {
    fn new() -> World {
        let scratch = Scratch::new();
        let (rsa, ec) = (TestKey::rsa("rsa-1"), TestKey::p256("ec-1"));
        let issuer = Issuer::start(&[&rsa, &ec]);
        let identity = keygen(scratch.path(), "bastion_id");
        let server = CaServer::start(
            scratch.path(),
            &policy(&issuer.url),
            &format!("bastion_keys = [\"{}\"]\n", identity.public_line()),
        );
        let host_ca = server.ca.ca_pub_file("host");
        let web01 = target(&server.ca, scratch.path(), "web01", |b| b);
        World {
            scratch,
            issuer,
            rsa,
            ec,
            server,
            identity,
            host_ca,
            web01,
        }
    }

    fn bastion(&self) -> Bastion {
        Bastion::start_remote(
            self.scratch.path(),
            &format!("127.0.0.1:{}", self.server.port),
            &self.host_ca,
            &self.identity.private,
            "",
            &[("web01", format!("127.0.0.1:{}", self.web01.port()))],
            "",
        )
    }

    /// Claims of a CI job's token for `sub` (audience jitssh, fresh jti).
    fn ci_claims(&self, sub: &str) -> Value {
        let repository = sub
            .strip_prefix("repo:")
            .and_then(|rest| rest.split(':').next())
            .unwrap_or("");
        self.issuer
            .claims("jitssh", sub, json!({ "repository": repository }))
    }

    /// `ssh workload@ca cert --token-file -` with `key`, the token on stdin.
    fn cert(&self, key: &KeyPair, token: &str) -> Output {
        self.server
            .ssh("workload", key)
            .args(["cert", "--token-file", "-"])
            .stdin(format!("{token}\n"))
            .run()
    }

    fn audit(&self, kind: &str) -> Vec<Value> {
        std::fs::read_to_string(self.server.ca.data_dir().join("audit.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == kind)
            .collect()
    }

    /// Asserts `token` is refused with one line containing `reason`, audited as
    /// `cert.denied` with that reason, and that nothing was issued.
    fn assert_refused(&self, key: &KeyPair, token: &str, reason: &str) {
        let (issued, denied) = (
            self.audit("cert.issued").len(),
            self.audit("cert.denied").len(),
        );
        let out = self.cert(key, token);
        assert_ne!(out.status, 0, "{reason}: {out}");
        assert!(out.stdout.is_empty(), "nothing issued for {reason}: {out}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {reason}: {out}");
        assert!(lines[0].contains(reason), "{reason}: {out}");
        let denials = self.audit("cert.denied");
        assert_eq!(denials.len(), denied + 1, "audited: {reason}");
        let record = denials.last().unwrap();
        let bare = reason
            .trim_start_matches("token refused: ")
            .trim_start_matches("denied: ");
        assert!(
            record["reason"].as_str().unwrap_or("").contains(bare),
            "{reason}: {record}"
        );
        if reason.starts_with("token refused: ") {
            // Counted as such by /metrics (jitssh_ca_certificates_denied_total{reason="token"}).
            assert_eq!(record["category"], "token", "{reason}: {record}");
        }
        assert_eq!(
            self.audit("cert.issued").len(),
            issued,
            "nothing issued: {reason}"
        );
    }
}

/// A CI job with no enrolled key gets a certificate for the key it logged in with (RS256 and
/// ES256 tokens), and deploys through the bastion to a real sshd; the key id names the
/// workload, issuer and subject.
#[test]
fn a_ci_token_gets_a_certificate_without_enrolment_and_deploys_through_the_bastion() {
    let w = World::new();
    let bastion = w.bastion();
    for (name, signer) in [("job-rs256", &w.rsa), ("job-es256", &w.ec)] {
        let key = keygen(w.scratch.path(), name);
        let out = w.cert(&key, &signer.sign(&w.ci_claims(MAIN)));
        assert_eq!(out.status, 0, "{name}: {out}");
        std::fs::write(key.cert_path(), &out.stdout).unwrap();
        let info = cert_info(&key.cert_path());
        let key_id = format!(
            "Key ID: \"workload:ci-acme-deploy iss={} sub={MAIN}\"",
            w.issuer.url
        );
        assert!(info.contains(&key_id), "{info}");
        assert!(info.contains("                root"), "{info}");

        let out = bastion
            .ssh("root@web01", &key)
            .args(["echo", "deployed"])
            .run();
        assert!(out.success(), "{name}: {out}");
        assert_eq!(out.stdout_str(), "deployed\n");
    }
    let issued = w.audit("cert.issued");
    let record = issued
        .iter()
        .find(|r| r["details"]["workload"] == "ci-acme-deploy")
        .expect("audited with the workload");
    assert_eq!(record["details"]["issuer"], w.issuer.url.as_str());
    assert_eq!(record["details"]["sub"], MAIN);
    assert_eq!(record["details"]["rule"], "workloads[0]");
    assert_eq!(record["requested_by"], "workload:ci-acme-deploy");
    bastion.wait_for_audit("workload:ci-acme-deploy", Duration::from_secs(10));
    // No key was enrolled anywhere.
    let policy = std::fs::read_to_string(w.scratch.path().join("policy.toml")).unwrap();
    assert!(!policy.contains("[[users]]"));
}

/// The same issuer's token for another repository or branch is denied, naming the rule and
/// the condition that did not hold.
#[test]
fn a_token_for_another_repository_or_branch_is_denied_with_the_rule() {
    let w = World::new();
    let key = keygen(w.scratch.path(), "job");
    for sub in [
        "repo:acme/other:ref:refs/heads/main",
        "repo:acme/deploy:ref:refs/heads/feature",
    ] {
        let token = w.rsa.sign(&w.ci_claims(sub));
        let reason = format!(
            "no workload rule matches: workloads[0] (ci-{{repository}}): sub is \"{sub}\", not \"{MAIN}\""
        );
        w.assert_refused(&key, &token, &reason);
    }
}

/// Every bad token is refused with one clear line, audited, and nothing is issued.
#[test]
fn bad_tokens_are_refused_with_one_clear_line_audited_and_nothing_issued() {
    let w = World::new();
    let key = keygen(w.scratch.path(), "job");
    let good = || w.ci_claims(MAIN);
    let with = |name: &str, value: Value| {
        let mut claims = good();
        claims[name] = value;
        claims
    };

    // One good token first: the issuer's keys are fetched and cached.
    let first = w.rsa.sign(&good());
    assert_eq!(w.cert(&key, &first).status, 0);
    let fetches = w.issuer.jwks_fetches();
    assert_eq!(fetches, 1);

    w.assert_refused(
        &key,
        &w.rsa.sign(&with("aud", json!("someone-else"))),
        "token refused: audience someone-else not accepted (expected jitssh)",
    );
    w.assert_refused(
        &key,
        &w.rsa.sign(&with("iss", json!("https://evil.example"))),
        "token refused: issuer https://evil.example is not configured in [[workloads]]",
    );
    let past = good()["iat"].as_u64().unwrap() - 600;
    w.assert_refused(
        &key,
        &w.rsa.sign(&with("exp", json!(past))),
        "token refused: token expired at ",
    );
    w.assert_refused(
        &key,
        &tokens::unsigned("rsa-1", &good()),
        "token refused: alg none refused",
    );
    w.assert_refused(
        &key,
        &tokens::hs256(&w.rsa.public_bytes(), "rsa-1", &good()),
        "token refused: alg HS256 refused (symmetric algorithms are never accepted)",
    );
    let forged = tokens::tampered(
        &w.rsa.sign(&good()),
        &with("sub", json!("repo:acme/other:ref:refs/heads/main")),
    );
    w.assert_refused(&key, &forged, "token refused: bad signature (key rsa-1)");
    // The reused first token.
    let jti = jitssh_identity::jws::unverified_claims(&first).unwrap()["jti"].clone();
    w.assert_refused(
        &key,
        &first,
        &format!(
            "denied: token id {} was already used",
            jti.as_str().unwrap()
        ),
    );
    assert_eq!(
        w.issuer.jwks_fetches(),
        fetches,
        "no refresh for known keys"
    );

    // An unknown kid: the CA refreshes the issuer's keys once (its refresh interval passed on
    // its clock), then refuses; a second unknown kid at once costs the issuer nothing.
    w.server.ca.clock().advance(11);
    let stranger = TestKey::p256("stranger");
    w.assert_refused(
        &key,
        &stranger.sign(&good()),
        &format!("token refused: unknown key id stranger at {}", w.issuer.url),
    );
    assert_eq!(w.issuer.jwks_fetches(), fetches + 1, "one refresh");
    let another = TestKey::p256("another");
    w.assert_refused(&key, &another.sign(&good()), "unknown key id another");
    assert_eq!(w.issuer.jwks_fetches(), fetches + 1, "rate-limited");

    // The refusals' audit records carry what the token claimed, marked as claims.
    let denials = w.audit("cert.denied");
    assert!(
        denials
            .iter()
            .any(|d| d["details"]["claimed_sub"] == "repo:acme/other:ref:refs/heads/main"),
        "{denials:?}"
    );
}

/// A rotated key is picked up on its first token (one refresh), with no restart.
#[test]
fn a_rotated_issuer_key_is_fetched_on_its_first_token() {
    let w = World::new();
    let key = keygen(w.scratch.path(), "job");
    assert_eq!(w.cert(&key, &w.rsa.sign(&w.ci_claims(MAIN))).status, 0);
    let next = TestKey::ed25519("ed-2");
    w.issuer.set_keys(&[&w.rsa, &next]);
    w.server.ca.clock().advance(11);
    let out = w.cert(&key, &next.sign(&w.ci_claims(MAIN)));
    assert_eq!(out.status, 0, "{out}");
    assert_eq!(w.issuer.jwks_fetches(), 2);
}

/// The issuer down: a clear error, fast, audited, nothing issued.
#[test]
fn an_issuer_that_is_down_is_a_clear_fast_error() {
    let scratch = Scratch::new();
    let signer = TestKey::p256("ec-1");
    let issuer = Issuer::start(&[&signer]);
    let url = issuer.url.clone();
    let claims = issuer.claims("jitssh", MAIN, json!({"repository": "acme/deploy"}));
    drop(issuer);
    let server = CaServer::start(scratch.path(), &policy(&url), "");
    let key = keygen(scratch.path(), "job");
    let started = Instant::now();
    let out = server
        .ssh("workload", &key)
        .args(["cert", "--token-file", "-"])
        .stdin(signer.sign(&claims))
        .run();
    let took = started.elapsed();
    assert_ne!(out.status, 0, "{out}");
    assert_eq!(
        out.stderr.trim(),
        format!(
            "ssh-ca: token refused: cannot fetch the keys of {url}: cannot reach {url}/.well-known/openid-configuration: connection failed: Connection refused (os error 111)"
        ),
        "{out}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let issued = run_ok(&mut server.ca.cmd(["issued"])).stdout_str();
    assert!(!issued.contains("workload:"), "{issued}");
}

/// Logins as `workload` reach only workload commands; enrolled users cannot use tokens.
#[test]
fn the_workload_login_is_confined_to_token_certificates() {
    let w = World::new();
    let key = keygen(w.scratch.path(), "job");
    let out = w.server.ssh("workload", &key).args(["whoami"]).run();
    assert_ne!(out.status, 0);
    assert!(
        out.stderr
            .contains("as user `workload` you may run: cert --token-file -"),
        "{out}"
    );
    let out = w.server.ssh("workload", &key).args(["cert"]).run();
    assert!(out.stderr.contains("workloads send a token"), "{out}");

    // --dry-run shows the decision and spends nothing: the same token then gets its
    // certificate.
    let token = w.ec.sign(&w.ci_claims(MAIN));
    let out = w
        .server
        .ssh("workload", &key)
        .args(["cert", "--token-file", "-", "--dry-run"])
        .stdin(token.clone())
        .run();
    assert_eq!(out.status, 0, "{out}");
    assert!(
        out.stdout_str().contains("dry run: nothing was signed"),
        "{out}"
    );
    assert!(
        out.stdout_str().contains("workload:ci-acme-deploy"),
        "{out}"
    );
    assert_eq!(w.cert(&key, &token).status, 0);
}
