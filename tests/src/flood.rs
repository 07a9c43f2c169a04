//! A pre-authentication flood: many TCP connections from 127.0.0.1 that send only the SSH
//! client banner (or half a KEXINIT) and then stall, as an attacker holding connection slots
//! would.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Pause between two passes over the sockets while waiting.
const POLL: Duration = Duration::from_millis(20);

/// The state of one flooding socket, as the client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FloodState {
    /// Nothing from the server yet.
    Waiting,
    /// The server sent its banner and keeps the socket open.
    Held,
    /// The server closed the socket (EOF or reset).
    Closed,
}

/// `count` banner-only sockets to one server.
pub struct Flood {
    sockets: Vec<(TcpStream, FloodState)>,
}

impl Flood {
    /// Opens `count` connections to `127.0.0.1:port`, each sending only `SSH-2.0-flood\r\n`,
    /// every other one followed by the first bytes of a KEXINIT packet (announcing 1000 bytes,
    /// sending 6), so both the banner and the key exchange phase stall.
    pub fn open(port: u16, count: usize) -> Flood {
        const BANNER: &[u8] = b"SSH-2.0-flood\r\n";
        const HALF_KEXINIT: &[u8] = b"SSH-2.0-flood\r\n\x00\x00\x03\xe8\x0a\x14";
        let mut sockets = Vec::with_capacity(count);
        for i in 0..count {
            let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let _ = stream.write_all(if i % 2 == 0 { BANNER } else { HALF_KEXINIT });
            stream.set_nonblocking(true).expect("set non-blocking");
            sockets.push((stream, FloodState::Waiting));
        }
        assert!(!sockets.is_empty(), "no flood connection could be opened");
        Flood { sockets }
    }

    /// Reads what is there on every open socket and updates its state.
    fn poll(&mut self) {
        let mut buf = [0u8; 4096];
        for (stream, state) in &mut self.sockets {
            if *state == FloodState::Closed {
                continue;
            }
            loop {
                match stream.read(&mut buf) {
                    Ok(0) => *state = FloodState::Closed,
                    Ok(_) => {
                        *state = FloodState::Held;
                        continue;
                    }
                    Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                    Err(_) => *state = FloodState::Closed,
                }
                break;
            }
        }
    }

    /// How many sockets are in `state`.
    pub fn count(&self, state: FloodState) -> usize {
        self.sockets.iter().filter(|(_, s)| *s == state).count()
    }

    /// Waits until every socket was either answered by the server or closed, so the server
    /// has seen the whole flood; panics after `timeout`.
    pub fn settle(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.poll();
            if self.count(FloodState::Waiting) == 0 {
                return;
            }
            std::thread::sleep(POLL);
            assert!(
                Instant::now() < deadline,
                "{} flood sockets still unanswered after {timeout:?}",
                self.count(FloodState::Waiting)
            );
        }
    }

    /// Waits until the server has closed every socket; panics after `timeout`. Returns how
    /// long it took.
    pub fn wait_all_closed(&mut self, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            self.poll();
            let open = self.sockets.len() - self.count(FloodState::Closed);
            if open == 0 {
                return started.elapsed();
            }
            std::thread::sleep(POLL);
            assert!(
                started.elapsed() < timeout,
                "{open} flood sockets still open after {timeout:?}"
            );
        }
    }
}
