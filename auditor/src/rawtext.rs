//! The recorded output as plain lines, escape sequences removed and nothing else applied:
//! what `sessions grep --raw` searches.
//!
//! The rendered text ([`super::screen`]) is what the person saw; this is what the program
//! wrote, so text drawn and then overwritten, erased, backspaced over or drawn on a screen
//! that was cleared is found here whatever the emulation made of it. Lines end at `\n`, at
//! `\r` and at control sequences that move the cursor or erase (cursor forward counts as a
//! blank, colours as nothing); other control characters and every escape sequence (CSI, OSC,
//! DCS, APC, PM, SOS, charset designations, 8-bit C1) are dropped. A line longer than [`MAX_LINE`] characters is
//! cut, so memory stays bounded whatever the session printed.

use super::screen::TextLine;

/// Longest line kept whole; longer ones are cut into pieces of this many characters.
pub(crate) const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Ground,
    Escape,
    /// ESC and intermediates: one final character ends it.
    EscapeIntermediate,
    Csi,
    /// A string up to BEL or ST; `esc` after an ESC in it.
    Str {
        esc: bool,
    },
}

/// Splits a stream of output into lines of plain text.
#[derive(Debug)]
pub(crate) struct RawLines {
    state: State,
    line: String,
    chars: usize,
    /// When the line being collected got its first character.
    started: f64,
    out: Vec<TextLine>,
}

impl RawLines {
    /// Nothing read yet.
    pub fn new() -> RawLines {
        RawLines {
            state: State::Ground,
            line: String::new(),
            chars: 0,
            started: 0.0,
            out: Vec::new(),
        }
    }

    /// Reads output written at `time` seconds.
    pub fn feed(&mut self, time: f64, data: &str) {
        let mut rest = data;
        while let Some(c) = rest.chars().next() {
            // Most output is runs of printable ASCII outside any sequence: copied whole
            // (what `put` does a character at a time; 1.7x on issue 12's benchmark).
            if self.state == State::Ground {
                let run = rest
                    .bytes()
                    .take_while(|b| (b' '..=b'~').contains(b))
                    .count();
                if run > 0 {
                    let take = run.min(MAX_LINE - self.chars);
                    if self.chars == 0 {
                        self.started = time;
                    }
                    self.line.push_str(&rest[..take]);
                    self.chars += take;
                    rest = &rest[take..];
                    if self.chars >= MAX_LINE {
                        self.end_line();
                    }
                    continue;
                }
            }
            self.put(time, c);
            rest = &rest[c.len_utf8()..];
        }
    }

    /// Lines ended so far (blank ones left out).
    pub fn take_lines(&mut self) -> Vec<TextLine> {
        std::mem::take(&mut self.out)
    }

    /// The end of the output: the last line too.
    pub fn finish(mut self) -> Vec<TextLine> {
        self.end_line();
        self.out
    }

    fn put(&mut self, time: f64, c: char) {
        self.state = match (self.state, c) {
            (State::Ground, '\u{1b}') => State::Escape,
            (State::Ground, '\r' | '\n') => {
                self.end_line();
                State::Ground
            }
            (State::Ground, '\u{9b}') => State::Csi,
            (State::Ground, '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}') => {
                State::Str { esc: false }
            }
            (State::Ground, '\t') => {
                self.push(time, ' ');
                State::Ground
            }
            (State::Ground, c) if c.is_control() => State::Ground,
            (State::Ground, c) => {
                self.push(time, c);
                State::Ground
            }
            (State::Escape, '[') => State::Csi,
            (State::Escape, ']' | 'P' | '_' | '^' | 'X') => State::Str { esc: false },
            (State::Escape, '\u{1b}') => State::Escape,
            (State::Escape | State::EscapeIntermediate, ' '..='/') => State::EscapeIntermediate,
            (State::Escape | State::EscapeIntermediate, _) => State::Ground,
            // Colours change nothing; cursor forward stands for blanks; anything else moves
            // the cursor or erases, so the text after it is another line.
            (State::Csi, 'm') => State::Ground,
            (State::Csi, 'C') => {
                self.push(time, ' ');
                State::Ground
            }
            (State::Csi, '@'..='~') => {
                self.end_line();
                State::Ground
            }
            (State::Csi, '\u{1b}') => State::Escape,
            (State::Csi, '\u{18}' | '\u{1a}') => State::Ground,
            (State::Csi, ' '..='?') => State::Csi,
            // Controls inside a sequence run; line ends still end lines.
            (State::Csi, '\r' | '\n') => {
                self.end_line();
                State::Csi
            }
            (State::Csi, c) if c.is_control() => State::Csi,
            // Not a sequence after all.
            (State::Csi, _) => State::Ground,
            (State::Str { .. }, '\u{7}' | '\u{9c}' | '\u{18}' | '\u{1a}') => State::Ground,
            (State::Str { esc: true }, '\\') => State::Ground,
            (State::Str { .. }, '\u{1b}') => State::Str { esc: true },
            (State::Str { esc: true }, c) => {
                self.state = State::Escape;
                return self.put(time, c);
            }
            (State::Str { esc: false }, _) => State::Str { esc: false },
        };
    }

    fn push(&mut self, time: f64, c: char) {
        if self.chars == 0 {
            self.started = time;
        }
        self.line.push(c);
        self.chars += 1;
        if self.chars >= MAX_LINE {
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        let text = self.line.trim_end();
        if !text.is_empty() {
            self.out.push(TextLine {
                time: self.started,
                text: text.to_owned(),
            });
        }
        self.line.clear();
        self.chars = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lines of `chunks`, a character at a time (the state machine alone).
    fn char_by_char(chunks: &[(f64, &str)]) -> Vec<TextLine> {
        let mut lines = RawLines::new();
        let mut out = Vec::new();
        for (time, data) in chunks {
            for c in data.chars() {
                lines.put(*time, c);
            }
            out.extend(lines.take_lines());
        }
        out.extend(lines.finish());
        out
    }

    #[test]
    fn copying_runs_of_plain_text_whole_changes_no_line() {
        let long = "x".repeat(MAX_LINE + 100);
        let colour = format!("\u{1b}[1;32m{}\u{1b}[0m tail", "y".repeat(MAX_LINE - 3));
        let chunks: Vec<(f64, &str)> = vec![
            (0.5, "plain line\r\nsecond\tline with tab\r\n"),
            (
                1.0,
                "\u{1b}[1;34mblue\u{1b}[0m and \u{1b}]0;title\u{7}after osc, ",
            ),
            (1.5, "split acr"),
            (
                2.0,
                "oss events, ünïcödé ✓ 漢字\u{1b}[2Cgap\u{1b}[Knext\rover",
            ),
            (2.5, &long),
            (3.0, &colour),
            (3.5, "\u{1b}[31"),
            (4.0, "mcsi split\u{7f}del\n"),
        ];
        let mut lines = RawLines::new();
        let mut fast = Vec::new();
        for (time, data) in &chunks {
            lines.feed(*time, data);
            fast.extend(lines.take_lines());
        }
        fast.extend(lines.finish());
        assert_eq!(fast, char_by_char(&chunks));
        assert!(fast.iter().all(|l| l.text.chars().count() <= MAX_LINE));
        assert!(
            fast.iter()
                .any(|l| l.text == "blue and after osc, split across events, ünïcödé ✓ 漢字 gap")
        );
    }
}
