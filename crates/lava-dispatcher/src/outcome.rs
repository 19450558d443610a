//! What a finished run gives back: the job's status, its error (kind and message), every
//! result record as a typed [`TestCase`], and where the output files are.
//!
//! The result records are read back from the run's `logs.yaml` (one YAML flow mapping per
//! line, `lvl: results`); [`read_results`] and [`parse_results`] read any `logs.yaml` the
//! same way (`lava-run`'s result table and `--results` files are built from them).

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

/// The result of one test case, as LAVA records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TestResult {
    /// `pass`
    Pass,
    /// `fail`
    Fail,
    /// `skip`
    Skip,
    /// `unknown` (and any value LAVA would not record)
    Unknown,
}

impl TestResult {
    /// The result of a record's `result` value.
    pub fn from_lava(value: &str) -> TestResult {
        match value {
            "pass" => TestResult::Pass,
            "fail" => TestResult::Fail,
            "skip" => TestResult::Skip,
            _ => TestResult::Unknown,
        }
    }

    /// LAVA's word for it.
    pub fn as_str(self) -> &'static str {
        match self {
            TestResult::Pass => "pass",
            TestResult::Fail => "fail",
            TestResult::Skip => "skip",
            TestResult::Unknown => "unknown",
        }
    }
}

impl fmt::Display for TestResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Why a job did not complete, as its `lava`/`job` record says: `error_type` and
/// `error_msg`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobError {
    /// LAVA's error type (`Job`, `Infrastructure`, `Test`, `Canceled`, …).
    pub error_type: String,
    /// The error message.
    pub message: String,
}

/// One result record: a test case of a test suite, or a record of the `lava` suite (one
/// per action that records a result, plus `validate` and `job`).
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    /// The suite (LAVA's `definition`: `0_smoke`, `lava`).
    pub suite: String,
    /// The case name.
    pub name: String,
    /// Its result.
    pub result: TestResult,
    /// The measurement, as LAVA recorded it (a decimal in text).
    pub measurement: Option<String>,
    /// The measurement's units.
    pub units: Option<String>,
    /// Seconds the case (or action) took, when known.
    pub duration: Option<f64>,
    /// On the `lava`/`job` record of a job that did not complete: why.
    pub error: Option<JobError>,
}

impl TestCase {
    /// A case with only a suite, a name and a result.
    pub fn new(suite: &str, name: &str, result: TestResult) -> TestCase {
        TestCase {
            suite: suite.to_string(),
            name: name.to_string(),
            result,
            measurement: None,
            units: None,
            duration: None,
            error: None,
        }
    }

    /// Whether this is one of the dispatcher's own records (suite `lava`).
    pub fn is_lava_record(&self) -> bool {
        self.suite == "lava"
    }

    /// Whether this is a per-action record of the `lava` suite (not `validate` or `job`).
    pub fn is_action_record(&self) -> bool {
        self.suite == "lava" && !self.is_job_record() && self.name != "validate"
    }

    /// Whether this is the job's own record (`lava`/`job`).
    pub fn is_job_record(&self) -> bool {
        self.suite == "lava" && self.name == "job"
    }

    /// The measurement as a number, when there is one and it parses.
    pub fn measurement_value(&self) -> Option<f64> {
        self.measurement.as_deref().and_then(|m| m.parse().ok())
    }

    /// `measurement units`, empty when there is no measurement.
    pub fn measurement_text(&self) -> String {
        match (&self.measurement, &self.units) {
            (Some(m), Some(u)) if !u.is_empty() => format!("{m} {u}"),
            (Some(m), _) => m.clone(),
            _ => String::new(),
        }
    }
}

/// Every `results` record of a log's text (`- {…}` lines, LAVA's `logs.yaml`), in order.
///
/// A case's duration is the `duration` LAVA records for actions, or for a test-shell case
/// the time between the log records its `starttc` and `endtc` (record indexes) point at.
pub fn parse_results(log: &str) -> Vec<TestCase> {
    let records: Vec<&str> = log.lines().filter(|l| l.starts_with("- ")).collect();
    records
        .iter()
        .filter_map(|line| test_case(line, &records))
        .collect()
}

/// Every `results` record of the log file `path`, in order.
pub fn read_results(path: &Path) -> Result<Vec<TestCase>, RunError> {
    let text = std::fs::read_to_string(path).map_err(|source| RunError::ReadLog {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(parse_results(&text))
}

fn test_case(line: &str, records: &[&str]) -> Option<TestCase> {
    if !line.contains("\"lvl\": \"results\"") {
        return None;
    }
    let item: Value = serde_yaml::from_str(line.trim_start_matches("- ")).ok()?;
    let msg = item.get("msg")?;
    let field = |key: &str| msg.get(key).map(plain_text);
    let record_index = |key: &str| field(key).and_then(|v| v.parse::<usize>().ok());
    let duration = field("duration")
        .and_then(|d| d.parse::<f64>().ok())
        .or_else(|| {
            let start = record_time(records.get(record_index("starttc")?)?)?;
            let end = record_time(records.get(record_index("endtc")?)?)?;
            Some((end - start).max(0.0))
        });
    let error = field("error_type").map(|error_type| JobError {
        error_type,
        message: field("error_msg").unwrap_or_default(),
    });
    Some(TestCase {
        suite: field("definition").unwrap_or_default(),
        name: field("case").unwrap_or_default(),
        result: TestResult::from_lava(&field("result").unwrap_or_default()),
        measurement: field("measurement"),
        units: field("units"),
        duration,
        error,
    })
}

/// A record's `dt` as seconds since the Unix epoch (LAVA writes UTC, `+00:00`).
fn record_time(line: &str) -> Option<f64> {
    let rest = line.split_once("{\"dt\": \"")?.1;
    parse_log_time(rest.split_once('"')?.0)
}

/// A log record's time, `YYYY-MM-DDTHH:MM:SS[.ffffff][+00:00|Z]` (ours with the offset,
/// LAVA's stderr lines without; both UTC), as seconds since the Unix epoch.
pub fn parse_log_time(text: &str) -> Option<f64> {
    let (date, time) = text.split_once('T')?;
    let time = time.trim_end_matches("+00:00").trim_end_matches('Z');
    let mut date_parts = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (
        date_parts.next()??,
        date_parts.next()??,
        date_parts.next()??,
    );
    let mut time_parts = time.splitn(3, ':');
    let hours = time_parts.next()?.parse::<f64>().ok()?;
    let minutes = time_parts.next()?.parse::<f64>().ok()?;
    let seconds = time_parts.next()?.parse::<f64>().ok()?;
    Some(days_from_civil(y, m, d) as f64 * 86_400.0 + hours * 3600.0 + minutes * 60.0 + seconds)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    /// What the log upload delivered ([`crate::JobRun::log_upload`]).
    pub log_upload: Option<lava_log_upload::UploadReport>,
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

    /// The record of case `name` in `suite`, if logged.
    pub fn find(&self, suite: &str, name: &str) -> Option<&TestCase> {
        self.results
            .iter()
            .find(|record| record.suite == suite && record.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = concat!(
        "- {\"dt\": \"2026-02-28T23:59:59.500000+00:00\", \"lvl\": \"info\", \"msg\": \"start: 1 deploy\"}\n",
        "- {\"dt\": \"2026-03-01T00:00:00.000000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"case\": \"validate\", \"result\": \"pass\"}}\n",
        "- {\"dt\": \"2026-03-01T00:00:01.000000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"namespace\": \"common\", \"case\": \"boot-qemu\", \"level\": \"2.1\", \"duration\": \"3.25\", \"result\": \"pass\"}}\n",
        "- {\"dt\": \"2026-03-01T00:00:02.250000+00:00\", \"lvl\": \"debug\", \"msg\": \"Received signal: <STARTTC> speed\"}\n",
        "- {\"dt\": \"2026-03-01T00:00:04.000000+00:00\", \"lvl\": \"debug\", \"msg\": \"Received signal: <ENDTC> speed\"}\n",
        "- {\"dt\": \"2026-03-01T00:00:04.100000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"0_smoke\", \"case\": \"speed\", \"result\": \"pass\", \"measurement\": ! \"12.5\", \"units\": \"MB/s\", \"starttc\": ! \"3\", \"endtc\": ! \"4\"}}\n",
        "- {\"dt\": \"2026-03-01T00:00:05.000000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"0_smoke\", \"case\": \"odd\", \"result\": \"weird\"}}\n",
        "- {\"dt\": \"2026-03-01T00:00:06.000000+00:00\", \"lvl\": \"results\", \"msg\": {\"definition\": \"lava\", \"case\": \"job\", \"result\": \"fail\", \"error_msg\": \"lava-test-shell timed out\", \"error_type\": \"Test\"}}\n",
    );

    #[test]
    fn every_result_record_becomes_a_typed_case() {
        let cases = parse_results(LOG);
        let names: Vec<_> = cases.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["validate", "boot-qemu", "speed", "odd", "job"]);
        assert_eq!(cases[1].duration, Some(3.25));
        assert!(cases[1].is_action_record() && !cases[0].is_action_record());
        assert!(cases[0].is_lava_record() && !cases[2].is_lava_record());
        let speed = &cases[2];
        assert_eq!(speed.suite, "0_smoke");
        assert_eq!(speed.result, TestResult::Pass);
        assert_eq!(speed.measurement.as_deref(), Some("12.5"));
        assert_eq!(speed.measurement_value(), Some(12.5));
        assert_eq!(speed.units.as_deref(), Some("MB/s"));
        assert_eq!(speed.measurement_text(), "12.5 MB/s");
        // starttc/endtc point at the STARTTC and ENDTC records: 1.75 s apart.
        assert!((speed.duration.unwrap() - 1.75).abs() < 1e-6, "{speed:?}");
        assert_eq!(cases[3].result, TestResult::Unknown);
        assert_eq!(cases[3].duration, None);
        let job = &cases[4];
        assert!(job.is_job_record());
        assert_eq!(job.result, TestResult::Fail);
        assert_eq!(
            job.error,
            Some(JobError {
                error_type: "Test".into(),
                message: "lava-test-shell timed out".into()
            })
        );
        assert_eq!(format!("[{:<6}]", job.result), "[fail  ]");
    }

    #[test]
    fn record_times_cross_midnight_and_month_ends() {
        let lines: Vec<&str> = LOG.lines().collect();
        let before = record_time(lines[0]).unwrap();
        let after = record_time(lines[1]).unwrap();
        assert!((after - before - 0.5).abs() < 1e-6);
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
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
