//! Prometheus metrics of both servers, served at `/metrics` in the Prometheus text format
//! (`[metrics] listen` in `ca.toml` and `bastion.toml`; off by default).
//!
//! Every crate records through the `metrics` facade (`metrics::counter!(names::...)`, the
//! names catalogued in [`jitssh_core::metrics`]), so code that counts does not depend on the
//! exporter; this module installs the one process-wide recorder and serves the scrape
//! endpoint. Values that are cheaper to read than to track (how old the KRL
//! is, when a host certificate expires) are set by [`Refresh`] callbacks just before each
//! scrape.
//!
//! Names follow Prometheus conventions: a `jitssh_` prefix, the program (`ca`, `bastion`),
//! base units (`_seconds`, `_bytes`), `_total` on counters. Label values are bounded sets
//! (certificate types, CA names, role names from the policy, denial categories, target names
//! from the config), never free text.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

use jitssh_core::metrics::names;

/// Issuance latency buckets: a signature is microseconds, the audit fsync milliseconds.
const ISSUANCE_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Sets gauges that are read rather than tracked, just before a scrape.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// Errors starting metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Another metrics recorder was installed in this process first.
    #[error("a metrics recorder is already installed: {0}")]
    Recorder(String),
    /// The scrape endpoint could not listen.
    #[error("cannot listen for metrics on {addr}: {source}")]
    Listen {
        /// The configured address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder (once; later calls return the same handle)
/// and describes every metric. Until this is called, counting costs next to nothing.
pub fn install() -> Result<PrometheusHandle, MetricsError> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let builder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full(names::CA_ISSUANCE_SECONDS.to_owned()),
            ISSUANCE_BUCKETS,
        )
        .map_err(|err| MetricsError::Recorder(err.to_string()))?;
    let handle = builder
        .install_recorder()
        .map_err(|err| MetricsError::Recorder(err.to_string()))?;
    jitssh_core::metrics::describe_all();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

#[derive(Clone)]
struct Scrape {
    handle: PrometheusHandle,
    refresh: Arc<Vec<Refresh>>,
}

/// Binds `addr` and serves `GET /metrics` until the process ends; `refresh` callbacks run
/// before each scrape. Returns once listening, with the bound address.
pub async fn serve(addr: SocketAddr, refresh: Vec<Refresh>) -> Result<SocketAddr, MetricsError> {
    let handle = install()?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| MetricsError::Listen { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Scrape {
            handle,
            refresh: Arc::new(refresh),
        });
    tokio::spawn(async move {
        if let Err(err) = axum::serve(listener, app).await {
            tracing::warn!("metrics endpoint stopped: {err}");
        }
    });
    tracing::info!(addr = %bound, "metrics listening");
    Ok(bound)
}

async fn scrape(State(scrape): State<Scrape>) -> impl IntoResponse {
    for refresh in scrape.refresh.iter() {
        refresh();
    }
    scrape.handle.run_upkeep();
    (
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        scrape.handle.render(),
    )
}

/// Unix time now, for gauges of timestamps and ages.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}
