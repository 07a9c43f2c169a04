//! ProxyJump through `ssh-bastion`, terminated and recorded: `ssh -J alice@bastion
//! root@web01` with stock OpenSSH is admitted, recorded and listed like
//! `ssh root@web01@bastion`, with host trust only through the host CA (no TOFU); the inner
//! login must be the jump's own person and within their grant.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use jitssh_tests::{
    Bastion, CaFixture, JumpConfig, KeyPair, Output, Scratch, Sshd, free_port, project_bin, run,
    run_ok, run_with, target, tool, user,
};

struct World {
    scratch: Scratch,
    ca: CaFixture,
    bastion: Bastion,
    web01: Sshd,
    alice: KeyPair,
    jump: JumpConfig,
}

/// web01 (a real sshd) and db01 (configured, outside alice's grant); alice may log in as
/// `root` (the harness's sshd maps it to the test user) on `web*`.
fn world(extra: &str) -> World {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(
        &ca,
        &[
            ("web01", format!("127.0.0.1:{}", web01.port())),
            ("db01", format!("127.0.0.2:{}", web01.port())),
        ],
        extra,
    );
    let jump = JumpConfig::new(scratch.path(), "alice", &ca, &bastion, &alice);
    World {
        scratch,
        ca,
        bastion,
        web01,
        alice,
        jump,
    }
}

impl World {
    /// `ssh -F CONFIG -J alice@bastion -p WEB01 root@HOST ARGS`.
    fn ssh_j(&self, host: &str, args: &[&str]) -> Output {
        self.ssh_j_with(&[], host, args)
    }

    /// Like [`World::ssh_j`] with more `-o` options (`BatchMode=no` lets the client come
    /// back to hear why it was refused, as an interactive user's does).
    fn ssh_j_with(&self, options: &[&str], host: &str, args: &[&str]) -> Output {
        let mut ssh = self.jump.command("ssh", "alice");
        for option in options {
            ssh.arg("-o").arg(option);
        }
        ssh.arg("-p")
            .arg(self.web01.port().to_string())
            .arg(format!("root@{host}"))
            .args(args);
        run(&mut ssh)
    }

    /// `ssh-bastion --config bastion.toml ARGS`, which must succeed.
    fn cli_ok(&self, args: &[&str]) -> Output {
        run_ok(
            Command::new(project_bin("ssh-bastion"))
                .arg("--config")
                .arg(&self.bastion.config)
                .args(args),
        )
    }

    fn session_end(&self) {
        self.bastion
            .wait_for_audit("\"event\":\"session.end\"", Duration::from_secs(10));
    }
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new(tool("sha256sum")).arg(path));
    out.stdout_str()
        .split_whitespace()
        .next()
        .expect("digest")
        .to_owned()
}

#[test]
fn ssh_j_runs_a_session_recorded_listed_and_searchable_like_a_direct_login() {
    let w = world("");
    let out = w.ssh_j("web01", &["echo pj-marker-$((40+2)); exit 3"]);
    assert_eq!(out.status, 3, "{out}");
    assert_eq!(out.stdout_str(), "pj-marker-42\n", "{out}");
    w.session_end();

    let audit = w.bastion.audit();
    assert!(audit.contains("\"event\":\"login.jump\""), "{audit}");
    assert!(audit.contains("\"event\":\"jump.connection\""), "{audit}");
    let accepted = audit
        .lines()
        .find(|l| l.contains("\"event\":\"login.accepted\""))
        .expect("the inner login is audited as a login");
    assert!(
        accepted.contains("\"target\":\"web01\"") && accepted.contains("\"jump\":"),
        "{accepted}"
    );

    let listed = w.cli_ok(&["sessions", "list", "--json"]).stdout_str();
    let line = listed.lines().next().expect("one session listed");
    let session: serde_json::Value = serde_json::from_str(line).expect("JSON line");
    let id = session["id"].as_str().expect("id").to_owned();
    assert!(line.contains("web01") && line.contains("alice"), "{line}");
    let text = w.cli_ok(&["export", &id, "--format", "text"]).stdout_str();
    assert!(text.contains("pj-marker-42"), "{text}");
    let found = w
        .cli_ok(&["sessions", "grep", "pj-marker-4[0-9]"])
        .stdout_str();
    assert!(found.contains(&id), "{found}");
}

#[test]
fn scp_j_and_sftp_j_move_64_mib_intact_and_are_recorded_as_transfers() {
    let w = world("");
    let source = w.scratch.file("source.bin");
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!("head -c 64M /dev/urandom > '{}'", source.display())),
    );
    let digest = sha256(&source);
    let port = w.web01.port().to_string();

    let uploaded = w.scratch.file("up-scp.bin");
    let mut scp = w.jump.command("scp", "alice");
    scp.args(["-P", &port])
        .arg(&source)
        .arg(format!("root@web01:{}", uploaded.display()));
    let started = std::time::Instant::now();
    let out = run_with(&mut scp, None, Duration::from_secs(120));
    eprintln!("scp -J: 64 MiB up in {:?}", started.elapsed());
    assert!(out.success(), "{out}");
    assert_eq!(sha256(&uploaded), digest, "scp -J upload");

    let downloaded = w.scratch.file("down-sftp.bin");
    let mut sftp = w.jump.command("sftp", "alice");
    sftp.args(["-P", &port, "-b", "-", "root@web01"]);
    let batch = format!("get {} {}\n", uploaded.display(), downloaded.display());
    let out = run_with(&mut sftp, Some(batch.as_bytes()), Duration::from_secs(120));
    assert!(out.success(), "{out}");
    assert_eq!(sha256(&downloaded), digest, "sftp -J download");

    let audit = w
        .bastion
        .wait_for_audit("\"name\":\"sftp\"", Duration::from_secs(10));
    let transfers = audit
        .lines()
        .filter(|l| l.contains("\"event\":\"session.subsystem\"") && l.contains("sftp"))
        .count();
    assert_eq!(
        transfers, 2,
        "scp and sftp are both sftp sessions:\n{audit}"
    );
}

#[test]
fn ssh_j_to_a_target_outside_the_grant_is_refused_with_the_reason() {
    let w = world("");
    let out = w.ssh_j_with(&["BatchMode=no"], "db01", &["true"]);
    assert_eq!(out.status, 255, "{out}");
    assert!(
        out.stderr
            .contains("certificate does not grant login \"root\" on target \"db01\""),
        "{out}"
    );
    let audit = w.bastion.audit();
    assert!(!audit.contains("\"event\":\"login.accepted\""), "{audit}");
}

#[test]
fn an_inner_login_with_another_persons_certificate_is_refused() {
    let w = world("");
    let bob = user(&w.ca, w.scratch.path(), "bob", &["root"], &["web*"], &[]);
    let bob_config = JumpConfig::new(w.scratch.path(), "bob", &w.ca, &w.bastion, &bob);
    // The outer connection is alice's; the inner login offers bob's certificate.
    let proxy = format!(
        "ProxyCommand=ssh -F {} -W %h:%p -p {} alice@127.0.0.1",
        w.jump.path.display(),
        w.bastion.port
    );
    let mut ssh = Command::new(tool("ssh"));
    ssh.arg("-F")
        .arg(&bob_config.path)
        .args(["-o", &proxy, "-o", "BatchMode=no"])
        .args(["-p", &w.web01.port().to_string()])
        .args(["root@web01", "echo", "should-not-run"]);
    let out = run(&mut ssh);
    assert_eq!(out.status, 255, "{out}");
    assert!(!out.stdout_str().contains("should-not-run"), "{out}");
    assert!(
        out.stderr
            .contains("must be \"alice\"'s own certificate (got \"bob\"'s"),
        "{out}"
    );
    let audit = w.bastion.audit();
    assert!(!audit.contains("\"event\":\"login.accepted\""), "{audit}");
}

#[test]
fn a_jump_login_opens_no_session_and_reaches_only_configured_targets() {
    let w = world("[forwarding]\nport = true\n");
    // A session on the jump login itself: refused, with how to use it.
    let mut ssh = Command::new(tool("ssh"));
    ssh.arg("-F").arg(&w.jump.path).args([
        "-o",
        "LogLevel=INFO",
        "-p",
        &w.bastion.port.to_string(),
        "alice@127.0.0.1",
        "true",
    ]);
    let out = run(&mut ssh);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("a jump login (no target)"), "{out}");

    // -W to something that is not a configured target: refused and audited.
    let elsewhere = format!("127.0.0.1:{}", free_port());
    let mut ssh = Command::new(tool("ssh"));
    ssh.arg("-F")
        .arg(&w.jump.path)
        .args(["-o", "LogLevel=INFO", "-W", &elsewhere])
        .args(["-p", &w.bastion.port.to_string()])
        .arg("alice@127.0.0.1");
    let out = run(&mut ssh);
    assert_ne!(out.status, 0, "{out}");
    assert!(out.stderr.contains("not a configured target"), "{out}");
    let audit = w
        .bastion
        .wait_for_audit("\"event\":\"jump.denied\"", Duration::from_secs(10));
    assert!(audit.contains(&elsewhere), "{audit}");
}

/// paramiko (no host certificates) through the jump with `sock=`: host keys pinned as plain
/// lines (the bastion's key, for the bastion and for the target it answers for); the inner
/// session is recorded like any other.
#[test]
fn paramiko_through_sock_reaches_the_target_with_pinned_host_keys() {
    let w = world("");
    let host_key = std::fs::read_to_string(w.bastion.data_dir().join("host_ed25519_key.pub"))
        .expect("the bastion's host key");
    let key = host_key
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ");
    let known_hosts = w.scratch.write(
        "paramiko_known_hosts",
        format!(
            "[127.0.0.1]:{} {key}\n[web01]:{} {key}\n",
            w.bastion.port,
            w.web01.port()
        ),
    );
    let script = format!(
        r#"
import paramiko, sys
def client():
    c = paramiko.SSHClient()
    c.load_host_keys({known_hosts:?})
    c.set_missing_host_key_policy(paramiko.RejectPolicy())
    return c
outer = client()
outer.connect("127.0.0.1", port={bastion}, username="alice", key_filename={key:?},
              look_for_keys=False, allow_agent=False, timeout=20)
sock = outer.get_transport().open_channel("direct-tcpip", ("web01", {web01}), ("127.0.0.1", 0))
inner = client()
inner.connect("web01", port={web01}, username="root", key_filename={key:?}, sock=sock,
              look_for_keys=False, allow_agent=False, timeout=20)
_, stdout, _ = inner.exec_command("echo via-paramiko-jump")
sys.stdout.write(stdout.read().decode())
inner.close()
outer.close()
"#,
        known_hosts = known_hosts.display().to_string(),
        bastion = w.bastion.port,
        web01 = w.web01.port(),
        key = w.alice.private.display().to_string(),
    );
    // Debian's python3 with python3-paramiko (see .ci/run).
    let mut python = Command::new("/usr/bin/python3");
    python.arg("-c").arg(&script);
    let out = run(&mut python);
    assert_eq!(out.stdout_str().trim(), "via-paramiko-jump", "{out}");
    w.session_end();
    let listed = w.cli_ok(&["sessions", "list", "--json"]).stdout_str();
    assert!(listed.contains("web01"), "{listed}");
}

/// AsyncSSH's `tunnel=`: the inner connection's host certificate (naming the target) is
/// checked against the `@cert-authority` line, and the exit status comes back.
#[test]
fn asyncssh_tunnel_reaches_the_target_verifying_the_host_certificate() {
    let w = world("");
    let known_hosts = std::fs::read_to_string(&w.jump.path)
        .expect("ssh_config")
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("UserKnownHostsFile ")
                .map(str::to_owned)
        })
        .expect("known_hosts path");
    let script = format!(
        r#"
import asyncio, sys, asyncssh
async def main():
    key = asyncssh.read_private_key({key:?})
    cert = asyncssh.read_certificate({cert:?})
    common = dict(client_keys=[(key, cert)], known_hosts={known_hosts:?}, agent_path=None)
    async with asyncssh.connect("127.0.0.1", port={bastion}, username="alice", **common) as outer:
        async with asyncssh.connect("web01", port={web01}, username="root", tunnel=outer,
                                    **common) as inner:
            result = await inner.run("echo via-asyncssh-jump; exit 3")
            sys.stdout.write(result.stdout)
            return result.exit_status
sys.exit(asyncio.run(main()))
"#,
        key = w.alice.private.display().to_string(),
        cert = w.alice.cert_path().display().to_string(),
        known_hosts = known_hosts,
        bastion = w.bastion.port,
        web01 = w.web01.port(),
    );
    // Debian's python3 with python3-asyncssh (see .ci/run).
    let mut python = Command::new("/usr/bin/python3");
    python.args(["-W", "ignore", "-c"]).arg(&script);
    let out = run(&mut python);
    assert_eq!(out.status, 3, "{out}");
    assert_eq!(out.stdout_str(), "via-asyncssh-jump\n", "{out}");
}

/// Ansible `ping` and `copy` through the ssh_config `ssh-ca ssh-config --write` generates
/// (a `Host` block with `ProxyJump`, the host CA line): recorded sessions through the jump.
#[test]
fn ansible_ping_and_copy_through_the_generated_ssh_config() {
    let w = world("");
    let dir = w.scratch.file("dot-ssh");
    std::fs::create_dir_all(&dir).expect("ssh dir");
    let bastion = format!("127.0.0.1:{}", w.bastion.port);
    let dir_arg = dir.to_str().expect("utf-8");
    run_ok(&mut w.ca.cmd([
        "ssh-config",
        "--bastion",
        &bastion,
        "--user",
        "alice",
        "--target",
        "web01",
        "--write",
        "--dir",
        dir_arg,
    ]));
    // The person's own settings, after the Include the command put first.
    let config = dir.join("config");
    let mut text = std::fs::read_to_string(&config).expect("config");
    text.push_str(&format!(
        "Host *\n  IdentityFile {}\n  CertificateFile {}\n  IdentitiesOnly yes\n  \
         IdentityAgent none\n  BatchMode yes\n  StrictHostKeyChecking yes\n  \
         GlobalKnownHostsFile /dev/null\n  ConnectTimeout 10\n",
        w.alice.private.display(),
        w.alice.cert_path().display()
    ));
    std::fs::write(&config, text).expect("write config");
    let inventory = w.scratch.write(
        "inventory",
        format!(
            "web01 ansible_port={} ansible_user=root ansible_python_interpreter=/usr/bin/python3 \
             ansible_ssh_common_args='-F {}'\n",
            w.web01.port(),
            config.display()
        ),
    );
    let copied = w.scratch.file("copied-by-ansible.txt");
    let source = w
        .scratch
        .write("ansible-source.txt", "copied through the jump\n");
    let ansible = |module: &str, args: Option<String>| {
        let mut cmd = Command::new(tool("ansible"));
        cmd.arg("web01")
            .arg("-i")
            .arg(&inventory)
            .args(["-m", module])
            .args(args.map(|a| vec!["-a".to_string(), a]).unwrap_or_default())
            // No ControlPersist master left behind; Ansible's files in the scratch dir.
            .env("ANSIBLE_SSH_ARGS", "-o ControlMaster=no")
            .env("ANSIBLE_HOME", w.scratch.file("ansible-home"))
            .env("ANSIBLE_NOCOLOR", "1");
        run_with(&mut cmd, None, Duration::from_secs(120))
    };
    let out = ansible("ping", None);
    assert!(out.success(), "{out}");
    assert!(out.stdout_str().contains("\"ping\": \"pong\""), "{out}");
    let out = ansible(
        "copy",
        Some(format!(
            "src={} dest={}",
            source.display(),
            copied.display()
        )),
    );
    assert!(out.success(), "{out}");
    assert_eq!(
        std::fs::read_to_string(&copied).expect("copied file"),
        "copied through the jump\n"
    );
    let audit = w.bastion.audit();
    assert!(audit.contains("\"event\":\"login.jump\""), "{audit}");
    assert!(audit.contains("\"target\":\"web01\""), "{audit}");
}

/// An inner connection that never logs in is ended at the front door's pre-authentication
/// deadline (`limits.auth_timeout`), like a TCP connection would be.
#[test]
fn an_inner_connection_without_a_login_is_ended_at_the_auth_deadline() {
    let w = world("[limits]\nauth_timeout = \"2s\"\nauth_rejection_time = \"0s\"\n");
    let mut ssh = Command::new(tool("ssh"));
    ssh.arg("-F")
        .arg(&w.jump.path)
        .args(["-W", &format!("web01:{}", w.web01.port())])
        .args(["-p", &w.bastion.port.to_string(), "alice@127.0.0.1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = ssh.spawn().expect("spawn ssh -W");
    // Nothing is sent on stdin (kept open): the inner SSH never starts its login.
    let _stdin = child.stdin.take();
    let started = std::time::Instant::now();
    let ended = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(ended.is_some(), "ssh -W still connected after 20s");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "not before the deadline"
    );
    let mut banner = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().expect("stdout"), &mut banner)
        .expect("read");
    assert!(banner.starts_with("SSH-2.0-jitssh_bastion"), "{banner:?}");
}

/// A jump connection dies with its certificate: revoked by `ssh-ca revoke` in another process,
/// the outer connection (here one with no inner connection at all, `ssh -N`) is closed within
/// `session.revocation_check` and audited as `jump.ended`. Before, it stayed open.
#[test]
fn a_jump_connection_is_closed_when_its_certificate_is_revoked() {
    let w = world("[session]\nrevocation_check = \"1s\"\n");
    let mut ssh = Command::new(tool("ssh"));
    ssh.arg("-F")
        .arg(&w.jump.path)
        .args(["-N", "-p", &w.bastion.port.to_string(), "alice@127.0.0.1"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut child = ssh.spawn().expect("spawn ssh -N");
    w.bastion
        .wait_for_audit("\"event\":\"login.jump\"", Duration::from_secs(10));
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "ssh -N ended early"
    );
    let mut revoke = w.ca.cmd(["revoke", "--reason", "laptop stolen", "--key"]);
    revoke.arg(&w.alice.public);
    run_ok(&mut revoke);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the jump connection outlived its revoked certificate");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let audit = w
        .bastion
        .wait_for_audit("\"event\":\"jump.ended\"", Duration::from_secs(5));
    assert!(audit.contains("laptop stolen"), "{audit}");
}

/// Under `ssh -J` the inner connection, terminated at the bastion, runs AES-GCM although
/// OpenSSH lists chacha20-poly1305 first: the bastion's cipher order decides, as on the front
/// door (the inner connection's cipher is the one the bastion pays for a third time).
#[test]
fn the_inner_connection_of_ssh_j_runs_aes_gcm() {
    let w = world("");
    let out = w.ssh_j_with(&["LogLevel=DEBUG1"], "web01", &["echo", "ok"]);
    assert_eq!(out.status, 0, "{out}");
    let ciphers: Vec<&str> = out
        .stderr
        .lines()
        .filter_map(|l| l.split_once("kex: server->client cipher: "))
        .filter_map(|(_, rest)| rest.split_whitespace().next())
        .collect();
    assert!(!ciphers.is_empty(), "{out}");
    assert!(
        ciphers.iter().all(|c| *c == "aes128-gcm@openssh.com"),
        "{ciphers:?}"
    );
}
