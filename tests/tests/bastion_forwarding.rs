//! Forwarding through `ssh-bastion`: only when both the certificate and the bastion's policy
//! allow it; then `-L`, `-R` and agent forwarding work end to end through the target.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use jitssh_tests::{
    Bastion, Daemon, KeyPair, Scratch, Sshd, free_port, target, tool, user, wait_for,
};

struct World {
    scratch: Scratch,
    bastion: Bastion,
    _web01: Sshd,
}

fn world(policy: &str) -> (World, jitssh_tests::CaFixture) {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        policy,
    );
    (
        World {
            scratch,
            bastion,
            _web01: web01,
        },
        ca,
    )
}

/// A TCP server answering each connection's first line with `echo:<line>`.
fn echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind echo server");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 256];
                if let Ok(n) = stream.read(&mut buf) {
                    let _ = stream.write_all(b"echo:");
                    let _ = stream.write_all(&buf[..n]);
                }
            });
        }
    });
    port
}

fn ask(port: u16, what: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect forwarded port");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(what.as_bytes()).expect("send");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn ssh")
}

fn listening(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_ok()
}

fn finish(child: Child) -> String {
    let out = child.wait_with_output().expect("ssh output");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn make_alice(ca: &jitssh_tests::CaFixture, w: &World) -> KeyPair {
    user(ca, w.scratch.path(), "alice", &["root"], &["web*"], &[])
}

#[test]
fn local_and_remote_port_forwarding_work_when_cert_and_policy_allow() {
    let (w, ca) = world("[forwarding]\nport = true\n");
    let alice = make_alice(&ca, &w);
    let echo = echo_server();

    let local = free_port();
    let child = spawn(
        w.bastion
            .ssh("root@web01", &alice)
            .flag("-L")
            .flag(format!("127.0.0.1:{local}:127.0.0.1:{echo}"))
            .option("ExitOnForwardFailure=yes")
            .args(["sleep", "4"])
            .command(),
    );
    wait_for(
        || listening(local),
        Duration::from_secs(10),
        "ssh -L to listen",
    );
    assert_eq!(ask(local, "via-L"), "echo:via-L");
    finish(child);

    // -R: the target listens; a connection there comes back through the bastion to us.
    let remote = free_port();
    let child = spawn(
        w.bastion
            .ssh("root@web01", &alice)
            .flag("-R")
            .flag(format!("127.0.0.1:{remote}:127.0.0.1:{echo}"))
            .option("ExitOnForwardFailure=yes")
            .args(["sleep", "4"])
            .command(),
    );
    wait_for(
        || listening(remote),
        Duration::from_secs(10),
        "target to listen for -R",
    );
    assert_eq!(ask(remote, "via-R"), "echo:via-R");
    finish(child);

    let audit = w
        .bastion
        .wait_for_audit("\"kind\":\"remote\"", Duration::from_secs(5));
    assert!(audit.contains("\"kind\":\"local\""), "{audit}");
    assert!(audit.contains("session.forward.connection"), "{audit}");
}

#[test]
fn port_forwarding_needs_the_certificate_extension_too() {
    let (w, ca) = world("[forwarding]\nport = true\n");
    let bob = user(
        &ca,
        w.scratch.path(),
        "bob",
        &["root"],
        &["web*"],
        &["--extension", "permit-pty"],
    );
    let out = w
        .bastion
        .ssh("root@web01", &bob)
        .option("LogLevel=INFO")
        .flag("-W")
        .flag("127.0.0.1:22")
        .run();
    assert_eq!(out.status, 255, "{out}");
    assert!(
        out.stderr.contains(
            "bastion: port forwarding is not permitted: your certificate lacks permit-port-forwarding"
        ),
        "{out}"
    );
    // -R is a global request: refused, and ssh says so.
    let out = w
        .bastion
        .ssh("root@web01", &bob)
        .flag("-R")
        .flag(format!("127.0.0.1:{}:127.0.0.1:22", free_port()))
        .option("ExitOnForwardFailure=yes")
        .args(["true"])
        .run();
    assert_eq!(out.status, 255, "{out}");
    assert!(
        out.stderr.contains("remote port forwarding failed"),
        "{out}"
    );
    let audit = w
        .bastion
        .wait_for_audit("tcpip-forward", Duration::from_secs(5));
    assert!(audit.contains("lacks permit-port-forwarding"), "{audit}");
}

#[test]
fn agent_forwarding_reaches_the_target_only_when_allowed() {
    let (w, ca) = world("[forwarding]\nagent = true\n");
    let alice = make_alice(&ca, &w);
    let socket = w.scratch.file("agent.sock");
    let _agent = Daemon::spawn(
        "ssh-agent",
        Command::new(tool("ssh-agent"))
            .arg("-D")
            .arg("-a")
            .arg(&socket),
        &w.scratch.file("agent.log"),
    );
    wait_for(
        || socket.exists(),
        Duration::from_secs(5),
        "ssh-agent socket",
    );
    let loaded = jitssh_tests::keygen(w.scratch.path(), "in-agent");
    jitssh_tests::run_ok(
        Command::new(tool("ssh-add"))
            .env("SSH_AUTH_SOCK", &socket)
            .arg(&loaded.private),
    );
    let out = w
        .bastion
        .ssh("root@web01", &alice)
        .option(&format!("IdentityAgent={}", socket.display()))
        .option("ForwardAgent=yes")
        .args(["ssh-add", "-l"])
        .run();
    assert!(out.success(), "{out}");
    assert!(out.stdout_str().contains("in-agent"), "{out}");

    // Without the policy: refused, and the person is told.
    let (w2, ca2) = world("");
    let alice2 = make_alice(&ca2, &w2);
    let out = w2
        .bastion
        .ssh("root@web01", &alice2)
        .option(&format!("IdentityAgent={}", socket.display()))
        .option("ForwardAgent=yes")
        .args(["ssh-add", "-l"])
        .run();
    assert_ne!(out.status, 0, "{out}");
    assert!(
        out.stderr
            .contains("agent forwarding is not permitted by the bastion's policy"),
        "{out}"
    );
}

/// `ssh -X root@web01 echo session-goes-on` through the bastion as `who`.
fn with_x11(w: &World, who: &KeyPair) -> jitssh_tests::Output {
    let mut cmd = w
        .bastion
        .ssh("root@web01", who)
        .option("ForwardX11=yes")
        .option("ForwardX11Trusted=yes")
        .args(["echo", "session-goes-on"])
        .command();
    // ssh asks for X11 forwarding only when it has a display to forward.
    cmd.env("DISPLAY", "127.0.0.1:99");
    jitssh_tests::run(&mut cmd)
}

#[test]
fn x11_forwarding_is_refused_with_a_message_unless_policy_and_certificate_allow() {
    let (w, ca) = world("");
    let alice = make_alice(&ca, &w);
    let out = with_x11(&w, &alice);
    assert!(out.success(), "the session itself goes on: {out}");
    assert_eq!(out.stdout_str(), "session-goes-on\n", "{out}");
    assert!(
        out.stderr
            .contains("X11 forwarding is not permitted by the bastion's policy"),
        "{out}"
    );
    let audit = w
        .bastion
        .wait_for_audit("\"request\":\"x11\"", Duration::from_secs(5));
    assert!(audit.contains("session.denied"), "{audit}");

    // The policy allows X11, but this certificate lacks the extension.
    let (w, ca) = world("[forwarding]\nx11 = true\n");
    let carol = user(
        &ca,
        w.scratch.path(),
        "carol",
        &["root"],
        &["web*"],
        &["--extension", "permit-pty"],
    );
    let out = with_x11(&w, &carol);
    assert!(out.success(), "{out}");
    assert!(
        out.stderr.contains(
            "X11 forwarding is not permitted: your certificate lacks permit-X11-forwarding"
        ),
        "{out}"
    );
}
