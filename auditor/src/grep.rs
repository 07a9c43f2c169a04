//! `sessions grep`: a regular expression over what people saw.
//!
//! Each recording is rendered to text (see [`super::screen`]), so a match is found whatever
//! escape sequences, redraws and backspaces the raw output had, and nothing matches inside an
//! escape sequence. Each match prints `ID  OFFSET  #CHANNEL  LINE`, OFFSET being on the replay
//! timeline: `ssh-bastion replay ID --from OFFSET` starts there.
//!
//! The rendered text keeps every line that was ever shown, including text later overwritten
//! or erased (see [`super::screen`]). `--raw` searches the output as it was written instead,
//! escape sequences removed and lines split at `\n` and `\r` (see [`super::rawtext`]).

use std::io::Write;

use regex::RegexBuilder;

use super::args::GrepArgs;
use super::export::render;
use super::rawtext::RawLines;
use super::screen::TextLine;
use super::timefmt::format_offset;
use super::{Auditor, AuditorError, Outcome, output};
use jitssh_recording::Segment;

/// Longest regex program accepted (the `regex` crate's size limit); patterns are typed by
/// people, but a huge one should fail clearly rather than eat memory.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;

impl Auditor {
    /// `sessions grep PATTERN`: `Failed` (exit 1, like grep) when nothing matched.
    pub fn grep(&self, args: &GrepArgs, out: &mut dyn Write) -> Result<Outcome, AuditorError> {
        let pattern = RegexBuilder::new(&args.pattern)
            .case_insensitive(args.ignore_case)
            .size_limit(PATTERN_SIZE_LIMIT)
            .build()?;
        let ids: Vec<String> = if args.ids.is_empty() {
            self.sessions(&args.filter, None)?
                .into_iter()
                .map(|s| s.id)
                .collect()
        } else {
            args.ids.clone()
        };
        let mut matched = false;
        for id in &ids {
            let recording = match self.recording(id) {
                Ok(r) => r,
                // Pruned recordings have nothing left to search.
                Err(AuditorError::NoRecording { .. }) if args.ids.is_empty() => continue,
                Err(e) => return Err(e),
            };
            let segments = match super::timeline(&recording, None) {
                Ok(s) => s,
                Err(AuditorError::NoRecording { .. }) => continue,
                Err(e) => return Err(e),
            };
            for segment in &segments {
                let lines = if args.raw { raw_lines } else { render };
                lines(segment, &mut |line| {
                    if pattern.is_match(&line.text) {
                        matched = true;
                        writeln!(
                            out,
                            "{id}  {:>9}  #{}  {}",
                            format_offset(line.time),
                            segment.seq,
                            line.text
                        )
                        .map_err(output)?;
                    }
                    Ok(())
                })?;
            }
        }
        Ok(if matched {
            Outcome::Ok
        } else {
            Outcome::Failed
        })
    }
}

/// `segment`'s output as plain lines (see [`super::rawtext`]), on the replay timeline.
fn raw_lines(
    segment: &Segment,
    emit: &mut dyn FnMut(TextLine) -> Result<(), AuditorError>,
) -> Result<(), AuditorError> {
    let mut lines = RawLines::new();
    let mut events = segment.events()?;
    let shift = |mut line: TextLine| {
        line.time += segment.offset;
        line
    };
    while let Some(event) = events.next_event()? {
        if event.code != "o" {
            continue;
        }
        lines.feed(event.time, &event.data);
        for line in lines.take_lines() {
            emit(shift(line))?;
        }
    }
    for line in lines.finish() {
        emit(shift(line))?;
    }
    Ok(())
}
