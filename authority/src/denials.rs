//! Aggregated audit records for refusals anyone can cause before authenticating (failed host
//! joins, refused API logins): one full record when a source's window opens, so a single
//! refusal is on record at once, then one summary with the counts when the window closes,
//! instead of one fsynced record per attempt. Memory is bounded by [`MAX_SOURCES`].

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jitssh_core::audit::AuditEvent;

/// One summary per source per window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Sources tracked at once; when full, every window is closed (summarised) early.
pub const MAX_SOURCES: usize = 10_000;
/// Key fingerprints named in one summary at most.
const MAX_KEYS: usize = 8;

/// What one source did within a window after its first, fully recorded, refusal.
#[derive(Debug)]
struct Window {
    opened: Instant,
    refused: u64,
    limited: u64,
    keys: BTreeSet<String>,
}

/// The open windows of one kind of refusal.
#[derive(Debug)]
pub struct Denials {
    kind: &'static str,
    windows: Mutex<HashMap<(IpAddr, Option<String>), Window>>,
}

impl Denials {
    /// Aggregates refusals audited as `kind`.
    pub fn new(kind: &'static str) -> Denials {
        Denials {
            kind,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Notes a refusal of `peer` with key fingerprint `key` (`limited`: refused by a rate
    /// limit, not on its merits). Returns the records due now: `first` (its kind is set to
    /// this one's) when this opens the source's window, and the summaries of windows closed
    /// early because too many sources are tracked. With `per_key`, the key has a window of
    /// its own at that source (for keys the CA knows, e.g. revoked ones: finitely many, and
    /// each worth a full record).
    pub fn note(
        &self,
        peer: IpAddr,
        key: &str,
        limited: bool,
        per_key: bool,
        now: Instant,
        first: impl FnOnce() -> AuditEvent,
    ) -> Vec<AuditEvent> {
        let mut windows = self.lock();
        let source = (peer, per_key.then(|| key.to_string()));
        if let Some(window) = windows.get_mut(&source) {
            window.refused += u64::from(!limited);
            window.limited += u64::from(limited);
            if window.keys.len() < MAX_KEYS {
                window.keys.insert(key.to_string());
            }
            return Vec::new();
        }
        let mut due = Vec::new();
        if windows.len() >= MAX_SOURCES {
            due.extend(self.close(&mut windows, |_| true, now));
        }
        windows.insert(
            source,
            Window {
                opened: now,
                refused: 0,
                limited: 0,
                keys: BTreeSet::new(),
            },
        );
        let mut event = first()
            .with("peer", peer.to_string())
            .with("key", key)
            .with("rate_limited", limited);
        event.kind = self.kind.to_string();
        due.push(event);
        due
    }

    /// Summaries of the windows that have ended (every window with `all`, at shutdown).
    pub fn flush(&self, now: Instant, all: bool) -> Vec<AuditEvent> {
        let mut windows = self.lock();
        self.close(
            &mut windows,
            |w| all || now.saturating_duration_since(w.opened) >= WINDOW,
            now,
        )
    }

    fn close(
        &self,
        windows: &mut HashMap<(IpAddr, Option<String>), Window>,
        done: impl Fn(&Window) -> bool,
        now: Instant,
    ) -> Vec<AuditEvent> {
        let ended: Vec<(IpAddr, Option<String>)> = windows
            .iter()
            .filter(|(_, w)| done(w))
            .map(|(source, _)| source.clone())
            .collect();
        let mut due = Vec::new();
        for source in ended {
            let Some(window) = windows.remove(&source) else {
                continue;
            };
            if window.refused + window.limited > 0 {
                due.push(
                    AuditEvent::new(self.kind)
                        .with("peer", source.0.to_string())
                        .with("summary", true)
                        .with("refused", window.refused)
                        .with("rate_limited", window.limited)
                        .with("keys", window.keys.into_iter().collect::<Vec<_>>())
                        .with(
                            "window_secs",
                            now.saturating_duration_since(window.opened).as_secs(),
                        ),
                );
            }
        }
        due
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(IpAddr, Option<String>), Window>> {
        self.windows.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_record_then_one_summary_per_window() {
        let denials = Denials::new("x.refused");
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        let mut written = 0;
        for i in 0..10 {
            written += denials
                .note(peer, "k", i >= 5, false, start, || AuditEvent::new("any"))
                .len();
        }
        assert_eq!(written, 1);
        assert_eq!(
            denials
                .note(peer, "known", false, true, start, || AuditEvent::new("any"))
                .len(),
            1,
            "a known key has its own window"
        );
        assert!(
            denials
                .flush(start + Duration::from_secs(1), false)
                .is_empty()
        );
        let summary = denials.flush(start + WINDOW, false);
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].kind, "x.refused");
        assert_eq!(summary[0].fields["refused"], 4);
        assert_eq!(summary[0].fields["rate_limited"], 5);
        assert_eq!(
            denials
                .note(peer, "k", false, false, start + WINDOW, || AuditEvent::new(
                    "any"
                ))
                .len(),
            1,
            "a new window opens with a full record"
        );
    }
}
