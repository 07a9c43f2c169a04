//! Enrolled hosts: name, aliases, host key, and the one-time join token.

use rusqlite::{TransactionBehavior, params};
use serde::{Deserialize, Serialize};

use super::{SqliteStore, StoreError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS hosts (
    name TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
";

/// A host enrolled with the CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostRecord {
    /// Primary name (first certificate principal).
    pub name: String,
    /// Further principals.
    pub aliases: Vec<String>,
    /// Lifetime of its host certificates, in seconds.
    pub ttl_secs: u64,
    /// The enrolled host key (OpenSSH public key line without comment), once joined.
    pub key: Option<String>,
    /// SHA-256 (hex) of the one-time join token, until used.
    pub token_sha256: Option<String>,
    /// Unix time the join token stops working.
    pub token_expires_at: u64,
    /// Unix time of enrolment.
    pub created_at: u64,
}

/// Storage of enrolled hosts.
pub trait HostStore: Send + Sync {
    /// Enrols a host; `false` if the name is taken.
    fn add_host(&self, host: &HostRecord) -> Result<bool, StoreError>;
    /// A host by name.
    fn host(&self, name: &str) -> Result<Option<HostRecord>, StoreError>;
    /// All hosts, by name.
    fn hosts(&self) -> Result<Vec<HostRecord>, StoreError>;
    /// Removes a host; `false` if unknown.
    fn remove_host(&self, name: &str) -> Result<bool, StoreError>;
    /// The host whose enrolled key is `key_line`.
    fn host_by_key(&self, key_line: &str) -> Result<Option<HostRecord>, StoreError>;
    /// Uses a join token atomically: the host whose unexpired token hash matches gets
    /// `key_line` as its key, and the token is spent. `Ok(None)` if no such live token.
    fn join_host(
        &self,
        token_sha256: &str,
        key_line: &str,
        now: u64,
    ) -> Result<Option<HostRecord>, StoreError>;
}

impl SqliteStore {
    fn all_hosts(&self, conn: &rusqlite::Connection) -> Result<Vec<HostRecord>, StoreError> {
        self.json_records(conn, "SELECT record FROM hosts ORDER BY name", [])
    }
}

impl HostStore for SqliteStore {
    fn add_host(&self, host: &HostRecord) -> Result<bool, StoreError> {
        let record = self.encode(host)?;
        self.with_conn(|conn| {
            let changed = conn
                .execute(
                    "INSERT OR IGNORE INTO hosts (name, record) VALUES (?1, ?2)",
                    params![host.name, record],
                )
                .map_err(|e| self.sqlite(e))?;
            Ok(changed == 1)
        })
    }

    fn host(&self, name: &str) -> Result<Option<HostRecord>, StoreError> {
        self.with_conn(|conn| {
            self.json_record(
                conn,
                "SELECT record FROM hosts WHERE name = ?1",
                params![name],
            )
        })
    }

    fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.with_conn(|conn| self.all_hosts(conn))
    }

    fn remove_host(&self, name: &str) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let changed = conn
                .execute("DELETE FROM hosts WHERE name = ?1", params![name])
                .map_err(|e| self.sqlite(e))?;
            Ok(changed == 1)
        })
    }

    fn host_by_key(&self, key_line: &str) -> Result<Option<HostRecord>, StoreError> {
        Ok(self
            .hosts()?
            .into_iter()
            .find(|h| h.key.as_deref() == Some(key_line)))
    }

    fn join_host(
        &self,
        token_sha256: &str,
        key_line: &str,
        now: u64,
    ) -> Result<Option<HostRecord>, StoreError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.sqlite(e))?;
            let found = self.all_hosts(&tx)?.into_iter().find(|h| {
                h.token_sha256.as_deref() == Some(token_sha256) && now < h.token_expires_at
            });
            let Some(mut host) = found else {
                return Ok(None);
            };
            host.key = Some(key_line.to_string());
            host.token_sha256 = None;
            let record = self.encode(&host)?;
            tx.execute(
                "UPDATE hosts SET record = ?1 WHERE name = ?2",
                params![record, host.name],
            )
            .map_err(|e| self.sqlite(e))?;
            tx.commit().map_err(|e| self.sqlite(e))?;
            Ok(Some(host))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, token: &str) -> HostRecord {
        HostRecord {
            name: name.into(),
            aliases: vec![format!("{name}.example.com")],
            ttl_secs: 3600,
            key: None,
            token_sha256: Some(token.into()),
            token_expires_at: 1000,
            created_at: 1,
        }
    }

    #[test]
    fn a_token_joins_once_and_only_before_expiry() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db")).unwrap();
        assert!(store.add_host(&host("web01", "t1")).unwrap());
        assert!(!store.add_host(&host("web01", "t9")).unwrap(), "name taken");
        assert!(store.add_host(&host("web02", "t2")).unwrap());
        assert_eq!(
            store.join_host("t2", "ssh-ed25519 K2", 1000).unwrap(),
            None,
            "expired"
        );
        let joined = store
            .join_host("t1", "ssh-ed25519 K1", 10)
            .unwrap()
            .unwrap();
        assert_eq!(joined.key.as_deref(), Some("ssh-ed25519 K1"));
        assert_eq!(
            store.join_host("t1", "ssh-ed25519 K3", 11).unwrap(),
            None,
            "spent"
        );
        assert_eq!(
            store.host_by_key("ssh-ed25519 K1").unwrap().unwrap().name,
            "web01"
        );
        assert!(store.remove_host("web01").unwrap());
        assert_eq!(store.host_by_key("ssh-ed25519 K1").unwrap(), None);
        assert_eq!(store.hosts().unwrap().len(), 1);
    }
}
