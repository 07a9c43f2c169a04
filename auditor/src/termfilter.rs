//! What recorded output may do to the auditor's terminal: draw, nothing else.
//!
//! `replay` and `sessions watch` write what a session's user printed to the auditor's own
//! terminal. Raw, that output could act on it: set the clipboard (OSC 52), change its title,
//! ask it questions whose answers it types back into the auditor's input (DA `ESC[c`, DSR
//! `ESC[6n`, DECRQSS, XTGETTCAP, `ESC Z`, ENQ), turn on mouse reporting or bracketed paste,
//! remap keys, lock the keyboard. [`TermFilter`] is a streaming filter with an allow-list:
//!
//! * passed: printable text (always re-encoded as valid UTF-8), BS, HT, LF, VT, FF, CR, BEL,
//!   SO/SI; CSI sequences that draw (SGR colours, cursor movement and addressing, erase,
//!   insert/delete, scroll and scroll regions, save/restore cursor, tab stops, repeat, insert
//!   mode, cursor style); the DEC private modes that draw (origin mode, autowrap, cursor
//!   blink and visibility, alternate screen); `ESC 7`/`8`/`D`/`E`/`M`/`H`/`c` and charset
//!   designations (`ESC ( B` ...);
//! * dropped whole: every OSC, DCS, APC, PM and SOS string; every other CSI or escape
//!   sequence (reports and queries, window operations, mouse, keyboard and paste modes,
//!   soft reset, printing); other C0 controls (ENQ, NUL, ...);
//! * 8-bit C1 controls, as a raw byte or UTF-8 encoded (U+0080..U+009F): CSI (0x9B) is read
//!   as `ESC [` and filtered the same way (an allowed sequence is written in its 7-bit form),
//!   the string introducers swallow their string, any other C1 control is dropped. Bytes that
//!   are not UTF-8 become U+FFFD. So the output is valid UTF-8 with no C1 control in it.
//!
//! Sequences may be split anywhere across chunks; the state between chunks is bounded (a
//! control sequence longer than [`MAX_SEQUENCE`] bytes is dropped whole, strings are skipped
//! without being kept).

/// Undoes the drawing state a session may leave behind on the auditor's terminal: the
/// G0 charset and shift-in (no line-drawing letters), default colours, a visible cursor,
/// autowrap, no origin mode, the full screen as scroll region (cursor kept where it is).
pub(crate) const RESTORE: &[u8] = b"\x0f\x1b(B\x1b[0m\x1b[?25h\x1b[?7h\x1b7\x1b[?6l\x1b[r\x1b8";

/// Longest control sequence kept to be judged; a longer one is dropped whole.
pub(crate) const MAX_SEQUENCE: usize = 64;

/// DEC private modes (`CSI ? N h/l`) that only change how the screen is drawn: origin mode,
/// autowrap, cursor blink, cursor visibility, alternate screen (and its cursor save).
const DRAWING_PRIVATE_MODES: [u32; 8] = [6, 7, 12, 25, 47, 1047, 1048, 1049];

/// The replacement character, for bytes that are not UTF-8.
const REPLACEMENT: &[u8] = "\u{fffd}".as_bytes();

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Ground,
    /// Inside a multibyte UTF-8 character: `have` bytes of it in `utf8`, `len` in all.
    Utf8 {
        have: usize,
        len: usize,
    },
    /// After ESC.
    Escape,
    /// After ESC and an intermediate byte (charset designation and the like).
    EscapeIntermediate,
    /// A control sequence (CSI) collected in `seq` (without its introducer).
    Csi,
    /// A control sequence too long to judge: skipped to its final byte.
    CsiOverflow,
    /// An OSC/DCS/APC/PM/SOS string, skipped to its terminator (BEL or ST); `esc` after an
    /// ESC inside it.
    Str {
        esc: bool,
    },
}

/// Streaming filter from recorded output to what may reach the auditor's terminal (see the
/// module docs). One per output stream: it keeps the state of a sequence split across
/// chunks.
#[derive(Debug)]
pub(crate) struct TermFilter {
    state: State,
    /// The bytes of the UTF-8 character being read.
    utf8: [u8; 4],
    /// The sequence being collected (CSI parameters and final, or ESC intermediates).
    seq: Vec<u8>,
}

impl Default for TermFilter {
    fn default() -> Self {
        Self::new()
    }
}

impl TermFilter {
    /// A filter in its ground state.
    pub fn new() -> TermFilter {
        TermFilter {
            state: State::Ground,
            utf8: [0; 4],
            seq: Vec::with_capacity(MAX_SEQUENCE),
        }
    }

    /// Forgets a sequence in progress (after output was lost, e.g. a watcher that lagged).
    pub fn reset(&mut self) {
        self.state = State::Ground;
        self.seq.clear();
    }

    /// Filters `input`, appending what may be shown to `out`.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        for &b in input {
            self.byte(b, out);
        }
    }

    /// Filters `input` into a new buffer.
    pub fn filter(&mut self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        self.feed(input, &mut out);
        out
    }

    fn byte(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Ground => self.ground(b, out),
            State::Utf8 { have, len } => self.utf8_continue(b, have, len, out),
            State::Escape => self.escape(b, out),
            State::EscapeIntermediate => self.escape_intermediate(b, out),
            State::Csi | State::CsiOverflow => self.csi(b, out),
            State::Str { esc } => self.string(b, esc, out),
        }
    }

    fn ground(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            0x1b => self.state = State::Escape,
            0x20..=0x7e => out.push(b),
            0x7f => {}
            0x00..=0x1f => {
                if allowed_c0(b) {
                    out.push(b);
                }
            }
            // A raw 8-bit C1 control.
            0x80..=0x9f => self.c1(b),
            0xc2..=0xdf => self.start_utf8(b, 2),
            0xe0..=0xef => self.start_utf8(b, 3),
            0xf0..=0xf4 => self.start_utf8(b, 4),
            // A continuation byte out of place, or a byte never in UTF-8.
            _ => out.extend_from_slice(REPLACEMENT),
        }
    }

    fn start_utf8(&mut self, lead: u8, len: usize) {
        self.utf8[0] = lead;
        self.state = State::Utf8 { have: 1, len };
    }

    fn utf8_continue(&mut self, b: u8, have: usize, len: usize, out: &mut Vec<u8>) {
        let lead = self.utf8[0];
        // The second byte's range depends on the lead (no overlong forms, no surrogates, no
        // code point above U+10FFFF); later ones are any continuation byte.
        let (lo, hi) = match (have, lead) {
            (1, 0xe0) => (0xa0, 0xbf),
            (1, 0xed) => (0x80, 0x9f),
            (1, 0xf0) => (0x90, 0xbf),
            (1, 0xf4) => (0x80, 0x8f),
            _ => (0x80, 0xbf),
        };
        if !(lo..=hi).contains(&b) {
            // Not UTF-8: what came so far stands for one replacement, and this byte starts
            // afresh.
            out.extend_from_slice(REPLACEMENT);
            self.state = State::Ground;
            return self.byte(b, out);
        }
        if lead == 0xc2 && b <= 0x9f {
            // U+0080..U+009F: a C1 control, UTF-8 encoded.
            self.state = State::Ground;
            return self.c1(b);
        }
        self.utf8[have] = b;
        if have + 1 == len {
            out.extend_from_slice(&self.utf8[..len]);
            self.state = State::Ground;
        } else {
            self.state = State::Utf8 {
                have: have + 1,
                len,
            };
        }
    }

    /// An 8-bit C1 control (0x80..=0x9F, raw or from U+0080..U+009F).
    fn c1(&mut self, b: u8) {
        self.state = match b {
            // CSI: filtered like `ESC [`.
            0x9b => {
                self.seq.clear();
                State::Csi
            }
            // DCS, SOS, OSC, PM, APC: their string is skipped.
            0x90 | 0x98 | 0x9d | 0x9e | 0x9f => State::Str { esc: false },
            _ => State::Ground,
        };
    }

    fn escape(&mut self, b: u8, out: &mut Vec<u8>) {
        self.state = State::Ground;
        match b {
            b'[' => {
                self.seq.clear();
                self.state = State::Csi;
            }
            b']' | b'P' | b'_' | b'^' | b'X' => self.state = State::Str { esc: false },
            // Save/restore cursor, index, next line, reverse index, tab set, full reset.
            b'7' | b'8' | b'D' | b'E' | b'M' | b'H' | b'c' => out.extend_from_slice(&[0x1b, b]),
            // Intermediate: a designation (or something else) follows.
            0x20..=0x2f => {
                self.seq.clear();
                self.seq.push(b);
                self.state = State::EscapeIntermediate;
            }
            0x1b => self.state = State::Escape,
            // Not a sequence: the byte is read afresh.
            0x80..=0xff => self.ground(b, out),
            // CAN and SUB cancel; other controls are executed inside sequences.
            0x18 | 0x1a => {}
            0x00..=0x1f => {
                if allowed_c0(b) {
                    out.push(b);
                }
                self.state = State::Escape;
            }
            // Anything else (`ESC Z` asks the terminal to identify itself, keypad modes,
            // locking shifts, ...) is dropped.
            _ => {}
        }
    }

    fn escape_intermediate(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            0x20..=0x2f if self.seq.len() < 4 => self.seq.push(b),
            0x20..=0x2f => {}
            0x30..=0x7e => {
                // Designating a charset to G0..G3: `ESC ( B`, `ESC ) 0`, `ESC ( % 5` ...
                if self.seq.len() <= 2 && matches!(self.seq[0], b'(' | b')' | b'*' | b'+') {
                    out.push(0x1b);
                    out.extend_from_slice(&self.seq);
                    out.push(b);
                }
                self.state = State::Ground;
            }
            0x1b => self.state = State::Escape,
            0x18 | 0x1a => self.state = State::Ground,
            0x00..=0x1f => {
                if allowed_c0(b) {
                    out.push(b);
                }
            }
            _ => self.state = State::Ground,
        }
    }

    fn csi(&mut self, b: u8, out: &mut Vec<u8>) {
        match b {
            0x20..=0x3f => {
                if self.state == State::Csi && self.seq.len() < MAX_SEQUENCE {
                    self.seq.push(b);
                } else {
                    self.state = State::CsiOverflow;
                }
            }
            0x40..=0x7e => {
                if self.state == State::Csi
                    && let Some(allowed) = drawing_csi(&self.seq, b)
                {
                    out.extend_from_slice(b"\x1b[");
                    out.extend_from_slice(&allowed);
                    out.push(b);
                }
                self.seq.clear();
                self.state = State::Ground;
            }
            0x1b => self.state = State::Escape,
            0x18 | 0x1a => self.state = State::Ground,
            // Other controls are executed inside a sequence, which goes on.
            0x00..=0x1f => {
                if allowed_c0(b) {
                    out.push(b);
                }
            }
            // DEL is ignored; anything else ends a malformed sequence, dropped.
            0x7f => {}
            _ => {
                self.seq.clear();
                self.state = State::Ground;
                self.ground(b, out);
            }
        }
    }

    fn string(&mut self, b: u8, esc: bool, out: &mut Vec<u8>) {
        if esc && b != b'\\' && b != 0x1b {
            // An ESC followed by something else ends the string and starts a sequence.
            self.state = State::Escape;
            return self.escape(b, out);
        }
        self.state = match b {
            // BEL ends an OSC (and, as xterm does, any string); ST is `ESC \\`.
            0x07 => State::Ground,
            b'\\' if esc => State::Ground,
            0x1b => State::Str { esc: true },
            // CAN and SUB abort the string.
            0x18 | 0x1a => State::Ground,
            // ST as a raw 8-bit byte. (Its UTF-8 form, C2 9C, ends it too: that can only
            // shorten what is skipped, and what follows is filtered anyway.)
            0x9c => State::Ground,
            _ => State::Str { esc: false },
        };
    }
}

/// C0 controls that only move the cursor or select a charset: BEL, BS, HT, LF, VT, FF, CR,
/// SO, SI. (ENQ makes terminals answer; the rest do nothing useful on a screen.)
fn allowed_c0(b: u8) -> bool {
    matches!(b, 0x07..=0x0f)
}

/// The CSI sequence `params` + `final_byte` rewritten to what may be passed (for DEC private
/// modes, only the drawing modes are kept), or `None` to drop it.
fn drawing_csi(params: &[u8], final_byte: u8) -> Option<Vec<u8>> {
    let (private, body) = match params.first() {
        Some(&p @ (b'?' | b'<' | b'=' | b'>')) => (Some(p), &params[1..]),
        _ => (None, params),
    };
    // Parameters are digits and separators; intermediates may only follow them.
    let digits_end = body
        .iter()
        .position(|b| !matches!(b, b'0'..=b'9' | b';' | b':'))
        .unwrap_or(body.len());
    let (numbers, intermediates) = body.split_at(digits_end);
    if intermediates.iter().any(|b| !(0x20..=0x2f).contains(b)) {
        return None;
    }
    match (private, intermediates, final_byte) {
        (None, [], _) => plain_csi(numbers, final_byte).then(|| params.to_vec()),
        // DECSCUSR: cursor shape.
        (None, b" ", b'q') => Some(params.to_vec()),
        // DECSET/DECRST: keep only the drawing modes.
        (Some(b'?'), [], b'h' | b'l') => {
            let modes: Vec<&[u8]> = numbers
                .split(|&b| b == b';')
                .filter(|m| {
                    std::str::from_utf8(m)
                        .ok()
                        .and_then(|m| m.parse::<u32>().ok())
                        .is_some_and(|m| DRAWING_PRIVATE_MODES.contains(&m))
                })
                .collect();
            if modes.is_empty() {
                return None;
            }
            let mut kept = b"?".to_vec();
            kept.extend_from_slice(&modes.join(&b';'));
            Some(kept)
        }
        _ => None,
    }
}

/// Plain (no prefix, no intermediate) CSI finals that draw.
fn plain_csi(numbers: &[u8], final_byte: u8) -> bool {
    let count = if numbers.is_empty() {
        0
    } else {
        numbers.iter().filter(|&&b| b == b';').count() + 1
    };
    match final_byte {
        // SGR; cursor up/down/forward/back/next/previous line/column/position; erase in
        // display/line; insert/delete/erase characters and lines; scroll region; save and
        // restore cursor; tab forward/back/clear; repeat.
        b'm' | b'A' | b'B' | b'C' | b'D' | b'E' | b'F' | b'G' | b'H' | b'f' | b'd' | b'e'
        | b'a' | b'`' | b'J' | b'K' | b'@' | b'P' | b'X' | b'L' | b'M' | b'S' | b'r' | b's'
        | b'u' | b'I' | b'Z' | b'g' | b'b' => true,
        // SD; with 5 parameters it starts mouse highlight tracking.
        b'T' => count <= 1,
        // SM/RM: insert mode only (mode 2 locks the keyboard; 12 turns local echo on).
        b'h' | b'l' => numbers == b"4",
        // Reports (n, c), window operations (t), printing (i) and the rest.
        _ => false,
    }
}

/// Escapes U+0080..U+009F in JSON text as `\u00XX`.
///
/// `serde_json` writes these C1 controls raw (JSON does not require escaping them), and a
/// terminal decoding C1 from UTF-8 acts on them when the JSON is printed. In valid JSON
/// output they can only occur inside strings, where the escape means the same character;
/// their UTF-8 form (C2 80..C2 9F) never occurs as part of another character, so a byte scan
/// finds them exactly.
pub(crate) struct C1Escaper<'a> {
    inner: &'a mut dyn std::io::Write,
    /// The last byte written was C2 (held back until the next one shows what it starts).
    held: bool,
}

impl<'a> C1Escaper<'a> {
    /// Escapes what is written through it into `inner`.
    pub fn new(inner: &'a mut dyn std::io::Write) -> C1Escaper<'a> {
        C1Escaper { inner, held: false }
    }

    /// Writes a byte held back at the end (only in output that was not valid UTF-8).
    pub fn finish(&mut self) -> std::io::Result<()> {
        if std::mem::take(&mut self.held) {
            self.inner.write_all(&[0xc2])?;
        }
        self.inner.flush()
    }
}

impl std::io::Write for C1Escaper<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut out = Vec::with_capacity(buf.len() + 8);
        for &b in buf {
            if std::mem::take(&mut self.held) {
                if (0x80..=0x9f).contains(&b) {
                    out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
                    continue;
                }
                out.push(0xc2);
            }
            if b == 0xc2 {
                self.held = true;
            } else {
                out.push(b);
            }
        }
        self.inner.write_all(&out)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
