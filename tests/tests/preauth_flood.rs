//! A flood of connections that never authenticate (they send only the SSH banner) must not
//! lock people out: the bastion and the CA API keep a budget for unauthenticated connections
//! (overall and per source address), and close the socket of any connection that has not
//! authenticated by the deadline, whatever phase it is in.
//!
//! The flood comes from 127.0.0.1; the real `ssh` logs in from 127.0.0.2 (`BindAddress`), a
//! different source as a real person would be.

use std::time::{Duration, Instant};

use jitssh_tests::{Bastion, CaServer, Flood, FloodState, Scratch, keygen, target, user};

/// Flooding connections opened: well above `max_connections`.
const FLOOD: usize = 200;
/// Unauthenticated connections one address may hold (the config below).
const PER_SOURCE: usize = 8;
/// The limits under test: few slots, a short deadline, a small per-source budget.
const LIMITS: &str =
    "max_connections = 64\nmax_startups = \"10:30:40\"\nmax_startups_per_source = 8\n";
/// A login must get through the flood this fast.
const LOGIN_BUDGET: Duration = Duration::from_secs(2);

/// Floods `port`, then checks that `login` (a real ssh) succeeds within [`LOGIN_BUDGET`] and
/// that the server closes every flooding socket after the `deadline` it was configured with.
fn flood_then_login(port: u16, deadline: Duration, login: impl FnOnce() -> jitssh_tests::Output) {
    let opened = Instant::now();
    let mut flood = Flood::open(port, FLOOD);
    flood.settle(Duration::from_secs(20));
    assert_eq!(
        flood.count(FloodState::Held),
        PER_SOURCE,
        "the server holds exactly the per-source budget of the flood, closing the rest"
    );

    let started = Instant::now();
    let out = login();
    let took = started.elapsed();
    eprintln!("login during the flood took {took:?}");
    assert_eq!(out.status, 0, "login during the flood: {out}");
    assert!(
        took < LOGIN_BUDGET,
        "login during the flood took {took:?} (budget {LOGIN_BUDGET:?})"
    );
    assert!(
        opened.elapsed() < deadline,
        "the login happened while the flood still held its sockets"
    );

    flood.wait_all_closed(deadline + Duration::from_secs(10));
    // Every held socket was accepted after `opened`, so the deadline cannot have passed
    // before `opened + deadline`.
    let closed_after = opened.elapsed();
    assert!(
        closed_after >= deadline - Duration::from_millis(100),
        "held sockets were closed at the deadline, not before ({closed_after:?})"
    );
}

#[test]
fn a_banner_only_flood_neither_locks_out_the_bastion_nor_holds_its_sockets() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        &format!("[limits]\nauth_rejection_time = \"0s\"\nauth_timeout = \"4s\"\n{LIMITS}"),
    );
    flood_then_login(bastion.port, Duration::from_secs(4), || {
        bastion
            .ssh("root@web01", &alice)
            .option("BindAddress=127.0.0.2")
            .args(["echo", "hi"])
            .run()
    });
    assert!(
        bastion.log().contains("not authenticated in time"),
        "{}",
        bastion.log()
    );
}

#[test]
fn a_banner_only_flood_neither_locks_out_the_ca_api_nor_holds_its_sockets() {
    let scratch = Scratch::new();
    let alice = keygen(scratch.path(), "alice");
    let policy = format!(
        "[[roles]]\nname = \"dev\"\nlogins = [\"{{user}}\"]\nhosts = [\"web*\"]\nmax_ttl = \"1h\"\n\n\
         [[users]]\nname = \"alice\"\nkeys = [\"{}\"]\nroles = [\"dev\"]\n",
        alice.public_line()
    );
    let server = CaServer::start(
        scratch.path(),
        &policy,
        &format!("[limits]\nhandshake_timeout = \"4s\"\n{LIMITS}"),
    );
    flood_then_login(server.port, Duration::from_secs(4), || {
        server
            .ssh("alice", &alice)
            .option("BindAddress=127.0.0.2")
            .args(["whoami"])
            .run()
    });
}
