//! The `bootloader` boot method: stop in the bootloader named by `bootloader:` and send
//! the job's commands, leaving the device at the bootloader prompt (e.g. for an
//! interactive test).

use crate::common::bootloader::{
    BootloaderCommandOverlay, BootloaderCommandsAction, BootloaderInterruptAction,
};
use crate::common::power::{ConnectDevice, ResetConnection, ResetDevice};
use lava_pipeline::BlockLookups;
use lava_pipeline::value::scalar_string;
use lava_pipeline::{
    Action, Declared, LavaResult, PipelineBuilder, StrategyRegistry, action_identity, async_trait,
};
use serde_yaml::Mapping;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("bootloader", |_| Box::new(BootBootloaderRetry))
            .method_with("bootloader", "'method' was not 'bootloader'")
            .param("bootloader", "'bootloader' is undefined")
            .check(|device, params| {
                let bootloader = bootloader_of(params);
                if device.has_boot_method(&bootloader) {
                    Ok(())
                } else {
                    Err(format!(
                        "boot method '{bootloader}' not in the device configuration"
                    ))
                }
            }),
    );
}

/// The `bootloader:` of the block (the device boot method to drive).
fn bootloader_of(params: &Mapping) -> String {
    params
        .get("bootloader")
        .and_then(scalar_string)
        .unwrap_or_default()
}

/// `boot-bootloader-retry`: prepare the commands, then the bootloader interaction.
#[derive(Debug, Default)]
pub struct BootBootloaderRetry;

#[async_trait]
impl Action for BootBootloaderRetry {
    action_identity!(
        "boot-bootloader-retry",
        "BootBootloaderRetry",
        "boot to bootloader with retry",
        "boot bootloader retry"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let bootloader = bootloader_of(pipeline.parameters());
        pipeline.add(BootloaderCommandOverlay::with_method(bootloader))?;
        pipeline.add(BootBootloaderAction::default())
    }
}

/// `boot-bootloader`: (re)connect, reset, interrupt and send the commands.
#[derive(Debug, Default)]
pub struct BootBootloaderAction {
    /// Wait for the bootloader's final message after the commands.
    pub expect_final: bool,
}

#[async_trait]
impl Action for BootBootloaderAction {
    action_identity!(
        "boot-bootloader",
        "BootBootloaderAction",
        "boot to bootloader",
        "boot bootloader"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let params = pipeline.params();
        let flag = |key: &str| params.flag_or(key, true);
        if flag("reset_connection") {
            pipeline.add(ResetConnection::new())?;
        } else {
            pipeline.add(ConnectDevice::new())?;
        }
        // `reset` is kept for backward compatibility.
        if flag("reset_device") && flag("reset") {
            pipeline.add(ResetDevice::new())?;
        }
        let bootloader = bootloader_of(&params);
        pipeline.add(BootloaderInterruptAction::with_method(bootloader.clone()))?;
        pipeline.add(BootloaderCommandsAction::with_method(
            bootloader,
            self.expect_final,
        ))
    }
}

#[cfg(test)]
mod tests {

    use lava_pipeline::Device;
    use serde_yaml::Mapping;

    #[test]
    fn bootloader_strategy_reasons() {
        let device =
            Device::from_yaml("actions:\n  boot:\n    methods:\n      u-boot: {}\n", None).unwrap();
        let p = |y: &str| -> Mapping { serde_yaml::from_str(y).unwrap() };
        assert!(
            crate::strategy(lava_pipeline::Section::Boot, "bootloader")
                .accepts(&device, &p("{method: bootloader, bootloader: u-boot}"))
                .is_ok()
        );
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Boot, "bootloader")
                .accepts(&device, &p("{method: bootloader}")),
            Err("'bootloader' is undefined".into())
        );
        assert_eq!(
            crate::strategy(lava_pipeline::Section::Boot, "bootloader")
                .accepts(&device, &p("{method: bootloader, bootloader: grub}")),
            Err("boot method 'grub' not in the device configuration".into())
        );
    }
}
