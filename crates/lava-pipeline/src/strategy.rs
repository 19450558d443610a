//! Strategies choose the action that implements a deploy, boot or test block, as LAVA's
//! `Strategy.select`: every candidate's `accepts(device, parameters)` answers yes or gives
//! a reason; the accepted one with the highest priority wins.

use crate::action::Action;
use crate::device::Device;
use crate::error::{LavaError, LavaResult};
use serde_yaml::{Mapping, Value};
use std::sync::Arc;

/// The job section a strategy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    /// A `deploy` block (strategy chosen by `to:`).
    Deploy,
    /// A `boot` block (strategy chosen by `method:`).
    Boot,
    /// A `test` block.
    Test,
}

impl Section {
    /// The section's key in the job's `actions` list.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Deploy => "deploy",
            Section::Boot => "boot",
            Section::Test => "test",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Section::Deploy => "Base-deploy",
            Section::Boot => "Base-boot",
            Section::Test => "Base-test",
        }
    }
}

/// One way to implement a deploy (`to:`), boot (`method:`) or test block.
pub trait Strategy: Send + Sync {
    /// The section this strategy serves.
    fn section(&self) -> Section;
    /// Name shown in rejection reasons.
    fn name(&self) -> &str;
    /// Higher wins among the accepting strategies.
    fn priority(&self) -> i32 {
        0
    }
    /// `Ok(())` or the reason this strategy does not apply.
    fn accepts(&self, device: &Device, params: &Mapping) -> Result<(), String>;
    /// The top-level action for the block.
    fn action(&self, params: &Mapping) -> Box<dyn Action>;

    /// Deploy: whether this deployment honours `deployment_data`.
    fn uses_deployment_data(&self) -> bool {
        true
    }
    /// Test: whether this test block needs an overlay.
    fn needs_overlay(&self, _params: &Mapping) -> bool {
        false
    }
    /// Test: whether it needs deployment data.
    fn needs_deployment_data(&self, _params: &Mapping) -> bool {
        false
    }
    /// Test: whether it expects a shell on the device.
    fn has_shell(&self, _params: &Mapping) -> bool {
        false
    }
    /// Test: whether it needs character delays.
    fn needs_character_delay(&self, _params: &Mapping) -> bool {
        false
    }
}

/// All known strategies; filled by the strategy crates.
#[derive(Default, Clone)]
pub struct StrategyRegistry {
    strategies: Vec<Arc<dyn Strategy>>,
}

impl StrategyRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Register one strategy.
    pub fn register(&mut self, strategy: impl Strategy + 'static) {
        self.strategies.push(Arc::new(strategy));
    }

    /// Every registered strategy of a section.
    pub fn of(&self, section: Section) -> impl Iterator<Item = &Arc<dyn Strategy>> {
        self.strategies
            .iter()
            .filter(move |s| s.section() == section)
    }

    /// Known values of the selecting key (`to`/`method`) are not tracked here; this lists
    /// names for "did you mean" hints.
    pub fn names(&self, section: Section) -> Vec<String> {
        self.of(section).map(|s| s.name().to_string()).collect()
    }

    /// LAVA's `select`: checks the block and device, asks every candidate.
    pub fn select(
        &self,
        section: Section,
        device: &Device,
        params: &Mapping,
    ) -> LavaResult<Arc<dyn Strategy>> {
        check_block(section, device, params)?;
        let mut replies: Vec<(String, String)> = Vec::new();
        let mut willing: Vec<&Arc<dyn Strategy>> = Vec::new();
        for candidate in self.of(section) {
            match candidate.accepts(device, params) {
                Ok(()) => willing.push(candidate),
                Err(reason) => {
                    let name = candidate.name().to_string();
                    match replies.iter_mut().find(|(n, _)| *n == name) {
                        Some(entry) => entry.1 = reason,
                        None => replies.push((name, reason)),
                    }
                }
            }
        }
        // Stable: the first registered wins among equal priorities.
        let best = willing.into_iter().rev().max_by_key(|s| s.priority());
        match best {
            Some(s) => Ok(s.clone()),
            None => {
                let reasons: Vec<String> =
                    replies.iter().map(|(n, r)| format!("{n}: {r}")).collect();
                Err(LavaError::job(format!(
                    "None of the {} strategies accepted your deployment parameters, reasons given:\n{}",
                    section.title(),
                    reasons.join("\n")
                )))
            }
        }
    }
}

/// LAVA's `check_subclass`: the block has its selecting key and the device lists methods.
fn check_block(section: Section, device: &Device, params: &Mapping) -> LavaResult<()> {
    let key = match section {
        Section::Deploy => "deploy",
        Section::Boot => "boot",
        Section::Test => return Ok(()),
    };
    if section == Section::Boot && !params.contains_key("method") {
        return Err(LavaError::configuration(
            "method not specified in boot parameters",
        ));
    }
    let actions = device.get("actions").ok_or_else(|| {
        LavaError::configuration(
            "Invalid device configuration, no \"actions\" in device configuration",
        )
    })?;
    if section == Section::Deploy && !params.contains_key("to") {
        return Err(LavaError::configuration(
            "\"to\" not specified in deploy parameters",
        ));
    }
    let block = actions.get(key).ok_or_else(|| {
        LavaError::configuration(format!(
            "\"{key}\" is not in the device configuration actions"
        ))
    })?;
    if block.get("methods").is_none() {
        return Err(LavaError::configuration(format!(
            "Device misconfiguration, no \"methods\" in device configuration {key} actions"
        )));
    }
    Ok(())
}

/// The block's `to` (deploy) value.
pub fn deploy_to(params: &Mapping) -> Option<&str> {
    params.get("to").and_then(Value::as_str)
}

/// The block's `method` (boot) value.
pub fn boot_method(params: &Mapping) -> Option<&str> {
    params.get("method").and_then(Value::as_str)
}
