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
