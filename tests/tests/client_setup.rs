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
    // Added for the certificate's lifetime (20 minutes, less the seconds since issue).
    let log = agent.log();
    let lives: Vec<u64> = log
        .split("(life: ")
        .skip(1)
        .filter_map(|rest| rest.split(')').next()?.parse().ok())
        .collect();
    assert_eq!(lives.len(), 2, "key and certificate: {log}");
    assert!(
        lives.iter().all(|life| (1000..=1200).contains(life)),
        "{lives:?}: {log}"
    );

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

impl World {
    /// `ssh-ca ssh-config --bastion 127.0.0.1:PORT --user alice --target web01 ARGS`.
    fn ssh_config(&self, args: &[&str]) -> Output {
        let bastion = format!("127.0.0.1:{}", self.bastion.port);
        let mut all = vec![
            "ssh-config",
            "--bastion",
            &bastion,
            "--user",
            "alice",
            "--target",
            "web01",
        ];
        all.extend_from_slice(args);
        jitssh_tests::run_ok(&mut self.ca.cmd(all))
    }
}

#[test]
fn ssh_config_installs_known_hosts_proxyjump_and_include_for_stock_ssh() {
    let w = world("");
    assert_eq!(w.login(&[], None).status, 0, "alice's certificate");
    let ssh_dir = w.scratch.file("dot-ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    std::fs::write(ssh_dir.join("config"), "Host other\n    User bob\n").unwrap();

    // Printed: all three parts.
    let printed = w.ssh_config(&["--dir", ssh_dir.to_str().unwrap()]);
    let text = printed.stdout_str();
    assert!(text.contains("@cert-authority * ssh-ed25519 "), "{text}");
    assert!(
        text.contains(&format!(
            "Host web01\n    ProxyJump alice@127.0.0.1:{}",
            w.bastion.port
        )),
        "{text}"
    );
    assert!(text.contains("Include "), "{text}");

    // Written (twice: the Include is added once, the person's own config kept after it).
    for _ in 0..2 {
        w.ssh_config(&["--write", "--dir", ssh_dir.to_str().unwrap()]);
    }
    let main = std::fs::read_to_string(ssh_dir.join("config")).unwrap();
    assert_eq!(main.matches("Include ").count(), 1, "{main}");
    assert!(main.starts_with("Include "), "{main}");
    assert!(main.contains("Host other\n    User bob"), "{main}");
    assert_eq!(
        files_in(&ssh_dir.join("jitssh")),
        ["config", "known_hosts"],
        "no temporary files left"
    );

    // Stock ssh reads it: web01 goes through the bastion...
    let resolved = run(Command::new(jitssh_tests::tool("ssh"))
        .arg("-G")
        .arg("-F")
        .arg(ssh_dir.join("config"))
        .arg("web01"));
    assert!(
        resolved
            .stdout_str()
            .contains(&format!("proxyjump alice@[127.0.0.1]:{}", w.bastion.port)),
        "{resolved}"
    );
    // ...and the bastion is trusted through the host CA line alone, no prompt, strict.
    let mut login = Command::new(jitssh_tests::tool("ssh"));
    login
        .arg("-F")
        .arg(ssh_dir.join("config"))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "IdentityAgent=none",
            "-i",
        ])
        .arg(&w.alice.private)
        .arg("-o")
        .arg(format!("CertificateFile={}", w.alice.cert_path().display()))
        .args(["-p", &w.bastion.port.to_string(), "-l", "root@web01"])
        .args(["127.0.0.1", "echo", "trusted"]);
    let out = run(&mut login);
    assert_eq!(out.stdout_str().trim(), "trusted", "{out}");
    assert!(!out.stderr.contains("Permanently added"), "{out}");
}

#[test]
fn ssh_config_putty_entry_lets_plink_connect_without_a_host_key_prompt() {
    let w = world("");
    assert_eq!(w.login(&[], None).status, 0, "alice's certificate");
    let home = w.scratch.file("putty-home");
    std::fs::create_dir_all(&home).unwrap();
    let plink = |w: &World| {
        // The harness's plink command, minus the pinned -hostkey.
        let pinned = w
            .bastion
            .plink("root@web01", &w.alice, &w.alice.cert_path());
        let mut cmd = Command::new(pinned.get_program());
        let mut skip = false;
        for arg in pinned.get_args() {
            if std::mem::take(&mut skip) {
                continue;
            }
            if arg == "-hostkey" {
                skip = true;
                continue;
            }
            cmd.arg(arg);
        }
        cmd.env("HOME", &home).args(["echo", "via-plink"]);
        run(&mut cmd)
    };
    let before = plink(&w);
    assert_ne!(before.status, 0, "unknown host key, -batch: {before}");

    let putty_dir = home.join(".putty");
    w.ssh_config(&[
        "--format",
        "putty",
        "--write",
        "--dir",
        putty_dir.to_str().unwrap(),
    ]);
    let record = std::fs::read_to_string(putty_dir.join("sshhostcas/jitssh")).unwrap();
    assert!(
        record.starts_with("PublicKey=AAAAC3NzaC1lZDI1NTE5"),
        "{record}"
    );
    assert!(record.contains("\nValidity=*\n"), "{record}");
    let after = plink(&w);
    assert_eq!(after.status, 0, "{after}");
    assert_eq!(after.stdout_str().trim(), "via-plink", "{after}");
}

#[test]
fn plain_host_keys_let_paramiko_verify_the_bastion() {
    let w = world("");
    assert_eq!(w.login(&[], None).status, 0, "alice's certificate");
    let out = w.ssh_config(&["--plain-host-keys"]);
    let lines = out.stdout_str();
    let bastion_line = format!("[127.0.0.1]:{} ssh-ed25519 ", w.bastion.port);
    assert!(lines.starts_with(&bastion_line), "{lines}");
    assert!(lines.contains("\nweb01 ssh-ed25519 "), "{lines}");
    let known_hosts = w.scratch.write("paramiko_known_hosts", &lines);
    let script = format!(
        r#"
import paramiko, sys
client = paramiko.SSHClient()
client.load_host_keys({known_hosts:?})
client.set_missing_host_key_policy(paramiko.RejectPolicy())
client.connect("127.0.0.1", port={port}, username="root@web01", key_filename={key:?},
               look_for_keys=False, allow_agent=False, timeout=20)
_, stdout, _ = client.exec_command("echo via-paramiko")
sys.stdout.write(stdout.read().decode())
client.close()
"#,
        known_hosts = known_hosts.display().to_string(),
        port = w.bastion.port,
        key = w.alice.private.display().to_string(),
    );
    // Debian's python3 with python3-paramiko (see .ci/run).
    let mut python = Command::new("/usr/bin/python3");
    python.arg("-c").arg(&script);
    let out = run(&mut python);
    assert_eq!(out.stdout_str().trim(), "via-paramiko", "{out}");

    // A wrong pin is refused: the same script against a known_hosts of another key.
    let other = keygen(w.scratch.path(), "other-host");
    let wrong = w.scratch.write(
        "wrong_known_hosts",
        format!(
            "[127.0.0.1]:{} {}",
            w.bastion.port,
            std::fs::read_to_string(&other.public).unwrap()
        ),
    );
    let mut python = Command::new("/usr/bin/python3");
    python.arg("-c").arg(script.replace(
        &known_hosts.display().to_string(),
        &wrong.display().to_string(),
    ));
    let out = run(&mut python);
    assert_ne!(out.status, 0, "{out}");
}

#[test]
fn reload_of_a_remote_ca_bastion_is_refused_not_signalled() {
    // SIGHUP would end such a bastion (only the embedded CA handles it): reload refuses.
    let scratch = Scratch::new();
    let id = keygen(scratch.path(), "id");
    let config = scratch.write(
        "bastion.toml",
        format!(
            "data_dir = \"d\"\nlisten = \"127.0.0.1:1\"\n[ca]\nmode = \"remote\"\n\
             address = \"127.0.0.1:2\"\nhost_ca = \"{}\"\nidentity = \"{}\"\n",
            id.public.display(),
            id.private.display()
        ),
    );
    let out = run(Command::new(project_bin("ssh-bastion"))
        .arg("--config")
        .arg(&config)
        .arg("reload"));
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("reload the CA"), "{out}");
}
