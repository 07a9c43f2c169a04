//! The auditor's synchronous view of the bucket: list, fetch into a private cache directory,
//! read the seal, delete.
//!
//! The auditor's commands are synchronous and run both from the `ssh-bastion` command line
//! and from the web console's blocking threads; each call here is run on a small runtime of
//! this handle's own (one worker thread) and waited for, so it works from either.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;

use crate::{Bucket, StoreError, StoredSession};

/// A bucket of recordings for the auditor, and the directory where fetched recordings are
/// cached (removed when the last clone of this handle goes).
#[derive(Debug, Clone)]
pub struct RemoteRecordings {
    bucket: Bucket,
    runtime: Arc<Runtime>,
    cache: Arc<tempfile::TempDir>,
}

/// A runtime that can be dropped anywhere (also inside another runtime).
#[derive(Debug)]
struct Runtime(Option<tokio::runtime::Runtime>);

impl Drop for Runtime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl RemoteRecordings {
    /// A handle on `bucket`, with a fresh private cache directory (mode 0700, under the
    /// system's temporary directory).
    pub fn new(bucket: Bucket) -> Result<RemoteRecordings, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("recordings-store")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Runtime(format!("cannot start: {e}")))?;
        let cache = tempfile::Builder::new()
            .prefix("jitssh-recordings-")
            .tempdir()
            .map_err(StoreError::local(
                "create cache directory",
                &std::env::temp_dir(),
            ))?;
        Ok(RemoteRecordings {
            bucket,
            runtime: Arc::new(Runtime(Some(runtime))),
            cache: Arc::new(cache),
        })
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> &str {
        self.bucket.url()
    }

    /// Runs `work` on this handle's runtime and waits for it.
    fn run<T, F>(&self, work: impl FnOnce(Bucket) -> F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: Future<Output = Result<T, StoreError>> + Send + 'static,
    {
        let Some(rt) = &self.runtime.0 else {
            return Err(StoreError::Runtime("stopped".into()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let fut = work(self.bucket.clone());
        rt.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .map_err(|_| StoreError::Runtime("the call was abandoned".into()))?
    }

    /// Session `id`'s recording as a local directory (downloaded into the cache on first
    /// use), or `None` if the bucket does not have it.
    pub fn fetch(&self, id: &str) -> Result<Option<PathBuf>, StoreError> {
        let dest = jitssh_recording::session_dir(self.cache.path(), id)?;
        if dest.is_dir() {
            return Ok(Some(dest));
        }
        let (id, target) = (id.to_owned(), dest.clone());
        let found = self.run(move |b| async move { b.download(&id, &target).await })?;
        Ok(found.then_some(dest))
    }

    /// What the bucket holds of session `id`.
    pub fn session(&self, id: &str) -> Result<Option<StoredSession>, StoreError> {
        let id = id.to_owned();
        self.run(move |b| async move { b.session(&id).await })
    }

    /// Every session in the bucket, oldest first.
    pub fn sessions(&self) -> Result<Vec<StoredSession>, StoreError> {
        self.run(|b| async move { b.sessions().await })
    }

    /// One small object of session `id` (at most `max` bytes).
    pub fn read_small(
        &self,
        id: &str,
        name: &str,
        max: usize,
    ) -> Result<Option<Vec<u8>>, StoreError> {
        let (id, name) = (id.to_owned(), name.to_owned());
        self.run(move |b| async move { b.read_small(&id, &name, max).await })
    }

    /// Deletes session `id` from the bucket (and from the cache).
    pub fn delete(&self, id: &str) -> Result<(), StoreError> {
        if let Ok(dir) = jitssh_recording::session_dir(self.cache.path(), id) {
            let _ = std::fs::remove_dir_all(dir);
        }
        let id = id.to_owned();
        self.run(move |b| async move { b.delete(&id).await })
    }
}
