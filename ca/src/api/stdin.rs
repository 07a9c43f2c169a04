//! Standard input of an API command, collected with a bound.
//!
//! `cert` signs the key on stdin, or the authenticated key when stdin is empty. A client whose
//! stdin is a terminal never sends EOF, so "empty" also means "nothing arrived within a short
//! grace period"; once data starts arriving we wait for EOF (bounded) and use what came.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;

/// Most stdin bytes a command accepts (public keys and certificates are a few KB at most).
pub const MAX_STDIN: usize = 64 * 1024;

#[derive(Default)]
struct State {
    bytes: Vec<u8>,
    eof: bool,
    overflow: bool,
}

/// One channel's stdin.
#[derive(Default)]
pub struct Stdin {
    state: Mutex<State>,
    changed: Notify,
    done: std::sync::atomic::AtomicBool,
}

impl Stdin {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The command has finished; the channel's slot can be reused.
    pub fn finish(&self) {
        self.done.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Has the command finished?
    pub fn is_done(&self) -> bool {
        self.done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Appends data from the client; beyond [`MAX_STDIN`] it is dropped and flagged.
    pub fn push(&self, data: &[u8]) {
        {
            let mut state = self.state();
            if state.bytes.len() + data.len() > MAX_STDIN {
                state.overflow = true;
            } else {
                state.bytes.extend_from_slice(data);
            }
        }
        self.changed.notify_one();
    }

    /// The client sent EOF.
    pub fn eof(&self) {
        self.state().eof = true;
        self.changed.notify_one();
    }

    /// Waits for stdin: empty if nothing arrives within `grace`; otherwise everything until EOF
    /// or `limit`.
    pub async fn collect(&self, grace: Duration, limit: Duration) -> Result<Vec<u8>, String> {
        let started = tokio::time::Instant::now();
        loop {
            let waited = started.elapsed();
            {
                let state = self.state();
                if state.overflow {
                    return Err(format!("stdin is larger than {MAX_STDIN} bytes"));
                }
                let nothing_yet = state.bytes.is_empty();
                if state.eof || (nothing_yet && waited >= grace) || waited >= limit {
                    return Ok(state.bytes.clone());
                }
            }
            let deadline = if self.state().bytes.is_empty() {
                grace
            } else {
                limit
            };
            let remaining = deadline.saturating_sub(started.elapsed());
            let _ = tokio::time::timeout(
                remaining.max(Duration::from_millis(1)),
                self.changed.notified(),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn empty_after_grace_when_nothing_arrives() {
        let stdin = Stdin::default();
        let got = stdin
            .collect(Duration::from_millis(20), Duration::from_secs(5))
            .await;
        assert_eq!(got, Ok(vec![]));
    }

    #[tokio::test]
    async fn data_until_eof() {
        let stdin = std::sync::Arc::new(Stdin::default());
        let feeder = stdin.clone();
        tokio::spawn(async move {
            feeder.push(b"ssh-ed25519 ");
            tokio::time::sleep(Duration::from_millis(50)).await;
            feeder.push(b"AAAA\n");
            feeder.eof();
        });
        let got = stdin
            .collect(Duration::from_millis(500), Duration::from_secs(5))
            .await;
        assert_eq!(got, Ok(b"ssh-ed25519 AAAA\n".to_vec()));
    }

    #[tokio::test]
    async fn overflow_is_an_error() {
        let stdin = Stdin::default();
        stdin.push(&vec![b'a'; MAX_STDIN]);
        stdin.push(b"b");
        stdin.eof();
        let got = stdin
            .collect(Duration::from_millis(20), Duration::from_secs(1))
            .await;
        assert!(got.unwrap_err().contains("larger than"));
    }
}
