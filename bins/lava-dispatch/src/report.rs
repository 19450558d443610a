//! A finished job's test results for people and for CI: the table `lava-run` prints at the
//! end of a job on a terminal, and the `--results` files (JUnit XML, JSON).
//!
//! The input is typed: a [`Report`] holds the job id and its [`TestCase`]s in log order
//! (read from `logs.yaml` by [`crate::results`]). LAVA's `lava` suite carries the job's own
//! records (`validate`, `job`) and one record per action that reports a result: the table
//! summarises the action records in one row (listing failed actions), while the result files
//! keep every record, as CI systems show the `lava` suite like any other.
//!
//! ```
//! use lava_dispatch::report::{Report, TestCase, TestResult};
//! let report = Report {
//!     job_id: "local".into(),
//!     cases: vec![TestCase::new("0_smoke", "boot", TestResult::Pass)],
//! };
//! assert!(report.junit().contains("<testcase classname=\"0_smoke\" name=\"boot\""));
//! assert_eq!(report.failed_test_cases(), 0);
//! ```

use anyhow::{Context, Result, bail};
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;

// The typed result records are the run API's (one parser, one type for lava-run and for
// programs calling `lava_dispatcher::JobRun`).
pub use lava_dispatcher::{JobError, TestCase, TestResult};

/// A finished job's results.
#[derive(Debug, Clone, PartialEq)]
pub struct Report {
    /// The job id.
    pub job_id: String,
    /// Every result record, in log order.
    pub cases: Vec<TestCase>,
}

/// The format of a `--results` file, chosen by its extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultsFormat {
    /// `.xml`: JUnit XML.
    Junit,
    /// `.json`: the JSON document of [`Report::json`].
    Json,
}

impl ResultsFormat {
    /// The format for `path`'s extension (`.xml` or `.json`), or a usage error naming it.
    pub fn from_path(path: &Path) -> std::result::Result<ResultsFormat, String> {
        match path.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("xml") => Ok(ResultsFormat::Junit),
            Some(e) if e.eq_ignore_ascii_case("json") => Ok(ResultsFormat::Json),
            _ => Err(format!(
                "{}: the results file must end in .xml (JUnit XML) or .json (JSON)",
                path.display()
            )),
        }
    }
}

/// Counts of results, as JUnit counts them.
#[derive(Debug, Clone, Copy, Default)]
struct Counts {
    tests: usize,
    failures: usize,
    errors: usize,
    skipped: usize,
}

impl Counts {
    fn of<'a>(cases: impl IntoIterator<Item = &'a TestCase>) -> Counts {
        let mut counts = Counts::default();
        for case in cases {
            counts.tests += 1;
            match (case.result, &case.error) {
                (_, Some(_)) => counts.errors += 1,
                (TestResult::Fail, None) => counts.failures += 1,
                (TestResult::Skip | TestResult::Unknown, None) => counts.skipped += 1,
                (TestResult::Pass, None) => {}
            }
        }
        counts
    }
}

impl Report {
    /// The job's own result (`lava`/`job`), `None` when the log has no such record.
    pub fn job_result(&self) -> Option<TestResult> {
        self.job_record().map(|case| case.result)
    }

    /// The `lava`/`job` record.
    pub fn job_record(&self) -> Option<&TestCase> {
        self.cases.iter().find(|case| case.is_job_record())
    }

    /// How many test cases (of test suites, not the `lava` suite) failed.
    pub fn failed_test_cases(&self) -> usize {
        self.test_cases()
            .filter(|case| case.result == TestResult::Fail)
            .count()
    }

    /// The cases of the test suites (every suite but `lava`).
    pub fn test_cases(&self) -> impl Iterator<Item = &TestCase> {
        self.cases.iter().filter(|case| case.suite != "lava")
    }

    /// The suites in order of first appearance, each with its cases.
    pub fn suites(&self) -> Vec<(&str, Vec<&TestCase>)> {
        let mut suites: Vec<(&str, Vec<&TestCase>)> = Vec::new();
        for case in &self.cases {
            match suites.iter_mut().find(|(name, _)| *name == case.suite) {
                Some((_, cases)) => cases.push(case),
                None => suites.push((&case.suite, vec![case])),
            }
        }
        suites
    }

    /// How long a suite ran: the `lava` suite's record of the test definition when there is
    /// one (LAVA's `duration` of the whole definition), else the sum of its cases.
    pub fn suite_time(&self, suite: &str) -> f64 {
        self.cases
            .iter()
            .find(|c| c.suite == "lava" && c.name == suite && suite != "lava")
            .and_then(|c| c.duration)
            .unwrap_or_else(|| {
                self.cases
                    .iter()
                    .filter(|c| c.suite == suite)
                    .filter_map(|c| c.duration)
                    .sum()
            })
    }

    /// The table printed at the end of a job: one row per test case with its measurement,
    /// the `lava` suite's `validate` and `job` records, and its per-action records in one
    /// summary row (failed actions listed by name); then a count of the test cases and the
    /// job's error, if any. Results are coloured when `colour`.
    pub fn table(&self, colour: bool) -> String {
        let mut rows: Vec<(String, String, TestResult, String)> = Vec::new();
        let row = |case: &TestCase| {
            (
                case.suite.clone(),
                case.name.clone(),
                case.result,
                case.measurement_text(),
            )
        };
        for case in &self.cases {
            if !case.is_action_record() && !case.is_job_record() {
                rows.push(row(case));
            }
        }
        let actions: Vec<&TestCase> = self.cases.iter().filter(|c| c.is_action_record()).collect();
        let failed: Vec<&&TestCase> = actions
            .iter()
            .filter(|c| c.result == TestResult::Fail)
            .collect();
        if !actions.is_empty() {
            let passed = actions.len() - failed.len();
            rows.push((
                "lava".into(),
                format!("actions ({passed} of {} pass)", actions.len()),
                if failed.is_empty() {
                    TestResult::Pass
                } else {
                    TestResult::Fail
                },
                "per-action records: logs.yaml".into(),
            ));
            for case in &failed {
                rows.push(row(case));
            }
        }
        if let Some(job) = self.job_record() {
            rows.push(row(job));
        }

        let suite_width = rows.iter().map(|r| r.0.chars().count()).max().unwrap_or(0);
        let case_width = rows.iter().map(|r| r.1.chars().count()).max().unwrap_or(0);
        let suite_width = suite_width.max("suite".len());
        let case_width = case_width.max("case".len());
        let mut out = format!(
            "{:<suite_width$}  {:<case_width$}  {:<7}  measurement\n",
            "suite", "case", "result"
        );
        for (suite, case, result, measurement) in &rows {
            let word = if colour {
                let code = match result {
                    TestResult::Pass => "\x1b[32m",
                    TestResult::Fail => "\x1b[1;31m",
                    TestResult::Skip | TestResult::Unknown => "\x1b[33m",
                };
                format!("{code}{}\x1b[0m", result.as_str())
            } else {
                result.as_str().to_string()
            };
            let padding = " ".repeat(7 - result.as_str().len());
            let line = format!(
                "{suite:<suite_width$}  {case:<case_width$}  {word}{padding}  {measurement}"
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        let counts = |result: TestResult| self.test_cases().filter(|c| c.result == result).count();
        let total = self.test_cases().count();
        let mut summary = format!(
            "{total} test case{}: {} pass, {} fail",
            if total == 1 { "" } else { "s" },
            counts(TestResult::Pass),
            counts(TestResult::Fail)
        );
        for result in [TestResult::Skip, TestResult::Unknown] {
            if counts(result) > 0 {
                let _ = write!(summary, ", {} {}", counts(result), result.as_str());
            }
        }
        let job = match self.job_record() {
            Some(job) => job.result.as_str(),
            None => "incomplete (no job result in the log)",
        };
        let _ = writeln!(out, "{summary}; job {job}");
        if let Some(error) = self.job_record().and_then(|j| j.error.as_ref()) {
            let _ = writeln!(out, "job error ({}): {}", error.error_type, error.message);
        }
        out
    }

    /// The results as JUnit XML, in the shape CI tools read: `<testsuites>` (the counts of
    /// all suites; no `time`, as the `lava` suite's record of a test definition spans that
    /// definition's suite) with one `<testsuite>` per LAVA suite (the `lava` suite included;
    /// `time` as [`Report::suite_time`] says), one `<testcase>` per record
    /// (`classname` the suite, `time` in seconds, 0 when unknown); a failed case has a
    /// `<failure>`, a skipped or unknown one `<skipped>`, and the job record of a job that
    /// did not complete an `<error>` with LAVA's error type and message. A measurement is
    /// the case's `<system-out>` (`measurement: 12.5 MB/s`).
    pub fn junit(&self) -> String {
        let all = Counts::of(&self.cases);
        let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
        let _ = writeln!(
            out,
            "<testsuites name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\">",
            xml_escape(&format!("lava job {}", self.job_id)),
            all.tests,
            all.failures,
            all.errors,
            all.skipped,
        );
        for (suite, cases) in self.suites() {
            let counts = Counts::of(cases.iter().copied());
            let _ = writeln!(
                out,
                "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{:.3}\">",
                xml_escape(suite),
                counts.tests,
                counts.failures,
                counts.errors,
                counts.skipped,
                self.suite_time(suite)
            );
            for case in cases {
                write_junit_case(&mut out, case);
            }
            out.push_str("  </testsuite>\n");
        }
        out.push_str("</testsuites>\n");
        out
    }

    /// The results as JSON: `job_id`, `result` (the job's: `pass`, `fail`, or `incomplete`
    /// when the log has no job record), `error` (`{type, message}` or null), `summary`
    /// (counts of the test cases by result) and `suites`, in log order, each `{name, cases}`
    /// with every case as `{name, result}` plus `measurement` (text, as LAVA records it),
    /// `units` and `duration` (seconds) when present.
    pub fn json(&self) -> serde_json::Value {
        let count = |result: TestResult| self.test_cases().filter(|c| c.result == result).count();
        let suites: Vec<serde_json::Value> = self
            .suites()
            .into_iter()
            .map(|(name, cases)| {
                let cases: Vec<serde_json::Value> = cases
                    .iter()
                    .map(|case| {
                        let mut value = json!({"name": case.name, "result": case.result.as_str()});
                        if let Some(m) = &case.measurement {
                            value["measurement"] = json!(m);
                        }
                        if let Some(u) = &case.units {
                            value["units"] = json!(u);
                        }
                        if let Some(d) = case.duration {
                            value["duration"] = json!(d);
                        }
                        value
                    })
                    .collect();
                json!({"name": name, "cases": cases})
            })
            .collect();
        let error = self
            .job_record()
            .and_then(|j| j.error.as_ref())
            .map(|e| json!({"type": e.error_type, "message": e.message}));
        json!({
            "job_id": self.job_id,
            "result": self.job_result().map_or("incomplete", TestResult::as_str),
            "error": error,
            "summary": {
                "tests": self.test_cases().count(),
                "pass": count(TestResult::Pass),
                "fail": count(TestResult::Fail),
                "skip": count(TestResult::Skip),
                "unknown": count(TestResult::Unknown),
            },
            "suites": suites,
        })
    }

    /// Write the results to `path` in the format its extension names.
    pub fn write_results(&self, path: &Path) -> Result<()> {
        let text = match ResultsFormat::from_path(path) {
            Ok(ResultsFormat::Junit) => self.junit(),
            Ok(ResultsFormat::Json) => {
                let mut text = serde_json::to_string_pretty(&self.json())?;
                text.push('\n');
                text
            }
            Err(message) => bail!(message),
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("Unable to create {}", parent.display()))?;
        }
        std::fs::write(path, text)
            .with_context(|| format!("Unable to write the results to {}", path.display()))
    }
}

fn write_junit_case(out: &mut String, case: &TestCase) {
    let _ = write!(
        out,
        "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
        xml_escape(&case.suite),
        xml_escape(&case.name),
        case.duration.unwrap_or(0.0)
    );
    let measurement = case.measurement_text();
    let outcome = match (&case.error, case.result) {
        (Some(error), _) => Some(format!(
            "<error message=\"{}\" type=\"{}\"/>",
            xml_escape(&error.message),
            xml_escape(&error.error_type)
        )),
        (None, TestResult::Fail) => Some(format!(
            "<failure message=\"{}\" type=\"fail\"/>",
            xml_escape(&format!("{} failed", case.name))
        )),
        (None, TestResult::Skip) => Some("<skipped/>".to_string()),
        (None, TestResult::Unknown) => Some("<skipped message=\"result: unknown\"/>".to_string()),
        (None, TestResult::Pass) => None,
    };
    if outcome.is_none() && measurement.is_empty() {
        out.push_str("/>\n");
        return;
    }
    out.push_str(">\n");
    if let Some(outcome) = outcome {
        let _ = writeln!(out, "      {outcome}");
    }
    if !measurement.is_empty() {
        let _ = writeln!(
            out,
            "      <system-out>measurement: {}</system-out>",
            xml_escape(&measurement)
        );
    }
    out.push_str("    </testcase>\n");
}

/// Text for an XML 1.0 attribute or element: markup characters and white space that
/// attribute normalisation would eat escaped, characters XML 1.0 cannot hold replaced by
/// U+FFFD.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if (c as u32) < 0x20 || matches!(c, '\u{fffe}' | '\u{ffff}') => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests;
