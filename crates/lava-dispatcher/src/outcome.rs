//! What a finished run gives back: the job's status, its error (kind and message), every
//! result record as a typed [`TestCase`], and where the output files are.
//!
//! The result records are read back from the run's `logs.yaml` (one YAML flow mapping per
//! line, `lvl: results`), so a log written by any LAVA-compatible dispatcher can be read
//! with [`read_results`] or [`parse_results`] too.

use crate::RunError;
use lava_pipeline::ErrorKind;
use serde_yaml::{Mapping, Value};
use std::fmt;
use std::path::{Path, PathBuf};

/// How a job ended: LAVA's `lava`/`job` result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// The job ran (or, with `validate_only`, validated) to its end without an error.
    Pass,
    /// The job stopped on an error ([`Outcome::error`] says which).
    Fail,
}

impl JobStatus {
    /// LAVA's spelling: `pass` or `fail`.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pass => "pass",
            JobStatus::Fail => "fail",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The error a failed job ended with, as `result.yaml` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFailure {
    /// LAVA's error kind (decides `error_type`, retries and exit codes).
    pub kind: ErrorKind,
    /// The message (`error_msg`).
    pub message: String,
}

impl JobFailure {
    /// LAVA's `error_type` value (`Infrastructure`, `Job`, `Test`, `Canceled`, …).
    pub fn error_type(&self) -> &'static str {
        self.kind.error_type()
    }
}

impl fmt::Display for JobFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_type(), self.message)
    }
}

/// A test case's result as LAVA records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestResult {
    /// `pass`
    Pass,
    /// `fail`
    Fail,
    /// `skip`
    Skip,
    /// `unknown`
    Unknown,
    /// Any other value found in a log (kept as written).
    Other(String),
}

impl TestResult {
    /// The result named by LAVA's spelling.
    pub fn parse(text: &str) -> TestResult {
        match text {
            "pass" => TestResult::Pass,
            "fail" => TestResult::Fail,
            "skip" => TestResult::Skip,
            "unknown" => TestResult::Unknown,
            other => TestResult::Other(other.to_string()),
        }
    }

    /// LAVA's spelling.
    pub fn as_str(&self) -> &str {
        match self {
            TestResult::Pass => "pass",
            TestResult::Fail => "fail",
            TestResult::Skip => "skip",
            TestResult::Unknown => "unknown",
            TestResult::Other(other) => other,
        }
    }
}

impl fmt::Display for TestResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One `results` record of the log: a test-shell case, or a `lava` suite record (one per
/// action, plus `validate` and `job`).
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// The suite (`definition`): `0_smoke`, or `lava` for the dispatcher's own records.
    pub suite: String,
    /// The case name.
    pub case: String,
    /// The result.
    pub result: TestResult,
    /// The measurement as the log wrote it (`12.5`), if any.
    pub measurement: Option<String>,
    /// The measurement's units, if any.
    pub units: Option<String>,
    /// The whole record (`level`, `duration`, `extra`, … as LAVA writes them).
    pub record: Mapping,
}

impl TestCase {
    /// The measurement as a number, when there is one and it parses.
    pub fn measurement_value(&self) -> Option<f64> {
        self.measurement.as_deref().and_then(|m| m.parse().ok())
    }

    /// Whether this is one of the dispatcher's own records (suite `lava`).
    pub fn is_lava_record(&self) -> bool {
        self.suite == "lava"
    }

    /// The test case of one log line (`- {"dt": …, "lvl": "results", "msg": {…}}`, with or
    /// without the leading `- `); `None` for any other line.
    pub fn from_log_line(line: &str) -> Option<TestCase> {
        if !line.contains("\"lvl\": \"results\"") {
            return None;
        }
        let record: Value = serde_yaml::from_str(line.trim_start_matches("- ")).ok()?;
        let msg = record.get("msg")?.as_mapping()?;
        let field = |key: &str| msg.get(key).map(plain_text);
        Some(TestCase {
            suite: field("definition").unwrap_or_default(),
            case: field("case").unwrap_or_default(),
            result: TestResult::parse(&field("result").unwrap_or_default()),
            measurement: field("measurement"),
            units: field("units"),
            record: msg.clone(),
        })
    }
}

/// Every `results` record of a log's text, in order.
pub fn parse_results(log: &str) -> Vec<TestCase> {
    log.lines().filter_map(TestCase::from_log_line).collect()
}

/// Every `results` record of the log file `path`, in order.
pub fn read_results(path: &Path) -> Result<Vec<TestCase>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::ReadLog {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_results(&text))
}

/// A scalar as text; `! "42.0"` (LAVA's non-string values) reads back as a tagged string.
fn plain_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Tagged(tagged) => plain_text(&tagged.value),
        other => serde_yaml::to_string(other)
            .unwrap_or_default()
            .trim()
            .to_string(),
    }
}

/// The files a run wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFiles {
    /// The output directory.
    pub dir: PathBuf,
    /// `logs.yaml`: every log record, one YAML flow mapping per line.
    pub logs: PathBuf,
    /// `result.yaml`: the `lava`/`job` record.
    pub result: PathBuf,
    /// `description.yaml`: the pipeline description (absent when the job could not be
    /// read or checked, so no pipeline was built).
    pub description: Option<PathBuf>,
}

/// The outcome of a finished run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The job id the run used.
    pub job_id: String,
    /// Pass or fail.
    pub status: JobStatus,
    /// The error a failed job ended with.
    pub error: Option<JobFailure>,
    /// Every `results` record, in the order logged (the `lava` suite's included).
    pub results: Vec<TestCase>,
    /// The `lava`/`job` record, as written to `result.yaml`.
    pub record: Mapping,
    /// Where the output files are.
    pub files: OutputFiles,
}

impl Outcome {
    /// Whether the job passed.
    pub fn passed(&self) -> bool {
        self.status == JobStatus::Pass
    }

    /// The test-shell cases (every suite but `lava`).
    pub fn test_cases(&self) -> impl Iterator<Item = &TestCase> {
        self.results.iter().filter(|case| !case.is_lava_record())
    }

    /// The record of `case` in `suite`, if logged.
    pub fn find(&self, suite: &str, case: &str) -> Option<&TestCase> {
        self.results
            .iter()
            .find(|record| record.suite == suite && record.case == case)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_records_become_typed_cases() {
        let log = concat!(
            "- {\"dt\": \"x\", \"lvl\": \"info\", \"msg\": \"start: 1 deploy\"}\n",
            "- {\"dt\": \"x\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"case\": \"boot-qemu\", \"result\": \"pass\", \"level\": \"2.1\"}}\n",
            "- {\"dt\": \"x\", \"lvl\": \"results\", \"msg\": {\"definition\": \"0_smoke\", \"case\": \"speed\", \"result\": \"pass\", \"measurement\": ! \"12.5\", \"units\": \"MB/s\"}}\n",
            "- {\"dt\": \"x\", \"lvl\": \"results\", \"msg\": {\"definition\": \"0_smoke\", \"case\": \"odd\", \"result\": \"weird\"}}\n",
        );
        let cases = parse_results(log);
        assert_eq!(cases.len(), 3);
        assert!(cases[0].is_lava_record());
        assert_eq!(cases[0].record["level"].as_str(), Some("2.1"));
        assert_eq!(cases[1].suite, "0_smoke");
        assert_eq!(cases[1].result, TestResult::Pass);
        assert_eq!(cases[1].measurement.as_deref(), Some("12.5"));
        assert_eq!(cases[1].measurement_value(), Some(12.5));
        assert_eq!(cases[1].units.as_deref(), Some("MB/s"));
        assert_eq!(cases[2].result, TestResult::Other("weird".into()));
        assert_eq!(cases[2].measurement, None);
    }

    #[test]
    fn a_missing_log_names_its_path() {
        let error = read_results(Path::new("/nonexistent/logs.yaml")).unwrap_err();
        assert!(
            error.to_string().contains("/nonexistent/logs.yaml"),
            "{error}"
        );
    }
}
