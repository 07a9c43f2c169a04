//! asciicast v2 lines: the header and `[time, code, data]` events.
//!
//! Only what asciinema 2.2 accepts: a header object (extra keys are ignored by players, so
//! session metadata goes under `jitssh`) and 3-element event arrays.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::model::{ChannelKind, SessionMeta};

/// Size of a channel without a pty: what a replay uses.
const DEFAULT_SIZE: (u16, u16) = (80, 24);

#[derive(Serialize)]
struct Header<'a> {
    version: u8,
    width: u16,
    height: u16,
    timestamp: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<&'a str>,
    title: String,
    env: BTreeMap<&'static str, &'a str>,
    jitssh: HeaderMeta<'a>,
}

/// Who and where, so a `.cast` copied out of its directory still says what it is.
#[derive(Serialize)]
struct HeaderMeta<'a> {
    session: &'a str,
    channel_seq: u32,
    channel: u32,
    user: &'a str,
    key_id: &'a str,
    cert_serial: u64,
    login: &'a str,
    target: &'a str,
    client: &'a str,
    session_started_at: u64,
}

/// The header line of the cast of channel `seq` (SSH channel `channel`), opened at Unix time
/// `opened_at`.
pub(crate) fn header(
    meta: &SessionMeta,
    seq: u32,
    channel: u32,
    kind: &ChannelKind,
    opened_at: u64,
) -> Result<Vec<u8>, serde_json::Error> {
    let pty = kind.pty();
    let (width, height) = pty.map_or(DEFAULT_SIZE, |p| (p.cols, p.rows));
    let mut env = BTreeMap::new();
    if let Some(p) = pty {
        env.insert("TERM", p.term.as_str());
    }
    let command = match kind {
        ChannelKind::Exec { command, .. } => Some(command.as_str()),
        _ => None,
    };
    let title = format!(
        "{} as {}@{} ({})",
        meta.user,
        meta.login,
        meta.target,
        command.unwrap_or("shell")
    );
    serde_json::to_vec(&Header {
        version: 2,
        width,
        height,
        timestamp: opened_at,
        command,
        title,
        env,
        jitssh: HeaderMeta {
            session: &meta.id,
            channel_seq: seq,
            channel,
            user: &meta.user,
            key_id: &meta.key_id,
            cert_serial: meta.cert_serial,
            login: &meta.login,
            target: &meta.target,
            client: &meta.client_addr,
            session_started_at: meta.started_at,
        },
    })
}

/// An event line: `[seconds, "code", "data"]`, seconds with microseconds like asciinema.
pub(crate) fn event(at: Duration, code: &str, data: &str) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = format!("[{:.6},\"{code}\",", at.as_secs_f64()).into_bytes();
    serde_json::to_writer(&mut line, data)?;
    line.push(b']');
    Ok(line)
}

/// A resize event: `"COLSxROWS"`.
pub(crate) fn resize(at: Duration, cols: u16, rows: u16) -> Result<Vec<u8>, serde_json::Error> {
    event(at, "r", &format!("{cols}x{rows}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Pty;

    #[test]
    fn events_are_three_element_arrays_with_escaped_data() {
        let line = event(Duration::from_millis(1500), "o", "a\"\u{1b}[1m\r\n").unwrap();
        assert_eq!(
            String::from_utf8(line.clone()).unwrap(),
            r#"[1.500000,"o","a\"\u001b[1m\r\n"]"#
        );
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 3);
        let r = resize(Duration::ZERO, 120, 40).unwrap();
        assert_eq!(r, br#"[0.000000,"r","120x40"]"#);
    }

    #[test]
    fn header_has_size_term_times_and_who() {
        let meta = SessionMeta {
            id: "20261123T180000Z-0a1b2c3d".into(),
            user: "alice".into(),
            key_id: "alice@corp".into(),
            cert_serial: 7,
            login: "deploy".into(),
            target: "web01".into(),
            client_addr: "192.0.2.1:5000".into(),
            started_at: 100,
        };
        let kind = ChannelKind::Shell {
            pty: Some(Pty {
                term: "xterm-256color".into(),
                cols: 132,
                rows: 43,
            }),
        };
        let h: serde_json::Value =
            serde_json::from_slice(&header(&meta, 1, 0, &kind, 101).unwrap()).unwrap();
        assert_eq!(h["version"], 2);
        assert_eq!(
            (h["width"].as_u64(), h["height"].as_u64()),
            (Some(132), Some(43))
        );
        assert_eq!(h["timestamp"], 101);
        assert_eq!(h["env"]["TERM"], "xterm-256color");
        assert_eq!(h["jitssh"]["user"], "alice");
        assert_eq!(h["jitssh"]["target"], "web01");
        assert_eq!(h["jitssh"]["cert_serial"], 7);
        assert!(h.get("command").is_none());

        let exec = ChannelKind::Exec {
            command: "uptime".into(),
            pty: None,
        };
        let h: serde_json::Value =
            serde_json::from_slice(&header(&meta, 2, 1, &exec, 101).unwrap()).unwrap();
        assert_eq!(h["command"], "uptime");
        assert_eq!(
            (h["width"].as_u64(), h["height"].as_u64()),
            (Some(80), Some(24))
        );
    }
}
