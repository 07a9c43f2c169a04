//! Errors of the auditor commands. Each message is one line and names what it is about, so
//! `ssh-bastion` can print it as is and exit non-zero.

use std::io;
use std::path::PathBuf;

use jitssh_core::audit::AuditError;
use jitssh_core::store::StoreError;

use jitssh_recording::RecordingError;

/// Why an auditor command could not do its job (as opposed to finding damage, which is a
/// result, reported and turned into a non-zero exit by the command).
#[derive(Debug, thiserror::Error)]
pub enum AuditorError {
    /// The session index could not be read.
    #[error("session index: {0}")]
    Store(#[from] StoreError),
    /// A recording could not be read.
    #[error(transparent)]
    Recording(#[from] RecordingError),
    /// The bucket holding recordings (`[recordings] store`) failed.
    #[error(transparent)]
    ObjectStore(#[from] jitssh_recstore::StoreError),
    /// An audit log could not be read or written.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// No session with this id, neither in the index nor on disk.
    #[error("no session {0:?} (see `ssh-bastion sessions list`)")]
    NoSuchSession(String),
    /// The session is known but its recording is gone (pruned) or has nothing to play.
    #[error("session {id}: {why}")]
    NoRecording {
        /// The session.
        id: String,
        /// What is missing.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{}: cannot {action}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The system's reason.
        source: io::Error,
    },
    /// Writing to the terminal or standard output failed (other than a closed pipe, which
    /// ends the command quietly).
    #[error("cannot write output: {0}")]
    Output(io::Error),
    /// A command-line value that does not make sense.
    #[error("{0}")]
    BadArgument(String),
    /// The `grep` pattern is not a regular expression.
    #[error("invalid pattern: {0}")]
    Pattern(#[from] regex::Error),
    /// A public key file that cannot be used to check seals.
    #[error("{}: {why}", path.display())]
    Key {
        /// The key file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// The bastion's admin socket refused or failed the request.
    #[error("admin socket {}: {why}", path.display())]
    Admin {
        /// The socket.
        path: PathBuf,
        /// What went wrong.
        why: AdminFailure,
    },
}

/// What went wrong talking to the bastion's admin socket.
#[derive(Debug, thiserror::Error)]
pub enum AdminFailure {
    /// Nothing serves the socket: no bastion is running (for `sessions list`, nothing is
    /// live then).
    #[error("the bastion is not running ({0})")]
    NotRunning(io::Error),
    /// The socket's permissions keep this user out.
    #[error(
        "permission denied: run as the bastion's user or root, or be listed in [admin] allow_uids ({0})"
    )]
    PermissionDenied(io::Error),
    /// The bastion answered with an error (no such live session, uid not allowed...).
    #[error("{0}")]
    Refused(String),
    /// The connection failed (or timed out) while sending or waiting for the answer.
    #[error("{action}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The system's reason.
        source: io::Error,
    },
    /// The bastion said something this auditor does not understand, or nothing at all.
    #[error("{0}")]
    BadAnswer(String),
}

impl AuditorError {
    /// A closure turning an `io::Error` into [`AuditorError::Io`] for `path`.
    pub(crate) fn io(
        path: impl Into<PathBuf>,
        action: &'static str,
    ) -> impl FnOnce(io::Error) -> AuditorError {
        let path = path.into();
        move |source| AuditorError::Io {
            path,
            action,
            source,
        }
    }
}
