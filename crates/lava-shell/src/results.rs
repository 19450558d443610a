//! Turning signals into LAVA result records: [`ResultsBuilder`] follows one test
//! shell run (one stage) and emits [`ShellOutput`]s — result records, log lines,
//! log markers and errors — for the lead to send through the job logger.

use std::time::Instant;

use indexmap::IndexMap;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use crate::error::{Result, ShellError};
use crate::overlay::DeployedDefinition;
use crate::signals::{MultinodeRequest, Signal, SignalEvent};

/// The result values LAVA accepts.
pub const RESULT_VALUES: [&str; 4] = ["pass", "fail", "skip", "unknown"];

/// One `results` record, fields in LAVA's order (see logs-and-results.md §4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResultRecord(pub IndexMap<String, Value>);

impl ResultRecord {
    fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.0.insert(key.to_string(), value.into());
        self
    }

    fn text(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// `definition` (the suite).
    pub fn definition(&self) -> Option<&str> {
        self.text("definition")
    }

    /// `case`.
    pub fn case(&self) -> Option<&str> {
        self.text("case")
    }

    /// `result`.
    pub fn result(&self) -> Option<&str> {
        self.text("result")
    }
}

/// Log levels the builder uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// A `debug` record.
    Debug,
    /// An `info` record.
    Info,
    /// A `warning` record.
    Warning,
    /// An `error` record.
    Error,
    /// `lava-test-event` records.
    Event,
}

/// The log-line markers of test cases (`starttc`/`endtc`, logs-and-results.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkerKind {
    /// Where a `lava-test-case --shell` case started (`start_test_case`).
    StartTestCase,
    /// Where it ended (`end_test_case`).
    EndTestCase,
    /// The line of a `LAVA_SIGNAL_TESTCASE` result (`test_case`).
    TestCase,
}

/// What the builder asks the lead to do, in order.
#[derive(Debug)]
pub enum ShellOutput {
    /// Emit a `results` record.
    Result(ResultRecord),
    /// Emit a log line.
    Log {
        /// The record's level.
        level: LogLevel,
        /// The text to log.
        message: String,
    },
    /// Store a log-line marker for `case`.
    Marker {
        /// The test case the marker belongs to.
        case: String,
        /// Which marker.
        kind: MarkerKind,
    },
    /// Read 1 s of output from namespace `namespace` as feedback.
    Feedback {
        /// The namespace to read from.
        namespace: String,
    },
    /// Fail the test action with this error (TestError).
    Error(ShellError),
    /// `<LAVA_TEST_RUNNER EXIT>`: the test action's loop ends.
    Finished,
}

/// A compiled `parse:` pattern with its fixup dictionary.
#[derive(Debug, Clone)]
pub struct ParsePattern {
    /// The regular expression as written (`parse.pattern`).
    pub pattern: String,
    regex: Regex,
    /// Result words and their LAVA result (`parse.fixupdict`).
    pub fixup: IndexMap<String, String>,
}

/// A match of a [`ParsePattern`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternMatch {
    /// Byte range of the match in the searched text.
    pub range: std::ops::Range<usize>,
    /// Named groups that took part in the match.
    pub groups: IndexMap<String, String>,
}

/// The fixup used when a definition has no `parse:` section.
pub fn default_fixup() -> IndexMap<String, String> {
    [
        ("PASS", "pass"),
        ("FAIL", "fail"),
        ("SKIP", "skip"),
        ("UNKNOWN", "unknown"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl ParsePattern {
    /// Compiles a pattern (multi-line mode, Python's `(?P<name>…)` groups) and
    /// checks that every fixup value is a result value. TestError otherwise.
    pub fn new(pattern: &str, fixupdict: Option<IndexMap<String, String>>) -> Result<Self> {
        let regex =
            Regex::new(&format!("(?m){pattern}")).map_err(|e| ShellError::InvalidPattern {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })?;
        let fixup = fixupdict.unwrap_or_default();
        if let Some((key, value)) = fixup
            .iter()
            .find(|(_, v)| !RESULT_VALUES.contains(&v.as_str()))
        {
            return Err(ShellError::InvalidPattern {
                pattern: pattern.to_string(),
                reason: format!(
                    "fixupdict value '{value}' for '{key}' is not one of pass, fail, skip, unknown"
                ),
            });
        }
        Ok(ParsePattern {
            pattern: pattern.to_string(),
            regex,
            fixup,
        })
    }

    /// The first match in `text`.
    pub fn find(&self, text: &str) -> Option<PatternMatch> {
        let captures = self.regex.captures(text)?;
        let whole = captures.get(0)?;
        let groups = self
            .regex
            .capture_names()
            .flatten()
            .filter_map(|name| {
                captures
                    .name(name)
                    .map(|m| (name.to_string(), m.as_str().to_string()))
            })
            .collect();
        Some(PatternMatch {
            range: whole.range(),
            groups,
        })
    }
}

enum CurrentRun {
    Suite {
        test_name: String,
        uuid: String,
        commit_id: Option<String>,
        started: Instant,
    },
    InstallFailure {
        started: Instant,
    },
}

#[derive(Default)]
struct SuiteReport {
    results: IndexMap<String, (String, Option<String>)>,
    ran: bool,
}

/// Follows one stage's test shell and builds LAVA's results.
pub struct ResultsBuilder {
    namespace: String,
    connection_namespace: Option<String>,
    stage: usize,
    level: String,
    definitions: Vec<DeployedDefinition>,
    current: Option<CurrentRun>,
    current_suite: Option<String>,
    current_uuid: Option<String>,
    test_set: Option<String>,
    pattern: Option<ParsePattern>,
    reports: IndexMap<String, SuiteReport>,
    install_failed: bool,
}

impl ResultsBuilder {
    /// `definitions`: the namespace's deployed definitions (from the overlay);
    /// `stage`: the stage this test block runs; `level`: the test action's level.
    pub fn new(
        namespace: &str,
        stage: usize,
        level: &str,
        definitions: &[DeployedDefinition],
    ) -> Self {
        ResultsBuilder {
            namespace: namespace.to_string(),
            connection_namespace: None,
            stage,
            level: level.to_string(),
            definitions: definitions.to_vec(),
            current: None,
            current_suite: None,
            current_uuid: None,
            test_set: None,
            pattern: None,
            reports: IndexMap::new(),
            install_failed: false,
        }
    }

    /// Adds `connection-namespace` to suite records.
    pub fn with_connection_namespace(mut self, namespace: Option<String>) -> Self {
        self.connection_namespace = namespace;
        self
    }

    /// The pattern of the running definition, to be matched against the raw stream.
    pub fn active_pattern(&self) -> Option<&ParsePattern> {
        self.pattern.as_ref()
    }

    /// Handles one signal now.
    pub fn handle(&mut self, event: &SignalEvent) -> Vec<ShellOutput> {
        self.handle_at(event, Instant::now())
    }

    /// Handles one signal at time `now`.
    pub fn handle_at(&mut self, event: &SignalEvent, now: Instant) -> Vec<ShellOutput> {
        let mut out = Vec::new();
        let is_lava_signal = !matches!(
            event.signal,
            Signal::RunnerExit | Signal::RunnerInstallFail | Signal::Multinode { .. }
        );
        if is_lava_signal {
            out.push(log(LogLevel::Debug, event.received_message()));
        }
        match &event.signal {
            Signal::StartRun { test_run_id, uuid } => {
                self.start_run(test_run_id, uuid, now, &mut out)
            }
            Signal::EndRun { test_run_id, uuid } => self.end_run(test_run_id, uuid, now, &mut out),
            Signal::StartTestCase { case } => out.push(ShellOutput::Marker {
                case: case.clone(),
                kind: MarkerKind::StartTestCase,
            }),
            Signal::EndTestCase { case } => out.push(ShellOutput::Marker {
                case: case.clone(),
                kind: MarkerKind::EndTestCase,
            }),
            Signal::TestCase { fields } => {
                let case = fields.get("test_case_id").cloned().unwrap_or_default();
                out.push(ShellOutput::Marker {
                    case,
                    kind: MarkerKind::TestCase,
                });
                self.test_case(fields, &mut out);
            }
            Signal::TestSetStart { name } => {
                out.push(log(LogLevel::Info, format!("Starting test_set {name}")));
                self.test_set = Some(name.clone());
            }
            Signal::TestSetStop => {
                out.push(log(
                    LogLevel::Info,
                    format!(
                        "Closing test_set {}",
                        self.test_set.as_deref().unwrap_or("None")
                    ),
                ));
                self.test_set = None;
            }
            Signal::TestReference {
                case,
                result,
                reference,
            } => {
                if !RESULT_VALUES.contains(&result.as_str()) {
                    out.push(log(LogLevel::Error, format!("Bad test result: '{result}'")));
                } else {
                    let mut record = ResultRecord::default()
                        .with("case", case.as_str())
                        .with("definition", self.suite_name())
                        .with("result", result.as_str())
                        .with("reference", reference.as_str());
                    if let Some(set) = &self.test_set {
                        record = record.with("set", set.as_str());
                    }
                    out.push(ShellOutput::Result(record));
                }
            }
            Signal::TestRaise { message } => {
                out.push(ShellOutput::Error(ShellError::Raised(message.clone())))
            }
            Signal::TestEvent { message } => out.push(log(LogLevel::Event, message.clone())),
            Signal::TestFeedback { namespace } => out.push(ShellOutput::Feedback {
                namespace: namespace.clone(),
            }),
            Signal::ReturnCode { .. } | Signal::Other { .. } => {}
            Signal::RunnerExit => {
                out.push(log(
                    LogLevel::Info,
                    "ok: lava_test_shell seems to have completed".into(),
                ));
                self.test_set = None;
                out.push(ShellOutput::Finished);
            }
            Signal::RunnerInstallFail => {
                out.push(log(
                    LogLevel::Error,
                    format!(
                        "Unable to start stage {}. Read the log for more details.",
                        self.stage
                    ),
                ));
                self.install_failed = true;
                self.current = Some(CurrentRun::InstallFailure { started: now });
            }
            Signal::Multinode { .. } => {}
            Signal::Invalid { name, reason, .. } => match name.as_str() {
                // LAVA logs a malformed TESTCASE parameter and carries on.
                "TESTCASE" => out.push(log(LogLevel::Error, reason.clone())),
                _ => out.push(ShellOutput::Error(ShellError::InvalidSignal(
                    reason.clone(),
                ))),
            },
        }
        out
    }

    /// Records the `multinode-<api>-<id>` case of a handled MultiNode call.
    pub fn multinode_case(&mut self, request: &MultinodeRequest, passed: bool) -> Vec<ShellOutput> {
        let mut out = Vec::new();
        if let Some(case) = request.case_name() {
            let mut fields = IndexMap::new();
            fields.insert("test_case_id".to_string(), case);
            fields.insert(
                "result".to_string(),
                if passed { "pass" } else { "fail" }.to_string(),
            );
            self.test_case(&fields, &mut out);
        }
        out
    }

    /// Handles a match of [`ResultsBuilder::active_pattern`].
    pub fn pattern_match(&mut self, found: &PatternMatch) -> Vec<ShellOutput> {
        let mut out = Vec::new();
        let Some(pattern) = &self.pattern else {
            return out;
        };
        let mut groups = found.groups.clone();
        if let Some(result) = groups.get("result").cloned()
            && let Some(fixed) = pattern.fixup.get(&result)
        {
            groups.insert("result".into(), fixed.clone());
        }
        let Some(case) = groups.get("test_case_id").cloned() else {
            out.push(log(LogLevel::Error, "Test case results without test_case_id (probably a sign of an incorrect parsing pattern being used)".into()));
            return out;
        };
        out.push(ShellOutput::Marker {
            case: case.clone(),
            kind: MarkerKind::TestCase,
        });
        if case.replace('/', "_").trim().contains(' ') {
            out.push(log(
                LogLevel::Debug,
                format!("Skipping invalid test_case_id '{}'", case.trim()),
            ));
            return out;
        }
        let result = groups.get("result").cloned().unwrap_or_default();
        if !RESULT_VALUES.contains(&result.as_str()) {
            out.push(log(LogLevel::Error, format!("Bad test result: '{result}'")));
            return out;
        }
        let mut record = ResultRecord::default()
            .with("definition", self.suite_name())
            .with("case", case.as_str())
            .with("result", result.as_str());
        if let Some(measurement) = groups.get("measurement") {
            match measurement.parse::<f64>() {
                Ok(value) => record = record.with("measurement", value),
                Err(_) => {
                    out.push(ShellOutput::Error(ShellError::InvalidSignal(format!(
                        "Invalid measurement {measurement}"
                    ))));
                    return out;
                }
            }
            if let Some(units) = groups.get("units") {
                record = record.with("units", units.as_str());
            }
        }
        self.remember(&case, &result);
        out.push(ShellOutput::Result(record));
        out
    }

    /// Ends the run (after the loop, whatever ended it): an open suite is recorded
    /// as failed, missing expected cases of this stage are reported, an install
    /// failure becomes the action's TestError.
    pub fn finish(&mut self) -> Vec<ShellOutput> {
        self.finish_at(Instant::now())
    }

    /// [`ResultsBuilder::finish`] at time `now`.
    pub fn finish_at(&mut self, now: Instant) -> Vec<ShellOutput> {
        let mut out = Vec::new();
        match self.current.take() {
            Some(CurrentRun::Suite {
                test_name,
                uuid,
                commit_id,
                started,
            }) => {
                out.push(log(
                    LogLevel::Error,
                    "Marking unfinished test run as failed".into(),
                ));
                let mut record = ResultRecord::default()
                    .with("definition", "lava")
                    .with("case", test_name.as_str())
                    .with("uuid", uuid.as_str())
                    .with("result", "fail");
                if let Some(commit) = commit_id {
                    record = record.with("commit_id", commit.as_str());
                }
                out.push(ShellOutput::Result(
                    record.with("duration", duration(started, now)),
                ));
            }
            Some(CurrentRun::InstallFailure { started }) => {
                out.push(log(
                    LogLevel::Error,
                    "Marking unfinished test run as failed".into(),
                ));
                let record = ResultRecord::default()
                    .with("definition", "lava")
                    .with("case", format!("stage_{}", self.stage))
                    .with("result", "fail")
                    .with("duration", duration(started, now));
                out.push(ShellOutput::Result(record));
            }
            None => {}
        }
        let stage_definitions: Vec<DeployedDefinition> = self
            .definitions
            .iter()
            .filter(|d| d.stage == self.stage && !d.expected.is_empty())
            .cloned()
            .collect();
        for definition in stage_definitions {
            if self
                .reports
                .get(&definition.test_name)
                .is_some_and(|r| r.ran)
            {
                continue;
            }
            self.missing_expected(&definition.test_name, &definition.expected, &mut out);
        }
        if self.install_failed {
            self.install_failed = false;
            out.push(ShellOutput::Error(ShellError::InvalidSignal(format!(
                "Unable to start test stage {}",
                self.stage
            ))));
        }
        out
    }

    fn suite_name(&self) -> String {
        self.current_suite
            .clone()
            .unwrap_or_else(|| "lava".to_string())
    }

    fn definition_by_name(&self, test_name: &str) -> Option<&DeployedDefinition> {
        self.definitions.iter().find(|d| d.test_name == test_name)
    }

    fn definition_by_uuid(&self, uuid: &str) -> Option<&DeployedDefinition> {
        self.definitions.iter().find(|d| d.uuid == uuid)
    }

    fn start_run(&mut self, test_name: &str, uuid: &str, now: Instant, out: &mut Vec<ShellOutput>) {
        self.current_suite = Some(test_name.to_string());
        self.current_uuid = Some(uuid.to_string());
        self.reports
            .insert(test_name.to_string(), SuiteReport::default());
        out.push(log(
            LogLevel::Info,
            format!("Starting test lava.{test_name} ({uuid})"),
        ));
        self.pattern = None;
        let definition = self.definition_by_name(test_name).cloned();
        match definition.as_ref().and_then(|d| d.pattern.clone()) {
            Some(parse) => match ParsePattern::new(&parse.pattern, parse.fixupdict.clone()) {
                Ok(pattern) => {
                    out.push(log(
                        LogLevel::Info,
                        format!("Enabling test definition pattern {:?}", pattern.pattern),
                    ));
                    out.push(log(
                        LogLevel::Info,
                        format!("Enabling test definition fixup {:?}", pattern.fixup),
                    ));
                    self.pattern = Some(pattern);
                }
                Err(e) => out.push(ShellOutput::Error(e)),
            },
            None => out.push(log(
                LogLevel::Info,
                "Skipping test definition patterns.".into(),
            )),
        }
        let commit_id = self
            .definition_by_uuid(uuid)
            .and_then(|d| d.commit_id.clone());
        self.current = Some(CurrentRun::Suite {
            test_name: test_name.to_string(),
            uuid: uuid.to_string(),
            commit_id,
            started: now,
        });
    }

    fn end_run(&mut self, test_name: &str, uuid: &str, now: Instant, out: &mut Vec<ShellOutput>) {
        let definition = self.definition_by_uuid(uuid).cloned();
        if let Some(definition) = &definition
            && !definition.expected.is_empty()
        {
            self.missing_expected(test_name, &definition.expected, out);
        }
        self.pattern = None;
        let started = match &self.current {
            Some(CurrentRun::Suite { started, .. })
            | Some(CurrentRun::InstallFailure { started }) => *started,
            None => now,
        };
        let elapsed = duration(started, now);
        out.push(log(LogLevel::Info, "Ending use of test pattern.".into()));
        out.push(log(
            LogLevel::Info,
            format!("Ending test lava.{test_name} ({uuid}), duration {elapsed}"),
        ));
        self.current = None;
        let mut record = ResultRecord::default()
            .with("definition", "lava")
            .with("case", test_name)
            .with("uuid", uuid)
            .with(
                "repository",
                definition
                    .as_ref()
                    .map(|d| d.repository.clone())
                    .unwrap_or(Value::Null),
            )
            .with(
                "path",
                definition
                    .as_ref()
                    .map(|d| Value::String(d.path.clone()))
                    .unwrap_or(Value::Null),
            )
            .with("duration", elapsed)
            .with("result", "pass")
            .with(
                "revision",
                definition
                    .as_ref()
                    .and_then(|d| d.revision.clone())
                    .unwrap_or_else(|| "unspecified".into()),
            )
            .with("namespace", self.namespace.as_str());
        if let Some(ns) = &self.connection_namespace {
            record = record.with("connection-namespace", ns.as_str());
        }
        if let Some(commit) = definition.as_ref().and_then(|d| d.commit_id.clone()) {
            record = record.with("commit_id", commit);
        }
        out.push(ShellOutput::Result(record));
        let report = self.reports.entry(test_name.to_string()).or_default();
        report.ran = true;
        if !report.results.is_empty() {
            let header = format!("--- {test_name} Test Report ---");
            let mut summary = serde_yaml::Mapping::new();
            for (case, (result, set)) in &report.results {
                let value = match set {
                    Some(set) => crate::overlay::mapping([
                        ("set", Value::String(set.clone())),
                        ("result", Value::String(result.clone())),
                    ]),
                    None => Value::String(result.clone()),
                };
                summary.insert(Value::String(case.clone()), value);
            }
            let width = header.chars().count();
            out.push(log(LogLevel::Debug, header));
            out.push(log(
                LogLevel::Debug,
                serde_yaml::to_string(&summary).unwrap_or_default(),
            ));
            out.push(log(LogLevel::Debug, format!("{:-^width$}", " End ")));
        }
    }

    fn fixup(&self) -> IndexMap<String, String> {
        match &self.pattern {
            Some(pattern) => pattern.fixup.clone(),
            None => {
                let has_parse = self
                    .current_suite
                    .as_deref()
                    .and_then(|s| self.definition_by_name(s))
                    .is_some_and(|d| d.pattern.is_some());
                if has_parse {
                    IndexMap::new()
                } else {
                    default_fixup()
                }
            }
        }
    }

    fn test_case(&mut self, fields: &IndexMap<String, String>, out: &mut Vec<ShellOutput>) {
        if self.current_uuid.is_none() {
            out.push(log(LogLevel::Error, "Unknown test uuid. The STARTRUN signal for this test action was not received correctly.".into()));
            out.push(ShellOutput::Error(ShellError::InvalidSignal(
                "Invalid TESTCASE signal".into(),
            )));
            return;
        }
        let Some(case) = fields.get("test_case_id").cloned() else {
            out.push(log(LogLevel::Error, format!("Test case results without test_case_id (probably a sign of an incorrect parsing pattern being used): {fields:?}")));
            return;
        };
        let Some(raw_result) = fields.get("result") else {
            out.push(log(LogLevel::Error, format!("Test case results without result (probably a sign of an incorrect parsing pattern being used): {fields:?}")));
            return;
        };
        let mut result = self
            .fixup()
            .get(raw_result)
            .cloned()
            .unwrap_or_else(|| raw_result.clone());
        if !RESULT_VALUES.contains(&result.as_str()) {
            out.push(log(LogLevel::Error, format!("Bad test result: '{result}'")));
            return;
        }
        let measurement = match fields.get("measurement").map(|m| (m, m.parse::<f64>())) {
            None => None,
            Some((_, Ok(value))) => Some(value),
            Some((text, Err(_))) => {
                out.push(log(
                    LogLevel::Error,
                    format!("Invalid measurement '{text}'"),
                ));
                return;
            }
        };
        let expected = self
            .current_uuid
            .as_deref()
            .and_then(|u| self.definition_by_uuid(u))
            .map(|d| d.expected.clone())
            .unwrap_or_default();
        if !expected.is_empty() && !expected.contains(&case) {
            out.push(log(
                LogLevel::Warning,
                format!("'{case}' not found in expected test case list!"),
            ));
            if result != "fail" {
                out.push(log(
                    LogLevel::Warning,
                    format!("Forcing unexpected '{case}' result '{result}' to 'fail' ..."),
                ));
                result = "fail".into();
            }
        }
        let mut record = ResultRecord::default()
            .with("definition", self.suite_name())
            .with("case", case.as_str())
            .with("result", result.as_str());
        if let Some(value) = measurement {
            record = record.with("measurement", value);
            if let Some(units) = fields.get("units") {
                record = record.with("units", units.as_str());
            }
        }
        if let Some(set) = &self.test_set {
            record = record.with("set", set.as_str());
        }
        self.remember(&case, &result);
        out.push(ShellOutput::Result(record));
    }

    fn remember(&mut self, case: &str, result: &str) {
        let suite = self.suite_name();
        let set = self.test_set.clone();
        self.reports
            .entry(suite)
            .or_default()
            .results
            .insert(case.to_string(), (result.to_string(), set));
    }

    fn missing_expected(&mut self, suite: &str, expected: &[String], out: &mut Vec<ShellOutput>) {
        let reported: Vec<String> = self
            .reports
            .get(suite)
            .map(|r| r.results.keys().cloned().collect())
            .unwrap_or_default();
        let mut missing: Vec<&String> = expected.iter().filter(|c| !reported.contains(c)).collect();
        missing.sort();
        missing.dedup();
        if missing.is_empty() {
            return;
        }
        out.push(log(
            LogLevel::Warning,
            "Reporting missing expected test cases as 'fail' ...".into(),
        ));
        for case in missing {
            let mut extra = serde_yaml::Mapping::new();
            extra.insert(
                "reason".into(),
                "missing expected test cases are reported as 'fail' by LAVA.".into(),
            );
            let mut record = ResultRecord::default()
                .with("definition", suite)
                .with("case", case.as_str())
                .with("result", "fail")
                .with("level", self.level.as_str())
                .with("extra", Value::Mapping(extra));
            if let Some(set) = &self.test_set {
                record = record.with("set", set.as_str());
            }
            let set = self.test_set.clone();
            self.reports
                .entry(suite.to_string())
                .or_default()
                .results
                .insert(case.clone(), ("fail".into(), set));
            out.push(ShellOutput::Result(record));
        }
    }
}

fn log(level: LogLevel, message: String) -> ShellOutput {
    ShellOutput::Log { level, message }
}

fn duration(started: Instant, now: Instant) -> String {
    format!(
        "{:.2}",
        now.saturating_duration_since(started).as_secs_f64()
    )
}
