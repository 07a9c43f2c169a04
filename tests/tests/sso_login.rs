//! SSO for people with nothing but `ssh`: a person with no key in policy.toml signs in at a
//! real OpenID Provider (oidc-provider, tests/oidc/) through the device flow the CA API runs
//! (`ssh sso@ca login`, wrapped by `ssh-ca login --sso`), gets a certificate whose roles their
//! IdP groups decide, and logs in through the bastion to a real sshd.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use jitssh_tests::{
    Bastion, CaFixture, Idp, KeyPair, Output, Scratch, Sshd, cert_info, keygen, project_bin, run,
    sso_login, target,
};

/// Longest a whole device-flow login may take here (the provider names no poll interval, so
/// the CA polls every 5 s as RFC 8628 says).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Roles `ops` (root on web*) and `dev` (deploy on web*); bob enrolled with `ops`; IdP group
/// `ops` gives role ops, group `devs` role dev.
fn policy(bob: &KeyPair) -> String {
    format!(
        "[[roles]]\nname = \"ops\"\nlogins = [\"root\"]\nhosts = [\"web*\"]\nmax_ttl = \"1h\"\n\n\
         [[roles]]\nname = \"dev\"\nlogins = [\"deploy\"]\nhosts = [\"web*\"]\nmax_ttl = \"1h\"\n\n\
         [[users]]\nname = \"bob\"\nkeys = [\"{}\"]\nroles = [\"ops\"]\n\n\
         [[sso.groups]]\nclaim = \"ops\"\nroles = [\"ops\"]\n\n\
         [[sso.groups]]\nclaim = \"devs\"\nroles = [\"dev\"]\n",
        bob.public_line()
    )
}

fn accounts(carol_groups: &[&str]) -> String {
    let groups: Vec<String> = carol_groups.iter().map(|g| format!("\"{g}\"")).collect();
    format!(
        "{{\"carol\": {{\"email\": \"carol@example.com\", \"preferred_username\": \"carol\", \"groups\": [{}]}}}}",
        groups.join(",")
    )
}

struct World {
    scratch: Scratch,
    ca: CaFixture,
    bastion: Bastion,
    idp: Idp,
    bob: KeyPair,
    carol: KeyPair,
    known_hosts: PathBuf,
    _web01: Sshd,
}

fn world() -> World {
    world_with("")
}

/// The world with `ca_extra` appended to the CA's configuration.
fn world_with(ca_extra: &str) -> World {
    let scratch = Scratch::new();
    let bob = keygen(scratch.path(), "bob");
    let carol = keygen(scratch.path(), "carol");
    let idp = Idp::start(scratch.path(), &accounts(&["ops"]));
    let ca = Bastion::ca(scratch.path(), &policy(&bob));
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let sso = format!(
        "[sso]\nissuer = \"{}\"\nclient_id = \"jitssh\"\nname_claim = \"email\"\ngroups_claim = \"groups\"\n{ca_extra}",
        idp.issuer
    );
    let bastion = Bastion::start_with_ca(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        "",
        &sso,
    );
    let known_hosts = scratch.write("known_hosts", ca.run_ok(["known-hosts"]).stdout);
    World {
        scratch,
        ca,
        bastion,
        idp,
        bob,
        carol,
        known_hosts,
        _web01: web01,
    }
}

impl World {
    /// `ssh-ca login [--sso] --ca USER@localhost:PORT -i KEY`, strict host key checking.
    fn login_cmd(&self, user: &str, key: &KeyPair, sso: bool) -> Command {
        let mut cmd = Command::new(project_bin("ssh-ca"));
        cmd.arg("login")
            .arg("--ca")
            .arg(format!("{user}@localhost:{}", self.bastion.ca_port))
            .arg("-i")
            .arg(&key.private);
        if sso {
            cmd.arg("--sso");
        }
        for option in [
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "GlobalKnownHostsFile=/dev/null",
            "IdentityAgent=none",
        ] {
            cmd.args(["-o", option]);
        }
        cmd.arg("-o")
            .arg(format!("UserKnownHostsFile={}", self.known_hosts.display()));
        cmd.env_remove("SSH_AUTH_SOCK");
        cmd
    }

    /// carol signs in with `ssh-ca login --sso` and plays herself at the IdP.
    fn carol_login(&self, abort: bool) -> (Output, Option<Output>) {
        sso_login(
            &mut self.login_cmd("sso", &self.carol, true),
            &self.idp,
            "carol",
            abort,
            Duration::ZERO,
            LOGIN_TIMEOUT,
        )
    }

    fn audit(&self) -> String {
        std::fs::read_to_string(self.ca.data_dir().join("audit.log")).unwrap_or_default()
    }
}

#[test]
fn a_person_with_no_enrolled_key_signs_in_and_their_group_decides_their_roles() {
    let w = world();

    // In group ops at the IdP: a certificate for root, through the bastion to web01.
    let (out, person) = w.carol_login(false);
    let person = person.expect("the CA showed a URL and a code");
    assert!(person.success(), "the person signed in: {person}");
    assert_eq!(out.status, 0, "{out}");
    assert!(out.stderr.contains("enter the code"), "{out}");
    assert!(out.stderr.contains("written to"), "{out}");
    let info = cert_info(&w.carol.cert_path());
    assert!(
        info.contains("Key ID: \"carol@example.com sso-sub=carol\""),
        "{info}"
    );
    assert!(info.contains("root"), "{info}");
    let ok = w
        .bastion
        .ssh("root@web01", &w.carol)
        .args(["echo", "through"])
        .run();
    assert_eq!(ok.stdout_str().trim(), "through", "{ok}");
    let audit = w.audit();
    assert!(audit.contains("carol@example.com sso-sub=carol"), "{audit}");
    assert!(audit.contains("\"matched_groups\":[\"ops\"]"), "{audit}");

    // Removed from ops at the IdP: the next login is denied, with the reason, and audited.
    w.idp.set_accounts(&accounts(&[]));
    let before = std::fs::read(w.carol.cert_path()).expect("certificate");
    let (out, person) = w.carol_login(false);
    assert!(person.expect("URL and code shown").success());
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("no role for your groups"),
        "a clear denial: {out}"
    );
    assert_eq!(std::fs::read(w.carol.cert_path()).unwrap(), before);
    assert!(w.audit().contains("no role for your groups"));

    // In devs instead: role dev, login deploy only.
    w.idp.set_accounts(&accounts(&["devs"]));
    let (out, _) = w.carol_login(false);
    assert_eq!(out.status, 0, "{out}");
    let info = cert_info(&w.carol.cert_path());
    assert!(info.contains("deploy"), "{info}");
    assert!(!info.contains("root"), "{info}");
}

#[test]
fn a_refusal_at_the_identity_provider_is_a_clear_denial_with_stock_ssh() {
    let w = world();
    // Stock ssh, nothing else: `ssh -p PORT sso@ca login`.
    let mut cmd = Command::new("ssh");
    cmd.args(["-p", &w.bastion.ca_port.to_string(), "-i"])
        .arg(&w.carol.private)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
        ])
        .arg(format!("UserKnownHostsFile={}", w.known_hosts.display()))
        .args(["sso@localhost", "login"]);
    let (out, person) = sso_login(
        &mut cmd,
        &w.idp,
        "carol",
        true,
        Duration::ZERO,
        LOGIN_TIMEOUT,
    );
    assert!(person.is_some(), "the CA showed a URL and a code: {out}");
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr
            .contains("sign-in refused at the identity provider (access_denied"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "nothing issued: {out}");
    assert!(w.audit().contains("sso.failed"));
    assert!(
        !w.audit().contains("sso-sub=carol"),
        "no certificate issued"
    );
}

#[test]
fn with_the_identity_provider_down_sso_fails_fast_and_enrolled_keys_keep_working() {
    let mut w = world();
    w.idp.stop();
    let started = Instant::now();
    let out = run(&mut w.login_cmd("sso", &w.carol, true));
    let took = started.elapsed();
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("cannot start SSO sign-in") && out.stderr.contains("cannot reach"),
        "a clear reason: {out}"
    );
    assert!(took < Duration::from_secs(10), "failed fast: {took:?}");
    assert!(!w.carol.cert_path().exists());

    // bob's enrolled key still gets a certificate and logs in.
    let out = run(&mut w.login_cmd("bob", &w.bob, false));
    assert_eq!(out.status, 0, "{out}");
    let ok = w
        .bastion
        .ssh("root@web01", &w.bob)
        .args(["echo", "still"])
        .run();
    assert_eq!(ok.stdout_str().trim(), "still", "{ok}");
    let _ = w.scratch.path();
}

#[test]
fn a_person_slower_than_the_idle_timeout_still_gets_the_certificate() {
    // The CA closes connections idle for 2 s; the person takes 7 s to sign in.
    let w = world_with("[limits]\nidle_timeout = \"2s\"\n");
    let (out, person) = sso_login(
        &mut w.login_cmd("sso", &w.carol, true),
        &w.idp,
        "carol",
        false,
        Duration::from_secs(7),
        LOGIN_TIMEOUT,
    );
    assert!(person.expect("URL and code shown").success());
    assert_eq!(out.status, 0, "{out}");
    assert!(w.carol.cert_path().exists(), "{out}");
}

#[test]
fn sign_ins_in_progress_are_bounded_and_enrolled_users_keep_their_share() {
    // max_connections 4: at most one sign-in waits for its person at a time.
    let w = world_with("[limits]\nmax_connections = 4\n");
    let log = w.scratch.file("first-login.err");
    let mut first = w
        .login_cmd("sso", &w.carol, true)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn the first sign-in");
    jitssh_tests::wait_for(
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("enter the code")
        },
        Duration::from_secs(20),
        "the first sign-in shows its code",
    );
    let dave = keygen(w.scratch.path(), "dave");
    let out = run(&mut w.login_cmd("sso", &dave, true));
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("too many SSO sign-ins in progress"),
        "{out}"
    );
    let out = run(&mut w.login_cmd("bob", &w.bob, false));
    assert_eq!(out.status, 0, "enrolled users still served: {out}");
    let _ = first.kill();
    let _ = first.wait();
}
