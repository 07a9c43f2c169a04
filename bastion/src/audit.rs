//! The bastion's audit trail: logins, sessions, commands, transfers and forwards, each written
//! durably (fsync, hash-chained) before the action it records goes ahead.
//!
//! Appends do blocking file I/O, so they run on tokio's blocking pool.

use std::sync::Arc;

use jitssh_core::audit::{AuditError, AuditEvent, AuditLog};

/// The audit log, shareable across tasks.
#[derive(Clone, Debug)]
pub struct Audit {
    log: Arc<AuditLog>,
}

impl Audit {
    /// Wraps an open log.
    pub fn new(log: AuditLog) -> Audit {
        Audit { log: Arc::new(log) }
    }

    /// Appends `event` and waits until it is durable.
    pub async fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let log = self.log.clone();
        let kind = event.kind.clone();
        match tokio::task::spawn_blocking(move || log.append(event)).await {
            Ok(result) => result.map(|_| ()),
            Err(join) => Err(AuditError::Io {
                path: self.log.path().to_path_buf(),
                action: "append",
                source: std::io::Error::other(format!("{kind}: {join}")),
            }),
        }
    }

    /// Appends `event`; a failure is logged rather than returned, for records of things that
    /// already happened (a session that ended cannot be un-ended).
    pub async fn record_or_log(&self, event: AuditEvent) {
        let kind = event.kind.clone();
        if let Err(err) = self.record(event).await {
            tracing::error!(event = %kind, "cannot write audit record: {err}");
        }
    }
}
