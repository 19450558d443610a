//! The `barebox` boot method: like U-Boot, with the barebox prompt and commands.

use crate::common::bootloader::{
    BootloaderCommandOverlay, BootloaderCommandsAction, BootloaderInterruptAction, add_login_tail,
};
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, ValidateContext,
    action_identity, async_trait,
};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("barebox", |_| Box::new(BareboxAction))
            .method("barebox")
            .param("commands", "commands not specified in boot parameters")
            .device_method("barebox"),
    );
}

/// `barebox-action`: prepare the commands and connect, then the barebox interaction.
#[derive(Debug, Default)]
pub struct BareboxAction;

#[async_trait]
impl Action for BareboxAction {
    action_identity!(
        "barebox-action",
        "BareboxAction",
        "interactive barebox action",
        "pass barebox commands"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(BootloaderCommandOverlay::new())?;
        pipeline.add(ConnectDevice::new())?;
        pipeline.add(BareboxRetry)
    }
}

/// `barebox-retry`: reset, interrupt, command, log in.
#[derive(Debug, Default)]
pub struct BareboxRetry;

#[async_trait]
impl Action for BareboxRetry {
    action_identity!(
        "barebox-retry",
        "BareboxRetry",
        "interactive barebox retry action",
        "barebox commands with retry"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(ResetDevice::new())?;
        pipeline.add(BootloaderInterruptAction::new())?;
        pipeline.add(BootloaderCommandsAction::new())?;
        add_login_tail(pipeline)
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = ctx.job.device.require_boot_method_params("barebox")?;
        if !params.contains_key("bootloader_prompt") {
            ctx.error("Missing bootloader prompt for device");
        }
        Ok(())
    }
}
