//! File modes of what `ssh-ca` and `ssh-bastion` create, whatever the umask they start with.
//!
//! Their data (CA keys, certificates issued with the reasons given, client addresses,
//! recordings, audit logs) is for the service user only: directories 0700, files 0600. Both
//! binaries set the umask to 077 first thing ([`restrict_umask`]), and every creation site
//! also spells its mode, so neither alone decides. The one exception is the KRL
//! (`revoked.krl`) and other public material written on request (`--out` of a certificate
//! or public key), 0644: it is public by nature and read by the targets' sshd and by whatever
//! distributes it.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

/// Mode of private directories.
pub const PRIVATE_DIR: u32 = 0o700;
/// Mode of private files.
pub const PRIVATE_FILE: u32 = 0o600;
/// Mode of public files (the KRL, certificates and public keys written with `--out`).
pub const PUBLIC_FILE: u32 = 0o644;

/// Sets the process umask to 077, so that nothing created afterwards (by this code, SQLite
/// or any library) is readable by other users unless its mode is set explicitly.
pub fn restrict_umask() {
    // Called at start-up, before any thread creates files.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` and its missing parents, each mode 0700 (existing ones are left alone).
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
}

/// Removes group and other permissions from `path` if it exists and has any (an older
/// version, or a permissive umask, may have created it so).
pub fn tighten(path: &Path) -> io::Result<()> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.permissions().mode() & 0o077 != 0 => {
            let mode = meta.permissions().mode() & 0o700;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        }
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_and_tightening() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir_all(&dir).unwrap();
        for d in [root.path().join("a"), dir.clone()] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700, "{}", d.display());
        }
        let file = dir.join("f");
        std::fs::write(&file, "x").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
        tighten(&file).unwrap();
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        tighten(&dir.join("missing")).unwrap();
    }
}
