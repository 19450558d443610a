//! `lava-run`: LAVA's flags turned into a [`JobRun`] (the public run API does the work),
//! its outcome into LAVA's exit code (and the local-run report, [`crate::local`]).

use crate::RunArgs;
use anyhow::{Context, Result};
use lava_dispatcher::JobRun;

/// Run with LAVA's flags; returns the exit code (0 passed or validated, 1 failed, or
/// [`crate::local::EXIT_TEST_FAILURE`] for a failed test case when asked).
pub fn run(args: &RunArgs) -> Result<i32> {
    let definition = required(&args.definition, "DEFINITION (the job file)")?;
    let device = required(&args.device, "--device")?;
    let (job_id, output_dir) =
        crate::local::job_id_and_output_dir(args.job_id.as_deref(), args.output_dir.as_deref())?;

    let mut run = JobRun::new(device.as_path(), definition.as_path())
        .job_id(&job_id)
        .output_dir(&output_dir)
        .validate_only(args.validate)
        .device_types(args.device_types.iter().cloned())
        .stderr(crate::local::stderr_style(args))
        .cancel_on_signals(true);
    if let Some(token) = &args.token {
        run = run.secret(token);
    }
    if let Some(url) = &args.url {
        run = run.log_upload(lava_dispatcher::LogUpload {
            url: url.clone(),
            token: args.token.clone().unwrap_or_default(),
            interval: std::time::Duration::from_secs(args.job_log_interval),
        });
    }
    if let Some(path) = &args.describe {
        run = run.describe_to(path);
    }
    if let Some(path) = &args.dispatcher {
        run = run.dispatcher_config(path);
    }
    if let Some(path) = &args.env_dut {
        run = run.env_dut(path);
    }
    if let Some(path) = &args.coordinator_config {
        run = run.coordinator_config(path);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let outcome = runtime.block_on(run.run())?;
    if let (Some(report), Some(url)) = (&outcome.log_upload, &args.url)
        && report.pending > 0
    {
        let why = report
            .last_error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default();
        let message = format!(
            "lava-run: {} log records were not sent to {url} ({} were){why}",
            report.pending, report.accepted
        );
        let token = args.token.as_deref().unwrap_or_default();
        eprintln!("{}", lava_log_upload::mask(message, token));
    }
    let status = if outcome.passed() { 0 } else { 1 };
    crate::local::after_job(args, &job_id, &outcome.files.dir, status)
}

fn required<'a, T>(value: &'a Option<T>, name: &str) -> Result<&'a T> {
    value
        .as_ref()
        .with_context(|| format!("the argument {name} is required"))
}
