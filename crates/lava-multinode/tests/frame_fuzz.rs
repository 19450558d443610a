//! Property ("fuzz") tests of the frame decoder: arbitrary bytes never
//! panic, never read past the limit, and valid frames round-trip however
//! they are split.

use std::time::Duration;

use lava_multinode::codec::{Decoded, FrameError, decode_frame, encode_frame, read_frame};
use lava_multinode::wire::{Payload, Request, Response};
use proptest::prelude::*;

const LIMIT: usize = 4096;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn decoder_never_panics_and_respects_the_limit(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
        match decode_frame(&bytes, LIMIT) {
            Ok(Decoded::Frame { body, consumed }) => {
                prop_assert!(body.len() <= LIMIT);
                prop_assert_eq!(consumed, 8 + body.len());
                prop_assert!(consumed <= bytes.len());
            }
            Ok(Decoded::Incomplete) => {
                prop_assert!(bytes.iter().take(8).all(u8::is_ascii_hexdigit));
            }
            Err(FrameError::BadHeader(_)) => {
                prop_assert!(!bytes.iter().take(8).all(u8::is_ascii_hexdigit));
            }
            Err(FrameError::TooLong { announced, .. }) => prop_assert!(announced > LIMIT),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn hex_headers_with_junk_bodies(length in 0usize..0x2000, body in proptest::collection::vec(any::<u8>(), 0..0x300)) {
        let mut bytes = format!("{length:08X}").into_bytes();
        bytes.extend_from_slice(&body);
        match decode_frame(&bytes, LIMIT) {
            Ok(Decoded::Frame { body: got, .. }) => prop_assert_eq!(got, &body[..length]),
            Ok(Decoded::Incomplete) => prop_assert!(body.len() < length && length <= LIMIT),
            Err(FrameError::TooLong { .. }) => prop_assert!(length > LIMIT),
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    #[test]
    fn async_reader_agrees_with_the_pure_decoder(bytes in proptest::collection::vec(any::<u8>(), 0..96)) {
        let result = runtime().block_on(async {
            let mut reader: &[u8] = &bytes;
            read_frame(&mut reader, LIMIT, Duration::from_secs(1)).await
        });
        match (result, decode_frame(&bytes, LIMIT)) {
            (Ok(None), _) => prop_assert!(bytes.is_empty()),
            (Ok(Some(body)), Ok(Decoded::Frame { body: expected, .. })) => prop_assert_eq!(&body[..], expected),
            (Err(FrameError::Truncated { .. }), Ok(Decoded::Incomplete)) => {}
            (Err(FrameError::BadHeader(_)), Err(FrameError::BadHeader(_))) => {}
            (Err(FrameError::TooLong { .. }), Err(FrameError::TooLong { .. })) => {}
            (reader, decoder) => prop_assert!(false, "reader {reader:?} vs decoder {decoder:?}"),
        }
    }

    #[test]
    fn requests_round_trip_through_split_frames(
        id in "\\PC{0,40}",
        key in "[a-z]{1,8}",
        value in "\\PC{0,60}",
        cuts in proptest::collection::vec(1usize..16, 0..8),
    ) {
        let mut map = indexmap::IndexMap::new();
        map.insert(key, value);
        let request = Request {
            request: Some("lava_send".into()),
            message_id: Some(id.into()),
            message: Some(Payload::from(map)),
            ..Request::default()
        };
        let frame = encode_frame(&request);
        prop_assert!(frame.is_ascii(), "frames are ASCII like LAVA's");
        // Deliver the frame in pieces through a duplex pipe.
        let body = runtime().block_on(async {
            let (mut writer, mut reader) = tokio::io::duplex(16);
            let frame = frame.clone();
            let feed = tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut rest = &frame[..];
                for cut in cuts.iter().copied().chain(std::iter::repeat(7)) {
                    if rest.is_empty() { break; }
                    let n = cut.min(rest.len());
                    writer.write_all(&rest[..n]).await.unwrap();
                    rest = &rest[n..];
                }
            });
            let body = read_frame(&mut reader, 1 << 20, Duration::from_secs(5)).await;
            feed.await.unwrap();
            body
        }).unwrap().unwrap();
        let back: Request = serde_json::from_slice(&body).unwrap();
        prop_assert_eq!(back, request);
    }

    #[test]
    fn responses_round_trip(text in "\\PC{0,40}") {
        let response = Response::Ack { message: Some(lava_multinode::Delivered::Text(text)) };
        let frame = encode_frame(&response);
        let Ok(Decoded::Frame { body, .. }) = decode_frame(&frame, LIMIT) else {
            return Err(TestCaseError::fail("frame did not decode"));
        };
        let back: Response = serde_json::from_slice(body).unwrap();
        prop_assert_eq!(back, response);
    }
}
