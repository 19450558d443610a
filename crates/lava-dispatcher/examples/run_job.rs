//! Run one LAVA job on one device through the public run API and print its results.
//!
//! ```text
//! cargo run -q --example run_job -- DEVICE JOB OUTPUT_DIR
//! cargo run -q --example run_job -- fixtures/local-shell/device.yaml \
//!     fixtures/local-shell/inline-job.yaml /tmp/local-shell-job
//! ```
//!
//! Exits 0 when the job completes (its `lava`/`job` result is `pass`), 1 when it fails or
//! its output cannot be written, 2 on a usage error.

use lava_dispatcher::{JobRun, Outcome, RunError};
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [device, job, output_dir] = args.as_slice() else {
        eprintln!("usage: run_job DEVICE JOB OUTPUT_DIR");
        return ExitCode::from(2);
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(
        Path::new(device),
        Path::new(job),
        Path::new(output_dir),
    )) {
        Ok(outcome) => {
            print!("{}", report(&outcome));
            if outcome.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Run `job` on `device`, writing the output files to `output_dir`.
async fn run(device: &Path, job: &Path, output_dir: &Path) -> Result<Outcome, RunError> {
    JobRun::new(device, job)
        .output_dir(output_dir)
        .cancel_on_signals(true)
        .run()
        .await
}

/// The test cases, the job's result and where its files are, as printed.
fn report(outcome: &Outcome) -> String {
    let mut text = format!(
        "{:<16} {:<32} {:<8} measurement\n",
        "suite", "case", "result"
    );
    for case in outcome.test_cases() {
        let line = format!(
            "{:<16} {:<32} {:<8} {}",
            case.suite,
            case.name,
            case.result,
            case.measurement_text()
        );
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text.push_str(&format!("job {}: {}", outcome.job_id, outcome.status));
    if let Some(error) = &outcome.error {
        text.push_str(&format!(" ({error})"));
    }
    text.push_str(&format!("\nlog: {}\n", outcome.files.logs.display()));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use lava_dispatcher::{ErrorKind, JobStatus, TestResult};
    use std::path::PathBuf;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/local-shell")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_local_shell_job_runs_and_its_results_are_printed() {
        let output = tempfile::tempdir().unwrap();
        let outcome = run(
            &fixtures().join("device.yaml"),
            &fixtures().join("inline-job.yaml"),
            output.path(),
        )
        .await
        .unwrap();
        let log = std::fs::read_to_string(&outcome.files.logs).unwrap();
        assert_eq!(outcome.status, JobStatus::Pass, "{log}");
        assert_eq!(outcome.error, None);
        let fail = outcome.find("0_smoke", "always-fail").unwrap();
        assert_eq!(fail.result, TestResult::Fail);
        assert!(outcome.files.result.is_file());
        assert!(outcome.files.description.as_ref().unwrap().is_file());

        let printed = report(&outcome);
        let lines: Vec<&str> = printed.lines().collect();
        assert!(lines[1].starts_with("0_smoke"), "{printed}");
        assert!(lines[1].contains("always-pass") && lines[1].ends_with("pass"));
        assert!(lines[3].ends_with("pass     12.5 MB/s"), "{printed}");
        assert_eq!(lines[4], format!("job {}: pass", outcome.job_id));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_job_that_cannot_be_read_fails_with_a_job_error() {
        let output = tempfile::tempdir().unwrap();
        let outcome = run(
            &fixtures().join("device.yaml"),
            &fixtures().join("no-such-job.yaml"),
            output.path(),
        )
        .await
        .unwrap();
        assert_eq!(outcome.status, JobStatus::Fail);
        let error = outcome.error.clone().unwrap();
        assert_eq!(error.kind, ErrorKind::Job);
        assert!(error.message.contains("no-such-job.yaml"), "{error}");
        assert_eq!(outcome.files.description, None);
        assert!(report(&outcome).contains(": fail (Job: Unable to read"));
    }
}
