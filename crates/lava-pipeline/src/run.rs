//! The executor: walks the tree in order, gives each action a deadline
//! (`min(now + timeout, parent deadline)`), logs `start:`/`end:` lines, applies retries,
//! turns failures into LAVA's error handling and emits `lava` result records.

use crate::action::{ActionMeta, ActionNode};
use crate::context::JobData;
use crate::error::{ErrorKind, LavaError, LavaResult};
use crate::job::Job;
use crate::log::JobLogger;
use crate::pipeline::Pipeline;
use crate::protocol::{Protocols, call_protocols};
use crate::timeout::{deadline_after, deadline_in, seconds_to_str};
use serde_yaml::{Mapping, Value};
use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A live connection to a device (console, SSH...), owned by the job context.
#[async_trait::async_trait]
pub trait Connection: Send + Any {
    /// Downcast support for actions that know the concrete type.
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// Read whatever output is pending for up to `budget`, as complete lines.
    async fn drain(&mut self, _budget: Duration) -> Vec<String> {
        Vec::new()
    }
    /// Opens the feedback window early (finalize's `power-off`, while the power-off
    /// commands run): output read until `until` (or end of file) is kept for the next
    /// [`Connection::drain`], which then listens only for what is left of the window and
    /// returns everything read in it. The default reads nothing.
    async fn listen_ahead(&mut self, _until: Instant) {}
    /// Close the connection and end any process behind it.
    async fn finalise(&mut self) {}
    /// Powers the device off when the process behind the connection *is* the device
    /// (a QEMU guest): asks it to end, leaving its last output to [`Connection::drain`].
    /// Returns a description of what was ended, or `None` when the device is powered
    /// some other way (the default).
    fn power_off_device(&mut self) -> Option<String> {
        None
    }
}

/// The state of the action being run.
#[derive(Debug, Clone)]
pub struct CurrentAction {
    /// The running action's metadata.
    pub meta: ActionMeta,
    /// When the running action's own timeout expires.
    pub deadline: Instant,
    /// Extra results recorded by the action (LAVA's `extra` of its result).
    pub results: Mapping,
    /// Errors the action recorded while running without raising (LAVA's `self.errors`
    /// set in `run()`): its result is `fail`, the job goes on.
    pub errors: Vec<String>,
}

/// Everything an action can reach while running.
pub struct RunContext {
    /// The job being run.
    pub job: Arc<Job>,
    /// Where the job's log records go.
    pub logger: JobLogger,
    /// Data actions write and read at run time (LAVA's `namespace_data`), by namespace.
    pub data: JobData,
    /// Live connections by namespace.
    pub connections: BTreeMap<String, Box<dyn Connection>>,
    /// Cancelled on SIGTERM and friends.
    pub cancel: CancellationToken,
    /// Cancelled by a second such signal (LAVA's "canceled again"): finalize stops too.
    pub cancel_again: CancellationToken,
    /// Whether the job has started running (finalize runs once, only then).
    pub started: bool,
    /// The job's protocols (set up before the first action, finalised by `finalize`).
    pub protocols: Protocols,
    /// Per-job directories outside the scratch directory (LAVA's `base_overrides`: the
    /// job's directory under the TFTP root), removed after finalize with the scratch
    /// directory. Added with [`RunContext::add_override_dir`].
    override_dirs: Vec<std::path::PathBuf>,
    stack: Vec<CurrentAction>,
    job_deadline: Instant,
}

impl RunContext {
    /// A context for running `job`, logging to `logger`; the job deadline starts now.
    pub fn new(job: Arc<Job>, logger: JobLogger) -> Self {
        let job_deadline = deadline_in(Duration::from_secs(job.timeout));
        RunContext {
            job,
            logger,
            data: JobData::default(),
            connections: BTreeMap::new(),
            cancel: CancellationToken::new(),
            cancel_again: CancellationToken::new(),
            started: false,
            protocols: Protocols::new(),
            override_dirs: Vec::new(),
            stack: Vec::new(),
            job_deadline,
        }
    }

    /// Registers a per-job directory outside the scratch directory (LAVA's
    /// `Job.mkdtemp(override=...)` base), removed by the job's cleanup after finalize.
    pub fn add_override_dir(&mut self, dir: impl Into<std::path::PathBuf>) {
        let dir = dir.into();
        if !self.override_dirs.contains(&dir) {
            self.override_dirs.push(dir);
        }
    }

    /// The per-job directories registered with [`RunContext::add_override_dir`].
    pub fn override_dirs(&self) -> &[std::path::PathBuf] {
        &self.override_dirs
    }

    /// Records an error of the running action without raising (LAVA's `self.errors = ...`
    /// in `run()`): the action's result is `fail`, the job goes on.
    pub fn add_run_error(&mut self, message: impl Into<String>) {
        if let Some(current) = self.stack.last_mut() {
            current.errors.push(message.into());
        }
    }

    /// Restart the job deadline from now (when the run begins).
    pub fn start_job_timer(&mut self) {
        self.job_deadline = deadline_in(Duration::from_secs(self.job.timeout));
    }

    /// The job deadline.
    pub fn job_deadline(&self) -> Instant {
        self.job_deadline
    }

    /// Set a new job deadline (cleanup budgets).
    pub fn set_job_deadline(&mut self, deadline: Instant) {
        self.job_deadline = deadline;
    }

    /// The action being run. Panics outside an action (a bug).
    pub fn current(&self) -> &CurrentAction {
        self.stack
            .last()
            .expect("RunContext::current outside an action")
    }

    /// The running action's metadata.
    pub fn meta(&self) -> &ActionMeta {
        &self.current().meta
    }

    /// The running action's namespace.
    pub fn namespace(&self) -> String {
        self.stack
            .last()
            .map(|c| c.meta.namespace().to_string())
            .unwrap_or_else(|| "common".into())
    }

    /// The current deadline (the running action's, else the job's).
    pub fn deadline(&self) -> Instant {
        self.stack
            .last()
            .map(|c| c.deadline)
            .unwrap_or(self.job_deadline)
    }

    /// Time left before the current deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline().saturating_duration_since(Instant::now())
    }

    /// Add to the running action's results (its `extra`).
    pub fn set_result(&mut self, key: &str, value: impl Into<Value>) {
        if let Some(cur) = self.stack.last_mut() {
            cur.results.insert(key.into(), value.into());
        }
    }

    /// Store data under the current namespace.
    pub fn set_data(&mut self, action: &str, label: &str, key: &str, value: impl Into<Value>) {
        let ns = self.namespace();
        self.data.set(&ns, action, label, key, value.into());
    }

    /// Read data from the current namespace.
    pub fn get_data(&self, action: &str, label: &str, key: &str) -> Option<&Value> {
        self.data.get(&self.namespace(), action, label, key)
    }

    /// The connection of the current namespace (or of its `connection-namespace`).
    pub fn connection_namespace(&self) -> String {
        self.stack
            .last()
            .and_then(|c| c.meta.param("connection-namespace").and_then(Value::as_str))
            .map(str::to_string)
            .unwrap_or_else(|| self.namespace())
    }

    /// Take the current namespace's connection out (put it back with `set_connection`).
    pub fn take_connection(&mut self) -> Option<Box<dyn Connection>> {
        let ns = self.connection_namespace();
        self.connections.remove(&ns)
    }

    /// Install the current namespace's connection.
    pub fn set_connection(&mut self, connection: Box<dyn Connection>) {
        let ns = self.connection_namespace();
        self.connections.insert(ns, connection);
    }

    /// Borrow the current namespace's connection as its concrete type.
    pub fn connection_as<T: 'static>(&mut self) -> Option<&mut T> {
        let ns = self.connection_namespace();
        self.connections
            .get_mut(&ns)?
            .as_any_mut()
            .downcast_mut::<T>()
    }
}

impl Pipeline {
    /// Run every action in order under the current deadline.
    pub async fn run_actions(&mut self, ctx: &mut RunContext) -> LavaResult<()> {
        let root = ctx.stack.is_empty();
        let parent_deadline = ctx.deadline();
        for node in &mut self.actions {
            if root && node.meta.section == "finalize" {
                // The job runs finalize itself, exactly once, after the blocks.
                continue;
            }
            run_node(node, ctx, parent_deadline, root).await?;
        }
        Ok(())
    }
}

/// Run one node with LAVA's logging, timeout and error handling.
pub async fn run_node(
    node: &mut ActionNode,
    ctx: &mut RunContext,
    parent_deadline: Instant,
    root: bool,
) -> LavaResult<()> {
    let start = Instant::now();
    let deadline =
        deadline_after(start, Duration::from_secs(node.meta.timeout)).min(parent_deadline);
    let namespace = node.meta.namespace().to_string();
    let remaining = deadline.saturating_duration_since(start).as_secs_f64();
    let msg = format!(
        "start: {} {} (timeout {}) [{namespace}]",
        node.meta.level,
        node.meta.name,
        seconds_to_str(remaining)
    );
    if root {
        ctx.logger.info(msg)
    } else {
        ctx.logger.debug(msg)
    }
    node.started = true;
    ctx.stack.push(CurrentAction {
        meta: node.meta.clone(),
        deadline,
        results: Mapping::new(),
        errors: Vec::new(),
    });

    let cancel = ctx.cancel.clone();
    let cancel_again = ctx.cancel_again.clone();
    // A cancel stops the blocks, never finalize (which runs after it); a second cancel
    // stops finalize too.
    let cancellable = root && node.meta.section != "finalize";
    let outcome = if cancellable {
        tokio::select! {
            r = run_with_retries(node, ctx, deadline) => r,
            _ = cancel.cancelled() => Err(LavaError::canceled("The job was canceled")),
        }
    } else if root {
        tokio::select! {
            r = run_with_retries(node, ctx, deadline) => r,
            _ = cancel_again.cancelled() => Err(LavaError::canceled(
                "The job was canceled again (too long to cancel)",
            )),
        }
    } else {
        run_with_retries(node, ctx, deadline).await
    };

    let mut current = ctx.stack.pop().expect("pushed above");
    let mut failed = !current.errors.is_empty();
    let result = match outcome {
        Ok(()) => Ok(()),
        Err(err) if err.kind == ErrorKind::Timeout => {
            ctx.logger.exception(&err.message);
            failed = true;
            current
                .results
                .insert("fail".into(), err.message.clone().into());
            if node.meta.can_skip_timeout() {
                if root {
                    ctx.logger.warning(format!(
                        "skip_timeout is set for {} - continuing to next action block.",
                        node.meta.name
                    ));
                    ctx.connections.remove(&namespace);
                    Ok(())
                } else {
                    Err(err)
                }
            } else {
                Err(LavaError::test(err.message))
            }
        }
        Err(err) => {
            ctx.logger.exception(&err.message);
            failed = true;
            current
                .results
                .insert("fail".into(), err.message.clone().into());
            Err(err)
        }
    };
    let elapsed = start.elapsed().as_secs_f64();
    let msg = format!(
        "end: {} {} (duration {}) [{namespace}]",
        node.meta.level,
        node.meta.name,
        seconds_to_str(elapsed)
    );
    if root {
        ctx.logger.info(msg)
    } else {
        ctx.logger.debug(msg)
    }
    node.results = current.results;
    if !node.results.is_empty() {
        let outcome = if failed || !node.errors.is_empty() {
            "fail"
        } else {
            "pass"
        };
        let mut record = Mapping::new();
        record.insert("definition".into(), "lava".into());
        record.insert("namespace".into(), namespace.into());
        record.insert("case".into(), node.meta.name.clone().into());
        record.insert("level".into(), node.meta.level.clone().into());
        record.insert("duration".into(), format!("{elapsed:.2}").into());
        record.insert("result".into(), outcome.into());
        record.insert("extra".into(), Value::Mapping(node.results.clone()));
        ctx.logger.results(record);
    }
    result
}

async fn run_once(
    node: &mut ActionNode,
    ctx: &mut RunContext,
    deadline: Instant,
) -> LavaResult<()> {
    if let crate::action::Runnable::NotYet { missing } = node.action.runnable(&node.meta) {
        return Err(crate::runnable::not_runnable_error(&node.meta, missing));
    }
    let run = async {
        call_protocols(ctx).await?;
        node.action.run(ctx, &mut node.pipeline).await
    };
    match tokio::time::timeout_at(deadline, run).await {
        Ok(r) => r,
        Err(_) => Err(LavaError::new(
            node.meta.timeout_kind,
            format!(
                "{} timed out after {} seconds",
                node.meta.name, node.meta.timeout
            ),
        )),
    }
}

async fn run_with_retries(
    node: &mut ActionNode,
    ctx: &mut RunContext,
    deadline: Instant,
) -> LavaResult<()> {
    let is_retry = node.action.is_retry();
    if !is_retry {
        return run_once(node, ctx, deadline).await;
    }
    let max = node.meta.max_retries.max(1);
    let mut last_failure: Option<LavaError> = None;
    let mut out_of_time = false;
    let mut attempt = 0;
    while attempt < max {
        attempt += 1;
        match run_once(node, ctx, deadline).await {
            Ok(()) => {
                if !node.meta.repeat {
                    return Ok(());
                }
            }
            Err(err) if err.kind.is_retryable() => {
                ctx.logger.error(format!(
                    "{} failed: {attempt} of {max} attempts. '{}'",
                    node.meta.name, err.message
                ));
                if let Err(e) = node.action.cleanup(ctx).await {
                    ctx.logger.error(format!(
                        "Failed to clean after action '{}': {e}",
                        node.meta.name
                    ));
                }
                if attempt == max {
                    node.errors
                        .push(format!("{attempt} retries failed for {}", node.meta.name));
                    return Err(err);
                }
                let sleep = Duration::from_secs(node.meta.retry_interval);
                last_failure = Some(err);
                if deadline_in(sleep) >= deadline {
                    out_of_time = true;
                    break;
                }
                tokio::time::sleep(sleep).await;
                node.errors.clear();
                if let Some(cur) = ctx.stack.last_mut() {
                    cur.results.clear();
                }
                clear_descendants(&mut node.pipeline);
                let remaining = deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64();
                ctx.logger.warning(format!(
                    "Retrying: {} {} (timeout {})",
                    node.meta.level,
                    node.meta.name,
                    seconds_to_str(remaining)
                ));
            }
            Err(err) => return Err(err),
        }
    }
    if let Some(err) = last_failure {
        let mut text = format!(
            "{attempt} retries out of {max} failed for {}",
            node.meta.name
        );
        if out_of_time {
            text = format!(
                "No time left for remaining {} retries. You should either increase block timeout or decrease named action timeout. {text}",
                max - attempt
            );
        }
        return Err(LavaError::new(err.kind, text));
    }
    Ok(())
}

fn clear_descendants(pipeline: &mut Pipeline) {
    for node in &mut pipeline.actions {
        node.errors.clear();
        node.results.clear();
        clear_descendants(&mut node.pipeline);
    }
}
