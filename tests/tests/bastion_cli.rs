//! `ssh-bastion` refuses bad input with one line and a non-zero exit, never a panic.

use std::process::Command;

use jitssh_tests::{Scratch, project_bin, run};

fn bastion(args: &[&str]) -> jitssh_tests::Output {
    run(Command::new(project_bin("ssh-bastion")).args(args))
}

fn assert_one_line_error(out: &jitssh_tests::Output, needle: &str) {
    assert_ne!(out.status, 0, "{out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {out}");
    assert!(lines[0].starts_with("ssh-bastion: error: "), "{out}");
    assert!(lines[0].contains(needle), "{needle:?} in {out}");
}

#[test]
fn config_errors_name_file_line_and_key() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "bastion.toml",
        "listen = \"127.0.0.1:1\"\n\n[session]\ncert_tll = \"5m\"\n",
    );
    let out = bastion(&["--config", config.to_str().expect("utf-8"), "serve"]);
    assert_one_line_error(&out, "bastion.toml:4: key session.cert_tll");
    assert_eq!(out.status, 1);

    let config = scratch.write(
        "targets.toml",
        "[[targets]]\nname = \"web01\"\naddress = \"nowhere\"\n",
    );
    let out = bastion(&["--config", config.to_str().expect("utf-8"), "serve"]);
    assert_one_line_error(&out, "targets.toml:3: key targets[0].address");

    let missing = scratch.file("missing.toml");
    let out = bastion(&["--config", missing.to_str().expect("utf-8"), "serve"]);
    assert_one_line_error(&out, "missing.toml: cannot read");
}

#[test]
fn usage_errors_exit_2() {
    let out = bastion(&["serve", "--bogus"]);
    assert_eq!(out.status, 2, "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert!(out.stderr.starts_with("ssh-bastion: error: "), "{out}");
}

#[test]
fn a_listen_address_in_use_is_a_clean_error() {
    let scratch = Scratch::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let ca_port = jitssh_tests::free_port();
    scratch.write("ca.toml", format!("listen = \"127.0.0.1:{ca_port}\"\n"));
    let config = scratch.write(
        "bastion.toml",
        format!("listen = \"127.0.0.1:{port}\"\n[ca]\nconfig = \"ca.toml\"\n"),
    );
    let out = bastion(&["--config", config.to_str().expect("utf-8"), "serve"]);
    let last = out.stderr.lines().last().unwrap_or_default().to_string();
    assert_ne!(out.status, 0, "{out}");
    assert!(
        last.starts_with("ssh-bastion: error: cannot listen on 127.0.0.1:"),
        "{out}"
    );
    assert!(last.contains("in use"), "{out}");
}
