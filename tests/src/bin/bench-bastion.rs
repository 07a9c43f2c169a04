//! Side-by-side figures for the bastion on loopback: throughput of a 1 GiB download (exec
//! `head -c 1G /dev/zero`) and of an scp download, connect+exec+close time, for
//!
//! * (a) direct `ssh` to the target,
//! * (b) OpenSSH `ProxyJump` through a second sshd,
//! * (c) `ssh-bastion` (embedded CA, recording on),
//!
//! the pty path (`ssh -tt HOST cat big.txt`, 34 MB of text, every byte recorded), the CPU
//! seconds the bastion process spends per GiB relayed, and the bastion's memory per idle
//! session with 200 sessions open (with the jump host's for comparison; `--sessions 0` skips
//! it). Not a test: it prints figures.
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p jitssh-tests --bin bench-bastion [-- --sessions 200 --runs 20]
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use jitssh_tests::{Bastion, Scratch, Sshd, run_ok, run_with, target, tool, user};

const GIB: u64 = 1 << 30;

/// A throughput case: its title, the bytes it moves, and how to run it through a route.
type Case<'a> = (&'a str, u64, &'a dyn Fn(&str));

struct Setup {
    scratch: Scratch,
    bastion: Bastion,
    /// The same bastion configuration with recording unavailable (`on_failure = "continue"`):
    /// the proxy alone, to show what recording costs.
    _unrecorded: Bastion,
    web01: Sshd,
    jump: Sshd,
    ssh_config: PathBuf,
    big_file: PathBuf,
    /// 34 MB of text lines, for the pty path.
    text_file: PathBuf,
    /// Agents holding two plain keys and a certificate, as people's clients are set up: one
    /// with alice's (the bastion routes), one with the break-glass one (direct routes).
    _agents: [jitssh_tests::Agent; 2],
}

fn main() {
    let mut sessions = 200usize;
    let mut runs = 20usize;
    // Comma-separated filters: which throughput cases (`exec`, `scp`, `pty`) and which routes
    // (the host names below) to run; everything when absent. For profiling one path at a time.
    let mut only_cases: Option<String> = None;
    let mut only_routes: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let number = value.as_deref().and_then(|v| v.parse().ok());
        match (arg.as_str(), number, value) {
            ("--sessions", Some(n), _) => sessions = n,
            ("--runs", Some(n), _) => runs = n,
            ("--cases", _, Some(v)) => only_cases = Some(v),
            ("--routes", _, Some(v)) => only_routes = Some(v),
            _ => {
                eprintln!(
                    "usage: bench-bastion [--sessions N] [--runs N] [--cases exec,scp,pty] [--routes direct,jumped,bastion,bastion-j,bastion-chacha,bastion-j-chacha,unrecorded]"
                );
                std::process::exit(2);
            }
        }
    }
    let wanted = |filter: &Option<String>, name: &str| {
        filter
            .as_deref()
            .is_none_or(|f| f.split(',').any(|w| w == name))
    };
    // `ssh -J` leaves its `ssh -W` child to be reparented rather than waiting for it: as the
    // subreaper, this process inherits and reaps it, so its CPU time is counted.
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER only sets a flag on this process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let setup = setup();
    let routes = [
        ("direct ssh", "direct"),
        ("OpenSSH ProxyJump", "jumped"),
        ("ssh-bastion (recording on)", "bastion"),
        ("ssh -J through ssh-bastion (recording on)", "bastion-j"),
        (
            "ssh-bastion (recording on), client insists on chacha20-poly1305",
            "bastion-chacha",
        ),
        (
            "ssh -J through ssh-bastion, client insists on chacha20-poly1305",
            "bastion-j-chacha",
        ),
        (
            "ssh-bastion, recording unavailable (proxy alone, for comparison)",
            "unrecorded",
        ),
    ];

    let bastion_pid = setup.bastion.daemon.pid();
    let unrecorded_pid = setup._unrecorded.daemon.pid();
    let pid_of = |host: &str| match host {
        "bastion" | "bastion-j" | "bastion-chacha" | "bastion-j-chacha" => Some(bastion_pid),
        "unrecorded" => Some(unrecorded_pid),
        _ => None,
    };
    let text_bytes = fs::metadata(&setup.text_file).map(|m| m.len()).unwrap_or(0);
    let text = setup.text_file.display().to_string();
    let cases: [(&str, Case); 3] = [
        (
            "exec",
            ("1 GiB download, `head -c 1G /dev/zero`", GIB, &|host| {
                ssh_ok(&setup, host, &["head", "-c", "1G", "/dev/zero"])
            }),
        ),
        (
            "scp",
            ("scp download of a 1 GiB file", GIB, &|host| {
                scp_ok(&setup, host)
            }),
        ),
        (
            "pty",
            (
                "pty path, `ssh -tt HOST cat big.txt` (34 MB of text)",
                text_bytes,
                &|host| ssh_tty_ok(&setup, host, &["cat", &text]),
            ),
        ),
    ];
    let routes: Vec<_> = routes
        .into_iter()
        .filter(|(_, host)| wanted(&only_routes, host))
        .collect();
    for (case, (title, bytes, run)) in cases {
        if !wanted(&only_cases, case) {
            continue;
        }
        println!(
            "## Throughput: {title} (MiB/s, best of 3; CPU s/GiB of the bastion, of the clients (ssh, scp, ssh -W) and of the sshds, and their sum)\n"
        );
        println!(
            "| route | MiB/s | × direct | bastion CPU s/GiB | clients | sshds | all |\n|---|---|---|---|---|---|---|"
        );
        let mut direct = 0.0;
        for &(name, host) in &routes {
            let mut best = 0.0f64;
            // The run with the least total CPU per GiB, as (bastion, clients, sshds).
            let mut least: Option<RouteCpu> = None;
            for _ in 0..3 {
                let before = RouteCpu::now(&setup, pid_of(host));
                let rate = mib_per_s(bytes, || run(host));
                let used = RouteCpu::now(&setup, pid_of(host))
                    .minus(&before)
                    .scaled(GIB as f64 / bytes as f64);
                if least.as_ref().is_none_or(|l| used.sum() < l.sum()) {
                    least = Some(used);
                }
                best = best.max(rate);
            }
            if host == "direct" {
                direct = best;
            }
            let least = least.unwrap_or_default();
            let bastion = match pid_of(host) {
                Some(_) => format!("{:.2}", least.bastion),
                None => "–".to_string(),
            };
            println!(
                "| {name} | {best:.0} | {:.2} | {bastion} | {:.2} | {:.2} | {:.2} |",
                best / direct,
                least.clients,
                least.sshds,
                least.sum()
            );
        }
        println!();
    }

    if runs == 0 {
        // Throughput only (`--runs 0`).
        return;
    }
    println!("\n## Connect + exec `true` + close ({runs} runs, ms)\n");
    println!("| route | median | mean | min |\n|---|---|---|---|");
    for &(name, host) in &routes {
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                ssh_ok(&setup, host, &["true"]);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "| {name} | {:.1} | {mean:.1} | {:.1} |",
            times[times.len() / 2],
            times[0]
        );
    }

    let agent_routes = [
        ("direct ssh", "agent-direct"),
        ("OpenSSH ProxyJump", "agent-jumped"),
        ("ssh -J through ssh-bastion", "agent-bastion-j"),
        ("ssh-bastion, LOGIN@TARGET", "agent-bastion"),
    ];
    println!(
        "\n## Connect + exec `true` + close, client as people have it: an agent with two plain keys and the certificate, no IdentitiesOnly ({runs} runs, ms)\n"
    );
    println!("| route | median | × direct | min |\n|---|---|---|---|");
    let mut direct_median = 0.0;
    for (name, host) in agent_routes {
        let mut times: Vec<f64> = (0..runs)
            .map(|_| {
                let started = Instant::now();
                ssh_ok(&setup, host, &["true"]);
                started.elapsed().as_secs_f64() * 1000.0
            })
            .collect();
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        if host == "agent-direct" {
            direct_median = median;
        }
        println!(
            "| {name} | {median:.1} | {:.2} | {:.1} |",
            median / direct_median,
            times[0]
        );
    }

    if sessions == 0 {
        return;
    }
    println!("\n## Memory per idle session, {sessions} sessions open\n");
    println!(
        "| route | process RSS before | with {sessions} sessions | per session |\n|---|---|---|---|"
    );
    let (before, during) = idle_sessions(&setup, "bastion", sessions, || rss_kib(bastion_pid));
    println!(
        "| ssh-bastion (one process; includes its target connections) | {} MiB | {} MiB | {:.0} KiB |",
        before / 1024,
        during / 1024,
        (during.saturating_sub(before)) as f64 / sessions as f64
    );
    let jump_pid = setup.jump.pid();
    let (before, during) = idle_sessions(&setup, "jumped", sessions, || tree_rss_kib(jump_pid));
    println!(
        "| OpenSSH jump sshd (all its processes) | {} MiB | {} MiB | {:.0} KiB |",
        before / 1024,
        during / 1024,
        (during.saturating_sub(before)) as f64 / sessions as f64
    );
    drop(setup.web01);
    drop(setup.scratch);
}

fn setup() -> Setup {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let many =
        |b: jitssh_tests::SshdBuilder| b.config("MaxStartups 1000").config("MaxSessions 1000");
    let web01 = target(&ca, scratch.path(), "web01", many);
    let jump = many(Sshd::builder().trusted_user_ca(ca.ca_pub_file("target"))).start();
    // Targets trust only the target CA: the direct and jump-host routes log in with a
    // break-glass certificate from it, the bastion routes with alice's own.
    let oncall = jitssh_tests::keygen(scratch.path(), "oncall");
    let oncall_cert = ca.sign(
        &oncall,
        "target",
        "root",
        &["--ttl", "1h", "--reason", "bench-bastion"],
    );
    let alice = user(
        &ca,
        scratch.path(),
        "alice",
        &["root"],
        &["web*"],
        &["--ttl", "12h"],
    );
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        "[limits]\nmax_connections = 2048\n",
    );
    // A second bastion on the same CA whose recordings cannot be written, under the
    // `continue` policy: the same proxy, unrecorded.
    let second = scratch.mkdir("unrecorded");
    std::os::unix::fs::symlink(ca.data_dir(), second.join("ca-data")).expect("symlink CA data");
    let second_ca = jitssh_tests::CaFixture::configure(&second, "", "");
    fs::create_dir_all(second.join("bastion-data")).expect("mkdir");
    fs::write(second.join("bastion-data/recordings"), "not a directory").expect("write");
    let unrecorded = Bastion::start(
        &second_ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        "[limits]\nmax_connections = 2048\n[recordings]\non_failure = \"continue\"\n",
    );
    let ssh_config = scratch.file("ssh_config");
    let identity = |private: &Path, cert: &Path| {
        format!(
            "  IdentityFile {}\n  CertificateFile {}\n  IdentitiesOnly yes\n  IdentityAgent none\n  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            private.display(),
            cert.display()
        )
    };
    let common = identity(&alice.private, &alice.cert_path());
    // People's clients: an agent with two plain keys before the certificate, no IdentitiesOnly.
    let agents = [alice.private.clone(), oncall.private.clone()].map(|with_cert| {
        let dir = scratch.mkdir(format!("agent-{}", agent_name(&with_cert)));
        let agent = jitssh_tests::Agent::start(&dir);
        for plain in ["plain1", "plain2"] {
            agent.add(&jitssh_tests::keygen(&dir, plain).private);
        }
        agent.add(&with_cert);
        agent
    });
    let agent_opts = |agent: &jitssh_tests::Agent| {
        format!(
            "  {}\n  BatchMode yes\n  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n",
            agent.ssh_option().replacen('=', " ", 1)
        )
    };
    let (people, oncall_agent) = (agent_opts(&agents[0]), agent_opts(&agents[1]));
    let direct = identity(&oncall.private, &oncall_cert);
    fs::write(
        &ssh_config,
        format!(
            "Host direct\n  HostName 127.0.0.1\n  Port {}\n  User root\n{direct}\n\
             Host jump\n  HostName 127.0.0.1\n  Port {}\n  User root\n{direct}\n\
             Host jumped\n  HostName 127.0.0.1\n  Port {}\n  User root\n  ProxyJump jump\n{direct}\n\
             Host bastion\n  HostName 127.0.0.1\n  Port {}\n  User root@web01\n{common}\n\
             Host unrecorded\n  HostName 127.0.0.1\n  Port {}\n  User root@web01\n{common}\n\
             Host outer\n  HostName 127.0.0.1\n  Port {}\n  User alice\n{common}\n\
             Host bastion-j\n  HostName 127.0.0.1\n  Port {}\n  User root\n  ProxyJump outer\n{common}\n\
             Host bastion-chacha\n  HostName 127.0.0.1\n  Port {}\n  User root@web01\n  Ciphers chacha20-poly1305@openssh.com\n{common}\n\
             Host outer-chacha\n  HostName 127.0.0.1\n  Port {}\n  User alice\n  Ciphers chacha20-poly1305@openssh.com\n{common}\n\
             Host bastion-j-chacha\n  HostName 127.0.0.1\n  Port {}\n  User root\n  ProxyJump outer-chacha\n  Ciphers chacha20-poly1305@openssh.com\n{common}\n\
             Host agent-direct\n  HostName 127.0.0.1\n  Port {}\n  User root\n{oncall_agent}\n\
             Host agent-jump\n  HostName 127.0.0.1\n  Port {}\n  User root\n{oncall_agent}\n\
             Host agent-jumped\n  HostName 127.0.0.1\n  Port {}\n  User root\n  ProxyJump agent-jump\n{oncall_agent}\n\
             Host agent-outer\n  HostName 127.0.0.1\n  Port {}\n  User alice\n{people}\n\
             Host agent-bastion-j\n  HostName 127.0.0.1\n  Port {}\n  User root\n  ProxyJump agent-outer\n{people}\n\
             Host agent-bastion\n  HostName 127.0.0.1\n  Port {}\n  User root@web01\n{people}\n",
            web01.port(),
            jump.port(),
            web01.port(),
            bastion.port,
            unrecorded.port,
            bastion.port,
            web01.port(),
            bastion.port,
            bastion.port,
            web01.port(),
            web01.port(),
            jump.port(),
            web01.port(),
            bastion.port,
            web01.port(),
            bastion.port,
        ),
    )
    .expect("write ssh_config");
    let big_file = scratch.file("big.bin");
    run_ok(Command::new("sh").arg("-c").arg(format!(
        "head -c 1G /dev/urandom > '{}'",
        big_file.display()
    )));
    let text_file = scratch.file("big.txt");
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!("seq 1 4500000 > '{}'", text_file.display())),
    );
    Setup {
        _agents: agents,
        text_file,
        scratch,
        bastion,
        _unrecorded: unrecorded,
        web01,
        jump,
        ssh_config,
        big_file,
    }
}

fn ssh(setup: &Setup, host: &str, remote: &[&str]) -> Command {
    let mut cmd = Command::new(tool("ssh"));
    cmd.arg("-F").arg(&setup.ssh_config).arg(host).args(remote);
    cmd
}

fn ssh_ok(setup: &Setup, host: &str, remote: &[&str]) {
    let mut cmd = ssh(setup, host, remote);
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .status()
        .expect("run ssh");
    assert!(status.success(), "ssh {host} {remote:?} failed: {status}");
}

fn agent_name(private: &Path) -> String {
    private
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// `ssh -tt`: a pty on the target, so the output takes the recorded terminal path.
fn ssh_tty_ok(setup: &Setup, host: &str, remote: &[&str]) {
    let mut cmd = Command::new(tool("ssh"));
    cmd.arg("-F")
        .arg(&setup.ssh_config)
        .arg("-tt")
        .arg(host)
        .args(remote);
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run ssh -tt");
    assert!(
        status.success(),
        "ssh -tt {host} {remote:?} failed: {status}"
    );
}

/// CPU seconds used by every process a route runs: the route's bastion, if any; the clients
/// this bench waited for (`ssh`, `scp` and the `ssh -W` a ProxyJump starts); both sshds'
/// connection processes (which their listeners have reaped). On this 2-core machine every
/// route is CPU-bound, so throughput follows the inverse of the sum.
#[derive(Default)]
struct RouteCpu {
    bastion: f64,
    clients: f64,
    sshds: f64,
}

impl RouteCpu {
    fn now(setup: &Setup, bastion: Option<u32>) -> RouteCpu {
        reap_orphans();
        let reaped = |pid: &str| stat_seconds(pid, 13, 14);
        RouteCpu {
            bastion: bastion.map(cpu_seconds).unwrap_or(0.0),
            clients: reaped("self"),
            sshds: reaped(&setup.web01.pid().to_string()) + reaped(&setup.jump.pid().to_string()),
        }
    }

    fn minus(&self, before: &RouteCpu) -> RouteCpu {
        RouteCpu {
            bastion: self.bastion - before.bastion,
            clients: self.clients - before.clients,
            sshds: self.sshds - before.sshds,
        }
    }

    fn scaled(&self, factor: f64) -> RouteCpu {
        RouteCpu {
            bastion: self.bastion * factor,
            clients: self.clients * factor,
            sshds: self.sshds * factor,
        }
    }

    fn sum(&self) -> f64 {
        self.bastion + self.clients + self.sshds
    }
}

/// Reaps the orphaned processes this subreaper has inherited and that have exited.
fn reap_orphans() {
    // A grace period for an `ssh -W` that got its SIGHUP as its parent exited.
    std::thread::sleep(Duration::from_millis(100));
    let mut status = 0;
    // SAFETY: waitpid with WNOHANG on any child; the daemons this bench holds are alive.
    while unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) } > 0 {}
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    stat_seconds(&pid.to_string(), 11, 12)
}

/// The sum of two tick counters of `/proc/PID/stat`, by index after the command name, in
/// seconds: 11 and 12 are the process's own user and system time, 13 and 14 those of the
/// children it has waited for.
fn stat_seconds(pid: &str, first: usize, second: usize) -> f64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at ") ".
    let after = stat.rsplit_once(") ").map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(first) + ticks(second)) / clock_ticks()
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

fn scp_ok(setup: &Setup, host: &str) {
    let out = run_with(
        Command::new(tool("scp"))
            .arg("-F")
            .arg(&setup.ssh_config)
            .arg(format!("{host}:{}", setup.big_file.display()))
            .arg("/dev/null"),
        None,
        Duration::from_secs(600),
    );
    assert!(out.success(), "scp via {host}: {out}");
}

fn mib_per_s(bytes: u64, f: impl FnOnce()) -> f64 {
    let started = Instant::now();
    f();
    bytes as f64 / (1024.0 * 1024.0) / started.elapsed().as_secs_f64()
}

/// Opens `count` idle sessions (`sleep`) via `host`, returns the measure before and once
/// all are up, then closes them.
fn idle_sessions(setup: &Setup, host: &str, count: usize, measure: impl Fn() -> u64) -> (u64, u64) {
    let before = measure();
    let marker = setup.scratch.mkdir(format!("idle-{host}"));
    let mut children: Vec<Child> = Vec::with_capacity(count);
    for i in 0..count {
        let flag = marker.join(i.to_string());
        let script = format!("touch '{}' && exec sleep 600", flag.display());
        let child = ssh(setup, host, &[&script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ssh");
        children.push(child);
        if i % 20 == 19 {
            wait_for_flags(&marker, i + 1);
        }
    }
    wait_for_flags(&marker, count);
    std::thread::sleep(Duration::from_secs(2));
    let during = measure();
    for mut child in children {
        let _ = child.kill();
        let _ = child.wait();
    }
    std::thread::sleep(Duration::from_secs(2));
    (before, during)
}

fn wait_for_flags(dir: &Path, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while fs::read_dir(dir).map(|d| d.count()).unwrap_or(0) < count {
        assert!(Instant::now() < deadline, "sessions did not all start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:").unwrap_or(0)
}

/// RSS of `root` and all its descendants.
fn tree_rss_kib(root: u32) -> u64 {
    let mut parents = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        if let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>()
            && let Some(ppid) = status_field(pid, "PPid:")
        {
            parents.push((pid, ppid as u32));
        }
    }
    let mut tree = vec![root];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        i += 1;
    }
    tree.iter().map(|pid| rss_kib(*pid)).sum()
}
