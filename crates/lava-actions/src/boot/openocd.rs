//! The `openocd` boot: flash the image with OpenOCD.

use crate::common::fastboot::{WaitDeviceBoardID, has_hard_reset};
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaResult, PipelineBuilder, Runnable, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("openocd", |_| Box::new(BootOpenOCDRetry))
            .device_method("openocd")
            .method("openocd")
            .device_key("board_id"),
    );
}

/// `boot-openocd-image`.
#[derive(Debug, Default)]
pub struct BootOpenOCDRetry;

#[async_trait]
impl Action for BootOpenOCDRetry {
    action_identity!(
        "boot-openocd-image",
        "BootOpenOCDRetry",
        "boot openocd image using the command line interface",
        "boot openocd image"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        if has_hard_reset(device) {
            pipeline.add(ResetDevice::new())?;
            pipeline.add(WaitDeviceBoardID::with_board_id(
                device.lookup(&["board_id"]).cloned(),
            ))?;
        }
        pipeline.add(ConnectDevice::new())?;
        pipeline.add(FlashOpenOCDAction::default())
    }
}

/// The OpenOCD options of the device: `-f` files (unless the job gives `openocd_script`),
/// a board selection file, `-d<debug>`, `-s` search paths and `-c` commands.
pub fn openocd_options(method: Option<&Value>, board_selection_cfg: Option<&str>) -> Vec<String> {
    let options = method.and_then(|m| lava_pipeline::value::lookup(m, &["parameters", "options"]));
    let list = |k: &str| -> Vec<String> {
        options
            .and_then(|o| o.get(k))
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(lava_pipeline::value::scalar_string)
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for file in list("file") {
        out.extend(["-f".to_string(), file]);
    }
    if let Some(cfg) = board_selection_cfg {
        out.extend(["-f".to_string(), cfg.to_string()]);
    }
    let debug = options
        .and_then(|o| o.get("debug"))
        .and_then(lava_pipeline::value::scalar_string)
        .unwrap_or_else(|| "None".into());
    out.push(format!("-d{debug}"));
    for path in list("search") {
        out.extend(["-s".to_string(), path]);
    }
    for command in list("command") {
        out.extend(["-c".to_string(), command]);
    }
    out
}

/// `flash-openocd`.
#[derive(Debug, Default)]
pub struct FlashOpenOCDAction {
    /// The openocd binary.
    pub command: Option<String>,
    /// The device's `board_selection_cmd`, written to a config file at run time.
    pub board_selection_cmd: Option<String>,
}

#[async_trait]
impl Action for FlashOpenOCDAction {
    action_identity!(
        "flash-openocd",
        "FlashOpenOCDAction",
        "use openocd to flash the image",
        "use openocd to flash the image"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let method = pipeline.device().boot_method("openocd");
        self.command = method
            .and_then(|m| lava_pipeline::value::lookup(m, &["parameters", "command"]))
            .and_then(lava_pipeline::value::scalar_string);
        self.board_selection_cmd = method
            .and_then(|m| m.get("board_selection_cmd"))
            .and_then(lava_pipeline::value::scalar_string);
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        crate::common::power::require_tool(self.command.as_deref().unwrap_or("openocd"))?;
        let board = ctx
            .job
            .device
            .lookup(&["board_id"])
            .and_then(lava_pipeline::value::scalar_string);
        if board.as_deref() == Some("00000000") {
            ctx.error("[FLASH_OPENOCD] board_id unset");
        }
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
    fn options_in_lava_order() {
        let method: Value = serde_yaml::from_str(
            "{parameters: {options: {file: [a.cfg], debug: 2, search: [/s], command: [init]}}}",
        )
        .unwrap();
        assert_eq!(
            openocd_options(Some(&method), Some("/tmp/board.cfg")),
            [
                "-f",
                "a.cfg",
                "-f",
                "/tmp/board.cfg",
                "-d2",
                "-s",
                "/s",
                "-c",
                "init"
            ]
        );
    }
}
