//! The `recovery` boot method: power the device off, run the device's commands switching
//! it into (`commands: recovery`) or out of (`commands: exit`) recovery mode, power on.

use crate::common::power::{PowerOff, PowerOn};
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, LavaResult, PipelineBuilder, Runnable, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("recovery", |_| Box::new(RecoveryBootAction::default()))
            .method_with("recovery", "boot \"method\" was not \"recovery\""),
    );
}

/// Which switch a recovery boot performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoveryMode {
    /// `recovery_mode`: enter recovery.
    Enter,
    /// `recovery_exit`: leave recovery.
    Exit,
}

impl RecoveryMode {
    /// The key of the device's `recovery.commands`.
    pub fn command_key(self) -> &'static str {
        match self {
            RecoveryMode::Enter => "recovery_mode",
            RecoveryMode::Exit => "recovery_exit",
        }
    }
}

/// `recovery-boot`: power off, switch, power on (so the switch holds until `exit`).
#[derive(Debug, Default)]
pub struct RecoveryBootAction {
    /// `None` when the block's `commands` is neither `recovery` nor `exit`.
    mode: Option<RecoveryMode>,
}

#[async_trait]
impl Action for RecoveryBootAction {
    action_identity!(
        "recovery-boot",
        "RecoveryBootAction",
        "handle entering and leaving recovery mode",
        "boot into or out of recovery mode"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.mode = match pipeline.param("commands").and_then(Value::as_str) {
            Some("recovery") => Some(RecoveryMode::Enter),
            Some("exit") => Some(RecoveryMode::Exit),
            _ => None,
        };
        if let Some(mode) = self.mode {
            pipeline.add(PowerOff::new())?;
            pipeline.add(SwitchRecoveryCommand { mode })?;
            pipeline.add(PowerOn::new())?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if self.mode.is_none() {
            ctx.error("Invalid recovery command");
        }
        Ok(())
    }
}

/// `switch-recovery`: run the device's recovery switching commands.
#[derive(Debug)]
pub struct SwitchRecoveryCommand {
    mode: RecoveryMode,
}

impl SwitchRecoveryCommand {
    /// Validation: the device's `recovery` deploy commands for `mode`; one message per problem into `errors`.
    pub fn check(device: &Device, mode: RecoveryMode, errors: &mut Vec<String>) {
        let recovery = device.deploy_method("recovery");
        let commands = recovery.and_then(|r| r.get("commands"));
        if commands.is_none() {
            errors.push("Missing commands to enter recovery mode".into());
        }
        let command = commands
            .and_then(|c| c.get(mode.command_key()))
            .filter(|c| lava_pipeline::value::truthy(Some(c)));
        if command.is_none() {
            errors.push(format!(
                "Unable to find {} recovery command",
                mode.command_key()
            ));
        }
    }

    /// The commands to run, as configured (a string or a list).
    pub fn commands(&self, device: &Device) -> Vec<String> {
        crate::common::command_list(
            device
                .deploy_method("recovery")
                .and_then(|m| m.get("commands"))
                .and_then(|c| c.get(self.mode.command_key())),
        )
    }
}

#[async_trait]
impl Action for SwitchRecoveryCommand {
    action_identity!(
        "switch-recovery",
        "SwitchRecoveryCommand",
        "call commands to switch device into and out of recovery",
        "execute recovery mode commands"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        Self::check(&ctx.job.device, self.mode, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovery_commands_checked_per_mode() {
        let device = Device::from_yaml(
            "actions:\n  deploy:\n    methods:\n      recovery:\n        commands: {recovery_mode: [a, b], recovery_exit: ''}\n",
            None,
        )
        .unwrap();
        let mut errors = Vec::new();
        SwitchRecoveryCommand::check(&device, RecoveryMode::Enter, &mut errors);
        assert!(errors.is_empty());
        SwitchRecoveryCommand::check(&device, RecoveryMode::Exit, &mut errors);
        assert_eq!(errors, ["Unable to find recovery_exit recovery command"]);
        let switch = SwitchRecoveryCommand {
            mode: RecoveryMode::Enter,
        };
        assert_eq!(switch.commands(&device), ["a", "b"]);
    }
}
