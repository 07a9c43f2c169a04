//! `sessions watch` and `sessions kill`: the auditor's side of the bastion's admin socket
//! (see [`crate::protocol`] for the protocol; the bastion's `admin` module says who may
//! use it). Watched output goes through
//! [`super::termfilter`], like `replay`.

use std::io::{BufRead, BufReader, ErrorKind, IsTerminal, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use base64::Engine as _;

use super::termfilter::TermFilter;
use super::{AdminFailure, Auditor, AuditorError, Outcome, output};
use crate::protocol::{LiveInfo, Reply, Request};

/// How long `kill` waits for the bastion's answer (it answers once the session ended).
const KILL_REPLY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long the live-session list may take (it is answered at once).
const LIST_REPLY_TIMEOUT: Duration = Duration::from_secs(5);

impl Auditor {
    /// `sessions watch ID`: the session's output to `out` until it ends.
    pub fn watch(&self, id: &str, out: &mut dyn Write) -> Result<Outcome, AuditorError> {
        let mut lines = self.request(&Request::Watch {
            session: id.to_owned(),
        })?;
        let mut err = std::io::stderr();
        let mut filter = TermFilter::new();
        // On a terminal, the drawing state the session left is undone at the end.
        let restore = |out: &mut dyn Write| {
            if std::io::stdout().is_terminal() {
                let _ = out.write_all(super::termfilter::RESTORE);
                let _ = out.flush();
            }
        };
        while let Some(reply) = lines.next_reply()? {
            match reply {
                Reply::Watching(i) => {
                    let who = super::list::printable(&format!(
                        " ({} as {}@{})",
                        i.user, i.login, i.target
                    ));
                    let _ = writeln!(
                        err,
                        "watching session {id}{who}, read-only; Ctrl-C stops watching\r"
                    );
                }
                Reply::Data(data) => {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(data)
                        .map_err(|e| {
                            self.admin_error(AdminFailure::BadAnswer(format!(
                                "bad data from the bastion: {e}"
                            )))
                        })?;
                    out.write_all(&filter.filter(&bytes)).map_err(output)?;
                    out.flush().map_err(output)?;
                }
                Reply::Lagged(n) => {
                    // Output was lost: a sequence in progress is not continued.
                    filter.reset();
                    let _ = writeln!(
                        err,
                        "\r\n[watch: fell behind, {n} chunks of output not shown]\r"
                    );
                }
                Reply::Ended(_) => {
                    restore(out);
                    let _ = writeln!(err, "\r\n[watch: session {id} ended]\r");
                    return Ok(Outcome::Ok);
                }
                // Not part of a watch: ignored, as unknown lines always were.
                Reply::Sessions(_) | Reply::Killed(_) | Reply::Error(_) => {}
            }
        }
        restore(out);
        let _ = writeln!(err, "\r\n[watch: the bastion closed the connection]\r");
        Ok(Outcome::Ok)
    }

    /// `sessions kill ID --reason TEXT`.
    pub fn kill(
        &self,
        id: &str,
        reason: &str,
        out: &mut dyn Write,
    ) -> Result<Outcome, AuditorError> {
        let mut lines = self.request(&Request::Kill {
            session: id.to_owned(),
            reason: reason.to_owned(),
        })?;
        lines
            .stream
            .set_read_timeout(Some(KILL_REPLY_TIMEOUT))
            .map_err(|source| self.admin_io("set a timeout", source))?;
        match lines.next_reply()? {
            Some(Reply::Killed(_)) => {
                writeln!(
                    out,
                    "session {id} ended; the person was told: ended by an auditor: {reason}"
                )
                .map_err(output)?;
                Ok(Outcome::Ok)
            }
            Some(_) | None => {
                Err(self.admin_error(AdminFailure::BadAnswer("the bastion gave no answer".into())))
            }
        }
    }

    /// The sessions the running bastion says are live: `None` if no bastion is running.
    pub fn live_sessions(&self) -> Result<Option<Vec<LiveInfo>>, AuditorError> {
        let mut lines = match self.request(&Request::List) {
            Ok(lines) => lines,
            Err(AuditorError::Admin {
                why: AdminFailure::NotRunning(_),
                ..
            }) => {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        // A bastion that does not answer must not hang `sessions list`.
        lines
            .stream
            .set_read_timeout(Some(LIST_REPLY_TIMEOUT))
            .map_err(|source| self.admin_io("set a timeout", source))?;
        match lines.next_reply()? {
            Some(Reply::Sessions(list)) => Ok(Some(list)),
            Some(_) => Err(self.admin_error(AdminFailure::BadAnswer(
                "bad answer: not a session list".into(),
            ))),
            None => {
                Err(self.admin_error(AdminFailure::BadAnswer("the bastion gave no answer".into())))
            }
        }
    }

    fn request(&self, request: &Request) -> Result<Replies, AuditorError> {
        let mut stream = UnixStream::connect(&self.admin_socket).map_err(|e| {
            let why = match e.kind() {
                ErrorKind::NotFound | ErrorKind::ConnectionRefused => AdminFailure::NotRunning(e),
                ErrorKind::PermissionDenied => AdminFailure::PermissionDenied(e),
                _ => AdminFailure::Io {
                    action: "connect",
                    source: e,
                },
            };
            self.admin_error(why)
        })?;
        let line = request.to_line();
        stream
            .write_all(&line)
            .map_err(|source| self.admin_io("cannot send the request", source))?;
        let reader = BufReader::new(
            stream
                .try_clone()
                .map_err(|source| self.admin_io("connect", source))?,
        );
        Ok(Replies {
            stream,
            reader,
            socket: self.admin_socket.clone(),
        })
    }

    fn admin_io(&self, action: &'static str, source: std::io::Error) -> AuditorError {
        self.admin_error(AdminFailure::Io { action, source })
    }

    fn admin_error(&self, why: AdminFailure) -> AuditorError {
        AuditorError::Admin {
            path: self.admin_socket.clone(),
            why,
        }
    }
}

/// Reply lines from the bastion.
struct Replies {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
    socket: std::path::PathBuf,
}

impl Replies {
    /// The next reply; an `{"error":..}` reply becomes an error.
    fn next_reply(&mut self) -> Result<Option<Reply>, AuditorError> {
        let fail = |why: AdminFailure| AuditorError::Admin {
            path: self.socket.clone(),
            why,
        };
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|source| {
            fail(AdminFailure::Io {
                action: "no answer",
                source,
            })
        })?;
        if n == 0 {
            return Ok(None);
        }
        let reply: Reply = serde_json::from_str(&line)
            .map_err(|e| fail(AdminFailure::BadAnswer(format!("bad answer: {e}"))))?;
        if let Reply::Error(error) = reply {
            return Err(fail(AdminFailure::Refused(error)));
        }
        Ok(Some(reply))
    }
}
