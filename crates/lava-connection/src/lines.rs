//! Splitting console text into LAVA log lines.
//!
//! LAVA logs what a device prints one complete line at a time: ESC (0x1B) characters are
//! removed, lines end at `\r\r\n`, `\r\n` or `\n`, and a trailing partial line is held
//! until its newline arrives or the connection is closed. A bare `\r` stays in the line
//! (the log writer escapes it).

use std::borrow::Cow;

const ESC: char = '\x1b';

/// Turns a stream of text pieces into complete lines.
#[derive(Debug, Default, Clone)]
pub struct LineSplitter {
    /// The partial line received so far (ESC not yet removed).
    partial: String,
    /// Reused for lines that need their ESC characters removed.
    scratch: String,
}

impl LineSplitter {
    /// A splitter with no partial line.
    pub fn new() -> Self {
        Self::default()
    }

    /// The text of the line still waiting for its newline.
    pub fn partial(&self) -> &str {
        &self.partial
    }

    /// Feeds the next piece of text; `emit` gets every line it completes, in order.
    pub fn push(&mut self, text: &str, mut emit: impl FnMut(&str)) {
        let bytes = text.as_bytes();
        let Some(last_newline) = memchr::memrchr(b'\n', bytes) else {
            self.partial.push_str(text);
            return;
        };
        let mut line_start = 0;
        if !self.partial.is_empty() {
            // Complete the held line first.
            let first_newline = memchr::memchr(b'\n', bytes).unwrap_or(0);
            self.partial.push_str(&text[..first_newline]);
            emit(&clean_line(&self.partial));
            self.partial.clear();
            line_start = first_newline + 1;
        }
        // ESC positions are found once per piece, so a line knows whether it has one
        // without another scan.
        let base = line_start;
        let mut escapes = memchr::memchr_iter(0x1b, bytes.get(base..last_newline).unwrap_or(&[]));
        let mut next_esc = escapes.next().map_or(usize::MAX, |i| i + base);
        for line_end in memchr::memchr_iter(b'\n', &bytes[base..=last_newline]) {
            let line_end = line_end + base;
            let line = strip_terminator(&text[line_start..line_end]);
            if next_esc < line_end {
                self.scratch.clear();
                self.scratch.extend(line.split(ESC));
                emit(&self.scratch);
                for esc in escapes.by_ref() {
                    next_esc = esc + base;
                    if next_esc > line_end {
                        break;
                    }
                }
                if next_esc < line_end {
                    next_esc = usize::MAX;
                }
            } else {
                emit(line);
            }
            line_start = line_end + 1;
        }
        self.partial.push_str(&text[last_newline + 1..]);
    }

    /// Ends the stream: a held partial line is emitted as a line of its own.
    pub fn finish(&mut self, mut emit: impl FnMut(&str)) {
        if !self.partial.is_empty() {
            emit(&clean_line(&self.partial));
            self.partial.clear();
        }
    }
}

/// Removes the `\r` or `\r\r` that preceded the `\n` (already cut off).
fn strip_terminator(line: &str) -> &str {
    let line = line.strip_suffix('\r').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

/// One log line: terminator removed, ESC characters removed.
fn clean_line(line: &str) -> Cow<'_, str> {
    let line = strip_terminator(line);
    if line.contains(ESC) {
        Cow::Owned(line.replace(ESC, ""))
    } else {
        Cow::Borrowed(line)
    }
}

/// Renders control characters visibly, the way LAVA's YAML log writer escapes them
/// (`\r`, `\t`, `\a`, `\xHH`...), for sinks that write plain text.
pub fn escape_control_chars(line: &str) -> Cow<'_, str> {
    if !line
        .chars()
        .any(|c| c.is_control() || c == '\\' || is_yaml_special(c))
    {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\0' => out.push_str("\\0"),
            '\x07' => out.push_str("\\a"),
            '\x08' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\x0b' => out.push_str("\\v"),
            '\x0c' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            '\x1b' => out.push_str("\\e"),
            '\u{85}' => out.push_str("\\N"),
            '\u{a0}' => out.push_str("\\_"),
            '\u{2028}' => out.push_str("\\L"),
            '\u{2029}' => out.push_str("\\P"),
            c if (c as u32) < 0x100 && c.is_control() => {
                out.push_str(&format!("\\x{:02X}", c as u32))
            }
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn is_yaml_special(c: char) -> bool {
    matches!(c, '\u{a0}' | '\u{2028}' | '\u{2029}')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(pieces: &[&str]) -> Vec<String> {
        let mut splitter = LineSplitter::new();
        let mut lines = Vec::new();
        for piece in pieces {
            splitter.push(piece, |l| lines.push(l.to_string()));
        }
        splitter.finish(|l| lines.push(l.to_string()));
        lines
    }

    #[test]
    fn terminators_as_lava_splits_them() {
        assert_eq!(
            split(&["a\r\r\nb\r\nc\nd\r\r\r\ne"]),
            vec!["a", "b", "c", "d\r", "e"]
        );
    }

    #[test]
    fn partial_line_is_held_until_newline() {
        assert_eq!(
            split(&["Kernel pa", "nic - not", " syncing\r", "\nnext"]),
            vec!["Kernel panic - not syncing", "next"]
        );
    }

    #[test]
    fn esc_is_removed_even_across_pieces() {
        assert_eq!(
            split(&["\x1b[0m\x1b", "[1mbold\r\n", "x\x1b[0m\n"]),
            vec!["[0m[1mbold", "x[0m"]
        );
    }

    #[test]
    fn bare_carriage_return_stays_inside_the_line() {
        assert_eq!(split(&["50%\r100%\n"]), vec!["50%\r100%"]);
    }

    #[test]
    fn empty_lines_are_kept() {
        assert_eq!(split(&["\n\r\n\n"]), vec!["", "", ""]);
    }

    #[test]
    fn escaping_control_characters() {
        assert_eq!(escape_control_chars("plain"), "plain");
        assert_eq!(
            escape_control_chars("a\rb\x07\x01\\\u{2028}"),
            "a\\rb\\a\\x01\\\\\\L"
        );
    }
}
