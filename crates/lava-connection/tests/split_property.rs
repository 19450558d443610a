//! Property: where a byte stream is split into reads changes neither the matches nor
//! the log lines.

use lava_connection::{Match, Patterns, ReceivedText};
use proptest::prelude::*;

/// Pieces of realistic console output; each is atomic for the patterns below.
fn token() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => "\\[ {0,4}[0-9]{1,3}\\.[0-9]{6}\\] [a-z :=0-9]{0,40}".prop_map(String::into_bytes),
        2 => Just(b"\n".to_vec()),
        2 => Just(b"\r\n".to_vec()),
        1 => Just(b"\r\r\n".to_vec()),
        1 => Just(b"\r".to_vec()),
        2 => Just(b"lava-test: # ".to_vec()),
        1 => Just(b"login: ".to_vec()),
        1 => "[a-z_]{1,10}".prop_map(|id| {
            format!("<LAVA_SIGNAL_TESTCASE TEST_CASE_ID={id} RESULT=pass>").into_bytes()
        }),
        1 => Just(b"\x1b[0m\x1b[1;32m".to_vec()),
        1 => Just("é€😀".as_bytes().to_vec()),
        1 => Just(vec![0xff]),
        1 => Just(vec![0xe2, 0x82]),
    ]
}

fn stream_and_splits() -> impl Strategy<Value = (Vec<u8>, Vec<usize>)> {
    prop::collection::vec(token(), 0..60)
        .prop_map(|tokens| tokens.concat())
        .prop_flat_map(|stream| {
            let len = stream.len();
            (
                Just(stream),
                prop::collection::vec(0..=len, 0..20).prop_map(|mut splits| {
                    splits.sort_unstable();
                    splits
                }),
            )
        })
}

fn patterns() -> Patterns {
    Patterns::new(&[r"lava-test: # ", r"<LAVA_SIGNAL_(\S+) ([^>]+)>", r"login: "]).unwrap()
}

/// Feeds the stream in pieces, looking for matches after every piece as a session does.
fn feed(
    stream: &[u8],
    splits: &[usize],
    mut received: ReceivedText,
    patterns: &Patterns,
) -> (Vec<Match>, Vec<String>) {
    let mut matches = Vec::new();
    let mut lines = Vec::new();
    let mut last = 0;
    for &at in splits.iter().chain(std::iter::once(&stream.len())) {
        received.push_bytes(&stream[last..at], |l| lines.push(l.to_string()));
        last = at;
        while let Some(found) = received.find(patterns) {
            matches.push(found);
        }
    }
    received.finish(|l| lines.push(l.to_string()));
    while let Some(found) = received.find(patterns) {
        matches.push(found);
    }
    (matches, lines)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn splitting_changes_neither_matches_nor_log_lines((stream, splits) in stream_and_splits()) {
        let patterns = patterns();
        let whole = feed(&stream, &[], ReceivedText::default(), &patterns);
        let pieces = feed(&stream, &splits, ReceivedText::default(), &patterns);
        prop_assert_eq!(&pieces.0, &whole.0);
        prop_assert_eq!(&pieces.1, &whole.1);
        // The log is exactly the lossy decoding of the stream, ESC removed, split as LAVA.
        let text = String::from_utf8_lossy(&stream).replace('\x1b', "");
        let mut expected: Vec<&str> = text.split('\n').collect();
        // The piece after the last newline is a held partial line, logged at the end
        // unless it is empty.
        if expected.last().is_some_and(|l| l.is_empty()) {
            expected.pop();
        }
        let expected: Vec<String> = expected
            .into_iter()
            .map(|l| l.strip_suffix('\r').unwrap_or(l))
            .map(|l| l.strip_suffix('\r').unwrap_or(l).to_string())
            .collect();
        prop_assert_eq!(&whole.1, &expected);
        // Every prompt in the stream is matched exactly once.
        let prompts = text.matches("lava-test: # ").count();
        prop_assert_eq!(whole.0.iter().filter(|m| m.index == 0).count(), prompts);
    }

    #[test]
    fn bounded_prompts_survive_a_tiny_buffer((stream, splits) in stream_and_splits()) {
        let prompt = Patterns::new(&["lava-test: # "]).unwrap();
        let whole = feed(&stream, &[], ReceivedText::default(), &prompt);
        let tiny = feed(&stream, &splits, ReceivedText::new(64, 16), &prompt);
        prop_assert_eq!(whole.0.len(), tiny.0.len());
        prop_assert!(tiny.0.iter().all(|m| m.matched == "lava-test: # " && m.before.len() <= 64));
        prop_assert_eq!(&whole.1, &tiny.1);
    }
}
