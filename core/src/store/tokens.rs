//! Token ids (`jti`) already spent on a certificate: a workload token is good for one
//! certificate, so a copied token cannot be replayed while it lives. Rows are kept until the
//! token's own expiry (after that the token is refused as expired anyway) and swept on write.

use rusqlite::{TransactionBehavior, params};

use super::{SqliteStore, StoreError};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS spent_tokens (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX IF NOT EXISTS spent_tokens_expiry ON spent_tokens (expires_at);
";

/// Storage of spent token ids.
pub trait TokenStore: Send + Sync {
    /// Spends `jti` of `issuer` (kept until `expires_at`): `true` the first time, `false` when
    /// it was spent before and has not expired. Expired rows are removed.
    fn spend_token(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError>;
}

impl TokenStore for SqliteStore {
    fn spend_token(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        self.with_conn(|conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| self.sqlite(e))?;
            tx.execute(
                "DELETE FROM spent_tokens WHERE expires_at < ?1",
                params![now as i64],
            )
            .map_err(|e| self.sqlite(e))?;
            let inserted = tx
                .execute(
                    "INSERT OR IGNORE INTO spent_tokens (issuer, jti, expires_at) VALUES (?1, ?2, ?3)",
                    params![issuer, jti, expires_at as i64],
                )
                .map_err(|e| self.sqlite(e))?;
            tx.commit().map_err(|e| self.sqlite(e))?;
            Ok(inserted == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_id_is_spent_once_until_it_expires() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("store.db")).unwrap();
        assert!(store.spend_token("https://ci", "j1", 200, 100).unwrap());
        assert!(!store.spend_token("https://ci", "j1", 200, 150).unwrap());
        // The same id from another issuer is another token.
        assert!(store.spend_token("https://other", "j1", 200, 150).unwrap());
        // Past its expiry the row is swept (the token itself is refused as expired).
        assert!(store.spend_token("https://ci", "j1", 400, 201).unwrap());
    }
}
