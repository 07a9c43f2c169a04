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

use jitssh_shared::keys::CaSigner;
use jitssh_shared::ssh_key::{HashAlg, LineEnding, PublicKey, SshSig};
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
    let sign_err = |e: jitssh_shared::ssh_key::Error| RecordingError::Sign {
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

/// Reads the seal of `dir`: `Ok(None)` when there is none (unsealed), `Err` with the reason
/// when it is there but not a valid seal by `trusted`.
pub(crate) fn read_seal(dir: &Path, trusted: &PublicKey) -> Result<Option<Manifest>, String> {
    let bytes = match std::fs::read(dir.join(SEAL_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{SEAL_FILE} unreadable: {e}")),
    };
    let pem = std::fs::read(dir.join(SEAL_SIG_FILE))
        .map_err(|e| format!("{SEAL_SIG_FILE} unreadable (seal without signature): {e}"))?;
    let signature =
        SshSig::from_pem(&pem).map_err(|e| format!("{SEAL_SIG_FILE} is not an SSHSIG: {e}"))?;
    if signature.public_key() != trusted.key_data() {
        let other = PublicKey::new(signature.public_key().clone(), "");
        return Err(format!(
            "seal signed by an untrusted key {}",
            other.fingerprint(HashAlg::Sha256)
        ));
    }
    trusted
        .verify(SEAL_NAMESPACE, &bytes, &signature)
        .map_err(|e| format!("seal signature does not match {SEAL_FILE} (seal altered): {e}"))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| format!("{SEAL_FILE} is signed but not a manifest: {e}"))
}
