//! What can go wrong talking to the bucket.

use std::path::PathBuf;

/// An object store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The bucket refused or could not be reached.
    #[error("object store: {0}")]
    Remote(#[from] object_store::Error),
    /// A local file of the spool or cache could not be read or written.
    #[error("{what} {}: {source}", path.display())]
    Local {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// After an upload, the bucket does not hold what the spool has.
    #[error("upload of {id} not confirmed: {why}")]
    NotConfirmed {
        /// The session.
        id: String,
        /// What differs.
        why: String,
    },
    /// Not a session id.
    #[error(transparent)]
    Id(#[from] jitssh_recording::RecordingError),
    /// The helper thread that runs bucket calls for a synchronous caller failed.
    #[error("object store: {0}")]
    Runtime(String),
}

impl StoreError {
    /// A `map_err` for local I/O on `path`.
    pub(crate) fn local(
        what: &'static str,
        path: &std::path::Path,
    ) -> impl FnOnce(std::io::Error) -> StoreError {
        let path = path.to_path_buf();
        move |source| StoreError::Local { what, path, source }
    }
}
