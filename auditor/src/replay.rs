//! `replay`: plays a session's terminal output back with its timing.
//!
//! Interactive when standard input and output are terminals: the auditor's terminal goes to
//! raw mode, space pauses and resumes, `+`/`-` double or halve the speed, `q` (or Ctrl-C)
//! quits. When the output is a terminal, progress (recorded time elapsed / total) shows in
//! its title; otherwise the output is streamed with its timing and progress goes to standard
//! error, at most once a second.
//!
//! The recorded output is written through [`super::termfilter`]: what draws the screen
//! passes, what would act on the auditor's terminal (clipboard, title, queries it would
//! answer, input modes) is dropped.
//!
//! Times are recording time: `--from` skips to an offset (what came before is written at
//! once, so the screen is right), `--max-idle` shortens long pauses, `--speed` divides every
//! wait. Channels play one after the other (see [`jitssh_recording::reader`]'s timeline).

use std::io::{IsTerminal, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use super::args::ReplayArgs;
use super::termfilter::TermFilter;
use super::timefmt::{format_offset, parse_offset};
use super::{Auditor, AuditorError, Outcome, output, tty};
use jitssh_recording::reader::{Segment, total};

/// How often progress is shown while waiting.
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// Fastest and slowest speed `+`/`-` reach.
const MAX_SPEED: f64 = 256.0;
const MIN_SPEED: f64 = 1.0 / 64.0;

/// How playback is timed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub speed: f64,
    pub max_idle: Option<f64>,
    pub from: f64,
}

/// Where progress goes.
pub(crate) enum Progress<'a> {
    /// The terminal's title (interactive: output and progress share a terminal).
    Title,
    /// Lines on a writer (standard error).
    Lines(&'a mut dyn Write),
}

/// How a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Played {
    /// To the end.
    Finished,
    /// The auditor quit.
    Quit,
}

impl Auditor {
    /// `replay ID`, on the process's standard streams.
    pub fn replay(&self, args: &ReplayArgs) -> Result<Outcome, AuditorError> {
        if !(args.speed.is_finite() && args.speed > 0.0) {
            return Err(AuditorError::BadArgument(format!(
                "--speed must be a positive number, got {}",
                args.speed
            )));
        }
        if let Some(idle) = args.max_idle
            && !(idle.is_finite() && idle >= 0.0)
        {
            return Err(AuditorError::BadArgument(format!(
                "--max-idle must be 0 or more seconds, got {idle}"
            )));
        }
        let from = args
            .from
            .as_deref()
            .map(parse_offset)
            .transpose()?
            .unwrap_or(0.0);
        let recording = self.recording(&args.id)?;
        let segments = super::timeline(&recording, args.channel)?;
        let length = total(&segments);
        if from > length {
            return Err(AuditorError::BadArgument(format!(
                "--from {} is after the end of the recording ({})",
                format_offset(from),
                format_offset(length)
            )));
        }
        let timing = Timing {
            speed: args.speed,
            max_idle: args.max_idle,
            from,
        };
        let stdout = std::io::stdout();
        // On a terminal, progress goes to its title (lines would mix with the output); keys
        // are read when the keyboard is that terminal too.
        let on_terminal = stdout.is_terminal();
        let interactive = on_terminal && std::io::stdin().is_terminal();
        let mut out = stdout.lock();
        let mut err = std::io::stderr();
        let played = if on_terminal {
            let _raw = if interactive {
                let raw = tty::RawMode::enter()
                    .map_err(|e| AuditorError::io("standard input", "set raw mode")(e))?;
                let _ = writeln!(
                    err,
                    "replay {}: space pause/resume, + faster, - slower, q quit\r",
                    args.id
                );
                Some(raw)
            } else {
                None
            };
            let keys = interactive.then(tty::keys);
            let played = play(
                &segments,
                timing,
                &mut out,
                Progress::Title,
                keys.as_ref(),
                &args.id,
            );
            // Leave the title as it was meant to be without us, and the drawing state as
            // the auditor's terminal had it.
            let _ = write!(out, "\u{1b}]2;\u{7}");
            let _ = out.write_all(super::termfilter::RESTORE);
            let _ = out.flush();
            played?
        } else {
            play(
                &segments,
                timing,
                &mut out,
                Progress::Lines(&mut err),
                None,
                &args.id,
            )?
        };
        let how = match played {
            Played::Finished => "finished",
            Played::Quit => "stopped",
        };
        // In a terminal the replayed output may end mid-line, and the terminal is raw.
        let (before, after) = if interactive {
            ("\r\n", "\r")
        } else {
            ("", "")
        };
        let _ = writeln!(
            std::io::stderr(),
            "{before}replay {}: {how} ({} recorded){after}",
            args.id,
            format_offset(length)
        );
        // Output the cast does not hold (its note says so where it stops): say it again
        // where the auditor looks last.
        let played = |seq: u32| segments.iter().any(|s| s.seq == seq);
        for ch in recording.channels.iter().filter(|c| played(c.seq)) {
            for bulk in &ch.bulk {
                let _ = writeln!(
                    std::io::stderr(),
                    "replay {}: channel {} {}{after}",
                    args.id,
                    ch.seq,
                    super::list::printable(&super::list::describe_bulk(bulk))
                );
            }
        }
        Ok(Outcome::Ok)
    }
}

/// The playback state that keys change.
struct State<'k> {
    speed: f64,
    keys: Option<&'k mpsc::Receiver<u8>>,
    quit: bool,
}

/// Plays `segments` to `out`.
pub(crate) fn play(
    segments: &[Segment],
    timing: Timing,
    out: &mut dyn Write,
    mut progress: Progress<'_>,
    keys: Option<&mpsc::Receiver<u8>>,
    id: &str,
) -> Result<Played, AuditorError> {
    let length = total(segments);
    let mut state = State {
        speed: timing.speed,
        keys,
        quit: false,
    };
    let mut last_progress = Instant::now();
    let mut shown = String::new();
    let mut show = |progress: &mut Progress<'_>, at: f64, speed: f64, out: &mut dyn Write| {
        let text = format!(
            "replay {id}: {} / {} (x{speed})",
            format_offset(at),
            format_offset(length)
        );
        if text == shown {
            return;
        }
        let _ = match progress {
            Progress::Title => write!(out, "\u{1b}]2;{text}\u{7}").and_then(|()| out.flush()),
            Progress::Lines(w) => writeln!(w, "{text}"),
        };
        shown = text;
    };
    let mut clock = timing.from;
    // One filter for the whole playback: what the auditor's terminal sees is one stream.
    let mut filter = TermFilter::new();
    for segment in segments {
        let mut events = segment.events()?;
        while let Some(event) = events.next_event()? {
            if event.code != "o" {
                continue;
            }
            let at = segment.offset + event.time;
            if at > clock {
                let mut wait = at - clock;
                if let Some(idle) = timing.max_idle {
                    wait = wait.min(idle);
                }
                let mut left = Duration::from_secs_f64(wait / state.speed);
                let whole = left.as_secs_f64();
                while !left.is_zero() {
                    let slice = left.min(PROGRESS_EVERY);
                    let started = Instant::now();
                    state.wait(slice, out)?;
                    if state.quit {
                        return Ok(Played::Quit);
                    }
                    left = left.saturating_sub(started.elapsed().min(slice));
                    if last_progress.elapsed() >= Duration::from_secs(1)
                        || matches!(progress, Progress::Title)
                    {
                        let done = 1.0 - left.as_secs_f64() / whole;
                        show(&mut progress, clock + (at - clock) * done, state.speed, out);
                        last_progress = Instant::now();
                    }
                }
                clock = at;
            }
            out.write_all(&filter.filter(event.data.as_bytes()))
                .map_err(output)?;
            out.flush().map_err(output)?;
            if state.poll(out)? {
                return Ok(Played::Quit);
            }
        }
    }
    show(&mut progress, length, state.speed, out);
    Ok(Played::Finished)
}

impl State<'_> {
    /// Waits `slice`, handling keys meanwhile.
    fn wait(&mut self, slice: Duration, out: &mut dyn Write) -> Result<(), AuditorError> {
        let Some(keys) = self.keys else {
            std::thread::sleep(slice);
            return Ok(());
        };
        let deadline = Instant::now() + slice;
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Ok(());
            }
            match keys.recv_timeout(deadline - now) {
                Ok(key) => {
                    self.key(key, out)?;
                    if self.quit {
                        return Ok(());
                    }
                }
                Err(RecvTimeoutError::Timeout) => return Ok(()),
                // Standard input closed: no more keys, plain timing.
                Err(RecvTimeoutError::Disconnected) => {
                    self.keys = None;
                    std::thread::sleep(deadline - now);
                    return Ok(());
                }
            }
        }
    }

    /// Handles keys already typed; true if the auditor quit.
    fn poll(&mut self, out: &mut dyn Write) -> Result<bool, AuditorError> {
        while let Some(key) = self.keys.and_then(|k| k.try_recv().ok()) {
            self.key(key, out)?;
        }
        Ok(self.quit)
    }

    fn key(&mut self, key: u8, out: &mut dyn Write) -> Result<(), AuditorError> {
        match key {
            b'q' | b'Q' | 3 | 4 => self.quit = true,
            b'+' | b'=' => self.speed = (self.speed * 2.0).min(MAX_SPEED),
            b'-' | b'_' => self.speed = (self.speed / 2.0).max(MIN_SPEED),
            b' ' => {
                let _ = write!(out, "\u{1b}]2;replay paused: space resumes, q quits\u{7}");
                let _ = out.flush();
                // Paused until the next key.
                let Some(keys) = self.keys else { return Ok(()) };
                match keys.recv() {
                    Ok(b'q' | b'Q' | 3 | 4) | Err(_) => self.quit = true,
                    Ok(_) => {}
                }
            }
            _ => {}
        }
        Ok(())
    }
}
