//! Incremental, lossy UTF-8 decoding of a byte stream that arrives in arbitrary pieces.
//!
//! The result never depends on where the stream was split: a multi-byte sequence cut
//! by a read boundary is held until the rest arrives, and invalid bytes become U+FFFD
//! exactly as [`String::from_utf8_lossy`] would replace them in the whole stream.

use std::borrow::Cow;

/// Decodes UTF-8 piece by piece, replacing invalid sequences with U+FFFD.
#[derive(Debug, Default, Clone)]
pub struct Utf8Decoder {
    /// The start of a multi-byte sequence cut at the end of the previous piece (≤ 3 bytes).
    held: Vec<u8>,
}

impl Utf8Decoder {
    /// A decoder holding no partial sequence.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes the next piece of the stream. Bytes of an incomplete trailing sequence
    /// are kept for the next call.
    pub fn decode<'a>(&mut self, piece: &'a [u8]) -> Cow<'a, str> {
        if self.held.is_empty() {
            if let Ok(text) = std::str::from_utf8(piece) {
                return Cow::Borrowed(text);
            }
            let mut out = String::with_capacity(piece.len() + 3);
            self.decode_into(piece, &mut out);
            Cow::Owned(out)
        } else {
            let mut joined = std::mem::take(&mut self.held);
            joined.extend_from_slice(piece);
            let mut out = String::with_capacity(joined.len() + 3);
            self.decode_into(&joined, &mut out);
            Cow::Owned(out)
        }
    }

    /// Ends the stream: an incomplete held sequence becomes one U+FFFD.
    pub fn finish(&mut self) -> Option<&'static str> {
        if self.held.is_empty() {
            None
        } else {
            self.held.clear();
            Some("\u{FFFD}")
        }
    }

    fn decode_into(&mut self, mut bytes: &[u8], out: &mut String) {
        loop {
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    out.push_str(text);
                    return;
                }
                Err(error) => {
                    let (valid, rest) = bytes.split_at(error.valid_up_to());
                    // SAFETY-free: `valid_up_to` guarantees this prefix is valid UTF-8.
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match error.error_len() {
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            bytes = &rest[bad..];
                        }
                        None => {
                            // An incomplete sequence at the end: wait for the rest.
                            self.held.extend_from_slice(rest);
                            return;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_split(bytes: &[u8], splits: &[usize]) -> String {
        let mut decoder = Utf8Decoder::new();
        let mut out = String::new();
        let mut last = 0;
        for &at in splits.iter().chain(std::iter::once(&bytes.len())) {
            out.push_str(&decoder.decode(&bytes[last..at]));
            last = at;
        }
        if let Some(tail) = decoder.finish() {
            out.push_str(tail);
        }
        out
    }

    #[test]
    fn split_multibyte_sequence_is_joined() {
        let bytes = "é€😀".as_bytes();
        for at in 0..=bytes.len() {
            assert_eq!(decode_split(bytes, &[at]), "é€😀", "split at {at}");
        }
    }

    #[test]
    fn invalid_bytes_match_whole_stream_lossy_decoding() {
        let bytes = b"a\xffb\xe2\x82c\xf0\x9f\x98";
        let expected = String::from_utf8_lossy(bytes).into_owned();
        for at in 0..=bytes.len() {
            assert_eq!(decode_split(bytes, &[at]), expected, "split at {at}");
        }
    }
}
