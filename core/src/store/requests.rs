//! Just-in-time access requests: created by a requester, approved or denied by others.

use rusqlite::{TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::{SqliteStore, StoreError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    created_at INTEGER NOT NULL,
    record TEXT NOT NULL
);
";

/// One approval or denial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Who decided.
    pub by: String,
    /// Unix time.
    pub at: u64,
    /// Why (denials must say why; approvals may).
    pub reason: Option<String>,
}

/// An access request for a role that needs approval.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    /// Request id (random, unguessable).
    pub id: String,
    /// Who asked.
    pub requester: String,
    /// The role asked for.
    pub role: String,
    /// How long access should last once approved, in seconds.
    pub ttl_secs: u64,
    /// Why.
    pub reason: String,
    /// Unix time of the request.
    pub created_at: u64,
    /// Unix time after which an undecided request expires.
    pub decide_by: u64,
    /// Distinct approvals needed.
    pub approvals_needed: u32,
    /// Approvals so far (distinct people).
    pub approvals: Vec<Decision>,
    /// The denial, if denied.
    pub denial: Option<Decision>,
    /// Unix time the last needed approval arrived.
    pub approved_at: Option<u64>,
    /// Certificates issued under this request so far (capped by the role's
    /// `certificates_per_approval`).
    #[serde(default)]
    pub certificates_issued: u32,
}

/// Where a request stands at a given time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestStatus {
    /// Waiting for approvals.
    Pending,
    /// Approved; access allowed until `not_after`.
    Approved {
        /// End of the approved window.
        not_after: u64,
    },
    /// Approved, but the window has passed.
    Ended,
    /// Denied.
    Denied,
    /// Not decided in time.
    Expired,
}

impl AccessRequest {
    /// The request's state at `now`.
    pub fn status(&self, now: u64) -> RequestStatus {
        if self.denial.is_some() {
            return RequestStatus::Denied;
        }
        match self.approved_at {
            Some(at) => {
                let not_after = at.saturating_add(self.ttl_secs);
                if now < not_after {
                    RequestStatus::Approved { not_after }
                } else {
                    RequestStatus::Ended
                }
            }
            None if now >= self.decide_by => RequestStatus::Expired,
            None => RequestStatus::Pending,
        }
    }
}

impl std::fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            RequestStatus::Pending => "pending",
            RequestStatus::Approved { .. } => "approved",
            RequestStatus::Ended => "ended",
            RequestStatus::Denied => "denied",
            RequestStatus::Expired => "expired",
        })
    }
}

/// Storage of access requests.
pub trait RequestStore: Send + Sync {
    /// Stores a new request.
    fn create_request(&self, request: &AccessRequest) -> Result<(), StoreError>;
    /// A request by id.
    fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError>;
    /// All requests, newest first, at most `limit`.
    fn requests(&self, limit: usize) -> Result<Vec<AccessRequest>, StoreError>;
    /// Changes a request atomically (across processes): `change` sees the current record and
    /// either edits it (saved) or refuses with a reason (nothing saved). `Ok(None)`: no such id.
    fn update_request(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut AccessRequest) -> Result<(), String>,
    ) -> Result<Option<Result<AccessRequest, String>>, StoreError>;
}

impl RequestStore for SqliteStore {
    fn create_request(&self, request: &AccessRequest) -> Result<(), StoreError> {
        let record = self.encode(request)?;
        self.with_conn(|conn| {
            conn.execute(
                "INSERT INTO requests (id, created_at, record) VALUES (?1, ?2, ?3)",
                params![request.id, request.created_at as i64, record],
            )
            .map_err(|e| self.sqlite(e))?;
            Ok(())
        })
    }

    fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        self.with_conn(|conn| {
            self.json_record(
                conn,
                "SELECT record FROM requests WHERE id = ?1",
                params![id],
            )
        })
    }

    fn requests(&self, limit: usize) -> Result<Vec<AccessRequest>, StoreError> {
        self.with_conn(|conn| {
            let sql = "SELECT record FROM requests ORDER BY created_at DESC, id LIMIT ?1";
            self.json_records(conn, sql, params![limit as i64])
        })
    }

    fn update_request(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut AccessRequest) -> Result<(), String>,
    ) -> Result<Option<Result<AccessRequest, String>>, StoreError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.sqlite(e))?;
            let found: Option<AccessRequest> = self.json_record(
                &tx,
                "SELECT record FROM requests WHERE id = ?1",
                params![id],
            )?;
            let Some(mut request) = found else {
                return Ok(None);
            };
            if let Err(why) = change(&mut request) {
                return Ok(Some(Err(why)));
            }
            let record = self.encode(&request)?;
            tx.execute(
                "UPDATE requests SET record = ?1 WHERE id = ?2",
                params![record, id],
            )
            .map_err(|e| self.sqlite(e))?;
            tx.commit().map_err(|e| self.sqlite(e))?;
            Ok(Some(Ok(request)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(id: &str) -> AccessRequest {
        AccessRequest {
            id: id.into(),
            requester: "alice".into(),
            role: "prod".into(),
            ttl_secs: 600,
            reason: "CHG-1".into(),
            created_at: 100,
            decide_by: 200,
            approvals_needed: 2,
            approvals: vec![],
            denial: None,
            approved_at: None,
            certificates_issued: 0,
        }
    }

    #[test]
    fn status_follows_decisions_and_time() {
        let mut r = request("a");
        assert_eq!(r.status(150), RequestStatus::Pending);
        assert_eq!(r.status(200), RequestStatus::Expired);
        r.approved_at = Some(190);
        assert_eq!(r.status(250), RequestStatus::Approved { not_after: 790 });
        assert_eq!(r.status(790), RequestStatus::Ended);
        r.denial = Some(Decision {
            by: "bob".into(),
            at: 191,
            reason: Some("no".into()),
        });
        assert_eq!(r.status(250), RequestStatus::Denied);
    }

    #[test]
    fn update_is_atomic_and_refusals_save_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        store.create_request(&request("r1")).unwrap();
        let refused = store
            .update_request("r1", &mut |r| {
                r.reason = "changed".into();
                Err("nope".into())
            })
            .unwrap();
        assert_eq!(refused, Some(Err("nope".into())));
        assert_eq!(store.request("r1").unwrap().unwrap().reason, "CHG-1");
        let done = store
            .update_request("r1", &mut |r| {
                r.approvals.push(Decision {
                    by: "bob".into(),
                    at: 5,
                    reason: None,
                });
                Ok(())
            })
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(done.approvals.len(), 1);
        assert_eq!(store.request("r1").unwrap().unwrap().approvals.len(), 1);
        assert_eq!(store.update_request("nope", &mut |_| Ok(())).unwrap(), None);
        store.create_request(&request("r2")).unwrap();
        assert_eq!(store.requests(10).unwrap().len(), 2);
    }
}
