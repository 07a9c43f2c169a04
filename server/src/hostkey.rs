//! A server's own SSH host key (the bastion's, the CA API's): created on first start (ed25519, mode 0600, OpenSSH format,
//! with a `.pub` beside it for operators to publish), loaded afterwards.

use std::path::{Path, PathBuf};

use jitssh_core::keys::{KeyError, write_new};
use jitssh_core::ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey};

/// Errors loading or creating the host key.
#[derive(Debug, thiserror::Error)]
pub enum HostKeyError {
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] KeyError),
    /// The file is not a usable private key.
    #[error("{}: {why}", path.display())]
    Format {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Loads the host key at `path`, creating it (and its directory) when missing, with
/// `comment` in the new key and its `.pub`.
pub fn load_or_create(path: &Path, comment: &str) -> Result<PrivateKey, HostKeyError> {
    let format = |why: String| HostKeyError::Format {
        path: path.to_path_buf(),
        why,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let key = PrivateKey::from_openssh(&text).map_err(|e| format(e.to_string()))?;
            if key.is_encrypted() {
                return Err(format("encrypted host keys are not supported".into()));
            }
            Ok(key)
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                jitssh_core::fsmode::create_private_dir_all(dir).map_err(|source| {
                    KeyError::Io {
                        path: dir.to_path_buf(),
                        source,
                    }
                })?;
            }
            let mut key = PrivateKey::random(&mut rand::rng(), Algorithm::Ed25519)
                .map_err(|e| format(e.to_string()))?;
            key.set_comment(comment);
            let text = key
                .to_openssh(LineEnding::LF)
                .map_err(|e| format(e.to_string()))?;
            write_new(path, text.as_bytes(), 0o600)?;
            let public = key
                .public_key()
                .to_openssh()
                .map_err(|e| format(e.to_string()))?;
            let mut pub_path = path.as_os_str().to_owned();
            pub_path.push(".pub");
            write_new(
                Path::new(&pub_path),
                format!("{public}\n").as_bytes(),
                jitssh_core::fsmode::PRIVATE_FILE,
            )?;
            tracing::info!(
                fingerprint = %key.public_key().fingerprint(HashAlg::Sha256),
                path = %path.display(),
                "created host key"
            );
            Ok(key)
        }
        Err(source) => Err(KeyError::Io {
            path: path.to_path_buf(),
            source,
        }
        .into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_once_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/host_key");
        let first = load_or_create(&path, "test").unwrap();
        let second = load_or_create(&path, "test").unwrap();
        assert_eq!(first.public_key(), second.public_key());
        assert!(dir.path().join("sub/host_key.pub").exists());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn garbage_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("host_key");
        std::fs::write(&path, "garbage").unwrap();
        let err = load_or_create(&path, "test").unwrap_err().to_string();
        assert!(err.contains("host_key"), "{err}");
    }
}
