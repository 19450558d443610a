//! `lava-run`: parse, describe, validate and run one job, as LAVA's `lava-run` does.

use crate::RunArgs;
use anyhow::{Context, Result};
use lava_actions::protocols::multinode::{CoordinatorSettings, DEFAULT_COORDINATOR_CONFIG};
use lava_pipeline::definition::check_job;
use lava_pipeline::execute::{finish, run_job};
use lava_pipeline::{
    Device, JobLogger, JobParser, LavaError, ParseOptions, RunContext, description_yaml,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Run with LAVA's flags; returns the exit code (0 passed or validated, 1 failed, or
/// [`crate::local::EXIT_TEST_FAILURE`] for a failed test case when asked).
pub fn run(args: &RunArgs) -> Result<i32> {
    let definition = required(&args.definition, "DEFINITION (the job file)")?;
    let device_path = required(&args.device, "--device")?;
    let (job_id, output_dir) =
        crate::local::job_id_and_output_dir(args.job_id.as_deref(), args.output_dir.as_deref())?;
    let output_dir = std::path::absolute(output_dir)?;
    std::fs::create_dir_all(&output_dir)
        .with_context(|| format!("Unable to create {}", output_dir.display()))?;

    let logger = JobLogger::new(crate::local::stderr_style(args));
    logger
        .open_file(&output_dir.join("logs.yaml"))
        .with_context(|| format!("Unable to create {}/logs.yaml", output_dir.display()))?;
    if let Some(token) = &args.token {
        logger.add_secret(token);
    }

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(run_logged(
        args,
        definition,
        device_path,
        &job_id,
        &output_dir,
        &logger,
    ));
    let record = result.record;
    std::fs::write(
        output_dir.join("result.yaml"),
        serde_yaml::to_string(&record)?,
    )?;
    let status = if result.error.is_none() { 0 } else { 1 };
    crate::local::after_job(args, &job_id, &output_dir, status)
}

fn required<'a, T>(value: &'a Option<T>, name: &str) -> Result<&'a T> {
    value
        .as_ref()
        .with_context(|| format!("the argument {name} is required"))
}

async fn run_logged(
    args: &RunArgs,
    definition: &Path,
    device_path: &Path,
    job_id: &str,
    output_dir: &Path,
    logger: &JobLogger,
) -> lava_pipeline::execute::JobResult {
    let prepared = prepare(args, definition, device_path, job_id, output_dir, logger);
    let (job, mut pipeline) = match prepared {
        Ok(p) => p,
        Err(err) => {
            logger.info(format!(
                "lava-dispatcher, installed at version: {}",
                lava_pipeline::execute::VERSION
            ));
            return finish(logger, Some(err));
        }
    };
    let options = lava_actions::protocols::ProtocolOptions {
        coordinator: CoordinatorSettings::File(
            args.coordinator_config
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_COORDINATOR_CONFIG)),
        ),
        hostname: lava_actions::protocols::local_hostname(),
    };
    let protocols = match lava_actions::protocols::job_protocols(&job, &options) {
        Ok(protocols) => protocols,
        Err(err) => return finish(logger, Some(err)),
    };
    let mut ctx = RunContext::new(Arc::new(job), logger.clone());
    ctx.protocols = protocols;
    spawn_signal_handlers(ctx.cancel.clone(), logger.clone());
    run_job(&mut pipeline, &mut ctx, args.validate).await
}

/// Read the inputs, check the job, build the pipeline and write `description.yaml`.
fn prepare(
    args: &RunArgs,
    definition: &Path,
    device_path: &Path,
    job_id: &str,
    output_dir: &Path,
    logger: &JobLogger,
) -> Result<(lava_pipeline::Job, lava_pipeline::Pipeline), LavaError> {
    let text = std::fs::read_to_string(definition).map_err(|e| {
        LavaError::job(format!(
            "Unable to read the job definition {}: {e}",
            definition.display()
        ))
    })?;
    let device = load_device(device_path, &text, &args.device_types)?;
    let registry = lava_actions::registry();

    let diagnostics = check_job(
        &text,
        &definition.display().to_string(),
        Some(&device),
        &registry,
    );
    if !diagnostics.is_empty() {
        for d in &diagnostics {
            logger.error(d.to_string());
        }
        let list: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
        return Err(LavaError::job(format!(
            "Invalid job definition: {} error{}:\n{}",
            list.len(),
            if list.len() == 1 { "" } else { "s" },
            list.join("\n")
        )));
    }

    let read_optional = |path: &Option<PathBuf>| -> Result<Option<String>, LavaError> {
        path.as_ref()
            .map(|p| {
                std::fs::read_to_string(p).map_err(|e| {
                    LavaError::configuration(format!("Unable to read {}: {e}", p.display()))
                })
            })
            .transpose()
    };
    let options = ParseOptions {
        job_id: job_id.to_string(),
        source: Some(definition.to_path_buf()),
        dispatcher_config: read_optional(&args.dispatcher)?,
        env_dut: read_optional(&args.env_dut)?,
    };
    let (job, pipeline) =
        JobParser::new(&registry, &lava_actions::FIXED).parse(&text, device, &options)?;
    if let Some(secrets) = job.parameters.get("secrets").and_then(|s| s.as_mapping()) {
        for value in secrets.values().filter_map(|v| v.as_str()) {
            logger.add_secret(value);
        }
    }
    let description = description_yaml(&pipeline);
    let write = |path: &Path| {
        std::fs::write(path, &description).map_err(|e| {
            LavaError::infrastructure(format!("Unable to write {}: {e}", path.display()))
        })
    };
    write(&output_dir.join("description.yaml"))?;
    if let Some(path) = &args.describe {
        write(path)?;
    }
    Ok((job, pipeline))
}

/// The device: a rendered device YAML, or a device dictionary (`*.jinja2`) rendered with
/// the `--device-types` directories, then LAVA's default ones, and the job's `context:`
/// (as lava-server passes it).
fn load_device(path: &Path, job_text: &str, device_types: &[PathBuf]) -> Result<Device, LavaError> {
    let config_error = |e: lava_device::DeviceError| LavaError::configuration(e.to_string());
    let config = if lava_device::is_dictionary(path) {
        let context = serde_yaml::from_str::<serde_yaml::Value>(job_text)
            .ok()
            .and_then(|job| job.get("context").and_then(|c| c.as_mapping()).cloned())
            .unwrap_or_default();
        let renderer = lava_device::Renderer::with_defaults(device_types);
        lava_device::load_device(path, &renderer, &context).map_err(config_error)?
    } else {
        lava_device::DeviceConfig::load(path).map_err(config_error)?
    };
    Ok(Device::from_mapping(
        config.raw().clone(),
        Some(path.to_path_buf()),
    ))
}

/// SIGHUP, SIGINT, SIGQUIT, SIGTERM and SIGUSR2 cancel the job (finalize still runs).
fn spawn_signal_handlers(cancel: tokio_util::sync::CancellationToken, logger: JobLogger) {
    use tokio::signal::unix::{SignalKind, signal};
    let kinds = [
        SignalKind::hangup(),
        SignalKind::interrupt(),
        SignalKind::quit(),
        SignalKind::terminate(),
        SignalKind::user_defined2(),
    ];
    for kind in kinds {
        let Ok(mut stream) = signal(kind) else {
            continue;
        };
        let cancel = cancel.clone();
        let logger = logger.clone();
        tokio::spawn(async move {
            if stream.recv().await.is_some() {
                logger.error("Received a signal: canceling the job");
                cancel.cancel();
            }
        });
    }
}
