//! The [`Action`] trait: one step of a job, possibly with an internal pipeline.
//!
//! An action is described by its identity (`name`, `description`, `summary`, class), built
//! by [`Action::populate`] (which may add children through a [`PipelineBuilder`]), checked by
//! [`Action::validate`] and executed by [`Action::run`]. Levels, timeouts, retries and
//! parameters are computed by the pipeline when the action is added, exactly as LAVA's
//! `Pipeline.add_action` does, and kept in the node's [`ActionMeta`].

use crate::error::{ErrorKind, LavaResult};
use crate::pipeline::{Pipeline, PipelineBuilder};
use crate::run::RunContext;
use crate::validate::ValidateContext;
use serde_yaml::{Mapping, Value};
use std::sync::Arc;

/// Block parameters, shared by a block's action and every nested action.
pub type Params = Arc<Mapping>;

/// One step of a job.
#[async_trait::async_trait]
pub trait Action: Send + Sync + 'static {
    /// The action name: an interface (timeouts, results and protocol calls refer to it).
    fn name(&self) -> &str;
    /// One sentence on what it does.
    fn description(&self) -> &str;
    /// A short summary.
    fn summary(&self) -> &str;
    /// LAVA's class name, shown in `description.yaml` for diffability.
    fn class_name(&self) -> &str;

    /// Timeout before any override (LAVA's per-class default; 30 s for most).
    fn default_timeout(&self) -> u64 {
        crate::timeout::DEFAULT_ACTION_TIMEOUT
    }
    /// Whether this is a RetryAction (honours `failure_retry`, `repeat` and the
    /// `failure_retry` / `boot_retry` constants).
    fn is_retry(&self) -> bool {
        false
    }
    /// The error kind raised when the action's deadline passes.
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Job
    }
    /// The resource URL, for download handlers (shown as `url` in the description).
    fn url(&self) -> Option<String> {
        None
    }

    /// Build the internal pipeline (children receive the block parameters by default).
    fn populate(&mut self, _pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        Ok(())
    }

    /// Check parameters; a returned JobError is recorded as `"<level> <name>: <msg>"`,
    /// other kinds abort validation. Errors may also be pushed with `ctx.error(...)`.
    fn validate(&self, _ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        Ok(())
    }

    /// Whether this action's [`run`](Action::run) exists in lava-rs for these block
    /// parameters. Actions whose run-time behaviour is not written yet declare
    /// [`Runnable::NotYet`] instead of writing a `run()`: `lava-run --validate` reports them
    /// as job errors and a full run refuses before anything is powered.
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::Yes
    }

    /// Do the work. The default runs the internal pipeline.
    async fn run(&mut self, ctx: &mut RunContext, children: &mut Pipeline) -> LavaResult<()> {
        children.run_actions(ctx).await
    }

    /// Undo or tidy after the job, success or failure.
    async fn cleanup(&mut self, _ctx: &mut RunContext) -> LavaResult<()> {
        Ok(())
    }
}

/// Whether an action can run in lava-rs (see [`Action::runnable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Runnable {
    /// Its run-time behaviour exists.
    Yes,
    /// Its run-time behaviour is not written yet; `missing` names the part that is absent
    /// when only one form of the action is missing (`"guest disk image"`).
    NotYet {
        /// The missing part, when the action runs in other forms.
        missing: Option<&'static str>,
    },
}

impl Runnable {
    /// Not runnable at all.
    pub const NOT_YET: Runnable = Runnable::NotYet { missing: None };

    /// Whether the action can run.
    pub fn is_runnable(&self) -> bool {
        matches!(self, Runnable::Yes)
    }
}

/// What the pipeline computed for an action when it was added.
#[derive(Debug, Clone)]
pub struct ActionMeta {
    /// LAVA's action name (`name` in `description.yaml`, e.g. `deploy-overlay`).
    pub name: String,
    /// The action's class name as LAVA reports it (e.g. `DeployOverlayAction`).
    pub class: String,
    /// One-line description (LAVA's `description`).
    pub description: String,
    /// Short summary (LAVA's `summary`).
    pub summary: String,
    /// The job section the action came from (`deploy`, `boot`, `test`, ...).
    pub section: String,
    /// `"1"`, `"2.1"`, `"3.1.10"`.
    pub level: String,
    /// Configured duration in seconds.
    pub timeout: u64,
    /// Per-read connection timeout in seconds.
    pub connection_timeout: u64,
    /// How many attempts a retry action makes (LAVA's `failure_retry`, `max_retries` in the description).
    pub max_retries: u32,
    /// Seconds between retry attempts (`failure_retry_interval`).
    pub retry_interval: u64,
    /// `repeat` mode: run every attempt whatever the result.
    pub repeat: bool,
    /// The error kind raised when the deadline passes (`JobError`, `InfrastructureError`, ...).
    pub timeout_kind: ErrorKind,
    /// The job block this action was built from (`timeout`, `namespace`, strategy keys).
    pub parameters: Params,
    /// The resource URL for download actions (`url` in `description.yaml`).
    pub url: Option<String>,
}

impl ActionMeta {
    /// The block namespace (`common` unless set).
    pub fn namespace(&self) -> &str {
        crate::params::namespace(&self.parameters)
    }

    /// Whether the block's `timeout.skip` is true.
    pub fn can_skip_timeout(&self) -> bool {
        crate::value::truthy(crate::value::lookup(
            &Value::Mapping((*self.parameters).clone()),
            &["timeout", "skip"],
        ))
    }

    /// A parameter of the block.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.parameters.get(key)
    }

    /// The block parameters with typed getters; errors name `actions[N].<section>.<key>`.
    pub fn params(&self) -> crate::params::BlockParams {
        crate::params::BlockParams::new(
            self.parameters.clone(),
            crate::params::block_path(&self.level, &self.section),
        )
    }
}

/// An action in a pipeline: its computed metadata, its behaviour and its children.
pub struct ActionNode {
    /// Name, level, timeouts and parameters computed when the action was added.
    pub meta: ActionMeta,
    /// The action's behaviour: validate, run, cleanup.
    pub action: Box<dyn Action>,
    /// The action's internal pipeline (its children, levels `N.1`, `N.2`, ...).
    pub pipeline: Pipeline,
    /// Errors recorded by validation or runs.
    pub errors: Vec<String>,
    /// The `info` lines of its last validation ([`crate::ValidateContext::info`]).
    pub notes: Vec<String>,
    /// The action's results map (the `extra` of its `lava` result record).
    pub results: Mapping,
    /// Whether run() was entered (finalize runs once).
    pub started: bool,
}

impl ActionNode {
    /// A node that has not been validated or run yet.
    pub fn new(meta: ActionMeta, action: Box<dyn Action>, pipeline: Pipeline) -> Self {
        ActionNode {
            meta,
            action,
            pipeline,
            errors: Vec::new(),
            notes: Vec::new(),
            results: Mapping::new(),
            started: false,
        }
    }

    /// Errors of this node and all its descendants, in tree order.
    pub fn all_errors(&self) -> Vec<String> {
        self.in_tree_order(|node| &node.errors)
    }

    /// Validation `info` lines of this node and all its descendants, in tree order.
    pub fn all_notes(&self) -> Vec<String> {
        self.in_tree_order(|node| &node.notes)
    }

    /// The lines `pick` gives of this node, then of each child's subtree in turn.
    fn in_tree_order(&self, pick: fn(&ActionNode) -> &Vec<String>) -> Vec<String> {
        let mut out = pick(self).clone();
        for child in &self.pipeline.actions {
            out.extend(child.in_tree_order(pick));
        }
        out
    }
}

impl std::fmt::Debug for ActionNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionNode")
            .field("name", &self.meta.name)
            .field("level", &self.meta.level)
            .field("children", &self.pipeline.actions.len())
            .finish()
    }
}

/// Implement the identity methods of [`Action`] from constants:
/// `action_identity!("deployimages", "DeployImagesAction", "deploy images", "deploy images");`
#[macro_export]
macro_rules! action_identity {
    ($name:expr, $class:expr, $description:expr, $summary:expr) => {
        fn name(&self) -> &str {
            $name
        }
        fn class_name(&self) -> &str {
            $class
        }
        fn description(&self) -> &str {
            $description
        }
        fn summary(&self) -> &str {
            $summary
        }
    };
}
