//! Group commit of issued certificates: one store transaction and one audit fsync for every
//! certificate issued concurrently, instead of one each.
//!
//! Each caller queues its records and waits. The first caller to find no commit under way
//! becomes the leader: it writes everything queued (store, then audit log, both durable),
//! wakes the callers of that batch, and repeats until the queue is empty. A certificate is
//! returned to its requester only after its batch is durable, so the guarantee "no certificate
//! leaves the CA unrecorded" is unchanged; only the fsyncs are shared.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use jitssh_shared::audit::{AuditEvent, AuditLog};
use jitssh_shared::store::{IssuedCert, Store};

/// A batch's outcome, shared by all its callers (errors as text: one failure fails them all).
type Outcome = Result<(), String>;

#[derive(Default)]
struct Slot {
    outcome: Mutex<Option<Outcome>>,
    ready: Condvar,
}

impl Slot {
    fn set(&self, outcome: Outcome) {
        *lock(&self.outcome) = Some(outcome);
        self.ready.notify_all();
    }

    fn wait(&self) -> Outcome {
        let mut outcome = lock(&self.outcome);
        loop {
            if let Some(done) = outcome.take() {
                return done;
            }
            outcome = self.ready.wait(outcome).unwrap_or_else(|p| p.into_inner());
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

struct Entry {
    record: IssuedCert,
    event: AuditEvent,
    slot: Arc<Slot>,
}

#[derive(Default)]
struct Queue {
    entries: Vec<Entry>,
    leader_active: bool,
}

/// The group-commit queue of one authority.
#[derive(Default)]
pub struct GroupCommit {
    queue: Mutex<Queue>,
}

impl GroupCommit {
    /// Makes `record` and `event` durable (store, then audit log) together with whatever other
    /// threads are committing, and returns once they are.
    pub fn commit(
        &self,
        store: &dyn Store,
        audit: &AuditLog,
        record: IssuedCert,
        event: AuditEvent,
    ) -> Outcome {
        let slot = Arc::new(Slot::default());
        let lead = {
            let mut queue = lock(&self.queue);
            queue.entries.push(Entry {
                record,
                event,
                slot: slot.clone(),
            });
            !std::mem::replace(&mut queue.leader_active, true)
        };
        if lead {
            self.lead(store, audit);
        }
        slot.wait()
    }

    fn lead(&self, store: &dyn Store, audit: &AuditLog) {
        loop {
            let batch = {
                let mut queue = lock(&self.queue);
                if queue.entries.is_empty() {
                    queue.leader_active = false;
                    return;
                }
                std::mem::take(&mut queue.entries)
            };
            let mut records = Vec::with_capacity(batch.len());
            let mut events = Vec::with_capacity(batch.len());
            let mut slots = Vec::with_capacity(batch.len());
            for entry in batch {
                records.push(entry.record);
                events.push(entry.event);
                slots.push(entry.slot);
            }
            let outcome = store
                .record_issued_batch(&records)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    audit
                        .append_batch(events)
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
            for slot in slots {
                slot.set(outcome.clone());
            }
        }
    }
}
