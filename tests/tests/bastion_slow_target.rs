//! A target slow to answer one channel request delays only that channel: the person's other
//! channels keep flowing meanwhile (architecture issue, "a slow target stalls a person's whole
//! connection").
//!
//! The target here is an SSH server that answers `exec` ten seconds late while it echoes on
//! its other channels. OpenSSH's sshd cannot play that part: it serves a connection in one
//! process that answers each request before it reads the next packet, so anything that slows
//! its answer (a stopped monitor during `pty-req`, a slow disk) freezes all of that
//! connection's channels at the target itself, whatever the bastion does. Servers that answer
//! each channel on its own (Go's x/crypto/ssh, russh, appliances) do answer late while the
//! other channels flow; the bastion must not turn that into a freeze of the person's whole
//! connection. A delaying TCP relay would not do either: it would delay every channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jitssh_tests::{Bastion, Scratch, keygen, russh_login, user};
use russh::server::{self, Auth, ChannelOpenHandle, Msg, Session};
use russh::{Channel, ChannelId, ChannelMsg, client};

/// How late the target answers `exec slow` (and a remote forward of port 0).
const EXEC_DELAY: Duration = Duration::from_secs(10);
/// The port the target says it bound for a remote forward of port 0.
const LATE_PORT: u32 = 40_123;
/// The longest echo round trip accepted on the other channel meanwhile.
const MAX_ECHO: Duration = Duration::from_millis(100);

/// A target that echoes what each session channel receives and answers `exec slow` late;
/// with `slow_open`, it also answers the opening of a connection's second session channel
/// late. A remote forward of port 0 is answered late too (with [`LATE_PORT`]), any other
/// port at once (it listens nowhere: only the answers matter here).
struct SlowTarget {
    slow_open: bool,
    opened: usize,
}

impl server::Handler for SlowTarget {
    type Error = russh::Error;

    async fn auth_openssh_certificate(
        &mut self,
        _user: &str,
        _certificate: &russh::keys::Certificate,
    ) -> Result<Auth, Self::Error> {
        Ok(Auth::Accept)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.opened += 1;
        let late = self.slow_open && self.opened == 2;
        tokio::spawn(async move {
            if late {
                tokio::time::sleep(EXEC_DELAY).await;
            }
            reply.accept().await;
            let (mut read, write) = channel.split();
            while let Some(msg) = read.wait().await {
                if let ChannelMsg::Data { data } = msg
                    && write.data_bytes(data).await.is_err()
                {
                    return;
                }
            }
        });
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        session.channel_success(channel)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        command: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if command != b"slow" {
            return session.channel_success(channel);
        }
        let handle = session.handle();
        tokio::spawn(async move {
            tokio::time::sleep(EXEC_DELAY).await;
            let _ = handle.channel_success(channel).await;
        });
        Ok(())
    }

    async fn tcpip_forward(
        &mut self,
        _address: &str,
        port: &mut u32,
        session: &mut Session,
    ) -> Result<bool, Self::Error> {
        if *port != 0 {
            return Ok(true);
        }
        session.defer_global_reply();
        let handle = session.handle();
        tokio::spawn(async move {
            tokio::time::sleep(EXEC_DELAY).await;
            let _ = handle.reply_global_request(true, Some(LATE_PORT)).await;
        });
        Ok(false)
    }
}

/// Waits for the next message on `channel` that is not window bookkeeping.
async fn next(channel: &mut Channel<client::Msg>, within: Duration) -> Option<ChannelMsg> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, channel.wait()).await {
            Ok(Some(ChannelMsg::WindowAdjusted { .. })) => continue,
            Ok(msg) => return msg,
            Err(_) => return None,
        }
    }
}

/// What waits for the target while the person types into a shell.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Waiting {
    /// A second channel's `exec` answer.
    Exec,
    /// The opening of a second channel.
    Open,
    /// A remote forward (`tcpip-forward`, a global request), followed by a second one that
    /// the target answers at once: its answer must not overtake the first one's.
    Forward,
}

#[test]
fn a_slow_exec_answer_delays_only_its_own_channel() {
    slow_second_channel(Waiting::Exec);
}

#[test]
fn a_slow_channel_open_delays_only_that_channel() {
    slow_second_channel(Waiting::Open);
}

#[test]
fn a_slow_remote_forward_answer_delays_only_the_forwards() {
    slow_second_channel(Waiting::Forward);
}

/// The person types into a shell while something else waits for the target: a second
/// channel's exec answer, the target opening it at all, or a remote forward.
fn slow_second_channel(waiting: Waiting) {
    let slow_open = waiting == Waiting::Open;
    let scratch = Scratch::new();
    let ca = Bastion::ca(scratch.path(), "");
    let host_key = keygen(scratch.path(), "slow_host_key");
    ca.sign(&host_key, "host", "slow", &["--ttl", "1h"]);
    let alice = user(&ca, scratch.path(), "alice", &["root"], &["slow"], &[]);

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("listen");
    let target_port = listener.local_addr().expect("address").port();
    let config = Arc::new(server::Config {
        keys: vec![russh::keys::load_secret_key(&host_key.private, None).expect("host key")],
        certificates: vec![
            russh::keys::load_openssh_certificate(host_key.cert_path()).expect("host cert"),
        ],
        ..Default::default()
    });
    runtime.spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let config = config.clone();
            tokio::spawn(async move {
                if let Ok(running) = server::run_stream(
                    config,
                    socket,
                    SlowTarget {
                        slow_open,
                        opened: 0,
                    },
                )
                .await
                {
                    let _ = running.await;
                }
            });
        }
    });

    let bastion = Bastion::start(
        &ca,
        &[("slow", format!("127.0.0.1:{target_port}"))],
        "[forwarding]\nport = true\n",
    );
    runtime.block_on(async {
        let handle = russh_login(bastion.port, "root@slow", &alice).await;

        // An open shell the person types into.
        let mut shell = handle.channel_open_session().await.expect("open shell");
        shell.request_shell(true).await.expect("request shell");
        assert!(
            matches!(
                next(&mut shell, Duration::from_secs(10)).await,
                Some(ChannelMsg::Success)
            ),
            "the shell starts"
        );

        // A second channel the target opens late, or whose command it answers late; or two
        // remote forwards, the first answered late.
        let asked = Instant::now();
        let opening = tokio::spawn(async move {
            if waiting == Waiting::Forward {
                let (slow, fast) = tokio::join!(
                    handle.tcpip_forward("127.0.0.1", 0),
                    handle.tcpip_forward("127.0.0.1", 7777)
                );
                assert_eq!(
                    (slow.ok(), fast.ok()),
                    (Some(LATE_PORT), Some(0)),
                    "each forward gets its own answer, in order"
                );
                return (handle, Some(ChannelMsg::Success));
            }
            let mut slow = handle.channel_open_session().await.expect("open slow");
            let command = if slow_open { "fast" } else { "slow" };
            slow.exec(true, command).await.expect("request exec");
            let answer = next(&mut slow, EXEC_DELAY * 2).await;
            (handle, answer)
        });

        // Meanwhile the shell keeps echoing.
        let mut worst = Duration::ZERO;
        for i in 0..20 {
            let line = format!("ping {i}\n");
            let sent = Instant::now();
            shell.data(line.as_bytes()).await.expect("type");
            let mut echoed = Vec::new();
            while echoed.len() < line.len() {
                match next(&mut shell, EXEC_DELAY * 2).await {
                    Some(ChannelMsg::Data { data }) => echoed.extend_from_slice(&data),
                    other => panic!("echo of {line:?}: got {other:?}"),
                }
            }
            assert_eq!(echoed, line.as_bytes(), "the echo");
            worst = worst.max(sent.elapsed());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let measured_within = asked.elapsed();
        eprintln!("worst echo round trip while the second channel waited: {worst:?}");
        assert!(
            worst < MAX_ECHO,
            "the shell echoed within {MAX_ECHO:?} while another channel waited: worst {worst:?}"
        );
        assert!(
            measured_within < EXEC_DELAY,
            "the echoes were measured while the exec answer was pending ({measured_within:?})"
        );

        // The slow channel gets its answer when the target gives it.
        let (_handle, answer) = opening.await.expect("second channel");
        assert!(
            matches!(answer, Some(ChannelMsg::Success)),
            "the late answer reaches the person: {answer:?}"
        );
        assert!(
            asked.elapsed() >= EXEC_DELAY,
            "and it was the target's late answer"
        );
    });
}
