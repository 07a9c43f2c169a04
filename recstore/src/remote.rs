//! The auditor's synchronous view of the bucket: list, fetch into a private cache directory,
//! read the seal, delete.
//!
//! The auditor's commands are synchronous and run both from the `ssh-bastion` command line
//! and from the web console's blocking threads; each call here is run on a small runtime of
//! this handle's own (one worker thread) and waited for, so it works from either.
//!
//! The cache is bounded: a long-running web console would otherwise keep a copy of every
//! recording it ever showed or verified. Past the limit the least recently used copies go
//! (never the one just fetched); a reader that already opened a file of an evicted copy goes
//! on reading it (Linux keeps an unlinked file until it is closed), and the next use of that
//! session downloads it again.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::{Bucket, StoreError, StoredSession};

/// A bucket of recordings for the auditor, and the directory where fetched recordings are
/// cached (removed when the last clone of this handle goes), at most
/// [`RemoteRecordings::cache_limit`] bytes of them.
#[derive(Debug, Clone)]
pub struct RemoteRecordings {
    bucket: Bucket,
    runtime: Arc<Runtime>,
    cache: Arc<tempfile::TempDir>,
    cached: Arc<Mutex<Cached>>,
    cache_limit: u64,
}

/// What the cache holds: each session's bytes and when it was last used.
#[derive(Debug, Default)]
struct Cached {
    sessions: HashMap<String, CachedSession>,
    bytes: u64,
    clock: u64,
}

#[derive(Debug)]
struct CachedSession {
    dir: PathBuf,
    bytes: u64,
    used: u64,
}

impl Cached {
    fn touch(&mut self, id: &str) {
        self.clock += 1;
        if let Some(session) = self.sessions.get_mut(id) {
            session.used = self.clock;
        }
    }

    /// Records `id`'s new copy, then removes the least recently used others until the
    /// cache is within `limit`.
    fn add(&mut self, id: &str, dir: PathBuf, bytes: u64, limit: u64) {
        self.clock += 1;
        let used = self.clock;
        if let Some(old) = self
            .sessions
            .insert(id.to_owned(), CachedSession { dir, bytes, used })
        {
            self.bytes = self.bytes.saturating_sub(old.bytes);
        }
        self.bytes += bytes;
        while self.bytes > limit {
            let Some(oldest) = self
                .sessions
                .iter()
                .filter(|(other, _)| other.as_str() != id)
                .min_by_key(|(_, s)| s.used)
                .map(|(other, _)| other.clone())
            else {
                break;
            };
            self.remove(&oldest);
        }
    }

    fn remove(&mut self, id: &str) {
        if let Some(gone) = self.sessions.remove(id) {
            self.bytes = self.bytes.saturating_sub(gone.bytes);
            let _ = std::fs::remove_dir_all(&gone.dir);
        }
    }
}

/// Bytes of the files in `dir` (a recording's directory is flat).
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
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
    /// system's temporary directory) holding at most `cache_limit` bytes of recordings (and
    /// always the one in use, however large).
    pub fn new(bucket: Bucket, cache_limit: u64) -> Result<RemoteRecordings, StoreError> {
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
            cached: Arc::default(),
            cache_limit,
        })
    }

    fn cached(&self) -> std::sync::MutexGuard<'_, Cached> {
        self.cached.lock().unwrap_or_else(|p| p.into_inner())
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
            self.cached().touch(id);
            return Ok(Some(dest));
        }
        let (owned, target) = (id.to_owned(), dest.clone());
        let found = self.run(move |b| async move { b.download(&owned, &target).await })?;
        if !found {
            return Ok(None);
        }
        let bytes = dir_bytes(&dest);
        self.cached().add(id, dest.clone(), bytes, self.cache_limit);
        Ok(Some(dest))
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
        self.cached().remove(id);
        if let Ok(dir) = jitssh_recording::session_dir(self.cache.path(), id) {
            let _ = std::fs::remove_dir_all(dir);
        }
        let id = id.to_owned();
        self.run(move |b| async move { b.delete(&id).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A copy of `bytes` bytes in `root/id`.
    fn copy(root: &Path, id: &str, bytes: usize) -> (PathBuf, u64) {
        let dir = root.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("chan-1.cast"), vec![b'x'; bytes]).unwrap();
        let size = dir_bytes(&dir);
        (dir, size)
    }

    #[test]
    fn the_least_recently_used_copies_go_past_the_limit_never_the_one_in_use() {
        let root = tempfile::tempdir().unwrap();
        let mut cache = Cached::default();
        for id in ["a", "b", "c"] {
            let (dir, bytes) = copy(root.path(), id, 100);
            assert_eq!(bytes, 100);
            cache.add(id, dir, bytes, 250);
        }
        // Three of 100 bytes under a limit of 250: the oldest went, from disk too.
        assert!(!root.path().join("a").exists());
        assert!(root.path().join("b").exists() && root.path().join("c").exists());
        assert_eq!(cache.bytes, 200);

        // b used again: c is now the least recently used.
        cache.touch("b");
        let (dir, bytes) = copy(root.path(), "d", 100);
        cache.add("d", dir, bytes, 250);
        assert!(!root.path().join("c").exists());
        assert!(root.path().join("b").exists() && root.path().join("d").exists());
        assert_eq!(cache.bytes, 200);

        // One larger than the limit stays (it is in use); everything else goes.
        let (dir, bytes) = copy(root.path(), "e", 1000);
        cache.add("e", dir, bytes, 250);
        assert_eq!(cache.sessions.len(), 1);
        assert!(root.path().join("e").exists());
        assert!(!root.path().join("b").exists() && !root.path().join("d").exists());
        assert_eq!(cache.bytes, 1000);

        // Deleting a session forgets its bytes.
        cache.remove("e");
        assert_eq!((cache.bytes, cache.sessions.len()), (0, 0));
        assert!(!root.path().join("e").exists());
    }
}
