//! `ssh-bastion` with `[ca] mode = "remote"`: session certificates and revocations come from
//! a separate `ssh-ca serve` over SSH, which the bastion trusts only through the host CA.

use std::time::Duration;

use jitssh_tests::{Bastion, CaServer, Scratch, keygen, run_ok, target, user};

#[test]
fn a_remote_ca_mints_session_certificates_and_its_revocations_apply() {
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
    let bastion = Bastion::start_remote(
        scratch.path(),
        &format!("127.0.0.1:{}", server.port),
        &host_ca,
        &identity.private,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        "[session]\nrevocation_check = \"1s\"\n",
    );

    let out = bastion.ssh("root@web01", &alice).args(["echo", "hi"]).run();
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
            .ssh("root@web01", &alice)
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
