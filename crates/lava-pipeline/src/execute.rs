//! A whole job's life, as `lava-run` drives it: validate (logged as LAVA does), run the
//! blocks, finalize exactly once, clean up, and produce the job result record.

use crate::error::{ErrorKind, LavaError};
use crate::log::{JobLogger, now_spaced};
use crate::pipeline::Pipeline;
use crate::run::{RunContext, run_node};
use crate::timeout::deadline_in;
use serde_yaml::{Mapping, Value};
use std::time::Duration;
use tokio::time::Instant;

/// The version string logged first.
pub const VERSION: &str = concat!("lava-rs ", env!("CARGO_PKG_VERSION"));

/// Seconds allowed for cleanup (`job-cleanup`).
pub const CLEANUP_TIMEOUT: u64 = 300;

/// How a job ended.
#[derive(Debug, Clone)]
pub struct JobResult {
    /// `None` when the job passed.
    pub error: Option<LavaError>,
    /// The `lava`/`job` result map (also written to `result.yaml`).
    pub record: Mapping,
}

impl JobResult {
    /// Whether the job passed (no error).
    pub fn passed(&self) -> bool {
        self.error.is_none()
    }
}

/// Validate the pipeline with LAVA's log lines. Returns the validation error, if any.
pub fn validate_logged(pipeline: &mut Pipeline, ctx: &RunContext) -> Result<(), LavaError> {
    let logger = &ctx.logger;
    logger.info("start: 0 validate");
    logger.info(format!("Start time: {} (UTC)", now_spaced()));
    let start = std::time::Instant::now();
    let outcome = validate_and_check_runnable(pipeline, ctx);
    for note in pipeline.validation_notes() {
        logger.info(note);
    }
    logger.info(format!(
        "validate duration: {:.2}",
        start.elapsed().as_secs_f64()
    ));
    let mut record = Mapping::new();
    record.insert("definition".into(), "lava".into());
    record.insert("case".into(), "validate".into());
    record.insert(
        "result".into(),
        if outcome.is_ok() { "pass" } else { "fail" }.into(),
    );
    logger.results(record);
    outcome
}

/// LAVA's validation, then lava-rs's own question: can every action run here? Both
/// lists of errors are reported together.
fn validate_and_check_runnable(pipeline: &mut Pipeline, ctx: &RunContext) -> Result<(), LavaError> {
    let validated = pipeline.validate(&ctx.job);
    let refused: Vec<String> = pipeline
        .not_runnable()
        .iter()
        .map(ToString::to_string)
        .collect();
    for reason in &refused {
        ctx.logger.error(reason.as_str());
    }
    match validated {
        Ok(()) if refused.is_empty() => Ok(()),
        Ok(()) => Err(LavaError::job(refused.join("\n"))),
        // Both lists in one JobError; another kind (a configuration error) stands alone.
        Err(invalid) if invalid.kind == ErrorKind::Job && !refused.is_empty() => {
            Err(LavaError::job(format!(
                "{}\n{}",
                invalid.message.trim_end(),
                refused.join("\n")
            )))
        }
        Err(invalid) => Err(invalid),
    }
}

/// Validate and (unless `validate_only`) run the job; always cleans up and logs the result.
pub async fn run_job(
    pipeline: &mut Pipeline,
    ctx: &mut RunContext,
    validate_only: bool,
) -> JobResult {
    ctx.logger
        .info(format!("lava-dispatcher, installed at version: {VERSION}"));
    for warning in ctx.job.take_warnings() {
        ctx.logger.warning(warning);
    }
    let mut error = validate_logged(pipeline, ctx).err();
    if error.is_none() && !validate_only {
        ctx.started = true;
        ctx.start_job_timer();
        let job_deadline = ctx.job_deadline();
        let run = async {
            create_scratch_dir(ctx)?;
            set_up_protocols(ctx).await?;
            pipeline.run_actions(ctx).await
        };
        let outcome = match tokio::time::timeout_at(job_deadline, run).await {
            Ok(r) => r,
            Err(_) => Err(LavaError::job(format!(
                "job timed out after {} seconds",
                ctx.job.timeout
            ))),
        };
        error = outcome.err();
    }
    if let Some(err) = &error
        && err.kind == ErrorKind::Bug
    {
        ctx.logger.exception(&err.message);
    }
    if !validate_only || error.is_some() {
        cleanup(pipeline, ctx).await;
    }
    finish(&ctx.logger, error)
}

/// LAVA's `Job._run` prologue: set every protocol up, in order, before the first action.
async fn set_up_protocols(ctx: &mut RunContext) -> Result<(), LavaError> {
    for protocol in ctx.protocols.clone() {
        protocol.set_up(&ctx.logger).await?;
    }
    Ok(())
}

/// LAVA's `Job.cleanup`: finalize (once, if the job started), every action's cleanup.
pub async fn cleanup(pipeline: &mut Pipeline, ctx: &mut RunContext) {
    ctx.logger.info("Cleaning after the job");
    let budget = Instant::now() + Duration::from_secs(CLEANUP_TIMEOUT);
    ctx.set_job_deadline(budget);
    let mut failed = false;
    for node in &mut pipeline.actions {
        if node.meta.section == "finalize" {
            if ctx.started && !node.started {
                // Finalize gets its own budget even when the job ran out of time.
                let deadline = deadline_in(Duration::from_secs(node.meta.timeout.max(1)));
                if let Err(e) = run_node(node, ctx, deadline, true).await {
                    ctx.logger
                        .error(format!("Failed to clean after action 'finalize': {e}"));
                }
            }
            continue;
        }
        if let Err(e) = cleanup_node(node, ctx).await {
            ctx.logger.error(format!(
                "Failed to clean after action '{}': {e}",
                node.meta.name
            ));
            failed = true;
        }
    }
    // Whatever connection is left is ended now.
    let connections = std::mem::take(&mut ctx.connections);
    for (_, mut connection) in connections {
        connection.finalise().await;
    }
    if failed {
        ctx.logger.error("Failed to clean after job");
    }
    remove_override_dirs(ctx);
    remove_scratch_dir(ctx);
    ctx.logger.flush();
}

/// The job's scratch directory, mode 0700 (see [`crate::scratch`]).
fn create_scratch_dir(ctx: &RunContext) -> Result<(), LavaError> {
    let dir = &ctx.job.scratch_dir;
    crate::scratch::create_private_dir_all(dir)
        .map_err(|e| LavaError::infrastructure(format!("Unable to create {}: {e}", dir.display())))
}

/// LAVA's cleanup of `base_overrides`: the job's directories outside the scratch
/// directory (under the TFTP root) removed.
fn remove_override_dirs(ctx: &RunContext) {
    for dir in ctx.override_dirs() {
        ctx.logger.info(format!(
            "Override tmp directory removed at {}",
            dir.display()
        ));
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => ctx
                .logger
                .error(format!("Unable to remove the directory: {e}")),
            _ => {}
        }
    }
}

/// LAVA's last cleanup step: the job's scratch directory and all below it removed.
fn remove_scratch_dir(ctx: &RunContext) {
    let dir = &ctx.job.scratch_dir;
    ctx.logger
        .info(format!("Root tmp directory removed at {}", dir.display()));
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => ctx
            .logger
            .error(format!("Unable to remove the directory: {e}")),
        _ => {}
    }
}

fn cleanup_node<'a>(
    node: &'a mut crate::action::ActionNode,
    ctx: &'a mut RunContext,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), LavaError>> + Send + 'a>> {
    Box::pin(async move {
        let mut first_error = None;
        if let Err(e) = node.action.cleanup(ctx).await {
            first_error = Some(e);
        }
        for child in &mut node.pipeline.actions {
            if let Err(e) = cleanup_node(child, ctx).await {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

/// Log the final lines and build the job record.
pub fn finish(logger: &JobLogger, error: Option<LavaError>) -> JobResult {
    let mut record = Mapping::new();
    record.insert("definition".into(), "lava".into());
    record.insert("case".into(), "job".into());
    match &error {
        None => {
            record.insert("result".into(), "pass".into());
            logger.info("Job finished correctly");
        }
        Some(err) => {
            record.insert("result".into(), "fail".into());
            let msg = if err.message.is_empty() {
                "Unknown error".to_string()
            } else {
                err.message.clone()
            };
            record.insert("error_msg".into(), Value::String(msg));
            record.insert("error_type".into(), err.kind.error_type().into());
            logger.error(err.kind.error_help());
        }
    }
    logger.results(record.clone());
    logger.flush();
    JobResult { error, record }
}
