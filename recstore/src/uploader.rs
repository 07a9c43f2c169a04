//! The bastion's uploader: one task that moves finished recordings from the spool (the local
//! recordings directory) to the bucket, off the sessions' paths.
//!
//! Due for upload: a recording with its seal signature written (the session ended and sealed
//! it), one a session reported finished through [`Uploads::finished`] (ended without a seal,
//! e.g. its recording failed), and every recording already in the spool when the bastion
//! started (left by a crash, or not yet uploaded by the last run; nothing records yet at that
//! point). A recording is removed from the spool only after [`Bucket::upload`] confirmed it.
//! When the bucket cannot be reached the task logs one error, retries with back-off, and
//! logs once more when it is back; recordings wait in the spool meanwhile, nothing is lost.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::Bucket;

/// First wait after a failed upload; doubled on each failure up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between attempts while the bucket is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// The spool is rescanned this often even without news.
const RESCAN: Duration = Duration::from_secs(30);
/// The seal's signature: written last when a recording is sealed.
const SEAL_SIG: &str = "seal.json.sig";

/// What sessions use to tell the uploader a recording is finished.
#[derive(Debug, Clone, Default)]
pub struct Uploads {
    inner: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    wake: Notify,
    /// Finished recordings (sealed or not), until uploaded. At most one per session in the
    /// spool, so bounded by what the spool holds.
    finished: Mutex<HashSet<PathBuf>>,
}

impl Uploads {
    /// Recording directory `dir` is finished: upload it (sealed or not).
    pub fn finished(&self, dir: &Path) {
        if let Ok(mut set) = self.inner.finished.lock() {
            set.insert(dir.to_path_buf());
        }
        self.inner.wake.notify_one();
    }
}

/// The uploader task.
pub struct Uploader {
    bucket: Bucket,
    spool: PathBuf,
    uploads: Uploads,
    leftovers: HashSet<PathBuf>,
}

impl Uploader {
    /// Takes stock of the spool (call before any session records) and starts the task on
    /// the current tokio runtime.
    pub fn start(bucket: Bucket, spool: &Path) -> Uploads {
        let leftovers: HashSet<PathBuf> = spooled(spool).into_iter().map(|(_, dir)| dir).collect();
        if !leftovers.is_empty() {
            tracing::info!(
                count = leftovers.len(),
                store = %bucket.url(),
                "uploading recordings left in the spool by the last run (those without a seal stay unsealed)"
            );
        }
        let uploads = Uploads::default();
        let uploader = Uploader {
            bucket,
            spool: spool.to_path_buf(),
            uploads: uploads.clone(),
            leftovers,
        };
        tokio::spawn(uploader.run());
        uploads
    }

    async fn run(mut self) {
        let mut backoff = FIRST_BACKOFF;
        let mut down = false;
        loop {
            match self.pass().await {
                Ok(uploaded) => {
                    if down {
                        tracing::info!(store = %self.bucket.url(), uploaded, "object store reachable again: spooled recordings uploaded");
                        down = false;
                    }
                    backoff = FIRST_BACKOFF;
                    tokio::select! {
                        _ = self.uploads.inner.wake.notified() => {}
                        _ = tokio::time::sleep(RESCAN) => {}
                    }
                }
                Err((id, err)) => {
                    if !down {
                        tracing::error!(
                            store = %self.bucket.url(),
                            session = %id,
                            spool = %self.spool.display(),
                            "cannot upload recordings: {err}; they stay in the spool and are uploaded when the store is back"
                        );
                        down = true;
                    } else {
                        tracing::debug!(session = %id, "upload retry failed: {err}");
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// Uploads every due recording; stops at the first failure.
    async fn pass(&mut self) -> Result<usize, (String, crate::StoreError)> {
        let finished: HashSet<PathBuf> = self
            .uploads
            .inner
            .finished
            .lock()
            .map(|set| set.clone())
            .unwrap_or_default();
        let mut uploaded = 0;
        for (id, dir) in spooled(&self.spool) {
            let due = dir.join(SEAL_SIG).is_file()
                || finished.contains(&dir)
                || self.leftovers.contains(&dir);
            if !due {
                continue;
            }
            let bytes = self
                .bucket
                .upload(&id, &dir)
                .await
                .map_err(|e| (id.clone(), e))?;
            if let Err(e) = std::fs::remove_dir_all(&dir) {
                tracing::error!(session = %id, "uploaded, but cannot remove the spooled copy {}: {e}", dir.display());
            }
            remove_empty_parents(&dir, &self.spool);
            self.leftovers.remove(&dir);
            if let Ok(mut set) = self.uploads.inner.finished.lock() {
                set.remove(&dir);
            }
            tracing::info!(session = %id, bytes, store = %self.bucket.url(), "recording uploaded");
            uploaded += 1;
        }
        // Finished recordings no longer in the spool (removed by hand) are forgotten.
        if let Ok(mut set) = self.uploads.inner.finished.lock() {
            set.retain(|dir| dir.is_dir());
        }
        Ok(uploaded)
    }
}

/// Every recording directory in the spool (`YYYY/MM/DD/<id>`), oldest first.
pub(crate) fn spooled(root: &Path) -> Vec<(String, PathBuf)> {
    let mut found = Vec::new();
    let mut dirs = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.filter_map(Result::ok) {
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            if depth == 3 {
                if jitssh_recording::session_dir(root, &name).is_ok_and(|d| d == entry.path()) {
                    found.push((name, entry.path()));
                }
            } else if name.bytes().all(|b| b.is_ascii_digit()) {
                dirs.push((entry.path(), depth + 1));
            }
        }
    }
    found.sort();
    found
}

/// Removes the now empty day, month and year directories above an uploaded recording, except
/// today's (a session may be creating its directory there right now).
fn remove_empty_parents(dir: &Path, root: &Path) {
    let today = jitssh_recording::session_dir(root, &jitssh_recording::new_session_id())
        .ok()
        .and_then(|d| d.parent().map(Path::to_path_buf));
    let mut current = dir.parent();
    while let Some(parent) = current {
        if parent == root
            || !parent.starts_with(root)
            || today.as_deref().is_some_and(|t| t.starts_with(parent))
        {
            break;
        }
        if std::fs::remove_dir(parent).is_err() {
            break;
        }
        current = parent.parent();
    }
}
