//! Group commit of issued certificates: one store transaction and one audit fsync for every
//! certificate issued concurrently, instead of one each.
//!
//! Each caller queues its records and waits. The first caller to find no commit under way
//! becomes the leader: it writes everything queued (store, audit log, store; all durable),
//! wakes the callers of that batch, and repeats until the queue is empty. A certificate is
//! returned to its requester only after its batch is durable, so the guarantee "no certificate
//! leaves the CA unrecorded" is unchanged; only the fsyncs are shared. See [`commit_batch`]
//! for the order of the writes and [`reconcile_unreleased`] for what a crash leaves.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use jitssh_core::audit::{AuditError, AuditEvent, AuditLog};
use jitssh_core::store::{IssuedCert, Store, StoreError};

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
            let outcome = commit_batch(store, audit, &records, events);
            for slot in slots {
                slot.set(outcome.clone());
            }
        }
    }
}

/// Stores `records` as pending, audits them, then marks them released, all under the audit
/// log's lock. A process killed anywhere in between leaves pending rows that no live writer
/// owns; [`reconcile_unreleased`] (run under the same lock) finds and audits them. So every
/// stored certificate gets an audit record, and a client only ever receives one whose
/// `cert.issued` record is durable.
fn commit_batch(
    store: &dyn Store,
    audit: &AuditLog,
    records: &[IssuedCert],
    events: Vec<AuditEvent>,
) -> Outcome {
    let serials: Vec<u64> = records.iter().map(|r| r.serial).collect();
    audit
        .with_lock(|log| {
            store
                .record_issued_pending(records)
                .map_err(|e| e.to_string())?;
            log.append_batch(events).map_err(|e| e.to_string())?;
            store
                .settle_issued(&serials, true)
                .map_err(|e| e.to_string())
        })
        .map_err(|e| e.to_string())
        .and_then(|outcome| outcome)
}

/// Errors reconciling pending certificates.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The audit log failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Audits as `cert.unreleased` every certificate left pending by a process that died between
/// storing it and handing it out, and marks it so. Runs under the audit log's lock, so a
/// certificate another live process is committing right now is never mistaken for one.
/// Returns how many were found.
pub fn reconcile_unreleased(store: &dyn Store, audit: &AuditLog) -> Result<usize, ReconcileError> {
    audit.with_lock(|log| -> Result<usize, ReconcileError> {
        let pending = store.pending_issued()?;
        if pending.is_empty() {
            return Ok(0);
        }
        let events = pending
            .iter()
            .map(|cert| {
                AuditEvent::new("cert.unreleased")
                    .with("serial", cert.serial)
                    .with("cert_type", cert.cert_type.as_str())
                    .with("key_id", cert.key_id.as_str())
                    .with("requested_by", cert.requested_by.as_str())
                    .with("subject", cert.subject_fingerprint.as_str())
                    .with(
                        "reason",
                        "signed and stored, but the issuing process stopped before auditing \
                         and handing it out: nobody received it",
                    )
            })
            .collect();
        log.append_batch(events)?;
        let serials: Vec<u64> = pending.iter().map(|c| c.serial).collect();
        store.settle_issued(&serials, false)?;
        Ok(pending.len())
    })?
}
