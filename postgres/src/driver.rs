//! The connection pool and the runtime that drives it.
//!
//! The store traits are synchronous, and they are called from `spawn_blocking` threads, from
//! plain threads (the group commit's leader), and from async code at startup. The sync
//! `postgres` crate starts a runtime of its own per call and panics inside another runtime,
//! so the store owns one small tokio runtime (two worker threads) with the pool on it: each
//! trait call spawns its future there and waits for the answer on a one-slot channel, which
//! is safe from any thread, inside a runtime or not.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

use crate::url::{StoreUrl, Tls};
use crate::{PgError, PgOptions};

/// A pool of connections on a runtime of its own.
pub(crate) struct Driver {
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// Upper bound of one operation: taking a connection plus its statements.
    limit: Duration,
}

impl Driver {
    pub(crate) fn new(url: &StoreUrl, options: &PgOptions) -> Result<Driver, PgError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("jitssh-postgres")
            .enable_all()
            .build()
            .map_err(|err| PgError::Unavailable(format!("cannot start a runtime: {err}")))?;
        let mut config = url.config.clone();
        config.connect_timeout(options.connect_timeout);
        if let Some(password) = &options.password {
            config.password(password.trim_end_matches(['\r', '\n']));
        }
        config.keepalives(true);
        config.keepalives_idle(Duration::from_secs(30));
        if config.get_application_name().is_none() {
            config.application_name("jitssh");
        }
        // The server ends a statement (or a wait for a lock) that runs too long, so a stuck
        // query frees its connection and its locks rather than holding them.
        let millis = options.statement_timeout.as_millis();
        let mut server_options = config.get_options().unwrap_or("").to_string();
        server_options.push_str(&format!(
            " -c statement_timeout={millis} -c lock_timeout={millis} \
             -c idle_in_transaction_session_timeout={} -c client_min_messages=warning",
            millis.saturating_mul(2)
        ));
        config.options(server_options.trim());
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &url.tls {
            Tls::Disable => Manager::from_config(config, tokio_postgres::NoTls, manager_config),
            Tls::Verify { roots } => Manager::from_config(
                config,
                tokio_postgres_rustls::MakeRustlsConnect::new(client_config(roots.as_deref())?),
                manager_config,
            ),
        };
        let pool = Pool::builder(manager)
            .max_size(options.pool_size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(options.connect_timeout))
            .create_timeout(Some(options.connect_timeout))
            .recycle_timeout(Some(options.connect_timeout))
            .build()
            .map_err(|err| PgError::Unavailable(err.to_string()))?;
        Ok(Driver {
            runtime: Some(runtime),
            pool,
            limit: options
                .connect_timeout
                .saturating_mul(2)
                .saturating_add(options.statement_timeout.saturating_mul(2)),
        })
    }

    /// Runs the future `make` builds (given the pool) on the store's runtime, and waits for
    /// it, at most the operation limit.
    pub(crate) fn run<T, F, Fut>(&self, make: F) -> Result<T, PgError>
    where
        F: FnOnce(Pool) -> Fut,
        Fut: Future<Output = Result<T, PgError>> + Send + 'static,
        T: Send + 'static,
    {
        let runtime = self.runtime.as_ref().ok_or(PgError::Stopped)?;
        let future = make(self.pool.clone());
        let limit = self.limit;
        let (done, answer) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let outcome = match tokio::time::timeout(limit, future).await {
                Ok(outcome) => outcome,
                Err(_) => Err(PgError::Timeout(limit)),
            };
            // One slot, one message: never blocks. The caller may be gone (it cannot be,
            // as it waits, but a closed channel is not an error worth a panic).
            let _ = done.send(outcome);
        });
        answer.recv().map_err(|_| PgError::Stopped)?
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside another runtime (a store dropped
        // in async code): let its threads finish in the background instead.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// rustls with the given roots (PEM file) or the system's, verifying the server's name.
fn client_config(roots: Option<&std::path::Path>) -> Result<rustls::ClientConfig, PgError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut store = rustls::RootCertStore::empty();
    match roots {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .map_err(|err| PgError::Tls(format!("{}: {err}", path.display())))?;
            for cert in certs {
                let cert =
                    cert.map_err(|err| PgError::Tls(format!("{}: {err}", path.display())))?;
                store
                    .add(cert)
                    .map_err(|err| PgError::Tls(format!("{}: {err}", path.display())))?;
            }
            if store.is_empty() {
                return Err(PgError::Tls(format!(
                    "{}: no certificate in the file",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = store.add(cert);
            }
            if store.is_empty() {
                return Err(PgError::Tls(
                    "no system trust roots found: set sslrootcert=PATH in the url".into(),
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| PgError::Tls(err.to_string()))?
        .with_root_certificates(store)
        .with_no_client_auth())
}
