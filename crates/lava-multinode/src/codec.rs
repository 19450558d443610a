//! The coordinator frame: 8 upper-case hex digits giving the body length in
//! bytes, then a JSON body. One request and one reply per TCP connection.
//!
//! Bodies are written the way LAVA's Python writes them (`json.dumps`
//! defaults): ASCII only (`\uXXXX` escapes), `", "` and `": "` separators,
//! so the header is identical to the reference's for the same document.
//! Reading is exact (8 header bytes, then exactly N body bytes), which is
//! strictly more robust than the reference's chunk loop and compatible with it.

use std::io;
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Length of the hex length header.
pub const HEADER_LEN: usize = 8;

/// The largest request LAVA's client will send (0xFFFE characters).
pub const LAVA_CLIENT_MAX_REQUEST: usize = 0xFFFE;

/// Errors of encoding or decoding one frame.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The 8-character length header is not hexadecimal.
    #[error("frame header {0:?} is not 8 hexadecimal digits")]
    BadHeader(String),
    /// The announced body is longer than the limit.
    #[error("frame announces {announced} bytes, more than the limit of {limit}")]
    TooLong {
        /// The length in the header.
        announced: usize,
        /// The largest length accepted.
        limit: usize,
    },
    /// The connection closed before the whole body arrived.
    #[error("connection closed after {received} of {expected} bytes")]
    Truncated {
        /// Body bytes received.
        received: usize,
        /// Body bytes announced.
        expected: usize,
    },
    /// The frame did not arrive in time.
    #[error("no complete frame within {0:?}")]
    Deadline(Duration),
    /// The body is not valid JSON.
    #[error("frame body is not valid JSON: {0}")]
    BadJson(#[source] serde_json::Error),
    /// Reading or writing the socket failed.
    #[error("i/o error: {0}")]
    Io(#[from] io::Error),
}

/// Serialise `value` the way LAVA's Python does (ASCII-escaped, Python
/// separators).
pub fn to_lava_json<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, PythonStyle);
    value
        .serialize(&mut serializer)
        .expect("serialising to memory with string keys cannot fail");
    out
}

/// A whole frame (header + body) for `value`, ready for one write.
pub fn encode_frame<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let body = to_lava_json(value);
    frame_bytes(&body)
}

/// Header + `body` in one buffer.
pub fn frame_bytes(body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(format!("{:08X}", body.len()).as_bytes());
    frame.extend_from_slice(body);
    frame
}

/// Parse the 8-byte header into a body length. Upper and lower case hex are
/// accepted (the reference accepts both); anything else is refused.
pub fn parse_header(header: &[u8]) -> Result<usize, FrameError> {
    let bad = || FrameError::BadHeader(String::from_utf8_lossy(header).into_owned());
    if header.len() != HEADER_LEN || !header.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    let text = std::str::from_utf8(header).map_err(|_| bad())?;
    usize::from_str_radix(text, 16).map_err(|_| bad())
}

/// Outcome of looking for a frame at the start of a buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// More bytes are needed.
    Incomplete,
    /// A complete frame: its body and the number of bytes it used.
    Frame {
        /// The frame's JSON body.
        body: &'a [u8],
        /// Bytes used by the frame, header included.
        consumed: usize,
    },
}

/// Pure decoder: find one frame at the start of `buffer`, enforcing
/// `limit` on the announced body length before any body byte is needed.
pub fn decode_frame(buffer: &[u8], limit: usize) -> Result<Decoded<'_>, FrameError> {
    if buffer.len() < HEADER_LEN {
        // Reject a bad header as early as its first bad byte.
        if let Some(byte) = buffer.iter().find(|b| !b.is_ascii_hexdigit()) {
            return Err(FrameError::BadHeader(format!("{:?}", *byte as char)));
        }
        return Ok(Decoded::Incomplete);
    }
    let length = parse_header(&buffer[..HEADER_LEN])?;
    if length > limit {
        return Err(FrameError::TooLong {
            announced: length,
            limit,
        });
    }
    let end = HEADER_LEN + length;
    if buffer.len() < end {
        return Ok(Decoded::Incomplete);
    }
    Ok(Decoded::Frame {
        body: &buffer[HEADER_LEN..end],
        consumed: end,
    })
}

/// Read one frame body from `reader`: exactly 8 header bytes, then exactly
/// the announced number of body bytes.
///
/// Returns `Ok(None)` when the peer closed without sending a single byte
/// (LAVA's "empty reply"). The whole read must finish within `deadline`.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
    deadline: Duration,
) -> Result<Option<Vec<u8>>, FrameError> {
    tokio::time::timeout(deadline, read_frame_unbounded(reader, limit))
        .await
        .map_err(|_| FrameError::Deadline(deadline))?
}

async fn read_frame_unbounded<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    match read_header(reader, limit).await? {
        Some(length) => read_body(reader, length).await.map(Some),
        None => Ok(None),
    }
}

/// Read the 8 header bytes of a frame and return the body length it
/// announces, refusing more than `limit`; `Ok(None)` when the peer closed
/// without sending a byte. With [`read_body`], the two halves of
/// [`read_frame`] for a reader that admits the body before reading it (the
/// coordinator's budget of bytes being read). No deadline of its own.
pub async fn read_header<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit: usize,
) -> Result<Option<usize>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let received = read_full(reader, &mut header).await?;
    if received == 0 {
        return Ok(None);
    }
    if received < HEADER_LEN {
        // Judge what we have: bad hex is a bad header, good hex is truncation.
        return Err(if header[..received].iter().all(u8::is_ascii_hexdigit) {
            FrameError::Truncated {
                received,
                expected: HEADER_LEN,
            }
        } else {
            FrameError::BadHeader(String::from_utf8_lossy(&header[..received]).into_owned())
        });
    }
    let length = parse_header(&header)?;
    if length > limit {
        return Err(FrameError::TooLong {
            announced: length,
            limit,
        });
    }
    Ok(Some(length))
}

/// Read exactly `length` body bytes (announced by [`read_header`]). No
/// deadline of its own.
pub async fn read_body<R: AsyncRead + Unpin>(
    reader: &mut R,
    length: usize,
) -> Result<Vec<u8>, FrameError> {
    let mut body = vec![0u8; length];
    let received = read_full(reader, &mut body).await?;
    if received < length {
        return Err(FrameError::Truncated {
            received,
            expected: length,
        });
    }
    Ok(body)
}

/// Fill `buffer` unless EOF comes first; returns the bytes read.
async fn read_full<R: AsyncRead + Unpin>(reader: &mut R, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        let n = reader.read(&mut buffer[filled..]).await?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

/// serde_json formatter reproducing Python's `json.dumps` defaults.
struct PythonStyle;

impl serde_json::ser::Formatter for PythonStyle {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (index, ch) in fragment.char_indices() {
            if ch.is_ascii() {
                continue;
            }
            writer.write_all(&fragment.as_bytes()[start..index])?;
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            start = index + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Response;
    use serde_json::json;

    #[test]
    fn ack_frame_is_byte_identical_to_lavas() {
        assert_eq!(
            encode_frame(&Response::ACK),
            b"00000013{\"response\": \"ack\"}"
        );
        assert_eq!(
            encode_frame(&Response::WAIT),
            b"00000014{\"response\": \"wait\"}"
        );
    }

    #[test]
    fn spec_examples_have_the_documented_lengths() {
        // coordinator-protocol.md §12: 232-byte registration, 73-byte group_data reply.
        let registration = json!({"port": 3079, "blocksize": 4096, "poll_delay": 3,
            "host": "coord.lab", "hostname": "worker-a", "client_name": "7001",
            "group_name": "6c1e0c8e-0d7e-4b7c-9a51-2f5b1d0c9e11", "role": "server",
            "request": "group_data", "group_size": 2});
        let ordered: crate::wire::Request = serde_json::from_value(registration).unwrap();
        assert_eq!(&encode_frame(&ordered)[..8], b"000000E8");
        let reply = Response::GroupData {
            roles: [
                ("7001".to_string(), "server".to_string()),
                ("7002".to_string(), "client".to_string()),
            ]
            .into(),
        };
        assert_eq!(&encode_frame(&reply)[..8], b"00000049");
    }

    #[test]
    fn non_ascii_is_escaped_like_python() {
        let body = to_lava_json(&json!({"k": "é😀"}));
        assert_eq!(body, br#"{"k": "\u00e9\ud83d\ude00"}"#);
        let back: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(back["k"], "é😀");
    }

    #[test]
    fn header_parsing() {
        assert_eq!(parse_header(b"00000013").unwrap(), 0x13);
        assert_eq!(parse_header(b"0000abcd").unwrap(), 0xabcd);
        assert!(parse_header(b"0000001G").is_err());
        assert!(parse_header(b"+0000001").is_err());
        assert!(parse_header(b" 0000001").is_err());
        assert!(parse_header(b"0013").is_err());
    }

    #[test]
    fn decoder_enforces_limit_before_the_body() {
        assert!(matches!(
            decode_frame(b"FFFFFFFF", 1024),
            Err(FrameError::TooLong { .. })
        ));
        assert_eq!(decode_frame(b"0000", 1024).unwrap(), Decoded::Incomplete);
        assert!(decode_frame(b"00x", 1024).is_err());
        assert_eq!(
            decode_frame(b"00000002{}rest", 1024).unwrap(),
            Decoded::Frame {
                body: b"{}",
                consumed: 10
            }
        );
    }

    #[tokio::test]
    async fn reader_distinguishes_empty_truncated_and_bad() {
        let limit = 1024;
        let deadline = Duration::from_secs(1);
        let mut empty: &[u8] = b"";
        assert!(
            read_frame(&mut empty, limit, deadline)
                .await
                .unwrap()
                .is_none()
        );
        let mut short_header: &[u8] = b"0000";
        assert!(matches!(
            read_frame(&mut short_header, limit, deadline).await,
            Err(FrameError::Truncated { .. })
        ));
        let mut short_body: &[u8] = b"00000010{}";
        assert!(matches!(
            read_frame(&mut short_body, limit, deadline).await,
            Err(FrameError::Truncated {
                received: 2,
                expected: 16
            })
        ));
        let mut bad: &[u8] = b"hello world";
        assert!(matches!(
            read_frame(&mut bad, limit, deadline).await,
            Err(FrameError::BadHeader(_))
        ));
        let mut good: &[u8] = b"00000002{}";
        assert_eq!(
            read_frame(&mut good, limit, deadline)
                .await
                .unwrap()
                .unwrap(),
            b"{}"
        );
    }

    #[tokio::test]
    async fn reader_gives_up_at_the_deadline() {
        let (mut client, mut server) = tokio::io::duplex(64);
        tokio::io::AsyncWriteExt::write_all(&mut client, b"0000")
            .await
            .unwrap();
        let result = read_frame(&mut server, 1024, Duration::from_millis(50)).await;
        assert!(matches!(result, Err(FrameError::Deadline(_))));
        drop(client);
    }
}
