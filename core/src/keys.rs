//! CA keys: generating, storing (mode 0600, OpenSSH format) and signing with them.
//!
//! The two CA keys are stored in OpenSSH's own private key format, so in an emergency an
//! operator can still sign with `ssh-keygen -s` from the same files.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::ssh_key::private::{Ed25519Keypair, KeypairData};
use crate::ssh_key::public::{Ed25519PublicKey, KeyData};
use crate::ssh_key::{Algorithm, HashAlg, LineEnding, PrivateKey, PublicKey, Signature};

/// Errors reading, creating or using CA keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing a key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `init` found keys already there.
    #[error("{} already exists: refusing to overwrite a CA key", .0.display())]
    Exists(PathBuf),
    /// No keys where they were expected.
    #[error("{} not found: run `ssh-ca init` first", .0.display())]
    Missing(PathBuf),
    /// The file is not an unencrypted OpenSSH ed25519 private key.
    #[error("{}: {why}", path.display())]
    Format {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// An ed25519 CA key able to sign certificates (implements ssh-key's `SigningKey`).
#[derive(Clone)]
pub struct CaSigner {
    signing: ed25519_dalek::SigningKey,
    public: KeyData,
    comment: String,
}

impl std::fmt::Debug for CaSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaSigner")
            .field("fingerprint", &self.fingerprint())
            .finish_non_exhaustive()
    }
}

impl CaSigner {
    /// A new random key.
    pub fn generate(comment: &str) -> CaSigner {
        let mut seed = [0u8; 32];
        rand::fill(&mut seed);
        Self::from_seed(&seed, comment)
    }

    fn from_seed(seed: &[u8; 32], comment: &str) -> CaSigner {
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        let public = KeyData::Ed25519(Ed25519PublicKey(signing.verifying_key().to_bytes()));
        CaSigner {
            signing,
            public,
            comment: comment.to_string(),
        }
    }

    /// Reads an OpenSSH ed25519 private key.
    pub fn from_openssh(text: &str, path: &Path) -> Result<CaSigner, KeyError> {
        let format = |why: String| KeyError::Format {
            path: path.to_path_buf(),
            why,
        };
        let key = PrivateKey::from_openssh(text).map_err(|e| format(e.to_string()))?;
        if key.is_encrypted() {
            return Err(format("encrypted CA keys are not supported".into()));
        }
        let keypair = key.key_data().ed25519().ok_or_else(|| {
            format(format!(
                "expected an ed25519 key, found {}",
                key.algorithm()
            ))
        })?;
        Ok(Self::from_seed(
            &keypair.private.to_bytes(),
            key.comment().as_str_lossy(),
        ))
    }

    /// The key in OpenSSH private key format.
    pub fn to_openssh(&self) -> Result<String, KeyError> {
        let keypair = Ed25519Keypair::from_seed(&self.signing.to_bytes());
        let key = PrivateKey::new(KeypairData::Ed25519(keypair), self.comment.clone())
            .and_then(|k| k.to_openssh(LineEnding::LF).map(|s| s.to_string()))
            .map_err(|e| KeyError::Format {
                path: PathBuf::from(&self.comment),
                why: e.to_string(),
            })?;
        Ok(key)
    }

    /// The public half.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::new(self.public.clone(), self.comment.clone())
    }

    /// The public key data (what certificates name as their signer).
    pub fn key_data(&self) -> &KeyData {
        &self.public
    }

    /// SHA-256 fingerprint, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.public.fingerprint(HashAlg::Sha256).to_string()
    }

    /// The `ssh-ed25519 AAAA... comment` line.
    pub fn public_line(&self) -> String {
        self.public_key()
            .to_openssh()
            .unwrap_or_else(|_| String::from("<unencodable key>"))
    }
}

impl crate::signature::Signer<Signature> for CaSigner {
    fn try_sign(&self, message: &[u8]) -> Result<Signature, crate::signature::Error> {
        let raw = self.signing.sign(message);
        Signature::new(Algorithm::Ed25519, raw.to_bytes().to_vec())
            .map_err(|_| crate::signature::Error::new())
    }
}

impl From<&CaSigner> for KeyData {
    fn from(signer: &CaSigner) -> KeyData {
        signer.public.clone()
    }
}

/// The authority's two keys: one signs user certificates, the other host certificates, so a
/// compromise or mistake with one never lets a host impersonate a user or the reverse.
#[derive(Debug, Clone)]
pub struct CaKeys {
    /// Signs user certificates; targets trust it via `TrustedUserCAKeys`.
    pub user: CaSigner,
    /// Signs host certificates; clients trust it via `@cert-authority`.
    pub host: CaSigner,
}

const USER_CA_FILE: &str = "user_ca";
const HOST_CA_FILE: &str = "host_ca";

impl CaKeys {
    /// Paths of the private key files in `dir`.
    pub fn paths(dir: &Path) -> [PathBuf; 2] {
        [dir.join(USER_CA_FILE), dir.join(HOST_CA_FILE)]
    }

    /// Are there keys in `dir`?
    pub fn exist(dir: &Path) -> bool {
        Self::paths(dir).iter().any(|p| p.exists())
    }

    /// Creates both keys in `dir` (mode 0700; files 0600), refusing to overwrite existing
    /// ones.
    pub fn init(dir: &Path) -> Result<CaKeys, KeyError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| KeyError::Io { path, source }
        };
        crate::fsmode::create_private_dir_all(dir).map_err(io(dir))?;
        for path in Self::paths(dir) {
            if path.exists() {
                return Err(KeyError::Exists(path));
            }
        }
        let keys = CaKeys {
            user: CaSigner::generate("user-ca"),
            host: CaSigner::generate("host-ca"),
        };
        for (name, signer) in [(USER_CA_FILE, &keys.user), (HOST_CA_FILE, &keys.host)] {
            let path = dir.join(name);
            write_new(&path, signer.to_openssh()?.as_bytes(), 0o600)?;
            let public = format!("{}\n", signer.public_line());
            // Public, but in the CA's private directory like the rest (see `fsmode`).
            write_new(
                &dir.join(format!("{name}.pub")),
                public.as_bytes(),
                crate::fsmode::PRIVATE_FILE,
            )?;
        }
        Ok(keys)
    }

    /// Loads both keys from `dir`.
    pub fn load(dir: &Path) -> Result<CaKeys, KeyError> {
        let read = |name: &str| -> Result<CaSigner, KeyError> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|source| {
                if source.kind() == std::io::ErrorKind::NotFound {
                    KeyError::Missing(path.clone())
                } else {
                    KeyError::Io {
                        path: path.clone(),
                        source,
                    }
                }
            })?;
            CaSigner::from_openssh(&text, &path)
        };
        Ok(CaKeys {
            user: read(USER_CA_FILE)?,
            host: read(HOST_CA_FILE)?,
        })
    }
}

/// Writes a new file with `mode`, failing if it exists, and syncs it to disk.
pub fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), KeyError> {
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|source| {
            if source.kind() == std::io::ErrorKind::AlreadyExists {
                KeyError::Exists(path.to_path_buf())
            } else {
                io(source)
            }
        })?;
    file.write_all(contents).map_err(io)?;
    file.sync_all().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_refuses_to_overwrite_and_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let keys = CaKeys::init(dir.path()).unwrap();
        let again = CaKeys::init(dir.path()).unwrap_err().to_string();
        assert!(again.contains("refusing to overwrite"), "{again}");
        let loaded = CaKeys::load(dir.path()).unwrap();
        assert_eq!(loaded.user.fingerprint(), keys.user.fingerprint());
        assert_eq!(loaded.host.fingerprint(), keys.host.fingerprint());
        assert_ne!(keys.user.fingerprint(), keys.host.fingerprint());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("user_ca"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn load_reports_missing_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            CaKeys::load(dir.path())
                .unwrap_err()
                .to_string()
                .contains("run `ssh-ca init`")
        );
        std::fs::write(dir.path().join("user_ca"), "garbage").unwrap();
        std::fs::write(dir.path().join("host_ca"), "garbage").unwrap();
        let err = CaKeys::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("user_ca"), "{err}");
    }
}
