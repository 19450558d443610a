//! The `ipxe` boot method: interrupt iPXE and send the commands (or chain a generated
//! boot script).

use crate::common::bootloader::{BootloaderCommandOverlay, BootloaderRetry};
use crate::common::power::ConnectDevice;
use lava_pipeline::{
    Action, Device, LavaResult, PipelineBuilder, Section, Strategy, StrategyRegistry,
    action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(Ipxe);
}

/// Boot with `method: ipxe`.
pub struct Ipxe;

impl Strategy for Ipxe {
    fn section(&self) -> Section {
        Section::Boot
    }
    fn name(&self) -> &str {
        "ipxe"
    }
    fn accepts(&self, device: &Device, params: &Mapping) -> Result<(), String> {
        if params.get("method").and_then(Value::as_str) != Some("ipxe") {
            return Err("\"method\" was not \"ipxe\"".into());
        }
        if device.has_boot_method("ipxe") {
            Ok(())
        } else {
            Err("\"ipxe\" was not in the device configuration boot methods".into())
        }
    }
    fn action(&self, _params: &Mapping) -> Box<dyn Action> {
        Box::new(BootloaderAction)
    }
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
