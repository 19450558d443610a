//! The public run API: run one LAVA job on one device from a Rust program, as `lava-run`
//! does (which is built on it).
//!
//! [`JobRun`] takes the device and the job (paths, text or already-parsed values), builds
//! the pipeline with a [`StrategyRegistry`] (every built-in strategy by default, or yours
//! with more added through [`JobRun::registry`]), describes, validates and runs it, and
//! returns an [`Outcome`]: the job's [`JobStatus`], its [`JobFailure`] (LAVA's error kind
//! and message), every result record as a typed [`TestCase`] and the paths of the
//! [`OutputFiles`] (`logs.yaml`, `result.yaml`, `description.yaml`). Only a run that cannot
//! write its output files is a [`RunError`]; a failed job is a failed `Outcome`.
//!
//! As a lab runs it: [`JobRun::log_upload`] sends the log to lava-server while the job
//! runs ([`LogUpload`], drained before `result.yaml`), and [`JobRun::cancel_on_signals`]
//! handles LAVA's six signals (cancel, cancel again, end the final upload).
//!
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), lava_dispatcher::RunError> {
//! use lava_dispatcher::{JobRun, JobStatus};
//! use std::path::Path;
//!
//! let outcome = JobRun::new(
//!     Path::new("fixtures/local-shell/device.yaml"),
//!     Path::new("fixtures/local-shell/inline-job.yaml"),
//! )
//! .output_dir("/tmp/local-shell-job")
//! .run()
//! .await?;
//! assert_eq!(outcome.status, JobStatus::Pass);
//! let speed = outcome.find("0_smoke", "speed").unwrap();
//! assert_eq!(speed.measurement_value(), Some(12.5));
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod device_claim;
mod error;
pub mod outcome;
pub mod run;
mod signals;
pub mod upload;

pub use error::RunError;
pub use outcome::{
    JobError, JobFailure, JobStatus, Outcome, OutputFiles, TestCase, TestResult, parse_results,
    read_results,
};
pub use run::{DeviceInput, JobInput, JobRun};
pub use upload::LogUpload;

/// The pieces a custom strategy is written with, and the types [`JobRun`] takes.
pub use lava_pipeline::{
    Action, Device, ErrorKind, LavaError, LavaResult, Pipeline, PipelineBuilder, RunContext,
    Section, StderrStyle, Strategy, StrategyRegistry, ValidateContext, action_identity,
    async_trait,
};
/// The YAML value types the API takes and gives (job definitions, result records).
pub use serde_yaml::{Mapping, Value};
/// Cancels a run ([`JobRun::cancel_token`]).
pub use tokio_util::sync::CancellationToken;

/// A registry holding every built-in strategy, to add your own to.
pub fn registry() -> StrategyRegistry {
    lava_actions::registry()
}
