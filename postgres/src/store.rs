//! The CA's traits ([`Store`], [`HostStore`], [`RequestStore`], [`TokenStore`]) on
//! PostgreSQL. Records are the same JSON as in the SQLite store, so a row means the same
//! thing in both.

use std::ops::Range;

use deadpool_postgres::{Object, Pool};
use jitssh_core::store::{
    AccessRequest, CaKeyFingerprints, HostRecord, HostStore, IssuedCert, RequestStore, Revocation,
    RevocationPage, Store, StoreError, TokenStore,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio_postgres::IsolationLevel;

use crate::schema::{Migration, Schema};
use crate::{PgError, PgStore, from_sql, to_sql};

/// The CA store's migrations, oldest first. Never edit a released step; add one.
pub(crate) const SCHEMA: Schema = Schema {
    what: "CA store",
    migrations: &[
        Migration {
            name: "base tables (counters, certificates, revocations, hosts, requests, spent tokens)",
            sql: "
CREATE TABLE counters (name TEXT PRIMARY KEY, value BIGINT NOT NULL);
INSERT INTO counters (name, value) VALUES ('next_serial', 1), ('revocation_generation', 0);
CREATE TABLE issued (
    serial BIGINT PRIMARY KEY,
    record TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    state SMALLINT NOT NULL DEFAULT 0,
    owner TEXT NOT NULL DEFAULT ''
);
CREATE INDEX issued_pending ON issued (owner, serial) WHERE state = 1;
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE revocations (
    id BIGSERIAL PRIMARY KEY,
    item TEXT NOT NULL UNIQUE,
    record TEXT NOT NULL
);
CREATE TABLE hosts (name TEXT PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE requests (id TEXT PRIMARY KEY, created_at BIGINT NOT NULL, record TEXT NOT NULL);
CREATE INDEX requests_created ON requests (created_at DESC, id);
CREATE TABLE spent_tokens (
    issuer TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (issuer, jti)
);
CREATE INDEX spent_tokens_expiry ON spent_tokens (expires_at);
",
        },
        Migration {
            name: "audit index (every chain's records and heads)",
            sql: crate::audit_index::SQL,
        },
    ],
};

/// `issued.state`, as in the SQLite store.
const RELEASED: i16 = 0;
const PENDING: i16 = 1;
const UNRELEASED: i16 = 2;

/// Compare-and-set rounds of [`RequestStore::update_request`] before giving up.
const CAS_ROUNDS: usize = 100;

async fn conn(pool: &Pool) -> Result<Object, PgError> {
    pool.get().await.map_err(PgError::pool)
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T, PgError> {
    serde_json::from_str(text).map_err(|err| PgError::Corrupt(err.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Result<String, PgError> {
    serde_json::to_string(value).map_err(|err| PgError::Corrupt(err.to_string()))
}

fn decode_all<T: DeserializeOwned>(rows: &[tokio_postgres::Row]) -> Result<Vec<T>, PgError> {
    rows.iter()
        .map(|row| decode(row.get::<_, &str>(0)))
        .collect()
}

impl PgStore {
    fn insert_issued(&self, certs: &[IssuedCert], state: i16) -> Result<(), StoreError> {
        let mut serials = Vec::with_capacity(certs.len());
        let mut records = Vec::with_capacity(certs.len());
        let mut times = Vec::with_capacity(certs.len());
        for cert in certs {
            let serial = i64::try_from(cert.serial).map_err(|err| self.corrupt(err))?;
            serials.push(serial);
            records.push(encode(cert).map_err(|err| self.backend(err))?);
            times.push(to_sql(cert.issued_at));
        }
        let owner = self.owner.clone();
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            // One statement for the whole batch: all rows or none.
            client
                .execute(
                    "INSERT INTO issued (serial, record, issued_at, state, owner) \
                     SELECT s, r, i, $4, $5 FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[]) \
                     AS t(s, r, i)",
                    &[&serials, &records, &times, &state, &owner],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(())
        })
    }

    fn backend(&self, err: PgError) -> StoreError {
        StoreError::Backend {
            database: self.database.clone(),
            source: Box::new(err),
        }
    }

    fn corrupt(&self, why: impl ToString) -> StoreError {
        self.backend(PgError::Corrupt(why.to_string()))
    }

    /// The one text column of `sql`'s row, decoded; `None` without a row.
    fn json_one<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        key: String,
    ) -> Result<Option<T>, StoreError> {
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            let row = client
                .query_opt(sql, &[&key])
                .await
                .map_err(PgError::statement)?;
            row.map(|row| decode(row.get::<_, &str>(0))).transpose()
        })
    }

    /// Every row's text column of `sql` (with one BIGINT parameter), decoded.
    fn json_list<T: DeserializeOwned + Send + 'static>(
        &self,
        sql: &'static str,
        value: i64,
    ) -> Result<Vec<T>, StoreError> {
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            let rows = client
                .query(sql, &[&value])
                .await
                .map_err(PgError::statement)?;
            decode_all(&rows)
        })
    }
}

fn limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

impl Store for PgStore {
    fn reserve_serials(&self, count: u64) -> Result<Range<u64>, StoreError> {
        let count = i64::try_from(count.max(1)).map_err(|err| self.corrupt(err))?;
        let end: i64 = self.run(move |pool| async move {
            let client = conn(&pool).await?;
            // One atomic statement, committed before any serial is used: concurrent
            // instances queue on the row, and a block reserved is never reserved again.
            let row = client
                .query_one(
                    "UPDATE counters SET value = value + $1 WHERE name = 'next_serial' \
                     RETURNING value",
                    &[&count],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(row.get(0))
        })?;
        let start = end
            .checked_sub(count)
            .filter(|start| *start > 0)
            .ok_or_else(|| self.corrupt("serial counter out of range"))?;
        Ok(start as u64..end as u64)
    }

    fn record_issued_batch(&self, certs: &[IssuedCert]) -> Result<(), StoreError> {
        self.insert_issued(certs, RELEASED)
    }

    fn record_issued_pending(&self, certs: &[IssuedCert]) -> Result<(), StoreError> {
        self.insert_issued(certs, PENDING)
    }

    fn settle_issued(&self, serials: &[u64], released: bool) -> Result<(), StoreError> {
        let state = if released { RELEASED } else { UNRELEASED };
        let serials = serials
            .iter()
            .map(|s| i64::try_from(*s).map_err(|err| self.corrupt(err)))
            .collect::<Result<Vec<_>, _>>()?;
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            client
                .execute(
                    "UPDATE issued SET state = $1 WHERE serial = ANY($2)",
                    &[&state, &serials],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(())
        })
    }

    fn pending_issued(&self) -> Result<Vec<IssuedCert>, StoreError> {
        let owner = self.owner.clone();
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            let rows = client
                .query(
                    "SELECT record FROM issued WHERE state = $1 AND owner = $2 ORDER BY serial",
                    &[&PENDING, &owner],
                )
                .await
                .map_err(PgError::statement)?;
            decode_all(&rows)
        })
    }

    fn issued(&self, serial: u64) -> Result<Option<IssuedCert>, StoreError> {
        let Ok(serial) = i64::try_from(serial) else {
            return Ok(None);
        };
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            let row = client
                .query_opt("SELECT record FROM issued WHERE serial = $1", &[&serial])
                .await
                .map_err(PgError::statement)?;
            row.map(|row| decode(row.get::<_, &str>(0))).transpose()
        })
    }

    fn list_issued(&self, n: usize) -> Result<Vec<IssuedCert>, StoreError> {
        self.json_list(
            "SELECT record FROM issued ORDER BY serial DESC LIMIT $1",
            limit(n),
        )
    }

    fn list_break_glass(&self, n: usize) -> Result<Vec<IssuedCert>, StoreError> {
        self.json_list(
            "SELECT record FROM issued \
             WHERE (record::jsonb #> '{details,break_glass}') = 'true'::jsonb \
             ORDER BY serial DESC LIMIT $1",
            limit(n),
        )
    }

    fn revoke(&self, revocation: &Revocation) -> Result<bool, StoreError> {
        let item = encode(&revocation.item).map_err(|err| self.backend(err))?;
        let record = encode(revocation).map_err(|err| self.backend(err))?;
        self.run(move |pool| async move {
            let mut client = conn(&pool).await?;
            let tx = client.transaction().await.map_err(PgError::statement)?;
            // The counter row first: revokers queue here, so the revocation's id (taken
            // next) grows in commit order, and a reader's cursor cannot pass a revocation
            // that commits later with a smaller id.
            tx.execute(
                "UPDATE counters SET value = value + 1 WHERE name = 'revocation_generation'",
                &[],
            )
            .await
            .map_err(PgError::statement)?;
            let inserted = tx
                .execute(
                    "INSERT INTO revocations (item, record) VALUES ($1, $2) \
                     ON CONFLICT (item) DO NOTHING",
                    &[&item, &record],
                )
                .await
                .map_err(PgError::statement)?;
            if inserted == 1 {
                tx.commit().await.map_err(PgError::statement)?;
            } else {
                // Already revoked: the generation stays as it was.
                tx.rollback().await.map_err(PgError::statement)?;
            }
            Ok(inserted == 1)
        })
    }

    fn revocations(&self) -> Result<Vec<Revocation>, StoreError> {
        self.json_list(
            "SELECT record FROM revocations WHERE id > $1 ORDER BY id",
            0,
        )
    }

    fn revocation_generation(&self) -> Result<u64, StoreError> {
        self.run(|pool| async move {
            let client = conn(&pool).await?;
            let row = client
                .query_one(
                    "SELECT value FROM counters WHERE name = 'revocation_generation'",
                    &[],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(from_sql(row.get::<_, i64>(0).max(0)))
        })
    }

    fn revocations_since(&self, cursor: u64) -> Result<RevocationPage, StoreError> {
        let after = i64::try_from(cursor).unwrap_or(i64::MAX);
        self.run(move |pool| async move {
            let mut client = conn(&pool).await?;
            // One snapshot: the rows and the generation are of the same moment.
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(PgError::statement)?;
            let generation: i64 = tx
                .query_one(
                    "SELECT value FROM counters WHERE name = 'revocation_generation'",
                    &[],
                )
                .await
                .map_err(PgError::statement)?
                .get(0);
            let rows = tx
                .query(
                    "SELECT id, record FROM revocations WHERE id > $1 ORDER BY id",
                    &[&after],
                )
                .await
                .map_err(PgError::statement)?;
            tx.commit().await.map_err(PgError::statement)?;
            let mut page = RevocationPage {
                revocations: Vec::with_capacity(rows.len()),
                cursor,
                generation: from_sql(generation.max(0)),
            };
            for row in rows {
                page.revocations.push(decode(row.get::<_, &str>(1))?);
                page.cursor = from_sql(row.get::<_, i64>(0).max(0));
            }
            Ok(page)
        })
    }

    fn ca_keys(&self) -> Result<Option<CaKeyFingerprints>, StoreError> {
        self.json_one(
            "SELECT value FROM meta WHERE name = $1",
            "ca_keys".to_string(),
        )
    }

    fn record_ca_keys(&self, keys: &CaKeyFingerprints) -> Result<CaKeyFingerprints, StoreError> {
        let value = encode(keys).map_err(|err| self.backend(err))?;
        let keys = keys.clone();
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            let read = async || -> Result<CaKeyFingerprints, PgError> {
                let row = client
                    .query_one("SELECT value FROM meta WHERE name = 'ca_keys'", &[])
                    .await
                    .map_err(PgError::statement)?;
                decode(row.get::<_, &str>(0))
            };
            client
                .execute(
                    "INSERT INTO meta (name, value) VALUES ('ca_keys', $1) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&value],
                )
                .await
                .map_err(PgError::statement)?;
            let recorded = read().await?;
            // A store from before the target CA: record it once, next to the same user and
            // host CA (compare-and-set on the old value, so two upgrading instances agree).
            if recorded.target.is_none()
                && keys.target.is_some()
                && recorded.user == keys.user
                && recorded.host == keys.host
            {
                let old = encode(&recorded)?;
                client
                    .execute(
                        "UPDATE meta SET value = $1 WHERE name = 'ca_keys' AND value = $2",
                        &[&value, &old],
                    )
                    .await
                    .map_err(PgError::statement)?;
                return read().await;
            }
            Ok(recorded)
        })
    }

    fn issued_count(&self) -> Result<u64, StoreError> {
        self.run(|pool| async move {
            let client = conn(&pool).await?;
            let row = client
                .query_one("SELECT COUNT(*) FROM issued", &[])
                .await
                .map_err(PgError::statement)?;
            Ok(from_sql(row.get::<_, i64>(0).max(0)))
        })
    }
}

impl HostStore for PgStore {
    fn add_host(&self, host: &HostRecord) -> Result<bool, StoreError> {
        let record = encode(host).map_err(|err| self.backend(err))?;
        let name = host.name.clone();
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            let changed = client
                .execute(
                    "INSERT INTO hosts (name, record) VALUES ($1, $2) \
                     ON CONFLICT (name) DO NOTHING",
                    &[&name, &record],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(changed == 1)
        })
    }

    fn host(&self, name: &str) -> Result<Option<HostRecord>, StoreError> {
        self.json_one("SELECT record FROM hosts WHERE name = $1", name.to_string())
    }

    fn hosts(&self) -> Result<Vec<HostRecord>, StoreError> {
        self.run(|pool| async move {
            let client = conn(&pool).await?;
            let rows = client
                .query("SELECT record FROM hosts ORDER BY name", &[])
                .await
                .map_err(PgError::statement)?;
            decode_all(&rows)
        })
    }

    fn remove_host(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            let changed = client
                .execute("DELETE FROM hosts WHERE name = $1", &[&name])
                .await
                .map_err(PgError::statement)?;
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
        let token = token_sha256.to_string();
        let key_line = key_line.to_string();
        self.run(move |pool| async move {
            let mut client = conn(&pool).await?;
            let tx = client.transaction().await.map_err(PgError::statement)?;
            // Every host row locked: two instances joining with one token, one wins.
            let rows = tx
                .query("SELECT record FROM hosts ORDER BY name FOR UPDATE", &[])
                .await
                .map_err(PgError::statement)?;
            let hosts: Vec<HostRecord> = decode_all(&rows)?;
            let found = hosts.into_iter().find(|h| {
                h.token_sha256.as_deref() == Some(token.as_str()) && now < h.token_expires_at
            });
            let Some(mut host) = found else {
                return Ok(None);
            };
            host.key = Some(key_line);
            host.token_sha256 = None;
            let record = encode(&host)?;
            tx.execute(
                "UPDATE hosts SET record = $1 WHERE name = $2",
                &[&record, &host.name],
            )
            .await
            .map_err(PgError::statement)?;
            tx.commit().await.map_err(PgError::statement)?;
            Ok(Some(host))
        })
    }
}

impl RequestStore for PgStore {
    fn create_request(&self, request: &AccessRequest) -> Result<(), StoreError> {
        let record = encode(request).map_err(|err| self.backend(err))?;
        let id = request.id.clone();
        let created = to_sql(request.created_at);
        self.run(move |pool| async move {
            let client = conn(&pool).await?;
            client
                .execute(
                    "INSERT INTO requests (id, created_at, record) VALUES ($1, $2, $3)",
                    &[&id, &created, &record],
                )
                .await
                .map_err(PgError::statement)?;
            Ok(())
        })
    }

    fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        self.json_one("SELECT record FROM requests WHERE id = $1", id.to_string())
    }

    fn requests(&self, n: usize) -> Result<Vec<AccessRequest>, StoreError> {
        self.json_list(
            "SELECT record FROM requests ORDER BY created_at DESC, id LIMIT $1",
            limit(n),
        )
    }

    fn update_request(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut AccessRequest) -> Result<(), String>,
    ) -> Result<Option<Result<AccessRequest, String>>, StoreError> {
        // `change` runs on the caller's thread, so the update is a compare-and-set on the
        // record text: it is saved only if nobody changed the request meanwhile, else it is
        // read and changed again.
        for _ in 0..CAS_ROUNDS {
            let key = id.to_string();
            let old: Option<String> = self.run(move |pool| async move {
                let client = conn(&pool).await?;
                let row = client
                    .query_opt("SELECT record FROM requests WHERE id = $1", &[&key])
                    .await
                    .map_err(PgError::statement)?;
                Ok(row.map(|row| row.get::<_, String>(0)))
            })?;
            let Some(old) = old else {
                return Ok(None);
            };
            let mut request: AccessRequest = decode(&old).map_err(|err| self.backend(err))?;
            if let Err(why) = change(&mut request) {
                return Ok(Some(Err(why)));
            }
            let new = encode(&request).map_err(|err| self.backend(err))?;
            let key = id.to_string();
            let saved = self.run(move |pool| async move {
                let client = conn(&pool).await?;
                client
                    .execute(
                        "UPDATE requests SET record = $1 WHERE id = $2 AND record = $3",
                        &[&new, &key, &old],
                    )
                    .await
                    .map_err(PgError::statement)
            })?;
            if saved == 1 {
                return Ok(Some(Ok(request)));
            }
        }
        Err(self.backend(PgError::Statement(format!(
            "request {id} kept changing under us ({CAS_ROUNDS} tries)"
        ))))
    }
}

impl TokenStore for PgStore {
    fn spend_token(
        &self,
        issuer: &str,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool, StoreError> {
        let issuer = issuer.to_string();
        let jti = jti.to_string();
        let (expires_at, now) = (to_sql(expires_at), to_sql(now));
        self.run(move |pool| async move {
            let mut client = conn(&pool).await?;
            let tx = client.transaction().await.map_err(PgError::statement)?;
            tx.execute("DELETE FROM spent_tokens WHERE expires_at < $1", &[&now])
                .await
                .map_err(PgError::statement)?;
            let inserted = tx
                .execute(
                    "INSERT INTO spent_tokens (issuer, jti, expires_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (issuer, jti) DO NOTHING",
                    &[&issuer, &jti, &expires_at],
                )
                .await
                .map_err(PgError::statement)?;
            tx.commit().await.map_err(PgError::statement)?;
            Ok(inserted == 1)
        })
    }
}
