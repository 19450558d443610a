//! The `ipxe` boot method: interrupt iPXE and send the commands (or chain a generated
//! boot script).

use crate::common::bootloader::{BootloaderCommandOverlay, BootloaderRetry};
use crate::common::power::ConnectDevice;
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, action_identity, async_trait,
};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("ipxe", |_| Box::new(BootloaderAction))
            .method("ipxe")
            .device_method("ipxe"),
    );
}

/// `bootloader-action`: prepare the commands and connect, then the iPXE interaction.
#[derive(Debug, Default)]
pub struct BootloaderAction;

#[async_trait]
impl Action for BootloaderAction {
    action_identity!(
        "bootloader-action",
        "BootloaderAction",
        "interactive bootloader action",
        "pass boot commands"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(BootloaderCommandOverlay::new())?;
        pipeline.add(ConnectDevice::new())?;
        pipeline.add(BootloaderRetry::new("ipxe"))
    }
}
