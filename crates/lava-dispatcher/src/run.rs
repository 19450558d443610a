//! [`JobRun`]: one job on one device, as `lava-run` runs it.
//!
//! The steps, in LAVA's order: the output directory and `logs.yaml` are opened; the job is
//! read and checked (every mistake logged, with its key path); the device is loaded (a
//! rendered device YAML, or a device dictionary rendered with the job's `context:`); the
//! pipeline is built and described (`description.yaml`); the job's protocols are set up;
//! the executor validates, runs, finalizes and cleans up; `result.yaml` is written. A job
//! that cannot be read, checked or built ends as a failed [`Outcome`] with LAVA's error
//! kind, exactly like a job that fails while running; only a run that cannot write its
//! output files is a [`RunError`].

use crate::device_claim::DeviceClaim;
use crate::outcome::{JobFailure, JobStatus, Outcome, OutputFiles, read_results};
use crate::signals::JobSignals;
use crate::upload::LogUpload;
use crate::{RunError, StderrStyle};
use lava_actions::protocols::multinode::{CoordinatorSettings, DEFAULT_COORDINATOR_CONFIG};
use lava_pipeline::definition::{check_job_value, parse_job_text};
use lava_pipeline::execute::{JobResult, finish, run_job};
use lava_pipeline::{
    Device, Job, JobLogger, JobParser, LavaError, ParseOptions, Pipeline, RunContext,
    StrategyRegistry, description_yaml,
};
use serde_yaml::{Mapping, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use tokio_util::sync::CancellationToken;

/// The device a job runs on.
#[derive(Debug, Clone)]
pub enum DeviceInput {
    /// A rendered device configuration YAML, or a device dictionary (`*.jinja2`) rendered
    /// with the [`JobRun::device_types`] directories, then LAVA's default ones, and the
    /// job's `context:`.
    File(PathBuf),
    /// A rendered device configuration's text.
    Yaml(String),
    /// An already-loaded device (boxed: the typed configuration is large).
    Parsed(Box<Device>),
}

impl From<PathBuf> for DeviceInput {
    fn from(path: PathBuf) -> Self {
        DeviceInput::File(path)
    }
}

impl From<&Path> for DeviceInput {
    fn from(path: &Path) -> Self {
        DeviceInput::File(path.to_path_buf())
    }
}

impl From<Device> for DeviceInput {
    fn from(device: Device) -> Self {
        DeviceInput::Parsed(Box::new(device))
    }
}

/// The job definition to run.
#[derive(Debug, Clone)]
pub enum JobInput {
    /// A job definition file (LAVA's job YAML).
    File(PathBuf),
    /// A job definition's text; `name` stands for the file in error messages.
    Yaml {
        /// What error messages call the definition.
        name: String,
        /// The YAML text.
        text: String,
    },
    /// An already-parsed job definition; `name` stands for the file in error messages.
    Parsed {
        /// What error messages call the definition.
        name: String,
        /// The definition.
        definition: Mapping,
    },
}

impl From<PathBuf> for JobInput {
    fn from(path: PathBuf) -> Self {
        JobInput::File(path)
    }
}

impl From<&Path> for JobInput {
    fn from(path: &Path) -> Self {
        JobInput::File(path.to_path_buf())
    }
}

impl JobInput {
    /// The definition's text, what error messages call it, and its file (if any).
    fn read(&self) -> Result<(String, String, Option<PathBuf>), LavaError> {
        match self {
            JobInput::File(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    LavaError::job(format!(
                        "Unable to read the job definition {}: {e}",
                        path.display()
                    ))
                })?;
                Ok((text, path.display().to_string(), Some(path.clone())))
            }
            JobInput::Yaml { name, text } => Ok((text.clone(), name.clone(), None)),
            JobInput::Parsed { name, definition } => {
                let text = serde_yaml::to_string(definition).map_err(|e| {
                    LavaError::job(format!("{name}: the definition cannot be written: {e}"))
                })?;
                Ok((text, name.clone(), None))
            }
        }
    }
}

/// One job run, configured with builder methods and started with [`JobRun::run`].
///
/// ```no_run
/// # async fn example() -> Result<(), lava_dispatcher::RunError> {
/// use lava_dispatcher::JobRun;
/// use std::path::Path;
/// let outcome = JobRun::new(
///     Path::new("fixtures/local-shell/device.yaml"),
///     Path::new("fixtures/local-shell/inline-job.yaml"),
/// )
/// .output_dir("/tmp/job-1")
/// .job_id("1")
/// .run()
/// .await?;
/// for case in outcome.test_cases() {
///     println!("{} {} {}", case.suite, case.name, case.result);
/// }
/// # Ok(()) }
/// ```
pub struct JobRun {
    device: DeviceInput,
    job: JobInput,
    output_dir: Option<PathBuf>,
    job_id: Option<String>,
    validate_only: bool,
    describe_to: Option<PathBuf>,
    dispatcher_config: Option<PathBuf>,
    env_dut: Option<PathBuf>,
    device_types: Vec<PathBuf>,
    coordinator_config: Option<PathBuf>,
    secrets: Vec<String>,
    stderr: StderrStyle,
    registry: Option<StrategyRegistry>,
    cancel: CancellationToken,
    cancel_on_signals: bool,
    log_upload: Option<LogUpload>,
}

/// Distinguishes the default job ids of runs started by one process.
static NEXT_RUN: AtomicU32 = AtomicU32::new(0);

impl JobRun {
    /// A run of `job` on `device` (paths or already-parsed values), with the defaults:
    /// every built-in strategy, no stderr output, no signal handling, a job id unique to
    /// this process and run, and `<temp dir>/lava-rs-output-<job id>` as output directory.
    pub fn new(device: impl Into<DeviceInput>, job: impl Into<JobInput>) -> JobRun {
        JobRun {
            device: device.into(),
            job: job.into(),
            output_dir: None,
            job_id: None,
            validate_only: false,
            describe_to: None,
            dispatcher_config: None,
            env_dut: None,
            device_types: Vec::new(),
            coordinator_config: None,
            secrets: Vec::new(),
            stderr: StderrStyle::Off,
            registry: None,
            cancel: CancellationToken::new(),
            cancel_on_signals: false,
            log_upload: None,
        }
    }

    /// Where `logs.yaml`, `description.yaml` and `result.yaml` go (created if missing).
    pub fn output_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.output_dir = Some(dir.into());
        self
    }

    /// The job id (used in scratch paths, `LAVA_JOB_ID` and the results directory).
    pub fn job_id(mut self, id: impl Into<String>) -> Self {
        self.job_id = Some(id.into());
        self
    }

    /// Validate the job and write `description.yaml`, then stop (`lava-run --validate`).
    pub fn validate_only(mut self, validate_only: bool) -> Self {
        self.validate_only = validate_only;
        self
    }

    /// Also write the pipeline description to this file (`lava-run --describe`).
    pub fn describe_to(mut self, path: impl Into<PathBuf>) -> Self {
        self.describe_to = Some(path.into());
        self
    }

    /// The dispatcher configuration YAML (`lava-run --dispatcher`).
    pub fn dispatcher_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.dispatcher_config = Some(path.into());
        self
    }

    /// The DUT environment YAML (`lava-run --env-dut`).
    pub fn env_dut(mut self, path: impl Into<PathBuf>) -> Self {
        self.env_dut = Some(path.into());
        self
    }

    /// Device-type template directories for a device dictionary, searched before LAVA's
    /// default ones.
    pub fn device_types(mut self, dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        self.device_types = dirs.into_iter().collect();
        self
    }

    /// The MultiNode coordinator configuration (LAVA's JSON `lava-coordinator.conf`),
    /// instead of `/etc/lava-coordinator/lava-coordinator.conf`.
    pub fn coordinator_config(mut self, path: impl Into<PathBuf>) -> Self {
        self.coordinator_config = Some(path.into());
        self
    }

    /// A value to mask as `[MASKED]` in every log record (the job's own `secrets:` are
    /// masked too).
    pub fn secret(mut self, value: impl Into<String>) -> Self {
        self.secrets.push(value.into());
        self
    }

    /// How log records are shown on stderr (default: not at all).
    pub fn stderr(mut self, style: StderrStyle) -> Self {
        self.stderr = style;
        self
    }

    /// The strategies to build the pipeline with (default: [`crate::registry`], every
    /// built-in one). Add your own to it to run jobs naming them.
    pub fn registry(mut self, registry: StrategyRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Cancel the job when `token` is cancelled (finalize and cleanup still run).
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Handle SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1 and SIGUSR2 as `lava-run` does: the
    /// first cancels the job (finalize and cleanup still run), a second stops finalize too,
    /// one after the job ends the final log upload (the handlers stop when the run ends).
    pub fn cancel_on_signals(mut self, cancel: bool) -> Self {
        self.cancel_on_signals = cancel;
        self
    }

    /// Send the log to lava-server while the job runs, as `lava-run --url URL --token
    /// TOKEN --job-log-interval N` does; the token is masked in the log. The upload is
    /// drained before `result.yaml` is written ([`crate::upload::DRAIN_TIMEOUT`]).
    pub fn log_upload(mut self, upload: LogUpload) -> Self {
        self.secrets.push(upload.token.clone());
        self.log_upload = Some(upload);
        self
    }

    /// Run the job to its end. A failed job is an `Ok` [`Outcome`] with
    /// [`JobStatus::Fail`]; `Err` only when the output files cannot be written or read.
    pub async fn run(self) -> Result<Outcome, RunError> {
        let job_id = self.job_id.clone().unwrap_or_else(default_job_id);
        let output_dir = match &self.output_dir {
            Some(dir) => dir.clone(),
            None => std::env::temp_dir().join(format!("lava-rs-output-{job_id}")),
        };
        let output_dir =
            std::path::absolute(&output_dir).map_err(|source| RunError::OutputDir {
                path: output_dir.clone(),
                source,
            })?;
        std::fs::create_dir_all(&output_dir).map_err(|source| RunError::OutputDir {
            path: output_dir.clone(),
            source,
        })?;
        let logs = output_dir.join("logs.yaml");
        let logger = JobLogger::new(self.stderr);
        logger
            .open_file(&logs)
            .map_err(|source| RunError::WriteFile {
                path: logs.clone(),
                source,
            })?;
        for secret in &self.secrets {
            logger.add_secret(secret);
        }

        let signals = self
            .cancel_on_signals
            .then(|| JobSignals::install(self.cancel.clone(), &logger));
        let upload = match &self.log_upload {
            Some(upload) => Some(crate::upload::start(upload, &job_id, &logs)?),
            None => None,
        };
        let again = signals.as_ref().map(JobSignals::again);
        let (result, described) = self.run_logged(&job_id, &output_dir, &logger, again).await;
        // The job is over: a signal now only ends the final upload.
        if let Some(signals) = &signals {
            signals.job_finished();
        }
        let stop = signals.as_ref().map(JobSignals::next);
        let log_upload = match upload {
            Some(upload) => Some(
                upload
                    .finish(async move {
                        match stop {
                            Some(signal) => signal.await,
                            None => std::future::pending().await,
                        }
                    })
                    .await,
            ),
            None => None,
        };

        let result_file = output_dir.join("result.yaml");
        let write_result = serde_yaml::to_string(&result.record)
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(&result_file, text));
        write_result.map_err(|source| RunError::WriteFile {
            path: result_file.clone(),
            source,
        })?;
        Ok(Outcome {
            job_id,
            status: if result.passed() {
                JobStatus::Pass
            } else {
                JobStatus::Fail
            },
            error: result.error.map(|e| JobFailure {
                kind: e.kind,
                message: e.message,
            }),
            results: read_results(&logs)?,
            record: result.record,
            log_upload,
            files: OutputFiles {
                description: described.then(|| output_dir.join("description.yaml")),
                dir: output_dir,
                logs,
                result: result_file,
            },
        })
    }

    /// The job's result, and whether its pipeline was built (`description.yaml` written).
    async fn run_logged(
        &self,
        job_id: &str,
        output_dir: &Path,
        logger: &JobLogger,
        cancel_again: Option<CancellationToken>,
    ) -> (JobResult, bool) {
        let registry = self.registry.clone().unwrap_or_else(lava_actions::registry);
        let (job, mut pipeline) = match self.prepare(&registry, job_id, output_dir, logger) {
            Ok(prepared) => prepared,
            Err(err) => {
                logger.info(format!(
                    "lava-dispatcher, installed at version: {}",
                    lava_pipeline::execute::VERSION
                ));
                return (finish(logger, Some(err)), false);
            }
        };
        let options = lava_actions::protocols::ProtocolOptions {
            coordinator: CoordinatorSettings::File(
                self.coordinator_config
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(DEFAULT_COORDINATOR_CONFIG)),
            ),
            hostname: lava_actions::protocols::local_hostname(),
        };
        let protocols = match lava_actions::protocols::job_protocols(&job, &options) {
            Ok(protocols) => protocols,
            Err(err) => return (finish(logger, Some(err)), true),
        };
        // A job that runs claims its device, ending what killed dispatchers left on it.
        let _claim = (!self.validate_only)
            .then(|| {
                let device = job.device.hostname.as_deref().unwrap_or("unnamed");
                DeviceClaim::acquire(&job.scratch_dir, device, job_id, logger)
                    .map_err(|e| logger.warning(format!("Cannot claim device {device}: {e}")))
                    .ok()
            })
            .flatten();
        let mut ctx = RunContext::new(Arc::new(job), logger.clone());
        ctx.protocols = protocols;
        ctx.cancel = self.cancel.clone();
        if let Some(again) = cancel_again {
            ctx.cancel_again = again;
        }
        let result = run_job(&mut pipeline, &mut ctx, self.validate_only).await;
        (result, true)
    }

    /// Read the inputs, check the job, build the pipeline and write `description.yaml`.
    fn prepare(
        &self,
        registry: &StrategyRegistry,
        job_id: &str,
        output_dir: &Path,
        logger: &JobLogger,
    ) -> Result<(Job, Pipeline), LavaError> {
        let (text, name, source) = self.job.read()?;
        let device = self.load_device(&text)?;

        // Parsed once: checked, then built.
        let parsed = parse_job_text(&text, &name).and_then(|value| {
            let diagnostics = check_job_value(&value, &name, Some(&device), registry);
            if diagnostics.is_empty() {
                Ok(value)
            } else {
                Err(diagnostics)
            }
        });
        let parsed = match parsed {
            Ok(value) => value,
            Err(diagnostics) => {
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
        };

        let options = ParseOptions {
            job_id: job_id.to_string(),
            source,
            dispatcher_config: read_optional(&self.dispatcher_config)?,
            env_dut: read_optional(&self.env_dut)?,
        };
        let (job, pipeline) =
            JobParser::new(registry, &lava_actions::FIXED).parse_value(parsed, device, &options)?;
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
        if let Some(path) = &self.describe_to {
            write(path)?;
        }
        Ok((job, pipeline))
    }

    /// The device, a device dictionary rendered with the job's `context:` (as lava-server
    /// passes it).
    fn load_device(&self, job_text: &str) -> Result<Device, LavaError> {
        let path = match &self.device {
            DeviceInput::Parsed(device) => return Ok(Device::clone(device)),
            DeviceInput::Yaml(text) => return Device::from_yaml(text, None),
            DeviceInput::File(path) => path,
        };
        let config = if lava_device::is_dictionary(path) {
            // A job beyond lava_yaml's limits is reported by the job checks; here it has
            // no context.
            let context = lava_yaml::check(job_text)
                .ok()
                .and_then(|()| serde_yaml::from_str::<Value>(job_text).ok())
                .and_then(|job| job.get("context").and_then(|c| c.as_mapping()).cloned())
                .unwrap_or_default();
            let renderer = lava_device::Renderer::with_defaults(&self.device_types);
            lava_device::load_device(path, &renderer, &context)?
        } else {
            lava_device::DeviceConfig::load(path)?
        };
        // The typed configuration built here is the one actions read at run time.
        Ok(Device::new(config))
    }
}

fn read_optional(path: &Option<PathBuf>) -> Result<Option<String>, LavaError> {
    path.as_ref()
        .map(|p| {
            std::fs::read_to_string(p).map_err(|e| {
                LavaError::configuration(format!("Unable to read {}: {e}", p.display()))
            })
        })
        .transpose()
}

/// `<pid><n>`: numeric like LAVA's ids, and distinct for every run of every process.
fn default_job_id() -> String {
    format!(
        "{}{}",
        std::process::id(),
        NEXT_RUN.fetch_add(1, Ordering::Relaxed)
    )
}
