//! Host certificates by identity token: a cloud VM logs in to the CA API as `host` with its
//! host key and sends the identity token its metadata service gave it; no `ssh-ca host add`, no
//! join token. The issuer is a GCP-style OpenID issuer on loopback (discovery + JWKS) with keys
//! these tests create; the certificate is served by a real sshd and checked by a real `ssh`
//! that trusts only the host CA's `@cert-authority` line.

use std::path::PathBuf;
use std::process::Command;

use jitssh_tests::{
    CaServer, Issuer, KeyPair, Output, Scratch, Ssh, Sshd, TestKey, cert_info, keygen, project_bin,
    run,
};
use serde_json::{Value, json};

const AUDIENCE: &str = "https://ca.jitssh.test";

fn policy(issuer: &str) -> String {
    format!(
        r#"
[[roles]]
name = "deploy"
logins = ["root"]
max_ttl = "1h"

[[workloads]]
name = "ci-{{repository}}"
issuer = "{issuer}"
audience = "jitssh"
roles = ["deploy"]
match = {{ repository = "acme/deploy" }}

[[hosts_by_token]]
issuer = "{issuer}"
audience = "{AUDIENCE}"
match = {{ "google.compute_engine.project_id" = "acme-prod" }}
names = ["{{google.compute_engine.instance_name}}.internal", "{{google.compute_engine.instance_id}}"]
ttl = "1h"
"#
    )
}

/// The issuer (one P-256 key) and the CA serving its API.
struct World {
    scratch: Scratch,
    issuer: Issuer,
    signer: TestKey,
    server: CaServer,
    host_ca: PathBuf,
}

impl World {
    fn new() -> World {
        let scratch = Scratch::new();
        let signer = TestKey::p256("vm-key-1");
        let issuer = Issuer::start(&[&signer]);
        let server = CaServer::start(scratch.path(), &policy(&issuer.url), "");
        let host_ca = server.ca.ca_pub_file("host");
        World {
            scratch,
            issuer,
            signer,
            server,
            host_ca,
        }
    }

    /// Claims of a GCP-style instance identity token (`format=full`) for `instance` in
    /// `project`, with a fresh `jti`.
    fn vm_claims(&self, project: &str, instance: &str) -> Value {
        self.issuer.claims(
            AUDIENCE,
            "104857600000000000001",
            json!({ "google": { "compute_engine": {
                "project_id": project, "project_number": 4242,
                "zone": "europe-west1-b", "instance_id": "5566778899",
                "instance_name": instance,
            }}}),
        )
    }

    /// `ssh host@ca join --token-file -` with `key`, the token on stdin, and `extra` arguments.
    fn join(&self, key: &KeyPair, token: &str, extra: &[&str]) -> Output {
        self.server
            .ssh("host", key)
            .args(["join", "--token-file", "-"])
            .args(extra)
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

    /// Asserts `token` is refused with one line containing `reason`, audited as `cert.denied`
    /// with that reason, and that nothing was issued.
    fn assert_refused(&self, key: &KeyPair, token: &str, reason: &str) {
        let (issued, denied) = (
            self.audit("cert.issued").len(),
            self.audit("cert.denied").len(),
        );
        let out = self.join(key, token, &[]);
        assert_ne!(out.status, 0, "{reason}: {out}");
        assert!(out.stdout.is_empty(), "nothing issued for {reason}: {out}");
        let lines: Vec<&str> = out.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line for {reason}: {out}");
        assert!(lines[0].contains(reason), "{reason}: {out}");
        let denials = self.audit("cert.denied");
        assert_eq!(denials.len(), denied + 1, "audited: {reason}");
        let record = denials.last().unwrap();
        assert_eq!(
            record["requested_by"].as_str().unwrap_or("").get(..4),
            Some("host")
        );
        let bare = reason
            .trim_start_matches("token refused: ")
            .trim_start_matches("denied: ");
        assert!(
            record["reason"].as_str().unwrap_or("").contains(bare),
            "{reason}: {record}"
        );
        assert_eq!(
            self.audit("cert.issued").len(),
            issued,
            "nothing issued: {reason}"
        );
    }
}

fn field<'a>(info: &'a str, name: &str) -> &'a str {
    info.lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .map(str::trim)
        .unwrap_or("")
}

/// A VM's identity token gets a host certificate named by the rule (no `host add`, no join
/// token); a real sshd serves it and a real `ssh` trusting only the host CA connects with
/// strict host key checking under the expanded name. A fresh token renews it; nothing is
/// enrolled.
#[test]
fn a_vm_token_gets_a_host_certificate_that_stock_ssh_trusts() {
    let w = World::new();
    let host_key = keygen(w.scratch.path(), "ssh_host_ed25519_key");
    let out = w.join(
        &host_key,
        &w.signer.sign(&w.vm_claims("acme-prod", "Web-1")),
        &[],
    );
    assert_eq!(out.status, 0, "{out}");
    std::fs::write(host_key.cert_path(), &out.stdout).unwrap();
    let info = cert_info(&host_key.cert_path());
    assert!(info.contains("host certificate"), "{info}");
    let principals: Vec<&str> = info
        .split("Principals:")
        .nth(1)
        .unwrap()
        .split("Critical Options:")
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(principals, ["web-1.internal", "5566778899"], "{info}");
    let key_id = format!(
        "Key ID: \"host:web-1.internal iss={} sub=104857600000000000001\"",
        w.issuer.url
    );
    assert!(info.contains(&key_id), "{info}");

    let issued = w.audit("cert.issued");
    let record = issued.last().expect("audited");
    assert_eq!(record["requested_by"], "host:web-1.internal");
    assert_eq!(record["details"]["via"], "token");
    assert_eq!(record["details"]["issuer"], w.issuer.url.as_str());
    assert_eq!(record["details"]["sub"], "104857600000000000001");
    assert_eq!(record["details"]["rule"], "hosts_by_token[0]");

    // sshd serves it; ssh with only the @cert-authority line accepts it (strict checking).
    let person = keygen(w.scratch.path(), "person");
    let user_cert = w.server.ca.sign(&person, "user", "root", &[]);
    let sshd = Sshd::builder()
        .host_key(&host_key.private)
        .host_cert(host_key.cert_path())
        .trusted_user_ca(w.server.ca.ca_pub_file("user"))
        .start();
    let ca_line = std::fs::read_to_string(&w.host_ca).unwrap();
    let known = w.scratch.write(
        "known_hosts",
        format!("@cert-authority *.internal {ca_line}"),
    );
    let connect = |name: &str| {
        Ssh::new(sshd.port())
            .user("root")
            .identity(&person.private)
            .cert(&user_cert)
            .known_hosts(&known)
            .host(name)
            .args(["echo", "host-cert-ok"])
            .run()
    };
    let out = connect("web-1.internal");
    assert_eq!(out.stdout_str(), "host-cert-ok\n", "{out}");
    // A name the certificate does not carry is refused by ssh itself.
    let out = connect("web-2.internal");
    assert_ne!(out.status, 0, "{out}");

    // Renewal: the same request with a fresh token, here from the renewal timer's
    // `ssh-ca host renew --identity-token-file`; a new certificate, still nothing enrolled.
    let serial = field(&info, "Serial:").to_string();
    let token_file = w.scratch.write(
        "token.jwt",
        w.signer.sign(&w.vm_claims("acme-prod", "web-1")),
    );
    let mut renew = Command::new(project_bin("ssh-ca"));
    renew
        .args(["host", "renew", "--force", "--ca"])
        .arg(format!("localhost:{}", w.server.port))
        .arg("--ca-key")
        .arg(&w.host_ca)
        .arg("--key")
        .arg(&host_key.private)
        .arg("--out")
        .arg(host_key.cert_path())
        .arg("--identity-token-file")
        .arg(&token_file);
    let out = run(&mut renew);
    assert_eq!(out.status, 0, "{out}");
    let renewed = cert_info(&host_key.cert_path());
    assert_ne!(field(&renewed, "Serial:"), serial);
    assert!(renewed.contains("web-1.internal"), "{renewed}");
    // The same token again: spent, and the certificate file is left alone.
    let before = std::fs::read(host_key.cert_path()).unwrap();
    let out = run(&mut renew);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("was already used"), "{out}");
    assert_eq!(std::fs::read(host_key.cert_path()).unwrap(), before);
    let hosts = w.server.ca.run_ok(["host", "list"]).stdout_str();
    assert!(!hosts.contains("web-1"), "nothing enrolled: {hosts}");
}

/// Tokens whose claims do not match, with the wrong audience, or already spent are refused in
/// one line, audited, and nothing is issued; a workload's token is not a host's.
#[test]
fn mismatched_wrong_audience_and_reused_tokens_are_refused_with_one_line() {
    let w = World::new();
    let key = keygen(w.scratch.path(), "ssh_host_ed25519_key");
    w.assert_refused(
        &key,
        &w.signer.sign(&w.vm_claims("someone-elses-project", "web-1")),
        "token refused: no host rule matches: hosts_by_token[0]: google.compute_engine.project_id is \"someone-elses-project\", not \"acme-prod\"",
    );
    let mut wrong_audience = w.vm_claims("acme-prod", "web-1");
    wrong_audience["aud"] = json!("https://other.example");
    w.assert_refused(
        &key,
        &w.signer.sign(&wrong_audience),
        &format!(
            "token refused: audience https://other.example not accepted (expected {AUDIENCE})"
        ),
    );
    // A CI job's token of the same issuer, for the workloads' audience: not a host's token.
    let ci = w.issuer.claims(
        "jitssh",
        "repo:acme/deploy",
        json!({"repository": "acme/deploy"}),
    );
    w.assert_refused(
        &key,
        &w.signer.sign(&ci),
        "token refused: audience jitssh not accepted",
    );

    let mut other_issuer = w.vm_claims("acme-prod", "web-1");
    other_issuer["iss"] = json!("https://evil.example");
    w.assert_refused(
        &key,
        &w.signer.sign(&other_issuer),
        "token refused: issuer https://evil.example is not configured in [[hosts_by_token]]",
    );
    // A VM's token sent as a workload is no workload's token either.
    let out = w
        .server
        .ssh("workload", &key)
        .args(["join", "--token-file", "-"])
        .stdin(w.signer.sign(&w.vm_claims("acme-prod", "web-1")))
        .run();
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stdout.is_empty(), "{out}");

    let first = w.signer.sign(&w.vm_claims("acme-prod", "web-1"));
    assert_eq!(w.join(&key, &first, &[]).status, 0);
    let jti = jitssh_identity::jws::unverified_claims(&first).unwrap()["jti"].clone();
    w.assert_refused(
        &key,
        &first,
        &format!(
            "denied: token id {} was already used",
            jti.as_str().unwrap()
        ),
    );
}

/// The certificate's principals come from the rule alone: the client cannot name them, a
/// claim value fills one DNS label (no extra domain, no wildcard), an empty name is refused,
/// and a name enrolled with `ssh-ca host add` under another key is not handed out.
#[test]
fn the_client_cannot_choose_the_principals() {
    let w = World::new();
    let key = keygen(w.scratch.path(), "ssh_host_ed25519_key");
    let token = w.signer.sign(&w.vm_claims("acme-prod", "web-1"));
    let out = w.join(&key, &token, &["--principals", "bastion.internal"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("unexpected argument '--principals'"),
        "{out}"
    );
    let out = w.join(&key, &token, &["jt-0000"]);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("cannot be used with"), "{out}");

    let out = w.join(
        &key,
        &w.signer
            .sign(&w.vm_claims("acme-prod", "DB.corp.example.com")),
        &[],
    );
    assert_eq!(out.status, 0, "{out}");
    std::fs::write(key.cert_path(), &out.stdout).unwrap();
    let info = cert_info(&key.cert_path());
    assert!(info.contains("db-corp-example-com.internal"), "{info}");
    assert!(!info.contains("db.corp.example.com"), "{info}");

    w.assert_refused(
        &key,
        &w.signer.sign(&w.vm_claims("acme-prod", "")),
        "token refused: no host rule matches: hosts_by_token[0]: host name \".internal\" has an empty or over-long label",
    );

    w.server
        .ca
        .run_ok(["host", "add", "web-1.internal", "--ttl", "1h"]);
    w.assert_refused(
        &key,
        &w.signer.sign(&w.vm_claims("acme-prod", "web-1")),
        "denied: host name web-1.internal belongs to host web-1.internal enrolled with `ssh-ca host add` (another key)",
    );
}
