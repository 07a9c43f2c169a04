//! The seal: a manifest of the finished recording, signed by the bastion's key.
//!
//! The signature is an OpenSSH SSHSIG over the exact bytes of `seal.json`, so besides
//! [`super::verify_session`], stock `ssh-keygen -Y verify` can check it. The signature file
//! is written before `seal.json`: a crash between the two leaves an unsealed recording, never
//! a seal without its signature.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use jitssh_core::keys::CaSigner;
use jitssh_core::ssh_key::{HashAlg, LineEnding, PublicKey, SshSig};
use serde::{Deserialize, Serialize};

use super::files::FileSeal;
use super::model::{ChannelSummary, SessionMeta};
use super::{RecordingError, SEAL_FILE, SEAL_SIG_FILE};

/// SSHSIG namespace of recording seals (`ssh-keygen -Y verify -n jitssh-recording`); a
/// signature made for anything else never passes as a seal.
pub const SEAL_NAMESPACE: &str = "jitssh-recording";

/// Value of [`Manifest::format`].
const FORMAT: &str = "jitssh-recording-seal-v1";

/// What the bastion vouches for at the end of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format marker, `jitssh-recording-seal-v1`.
    pub format: String,
    /// Who, from where, which certificate, which target.
    pub session: SessionMeta,
    /// Unix time of the end.
    pub ended_at: u64,
    /// Why it ended.
    pub end_reason: String,
    /// Bytes from the client, all channels.
    pub bytes_in: u64,
    /// Bytes to the client, all channels.
    pub bytes_out: u64,
    /// Exit status of the last channel that reported one.
    pub exit_status: Option<u32>,
    /// Every channel, in opening order.
    pub channels: Vec<ChannelSummary>,
    /// Every chained file, as written.
    pub files: Vec<FileSeal>,
    /// Number of chain entries.
    pub chain_entries: u64,
    /// Hash of the last chain entry.
    pub chain_last_hash: String,
    /// The write failure that stopped recording, if any (the files hold what came before).
    pub failure: Option<String>,
    /// The signing key (OpenSSH public key line).
    pub signer: String,
}

impl Manifest {
    /// Starts a manifest; the caller fills in the rest.
    pub(crate) fn new(session: SessionMeta, signer: String) -> Manifest {
        Manifest {
            format: FORMAT.to_owned(),
            session,
            ended_at: 0,
            end_reason: String::new(),
            bytes_in: 0,
            bytes_out: 0,
            exit_status: None,
            channels: Vec::new(),
            files: Vec::new(),
            chain_entries: 0,
            chain_last_hash: String::new(),
            failure: None,
            signer,
        }
    }
}

/// Signs `manifest` with `key` and writes `seal.json.sig`, then `seal.json`, durably.
pub(crate) fn write_seal(
    dir: &Path,
    manifest: &Manifest,
    key: &CaSigner,
) -> Result<(), RecordingError> {
    let seal_path = dir.join(SEAL_FILE);
    let mut bytes =
        serde_json::to_vec_pretty(manifest).map_err(|source| RecordingError::Encode {
            path: seal_path.clone(),
            what: "the seal",
            source,
        })?;
    bytes.push(b'\n');
    let sign_err = |e: jitssh_core::ssh_key::Error| RecordingError::Sign {
        path: seal_path.clone(),
        why: e.to_string(),
    };
    let signature = SshSig::sign(key, SEAL_NAMESPACE, HashAlg::Sha512, &bytes)
        .and_then(|s| s.to_pem(LineEnding::LF))
        .map_err(sign_err)?;
    write_atomic(dir, SEAL_SIG_FILE, signature.as_bytes())?;
    write_atomic(dir, SEAL_FILE, &bytes)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(RecordingError::io(dir, "sync directory"))
}

/// Writes `dir/name` through a temporary file and a rename, so it is whole or absent.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), RecordingError> {
    let path = dir.join(name);
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(RecordingError::io(&tmp, "create"))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_data())
        .map_err(RecordingError::io(&tmp, "write"))?;
    std::fs::rename(&tmp, &path).map_err(RecordingError::io(&path, "rename into place"))
}

/// Why a seal that is there cannot be trusted (the verifier's [`crate::SealStatus::Invalid`]).
/// Each reason is its own variant, so a caller can tell a seal by another key from an
/// altered one; the details are the underlying library's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    /// `seal.json` is there but cannot be read.
    #[error("{SEAL_FILE} unreadable: {0}")]
    Unreadable(String),
    /// `seal.json.sig` is missing or cannot be read.
    #[error("{SEAL_SIG_FILE} unreadable (seal without signature): {0}")]
    NoSignature(String),
    /// `seal.json.sig` is not an SSHSIG signature.
    #[error("{SEAL_SIG_FILE} is not an SSHSIG: {0}")]
    NotSshSig(String),
    /// Signed, but by a key that is not the trusted one (its SHA-256 fingerprint).
    #[error("seal signed by an untrusted key {0}")]
    UntrustedKey(String),
    /// The signature does not match the bytes of `seal.json`: the seal was altered.
    #[error("seal signature does not match {SEAL_FILE} (seal altered): {0}")]
    Altered(String),
    /// Signed by the trusted key, but not a manifest this version reads.
    #[error("{SEAL_FILE} is signed but not a manifest: {0}")]
    NotManifest(String),
}

/// Reads the seal of `dir`: `Ok(None)` when there is none (unsealed), `Err` with the reason
/// when it is there but not a valid seal by `trusted`. Checks the signature over the
/// manifest only, not the files against it (that is [`crate::verify_session`]'s).
pub fn read_seal(dir: &Path, trusted: &PublicKey) -> Result<Option<Manifest>, SealError> {
    let bytes = match std::fs::read(dir.join(SEAL_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(SealError::Unreadable(e.to_string())),
    };
    let pem = std::fs::read(dir.join(SEAL_SIG_FILE))
        .map_err(|e| SealError::NoSignature(e.to_string()))?;
    let signature = SshSig::from_pem(&pem).map_err(|e| SealError::NotSshSig(e.to_string()))?;
    if signature.public_key() != trusted.key_data() {
        let other = PublicKey::new(signature.public_key().clone(), "");
        return Err(SealError::UntrustedKey(
            other.fingerprint(HashAlg::Sha256).to_string(),
        ));
    }
    trusted
        .verify(SEAL_NAMESPACE, &bytes, &signature)
        .map_err(|e| SealError::Altered(e.to_string()))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| SealError::NotManifest(e.to_string()))
}
