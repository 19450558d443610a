//! Pipelines and how actions are added to them: levels, sections, parameters, timeouts and
//! retries, computed in LAVA's order (`Pipeline.add_action`), then `populate()`.
//!
//! Timeout precedence, later wins: the action's own default, the block `timeout` (when
//! still default), then 1. job `timeouts.action`, 2. device `timeouts.actions.<name>`,
//! 3. block `timeout`, 4. parent retry share (`parent_timeout // parent_max_retries`),
//! 5. job `timeouts.actions.<name>`, 6. block `timeouts.<name>`.

use crate::action::{Action, ActionMeta, ActionNode, Params};
use crate::device::Device;
use crate::error::{LavaError, LavaResult};
use crate::job::Job;
use crate::timeout::{DEFAULT_ACTION_TIMEOUT, parse_override, parse_timeout};
use crate::value::{lookup, truthy};
use serde_yaml::{Mapping, Value};
use std::sync::Arc;

/// An ordered list of actions (the root pipeline or an action's internal one).
#[derive(Debug, Default)]
pub struct Pipeline {
    /// The actions, in run order.
    pub actions: Vec<ActionNode>,
}

/// What children inherit from the action that owns their pipeline.
#[derive(Debug, Clone)]
struct ParentInfo {
    level: String,
    section: String,
    timeout: u64,
    max_retries: u32,
}

/// Adds actions to a pipeline under construction; handed to [`Action::populate`].
pub struct PipelineBuilder<'j> {
    job: &'j Job,
    parent: Option<ParentInfo>,
    params: Params,
    actions: Vec<ActionNode>,
}

impl<'j> PipelineBuilder<'j> {
    /// A builder for the root pipeline of `job`.
    pub fn root(job: &'j Job) -> Self {
        PipelineBuilder {
            job,
            parent: None,
            params: Arc::new(Mapping::new()),
            actions: Vec::new(),
        }
    }

    /// The job being built.
    pub fn job(&self) -> &'j Job {
        self.job
    }

    /// The device.
    pub fn device(&self) -> &'j Device {
        &self.job.device
    }

    /// The block parameters children receive by default.
    pub fn parameters(&self) -> &Params {
        &self.params
    }

    /// A block parameter.
    pub fn param(&self, key: &str) -> Option<&Value> {
        self.params.get(key)
    }

    /// The block parameters children receive, with typed getters whose errors name
    /// `actions[N].<section>.<key>`.
    pub fn params(&self) -> crate::params::BlockParams {
        let path = match &self.parent {
            Some(parent) => crate::params::block_path(&parent.level, &parent.section),
            None => "parameters".to_string(),
        };
        crate::params::BlockParams::new(self.params.clone(), path)
    }

    /// The block's namespace (`common` unless set).
    pub fn namespace(&self) -> &str {
        crate::params::namespace(&self.params)
    }

    /// The owning action's level (`None` at the root).
    pub fn parent_level(&self) -> Option<&str> {
        self.parent.as_ref().map(|p| p.level.as_str())
    }

    /// The owning action's section.
    pub fn section(&self) -> &str {
        self.parent
            .as_ref()
            .map(|p| p.section.as_str())
            .unwrap_or("")
    }

    /// Number of actions added so far.
    pub fn len(&self) -> usize {
        self.actions.len()
    }

    /// Whether nothing was added yet.
    pub fn is_empty(&self) -> bool {
        self.actions.is_empty()
    }

    /// Add a child with the block parameters.
    pub fn add(&mut self, action: impl Action) -> LavaResult<()> {
        self.add_boxed(Box::new(action), None, None)
    }

    /// Add a child with its own parameters map.
    pub fn add_with_params(&mut self, action: impl Action, params: Mapping) -> LavaResult<()> {
        self.add_boxed(Box::new(action), Some(Arc::new(params)), None)
    }

    /// Add an action: level, section, parameters, retries and timeouts as LAVA, then populate.
    /// `section` is used for root actions (the strategy's section).
    pub fn add_boxed(
        &mut self,
        action: Box<dyn Action>,
        params: Option<Params>,
        section: Option<&str>,
    ) -> LavaResult<()> {
        let params = params.unwrap_or_else(|| self.params.clone());
        self.add_inner(action, params.clone(), section, params)
    }

    /// Add a `command` block's action: its block map is its parameters, but the timeout
    /// overrides see the root pipeline's empty map (LAVA's `CommandAction` quirk: the block
    /// `timeout` survives only when no job or device default overrides it).
    pub fn add_command(&mut self, action: Box<dyn Action>, block: Params) -> LavaResult<()> {
        let empty = self.params.clone();
        self.add_inner(action, block, Some("command"), empty)
    }

    fn add_inner(
        &mut self,
        mut action: Box<dyn Action>,
        params: Params,
        section: Option<&str>,
        override_params: Params,
    ) -> LavaResult<()> {
        let index = self.actions.len() + 1;
        let level = match &self.parent {
            Some(p) => format!("{}.{}", p.level, index),
            None => index.to_string(),
        };
        let section = match &self.parent {
            Some(p) => p.section.clone(),
            None => section.unwrap_or("").to_string(),
        };
        let name = action.name().to_string();
        let job = self.job;

        // Parameters are set first (LAVA's __set_parameters__).
        let mut timeout = action.default_timeout();
        let mut connection_timeout = DEFAULT_ACTION_TIMEOUT;
        if let Some(block) = params.get("timeout")
            && timeout == DEFAULT_ACTION_TIMEOUT
        {
            timeout = parse_timeout(block)?;
        }
        if let Some(block) = params.get("connection_timeout") {
            connection_timeout = parse_timeout(block)?;
        }
        let mut max_retries: u32 = 1;
        let mut retry_interval: u64 = 1;
        let repeat = params.contains_key("repeat");
        if action.is_retry() {
            if params.contains_key("failure_retry") && repeat {
                return Err(LavaError::job(
                    "Unable to use repeat and failure_retry, use a repeat block",
                ));
            }
            if let Some(v) = params.get("failure_retry") {
                max_retries = as_count(v, "failure_retry")?;
            } else if job.device.has_constants() {
                let device_max = job.get_constant("failure_retry", None, &params)?;
                if truthy(Some(&device_max)) {
                    max_retries = max_retries.max(as_count(&device_max, "failure_retry")?);
                    let boot_retry = job.get_constant("boot_retry", None, &params)?;
                    if section == "boot" && truthy(Some(&boot_retry)) {
                        max_retries = as_count(&boot_retry, "boot_retry")?;
                    }
                }
            }
            if let Some(v) = params.get("failure_retry_interval") {
                retry_interval = u64::from(as_count(v, "failure_retry_interval")?);
            }
            if let Some(v) = params.get("repeat") {
                max_retries = as_count(v, "repeat")?;
            }
        }

        // Then the timeout overrides, lowest priority first.
        let job_timeouts = job.parameters.get("timeouts");
        let device_timeouts = job.device.get("timeouts");
        let override_with = |current: u64, value: Option<&Value>| -> LavaResult<u64> {
            match value {
                Some(v) => parse_override(v, "timeout"),
                None => Ok(current),
            }
        };
        timeout = override_with(timeout, job_timeouts.and_then(|t| lookup(t, &["action"])))?;
        timeout = override_with(
            timeout,
            device_timeouts.and_then(|t| lookup(t, &["actions", &name])),
        )?;
        timeout = override_with(timeout, override_params.get("timeout"))?;
        if let Some(parent) = &self.parent
            && parent.max_retries > 1
        {
            timeout = parent.timeout / u64::from(parent.max_retries);
        }
        timeout = override_with(
            timeout,
            job_timeouts.and_then(|t| lookup(t, &["actions", &name])),
        )?;
        timeout = override_with(
            timeout,
            override_params
                .get("timeouts")
                .and_then(|t| lookup(t, &[&name])),
        )?;
        if timeout > job.timeout {
            job.warn(format!("Action timeout for {name} exceeds Job timeout"));
        }

        for value in [
            job_timeouts.and_then(|t| lookup(t, &["connection"])),
            device_timeouts.and_then(|t| lookup(t, &["connections", &name])),
            job_timeouts.and_then(|t| lookup(t, &["connections", &name])),
        ]
        .into_iter()
        .flatten()
        {
            connection_timeout = parse_override(value, "connection timeout")?;
        }

        let meta = ActionMeta {
            name,
            class: action.class_name().to_string(),
            description: action.description().to_string(),
            summary: action.summary().to_string(),
            section: section.clone(),
            level: level.clone(),
            timeout,
            connection_timeout,
            max_retries,
            retry_interval,
            repeat,
            timeout_kind: action.timeout_kind(),
            parameters: params.clone(),
            url: action.url(),
        };

        let mut children = PipelineBuilder {
            job,
            parent: Some(ParentInfo {
                level,
                section,
                timeout,
                max_retries,
            }),
            params,
            actions: Vec::new(),
        };
        action.populate(&mut children)?;
        let meta = ActionMeta {
            url: action.url(),
            ..meta
        };
        self.actions.push(ActionNode::new(
            meta,
            action,
            Pipeline {
                actions: children.actions,
            },
        ));
        Ok(())
    }

    /// Finish building.
    pub fn finish(self) -> Pipeline {
        Pipeline {
            actions: self.actions,
        }
    }
}

fn as_count(value: &Value, what: &str) -> LavaResult<u32> {
    let n = match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse::<u64>().ok(),
        _ => None,
    };
    n.and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| LavaError::job(format!("Invalid {what}: expected a whole number")))
}

impl Pipeline {
    /// Depth-first iteration over every node.
    pub fn walk(&self) -> Vec<&ActionNode> {
        let mut out = Vec::new();
        for node in &self.actions {
            out.push(node);
            out.extend(node.pipeline.walk());
        }
        out
    }

    /// Find the first node with this name, depth first.
    pub fn find(&self, name: &str) -> Option<&ActionNode> {
        self.walk().into_iter().find(|n| n.meta.name == name)
    }
}
