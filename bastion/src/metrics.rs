//! The bastion's metrics derived from its audit records as they become durable: logins by
//! outcome, sessions started and live by target. (Bytes relayed and recorded are counted where
//! they flow; the host certificate and connections by the shared server code.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jitssh_core::audit::{AuditRecord, Observer};
use jitssh_core::metrics::names;
use serde_json::Value;

/// Sessions remembered as live at most; more (which `limits.max_connections` x
/// `max_channels` keeps far away) are counted but not tracked for the live gauge.
const MAX_TRACKED: usize = 100_000;

/// An observer for the bastion's audit log.
pub fn observer() -> Observer {
    let live: Mutex<HashMap<String, String>> = Mutex::new(HashMap::new());
    Arc::new(move |record: &AuditRecord| count(record, &live))
}

fn count(record: &AuditRecord, live: &Mutex<HashMap<String, String>>) {
    let text = |key: &str| {
        record
            .event
            .fields
            .get(key)
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    match record.event.kind.as_str() {
        "login.accepted" | "login.jump" => {
            metrics::counter!(names::BASTION_LOGINS, "outcome" => "accepted").increment(1);
        }
        "login.refused" | "jump.denied" => {
            metrics::counter!(names::BASTION_LOGINS, "outcome" => "refused").increment(1);
        }
        "session.start" => {
            let target = text("target").unwrap_or_default();
            metrics::counter!(names::BASTION_SESSIONS, "target" => target.clone()).increment(1);
            let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(session) = text("session")
                && live.len() < MAX_TRACKED
            {
                metrics::gauge!(names::BASTION_SESSIONS_LIVE, "target" => target.clone())
                    .increment(1);
                live.insert(session, target);
            }
        }
        "session.end" => {
            let mut live = live.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(target) = text("session").and_then(|session| live.remove(&session)) {
                metrics::gauge!(names::BASTION_SESSIONS_LIVE, "target" => target).decrement(1);
            }
        }
        _ => {}
    }
}
