//! The harness of lava-actions' run-time tests: a run-time function (or any behaviour)
//! run as one pipeline action through the executor's `run_node`, so deadlines, retries
//! and error handling are the pipeline's, with the log captured in memory.
//!
//! ```no_run
//! # async fn example() -> lava_pipeline::LavaResult<()> {
//! use lava_pipeline::{Device, ErrorKind};
//! use lava_test_support::runtime::{ActionSpec, StepAction, capturing_context, step};
//! let device = Device::from_yaml("constants: {failure_retry: 1}", None)?;
//! let mut ctx = capturing_context("1", Default::default(), device, 600);
//! let spec = ActionSpec::new("http-download", "deploy", "1.1").timeout(60);
//! let action = StepAction::new(spec.name(), step(|ctx| Box::pin(async move {
//!     ctx.logger.info("downloading");
//!     Ok(())
//! })));
//! spec.run(&mut ctx, Box::new(action)).await?;
//! # Ok(()) }
//! ```

use lava_pipeline::action::{ActionMeta, ActionNode};
use lava_pipeline::run::run_node;
use lava_pipeline::{
    Action, Device, ErrorKind, Job, JobLogger, LavaResult, Pipeline, RunContext, async_trait,
};
use serde_yaml::Mapping;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use crate::unique_job_id;

/// What a step returns: the future of its outcome, borrowing the run context.
pub type StepFuture<'a> = Pin<Box<dyn Future<Output = LavaResult<()>> + Send + 'a>>;
/// A step's behaviour: called with the run context each time the action runs.
pub type StepFn = Box<dyn for<'a> Fn(&'a mut RunContext) -> StepFuture<'a> + Send + Sync>;

/// Boxes a closure as a [`StepFn`] (the closure returns `Box::pin(async move { … })`).
pub fn step<F>(f: F) -> StepFn
where
    F: for<'a> Fn(&'a mut RunContext) -> StepFuture<'a> + Send + Sync + 'static,
{
    Box::new(f)
}

/// An action named as the action whose behaviour it runs (run-time functions read their
/// action's name, parameters and deadline), running a [`StepFn`].
pub struct StepAction {
    name: String,
    run: StepFn,
}

impl StepAction {
    /// The action `name` running `run`.
    pub fn new(name: impl Into<String>, run: StepFn) -> StepAction {
        StepAction {
            name: name.into(),
            run,
        }
    }
}

#[async_trait]
impl Action for StepAction {
    fn name(&self) -> &str {
        &self.name
    }
    fn class_name(&self) -> &str {
        "Step"
    }
    fn description(&self) -> &str {
        "test step"
    }
    fn summary(&self) -> &str {
        "test step"
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        (self.run)(ctx).await
    }
}

/// Where and how an action under test runs: its name, section, level, timeouts, the kind
/// of error its timeout raises and its block parameters. One attempt, no retries.
#[derive(Debug, Clone)]
pub struct ActionSpec {
    name: String,
    section: String,
    level: String,
    timeout: u64,
    connection_timeout: u64,
    timeout_kind: ErrorKind,
    parameters: Mapping,
}

impl ActionSpec {
    /// Action `name` at `level` of `section`: 60 s, connections 10 s, an
    /// InfrastructureError on timeout, no parameters.
    pub fn new(name: &str, section: &str, level: &str) -> ActionSpec {
        ActionSpec {
            name: name.to_string(),
            section: section.to_string(),
            level: level.to_string(),
            timeout: 60,
            connection_timeout: 10,
            timeout_kind: ErrorKind::Infrastructure,
            parameters: Mapping::new(),
        }
    }

    /// The action's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The action's timeout, in seconds (also its deadline from the start of the run).
    pub fn timeout(mut self, seconds: u64) -> Self {
        self.timeout = seconds;
        self
    }

    /// The connection timeout, in seconds.
    pub fn connection_timeout(mut self, seconds: u64) -> Self {
        self.connection_timeout = seconds;
        self
    }

    /// The kind of error the action's timeout raises.
    pub fn timeout_kind(mut self, kind: ErrorKind) -> Self {
        self.timeout_kind = kind;
        self
    }

    /// The block parameters the action sees.
    pub fn parameters(mut self, parameters: Mapping) -> Self {
        self.parameters = parameters;
        self
    }

    /// Run `action` as this action through the executor's `run_node`, with a deadline of
    /// the timeout from now.
    pub async fn run(&self, ctx: &mut RunContext, action: Box<dyn Action>) -> LavaResult<()> {
        let meta = ActionMeta {
            name: self.name.clone(),
            class: "Step".into(),
            description: String::new(),
            summary: String::new(),
            section: self.section.clone(),
            level: self.level.clone(),
            timeout: self.timeout,
            connection_timeout: self.connection_timeout,
            max_retries: 1,
            retry_interval: 0,
            repeat: false,
            timeout_kind: self.timeout_kind,
            parameters: Arc::new(self.parameters.clone()),
            url: None,
        };
        let mut node = ActionNode::new(meta, action, Pipeline::default());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(self.timeout);
        run_node(&mut node, ctx, deadline, false).await
    }
}

/// A run context for job `job_id` (`parameters` as the job's definition, `timeout`
/// seconds) on `device`, its log captured in memory ([`JobLogger::captured`]).
pub fn capturing_context(
    job_id: &str,
    parameters: Mapping,
    device: Device,
    timeout: u64,
) -> RunContext {
    let job = Job::new(job_id, parameters, device, timeout);
    RunContext::new(Arc::new(job), JobLogger::capturing())
}

/// The `msg` maps of the captured `results` records, in order.
pub fn captured_results(logger: &JobLogger) -> Vec<Mapping> {
    logger
        .captured()
        .iter()
        .filter_map(|line| serde_yaml::from_str::<Mapping>(line).ok())
        .filter(|record| record.get("lvl").and_then(|l| l.as_str()) == Some("results"))
        .filter_map(|record| record.get("msg")?.as_mapping().cloned())
        .collect()
}

/// The captured `results` record of `case` in `definition`, if logged.
pub fn captured_result(logger: &JobLogger, definition: &str, case: &str) -> Option<Mapping> {
    captured_results(logger).into_iter().find(|result| {
        result.get("definition").and_then(|d| d.as_str()) == Some(definition)
            && result.get("case").and_then(|c| c.as_str()) == Some(case)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> RunContext {
        let device = Device::from_yaml("constants: {failure_retry: 1}", None).unwrap();
        capturing_context(&unique_job_id(), Mapping::new(), device, 600)
    }

    #[tokio::test]
    async fn a_step_runs_as_the_named_action_and_its_errors_come_back() {
        let mut ctx = context();
        let spec = ActionSpec::new("http-download", "deploy", "1.1");
        let ok = StepAction::new(
            spec.name(),
            step(|ctx| {
                Box::pin(async move {
                    assert_eq!(ctx.meta().name, "http-download");
                    let mut result = Mapping::new();
                    result.insert("definition".into(), "0_t".into());
                    result.insert("case".into(), "c".into());
                    result.insert("result".into(), "pass".into());
                    ctx.logger.results(result);
                    Ok(())
                })
            }),
        );
        spec.run(&mut ctx, Box::new(ok)).await.unwrap();
        let found = captured_result(&ctx.logger, "0_t", "c").unwrap();
        assert_eq!(found["result"].as_str(), Some("pass"));

        let failing = StepAction::new(
            spec.name(),
            step(|_| Box::pin(async { Err(lava_pipeline::LavaError::job("bad")) })),
        );
        let error = spec.run(&mut ctx, Box::new(failing)).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Job);
    }

    #[tokio::test]
    async fn the_timeout_ends_a_step_with_its_kind() {
        let mut ctx = context();
        let spec = ActionSpec::new("boot-qemu", "boot", "2.1")
            .timeout(1)
            .timeout_kind(ErrorKind::Job);
        let hang = StepAction::new(
            spec.name(),
            step(|_| {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    Ok(())
                })
            }),
        );
        let error = spec.run(&mut ctx, Box::new(hang)).await.unwrap_err();
        assert_eq!(error.kind, ErrorKind::Job, "{error:?}");
    }
}
