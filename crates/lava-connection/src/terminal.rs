//! [`Terminal`]: the cursor of the screen a device writes to, and the answer a terminal
//! gives when the device asks where that cursor is.
//!
//! A device console is a terminal's other end, and some programs on it ask the terminal
//! questions. The one that matters is the cursor position report (VT100 `DSR`,
//! `ESC [ 6 n`, answered `ESC [ row ; col R`): BusyBox's line editor asks it after every
//! prompt and, when a command line arrives before the answer, sleeps 20 ms before running
//! the command (so that a late answer does not show up as garbage). A dispatcher that
//! never answers (LAVA's pexpect does not) pays those 20 ms on every line it types at a
//! BusyBox shell. [`Terminal`] follows the cursor through what the device prints (text,
//! carriage return, line feed, backspace, tab and the ANSI cursor movements) on a screen
//! of the pty's size, and produces the answer for each question, as a terminal emulator
//! would; [`crate::ShellSession`] sends it.
//!
//! ```
//! use lava_connection::Terminal;
//!
//! let mut terminal = Terminal::new(24, 80);
//! let mut replies = Vec::new();
//! terminal.feed(b"\r\n/ # \x1b[6n", &mut replies);
//! assert_eq!(replies, b"\x1b[2;5R");
//! ```

/// Rows and columns of the screen LAVA's pexpect pty has, and of ours (`PtyCommand`).
pub const DEFAULT_SCREEN: (u16, u16) = (24, 80);

/// Longest escape sequence followed; anything longer is dropped as noise.
const MAX_SEQUENCE: usize = 64;

/// Longest string (operating system command) skipped: an unterminated one must not hide
/// the rest of the stream.
const MAX_STRING: usize = 4096;

/// Where the parser is within an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Plain text and control characters.
    Ground,
    /// After `ESC`.
    Escape,
    /// After `ESC` and an intermediate byte (`ESC ( B`: character sets): one more byte.
    EscapeIntermediate,
    /// After `ESC [`: parameters up to the final byte.
    Csi,
    /// After `ESC ]` (an operating system command, e.g. a window title) up to `BEL` or `ESC \`.
    Osc,
    /// `ESC` inside an operating system command: `\` ends it.
    OscEscape,
}

/// The cursor of a `rows` × `cols` screen, moved by what the device prints.
#[derive(Debug, Clone)]
pub struct Terminal {
    rows: u16,
    cols: u16,
    /// Zero-based.
    row: u16,
    /// Zero-based.
    col: u16,
    /// The last column was written: the next printable character wraps first.
    pending_wrap: bool,
    saved: (u16, u16),
    state: State,
    /// Parameter and intermediate bytes of the sequence being read.
    sequence: Vec<u8>,
    /// Bytes of the string being skipped.
    string_len: usize,
    queries: u64,
    /// The last thing printed is a question: the device waits for its answer.
    asked_last: bool,
}

impl Default for Terminal {
    fn default() -> Self {
        Terminal::new(DEFAULT_SCREEN.0, DEFAULT_SCREEN.1)
    }
}

impl Terminal {
    /// A screen of `rows` × `cols` (at least 1 × 1), the cursor at its top left.
    pub fn new(rows: u16, cols: u16) -> Self {
        Terminal {
            rows: rows.max(1),
            cols: cols.max(1),
            row: 0,
            col: 0,
            pending_wrap: false,
            saved: (0, 0),
            state: State::Ground,
            sequence: Vec::new(),
            string_len: 0,
            queries: 0,
            asked_last: false,
        }
    }

    /// The cursor, one-based as a terminal reports it: (row, column).
    pub fn cursor(&self) -> (u16, u16) {
        (self.row + 1, self.col + 1)
    }

    /// How many cursor position questions the device has asked so far.
    pub fn queries(&self) -> u64 {
        self.queries
    }

    /// Whether the last thing the device printed is a question (BusyBox's line editor
    /// asks right after its prompt, then waits for input).
    pub fn asked_last(&self) -> bool {
        self.asked_last
    }

    /// Whether a question may be on its way: the device has asked before, not since its
    /// last output, and that output left the cursor within a line, as a prompt does. A
    /// device whose output ended its line (a program's output, an echoed reply) is not at
    /// a prompt; and BusyBox does not ask when input is already waiting.
    pub fn question_may_follow(&self) -> bool {
        self.queries > 0 && !self.asked_last && (self.col > 0 || self.pending_wrap)
    }

    /// Follows `bytes` the device printed; the answer to each question among them is
    /// appended to `replies`. Sequences may be split across calls.
    pub fn feed(&mut self, bytes: &[u8], replies: &mut Vec<u8>) {
        for &byte in bytes {
            self.step(byte, replies);
        }
    }

    fn step(&mut self, byte: u8, replies: &mut Vec<u8>) {
        self.asked_last = false;
        // CAN and SUB abort a sequence; ESC starts a new one anywhere but in a string.
        match (self.state, byte) {
            (State::Osc, 0x07) | (State::OscEscape, _) | (_, 0x18 | 0x1a) => self.ground(),
            (State::Osc, 0x1b) => self.state = State::OscEscape,
            (State::Osc, _) => self.skip_string_byte(),
            (_, 0x1b) => {
                self.sequence.clear();
                self.state = State::Escape;
            }
            (State::Ground, _) => self.print_or_control(byte),
            (State::Escape, _) => self.escape_final(byte),
            (State::EscapeIntermediate, _) => self.ground(),
            (State::Csi, _) => self.csi_byte(byte, replies),
        }
    }

    fn csi_byte(&mut self, byte: u8, replies: &mut Vec<u8>) {
        match byte {
            0x20..=0x3f => self.collect(byte),
            0x40..=0x7e => {
                self.csi_final(byte, replies);
                self.ground();
            }
            // Control characters act in the middle of a sequence, as on a VT100.
            0x00..=0x1f => self.control(byte),
            _ => self.ground(),
        }
    }

    /// Goes on reading a sequence in `state`.
    fn enter(&mut self, state: State) {
        self.state = state;
    }

    fn ground(&mut self) {
        self.state = State::Ground;
        self.sequence.clear();
        self.string_len = 0;
    }

    fn skip_string_byte(&mut self) {
        self.string_len += 1;
        if self.string_len > MAX_STRING {
            self.ground();
        }
    }

    fn collect(&mut self, byte: u8) {
        if self.sequence.len() < MAX_SEQUENCE {
            self.sequence.push(byte);
        } else {
            self.ground();
        }
    }

    fn print_or_control(&mut self, byte: u8) {
        match byte {
            0x00..=0x1f | 0x7f => self.control(byte),
            // UTF-8 continuation bytes belong to the character their lead byte printed.
            0x80..=0xbf => {}
            _ => self.print(),
        }
    }

    fn print(&mut self) {
        if self.pending_wrap {
            self.pending_wrap = false;
            self.col = 0;
            self.line_feed();
        }
        if self.col + 1 >= self.cols {
            self.pending_wrap = true;
        } else {
            self.col += 1;
        }
    }

    fn control(&mut self, byte: u8) {
        match byte {
            b'\r' => self.move_to(self.row, 0),
            b'\n' | 0x0b | 0x0c => {
                self.pending_wrap = false;
                self.line_feed();
            }
            0x08 => self.move_to(self.row, self.col.saturating_sub(1)),
            b'\t' => self.move_to(self.row, (self.col / 8 + 1) * 8),
            _ => {}
        }
    }

    fn line_feed(&mut self) {
        // At the bottom the screen scrolls and the cursor stays on the last row.
        self.row = (self.row + 1).min(self.rows - 1);
    }

    fn move_to(&mut self, row: u16, col: u16) {
        self.pending_wrap = false;
        self.row = row.min(self.rows - 1);
        self.col = col.min(self.cols - 1);
    }

    fn escape_final(&mut self, byte: u8) {
        match byte {
            b'[' => return self.enter(State::Csi),
            b']' => return self.enter(State::Osc),
            0x20..=0x2f => return self.enter(State::EscapeIntermediate),
            b'7' => self.saved = (self.row, self.col),
            b'8' => self.move_to(self.saved.0, self.saved.1),
            b'c' => *self = Terminal::new(self.rows, self.cols),
            b'D' => self.line_feed(),
            b'E' => {
                self.move_to(self.row, 0);
                self.line_feed();
            }
            b'M' => self.move_to(self.row.saturating_sub(1), self.col),
            _ => {}
        }
        self.ground();
    }

    fn csi_final(&mut self, final_byte: u8, replies: &mut Vec<u8>) {
        // Private (`ESC [ ? …`) and intermediate-byte sequences do not move the cursor.
        if self
            .sequence
            .iter()
            .any(|b| matches!(b, b'<'..=b'?' | 0x20..=0x2f))
        {
            return;
        }
        let params = Params(&self.sequence);
        let (row, col) = (self.row, self.col);
        match final_byte {
            b'H' | b'f' => self.move_to(params.count(0) - 1, params.count(1) - 1),
            b'A' => self.move_to(row.saturating_sub(params.count(0)), col),
            b'B' | b'e' => self.move_to(row.saturating_add(params.count(0)), col),
            b'C' | b'a' => self.move_to(row, col.saturating_add(params.count(0))),
            b'D' => self.move_to(row, col.saturating_sub(params.count(0))),
            b'E' => self.move_to(row.saturating_add(params.count(0)), 0),
            b'F' => self.move_to(row.saturating_sub(params.count(0)), 0),
            b'G' | b'`' => self.move_to(row, params.count(0) - 1),
            b'd' => self.move_to(params.count(0) - 1, col),
            b's' => self.saved = (row, col),
            b'u' => self.move_to(self.saved.0, self.saved.1),
            b'n' if params.value(0) == Some(6) => {
                self.queries += 1;
                self.asked_last = true;
                let (row, col) = self.cursor();
                replies.extend_from_slice(format!("\x1b[{row};{col}R").as_bytes());
            }
            _ => {}
        }
    }
}

/// The `;`-separated numbers of a control sequence.
struct Params<'a>(&'a [u8]);

impl Params<'_> {
    /// Parameter `index`, if given and a number.
    fn value(&self, index: usize) -> Option<u16> {
        let field = self.0.split(|&b| b == b';').nth(index)?;
        if field.is_empty() || !field.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(field.iter().fold(0u16, |n, d| {
            n.saturating_mul(10).saturating_add(u16::from(d - b'0'))
        }))
    }

    /// Parameter `index` as a count or a one-based position: absent or 0 means 1.
    fn count(&self, index: usize) -> u16 {
        self.value(index).unwrap_or(1).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(terminal: &mut Terminal, bytes: &[u8]) -> String {
        let mut replies = Vec::new();
        terminal.feed(bytes, &mut replies);
        String::from_utf8(replies).unwrap()
    }

    #[test]
    fn a_busybox_prompt_is_answered_with_the_column_after_it() {
        let mut terminal = Terminal::default();
        let boot = b"[    2.171740] Run /init as init process\r\n\r\nBusyBox v1.35.0 built-in shell (ash)\r\n";
        assert_eq!(answers(&mut terminal, boot), "");
        assert_eq!(answers(&mut terminal, b"/ # \x1b[6n"), "\x1b[4;5R");
        assert_eq!(terminal.queries(), 1);
        assert!(terminal.asked_last());
        // The echo of a typed line and the next prompt: one row down, same column.
        answers(&mut terminal, b"export SHELL=/bin/sh\r\n");
        assert!(!terminal.asked_last(), "the echo followed the question");
        assert_eq!(answers(&mut terminal, b"/ # \x1b[6n"), "\x1b[5;5R");
        assert!(terminal.asked_last());
    }

    #[test]
    fn a_question_may_follow_a_prompt_of_a_device_that_asks() {
        let mut terminal = Terminal::default();
        answers(&mut terminal, b"/ # ");
        assert!(!terminal.question_may_follow(), "it never asked");
        answers(&mut terminal, b"\x1b[6n");
        assert!(!terminal.question_may_follow(), "asked and answered");
        answers(&mut terminal, b"true\r\n");
        assert!(!terminal.question_may_follow(), "the echo ended its line");
        answers(&mut terminal, b"/ # ");
        assert!(terminal.question_may_follow(), "at the next prompt");
        answers(
            &mut terminal,
            b"\x1b[6n<LAVA_MULTI_NODE> <LAVA_WAIT ready>\r\n",
        );
        assert!(
            !terminal.question_may_follow(),
            "a test's output ended its line"
        );
    }

    #[test]
    fn a_question_split_across_reads_is_answered_once_complete() {
        let mut terminal = Terminal::default();
        assert_eq!(answers(&mut terminal, b"lava-test: # \x1b"), "");
        assert_eq!(answers(&mut terminal, b"["), "");
        assert_eq!(answers(&mut terminal, b"6"), "");
        assert_eq!(answers(&mut terminal, b"n"), "\x1b[1;14R");
    }

    #[test]
    fn the_screen_scrolls_at_the_bottom_and_long_lines_wrap() {
        let mut terminal = Terminal::new(24, 80);
        for _ in 0..100 {
            answers(&mut terminal, b"a line\r\n");
        }
        assert_eq!(terminal.cursor(), (24, 1));
        answers(&mut terminal, &[b'x'; 80]);
        assert_eq!(
            terminal.cursor(),
            (24, 80),
            "the last column holds the cursor"
        );
        answers(&mut terminal, b"y");
        assert_eq!(terminal.cursor(), (24, 2), "the next character wraps first");
    }

    #[test]
    fn cursor_movements_are_followed_and_clamped_to_the_screen() {
        let mut terminal = Terminal::new(24, 80);
        // What resize(1) and U-Boot's EFI console do to learn the screen's size.
        let size = answers(&mut terminal, b"\x1b7\x1b[r\x1b[999;999H\x1b[6n\x1b8");
        assert_eq!(size, "\x1b[24;80R");
        assert_eq!(terminal.cursor(), (1, 1), "restored");
        answers(&mut terminal, b"\x1b[5;10H\x1b[2A\x1b[3C\x1b[D");
        assert_eq!(terminal.cursor(), (3, 12));
        answers(&mut terminal, b"\tab\x08\x1b[G");
        assert_eq!(terminal.cursor(), (3, 1));
        answers(&mut terminal, b"\x1b[7d\x1b[12`");
        assert_eq!(terminal.cursor(), (7, 12));
        answers(&mut terminal, b"abc\r");
        assert_eq!(terminal.cursor(), (7, 1));
    }

    #[test]
    fn other_sequences_and_strings_neither_move_the_cursor_nor_answer() {
        let mut terminal = Terminal::default();
        let noise = "\x1b[0m\x1b[2J\x1b[?7l\x1b[?25h\x1b(B\x1b]0;a window title longer than the longest escape sequence followed, which is 64 bytes\x07\x1b]2;t\x1b\\\x1b[5n\x1b[?6n";
        assert_eq!(answers(&mut terminal, noise.as_bytes()), "");
        assert_eq!(terminal.cursor(), (1, 1));
        assert_eq!(terminal.queries(), 0);
        // A cancelled sequence asks nothing; UTF-8 text moves one column per character.
        assert_eq!(answers(&mut terminal, b"\x1b[6\x18n"), "");
        answers(&mut terminal, "é→".as_bytes());
        assert_eq!(terminal.cursor(), (1, 4), "n, é and →");
    }
}
