//! Failed host joins: a token bucket per source address and per key, and aggregated audit
//! records ([`crate::denials`]).
//!
//! As user `host` any SSH key may try join tokens. Each failure costs a token from the
//! bucket of its source address and of its key; with a bucket empty, further attempts are
//! refused at once ("too many failed joins, retry in Ns") without touching the store. Failures
//! are audited as `host.join_denied` in aggregate (one record per source per window, see
//! [`crate::denials`]). Memory is bounded: at most [`MAX_TRACKED`] buckets, full buckets are
//! forgotten first.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use jitssh_core::audit::AuditEvent;

use crate::denials::Denials;

/// Failed joins allowed in a burst, per source address and per key.
pub const BURST: f64 = 5.0;
/// How fast the allowance comes back: one failed join per this long.
pub const REFILL_EVERY: Duration = Duration::from_secs(12);
/// Buckets kept at most (each well under 200 bytes).
pub const MAX_TRACKED: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    fn refilled(self, now: Instant) -> Bucket {
        let earned =
            now.saturating_duration_since(self.at).as_secs_f64() / REFILL_EVERY.as_secs_f64();
        Bucket {
            tokens: (self.tokens + earned).min(BURST),
            at: now,
        }
    }
}

#[derive(Default)]
struct State {
    buckets: HashMap<String, Bucket>,
}

/// The failed-join limiter of one authority.
pub struct JoinGuard {
    state: Mutex<State>,
    denials: Denials,
}

impl Default for JoinGuard {
    fn default() -> Self {
        JoinGuard {
            state: Mutex::default(),
            denials: Denials::new("host.join_denied"),
        }
    }
}

fn bucket_keys(peer: IpAddr, key: &str) -> [String; 2] {
    [format!("addr {peer}"), format!("key {key}")]
}

impl JoinGuard {
    /// May `peer` with key fingerprint `key` try a token now? `Err(wait)` when its source or
    /// its key has used up its failed joins.
    pub fn check(&self, peer: IpAddr, key: &str, now: Instant) -> Result<(), Duration> {
        let state = self.lock();
        let mut wait = Duration::ZERO;
        for name in bucket_keys(peer, key) {
            if let Some(bucket) = state.buckets.get(&name) {
                let bucket = bucket.refilled(now);
                if bucket.tokens < 1.0 {
                    let missing = (1.0 - bucket.tokens) * REFILL_EVERY.as_secs_f64();
                    wait = wait.max(Duration::from_secs_f64(missing));
                }
            }
        }
        if wait.is_zero() { Ok(()) } else { Err(wait) }
    }

    /// Records a failed join (`limited`: refused by [`JoinGuard::check`], no token was
    /// tried). Returns the audit records due now: the first failure of a source's window.
    pub fn failed(&self, peer: IpAddr, key: &str, limited: bool, now: Instant) -> Vec<AuditEvent> {
        let mut state = self.lock();
        if !limited {
            for name in bucket_keys(peer, key) {
                let bucket = state.buckets.get(&name).map_or(
                    Bucket {
                        tokens: BURST,
                        at: now,
                    },
                    |b| b.refilled(now),
                );
                if !state.buckets.contains_key(&name) && state.buckets.len() >= MAX_TRACKED {
                    prune_buckets(&mut state.buckets, now);
                }
                state.buckets.insert(
                    name,
                    Bucket {
                        tokens: (bucket.tokens - 1.0).max(0.0),
                        at: now,
                    },
                );
            }
        }
        drop(state);
        self.denials.note(peer, key, limited, false, now, || {
            AuditEvent::new("host.join_denied").with(
                "reason",
                if limited {
                    "too many failed joins"
                } else {
                    "invalid, spent or expired join token"
                },
            )
        })
    }

    /// Summaries of the windows that have ended (call it now and then, and at shutdown with
    /// `all`).
    pub fn flush(&self, now: Instant, all: bool) -> Vec<AuditEvent> {
        self.denials.flush(now, all)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Drops buckets that have refilled (they hold no information); if none has, the oldest.
fn prune_buckets(buckets: &mut HashMap<String, Bucket>, now: Instant) {
    buckets.retain(|_, b| b.refilled(now).tokens < BURST);
    if buckets.len() >= MAX_TRACKED
        && let Some(oldest) = buckets
            .iter()
            .min_by_key(|(_, b)| b.at)
            .map(|(name, _)| name.clone())
    {
        buckets.remove(&oldest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_refusal_then_refill() {
        let guard = JoinGuard::default();
        let peer: IpAddr = "192.0.2.1".parse().unwrap();
        let start = Instant::now();
        let mut records = 0;
        for _ in 0..5 {
            assert!(guard.check(peer, "k", start).is_ok());
            records += guard.failed(peer, "k", false, start).len();
        }
        let wait = guard.check(peer, "k", start).unwrap_err();
        assert!(
            wait > Duration::from_secs(10) && wait <= REFILL_EVERY,
            "{wait:?}"
        );
        // Another key from the same source is limited too; the same key from elsewhere too.
        assert!(guard.check(peer, "other", start).is_err());
        assert!(
            guard
                .check("192.0.2.2".parse().unwrap(), "k", start)
                .is_err()
        );
        assert!(guard.check(peer, "k", start + REFILL_EVERY).is_ok());
        assert_eq!(records, 1, "one record opens the window");
        assert!(
            guard
                .flush(start + Duration::from_secs(1), false)
                .is_empty()
        );
        let summary = guard.flush(start + crate::denials::WINDOW, false);
        assert_eq!(summary.len(), 1);
        assert_eq!(summary[0].fields["refused"], 4);
    }
}
