//! A target set up the documented way, with nothing of ours installed on it: the lines and files
//! `ssh-ca sshd-config --write` gives, its host certificate fetched and renewed with plain `ssh`
//! as user `host` (the commands that `sshd-config` prints, run as printed), and its KRL refreshed
//! the same way.

use std::process::Command;

use jitssh_tests::{CaServer, Scratch, Ssh, Sshd, cert_info, keygen, run, run_ok};

/// Runs one of the commands `ssh-ca sshd-config` printed (a `#   ssh ...` comment line), with the
/// token filled in. Only `-F /dev/null` and BatchMode are added, so the test does not depend on
/// this machine's ssh_config.
fn run_printed(printed: &str, token: &str) -> jitssh_tests::Output {
    let command = printed
        .trim_start_matches('#')
        .trim()
        .replace("TOKEN", token)
        .replacen("ssh ", "ssh -F /dev/null -o BatchMode=yes ", 1);
    run(Command::new("sh").args(["-c", &command]))
}

fn printed_command<'a>(output: &'a str, verb: &str) -> &'a str {
    output
        .lines()
        .find(|l| l.starts_with("#   ssh ") && l.contains(&format!(" {verb} ")))
        .unwrap_or_else(|| panic!("no printed `{verb}` command in:\n{output}"))
}

#[test]
fn a_stock_sshd_target_is_set_up_renewed_and_refreshed_with_plain_ssh() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let policy = format!(
        "[[roles]]\nname = \"ops\"\nlogins = [\"root\"]\nhosts = [\"web*\"]\nmax_ttl = \"1h\"\ndirect = true\n\n\
         [[users]]\nname = \"alice\"\nkeys = [\"{}\"]\nroles = [\"ops\"]\n",
        alice.public_line()
    );
    let server = CaServer::start(scratch.path(), &policy, "");
    let etc = scratch.mkdir("etc-ssh");
    let host_key = keygen(&etc, "ssh_host_ed25519_key");
    let token = server
        .ca
        .run_ok(["host", "add", "web01", "--ttl", "1h"])
        .stdout_str()
        .lines()
        .last()
        .expect("token line")
        .trim()
        .to_string();

    let mut cmd = server.ca.cmd(["sshd-config", "--write", "--dir"]);
    cmd.arg(&etc);
    let printed = run_ok(&mut cmd).stdout_str();
    for file in [
        "jitssh-target-ca.pub",
        "jitssh-host-ca.pub",
        "jitssh_known_hosts",
        "jitssh-revoked.krl",
    ] {
        assert!(etc.join(file).exists(), "--write wrote {file}");
    }
    let host_ca = std::fs::read_to_string(etc.join("jitssh-host-ca.pub")).unwrap();
    assert!(
        std::fs::read_to_string(etc.join("jitssh_known_hosts"))
            .unwrap()
            .contains(host_ca.trim()),
        "the known_hosts file trusts the host CA"
    );

    // The host certificate, with the token, by plain ssh as printed.
    let cert_path = etc.join("ssh_host_ed25519_key-cert.pub");
    let out = run_printed(printed_command(&printed, "join"), &token);
    assert_eq!(out.status, 0, "join: {out}");
    let info = cert_info(&cert_path);
    assert!(
        info.contains("host certificate") && info.contains("web01"),
        "{info}"
    );
    let first_serial = serial(&info);

    // sshd with exactly the printed lines serves it, and accepts alice's break-glass
    // certificate (target CA), but not her own (user CA: the bastion's door only).
    let mut builder = Sshd::builder().host_key(&host_key.private);
    for line in printed.lines().filter(|l| {
        ["TrustedUserCAKeys ", "RevokedKeys ", "HostCertificate "]
            .iter()
            .any(|p| l.starts_with(p))
    }) {
        builder = builder.config(line);
    }
    let sshd = builder.start();
    let cert = server
        .ssh("alice", &alice)
        .args(["cert", "--principals", "root"])
        .run();
    assert_eq!(cert.status, 0, "{cert}");
    let own_cert = scratch.write("alice-own-cert.pub", cert.stdout_str());
    let cert = server
        .ssh("alice", &alice)
        .args([
            "cert",
            "--principals",
            "root",
            "--direct",
            "--reason",
            "INC-1",
        ])
        .run();
    assert_eq!(cert.status, 0, "{cert}");
    let alice_cert = scratch.write("alice-cert.pub", cert.stdout_str());
    let login_with = |cert: &std::path::Path| {
        Ssh::new(sshd.port())
            .user("root")
            .identity(&alice.private)
            .cert(cert)
            .known_hosts(etc.join("jitssh_known_hosts"))
            .host("web01")
            .args(["echo", "target-ok"])
            .run()
    };
    let login = || login_with(&alice_cert);
    let out = login_with(&own_cert);
    assert_eq!(
        out.status, 255,
        "a person's own certificate is refused: {out}"
    );
    let out = login();
    assert_eq!(out.stdout_str(), "target-ok\n", "{out}");

    // Renewal by plain ssh: a new certificate replaces the file.
    let out = run_printed(printed_command(&printed, "host-cert"), "");
    assert_eq!(out.status, 0, "host-cert: {out}");
    assert_ne!(serial(&cert_info(&cert_path)), first_serial, "renewed");

    // Revoke alice's certificate; the target refreshes its KRL by plain ssh and refuses it.
    let alice_serial = serial(&cert_info(&alice_cert));
    server
        .ca
        .run_ok(["revoke", "--serial", &alice_serial, "--reason", "test"]);
    let out = run_printed(printed_command(&printed, "krl"), "");
    assert_eq!(out.status, 0, "krl refresh: {out}");
    let out = login();
    assert_ne!(out.status, 0, "revoked certificate refused: {out}");
    assert!(!out.stdout_str().contains("target-ok"), "{out}");
}

fn serial(info: &str) -> String {
    info.lines()
        .find_map(|l| l.trim().strip_prefix("Serial:"))
        .expect("Serial: line")
        .trim()
        .to_string()
}
