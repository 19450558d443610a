//! The `cmsis-dap` boot: copy the image to the board's CMSIS-DAP USB mass storage.

use crate::common::fastboot::{WaitDevicePathAction, WaitUSBSerialDeviceAction, has_hard_reset};
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, ErrorKind, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("cmsis-dap", |_| Box::new(BootCMSISRetry))
            .device_method_with(
                "cmsis-dap",
                "\"cmsis-dap\" is not in the device configuration boot methods",
            )
            .method("cmsis-dap")
            .device_key_with("board_id", "device has no \"board_id\" configured")
            .check(|device, _| {
                let Some(parameters) = method_params(device) else {
                    return Err("\"parameters\" was not in the device boot method configuration for \"cmsis-dap\"".into());
                };
                if !parameters.contains_key("usb_mass_device") {
                    return Err("\"usb_mass_device\" was not in the device configuration \"cmsis-dap\" boot method parameters".into());
                }
                Ok(())
            }),
    );
}

fn method_params(device: &Device) -> Option<&Mapping> {
    device.boot_method_params("cmsis-dap")
}

fn usb_mass_device(device: &Device) -> Option<&Value> {
    method_params(device)
        .and_then(|p| p.get("usb_mass_device"))
        .filter(|v| truthy(Some(v)))
}

/// `boot-cmsis-retry`.
#[derive(Debug, Default)]
pub struct BootCMSISRetry;

#[async_trait]
impl Action for BootCMSISRetry {
    action_identity!(
        "boot-cmsis-retry",
        "BootCMSISRetry",
        "boot cmsis usb image with retry",
        "boot cmsis usb image with retry"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let mass_device = usb_mass_device(device).cloned();
        let resets_after_flash = method_params(device)
            .and_then(|p| p.get("resets_after_flash"))
            .is_none_or(|v| truthy(Some(v)));
        if has_hard_reset(device) {
            pipeline.add(ResetDevice::new())?;
            pipeline.add(WaitDevicePathAction::new(mass_device))?;
        }
        pipeline.add(FlashCMSISAction::default())?;
        if resets_after_flash {
            pipeline.add(WaitUSBSerialDeviceAction::new())?;
        }
        pipeline.add(ConnectDevice::new())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if usb_mass_device(&ctx.job.device).is_none() {
            ctx.error("usb_mass_device unset");
        }
        Ok(())
    }
}

/// `flash-cmsis`: mount the mass storage, copy the downloaded files, wait for the remount.
#[derive(Debug, Default)]
pub struct FlashCMSISAction {
    /// The board's mass storage device path (`usb_mass_device` of the device's `cmsis-dap` parameters).
    pub usb_mass_device: Option<String>,
    /// Skip waiting for the board to unmount and remount itself after the copy.
    pub skip_autoremount_wait: bool,
}

#[async_trait]
impl Action for FlashCMSISAction {
    action_identity!(
        "flash-cmsis",
        "FlashCMSISAction",
        "flash cmsis to usb mass storage",
        "flash cmsis to usb mass storage"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Job
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        self.usb_mass_device =
            usb_mass_device(device).and_then(lava_pipeline::value::scalar_string);
        self.skip_autoremount_wait =
            truthy(method_params(device).and_then(|p| p.get("skip_autoremount_wait")));
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let board = ctx
            .job
            .device
            .lookup(&["board_id"])
            .and_then(lava_pipeline::value::scalar_string);
        if board.as_deref() == Some(crate::common::fastboot::UNSET_SERIAL) {
            ctx.error("[FLASH_CMSIS] board_id unset");
        }
        if self.usb_mass_device.is_none() {
            ctx.error("usb_mass_device unset");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}
