//! Why a PostgreSQL store operation failed, as a type the callers can match on; it reaches
//! them inside [`jitssh_core::store::StoreError::Backend`].

/// Errors of the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The `[store] url` cannot be used.
    #[error("bad store url: {0}")]
    Url(String),
    /// The TLS settings cannot be used (root certificate file unreadable or empty).
    #[error("TLS to the database: {0}")]
    Tls(String),
    /// No connection could be made or taken from the pool in time: the database is down,
    /// unreachable, or refuses us.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed (the database answered with an error, or the connection broke).
    #[error("statement failed: {0}")]
    Statement(String),
    /// The operation did not finish within its time limit.
    #[error("no answer from the database within {0:?}")]
    Timeout(std::time::Duration),
    /// A stored value could not be decoded or encoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The database belongs to a newer release, or holds something else.
    #[error("{0}")]
    Schema(String),
    /// The store's own runtime is gone (the process is shutting down).
    #[error("the store's runtime stopped")]
    Stopped,
}

impl PgError {
    /// A driver error, with the database's own message when it sent one.
    pub(crate) fn statement(err: tokio_postgres::Error) -> PgError {
        if let Some(db) = err.as_db_error() {
            return PgError::Statement(format!(
                "{} {}: {}",
                db.severity(),
                db.code().code(),
                db.message()
            ));
        }
        if err.is_closed() || is_io(&err) {
            return PgError::Unavailable(describe(&err));
        }
        PgError::Statement(describe(&err))
    }

    /// A pool error (no connection could be made or taken).
    pub(crate) fn pool(err: deadpool_postgres::PoolError) -> PgError {
        use deadpool_postgres::PoolError;
        match err {
            PoolError::Backend(err) => PgError::Unavailable(describe(&err)),
            PoolError::Timeout(_) => {
                PgError::Unavailable("no connection within the connect timeout".into())
            }
            other => PgError::Unavailable(other.to_string()),
        }
    }
}

fn is_io(err: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// The error and its causes on one line.
fn describe(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}
