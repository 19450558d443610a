//! The `new_connection` boot family: open a secondary console on named hardware
//! (`secondary-shell-action`), optionally logging in there.

use super::qemu::add_login_steps;
use crate::common::power::ConnectShell;
use lava_pipeline::{
    Action, Declared, LavaError, LavaResult, PipelineBuilder, StrategyRegistry, action_identity,
    async_trait,
};

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

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("new_connection", |_| Box::new(SecondaryShellAction))
            .method_with("new_connection", "new_connection not in method"),
    );
}
