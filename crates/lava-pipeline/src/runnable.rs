//! Which actions of a pipeline cannot run in lava-rs yet ([`Action::runnable`]).
//!
//! A lab learns it at submission: [`Pipeline::check_runnable`] turns every such action into
//! one JobError naming the job block, the action and the method, e.g.
//! `actions[1].boot: action 'wait-device-path' (method u-boot) cannot run in lava-rs yet`.
//! `lava-run --validate` reports it and a full run refuses before anything is powered; the
//! executor also refuses such an action should one be run anyway.
//!
//! [`Action::runnable`]: crate::Action::runnable

use crate::action::{ActionMeta, ActionNode, Runnable};
use crate::error::{LavaError, LavaResult};
use crate::pipeline::Pipeline;
use serde_yaml::Value;
use std::fmt;

/// One action that cannot run here, with where it comes from in the job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotRunnable {
    /// Index of the job's `actions:` entry that built it.
    pub block: usize,
    /// The block's section (`deploy`, `boot`, `test`, `command`).
    pub section: String,
    /// The block's `to:` (deploy) or `method:` (boot) value, if it has one.
    pub method: Option<String>,
    /// The action's name.
    pub action: String,
    /// The action's level (`2.3.1`).
    pub level: String,
    /// The missing form of the action, when only one form is missing.
    pub missing: Option<&'static str>,
}

impl fmt::Display for NotRunnable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "actions[{}].{}: action '{}'",
            self.block, self.section, self.action
        )?;
        if let Some(method) = &self.method {
            write!(f, " (method {method})")?;
        }
        if let Some(missing) = self.missing {
            write!(f, " ({missing})")?;
        }
        write!(f, " cannot run in lava-rs yet")
    }
}

impl NotRunnable {
    fn of(node: &ActionNode, missing: Option<&'static str>) -> Option<Self> {
        let meta = &node.meta;
        let root: usize = meta.level.split('.').next()?.parse().ok()?;
        let key = match meta.section.as_str() {
            "deploy" => Some("to"),
            "boot" => Some("method"),
            _ => None,
        };
        Some(NotRunnable {
            block: root.checked_sub(1)?,
            section: meta.section.clone(),
            method: key
                .and_then(|k| meta.param(k))
                .and_then(Value::as_str)
                .map(str::to_string),
            action: meta.name.clone(),
            level: meta.level.clone(),
            missing,
        })
    }
}

/// The error an action that cannot run gives when the executor reaches it anyway.
pub fn not_runnable_error(meta: &ActionMeta, missing: Option<&'static str>) -> LavaError {
    let what = match missing {
        Some(missing) => format!("{} ({missing})", meta.name),
        None => meta.name.clone(),
    };
    LavaError::infrastructure(format!(
        "{what}: running this action is not supported by lava-rs yet"
    ))
}

impl Pipeline {
    /// Every action, in tree order, whose run-time behaviour lava-rs lacks.
    pub fn not_runnable(&self) -> Vec<NotRunnable> {
        let mut found = Vec::new();
        collect(self, &mut found);
        found
    }

    /// A JobError listing every action that cannot run here, one line each.
    pub fn check_runnable(&self) -> LavaResult<()> {
        let found = self.not_runnable();
        if found.is_empty() {
            return Ok(());
        }
        let lines: Vec<String> = found.iter().map(ToString::to_string).collect();
        Err(LavaError::job(lines.join("\n")))
    }
}

fn collect(pipeline: &Pipeline, found: &mut Vec<NotRunnable>) {
    for node in &pipeline.actions {
        if let Runnable::NotYet { missing } = node.action.runnable(&node.meta)
            && let Some(entry) = NotRunnable::of(node, missing)
        {
            found.push(entry);
        }
        collect(&node.pipeline, found);
    }
}
