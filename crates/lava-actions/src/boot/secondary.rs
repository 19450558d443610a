//! The `new_connection` boot family: open a secondary console on named hardware
//! (`secondary-shell-action`), optionally logging in there.

use super::qemu::add_login_steps;
use crate::common::power::ConnectShell;
use lava_pipeline::{
    Action, Device, LavaError, LavaResult, PipelineBuilder, Section, Strategy, StrategyRegistry,
    action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// `secondary-shell-action`: connect to `connection`, then login (retried).
#[derive(Debug, Default)]
pub struct SecondaryShellAction;

#[async_trait]
impl Action for SecondaryShellAction {
    action_identity!(
        "secondary-shell-action",
        "SecondaryShellAction",
        "Connect to a secondary shell on specified hardware",
        "connect to a specified second shell"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let name = pipeline
            .param("connection")
            .and_then(lava_pipeline::value::scalar_string)
            .ok_or_else(|| LavaError::job("Missing 'connection' for the new_connection boot"))?;
        pipeline.add(ConnectShell::new(Some(&name)))?;
        add_login_steps(pipeline, false)
    }
}

/// `method: new_connection`.
pub struct SecondaryShell;

impl Strategy for SecondaryShell {
    fn section(&self) -> Section {
        Section::Boot
    }
    fn name(&self) -> &str {
        "new_connection"
    }
    fn accepts(&self, _device: &Device, params: &Mapping) -> Result<(), String> {
        if params.get("method").and_then(Value::as_str) != Some("new_connection") {
            return Err("new_connection not in method".into());
        }
        Ok(())
    }
    fn action(&self, _params: &Mapping) -> Box<dyn Action> {
        Box::new(SecondaryShellAction)
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(SecondaryShell);
}
