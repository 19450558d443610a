//! What `lava-run` adds for a test writer running a job on their own machine: defaults for
//! `--job-id` and `--output-dir`, the choice of the stderr log rendering, and what follows a
//! job (the result table on a terminal, the `--results` file, the exit status of
//! `--fail-on-test-failure`). A lab's `lava-worker` passes every LAVA flag and none of ours,
//! so nothing here changes a lab run.
//!
//! ```
//! use lava_dispatch::local::{LogFormat, log_style};
//! use lava_pipeline::StderrStyle;
//! // NO_COLOR keeps the human layout on a terminal, without colours.
//! assert_eq!(log_style(None, false, true, true), StderrStyle::Plain);
//! assert_eq!(log_style(Some(LogFormat::Yaml), false, true, false), StderrStyle::Yaml);
//! ```

use crate::RunArgs;
use crate::report::Report;
use crate::results::read_results;
use anyhow::{Context, Result};
use lava_pipeline::StderrStyle;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

/// Where local runs go when `--output-dir` is omitted: `./lava-output/<job id>`.
pub const OUTPUT_ROOT: &str = "lava-output";

/// The exit status of a completed job with a failed test case, under
/// `--fail-on-test-failure` (LAVA's own are 0, 1 and 2).
pub const EXIT_TEST_FAILURE: i32 = 3;

/// The end of `lava-run --help`.
pub const AFTER_HELP: &str = "\
Running locally: without --job-id and --output-dir, each run gets the next number N and \
writes to ./lava-output/N. On a terminal, a table of the test results ends the job.

Exit status: 0 the job completed (or validated), 1 the job failed (incomplete, canceled, \
invalid), 2 usage error, 3 the job completed but a test case failed (only with \
--fail-on-test-failure).

Environment: NO_COLOR (set and not empty) turns colours off in the human log and the table.";

/// The `--log-format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Time, level and message; a message of several lines is shown as lines.
    Human,
    /// LAVA's log lines (one YAML flow mapping each), as in logs.yaml.
    Yaml,
}

/// The `--results` value: a path ending in `.xml` or `.json` (clap's usage error otherwise).
pub fn results_path(value: &str) -> std::result::Result<PathBuf, String> {
    let path = PathBuf::from(value);
    crate::report::ResultsFormat::from_path(&path)?;
    Ok(path)
}

/// The job id and output directory of a run: the flags' values, or the defaults (see
/// [`OUTPUT_ROOT`] and [`next_run`]).
pub fn job_id_and_output_dir(
    job_id: Option<&str>,
    output_dir: Option<&Path>,
) -> Result<(String, PathBuf)> {
    let root = Path::new(OUTPUT_ROOT);
    match (job_id, output_dir) {
        (Some(id), Some(dir)) => Ok((id.to_string(), dir.to_path_buf())),
        (Some(id), None) => Ok((id.to_string(), root.join(id))),
        (None, Some(dir)) => Ok((next_number(root)?.to_string(), dir.to_path_buf())),
        (None, None) => {
            let (number, dir) = next_run(root)?;
            Ok((number.to_string(), dir))
        }
    }
}

/// One more than the highest number naming an entry of `root` (1 when there is none).
fn next_number(root: &Path) -> Result<u64> {
    let entries = match std::fs::read_dir(root) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(1),
        Err(e) => return Err(e).with_context(|| format!("Unable to read {}", root.display())),
    };
    let highest = entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    Ok(highest + 1)
}

/// Claim the next numbered directory of `root` (created here, so two runs started together
/// never share one) and return its number and path.
pub fn next_run(root: &Path) -> Result<(u64, PathBuf)> {
    std::fs::create_dir_all(root)
        .with_context(|| format!("Unable to create {}", root.display()))?;
    let mut number = next_number(root)?;
    loop {
        let dir = root.join(number.to_string());
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok((number, dir)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => number += 1,
            Err(e) => {
                return Err(e).with_context(|| format!("Unable to create {}", dir.display()));
            }
        }
    }
}

/// How the log is shown on stderr: nothing while uploading to a server (`--url`), else the
/// chosen format (human on a terminal, yaml otherwise, by default); the human layout is
/// coloured only on a terminal without `NO_COLOR`.
pub fn log_style(
    format: Option<LogFormat>,
    uploading: bool,
    terminal: bool,
    no_color: bool,
) -> StderrStyle {
    let format = format.unwrap_or(if terminal {
        LogFormat::Human
    } else {
        LogFormat::Yaml
    });
    match format {
        _ if uploading => StderrStyle::Off,
        LogFormat::Yaml => StderrStyle::Yaml,
        LogFormat::Human if terminal && !no_color => StderrStyle::Human,
        LogFormat::Human => StderrStyle::Plain,
    }
}

/// [`log_style`] for these arguments, this process's stderr and environment.
pub fn stderr_style(args: &RunArgs) -> StderrStyle {
    log_style(
        args.log_format,
        args.url.is_some(),
        std::io::stderr().is_terminal(),
        no_color(),
    )
}

/// Whether `NO_COLOR` asks for no colours (set to anything but the empty string).
fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// After the job: the result table on a terminal (not while uploading to a server), the
/// `--results` file, and the exit status from the job's (0 or 1): [`EXIT_TEST_FAILURE`] when
/// the job completed, a test case failed and `--fail-on-test-failure` asks for it.
pub fn after_job(args: &RunArgs, job_id: &str, output_dir: &Path, job_status: i32) -> Result<i32> {
    let wants_table = args.url.is_none() && std::io::stderr().is_terminal();
    if !wants_table && args.results.is_none() && !args.fail_on_test_failure {
        return Ok(job_status);
    }
    let report = Report {
        job_id: job_id.to_string(),
        cases: read_results(&output_dir.join("logs.yaml"))?,
    };
    if wants_table {
        eprintln!(
            "\n{}output: {}",
            report.table(!no_color()),
            output_dir.display()
        );
    }
    if let Some(path) = &args.results {
        report.write_results(path)?;
    }
    Ok(exit_status(&report, job_status, args.fail_on_test_failure))
}

/// The exit status: the job's when it failed, [`EXIT_TEST_FAILURE`] for a failed test case
/// when `fail_on_test_failure`, else 0.
pub fn exit_status(report: &Report, job_status: i32, fail_on_test_failure: bool) -> i32 {
    if job_status != 0 {
        job_status
    } else if fail_on_test_failure && report.failed_test_cases() > 0 {
        EXIT_TEST_FAILURE
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{TestCase, TestResult};

    #[test]
    fn styles_follow_the_format_the_terminal_and_no_color() {
        use LogFormat::*;
        use StderrStyle as S;
        for (format, uploading, terminal, no_color, expected) in [
            (None, false, true, false, S::Human),
            (None, false, true, true, S::Plain),
            (None, false, false, false, S::Yaml),
            (Some(Human), false, false, false, S::Plain),
            (Some(Human), false, true, false, S::Human),
            (Some(Yaml), false, true, false, S::Yaml),
            (None, true, true, false, S::Off),
            (Some(Human), true, false, false, S::Off),
        ] {
            assert_eq!(
                log_style(format, uploading, terminal, no_color),
                expected,
                "{format:?} uploading={uploading} terminal={terminal} no_color={no_color}"
            );
        }
    }

    #[test]
    fn runs_are_numbered_in_the_output_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lava-output");
        assert_eq!(next_run(&root).unwrap(), (1, root.join("1")));
        assert_eq!(next_run(&root).unwrap(), (2, root.join("2")));
        std::fs::create_dir(root.join("41")).unwrap();
        std::fs::create_dir(root.join("notes")).unwrap();
        assert_eq!(next_run(&root).unwrap(), (42, root.join("42")));
        assert!(root.join("42").is_dir());
    }

    #[test]
    fn given_flags_win_and_the_output_dir_follows_the_job_id() {
        let (id, dir) = job_id_and_output_dir(Some("7"), Some(Path::new("/tmp/x"))).unwrap();
        assert_eq!((id.as_str(), dir.as_path()), ("7", Path::new("/tmp/x")));
        let (id, dir) = job_id_and_output_dir(Some("local"), None).unwrap();
        assert_eq!(id, "local");
        assert_eq!(dir, Path::new("lava-output/local"));
    }

    #[test]
    fn results_paths_need_a_known_extension() {
        assert!(results_path("out/results.xml").is_ok());
        assert!(results_path("results.json").is_ok());
        let error = results_path("results.yaml").unwrap_err();
        assert!(
            error.contains("results.yaml") && error.contains(".json"),
            "{error}"
        );
    }

    #[test]
    fn a_failed_test_case_fails_the_run_only_when_asked() {
        let report = |result| Report {
            job_id: "1".into(),
            cases: vec![
                TestCase::new("0_smoke", "a", result),
                TestCase::new("lava", "job", TestResult::Pass),
            ],
        };
        assert_eq!(exit_status(&report(TestResult::Fail), 0, false), 0);
        assert_eq!(exit_status(&report(TestResult::Fail), 0, true), 3);
        assert_eq!(exit_status(&report(TestResult::Pass), 0, true), 0);
        assert_eq!(exit_status(&report(TestResult::Skip), 0, true), 0);
        assert_eq!(exit_status(&report(TestResult::Fail), 1, true), 1);
    }
}
