//! The admin socket's protocol: what the auditor's `sessions watch`/`kill`/`list` send to a
//! running bastion and what it answers. Both sides use these types: the bastion serves them
//! (`ssh-bastion`'s `admin` module, which also says who may connect), the auditor's
//! [`crate::live`] (and a later web console) are clients.
//!
//! One JSON request line from the client, JSON lines back:
//!
//! | request | replies |
//! |---|---|
//! | `{"op":"list"}` | `{"sessions":[{"id","user","login","target","started_at"},...]}` |
//! | `{"op":"watch","session":ID}` | `{"watching":{...}}`, then `{"data":"<base64>"}`... and `{"lagged":N}` when the watcher fell behind, finally `{"ended":"..."}` |
//! | `{"op":"kill","session":ID,"reason":TEXT}` | `{"killed":ID}` once the person was told and disconnected |
//!
//! Any failure is `{"error":"..."}`.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// What watchers and `list` see of a live session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LiveInfo {
    /// Session id.
    pub id: String,
    /// The person.
    pub user: String,
    /// Login on the target.
    pub login: String,
    /// The target.
    pub target: String,
    /// Unix time it started.
    pub started_at: u64,
    /// The person has left and the bastion is completing the record: sealing the recording,
    /// then writing `session.end`. Until then an unsealed recording is not a crash's.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ending: bool,
}

/// A request on the socket (one line).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The live sessions.
    List,
    /// Follow a session's output.
    Watch {
        /// Session id.
        session: String,
    },
    /// End a session.
    Kill {
        /// Session id.
        session: String,
        /// Why.
        reason: String,
    },
}

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// Answer to [`Request::List`]: the live sessions, oldest first.
    Sessions(Vec<LiveInfo>),
    /// First answer to [`Request::Watch`]: the session being watched.
    Watching(LiveInfo),
    /// Output of the watched session, base64 (see [`Reply::data`]).
    Data(String),
    /// The watcher fell behind and this many chunks of output were dropped.
    Lagged(u64),
    /// The watched session ended (the last reply of a watch).
    Ended(String),
    /// Answer to [`Request::Kill`]: the session with this id ended.
    Killed(String),
    /// The request failed; why.
    Error(String),
}

impl Reply {
    /// A [`Reply::Data`] carrying `bytes`.
    pub fn data(bytes: &[u8]) -> Reply {
        Reply::Data(base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    /// The line to send: JSON and a newline.
    pub fn to_line(&self) -> Vec<u8> {
        line(self)
    }
}

impl Request {
    /// The line to send: JSON and a newline.
    pub fn to_line(&self) -> Vec<u8> {
        line(self)
    }
}

fn line(value: &impl Serialize) -> Vec<u8> {
    // These types always serialise (strings and integers only).
    let mut line = serde_json::to_vec(value).unwrap_or_default();
    line.push(b'\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The wire format is what the module docs (and bastions already running) say.
    #[test]
    fn requests_and_replies_keep_their_wire_format() {
        assert_eq!(Request::List.to_line(), b"{\"op\":\"list\"}\n");
        let kill: Request =
            serde_json::from_str(r#"{"op":"kill","session":"s","reason":"r"}"#).unwrap();
        assert_eq!(
            kill,
            Request::Kill {
                session: "s".into(),
                reason: "r".into()
            }
        );
        assert_eq!(Reply::data(b"hi").to_line(), b"{\"data\":\"aGk=\"}\n");
        assert_eq!(Reply::Lagged(3).to_line(), b"{\"lagged\":3}\n");
        assert_eq!(Reply::Error("no".into()).to_line(), b"{\"error\":\"no\"}\n");
        let list: Reply = serde_json::from_str(
            r#"{"sessions":[{"id":"a","user":"u","login":"l","target":"t","started_at":1}]}"#,
        )
        .unwrap();
        assert!(matches!(list, Reply::Sessions(v) if v[0].id == "a"));
    }
}
