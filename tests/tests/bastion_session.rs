//! Sessions through `ssh-bastion` with the real OpenSSH client to a real sshd target: exec,
//! exit status and signals carried back, pty sessions, force-command, audit records.

use std::time::Duration;

use jitssh_tests::{Bastion, Scratch, Sshd, target, user};

struct World {
    _scratch: Scratch,
    ca: jitssh_tests::CaFixture,
    bastion: Bastion,
    _web01: Sshd,
    alice: jitssh_tests::KeyPair,
}

fn world() -> World {
    world_with(|b| b)
}

fn world_with(
    configure: impl FnOnce(jitssh_tests::SshdBuilder) -> jitssh_tests::SshdBuilder,
) -> World {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", configure);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    World {
        _scratch: scratch,
        ca,
        bastion,
        _web01: web01,
        alice,
    }
}

#[test]
fn exec_returns_output_and_exit_status() {
    let w = world();
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["echo", "hi"])
        .run();
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout_str(), "hi\n");

    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .args(["exit", "3"])
        .run();
    assert_eq!(out.status, 3, "{out}");

    let audit = w
        .bastion
        .wait_for_audit("session.end", Duration::from_secs(10));
    assert!(audit.contains("\"event\":\"login.accepted\""), "{audit}");
    assert!(audit.contains("\"command\":\"echo hi\""), "{audit}");
    assert!(audit.contains("\"person\":\"alice\""), "{audit}");
}

#[test]
fn a_signal_exit_is_carried_back() {
    let w = world();
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .option("LogLevel=DEBUG1")
        .args(["kill", "-TERM", "$$"])
        .run();
    assert_eq!(out.status, 255, "{out}");
    assert!(
        out.stderr.contains("rtype exit-signal"),
        "the client received the signal exit: {out}"
    );
}

#[test]
fn a_pty_session_runs_commands_typed_on_stdin() {
    let w = world();
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .flag("-tt")
        .stdin("tty\necho pty-$((6*7))\nexit 5\n")
        .run();
    assert_eq!(out.status, 5, "{out}");
    let stdout = out.stdout_str();
    assert!(stdout.contains("pty-42"), "{out}");
    assert!(
        stdout.contains("/dev/pts/"),
        "a real terminal on the target: {out}"
    );
    let audit = w
        .bastion
        .wait_for_audit("session.end", Duration::from_secs(10));
    assert!(audit.contains("\"event\":\"session.shell\""), "{audit}");
}

#[test]
fn environment_is_passed_only_when_allowed() {
    // The target accepts both; the bastion's allow-list (default LANG, LC_*) passes one.
    let w = world_with(|b| b.config("AcceptEnv LC_* SECRET_*"));
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .option("SetEnv=LC_JITSSH=passed SECRET_JITSSH=blocked")
        .args(["echo", "lc=$LC_JITSSH secret=$SECRET_JITSSH"])
        .run();
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout_str(), "lc=passed secret=\n", "{out}");
}

#[test]
fn putty_plink_with_a_certificate_works() {
    let w = world();
    let mut plink = w
        .bastion
        .plink("root@web01", &w.alice, &w.alice.cert_path());
    let out = jitssh_tests::run(plink.args(["echo", "hi", "from", "plink"]));
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout_str(), "hi from plink\n", "{out}");
    let out = jitssh_tests::run(
        w.bastion
            .plink("root@web01", &w.alice, &w.alice.cert_path())
            .args(["exit", "7"]),
    );
    assert_eq!(out.status, 7, "{out}");
}

#[test]
fn force_command_in_the_certificate_replaces_what_the_user_asked() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let robot = user(
        &ca,
        scratch.path(),
        "robot",
        &["root"],
        &["web01"],
        &["--force-command", "echo forced"],
    );
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let out = bastion
        .ssh("root@web01", &robot)
        .args(["echo", "asked"])
        .run();
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout_str(), "forced\n", "{out}");
    let out = bastion.ssh("root@web01", &robot).run();
    assert_eq!(
        out.stdout_str(),
        "forced\n",
        "a shell runs the forced command too: {out}"
    );
    let audit =
        bastion.wait_for_audit("\"forced_command\":\"echo forced\"", Duration::from_secs(5));
    assert!(audit.contains("\"command\":\"echo asked\""), "{audit}");
}

/// All-in-one: the certificate comes from the CA API that `ssh-bastion serve` runs in the
/// same process, from the policy; then the person goes through the bastion with it.
#[test]
fn all_in_one_certificate_from_the_embedded_ca_then_through_the_bastion() {
    let scratch = Scratch::new();
    let alice = jitssh_tests::keygen(scratch.path(), "alice");
    let policy = format!(
        "[[roles]]\nname = \"ops\"\nlogins = [\"root\"]\nhosts = [\"web*\"]\nmax_ttl = \"1h\"\n\n\
         [[users]]\nname = \"alice\"\nkeys = [\"{}\"]\nroles = [\"ops\"]\n",
        alice.public_line()
    );
    let ca = Bastion::ca(scratch.path(), &policy);
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let out = jitssh_tests::Ssh::new(bastion.ca_port)
        .user("alice")
        .identity(&alice.private)
        .args(["cert", "--ttl", "10m"])
        .run();
    assert!(out.success(), "{out}");
    std::fs::write(alice.cert_path(), &out.stdout).expect("write certificate");
    let out = bastion
        .ssh("root@web01", &alice)
        .args(["echo", "all-in-one"])
        .run();
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout_str(), "all-in-one\n");
    let audit = bastion.wait_for_audit("session.end", Duration::from_secs(5));
    assert!(audit.contains("\"roles\":[\"ops\"]"), "{audit}");
}

/// A terminal resized while the session runs: the target's pty follows.
#[test]
fn window_changes_reach_the_target_pty() {
    let w = world();
    let out_file = w._scratch.file("stty.out");
    let socket = format!("jitssh-{}", std::process::id());
    let mut ssh = w.bastion.ssh("root@web01", &w.alice).flag("-tt");
    ssh = ssh.args(["stty size; sleep 3; stty size"]);
    let command = ssh.command();
    let line = std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|a| format!("'{}'", a.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ");
    let tmux = jitssh_tests::tool("tmux");
    jitssh_tests::run_ok(std::process::Command::new(&tmux).args([
        "-L",
        &socket,
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "30",
        &format!("{line} > '{}' 2>&1", out_file.display()),
    ]));
    jitssh_tests::wait_for(
        || std::fs::read_to_string(&out_file).is_ok_and(|t| t.contains("30 100")),
        Duration::from_secs(10),
        "the first stty size",
    );
    jitssh_tests::run_ok(std::process::Command::new(&tmux).args([
        "-L",
        &socket,
        "resize-window",
        "-x",
        "120",
        "-y",
        "40",
    ]));
    jitssh_tests::wait_for(
        || std::fs::read_to_string(&out_file).is_ok_and(|t| t.contains("40 120")),
        Duration::from_secs(10),
        "the second stty size after the resize",
    );
    let _ = std::process::Command::new(&tmux)
        .args(["-L", &socket, "kill-server"])
        .status();
}

/// The bastion presents a host certificate from the host CA: a client that trusts the host
/// CA connects with strict checking and nothing learned on first use.
#[test]
fn clients_trusting_the_host_ca_reach_the_bastion_without_trust_on_first_use() {
    let w = world();
    let trusted = w
        ._scratch
        .write("known_hosts", w.ca.run_ok(["known-hosts"]).stdout);
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .known_hosts(&trusted)
        .host("localhost")
        .args(["echo", "verified"])
        .run();
    assert!(out.success(), "{out}");
    assert_eq!(out.stdout_str(), "verified\n");
    let empty = w._scratch.write("empty_known_hosts", "");
    let out = w
        .bastion
        .ssh("root@web01", &w.alice)
        .known_hosts(&empty)
        .host("localhost")
        .args(["echo", "unverified"])
        .run();
    assert_eq!(out.status, 255, "{out}");
    assert!(out.stderr.contains("Host key verification failed"), "{out}");
}
