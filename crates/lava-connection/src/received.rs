//! Everything that happens to bytes received from a device, without any I/O: lossy
//! UTF-8 decoding, splitting into log lines, and buffering for pattern matching.
//!
//! [`ReceivedText`] is what [`crate::ShellSession`] feeds each read into; it is public so
//! the same pipeline can be driven synchronously (property tests, the throughput bench).

use crate::decode::Utf8Decoder;
use crate::lines::LineSplitter;
use crate::matcher::{Match, MatchBuffer, Patterns};

/// Decoder, line splitter and match buffer over one received stream.
#[derive(Debug, Clone, Default)]
pub struct ReceivedText {
    decoder: Utf8Decoder,
    lines: LineSplitter,
    buffer: MatchBuffer,
}

impl ReceivedText {
    /// See [`MatchBuffer::new`] for the two bounds.
    pub fn new(max_buffer: usize, max_match_span: usize) -> Self {
        ReceivedText {
            decoder: Utf8Decoder::new(),
            lines: LineSplitter::new(),
            buffer: MatchBuffer::new(max_buffer, max_match_span),
        }
    }

    /// Takes the next bytes of the stream; `line` gets every log line they complete.
    pub fn push_bytes(&mut self, bytes: &[u8], line: impl FnMut(&str)) {
        let text = self.decoder.decode(bytes);
        self.lines.push(&text, line);
        self.buffer.push(&text);
    }

    /// The earliest match of `patterns` in the unconsumed text (consumes through it).
    pub fn find(&mut self, patterns: &Patterns) -> Option<Match> {
        self.buffer.find(patterns)
    }

    /// The stream ended: flush the held bytes and partial line.
    pub fn finish(&mut self, mut line: impl FnMut(&str)) {
        if let Some(tail) = self.decoder.finish() {
            self.lines.push(tail, &mut line);
            self.buffer.push(tail);
        }
        self.lines.finish(line);
    }

    /// Text received and not consumed by a match.
    pub fn unconsumed(&self) -> &str {
        self.buffer.unconsumed()
    }

    /// The partial line waiting for its newline.
    pub fn partial_line(&self) -> &str {
        self.lines.partial()
    }

    /// Forgets the unconsumed text (the log is unaffected).
    pub fn clear(&mut self) {
        self.buffer.clear();
    }
}
