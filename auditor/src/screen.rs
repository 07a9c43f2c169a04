//! A small terminal emulator that turns recorded output into the text a person saw.
//!
//! Stripping escape sequences is not enough: shells redraw lines with `\r`, backspace and
//! cursor movement, so a typed `ls^H^Hpwd` must read `pwd`, a progress bar must end as its
//! last state, and `clear` must not glue two screens together. This emulates the part of a
//! VT100/xterm that decides *what text is where* (cursor movement, erasing, inserting and
//! deleting, scrolling regions, line wrap, the alternate screen) and ignores the rest
//! (colours, modes, titles, graphics). Every escape sequence is consumed whole, known or not,
//! so none leaks into the text.
//!
//! Lines come out when they scroll off the top of the screen, when the screen is cleared
//! (`clear`), and at the end (what is still on screen). Full-screen programs (vim, less,
//! top) draw on the alternate screen: its last frame comes out when the program exits.
//! A line that wrapped at the right margin comes out as one line.
//!
//! Nothing that was ever shown is lost: before a row's text is destroyed (overwritten after
//! `\r` or backspace, erased, deleted, scrolled out of a region or off the alternate screen,
//! cleared), what it showed comes out as a line of its own, unless that same text already
//! came out of that row. So `secret\r      \r` leaves `secret`, a corrected typo leaves
//! both versions, a progress bar leaves each state it showed and a full-screen program each
//! row it drew over; an auditor searching for text finds it. Each line carries the
//! time it was last written to (a command line: when the last key was echoed), which is what
//! `grep` prints as the offset: replaying from there shows the line complete.

/// A line of text and when it started to be written (seconds into the recording).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct TextLine {
    /// Seconds.
    pub time: f64,
    /// The text, without trailing blanks.
    pub text: String,
}

/// A cell holding the right half of a wide character.
const WIDE_TAIL: char = '\0';
/// Most parameters kept from one control sequence.
const MAX_PARAMS: usize = 32;

#[derive(Debug, Clone)]
struct Row {
    cells: Vec<char>,
    /// When a character was last written to it (`None`: blank since it was erased).
    time: Option<f64>,
    /// The text continues on the next row (wrapped at the margin).
    wrapped: bool,
    /// Already committed (when a full-screen program started); not committed again.
    done: bool,
    /// The text last saved from this row before it was overwritten (see [`Screen::save`]);
    /// the same text is not saved or committed again.
    saved: Option<String>,
}

impl Row {
    fn blank(cols: usize) -> Row {
        Row {
            cells: vec![' '; cols],
            time: None,
            wrapped: false,
            done: false,
            saved: None,
        }
    }

    fn text(&self) -> String {
        // Rows are mostly trailing blanks: they are skipped before collecting, not collected
        // and trimmed (40% of `sessions grep`'s time on issue 12's benchmark).
        let end = self
            .cells
            .iter()
            .rposition(|&c| c != ' ' && c != WIDE_TAIL)
            .map_or(0, |last| last + 1);
        let mut s = String::with_capacity(end);
        s.extend(self.cells[..end].iter().filter(|&&c| c != WIDE_TAIL));
        s.truncate(s.trim_end().len());
        s
    }

    fn is_blank(&self) -> bool {
        self.cells.iter().all(|&c| c == ' ' || c == WIDE_TAIL)
    }
}

/// Where the parser is inside an escape sequence.
#[derive(Debug, Clone, PartialEq)]
enum State {
    Ground,
    Escape,
    /// `ESC (` and friends: one more character names a charset.
    Charset,
    Csi {
        params: Vec<u32>,
        current: Option<u32>,
        private: bool,
    },
    /// OSC, DCS, APC, PM, SOS: a string up to BEL or ST; `esc` after an ESC inside it.
    Str {
        esc: bool,
    },
}

/// The emulated terminal.
#[derive(Debug)]
pub(crate) struct Screen {
    cols: usize,
    rows: usize,
    grid: Vec<Row>,
    cx: usize,
    cy: usize,
    pending_wrap: bool,
    saved: (usize, usize),
    top: usize,
    bottom: usize,
    /// The main screen while the alternate screen is shown.
    main: Option<(Vec<Row>, (usize, usize))>,
    state: State,
    now: f64,
    /// Committed rows of a wrapped line still being collected.
    partial: Option<TextLine>,
    out: Vec<TextLine>,
    newline_returns: bool,
    /// Where the next character continues what was just written (row, column).
    overwrite_at: Option<(usize, usize)>,
}

impl Screen {
    /// Like the person's terminal for a channel without a pty: `\n` also returns the
    /// carriage (what `ONLCR` did on their side).
    pub fn without_pty(mut self) -> Screen {
        self.newline_returns = true;
        self
    }

    /// A blank terminal of `cols` x `rows` (each at least 1).
    pub fn new(cols: u16, rows: u16) -> Screen {
        let (cols, rows) = (usize::from(cols.max(1)), usize::from(rows.max(1)));
        Screen {
            cols,
            rows,
            grid: vec![Row::blank(cols); rows],
            cx: 0,
            cy: 0,
            pending_wrap: false,
            saved: (0, 0),
            top: 0,
            bottom: rows - 1,
            main: None,
            state: State::Ground,
            now: 0.0,
            partial: None,
            out: Vec::new(),
            newline_returns: false,
            overwrite_at: None,
        }
    }

    /// Feeds output written at `time` seconds.
    pub fn feed(&mut self, time: f64, data: &str) {
        self.now = time;
        for c in data.chars() {
            self.put(c);
        }
    }

    /// The terminal was resized (an `r` event).
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let (cols, rows) = (usize::from(cols.max(1)), usize::from(rows.max(1)));
        for row in &mut self.grid {
            row.cells.resize(cols, ' ');
        }
        // Rows that no longer fit scroll off the top, like xterm does.
        while self.grid.len() > rows {
            let row = self.grid.remove(0);
            self.commit(row);
            self.cy = self.cy.saturating_sub(1);
        }
        while self.grid.len() < rows {
            self.grid.push(Row::blank(cols));
        }
        self.cols = cols;
        self.rows = rows;
        self.top = 0;
        self.bottom = rows - 1;
        self.cx = self.cx.min(cols - 1);
        self.cy = self.cy.min(rows - 1);
        self.pending_wrap = false;
    }

    /// Lines completed so far (they will not change any more).
    pub fn take_lines(&mut self) -> Vec<TextLine> {
        std::mem::take(&mut self.out)
    }

    /// Ends the recording: what is on screen comes out too (trailing blank rows left out).
    pub fn finish(mut self) -> Vec<TextLine> {
        if self.main.is_some() {
            self.leave_alternate();
        }
        let last = self.grid.iter().rposition(|r| !r.is_blank());
        let rows: Vec<Row> = match last {
            Some(last) => self.grid.drain(..=last).collect(),
            None => Vec::new(),
        };
        for mut row in rows {
            if row.time.is_none() {
                row.time = Some(self.now);
            }
            self.commit(row);
        }
        if let Some(mut line) = self.partial.take() {
            line.text.truncate(line.text.trim_end().len());
            self.out.push(line);
        }
        self.out
    }

    fn put(&mut self, c: char) {
        match std::mem::replace(&mut self.state, State::Ground) {
            State::Ground => self.ground(c),
            State::Escape => self.escape(c),
            State::Charset => {}
            State::Csi {
                params,
                current,
                private,
            } => self.csi(c, params, current, private),
            State::Str { esc } => {
                let ends = c == '\u{7}' || c == '\u{9c}' || (esc && c == '\\');
                if !ends {
                    self.state = State::Str { esc: c == '\u{1b}' };
                }
            }
        }
    }

    fn ground(&mut self, c: char) {
        match c {
            '\u{1b}' => self.state = State::Escape,
            '\r' => {
                self.cx = 0;
                self.pending_wrap = false;
            }
            '\n' | '\u{b}' | '\u{c}' => {
                if self.newline_returns {
                    self.cx = 0;
                }
                self.linefeed();
            }
            '\u{8}' => {
                self.cx = self.cx.saturating_sub(1);
                self.pending_wrap = false;
            }
            '\t' => {
                self.cx = ((self.cx / 8 + 1) * 8).min(self.cols - 1);
                self.pending_wrap = false;
            }
            '\u{9b}' => self.state = csi_start(),
            '\u{9d}' | '\u{90}' | '\u{98}' | '\u{9e}' | '\u{9f}' => {
                self.state = State::Str { esc: false }
            }
            c if c.is_control() => {}
            c => self.print(c),
        }
    }

    fn escape(&mut self, c: char) {
        match c {
            '[' => self.state = csi_start(),
            ']' | 'P' | '_' | '^' | 'X' => self.state = State::Str { esc: false },
            '(' | ')' | '*' | '+' | '-' | '.' | '/' | '#' | '%' | ' ' => {
                self.state = State::Charset
            }
            '7' => self.saved = (self.cx, self.cy),
            '8' => self.restore_cursor(),
            'D' => self.linefeed(),
            'E' => {
                self.cx = 0;
                self.linefeed();
            }
            'M' => self.reverse_index(),
            'c' => {
                self.clear_all();
                self.cx = 0;
                self.cy = 0;
                self.top = 0;
                self.bottom = self.rows - 1;
            }
            // Anything else (keypad modes, ...) is a complete two-character sequence.
            _ => {}
        }
    }

    fn csi(&mut self, c: char, mut params: Vec<u32>, current: Option<u32>, private: bool) {
        match c {
            '0'..='9' => {
                let digit = c as u32 - '0' as u32;
                let value = current
                    .unwrap_or(0)
                    .saturating_mul(10)
                    .saturating_add(digit);
                self.state = State::Csi {
                    params,
                    current: Some(value.min(65_535)),
                    private,
                };
            }
            ';' | ':' => {
                if params.len() < MAX_PARAMS {
                    params.push(current.unwrap_or(0));
                }
                self.state = State::Csi {
                    params,
                    current: None,
                    private,
                };
            }
            '?' | '<' | '=' | '>' => {
                self.state = State::Csi {
                    params,
                    current,
                    private: true,
                }
            }
            // Intermediate bytes: keep collecting.
            ' '..='/' => {
                self.state = State::Csi {
                    params,
                    current,
                    private,
                }
            }
            '@'..='~' => {
                if current.is_some() && params.len() < MAX_PARAMS {
                    params.push(current.unwrap_or(0));
                }
                self.dispatch(c, &params, private);
            }
            // A control character inside a sequence is executed; the sequence goes on.
            '\u{1b}' => self.state = State::Escape,
            c if c.is_control() => {
                self.ground(c);
                self.state = State::Csi {
                    params,
                    current,
                    private,
                };
            }
            // Not a sequence after all: drop it.
            _ => {}
        }
    }

    fn dispatch(&mut self, c: char, params: &[u32], private: bool) {
        let p = |i: usize| params.get(i).copied().unwrap_or(0) as usize;
        let n = |i: usize| p(i).max(1);
        if private {
            if matches!(c, 'h' | 'l') {
                for &mode in params {
                    if matches!(mode, 47 | 1047 | 1049) {
                        if c == 'h' {
                            self.enter_alternate();
                        } else {
                            self.leave_alternate();
                        }
                    }
                }
            }
            return;
        }
        self.pending_wrap = false;
        let (cols, rows) = (self.cols, self.rows);
        match c {
            'A' => {
                let floor = if self.cy >= self.top { self.top } else { 0 };
                self.cy = self.cy.saturating_sub(n(0)).max(floor);
            }
            'B' | 'e' => {
                let ceiling = if self.cy <= self.bottom {
                    self.bottom
                } else {
                    rows - 1
                };
                self.cy = (self.cy + n(0)).min(ceiling);
            }
            'C' | 'a' => self.cx = (self.cx + n(0)).min(cols - 1),
            'D' => self.cx = self.cx.saturating_sub(n(0)),
            'E' => {
                self.cy = (self.cy + n(0)).min(rows - 1);
                self.cx = 0;
            }
            'F' => {
                self.cy = self.cy.saturating_sub(n(0));
                self.cx = 0;
            }
            'G' | '`' => self.cx = (n(0) - 1).min(cols - 1),
            'd' => self.cy = (n(0) - 1).min(rows - 1),
            'H' | 'f' => {
                self.cy = (n(0) - 1).min(rows - 1);
                self.cx = (n(1) - 1).min(cols - 1);
            }
            'J' => self.erase_display(p(0)),
            'K' => self.erase_line(p(0)),
            '@' => {
                let k = n(0).min(cols - self.cx);
                self.save_if_drawn(self.cy, cols - k..cols);
                let (cx, row) = (self.cx, &mut self.grid[self.cy]);
                row.cells.splice(cx..cx, std::iter::repeat_n(' ', k));
                row.cells.truncate(cols);
            }
            'P' => {
                let k = n(0).min(cols - self.cx);
                self.save_if_drawn(self.cy, self.cx..self.cx + k);
                let (cx, row) = (self.cx, &mut self.grid[self.cy]);
                row.cells.drain(cx..cx + k);
                row.cells.extend(std::iter::repeat_n(' ', k));
            }
            'X' => {
                let end = (self.cx + n(0)).min(cols);
                self.save_if_drawn(self.cy, self.cx..end);
                let (cx, row) = (self.cx, &mut self.grid[self.cy]);
                row.cells[cx..end].fill(' ');
            }
            'L' if (self.top..=self.bottom).contains(&self.cy) => {
                for _ in 0..n(0).min(self.bottom - self.cy + 1) {
                    self.save(self.bottom);
                    self.grid.remove(self.bottom);
                    self.grid.insert(self.cy, Row::blank(cols));
                }
            }
            'M' if (self.top..=self.bottom).contains(&self.cy) => {
                for _ in 0..n(0).min(self.bottom - self.cy + 1) {
                    self.save(self.cy);
                    self.grid.remove(self.cy);
                    self.grid.insert(self.bottom, Row::blank(cols));
                }
            }
            'S' => {
                for _ in 0..n(0).min(rows) {
                    self.scroll_up();
                }
            }
            'T' => {
                for _ in 0..n(0).min(rows) {
                    self.scroll_down();
                }
            }
            'r' => {
                let top = n(0) - 1;
                let bottom = if p(1) == 0 { rows } else { p(1) }.min(rows) - 1;
                if top < bottom {
                    self.top = top;
                    self.bottom = bottom;
                    self.cx = 0;
                    self.cy = 0;
                }
            }
            's' => self.saved = (self.cx, self.cy),
            'u' => self.restore_cursor(),
            // Colours, modes, reports and the rest change no text.
            _ => {}
        }
    }

    fn print(&mut self, c: char) {
        let width = char_width(c);
        if width == 0 {
            return;
        }
        if self.pending_wrap || self.cx + width > self.cols {
            self.grid[self.cy].wrapped = true;
            self.cx = 0;
            self.linefeed();
        }
        let (cx, cy) = (self.cx, self.cy);
        let cells = &self.grid[cy].cells;
        let replaced = |x: usize, by: char| {
            cells
                .get(x)
                .is_some_and(|&old| old != ' ' && old != WIDE_TAIL && old != by)
        };
        // Overwriting text saves it once, where the overwriting starts: the characters
        // written right after (the rest of a redrawn line, or blanks wiping it) continue the
        // same overwrite.
        let overwrites = replaced(cx, c) || (width == 2 && replaced(cx + 1, WIDE_TAIL));
        let continues = self.overwrite_at == Some((cy, cx));
        if overwrites && !continues {
            self.save(cy);
        }
        let now = self.now;
        let row = &mut self.grid[self.cy];
        row.time = Some(now);
        row.done = false;
        row.cells[self.cx] = c;
        if width == 2 && self.cx + 1 < self.cols {
            row.cells[self.cx + 1] = WIDE_TAIL;
        }
        self.cx += width;
        self.overwrite_at = (overwrites || continues).then_some((self.cy, self.cx));
        if self.cx >= self.cols {
            self.cx = self.cols - 1;
            self.pending_wrap = true;
        }
    }

    fn linefeed(&mut self) {
        self.pending_wrap = false;
        if self.cy == self.bottom {
            self.scroll_up();
        } else if self.cy + 1 < self.rows {
            self.cy += 1;
        }
    }

    fn reverse_index(&mut self) {
        if self.cy == self.top {
            self.scroll_down();
        } else {
            self.cy = self.cy.saturating_sub(1);
        }
    }

    /// Scrolls the region up one row; the top row of a full-screen region on the main
    /// screen is committed (it goes to the scrollback).
    fn scroll_up(&mut self) {
        if self.top == 0 && self.main.is_none() {
            let row = self.grid.remove(self.top);
            self.grid.insert(self.bottom, Row::blank(self.cols));
            self.commit(row);
        } else {
            self.save(self.top);
            self.grid.remove(self.top);
            self.grid.insert(self.bottom, Row::blank(self.cols));
        }
    }

    fn scroll_down(&mut self) {
        self.save(self.bottom);
        self.grid.remove(self.bottom);
        self.grid.insert(self.top, Row::blank(self.cols));
    }

    fn erase_display(&mut self, mode: usize) {
        let cols = self.cols;
        match mode {
            0 => {
                if self.cx == 0 && self.cy == 0 {
                    return self.clear_all();
                }
                self.erase_line(0);
                for y in self.cy + 1..self.rows {
                    self.save(y);
                    self.grid[y] = Row::blank(cols);
                }
            }
            1 => {
                self.erase_line(1);
                for y in 0..self.cy {
                    self.save(y);
                    self.grid[y] = Row::blank(cols);
                }
            }
            _ => self.clear_all(),
        }
    }

    /// Clears the screen; on the main screen what was there is kept (committed) first.
    fn clear_all(&mut self) {
        if self.main.is_some() {
            for y in 0..self.rows {
                self.save(y);
            }
        }
        let rows: Vec<Row> =
            std::mem::replace(&mut self.grid, vec![Row::blank(self.cols); self.rows]);
        if self.main.is_none() {
            let last = rows.iter().rposition(|r| !r.is_blank());
            if let Some(last) = last {
                for row in rows.into_iter().take(last + 1) {
                    self.commit(row);
                }
            }
        }
    }

    fn erase_line(&mut self, mode: usize) {
        let (cx, cols) = (self.cx, self.cols);
        let range = match mode {
            0 => cx..cols,
            1 => 0..cx.min(cols - 1) + 1,
            _ => 0..cols,
        };
        self.save_if_drawn(self.cy, range);
        let row = &mut self.grid[self.cy];
        match mode {
            0 => row.cells[cx..].fill(' '),
            1 => row.cells[..=cx.min(cols - 1)].fill(' '),
            _ => row.cells.fill(' '),
        }
        if mode != 1 {
            row.wrapped = false;
        }
        if mode == 2 || (mode == 0 && cx == 0) {
            row.time = None;
        }
    }

    fn restore_cursor(&mut self) {
        self.cx = self.saved.0.min(self.cols - 1);
        self.cy = self.saved.1.min(self.rows - 1);
        self.pending_wrap = false;
    }

    /// A full-screen program starts: the main screen's rows above the cursor are done (the
    /// program's frame comes out after them, when it exits).
    fn enter_alternate(&mut self) {
        if self.main.is_none() {
            for y in 0..self.cy {
                if !self.grid[y].is_blank() && !self.grid[y].done {
                    let row = self.grid[y].clone();
                    self.commit(row);
                    self.grid[y].done = true;
                }
            }
            let grid = std::mem::replace(&mut self.grid, vec![Row::blank(self.cols); self.rows]);
            self.main = Some((grid, (self.cx, self.cy)));
        }
    }

    /// Back to the main screen: the alternate screen's last frame comes out first.
    fn leave_alternate(&mut self) {
        let Some((grid, (cx, cy))) = self.main.take() else {
            return;
        };
        let mut grid = grid;
        fit(&mut grid, self.cols, self.rows);
        let alt = std::mem::replace(&mut self.grid, grid);
        let last = alt.iter().rposition(|r| !r.is_blank());
        if let Some(last) = last {
            for mut row in alt.into_iter().take(last + 1) {
                // A full-screen program's frame has no wrapped lines.
                row.wrapped = false;
                self.commit(row);
            }
        }
        self.cx = cx.min(self.cols - 1);
        self.cy = cy.min(self.rows - 1);
        self.pending_wrap = false;
    }

    /// Row `y`'s text is about to be destroyed: what it shows comes out first, as a line of
    /// its own (with the rows it wraps into and from), unless it is blank or that text
    /// already came out of this row.
    fn save(&mut self, y: usize) {
        if y >= self.grid.len() || self.grid[y].is_blank() {
            return;
        }
        let mut first = y;
        while first > 0 && self.grid[first - 1].wrapped {
            first -= 1;
        }
        let mut last = y;
        while self.grid[last].wrapped && last + 1 < self.grid.len() {
            last += 1;
        }
        let mut text = String::new();
        let mut time = None::<f64>;
        for row in &self.grid[first..=last] {
            text.extend(row.cells.iter().filter(|&&c| c != WIDE_TAIL));
            time = match (time, row.time) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        }
        let text = text.trim_end().to_owned();
        if self.grid[y].saved.as_deref() == Some(&text) {
            return;
        }
        self.out.push(TextLine {
            time: time.unwrap_or(self.now),
            text: text.clone(),
        });
        self.grid[y].saved = Some(text);
    }

    /// [`Screen::save`] row `y` if anything is drawn in columns `range`.
    fn save_if_drawn(&mut self, y: usize, range: std::ops::Range<usize>) {
        let drawn = self.grid.get(y).is_some_and(|row| {
            row.cells
                .get(range)
                .is_some_and(|cells| cells.iter().any(|&c| c != ' ' && c != WIDE_TAIL))
        });
        if drawn {
            self.save(y);
        }
    }

    /// A row leaves the screen: it becomes (part of) a line of text.
    fn commit(&mut self, row: Row) {
        if row.done {
            return;
        }
        let piece = if row.wrapped {
            // Keep the blanks at the margin: the next row continues the same line.
            row.cells.iter().filter(|&&c| c != WIDE_TAIL).collect()
        } else {
            let text = row.text();
            if self.partial.is_none() && row.saved.as_deref() == Some(&text) {
                // Already out, unchanged since.
                return;
            }
            text
        };
        let mut line = self.partial.take().unwrap_or(TextLine {
            time: row.time.unwrap_or(self.now),
            text: String::new(),
        });
        line.text.push_str(&piece);
        if let Some(time) = row.time {
            line.time = line.time.max(time);
        }
        if row.wrapped {
            self.partial = Some(line);
        } else {
            self.out.push(line);
        }
    }
}

/// Brings a saved screen to the current size (the terminal was resized meanwhile).
fn fit(grid: &mut Vec<Row>, cols: usize, rows: usize) {
    for row in grid.iter_mut() {
        row.cells.resize(cols, ' ');
    }
    grid.resize(rows, Row::blank(cols));
}

fn csi_start() -> State {
    State::Csi {
        params: Vec::new(),
        current: None,
        private: false,
    }
}

/// Columns a character takes, as terminals count them (Unicode East Asian Width): 0 for
/// combining and zero-width characters, 2 for wide ones and emoji, 1 otherwise.
fn char_width(c: char) -> usize {
    unicode_width::UnicodeWidthChar::width(c).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(cols: u16, rows: u16, data: &str) -> Vec<String> {
        let mut s = Screen::new(cols, rows);
        s.feed(0.0, data);
        s.finish().into_iter().map(|l| l.text).collect()
    }

    #[test]
    fn plain_lines_and_carriage_returns() {
        assert_eq!(render(20, 5, "hello\r\nworld\r\n"), ["hello", "world"]);
        // Each state a progress line showed; a redraw of the same text adds nothing.
        assert_eq!(
            render(20, 5, "progress 10%\rprogress 100%\rprogress 100%\r\n"),
            ["progress 10%", "progress 100%"]
        );
    }

    #[test]
    fn backspace_and_line_editing_leave_what_was_shown_then_what_was_typed() {
        // Typed "lsx", then backspace: the shell echoes "\b \b".
        assert_eq!(render(20, 5, "$ lsx\u{8} \u{8}\r\n"), ["$ lsx", "$ ls"]);
        // Readline redraw: cursor back 3, erase to end of line, new text.
        assert_eq!(
            render(30, 5, "$ cat foo\u{1b}[3D\u{1b}[Kbar\r\n"),
            ["$ cat foo", "$ cat bar"]
        );
        // Typing at the end of the line destroys nothing.
        assert_eq!(render(20, 5, "$ l\u{1b}[Cs\r\n"), ["$ l s"]);
    }

    #[test]
    fn text_overwritten_erased_or_cleared_is_kept() {
        let data = "secret1\r      \r\
                    secret2\u{8}\u{8}\u{8}\u{8}\u{8}\u{8}\u{8}       \r\
                    secret3\u{1b}[2K\r\
                    \u{1b}[?1049h\u{1b}[Hsecret4\u{1b}[2J\u{1b}[?1049l\
                    secret5\u{1b}[1;1H\u{1b}[J\
                    \u{1b}[2;10rtop\u{1b}[10;1Hregion6\n\n\n\n\n\n\n\n\n\n\
                    secret7\u{1b}[1;1H\u{1b}[M";
        let lines = render(40, 12, data);
        for n in 1..=7 {
            let needle = if n == 6 {
                "region6".to_owned()
            } else {
                format!("secret{n}")
            };
            assert_eq!(
                lines.iter().filter(|l| l.contains(&needle)).count(),
                1,
                "{needle} once in {lines:?}"
            );
        }
    }

    #[test]
    fn escape_sequences_never_leak_into_the_text() {
        let data = "\u{1b}]0;user@host: ~\u{7}\u{1b}[1;32mgreen\u{1b}[0m \u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\ \u{1b}P+q544e\u{1b}\\\u{1b}(Bok\u{1b}[?2004h\u{1b}=\r\n";
        let lines = render(40, 5, data);
        assert_eq!(lines, ["green link ok"]);
        assert!(!lines[0].contains('\u{1b}'));
    }

    #[test]
    fn scrolling_commits_lines_in_order_with_their_times() {
        let mut s = Screen::new(10, 2);
        s.feed(1.0, "one\r\n");
        s.feed(2.0, "two\r\n");
        s.feed(3.0, "three\r\n");
        let early = s.take_lines();
        assert_eq!(early.len(), 2, "{early:?}");
        assert_eq!(
            early[0],
            TextLine {
                time: 1.0,
                text: "one".into()
            }
        );
        assert_eq!(early[1].time, 2.0);
        let rest = s.finish();
        assert_eq!(
            rest,
            [TextLine {
                time: 3.0,
                text: "three".into()
            }]
        );
    }

    #[test]
    fn a_line_is_timed_by_its_last_write() {
        let mut s = Screen::new(10, 3);
        s.feed(1.0, "$ ");
        s.feed(2.0, "ls\r\n");
        s.feed(3.0, "file\r\n");
        s.feed(4.0, "0123456789ab\r\n");
        let times: Vec<f64> = s.finish().iter().map(|l| l.time).collect();
        assert_eq!(times, [2.0, 3.0, 4.0]);
    }

    #[test]
    fn without_a_pty_a_newline_also_returns() {
        let mut s = Screen::new(20, 3);
        s.feed(0.0, "ab\ncd\n");
        let staircase: Vec<String> = s.finish().into_iter().map(|l| l.text).collect();
        assert_eq!(staircase, ["ab", "  cd"], "a raw terminal");
        let mut s = Screen::new(20, 3).without_pty();
        s.feed(0.0, "ab\ncd\n");
        let lines: Vec<String> = s.finish().into_iter().map(|l| l.text).collect();
        assert_eq!(lines, ["ab", "cd"]);
    }

    #[test]
    fn clear_keeps_what_was_on_screen() {
        assert_eq!(
            render(20, 5, "before\r\n\u{1b}[H\u{1b}[2Jafter\r\n"),
            ["before", "after"]
        );
    }

    #[test]
    fn wrapped_lines_come_out_whole() {
        assert_eq!(render(5, 3, "abcdefghij\r\nk\r\n"), ["abcdefghij", "k"]);
        // Wrapped, then scrolled off the top while its continuation is still on screen.
        assert_eq!(render(4, 2, "abcdef\r\nx\r\ny\r\n"), ["abcdef", "x", "y"]);
    }

    #[test]
    fn full_screen_programs_leave_their_last_frame() {
        let data = "$ vim\r\n\u{1b}[?1049h\u{1b}[H\u{1b}[2Jfirst\u{1b}[H\u{1b}[2Jlast frame\u{1b}[5;1H~\u{1b}[?1049l$ exit\r\n";
        assert_eq!(
            render(20, 6, data),
            ["$ vim", "first", "last frame", "", "", "", "~", "$ exit"]
        );
    }

    #[test]
    fn cursor_addressing_and_insert_delete() {
        assert_eq!(render(10, 3, "\u{1b}[2;3Hx\u{1b}[1;1Hy"), ["y", "  x"]);
        assert_eq!(
            render(10, 3, "abcdef\u{1b}[1;2H\u{1b}[2P"),
            ["abcdef", "adef"]
        );
        assert_eq!(render(10, 3, "abc\u{1b}[1;2H\u{1b}[2@"), ["a  bc"]);
        assert_eq!(
            render(10, 3, "a\r\nb\r\nc\u{1b}[1;1H\u{1b}[M"),
            ["a", "b", "c"]
        );
    }

    #[test]
    fn hostile_input_is_bounded_and_never_panics() {
        let mut s = Screen::new(1, 1);
        s.feed(
            0.0,
            "\u{1b}[99999;99999H\u{1b}[99999@\u{1b}[99999L\u{1b}[99999M\u{1b}[99999S",
        );
        s.feed(0.0, "\u{1b}[5;2r\u{1b}[0;0r\u{1b}[9999X\u{1b}[9999P\u{1b}[1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1;1H");
        s.feed(0.0, "漢字\u{8}\u{8}\u{8}x\u{1b}");
        s.resize(3, 1);
        s.feed(0.0, "abcdefg\u{1b}[3J\u{1b}]unterminated");
        let _ = s.finish();
        let mut s = Screen::new(80, 24);
        s.resize(1, 1);
        s.feed(
            0.0,
            "\t\t\u{1b}[2J\u{1b}[?1049h\u{1b}[?1049h\u{1b}[?1049l\u{1b}[?1049l",
        );
        let _ = s.finish();
    }

    #[test]
    fn wide_characters_take_two_columns() {
        assert_eq!(render(10, 2, "漢字ab\r\n"), ["漢字ab"]);
        assert_eq!(render(10, 2, "漢\u{1b}[3Gx\r\n"), ["漢x"]);
    }

    #[test]
    fn widths_follow_the_unicode_tables() {
        // Wide characters outside the blocks the old approximation listed (rocket U+1F680,
        // Hangul Jamo Extended-A U+A960), and a combining mark outside U+0300..U+036F
        // (Devanagari vowel sign U U+0941, zero columns: dropped like the others).
        assert_eq!(render(10, 2, "🚀\u{1b}[3Gx\r\n"), ["🚀x"]);
        assert_eq!(render(10, 2, "ꥠ\u{1b}[3Gx\r\n"), ["ꥠx"]);
        assert_eq!(render(10, 2, "a\u{0941}x\r\n"), ["ax"]);
    }
}
