//! The results builder on hand-written console text: parse patterns, fixups,
//! invalid signals, unfinished runs, MultiNode cases.

use std::path::PathBuf;

use lava_shell::overlay::{DeployedDefinition, TestdefMetadata};
use lava_shell::results::{MarkerKind, ShellOutput};
use lava_shell::signals::{MultinodeHook, MultinodeOutcome, dispatch_multinode};
use lava_shell::testdef::{LavaSignal, ParseSection, RepositoryKind};
use lava_shell::*;

fn definition(pattern: Option<ParseSection>) -> DeployedDefinition {
    DeployedDefinition {
        index: 0,
        stage: 0,
        name: "smoke".into(),
        test_name: "0_smoke".into(),
        uuid: "9_1.2".into(),
        runner_path: "/lava-9/0/tests/0_smoke".into(),
        overlay_path: PathBuf::new(),
        from: RepositoryKind::Git,
        repository: "https://example.org/t.git".into(),
        path: "smoke.yaml".into(),
        revision: None,
        commit_id: Some("abc".into()),
        metadata: TestdefMetadata {
            os: "".into(),
            devices: "".into(),
            environment: "".into(),
            branch_vcs: "git".into(),
            project_name: "smoke".into(),
            commit_id: Some("abc".into()),
        },
        expected: vec![],
        pattern,
        lava_signal: LavaSignal::Stdout,
    }
}

fn records(outputs: &[ShellOutput]) -> Vec<&ResultRecord> {
    outputs
        .iter()
        .filter_map(|o| {
            if let ShellOutput::Result(r) = o {
                Some(r)
            } else {
                None
            }
        })
        .collect()
}

fn feed(builder: &mut ResultsBuilder, text: &str) -> Vec<ShellOutput> {
    let mut parser = SignalParser::new();
    parser
        .feed(text.as_bytes())
        .iter()
        .flat_map(|e| builder.handle(e))
        .collect()
}

#[test]
fn parse_patterns_and_fixups() {
    let pattern = ParseSection {
        pattern: r"^(?P<test_case_id>\S+):\s+(?P<result>PASSED|FAILED)(\s+(?P<measurement>[0-9.]+)\s+(?P<units>\w+))?".into(),
        fixupdict: Some([("PASSED".to_string(), "pass".to_string()), ("FAILED".to_string(), "fail".to_string())].into_iter().collect()),
    };
    let defs = [definition(Some(pattern))];
    let mut builder = ResultsBuilder::new("ns", 0, "3.1", &defs);
    assert!(builder.active_pattern().is_none());
    feed(&mut builder, "<LAVA_SIGNAL_STARTRUN 0_smoke 9_1.2>\n");
    let active = builder
        .active_pattern()
        .expect("pattern enabled at STARTRUN")
        .clone();
    let text = "boot noise\nnet-up: PASSED 12.5 ms\n";
    let found = active.find(text).unwrap();
    assert_eq!(&text[found.range.clone()], "net-up: PASSED 12.5 ms");
    let out = builder.pattern_match(&found);
    assert!(
        matches!(&out[0], ShellOutput::Marker { case, kind: MarkerKind::TestCase } if case == "net-up")
    );
    let record = records(&out)[0];
    assert_eq!(
        serde_json::to_string(record).unwrap(),
        r#"{"definition":"0_smoke","case":"net-up","result":"pass","measurement":12.5,"units":"ms"}"#
    );

    // With a parse section only its own fixupdict applies: PASS is not a result.
    let out = feed(
        &mut builder,
        "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x RESULT=PASS>\n",
    );
    assert!(records(&out).is_empty());
    let out = feed(
        &mut builder,
        "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=x RESULT=FAILED>\n",
    );
    assert_eq!(records(&out)[0].result(), Some("fail"));

    let out = feed(&mut builder, "<LAVA_SIGNAL_ENDRUN 0_smoke 9_1.2>\n");
    assert!(builder.active_pattern().is_none());
    let suite = records(&out)[0];
    assert_eq!(suite.0["commit_id"], "abc");
    assert_eq!(suite.0["repository"], "https://example.org/t.git");
    assert!(out.iter().any(|o| matches!(o, ShellOutput::Log { message, .. } if message == "--- 0_smoke Test Report ---")));
}

#[test]
fn default_fixup_invalid_values_and_unfinished_runs() {
    let defs = [definition(None)];
    let mut builder = ResultsBuilder::new("ns", 0, "3.1", &defs);
    // A TESTCASE before STARTRUN is a TestError.
    let out = feed(
        &mut builder,
        "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass>\n",
    );
    assert!(
        out.iter().any(
            |o| matches!(o, ShellOutput::Error(e) if e.to_string() == "Invalid TESTCASE signal")
        )
    );

    feed(&mut builder, "<LAVA_SIGNAL_STARTRUN 0_smoke 9_1.2>\n");
    let out = feed(
        &mut builder,
        "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=PASS>\n",
    );
    assert_eq!(records(&out)[0].result(), Some("pass"), "default fixup");
    for bad in [
        "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=great>",
        "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass MEASUREMENT=fast>",
        "<LAVA_SIGNAL_TESTCASE TEST_CASE_ID=a RESULT=pass junk>",
    ] {
        let out = feed(&mut builder, &format!("{bad}\n"));
        assert!(records(&out).is_empty(), "{bad} produced a record");
        assert!(
            out.iter().any(|o| matches!(
                o,
                ShellOutput::Log {
                    level: lava_shell::results::LogLevel::Error,
                    ..
                }
            )),
            "{bad}"
        );
    }
    let out = feed(&mut builder, "<LAVA_SIGNAL_TESTREFERENCE a pass>\n");
    assert!(out.iter().any(
        |o| matches!(o, ShellOutput::Error(e) if e.to_string() == "Invalid use of TESTREFERENCE")
    ));
    let out = feed(&mut builder, "<LAVA_SIGNAL_TESTRAISE disk is gone>\n");
    assert!(
        out.iter()
            .any(|o| matches!(o, ShellOutput::Error(ShellError::Raised(m)) if m == "disk is gone"))
    );
    let out = feed(
        &mut builder,
        "<LAVA_SIGNAL_TESTEVENT hello>\n<LAVA_SIGNAL_TESTFEEDBACK host>\n",
    );
    assert!(
        out.iter()
            .any(|o| matches!(o, ShellOutput::Feedback { namespace } if namespace == "host"))
    );
    assert!(out.iter().any(|o| matches!(o, ShellOutput::Log { message, .. } if message == "Received signal: <TESTEVENT> hello")));

    let out = builder.finish();
    let record = records(&out)[0];
    let keys: Vec<&str> = record.0.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "definition",
            "case",
            "uuid",
            "result",
            "commit_id",
            "duration"
        ]
    );
    assert_eq!(record.result(), Some("fail"));
}

struct Coordinator;

impl MultinodeHook for Coordinator {
    fn handle(&mut self, request: &MultinodeRequest) -> MultinodeOutcome {
        let reply = match request {
            MultinodeRequest::Send { .. } => None,
            other => Some(format!("<LAVA_{}_COMPLETE>", other.api())),
        };
        MultinodeOutcome {
            passed: true,
            reply,
        }
    }
}

#[test]
fn multinode_requests_reach_the_hook_and_become_cases() {
    let defs = [definition(None)];
    let mut builder = ResultsBuilder::new("ns", 0, "3.1", &defs);
    feed(&mut builder, "<LAVA_SIGNAL_STARTRUN 0_smoke 9_1.2>\n");
    let mut parser = SignalParser::new();
    let events = parser.feed(
        b"<LAVA_MULTI_NODE> <LAVA_SEND ready ip=1.2.3.4>\n<LAVA_MULTI_NODE> <LAVA_SYNC Go>\n",
    );
    let handled = dispatch_multinode(&events, &mut Coordinator);
    assert_eq!(handled.len(), 2);
    assert_eq!(handled[0].1.reply, None);
    assert_eq!(handled[1].1.reply.as_deref(), Some("<LAVA_SYNC_COMPLETE>"));
    let out: Vec<ShellOutput> = handled
        .iter()
        .flat_map(|(request, outcome)| builder.multinode_case(request, outcome.passed))
        .collect();
    let cases: Vec<_> = records(&out)
        .iter()
        .map(|r| r.case().unwrap().to_string())
        .collect();
    assert_eq!(cases, ["multinode-send-ready", "multinode-sync-go"]);
}
