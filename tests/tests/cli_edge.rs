//! The binaries' edge: output to a closed pipe, error lines, and where the CA's keys are.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use jitssh_tests::{CaFixture, Scratch, project_bin, run};

/// Runs `cmd` with its standard output a pipe whose reading end is already closed (like
/// `| head` that has exited), and returns (exit code, stderr).
fn with_closed_stdout(cmd: &mut Command) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(Instant::now() < deadline, "{cmd:?} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
    }
    (status.code(), stderr)
}

#[test]
fn printing_to_a_closed_pipe_ends_quietly_in_both_binaries() {
    let scratch = Scratch::new();
    let ca = CaFixture::init(scratch.path(), "");
    let commands: [&[&str]; 6] = [
        &["issued"],
        &["pubkey", "--user"],
        &["krl"],
        &["host", "list"],
        &["audit", "verify"],
        &["known-hosts"],
    ];
    for args in commands {
        let (code, stderr) = with_closed_stdout(&mut ca.cmd(args));
        assert_eq!(code, Some(0), "ssh-ca {args:?}: {stderr}");
        assert!(stderr.is_empty(), "ssh-ca {args:?} is quiet: {stderr}");
    }
    let config = scratch.write("bastion.toml", "data_dir = \"bastion-data\"\n");
    for args in [&["sessions", "list"][..], &["audit", "verify"]] {
        let mut cmd = Command::new(project_bin("ssh-bastion"));
        cmd.arg("--config").arg(&config).args(args);
        let (code, stderr) = with_closed_stdout(&mut cmd);
        assert_ne!(code, Some(101), "ssh-bastion {args:?} panicked: {stderr}");
        assert!(
            !stderr.contains("panicked"),
            "ssh-bastion {args:?}: {stderr}"
        );
        assert!(
            !stderr.contains("Broken pipe"),
            "ssh-bastion {args:?}: {stderr}"
        );
    }
}

#[test]
fn an_address_in_use_is_one_line_naming_the_cause_once() {
    let scratch = Scratch::new();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let ca = CaFixture::configure(
        scratch.path(),
        "",
        &format!("listen = \"127.0.0.1:{port}\"\nnames = [\"localhost\"]\n"),
    );
    let out = run(&mut ca.cmd(["serve"]));
    assert_ne!(out.status, 0, "{out}");
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("ssh-ca: error:"))
        .unwrap_or_else(|| panic!("no error line: {out}"));
    assert_eq!(line.matches("os error 98").count(), 1, "{line}");
    assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
}

/// `ssh-ca serve` says which CA keys it created or loaded and where, and how much policy it
/// loaded; with its key files gone it refuses to start a second CA next to the first one's
/// store instead of silently creating new keys.
#[test]
fn the_ca_names_its_keys_and_never_silently_replaces_them() {
    let scratch = Scratch::new();
    let alice = jitssh_tests::keygen(scratch.path(), "alice");
    let policy = format!(
        "[[roles]]\nname = \"dev\"\nlogins = [\"{{user}}\"]\nmax_ttl = \"1h\"\n\n[[users]]\nname = \"alice\"\nkeys = [\"{}\"]\nroles = [\"dev\"]\n",
        alice.public_line()
    );
    let data = scratch.path().join("ca-data");
    let mut server = jitssh_tests::CaServer::start(scratch.path(), &policy, "");
    let log = server.daemon.log();
    let created = log
        .lines()
        .find(|l| l.contains("CA keys created") && !l.contains("created CA keys"))
        .unwrap_or_else(|| panic!("no 'CA keys created' line: {log}"));
    assert!(created.contains("user_ca=SHA256:"), "{created}");
    assert!(created.contains("host_ca=SHA256:"), "{created}");
    assert!(
        created.contains(&format!("dir={}", data.display())),
        "absolute data dir: {created}"
    );
    assert!(
        log.lines()
            .any(|l| l.contains("policy loaded") && l.contains("users=1") && l.contains("roles=1")),
        "{log}"
    );
    let user_ca = server.ca.run_ok(["pubkey", "--user"]).stdout_str();
    server.daemon.stop();

    // The key files are gone (e.g. --config pointing at a copy without them).
    let aside = scratch.mkdir("aside");
    for name in ["user_ca", "user_ca.pub", "host_ca", "host_ca.pub"] {
        std::fs::rename(data.join(name), aside.join(name)).unwrap();
    }
    let out = run(&mut server.ca.cmd(["serve"]));
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr.contains("refusing to create new CA keys"),
        "{out}"
    );
    assert!(
        out.stderr
            .contains(&data.join("store.db").display().to_string()),
        "{out}"
    );
    assert!(!data.join("user_ca").exists(), "no new keys were created");
    let out = run(&mut server.ca.cmd(["init"]));
    assert_ne!(out.status, 0, "init refuses too: {out}");
    assert!(!data.join("user_ca").exists(), "no new keys were created");

    // Put back, it starts with the same keys and says it loaded them.
    for name in ["user_ca", "user_ca.pub", "host_ca", "host_ca.pub"] {
        std::fs::rename(aside.join(name), data.join(name)).unwrap();
    }
    std::fs::remove_file(scratch.path().join("ca-serve.log")).unwrap();
    let server = jitssh_tests::CaServer::start(scratch.path(), &policy, "");
    assert!(
        server.daemon.log().contains("CA keys loaded"),
        "{}",
        server.daemon.log()
    );
    assert_eq!(server.ca.run_ok(["pubkey", "--user"]).stdout_str(), user_ca);
}
