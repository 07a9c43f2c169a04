//! Bad input to `ssh-ca` gets one clear line on stderr and a non-zero exit, never a panic.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIH9IXZUqz/ePREb8+Ij4fs6tI6Qe7x5eBNYb+/WV9ni6 alice";

fn ssh_ca(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ssh-ca"))
        .arg("--config")
        .arg(dir.join("ca.toml"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh-ca");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait ssh-ca");
    let _ = writer.join();
    out
}

/// `ssh-ca sign --user --key - --principals PRINCIPALS --ttl TTL EXTRA...` with `stdin`.
fn sign_user(dir: &Path, principals: &str, ttl: &str, extra: &[&str], stdin: &[u8]) -> Output {
    let mut args = vec![
        "sign",
        "--user",
        "--key",
        "-",
        "--principals",
        principals,
        "--ttl",
        ttl,
    ];
    args.extend_from_slice(extra);
    ssh_ca(dir, &args, stdin)
}

fn setup(config: &str, policy: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("ca.toml"), config).unwrap();
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    dir
}

const CONFIG: &str = "data_dir = \"data\"\npolicy = \"policy.toml\"\n";

/// Asserts a failure with exactly one line on stderr containing every `needle`.
fn assert_one_line_error(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should fail: {stderr}");
    assert_ne!(out.status.code(), Some(101), "panicked: {stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "one line: {stderr:?}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
}

fn initialised() -> tempfile::TempDir {
    let dir = setup(CONFIG, "");
    let out = ssh_ca(dir.path(), &["init"], b"");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    dir
}

#[test]
fn init_prints_the_three_keys_and_refuses_to_overwrite() {
    let dir = setup(CONFIG, "");
    let out = ssh_ca(dir.path(), &["init"], b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("user CA SHA256:")
            && stdout.contains("host CA SHA256:")
            && stdout.contains("target CA SHA256:"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("ssh-ed25519 ").count(), 3, "{stdout}");
    let again = ssh_ca(dir.path(), &["init"], b"");
    assert_one_line_error(&again, &["refusing to overwrite"]);
}

#[test]
fn malformed_public_key_on_stdin() {
    let dir = initialised();
    let out = sign_user(
        dir.path(),
        "root",
        "1h",
        &[],
        b"ssh-ed25519 AAAAnot-base64!! x\n",
    );
    assert_one_line_error(&out, &["malformed public key in standard input"]);
    let out = sign_user(dir.path(), "root", "1h", &[], b"");
    assert_one_line_error(&out, &["no public key in standard input"]);
    let out = sign_user(dir.path(), "root", "1h", &[], &vec![b'A'; 8 * 1024 * 1024]);
    assert_one_line_error(&out, &["public key"]);
    let out = sign_user(dir.path(), "root", "1h", &[], &[0xff, 0xfe, 0x00, 0x80]);
    assert_one_line_error(&out, &["standard input"]);
}

#[test]
fn ttl_banana() {
    let dir = initialised();
    let out = sign_user(dir.path(), "root", "banana", &[], KEY.as_bytes());
    assert_one_line_error(&out, &["banana", "--ttl"]);
}

#[test]
fn empty_principal_list() {
    let dir = initialised();
    let out = sign_user(dir.path(), "", "1h", &[], KEY.as_bytes());
    assert_one_line_error(&out, &["no principals"]);
}

#[test]
fn unknown_config_key_names_file_line_and_key() {
    let dir = setup("data_dir = \"data\"\n\nlisten_addr = \"x\"\n", "");
    let out = ssh_ca(dir.path(), &["init"], b"");
    assert_one_line_error(&out, &["ca.toml:3", "listen_addr"]);
}

#[test]
fn broken_policy_file_names_file_and_line() {
    let dir = initialised();
    std::fs::write(
        dir.path().join("policy.toml"),
        "[[roles]]\nname = \"dev\"\nlogins = [\"x\"]\nmax_ttl = \"forever\"\n",
    )
    .unwrap();
    let out = sign_user(dir.path(), "root", "1h", &[], KEY.as_bytes());
    assert_one_line_error(&out, &["policy.toml:4", "max_ttl", "forever"]);
    std::fs::write(dir.path().join("policy.toml"), "[[roles]\nname=").unwrap();
    let out = ssh_ca(dir.path(), &["krl"], b"");
    assert_one_line_error(&out, &["policy.toml:1"]);
}

#[test]
fn commands_before_init_say_how_to_fix_it() {
    let dir = setup(CONFIG, "");
    let out = ssh_ca(dir.path(), &["pubkey", "--user"], b"");
    assert_one_line_error(&out, &["ssh-ca init"]);
}

#[test]
fn bad_source_address_and_missing_kind() {
    let dir = initialised();
    let out = sign_user(
        dir.path(),
        "root",
        "1h",
        &["--source-address", "nowhere"],
        KEY.as_bytes(),
    );
    assert_one_line_error(&out, &["source-address", "nowhere"]);
    let out = ssh_ca(
        dir.path(),
        &["sign", "--key", "-", "--principals", "root", "--ttl", "1h"],
        KEY.as_bytes(),
    );
    assert_one_line_error(&out, &["--user"]);
}
