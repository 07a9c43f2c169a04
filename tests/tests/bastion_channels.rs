//! `limits.max_channels` counts every channel a person has open, including the ones the
//! target refused (the bastion accepts those only to explain why on stderr).
//!
//! OpenSSH's client always uses a channel right after opening it, so the client here is russh:
//! it opens session channels and leaves them idle, as a hostile client would.

use std::time::{Duration, Instant};

use jitssh_tests::{Bastion, Scratch, russh_login, target, user};

/// The bastion's limit in this test.
const MAX_CHANNELS: usize = 4;

#[test]
fn channels_the_target_refused_count_towards_max_channels() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    // The target takes two sessions per connection; the bastion accepts more only to explain.
    let web01 = target(&ca, scratch.path(), "web01", |b| b.config("MaxSessions 2"));
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    let bastion = Bastion::start(
        &ca,
        &[("web01", format!("127.0.0.1:{}", web01.port()))],
        &format!("[limits]\nauth_rejection_time = \"0s\"\nmax_channels = {MAX_CHANNELS}\n"),
    );
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let handle = russh_login(bastion.port, "root@web01", &alice).await;
        let mut open = Vec::new();
        let mut refused = 0;
        for _ in 0..MAX_CHANNELS + 3 {
            match handle.channel_open_session().await {
                Ok(channel) => open.push(channel),
                Err(_) => refused += 1,
            }
        }
        assert_eq!(
            (open.len(), refused),
            (MAX_CHANNELS, 3),
            "exactly max_channels session channels accepted, the rest refused"
        );

        // Closing one (a channel the target refused) frees its place.
        let last = open.pop().expect("an open channel");
        last.close().await.expect("close a channel");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(channel) = handle.channel_open_session().await {
                open.push(channel);
                break;
            }
            assert!(
                Instant::now() < deadline,
                "a closed channel's place is freed"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(
            handle.channel_open_session().await.is_err(),
            "and the limit still holds"
        );
    });
}

/// Answers to a channel's requests come in the order the requests were sent, also when the
/// bastion refuses one at once while the target still owes the answer to an earlier one
/// (OpenSSH sends `x11-req` or `pty-req` and the agent request back to back).
#[test]
fn answers_keep_the_order_of_the_requests() {
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let web01 = target(&ca, scratch.path(), "web01", |b| b);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["web*"], &[]);
    // Agent forwarding is off by the bastion's policy: refused without asking the target.
    let bastion = Bastion::start(&ca, &[("web01", format!("127.0.0.1:{}", web01.port()))], "");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let handle = russh_login(bastion.port, "root@web01", &alice).await;
        for round in 0..10 {
            let mut channel = handle.channel_open_session().await.expect("open");
            channel
                .request_pty(true, "xterm", 80, 24, 0, 0, &[])
                .await
                .expect("pty-req");
            channel.agent_forward(true).await.expect("agent request");
            let mut answers = Vec::new();
            while answers.len() < 2 {
                match tokio::time::timeout(Duration::from_secs(10), channel.wait()).await {
                    Ok(Some(russh::ChannelMsg::Success)) => answers.push("success"),
                    Ok(Some(russh::ChannelMsg::Failure)) => answers.push("failure"),
                    Ok(Some(_)) => {}
                    other => panic!("round {round}: answers {answers:?}, then {other:?}"),
                }
            }
            assert_eq!(
                answers,
                ["success", "failure"],
                "round {round}: the terminal granted, then the agent refused"
            );
            let _ = channel.close().await;
        }
    });
}
