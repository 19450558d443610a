//! The `dfu` boot: put the board in DFU mode and flash the images with `dfu-util`.

use crate::common::bootloader::BootloaderInterruptAction;
use crate::common::fastboot::WaitDFUDeviceAction;
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaResult, PipelineBuilder, Runnable, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("dfu", |_| Box::new(BootDFURetry))
            .device_method("dfu")
            .method("dfu")
            .device_key("board_id"),
    );
}

/// `boot-dfu-retry`.
#[derive(Debug, Default)]
pub struct BootDFURetry;

#[async_trait]
impl Action for BootDFURetry {
    action_identity!(
        "boot-dfu-retry",
        "BootDFURetry",
        "boot dfu image using the command line interface",
        "boot dfu image"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let uboot = pipeline
            .device()
            .boot_method("dfu")
            .and_then(|v| v.get("implementation"))
            .and_then(Value::as_str)
            == Some("u-boot");
        pipeline.add(ConnectDevice::new())?;
        pipeline.add(ResetDevice::new())?;
        if uboot {
            pipeline.add(BootloaderInterruptAction::with_method("u-boot"))?;
            pipeline.add(EnterDFU::default())?;
        }
        pipeline.add(WaitDFUDeviceAction::default())?;
        pipeline.add(FlashDFUAction::default())
    }
}

/// `enter-dfu`: send the device's `enter-commands` at the U-Boot prompt.
#[derive(Debug, Default)]
pub struct EnterDFU {
    /// The device's `enter-commands`, sent one by one at the U-Boot prompt.
    pub commands: Vec<String>,
}

#[async_trait]
impl Action for EnterDFU {
    action_identity!(
        "enter-dfu",
        "EnterDFU",
        "enter software dfu mode",
        "enter software dfu mode"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.commands = crate::common::command_list(
            pipeline
                .device()
                .boot_method_params("dfu")
                .and_then(|v| v.get("enter-commands")),
        );
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = ctx.job.device.boot_method_params("dfu");
        match params.and_then(|p| p.get("enter-commands")) {
            None => ctx.error("\"enter-commands\" is not defined"),
            Some(Value::Sequence(_)) => {}
            Some(_) => ctx.error("\"enter-commands\" should be a list"),
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `flash-dfu`: one `dfu-util` run per downloaded image, using its `image_arg`.
#[derive(Debug, Default)]
pub struct FlashDFUAction {
    /// `dfu-util <options> --serial <board> --device <vendor>:<product>`.
    pub base_command: Vec<String>,
}

#[async_trait]
impl Action for FlashDFUAction {
    action_identity!(
        "flash-dfu",
        "FlashDFUAction",
        "use dfu to flash the images",
        "use dfu to flash the images"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let params = device.boot_method_params("dfu");
        let text = |v: Option<&Value>| v.and_then(lava_pipeline::value::scalar_string);
        let mut cmd = vec![text(params.and_then(|p| p.get("command"))).unwrap_or_default()];
        cmd.extend(
            params
                .and_then(|p| p.get("options"))
                .and_then(Value::as_sequence)
                .into_iter()
                .flatten()
                .filter_map(lava_pipeline::value::scalar_string),
        );
        let board = text(device.lookup(&["board_id"])).unwrap_or_default();
        let vendor = text(device.lookup(&["usb_vendor_id"])).unwrap_or_default();
        let product = text(device.lookup(&["usb_product_id"])).unwrap_or_default();
        cmd.extend(["--serial".to_string(), board]);
        cmd.extend(["--device".to_string(), format!("{vendor}:{product}")]);
        self.base_command = cmd;
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let device = &ctx.job.device;
        let Some(command) = device
            .boot_method_params("dfu")
            .and_then(|p| p.get("command"))
            .and_then(lava_pipeline::value::scalar_string)
        else {
            ctx.error("Invalid parameters for flash-dfu");
            return Ok(());
        };
        crate::common::power::require_tool(&command)?;
        let text = |k: &str| {
            device
                .lookup(&[k])
                .and_then(lava_pipeline::value::scalar_string)
        };
        let (board, vendor, product) = (
            text("board_id"),
            text("usb_vendor_id"),
            text("usb_product_id"),
        );
        if board.as_deref() == Some(crate::common::fastboot::UNSET_SERIAL) {
            ctx.error("[FLASH_DFU] board_id unset");
        }
        if vendor.as_deref() == Some("0000") {
            ctx.error("[FLASH_DFU] usb_vendor_id unset");
        }
        if product.as_deref() == Some("0000") {
            ctx.error("[FLASH_DFU] usb_product_id unset");
        }
        if board.is_none() || vendor.is_none() || product.is_none() {
            ctx.error("Invalid parameters for flash-dfu");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}
