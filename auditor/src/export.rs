//! `export`: a session for people and tools outside the bastion.
//!
//! * `asciicast`: asciicast v2 that `asciinema play` and `asciinema cat` accept. One channel
//!   is copied line for line (a torn last line left out); several are joined on the replay
//!   timeline under the first channel's header. Output of a channel without a pty gets the
//!   `\r` before each `\n` that the person's terminal added (players write in raw mode).
//! * `text`: what the person saw, rendered by [`super::screen`]: no escape sequences, `\r`
//!   and backspace applied, full-screen programs as their last frame.
//! * `json`: the journal and every event, one JSON document, streamed.
//!
//! The asciicast and JSON forms are JSON text, in which `serde_json` leaves C1 controls
//! (U+0080..U+009F) raw; they are escaped (`\u009d`), so printing an export cannot act on a
//! terminal. The events themselves are kept as recorded (`asciinema play` plays them
//! unfiltered; `replay` filters them).
//!
//! The export is a copy for reading; the evidence is the recording directory, which
//! `verify` checks.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde_json::{Value, json};

use super::args::{ExportArgs, ExportFormat};
use super::screen::{Screen, TextLine};
use super::termfilter::C1Escaper;
use super::{Auditor, AuditorError, Outcome, output};
use jitssh_recording::{Recording, Segment};

impl Auditor {
    /// `export ID`: to `--out FILE` (created with mode 0600: it is as sensitive as the
    /// recording) or to `out`.
    pub fn export(&self, args: &ExportArgs, out: &mut dyn Write) -> Result<Outcome, AuditorError> {
        let recording = self.recording(&args.id)?;
        match &args.out {
            Some(path) => {
                let file = create_private(path)?;
                let mut w = BufWriter::new(file);
                export_to(&recording, args, &mut w).map_err(|e| match e {
                    AuditorError::Output(source) => AuditorError::Io {
                        path: path.clone(),
                        action: "write",
                        source,
                    },
                    other => other,
                })?;
                w.flush().map_err(AuditorError::io(path, "write"))?;
            }
            None => {
                export_to(&recording, args, out)?;
                out.flush().map_err(output)?;
            }
        }
        Ok(Outcome::Ok)
    }
}

fn create_private(path: &Path) -> Result<File, AuditorError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(AuditorError::io(path, "create"))
}

fn export_to(
    recording: &Recording,
    args: &ExportArgs,
    out: &mut dyn Write,
) -> Result<(), AuditorError> {
    match args.format {
        ExportFormat::Asciicast => {
            let mut out = C1Escaper::new(out);
            asciicast(&super::timeline(recording, args.channel)?, &mut out)?;
            out.finish().map_err(output)
        }
        ExportFormat::Text => {
            let segments = super::timeline(recording, args.channel)?;
            let many = segments.len() > 1;
            for segment in &segments {
                if many {
                    let what = recording
                        .channels
                        .iter()
                        .find(|c| c.seq == segment.seq)
                        .map_or_else(String::new, |c| super::list::printable(&c.describe()));
                    writeln!(out, "--- channel {}: {what} ---", segment.seq).map_err(output)?;
                }
                render(segment, &mut |line| {
                    writeln!(out, "{}", line.text).map_err(output)
                })?;
            }
            Ok(())
        }
        ExportFormat::Json => {
            let mut out = C1Escaper::new(out);
            json_document(recording, args.channel, &mut out)?;
            out.finish().map_err(output)
        }
    }
}

/// asciicast v2: the first channel's header, then every event on the timeline.
fn asciicast(segments: &[Segment], out: &mut dyn Write) -> Result<(), AuditorError> {
    let Some(first) = segments.first() else {
        return Ok(());
    };
    out.write_all(&first.header.line).map_err(output)?;
    out.write_all(b"\n").map_err(output)?;
    for segment in segments {
        if segment.offset > 0.0
            && (segment.header.width, segment.header.height)
                != (first.header.width, first.header.height)
        {
            let size = format!("{}x{}", segment.header.width, segment.header.height);
            writeln!(out, "{}", json!([round6(segment.offset), "r", size])).map_err(output)?;
        }
        let mut events = segment.events()?;
        while let Some(event) = events.next_event()? {
            let onlcr = !segment.pty && event.code == "o" && event.data.contains('\n');
            if segment.offset == 0.0 && !onlcr {
                // As recorded, byte for byte.
                out.write_all(&event.line).map_err(output)?;
                out.write_all(b"\n").map_err(output)?;
            } else {
                let at = round6(segment.offset + event.time);
                let data = if onlcr {
                    event.data.replace('\n', "\r\n")
                } else {
                    event.data
                };
                writeln!(out, "{}", json!([at, event.code, data])).map_err(output)?;
            }
        }
    }
    Ok(())
}

/// Seconds with microsecond precision, like asciinema writes them.
fn round6(t: f64) -> f64 {
    (t * 1e6).round() / 1e6
}

/// Renders one channel's output as text lines, each with its offset on the timeline.
pub(crate) fn render(
    segment: &Segment,
    emit: &mut dyn FnMut(TextLine) -> Result<(), AuditorError>,
) -> Result<(), AuditorError> {
    let mut screen = Screen::new(segment.header.width, segment.header.height);
    if !segment.pty {
        screen = screen.without_pty();
    }
    let mut events = segment.events()?;
    let shift = |mut line: TextLine| {
        line.time += segment.offset;
        line
    };
    while let Some(event) = events.next_event()? {
        match event.code.as_str() {
            "o" => screen.feed(event.time, &event.data),
            "r" => {
                if let Some((c, r)) = parse_size(&event.data) {
                    screen.resize(c, r);
                }
            }
            _ => continue,
        }
        for line in screen.take_lines() {
            emit(shift(line))?;
        }
    }
    for line in screen.finish() {
        emit(shift(line))?;
    }
    Ok(())
}

/// `COLSxROWS`, clamped like the header; `None` for a size of 0 (unknown: the size stays).
fn parse_size(text: &str) -> Option<(u16, u16)> {
    let (c, r) = text.split_once('x')?;
    let (c, r) = (c.parse::<u16>().ok()?, r.parse::<u16>().ok()?);
    (c > 0 && r > 0).then_some((c.min(1000), r.min(500)))
}

/// `{"id":..,"session":..,"journal":[..],"transfers":[..],"channels":[{"seq":..,"offset":..,"header":..,"bulk":[..],"events":[..]}]}`
/// written as it is read; `bulk` lists output kept as size and SHA-256 only.
fn json_document(
    recording: &Recording,
    only: Option<u32>,
    out: &mut dyn Write,
) -> Result<(), AuditorError> {
    let meta = recording
        .meta()
        .and_then(|m| serde_json::to_value(m).ok())
        .unwrap_or(Value::Null);
    // Per-file transfer records, each with its channel's `seq` (also in the journal as
    // `transfer.file`).
    let transfers: Vec<Value> = recording
        .channels
        .iter()
        .filter(|c| only.is_none_or(|seq| seq == c.seq))
        .flat_map(|c| {
            c.files.iter().map(move |f| {
                let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
                if let Value::Object(m) = &mut v {
                    m.insert("seq".into(), c.seq.into());
                }
                v
            })
        })
        .collect();
    write!(
        out,
        "{{\"id\":{},\"session\":{meta},\"sealed\":{},\"journal\":{},\"transfers\":{}",
        json!(recording.id),
        recording.has_seal(),
        Value::Array(recording.journal.clone()),
        Value::Array(transfers)
    )
    .map_err(output)?;
    let segments = match super::timeline(recording, only) {
        Ok(s) => s,
        // Transfers only: the journal says it all.
        Err(AuditorError::NoRecording { .. }) => Vec::new(),
        Err(e) => return Err(e),
    };
    write!(out, ",\"channels\":[").map_err(output)?;
    for (i, segment) in segments.iter().enumerate() {
        if i > 0 {
            write!(out, ",").map_err(output)?;
        }
        // Output recorded as size and SHA-256 only, as the journal tells it.
        let bulk: Vec<Value> = recording
            .channels
            .iter()
            .filter(|c| c.seq == segment.seq)
            .flat_map(|c| &c.bulk)
            .map(|b| {
                json!({"stream": b.stream, "reason": b.reason, "offset": b.offset,
                       "bytes": b.bytes, "sha256": b.sha256})
            })
            .collect();
        write!(
            out,
            "{{\"seq\":{},\"offset\":{},\"header\":{},\"bulk\":{},\"events\":[",
            segment.seq,
            round6(segment.offset),
            segment.header.value,
            Value::Array(bulk)
        )
        .map_err(output)?;
        let mut events = segment.events()?;
        let mut first = true;
        while let Some(event) = events.next_event()? {
            if !first {
                write!(out, ",").map_err(output)?;
            }
            first = false;
            write!(out, "{}", json!([event.time, event.code, event.data])).map_err(output)?;
        }
        write!(out, "]}}").map_err(output)?;
    }
    writeln!(out, "]}}").map_err(output)?;
    Ok(())
}
