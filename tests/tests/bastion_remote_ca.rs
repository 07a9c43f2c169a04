//! `ssh-bastion` with `[ca] mode = "remote"`: session certificates and revocations come from
//! a separate `ssh-ca serve` over SSH, which the bastion trusts only through the host CA.

use std::path::PathBuf;
use std::time::Duration;

use jitssh_tests::{Bastion, CaServer, KeyPair, Scratch, Sshd, keygen, run_ok, target, user};

/// A separate CA serving its API, with the bastion's identity listed, a target and alice.
struct RemoteWorld {
    scratch: Scratch,
    identity: KeyPair,
    server: CaServer,
    host_ca: PathBuf,
    web01: Sshd,
    alice: KeyPair,
}

impl RemoteWorld {
    fn new() -> RemoteWorld {
        let scratch = Scratch::new();
        let identity = keygen(scratch.path(), "bastion_id");
        let server = CaServer::start(
            scratch.path(),
            "",
            &format!("bastion_keys = [\"{}\"]\n", identity.public_line()),
        );
        let host_ca = server.ca.ca_pub_file("host");
        let web01 = target(&server.ca, scratch.path(), "web01", |b| b);
        let alice = user(
            &server.ca,
            scratch.path(),
            "alice",
            &["root"],
            &["web*"],
            &[],
        );
        RemoteWorld {
            scratch,
            identity,
            server,
            host_ca,
            web01,
            alice,
        }
    }

    /// A bastion in remote mode; `ca_lines` go into its `[ca]` section, `extra` at the end.
    fn bastion(&self, ca_lines: &str, extra: &str) -> Bastion {
        Bastion::start_remote(
            self.scratch.path(),
            &format!("127.0.0.1:{}", self.server.port),
            &self.host_ca,
            &self.identity.private,
            ca_lines,
            &[("web01", format!("127.0.0.1:{}", self.web01.port()))],
            extra,
        )
    }
}

#[test]
fn a_remote_ca_mints_session_certificates_and_its_revocations_apply() {
    let w = RemoteWorld::new();
    let (server, alice) = (&w.server, &w.alice);
    let bastion = w.bastion("", "[session]\nrevocation_check = \"1s\"\n");

    let out = bastion.ssh("root@web01", alice).args(["echo", "hi"]).run();
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout_str(), "hi\n");
    // The session certificate was minted by the remote CA for the bastion.
    let issued = run_ok(&mut server.ca.cmd(["issued"])).stdout_str();
    assert!(issued.contains("session="), "{issued}");

    run_ok(&mut server.ca.cmd(["revoke", "--key-id", "alice"]));
    // The bastion refreshes the CA's KRL every second.
    let mut refused = None;
    for _ in 0..50 {
        let out = bastion
            .ssh("root@web01", alice)
            .option("BatchMode=no")
            .args(["echo", "hi"])
            .run();
        if !out.success() {
            refused = Some(out);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = refused.expect("refused once the KRL says revoked");
    assert!(out.stderr.contains("revoked"), "{out}");
}

#[test]
fn a_remote_ca_that_is_not_ours_is_refused_at_startup() {
    let scratch = Scratch::new();
    let identity = keygen(scratch.path(), "bastion_id");
    let server = CaServer::start(
        scratch.path(),
        "",
        &format!("bastion_keys = [\"{}\"]\n", identity.public_line()),
    );
    // Trust some other host CA: the real CA's host certificate must not be accepted.
    let other = keygen(scratch.path(), "other_host_ca");
    let config = scratch.write(
        "bastion.toml",
        format!(
            "data_dir = \"bd\"\nlisten = \"127.0.0.1:{}\"\n[ca]\nmode = \"remote\"\naddress = \"127.0.0.1:{}\"\nhost_ca = \"{}\"\nidentity = \"{}\"\n",
            jitssh_tests::free_port(),
            server.port,
            other.public.display(),
            identity.private.display()
        ),
    );
    let out = jitssh_tests::run(
        std::process::Command::new(jitssh_tests::project_bin("ssh-bastion"))
            .arg("--config")
            .arg(&config)
            .arg("serve"),
    );
    assert_ne!(out.status, 0, "{out}");
    let last = out.stderr.lines().last().unwrap_or_default();
    assert!(last.starts_with("ssh-bastion: error: remote CA:"), "{out}");
    assert!(last.contains("not trusted"), "{out}");
}

/// In remote mode the bastion enrols its own host key with the CA (one-time token, then
/// renewals by proof of possession), so clients that trust the host CA reach it with strict
/// host key checking; without enrolment it serves with a plain key and strict clients refuse.
#[test]
fn a_remote_mode_bastion_gets_its_host_certificate_from_the_ca() {
    let w = RemoteWorld::new();
    let (scratch, server, host_ca, alice) = (&w.scratch, &w.server, &w.host_ca, &w.alice);
    let added = run_ok(&mut server.ca.cmd(["host", "add", "bastion01", "--ttl", "1h"]));
    let token = added
        .stdout_str()
        .lines()
        .last()
        .expect("token")
        .trim()
        .to_string();
    let known_hosts = scratch.write(
        "known_hosts_bastion",
        format!(
            "@cert-authority bastion01 {}",
            std::fs::read_to_string(host_ca).expect("host CA")
        ),
    );
    let strict = |bastion: &Bastion| {
        jitssh_tests::Ssh::new(bastion.port)
            .user("root@web01")
            .identity(&alice.private)
            .cert(alice.cert_path())
            .known_hosts(&known_hosts)
            .host("bastion01")
            .args(["echo", "strict-ok"])
            .run()
    };
    let bastion = w.bastion(&format!("host_token = \"{token}\"\n"), "");
    let out = strict(&bastion);
    assert_eq!(out.stdout_str(), "strict-ok\n", "{out}");
    let hosts = run_ok(&mut server.ca.cmd(["host", "list"])).stdout_str();
    assert!(
        hosts.contains("bastion01") && hosts.contains("yes"),
        "joined: {hosts}"
    );
    drop(bastion);

    // Restarted with the (now spent) token still configured: it renews with its enrolled key.
    let bastion = w.bastion(&format!("host_token = \"{token}\"\n"), "");
    let out = strict(&bastion);
    assert_eq!(
        out.stdout_str(),
        "strict-ok\n",
        "renewed by proof of possession: {out}"
    );
    drop(bastion);

    // Removed from the CA: it serves with a plain host key, which strict clients refuse.
    run_ok(&mut server.ca.cmd(["host", "remove", "bastion01"]));
    let bastion = w.bastion("", "");
    assert!(
        bastion.log().contains("serving without a host certificate"),
        "{}",
        bastion.log()
    );
    let out = strict(&bastion);
    assert_eq!(out.status, 255, "{out}");
    assert!(out.stderr.contains("Host key verification failed"), "{out}");
}
