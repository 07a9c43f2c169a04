//! `sessions list` and `sessions show`: finding sessions in the index, and everything known
//! about one (index row, recording journal and seal, audit log).

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use jitssh_core::store::SessionRecord;
use serde_json::{Map, Value, json};

use super::args::ListArgs;
use super::termfilter::C1Escaper;
use super::timefmt::{format_bytes, format_duration, format_unix};
use super::{Auditor, AuditorError, Liveness, Outcome, Status, output};
use jitssh_recording::filexfer::FileRecord;
use jitssh_recording::{BulkEntry, BulkReason, ChannelEntry, Recording, SEAL_FILE};

/// Audit record members already shown in the session's header.
const SHOWN: [&str; 9] = [
    "seq", "time", "event", "prev", "hash", "session", "person", "login", "target",
];

impl Auditor {
    /// `sessions list`: a table (or JSON lines), newest first.
    pub fn list(&self, args: &ListArgs, out: &mut dyn Write) -> Result<Outcome, AuditorError> {
        let sessions = self.sessions(&args.filter, args.limit)?;
        let now = jitssh_core::unix_now();
        let live = if sessions.iter().any(|s| s.ended_at.is_none()) {
            self.liveness()
        } else {
            Liveness::Known(Vec::new())
        };
        if args.json {
            // Names come from people (key ids, logins): C1 controls in them are escaped.
            let mut out = C1Escaper::new(out);
            for s in &sessions {
                let mut v = serde_json::to_value(s).unwrap_or(Value::Null);
                if let Value::Object(map) = &mut v {
                    let status = live.status(s);
                    let active = matches!(status, Status::Active | Status::MaybeActive);
                    map.insert("active".into(), active.into());
                    map.insert("ending".into(), (status == Status::Ending).into());
                    map.insert("unfinished".into(), (status == Status::Unfinished).into());
                    map.insert(
                        "recording_bytes".into(),
                        self.recording_bytes(s).unwrap_or(0).into(),
                    );
                }
                writeln!(out, "{v}").map_err(output)?;
            }
            out.finish().map_err(output)?;
            return Ok(Outcome::Ok);
        }
        if sessions.is_empty() {
            writeln!(out, "no sessions match").map_err(output)?;
            return Ok(Outcome::Ok);
        }
        let mut rows = vec![[
            "ID".to_owned(),
            "USER".into(),
            "LOGIN@TARGET".into(),
            "START (UTC)".into(),
            "DURATION".into(),
            "IN/OUT".into(),
            "EXIT".into(),
            "RECORDING".into(),
        ]];
        for s in &sessions {
            let running = format_duration(now.saturating_sub(s.started_at));
            let duration = match (s.ended_at, live.status(s)) {
                (Some(end), _) => format_duration(end.saturating_sub(s.started_at)),
                (None, Status::Active) => format!("active {running}"),
                (None, Status::MaybeActive) => format!("active? {running}"),
                (None, Status::Ending) => "ending".to_owned(),
                (None, _) => "unfinished".to_owned(),
            };
            let recording = match self.recording_bytes(s) {
                Some(bytes) => format_bytes(bytes),
                None => "pruned".into(),
            };
            rows.push([
                s.id.clone(),
                s.user.clone(),
                format!("{}@{}", s.login, s.target),
                format_unix(s.started_at),
                duration,
                format!("{}/{}", format_bytes(s.bytes_in), format_bytes(s.bytes_out)),
                s.exit_status.map_or("-".into(), |e| e.to_string()),
                recording,
            ]);
        }
        for row in &mut rows {
            for cell in row.iter_mut() {
                *cell = printable(cell);
            }
        }
        write_table(out, &rows).map_err(output)?;
        Ok(Outcome::Ok)
    }

    /// Where the recording of an indexed session is.
    fn dir_of(&self, s: &SessionRecord) -> std::path::PathBuf {
        match jitssh_recording::session_dir(&self.recordings, &s.id) {
            Ok(dir) if dir.is_dir() => dir,
            _ => s.recording.clone().into(),
        }
    }

    /// Bytes of an indexed session's recording, wherever it is; `None` if it is gone.
    fn recording_bytes(&self, s: &SessionRecord) -> Option<u64> {
        let dir = self.dir_of(s);
        if dir.is_dir() {
            return Some(dir_size(&dir));
        }
        let store = self.store.as_ref()?;
        store
            .session(&s.id)
            .ok()
            .flatten()
            .map(|stored| stored.bytes())
    }

    /// Where a recording read from `dir` is kept: the directory, or the bucket's location if
    /// it was fetched from there.
    pub(crate) fn location(&self, id: &str, dir: &Path) -> String {
        match &self.store {
            Some(store) if !dir.starts_with(&self.recordings) => {
                jitssh_recording::session_dir(Path::new(store.url()), id)
                    .map_or_else(|_| store.url().to_owned(), |p| p.display().to_string())
            }
            _ => dir.display().to_string(),
        }
    }

    /// `sessions show ID`.
    pub fn show(&self, id: &str, out: &mut dyn Write) -> Result<Outcome, AuditorError> {
        let row = self.indexed(id)?;
        let recording = match self.recording(id) {
            Ok(r) => Some(r),
            Err(AuditorError::NoRecording { .. }) => None,
            Err(e) => return Err(e),
        };
        let audit = self.audit_events(id)?;
        let meta = recording.as_ref().and_then(Recording::meta);
        let w = &mut *out;
        writeln!(w, "Session {id}").map_err(output)?;
        let field = |w: &mut dyn Write, name: &str, value: &str| {
            writeln!(w, "  {name:<14}{}", printable(value)).map_err(output)
        };
        let (user, key_id, serial, login, target, client, started) = match (&row, &meta) {
            (Some(r), _) => (
                r.user.clone(),
                r.key_id.clone(),
                r.cert_serial,
                r.login.clone(),
                r.target.clone(),
                r.client_addr.clone(),
                r.started_at,
            ),
            (None, Some(m)) => (
                m.user.clone(),
                m.key_id.clone(),
                m.cert_serial,
                m.login.clone(),
                m.target.clone(),
                m.client_addr.clone(),
                m.started_at,
            ),
            (None, None) => return Err(AuditorError::NoSuchSession(id.to_owned())),
        };
        field(w, "person", &user)?;
        field(w, "login@target", &format!("{login}@{target}"))?;
        field(w, "client", &client)?;
        field(w, "started", &format_unix(started))?;
        let end = recording
            .as_ref()
            .and_then(|r| r.journal_event("session.end").cloned());
        let (ended, reason, bytes_in, bytes_out, exit) = match (&row, &end) {
            (Some(r), _) if r.ended_at.is_some() => (
                r.ended_at,
                r.end_reason.clone(),
                r.bytes_in,
                r.bytes_out,
                r.exit_status,
            ),
            (_, Some(e)) => (
                e["ended_at"].as_u64(),
                e["reason"].as_str().map(str::to_owned),
                e["bytes_in"].as_u64().unwrap_or(0),
                e["bytes_out"].as_u64().unwrap_or(0),
                e["exit_status"]
                    .as_u64()
                    .and_then(|s| u32::try_from(s).ok()),
            ),
            (Some(r), None) => (None, None, r.bytes_in, r.bytes_out, None),
            (None, None) => (None, None, 0, 0, None),
        };
        match ended {
            Some(at) => field(
                w,
                "ended",
                &format!(
                    "{} after {}: {}",
                    format_unix(at),
                    format_duration(at.saturating_sub(started)),
                    reason.as_deref().unwrap_or("no reason recorded")
                ),
            )?,
            None => field(
                w,
                "ended",
                "not yet (active, or the bastion stopped mid-session)",
            )?,
        }
        if let Some(status) = exit {
            field(w, "exit status", &status.to_string())?;
        }
        field(
            w,
            "bytes",
            &format!(
                "in {}, out {}",
                format_bytes(bytes_in),
                format_bytes(bytes_out)
            ),
        )?;
        let rec_text = match &recording {
            Some(r) => {
                let seal = if r.has_seal() {
                    "sealed; `ssh-bastion verify` checks it"
                } else {
                    "NOT sealed (active, or the bastion stopped mid-session)"
                };
                format!(
                    "{} ({seal}; {})",
                    self.location(id, &r.dir),
                    format_bytes(dir_size(&r.dir))
                )
            }
            None => "gone (pruned?)".into(),
        };
        field(w, "recording", &rec_text)?;

        writeln!(w, "\nCertificates").map_err(output)?;
        writeln!(
            w,
            "  user certificate      serial {serial}, key id {:?}",
            key_id
        )
        .map_err(output)?;
        let start = audit.iter().find(|e| e["event"] == "session.start");
        match start.and_then(|e| e.get("session_cert_serial")) {
            Some(s) => writeln!(
                w,
                "  session certificate   serial {}, minted by the CA for this session (principal {}, to {})",
                printable(&s.to_string()),
                printable(&login),
                printable(&target)
            )
            .map_err(output)?,
            None => writeln!(w, "  session certificate   none recorded (the target was not reached)")
                .map_err(output)?,
        }
        if let Some(seal) = recording.as_ref().and_then(|r| read_seal(&r.dir)) {
            writeln!(
                w,
                "  recording sealed by   {}",
                printable(seal["signer"].as_str().unwrap_or("?"))
            )
            .map_err(output)?;
        }

        if let Some(r) = &recording {
            let (transfers, terminals): (Vec<&ChannelEntry>, Vec<&ChannelEntry>) =
                r.channels.iter().partition(|c| c.is_transfer());
            writeln!(w, "\nChannels (terminal and commands)").map_err(output)?;
            if terminals.is_empty() {
                writeln!(w, "  none").map_err(output)?;
            }
            for ch in terminals {
                writeln!(w, "  #{} {}", ch.seq, printable(&channel_line(ch))).map_err(output)?;
                // Output kept as size and digest only (a download through `ssh host cmd`).
                for bulk in &ch.bulk {
                    writeln!(w, "      {}", printable(&describe_bulk(bulk))).map_err(output)?;
                }
            }
            writeln!(w, "\nTransfers").map_err(output)?;
            if transfers.is_empty() {
                writeln!(w, "  none").map_err(output)?;
            }
            for ch in transfers {
                writeln!(w, "  #{} {}", ch.seq, printable(&channel_line(ch))).map_err(output)?;
                if let Some(s) = &ch.summary {
                    for (dir, bytes, sha) in [
                        ("up", s.bytes_in, &s.sha256_in),
                        ("down", s.bytes_out, &s.sha256_out),
                    ] {
                        if let Some(sha) = sha {
                            writeln!(w, "      {dir:<5}{:>10}  sha256 {sha}", format_bytes(bytes))
                                .map_err(output)?;
                        }
                    }
                }
                // The files it moved and what it did to them (sftp, scp).
                for file in ch.files.iter().filter(|f| shown_file(f)) {
                    writeln!(w, "      {}", printable(&describe_file(file))).map_err(output)?;
                }
            }
        }

        writeln!(w, "\nAudit events ({})", self.audit_log.display()).map_err(output)?;
        if audit.is_empty() {
            writeln!(w, "  none").map_err(output)?;
        }
        for e in &audit {
            let rest: Map<String, Value> = e
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(k, _)| !SHOWN.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect()
                })
                .unwrap_or_default();
            let fields: Vec<String> = rest
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}={s:?}"),
                    other => format!("{k}={other}"),
                })
                .collect();
            // Recorded values come from people (commands, terminal names): shown, never
            // interpreted, whatever they hold.
            let line = format!(
                "  #{:<6} {}  {:<24} {}",
                e["seq"],
                e["time"].as_str().unwrap_or(""),
                e["event"].as_str().unwrap_or(""),
                fields.join(" ")
            );
            writeln!(w, "{}", printable(&line)).map_err(output)?;
        }
        Ok(Outcome::Ok)
    }

    /// Records of the bastion's audit log about session `id`.
    fn audit_events(&self, id: &str) -> Result<Vec<Value>, AuditorError> {
        let file = match File::open(&self.audit_log) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(AuditorError::io(&self.audit_log, "open")(e)),
        };
        let needle = json!(id).to_string();
        let mut found = Vec::new();
        for line in BufReader::new(file).split(b'\n') {
            let line = line.map_err(AuditorError::io(&self.audit_log, "read"))?;
            // Cheap test first; most records are about other sessions.
            if !line.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                continue;
            }
            if let Ok(v) = serde_json::from_slice::<Value>(&line)
                && v["session"] == id
            {
                found.push(v);
            }
        }
        Ok(found)
    }
}

/// `shell (pty ...)  exit 0  in 12 B, out 4.0 KiB  chan-1.cast`.
fn channel_line(ch: &ChannelEntry) -> String {
    let mut parts = vec![ch.describe()];
    if let Some(s) = &ch.summary {
        if let Some(status) = s.exit_status {
            parts.push(format!("exit {status}"));
        }
        if let Some(signal) = &s.exit_signal {
            parts.push(format!("killed by SIG{signal}"));
        }
        parts.push(format!(
            "in {}, out {}",
            format_bytes(s.bytes_in),
            format_bytes(s.bytes_out + s.bytes_err)
        ));
    } else {
        parts.push("not closed".into());
    }
    if let Some(file) = &ch.file {
        parts.push(file.clone());
    }
    if let Some(opened) = &ch.opened {
        parts.push(format!("opened {opened}"));
    }
    parts.join("  ")
}

/// The seal's manifest, unverified (for display; `verify` checks it).
fn read_seal(dir: &Path) -> Option<Value> {
    let bytes = std::fs::read(dir.join(SEAL_FILE)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `stdout: 1073741824 bytes after the first 1.0 MiB not stored (over the limit); sha256
/// of all 1074790400 bytes: <hex>`.
/// Per-file records shown by `sessions show`: all but opens that succeeded (their file's
/// `close` says more).
fn shown_file(file: &FileRecord) -> bool {
    !(file.op == "open" && file.status == "ok")
}

/// One per-file transfer record as a line: `upload /srv/a.txt 6000 bytes sha256 <hex>`,
/// `download /x 10 bytes partial (2 ranges, 0..300)`, `rename /a -> /b`, with the status
/// when it is not `ok`.
pub(crate) fn describe_file(file: &FileRecord) -> String {
    let path = file.path.as_deref().unwrap_or("-");
    let mut line = match (file.direction, file.size) {
        (Some(direction), Some(size)) => {
            let what = match (&file.sha256, file.whole) {
                (Some(sha), Some(true)) => format!("sha256 {sha}"),
                _ => {
                    let span = file
                        .range
                        .map(|[a, b]| format!(", bytes {a}..{b}"))
                        .unwrap_or_default();
                    format!("partial ({} ranges{span})", file.ranges.unwrap_or(0))
                }
            };
            format!("{:<8} {path}  {size} bytes  {what}", direction.as_str())
        }
        _ => {
            let mut line = format!("{:<8} {path}", file.op);
            if let Some(to) = &file.to {
                line.push_str(&format!(" -> {to}"));
            }
            if let Some(detail) = file.detail.as_deref().filter(|d| !d.is_empty()) {
                line.push_str(&format!("  ({detail})"));
            }
            line
        }
    };
    if file.status != "ok" {
        line.push_str(&format!("  [{}]", file.status));
    }
    format!("{} {line}", file.protocol)
}

pub(crate) fn describe_bulk(bulk: &BulkEntry) -> String {
    let why = match bulk.reason {
        Some(BulkReason::Limit) => "over the limit",
        Some(BulkReason::Binary) => "binary",
        Some(BulkReason::Quota) => "over the recording quota",
        None => "reason unknown",
    };
    let first = if bulk.offset == 0 {
        "from the first byte".to_owned()
    } else {
        format!("after the first {}", format_bytes(bulk.offset))
    };
    match (bulk.bytes, &bulk.sha256) {
        (Some(total), Some(sha)) => format!(
            "{}: {} bytes {first} recorded as size and SHA-256 only ({why}); sha256 of all {total} bytes: {sha}",
            bulk.stream,
            total.saturating_sub(bulk.offset)
        ),
        _ => format!(
            "{}: {first} recorded as size and SHA-256 only ({why}); size and digest lost (the channel never closed)",
            bulk.stream
        ),
    }
}

/// `text` safe to print on the auditor's terminal: control characters (escape sequences
/// planted in a key id, a command, a reason) are shown escaped, never interpreted.
pub(crate) fn printable(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<char>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

/// Total size of the files in `dir` (0 if it is gone).
pub(crate) fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(std::fs::Metadata::is_file)
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Left-aligned columns, two spaces apart.
fn write_table<const N: usize>(out: &mut dyn Write, rows: &[[String; N]]) -> std::io::Result<()> {
    let mut widths = [0usize; N];
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in rows {
        let mut line = String::new();
        for (i, (cell, w)) in row.iter().zip(widths).enumerate() {
            line.push_str(cell);
            if i + 1 < N {
                line.extend(std::iter::repeat_n(' ', w - cell.chars().count() + 2));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
