//! People's machines set up by commands: `ssh-ca login` installs a certificate atomically
//! (and into ssh-agent), `ssh-ca ssh-config` writes the client configuration, and
//! `ssh-bastion reload` reloads a running bastion without `pgrep`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use jitssh_tests::{
    Agent, Bastion, CaFixture, KeyPair, Output, Scratch, Ssh, Sshd, keygen, project_bin, run,
    target,
};

/// alice's key enrolled with a role for `root` on `web*`.
fn policy(alice: &KeyPair) -> String {
    format!(
        "[[roles]]\nname = \"ops\"\nlogins = [\"root\"]\nhosts = [\"web*\"]\nmax_ttl = \"1h\"\n\n\
         [[users]]\nname = \"alice\"\nkeys = [\"{}\"]\nroles = [\"ops\"]\n",
        alice.public_line()
    )
}

struct World {
    scratch: Scratch,
    ca: CaFixture,
    bastion: Bastion,
    alice: KeyPair,
    /// known_hosts trusting the host CA.
    known_hosts: PathBuf,
    _web01: Sshd,
}

fn world(extra: &str) -> World {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let ca = Bastion::ca(scratch.path(), &policy(&alice));
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        extra,
    );
    let known_hosts = scratch.write("known_hosts", ca.run_ok(["known-hosts"]).stdout);
    World {
        scratch,
        ca,
        bastion,
        alice,
        known_hosts,
        _web01: web01,
    }
}

impl World {
    /// `ssh-ca login --ca alice@localhost:PORT -i alice ARGS`, strict host checking against
    /// the host CA.
    fn login(&self, args: &[&str], agent: Option<&Agent>) -> Output {
        let mut cmd = Command::new(project_bin("ssh-ca"));
        cmd.arg("login")
            .arg("--ca")
            .arg(format!("alice@localhost:{}", self.bastion.ca_port))
            .arg("-i")
            .arg(&self.alice.private);
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
        cmd.args(args);
        match agent {
            Some(agent) => cmd.env("SSH_AUTH_SOCK", &agent.socket),
            None => cmd.env_remove("SSH_AUTH_SOCK"),
        };
        run(&mut cmd)
    }
}

fn files_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn login_installs_the_certificate_and_a_denial_leaves_the_old_one_untouched() {
    let w = world("");
    let out = w.login(&["--ttl", "30m"], None);
    assert_eq!(out.status, 0, "{out}");
    assert!(out.stderr.contains("written to"), "{out}");
    let cert = w.alice.cert_path();
    let before = std::fs::read(&cert).expect("certificate written");
    let info = jitssh_tests::cert_info(&cert);
    assert!(info.contains("Key ID: \"alice\""), "{info}");

    // The certificate works through the bastion.
    let ok = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo", "through"])
        .run();
    assert_eq!(ok.stdout_str().trim(), "through", "{ok}");

    // A denial: non-zero, the reason shown, the old file byte for byte the same, no
    // temporary file left behind.
    let listing = files_in(w.scratch.path());
    let out = w.login(&["--role", "no-such-role"], None);
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("no-such-role"),
        "the CA's reason: {out}"
    );
    assert!(out.stderr.contains("left unchanged"), "{out}");
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        before,
        "old certificate kept"
    );
    assert_eq!(files_in(w.scratch.path()), listing, "no stray files");

    // The CA cannot be reached: the same.
    let mut cmd = Command::new(project_bin("ssh-ca"));
    cmd.args(["login", "--ca", "alice@127.0.0.1:1", "-i"])
        .arg(&w.alice.private)
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=5"]);
    let out = run(&mut cmd);
    assert_ne!(out.status, 0, "{out}");
    assert_eq!(
        std::fs::read(&cert).unwrap(),
        before,
        "old certificate kept"
    );
}

#[test]
fn login_with_agent_loads_key_and_certificate_for_its_lifetime() {
    let w = world("");
    let agent = Agent::start(w.scratch.path());
    let out = w.login(&["--agent", "--ttl", "20m"], Some(&agent));
    assert_eq!(out.status, 0, "{out}");
    assert!(out.stderr.contains("ssh-agent"), "{out}");
    let listed = agent.list();
    assert!(listed.stdout_str().contains("ED25519-CERT"), "{listed}");

    // A real ssh through the bastion with nothing but the agent.
    let out = Ssh::new(w.bastion.port)
        .user("root@web01")
        .option(&agent.ssh_option())
        .option("IdentitiesOnly=no")
        .args(["echo", "via-agent"])
        .run();
    assert_eq!(out.status, 0, "{out}");
    assert_eq!(out.stdout_str().trim(), "via-agent", "{out}");
}

/// `whoami` at the CA API as `name` with `key`.
fn whoami(port: u16, known_hosts: &Path, name: &str, key: &KeyPair) -> Output {
    Ssh::new(port)
        .user(name)
        .identity(&key.private)
        .known_hosts(known_hosts)
        .host("localhost")
        .args(["whoami"])
        .run()
}

#[test]
fn ssh_bastion_reload_makes_a_running_bastion_pick_up_a_policy_change() {
    let w = world("");
    let bob = keygen(w.scratch.path(), "bob");
    let out = whoami(w.bastion.ca_port, &w.known_hosts, "bob", &bob);
    assert_ne!(out.status, 0, "bob is not enrolled yet: {out}");

    let with_bob = format!(
        "{}\n[[users]]\nname = \"bob\"\nkeys = [\"{}\"]\nroles = [\"ops\"]\n",
        policy(&w.alice),
        bob.public_line()
    );
    std::fs::write(w.scratch.file("policy.toml"), with_bob).unwrap();
    let mut reload = Command::new(project_bin("ssh-bastion"));
    reload.arg("--config").arg(&w.bastion.config).arg("reload");
    let out = run(&mut reload);
    assert_eq!(out.status, 0, "{out}");
    jitssh_tests::wait_for(
        || whoami(w.bastion.ca_port, &w.known_hosts, "bob", &bob).success(),
        Duration::from_secs(10),
        "bob enrolled after the reload",
    );
}

#[test]
fn reload_without_a_running_server_says_so() {
    let scratch = Scratch::new();
    let ca = CaFixture::configure(scratch.path(), "", "");
    let out = run(&mut ca.cmd(["reload"]));
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("not running"), "{out}");
}

#[test]
fn ssh_ca_reload_makes_a_running_ca_pick_up_a_policy_change() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let bob = keygen(scratch.path(), "bob");
    let mut server = jitssh_tests::CaServer::start(scratch.path(), &policy(&alice), "");
    let out = whoami(server.port, &server.known_hosts, "bob", &bob);
    assert_ne!(out.status, 0, "{out}");
    std::fs::write(
        scratch.file("policy.toml"),
        format!(
            "{}\n[[users]]\nname = \"bob\"\nkeys = [\"{}\"]\nroles = [\"ops\"]\n",
            policy(&alice),
            bob.public_line()
        ),
    )
    .unwrap();
    run_ok_cmd(&mut server.ca.cmd(["reload"]));
    server
        .daemon
        .wait_for_log("policy reloaded", Duration::from_secs(10));
    let out = whoami(server.port, &server.known_hosts, "bob", &bob);
    assert_eq!(out.status, 0, "{out}");
}

fn run_ok_cmd(cmd: &mut Command) -> Output {
    jitssh_tests::run_ok(cmd)
}
