//! Session ends the session index could not take when the session ended (its database
//! restarting or unreachable), written again until it takes them.
//!
//! Why: the recording is sealed and `session.end` is in the audit log either way, but the
//! index row is what `sessions list` and the web console show. Left without its end, a
//! session that ended cleanly would show as `unfinished` (a crash's mark) for good. So an end
//! that cannot be written is queued, and a thread of its own retries the oldest first, with
//! a back-off from one second to thirty, until the index is back; the session itself never
//! waits for it. The queue is bounded: past [`MAX_PENDING`] ends the newest is dropped, with
//! an error naming it (its recording and audit record still tell its end).
//!
//! Ends still queued when the bastion stops (or a stop between sealing and writing the end)
//! are not lost for good: at the next start [`complete_sealed`] completes every row without
//! an end whose recording is in this bastion's recordings directory and sealed by its key,
//! from the seal, which says everything the row lacks.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use jitssh_core::ssh_key::PublicKey;
use jitssh_core::store::{SessionEnd, SessionFilter, SessionStore};

/// Session ends kept for a retry at most.
pub const MAX_PENDING: usize = 10_000;
/// First wait after a failed retry; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between retries.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Writes session ends to the index, now or, after a failure, later. Dropping it stops the
/// retrying thread (ends still queued are logged as lost).
pub struct IndexEnds {
    shared: Arc<Shared>,
}

struct Shared {
    index: Arc<dyn SessionStore>,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Default)]
struct State {
    pending: VecDeque<(String, SessionEnd)>,
    stopped: bool,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for IndexEnds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexEnds")
            .field("pending", &self.pending())
            .finish()
    }
}

impl IndexEnds {
    /// Ends written to `index`; starts the retrying thread.
    pub fn start(index: Arc<dyn SessionStore>) -> std::io::Result<IndexEnds> {
        let shared = Arc::new(Shared {
            index,
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
        });
        let retrying = shared.clone();
        std::thread::Builder::new()
            .name("index-ends".into())
            .spawn(move || retry(&retrying))?;
        Ok(IndexEnds { shared })
    }

    /// Completes session `id`'s index row with `end`: now if the index takes it (and nothing
    /// is queued before it), else queued for the retrying thread.
    pub fn write(&self, id: &str, end: SessionEnd) {
        let mut state = self.shared.state();
        if state.pending.is_empty() {
            drop(state);
            match self.shared.index.end_session(id, &end) {
                Ok(_) => return,
                Err(err) => tracing::error!(
                    session = %id,
                    "cannot complete the session index: {err}; retrying until it is back"
                ),
            }
            state = self.shared.state();
        }
        if state.pending.len() >= MAX_PENDING {
            tracing::error!(
                session = %id,
                "session index end lost: {MAX_PENDING} ends already wait for the index \
                 (the recording and the audit log keep it)"
            );
            return;
        }
        state.pending.push_back((id.to_owned(), end));
        self.shared.wake.notify_one();
    }

    /// Ends waiting for the index.
    pub fn pending(&self) -> usize {
        self.shared.state().pending.len()
    }
}

impl Drop for IndexEnds {
    fn drop(&mut self) {
        let mut state = self.shared.state();
        state.stopped = true;
        if !state.pending.is_empty() {
            tracing::error!(
                "{} session ends were not written to the session index (the recordings and \
                 the audit log keep them)",
                state.pending.len()
            );
        }
        self.shared.wake.notify_one();
    }
}

/// The retrying thread: the oldest end first, back-off while the index refuses.
fn retry(shared: &Shared) {
    let mut backoff = FIRST_BACKOFF;
    let mut written_since_failure = 0usize;
    let mut state = shared.state();
    loop {
        if state.stopped {
            return;
        }
        let Some((id, end)) = state.pending.front().cloned() else {
            state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            continue;
        };
        drop(state);
        match shared.index.end_session(&id, &end) {
            Ok(_) => {
                backoff = FIRST_BACKOFF;
                written_since_failure += 1;
                state = shared.state();
                state.pending.pop_front();
                if state.pending.is_empty() {
                    tracing::info!(
                        "session index reachable again: {written_since_failure} session ends written"
                    );
                    written_since_failure = 0;
                }
            }
            Err(err) => {
                tracing::debug!(session = %id, "session index still refuses the end: {err}");
                state = shared.state();
                if state.stopped {
                    return;
                }
                state = shared
                    .wake
                    .wait_timeout(state, backoff)
                    .map(|(s, _)| s)
                    .unwrap_or_else(|p| p.into_inner().0);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// At start, before any session: completes the index row of every session without an end
/// whose recording is under `root` and sealed by `key`, from its seal. Returns how many.
/// Rows of sessions running elsewhere (other bastions on a shared index) are left alone:
/// their recordings are not here, or not sealed.
pub fn complete_sealed(index: &dyn SessionStore, root: &Path, key: &PublicKey) -> usize {
    let filter = SessionFilter {
        active: Some(true),
        ..SessionFilter::default()
    };
    let rows = match index.list_sessions(&filter) {
        Ok(rows) => rows,
        Err(err) => {
            tracing::warn!("cannot look for sessions ended but not indexed: {err}");
            return 0;
        }
    };
    let mut completed = 0;
    for row in rows {
        let dir = Path::new(&row.recording);
        if !dir.starts_with(root) || !dir.is_dir() {
            continue;
        }
        let Ok(Some(seal)) = jitssh_recording::read_seal(dir, key) else {
            continue;
        };
        if seal.session.id != row.id {
            continue;
        }
        let end = SessionEnd {
            ended_at: seal.ended_at,
            bytes_in: seal.bytes_in,
            bytes_out: seal.bytes_out,
            exit_status: seal.exit_status,
            end_reason: seal.end_reason,
        };
        match index.end_session(&row.id, &end) {
            Ok(_) => completed += 1,
            Err(err) => {
                tracing::warn!(session = %row.id, "cannot complete the session index: {err}");
                break;
            }
        }
    }
    if completed > 0 {
        tracing::info!("{completed} sessions ended but not indexed completed from their seals");
    }
    completed
}
