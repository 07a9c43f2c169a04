//! `ssh-bastion` refuses bad input with one line and a non-zero exit, never a panic.
//!
//! (Being an integration test of this package, it also makes `cargo test --workspace` build
//! the `ssh-bastion` binary that the end-to-end tests in `tests/` drive.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bastion(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ssh-bastion"))
        .args(args)
        .output()
        .expect("run ssh-bastion")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn assert_one_line_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {err}");
    assert!(lines[0].starts_with("ssh-bastion: error: "), "{err}");
    assert!(lines[0].contains(needle), "{needle:?} in {err}");
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("utf-8")
}

#[test]
fn config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "bastion.toml",
        "listen = \"127.0.0.1:1\"\n\n[session]\ncert_tll = \"5m\"\n",
    );
    let out = bastion(&["--config", arg(&config), "serve"]);
    assert_one_line_error(&out, "bastion.toml:4: key session.cert_tll");
    assert_eq!(out.status.code(), Some(1));

    let config = write(
        dir.path(),
        "targets.toml",
        "[[targets]]\nname = \"web01\"\naddress = \"nowhere\"\n",
    );
    let out = bastion(&["--config", arg(&config), "serve"]);
    assert_one_line_error(&out, "targets.toml:3: key targets[0].address");

    let missing = dir.path().join("missing.toml");
    let out = bastion(&["--config", arg(&missing), "serve"]);
    assert_one_line_error(&out, "missing.toml: cannot read");
}

#[test]
fn usage_errors_exit_2() {
    let out = bastion(&["serve", "--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_one_line_error(&out, "--bogus");
}

#[test]
fn a_listen_address_in_use_is_a_clean_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let ca_port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        probe.local_addr().expect("addr").port()
    };
    write(
        dir.path(),
        "ca.toml",
        &format!("listen = \"127.0.0.1:{ca_port}\"\n"),
    );
    let config = write(
        dir.path(),
        "bastion.toml",
        &format!("listen = \"127.0.0.1:{port}\"\n[ca]\nconfig = \"ca.toml\"\n"),
    );
    let out = bastion(&["--config", arg(&config), "serve"]);
    let err = stderr(&out);
    let last = err.lines().last().unwrap_or_default();
    assert!(!out.status.success(), "{err}");
    assert!(
        last.starts_with("ssh-bastion: error: cannot listen on 127.0.0.1:"),
        "{err}"
    );
    assert!(last.contains("in use"), "{err}");
}
