//! Per-test scratch directories.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// A temporary directory, deleted on drop.
///
/// If the owning thread is panicking (the test failed) and
/// `JITSSH_KEEP_TMP=1` is set, the directory is kept and its path printed to
/// stderr so it can be inspected.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Scratch {
    /// Creates a fresh directory `$TMPDIR/jitssh-XXXXXX`.
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("jitssh-")
            .tempdir()
            .expect("create scratch dir");
        Self { dir: Some(dir) }
    }

    /// The directory's absolute path.
    pub fn path(&self) -> &Path {
        self.dir.as_ref().expect("scratch dir present").path()
    }

    /// Absolute path of `rel` inside the directory (nothing is created).
    pub fn file(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.path().join(rel)
    }

    /// Writes `contents` to `rel` (creating parent dirs) and returns its path.
    pub fn write(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.file(rel);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("mkdir {}: {e}", parent.display()));
        }
        fs::write(&path, contents).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// Like [`Scratch::write`] but with mode `0600`, as OpenSSH requires for
    /// private keys.
    pub fn write_private(&self, rel: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> PathBuf {
        let path = self.write(rel, contents);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
        path
    }

    /// Creates the directory `rel` (and parents) and returns its path.
    pub fn mkdir(&self, rel: impl AsRef<Path>) -> PathBuf {
        let path = self.file(rel);
        fs::create_dir_all(&path).unwrap_or_else(|e| panic!("mkdir {}: {e}", path.display()));
        path
    }
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if std::thread::panicking() && std::env::var_os("JITSSH_KEEP_TMP").is_some_and(|v| v == "1")
        {
            let kept = dir.keep();
            eprintln!("JITSSH_KEEP_TMP=1: kept scratch dir {}", kept.display());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_creates_parents_and_cleans_up() {
        let scratch = Scratch::new();
        let root = scratch.path().to_path_buf();
        let file = scratch.write("a/b/c.txt", "hello");
        assert_eq!(fs::read_to_string(&file).unwrap(), "hello");
        let key = scratch.write_private("k", "secret");
        assert_eq!(
            fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
        drop(scratch);
        assert!(!root.exists());
    }
}
