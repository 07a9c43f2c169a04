//! Errors of the recorder and the verifier.

use std::io;
use std::path::PathBuf;

/// Why recording (or reading a recording) failed. Messages are one line and name the file.
#[derive(Debug, thiserror::Error)]
pub enum RecordingError {
    /// A file or directory of the recording could not be created, written or read.
    #[error("recording {}: cannot {action}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done, e.g. "write".
        action: &'static str,
        /// The system's reason.
        #[source]
        source: io::Error,
    },
    /// An asciicast file whose header cannot be read.
    #[error("{}: cannot read the asciicast header: {why}", path.display())]
    BadHeader {
        /// The cast.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// A session id that is not one of ours (also keeps ids from naming paths elsewhere).
    #[error("invalid session id {0:?}: expected YYYYMMDDTHHMMSSZ-<8 hex digits>")]
    InvalidId(String),
    /// A record could not be encoded as JSON.
    #[error("recording {}: cannot encode {what}: {source}", path.display())]
    Encode {
        /// The file it was meant for.
        path: PathBuf,
        /// What was being encoded.
        what: &'static str,
        /// serde_json's reason.
        #[source]
        source: serde_json::Error,
    },
    /// The seal could not be signed.
    #[error("recording {}: cannot sign the seal: {why}", path.display())]
    Sign {
        /// The seal file.
        path: PathBuf,
        /// The signer's reason.
        why: String,
    },
    /// An earlier write failed and the policy is to end the session: nothing more is recorded.
    #[error("recording of session {id} failed, the session must end: {reason}")]
    Failed {
        /// The session.
        id: String,
        /// The first failure.
        reason: String,
        /// That failure was the disk being full.
        disk_full: bool,
    },
}

impl RecordingError {
    /// True when the failure is the recordings disk being full (`ENOSPC`, or `EDQUOT`: the
    /// bastion user's disk quota), so a caller can tell it from every other failure.
    pub fn is_disk_full(&self) -> bool {
        match self {
            RecordingError::Io { source, .. } => {
                source.kind() == io::ErrorKind::StorageFull
                    || matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
            }
            RecordingError::Failed { disk_full, .. } => *disk_full,
            _ => false,
        }
    }

    /// A closure turning an `io::Error` into [`RecordingError::Io`] for `path`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
    ) -> impl FnOnce(io::Error) -> RecordingError {
        let path = path.into();
        move |source| RecordingError::Io {
            path,
            action,
            source,
        }
    }
}
