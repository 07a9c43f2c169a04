//! The exit status reaches a client that closes its channel as soon as both sides sent EOF,
//! as PuTTY's plink does (`bastion_session::putty_plink_with_a_certificate_works` used to see
//! the wrong status now and then).
//!
//! sshd sends a command's EOF when its output ends and the exit status when it has reaped
//! it, usually in that order. A client like plink closes the channel on that EOF; if the
//! bastion passed the EOF on before the exit status, the status could arrive after the close
//! and be lost. The client here is russh, watching the order plink depends on, many times
//! in one test.

use std::time::Duration;

use jitssh_tests::{Bastion, Scratch, russh_login, target, user};
use russh::ChannelMsg;

/// How many commands the test runs.
const ROUNDS: usize = 30;

#[test]
fn exit_status_comes_before_eof_so_a_client_closing_on_eof_still_gets_it() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b.config("MaxSessions 64"));
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let handle = russh_login(bastion.port, "root@web01", &alice).await;

        for round in 0..ROUNDS {
            let mut channel = handle.channel_open_session().await.expect("open");
            channel.exec(true, "exit 7").await.expect("exec");
            channel.eof().await.expect("send EOF");
            let mut seen = Vec::new();
            let mut status = None;
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(10), channel.wait())
                    .await
                    .unwrap_or_else(|_| panic!("round {round}: no close; saw {seen:?}"));
                match msg {
                    Some(ChannelMsg::ExitStatus { exit_status }) => {
                        seen.push("exit-status");
                        status = Some(exit_status);
                    }
                    // plink closes the channel here, so whatever comes after EOF is lost to it.
                    Some(ChannelMsg::Eof) => seen.push("eof"),
                    Some(ChannelMsg::Close) | None => break,
                    Some(ChannelMsg::Success) => seen.push("success"),
                    Some(_) => {}
                }
            }
            assert_eq!(
                (status, seen.as_slice()),
                (Some(7), &["success", "exit-status", "eof"][..]),
                "round {round}: the exit status comes before EOF"
            );
        }
    });
}
