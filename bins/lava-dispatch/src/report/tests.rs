use super::*;
use quick_xml::XmlVersion;
use quick_xml::events::{BytesStart, Event};
use quick_xml::reader::Reader;
use std::collections::BTreeMap;

fn case(suite: &str, name: &str, result: TestResult) -> TestCase {
    TestCase::new(suite, name, result)
}

/// A job with passing, failing, skipped, unknown and measured cases, markup in names, and
/// an incomplete job record.
fn sample() -> Report {
    let mut speed = case("0_smoke", "speed", TestResult::Pass);
    speed.measurement = Some("12.5".into());
    speed.units = Some("MB/s".into());
    speed.duration = Some(1.75);
    let mut action = case("lava", "boot-qemu", TestResult::Pass);
    action.duration = Some(3.25);
    let mut definition = case("lava", "0_smoke", TestResult::Pass);
    definition.duration = Some(4.5);
    let mut job = case("lava", "job", TestResult::Fail);
    job.error = Some(JobError {
        error_type: "Test".into(),
        message: "lava-test-shell timed out\nafter <600> \"seconds\"".into(),
    });
    Report {
        job_id: "local".into(),
        cases: vec![
            case("lava", "validate", TestResult::Pass),
            action,
            case("lava", "power-off", TestResult::Fail),
            case("0_smoke", "always-pass", TestResult::Pass),
            case("0_smoke", "a<b & 'c'", TestResult::Fail),
            speed,
            case("0_smoke", "later", TestResult::Skip),
            case("1_more", "odd\u{1}", TestResult::Unknown),
            definition,
            job,
        ],
    }
}

fn attributes(element: &BytesStart) -> BTreeMap<String, String> {
    element
        .attributes()
        .map(|a| {
            let a = a.unwrap();
            (
                a.key.as_ref().to_string(),
                a.normalized_value(XmlVersion::Explicit1_0)
                    .unwrap()
                    .into_owned(),
            )
        })
        .collect()
}

/// One parsed `<testcase>`.
#[derive(Debug, Default)]
struct Case {
    attributes: BTreeMap<String, String>,
    children: Vec<(String, BTreeMap<String, String>)>,
    system_out: String,
}

/// One parsed `<testsuite>`.
#[derive(Debug, Default)]
struct Suite {
    attributes: BTreeMap<String, String>,
    cases: Vec<Case>,
}

/// Parse JUnit XML, checking the element structure CI tools read (the JUnit schema's
/// nesting: testsuites > testsuite > testcase > failure|error|skipped|system-out).
fn parse_junit(xml: &str) -> (BTreeMap<String, String>, Vec<Suite>) {
    let mut reader = Reader::from_str(xml);
    let mut stack: Vec<String> = Vec::new();
    let mut root = BTreeMap::new();
    let mut suites: Vec<Suite> = Vec::new();
    loop {
        let event = reader.read_event().unwrap();
        let (element, empty) = match &event {
            Event::Start(e) => (Some(e.clone()), false),
            Event::Empty(e) => (Some(e.clone()), true),
            _ => (None, false),
        };
        if let Some(element) = element {
            let name = element.name().as_ref().to_string();
            let parent = stack.last().map(String::as_str);
            let attrs = attributes(&element);
            match (parent, name.as_str()) {
                (None, "testsuites") => root = attrs,
                (Some("testsuites"), "testsuite") => suites.push(Suite {
                    attributes: attrs,
                    cases: Vec::new(),
                }),
                (Some("testsuite"), "testcase") => suites.last_mut().unwrap().cases.push(Case {
                    attributes: attrs,
                    ..Default::default()
                }),
                (Some("testcase"), "failure" | "error" | "skipped" | "system-out") => {
                    let case = suites.last_mut().unwrap().cases.last_mut().unwrap();
                    case.children.push((name.clone(), attrs));
                }
                (parent, name) => panic!("<{name}> is not allowed in {parent:?}"),
            }
            if !empty {
                stack.push(name);
            }
            continue;
        }
        match event {
            Event::End(_) => {
                stack.pop();
            }
            Event::Text(text) if stack.last().map(String::as_str) == Some("system-out") => {
                let case = suites.last_mut().unwrap().cases.last_mut().unwrap();
                case.system_out
                    .push_str(&text.xml_content(XmlVersion::Explicit1_0));
            }
            Event::GeneralRef(reference)
                if stack.last().map(String::as_str) == Some("system-out") =>
            {
                let text = quick_xml::escape::unescape(&format!("&{};", &*reference))
                    .unwrap()
                    .into_owned();
                suites
                    .last_mut()
                    .unwrap()
                    .cases
                    .last_mut()
                    .unwrap()
                    .system_out
                    .push_str(&text);
            }
            Event::Text(text) => assert!(text.trim().is_empty(), "{text:?}"),
            Event::Eof => break,
            _ => {}
        }
    }
    assert!(stack.is_empty(), "unclosed elements: {stack:?}");
    (root, suites)
}

fn count(attributes: &BTreeMap<String, String>, key: &str) -> usize {
    attributes[key].parse().unwrap()
}

#[test]
fn junit_has_the_schema_shape_and_consistent_counts() {
    let report = sample();
    let (root, suites) = parse_junit(&report.junit());
    let names: Vec<&str> = suites
        .iter()
        .map(|s| s.attributes["name"].as_str())
        .collect();
    assert_eq!(names, ["lava", "0_smoke", "1_more"]);
    assert_eq!(root["name"], "lava job local");
    let mut totals = [0usize; 4];
    for suite in &suites {
        let kinds = |kind: &str| {
            suite
                .cases
                .iter()
                .filter(|c| c.children.iter().any(|(n, _)| n == kind))
                .count()
        };
        assert_eq!(count(&suite.attributes, "tests"), suite.cases.len());
        assert_eq!(count(&suite.attributes, "failures"), kinds("failure"));
        assert_eq!(count(&suite.attributes, "errors"), kinds("error"));
        assert_eq!(count(&suite.attributes, "skipped"), kinds("skipped"));
        for (i, key) in ["tests", "failures", "errors", "skipped"]
            .iter()
            .enumerate()
        {
            totals[i] += count(&suite.attributes, key);
        }
        for case in &suite.cases {
            assert_eq!(case.attributes["classname"], suite.attributes["name"]);
            case.attributes["time"].parse::<f64>().unwrap();
        }
    }
    assert_eq!(
        totals,
        [
            count(&root, "tests"),
            count(&root, "failures"),
            count(&root, "errors"),
            count(&root, "skipped")
        ]
    );
    assert_eq!(totals, [10, 2, 1, 2]);

    let smoke = &suites[1];
    // The suite's time is the definition's own duration (the lava suite's record of it).
    assert_eq!(smoke.attributes["time"], "4.500");
    // Without such a record, the sum of the cases' durations.
    assert_eq!(suites[0].attributes["time"], "7.750");
    assert!(!root.contains_key("time"));
    let failed = &smoke.cases[1];
    assert_eq!(
        failed.attributes["name"], "a<b & 'c'",
        "escaped and read back"
    );
    assert_eq!(failed.children[0].0, "failure");
    let speed = &smoke.cases[2];
    assert_eq!(speed.attributes["time"], "1.750");
    assert_eq!(speed.system_out, "measurement: 12.5 MB/s");
    assert_eq!(suites[2].cases[0].attributes["name"], "odd\u{fffd}");
    let job = suites[0].cases.last().unwrap();
    let (kind, error) = &job.children[0];
    assert_eq!(kind, "error");
    assert_eq!(error["type"], "Test");
    assert_eq!(
        error["message"], "lava-test-shell timed out\nafter <600> \"seconds\"",
        "a new line survives attribute normalisation"
    );
}

#[test]
fn json_keeps_every_case_in_order_with_its_measurement() {
    let value = sample().json();
    assert_eq!(value["job_id"], "local");
    assert_eq!(value["result"], "fail");
    assert_eq!(value["error"]["type"], "Test");
    assert_eq!(
        value["summary"],
        json!({"tests": 5, "pass": 2, "fail": 1, "skip": 1, "unknown": 1})
    );
    let smoke = &value["suites"][1];
    assert_eq!(smoke["name"], "0_smoke");
    assert_eq!(
        smoke["cases"][2],
        json!({"name": "speed", "result": "pass", "measurement": "12.5", "units": "MB/s", "duration": 1.75})
    );
    let empty = Report {
        job_id: "1".into(),
        cases: vec![],
    };
    assert_eq!(empty.json()["result"], "incomplete");
    assert_eq!(empty.json()["error"], serde_json::Value::Null);
}

#[test]
fn table_lists_test_cases_and_summarises_action_records() {
    let table = sample().table(false);
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("suite  ") && lines[0].ends_with("result   measurement"));
    let row = |suite: &str, case: &str| {
        lines
            .iter()
            .find(|l| {
                let mut words = l.split("  ").filter(|w| !w.is_empty());
                words.next().map(str::trim) == Some(suite)
                    && words.next().map(str::trim) == Some(case)
            })
            .unwrap_or_else(|| panic!("no row {suite} {case} in\n{table}"))
            .to_string()
    };
    assert!(
        row("0_smoke", "speed").ends_with("pass     12.5 MB/s"),
        "{table}"
    );
    assert!(
        row("lava", "actions (2 of 3 pass)").contains(" fail "),
        "{table}"
    );
    assert!(
        row("lava", "power-off").ends_with("fail"),
        "failed actions are listed"
    );
    assert!(
        !table.contains("boot-qemu"),
        "passing actions are summarised: {table}"
    );
    assert!(row("lava", "job").ends_with("fail"));
    assert_eq!(
        lines.iter().filter(|l| l.starts_with("lava ")).count(),
        4,
        "{table}"
    );
    assert!(table.contains("5 test cases: 2 pass, 1 fail, 1 skip, 1 unknown; job fail\n"));
    assert!(
        table.ends_with("job error (Test): lava-test-shell timed out\nafter <600> \"seconds\"\n")
    );
    // Columns line up: every result starts at the header's column.
    let column = lines[0].find("result").unwrap();
    assert!(
        lines[1..9]
            .iter()
            .all(|l| l[column..].starts_with(['p', 'f', 's', 'u'])),
        "{table}"
    );
    assert!(!table.contains('\x1b'));
    let coloured = sample().table(true);
    // Colour codes wrap the word only: padding and trailing space stay as without colour.
    assert!(coloured.contains("\x1b[1;31mfail\x1b[0m\n"), "{coloured:?}");
    assert!(
        coloured.contains("\x1b[32mpass\x1b[0m     12.5 MB/s\n"),
        "{coloured:?}"
    );
}

#[test]
fn failed_test_cases_count_only_test_suites() {
    let report = sample();
    assert_eq!(report.failed_test_cases(), 1);
    let passing = Report {
        job_id: "1".into(),
        cases: vec![
            case("lava", "power-off", TestResult::Fail),
            case("0_smoke", "ok", TestResult::Pass),
        ],
    };
    assert_eq!(passing.failed_test_cases(), 0);
}

#[test]
fn results_files_are_chosen_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let report = sample();
    let xml = dir.path().join("sub/results.XML");
    report.write_results(&xml).unwrap();
    assert!(std::fs::read_to_string(&xml).unwrap().starts_with("<?xml"));
    let json = dir.path().join("results.json");
    report.write_results(&json).unwrap();
    let value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(value, report.json());
    for bad in ["results.txt", "results"] {
        let error = ResultsFormat::from_path(Path::new(bad)).unwrap_err();
        assert!(
            error.starts_with(&format!("{bad}: ")) && error.contains(".xml"),
            "{error}"
        );
        assert!(report.write_results(&dir.path().join(bad)).is_err());
    }
}
