//! Property tests of the signal parser: it never panics, and what lava-test-case
//! prints (under dash) parses back to the same fields.

use std::process::Command;

use lava_shell::signals::{Signal, SignalParser, parse_line};
use proptest::prelude::*;

proptest! {
    #[test]
    fn parser_never_panics(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20)) {
        let mut parser = SignalParser::new();
        for chunk in &chunks {
            let _ = parser.feed(chunk);
        }
    }

    #[test]
    fn parser_never_panics_on_marker_like_text(line in "(<LAVA_(SIGNAL_|MULTI_NODE> <LAVA_|TEST_RUNNER )[A-Z_]{0,12}[ =a-z0-9>]{0,30}){1,4}") {
        let _ = parse_line(&line);
        let mut parser = SignalParser::new();
        let _ = parser.feed(line.as_bytes());
        let _ = parser.feed(b"\n");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn lava_test_case_output_round_trips(
        case in "[A-Za-z0-9_.-]{1,20}",
        result in prop::sample::select(vec!["pass", "fail", "skip", "unknown"]),
        measurement in proptest::option::of(-1.0e6f64..1.0e6),
        units in "[A-Za-z/%]{1,6}",
    ) {
        let dir = tempfile::tempdir().unwrap();
        let helper = dir.path().join("lava-test-case");
        let body = lava_shell::scripts::GENERIC_SCRIPTS.iter().find(|s| s.name == "lava-test-case").unwrap().body;
        let common = lava_shell::scripts::GENERIC_SCRIPTS.iter().find(|s| s.name == "lava-common-functions").unwrap().body;
        std::fs::write(&helper, body).unwrap();
        std::fs::write(dir.path().join("lava-common-functions"), common).unwrap();
        let mut args = vec![helper.display().to_string(), case.clone(), "--result".into(), result.to_string()];
        let measurement_text = measurement.map(|m| m.to_string());
        if let Some(m) = &measurement_text {
            args.extend(["--measurement".to_string(), m.clone(), "--units".to_string(), units.clone()]);
        }
        let out = Command::new("/bin/sh").args(&args).output().unwrap();
        prop_assert!(out.status.success());
        let mut parser = SignalParser::new();
        let events = parser.feed(&out.stdout);
        prop_assert_eq!(events.len(), 1);
        let Signal::TestCase { fields } = &events[0].signal else { panic!("{:?}", events[0]) };
        prop_assert_eq!(&fields["test_case_id"], &case);
        prop_assert_eq!(fields["result"].as_str(), result);
        if let Some(m) = &measurement_text {
            prop_assert_eq!(&fields["measurement"], m);
            prop_assert_eq!(&fields["units"], &units);
            prop_assert_eq!(fields["measurement"].parse::<f64>().unwrap(), measurement.unwrap());
        }
    }
}
