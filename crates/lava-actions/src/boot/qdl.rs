//! The `qdl` boot: put a Qualcomm board in EDL mode and flash the flat build with `qdl`.

use crate::common::fastboot::WaitQDLDeviceAction;
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaError, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use regex::Regex;
use serde_yaml::Value;
use std::sync::LazyLock;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("qdl", |_| Box::new(BootQDLRetry))
            .device_method("qdl")
            .method("qdl")
            .device_key("board_qdl_id"),
    );
}

/// `boot-qdl-retry`.
#[derive(Debug, Default)]
pub struct BootQDLRetry;

#[async_trait]
impl Action for BootQDLRetry {
    action_identity!(
        "boot-qdl-retry",
        "BootQDLRetry",
        "boot to EDL mode using any available method",
        "boot to EDL mode"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(ConnectDevice::new())?;
        pipeline.add(ResetDevice::new())?;
        pipeline.add(EnterQDL::default())?;
        pipeline.add(WaitQDLDeviceAction::default())?;
        pipeline.add(FlashQDLAction::default())
    }
}

/// `enter-qdl`: send the device's `enter-commands` to reach EDL mode.
#[derive(Debug, Default)]
pub struct EnterQDL {
    /// The device's `enter-commands`, run to reach EDL mode.
    pub commands: Vec<String>,
}

#[async_trait]
impl Action for EnterQDL {
    action_identity!("enter-qdl", "EnterQDL", "enter QDL mode", "enter QDL mode");
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.commands = crate::common::command_list(
            pipeline
                .device()
                .boot_method_params("qdl")
                .and_then(|v| v.get("enter-commands")),
        );
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = ctx.job.device.boot_method_params("qdl");
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

static QDL_VERSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"qdl version (?:\d+:)?v?(?P<major>\d+)\.(?P<minor>\d+)").expect("valid pattern")
});

/// The `(major, minor)` version in `qdl --version` output.
pub fn qdl_version(output: &str) -> Option<(u32, u32)> {
    let caps = QDL_VERSION.captures(output)?;
    Some((caps["major"].parse().ok()?, caps["minor"].parse().ok()?))
}

/// The qdl options a version supports, then the block's debug and storage options.
pub fn qdl_base_options(version: (u32, u32), debug: bool, storage: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if version >= (2, 7) {
        out.push("--skipblock=sha256".to_string());
    }
    if debug {
        out.push("--debug".into());
    }
    if let Some(storage) = storage {
        out.push("--storage".into());
        out.push(storage.into());
    }
    out
}

/// `flash-qdl`: `qdl --serial <board_qdl_id> <firehose> <rawprogram> <patch>`.
#[derive(Debug, Default)]
pub struct FlashQDLAction {
    /// The `qdl` command of the device.
    pub command: Option<String>,
    /// The board's serial for `qdl --serial` (the device's `board_qdl_id`).
    pub board_qdl_id: Option<String>,
    /// Where the XML files are inside the flat build.
    pub qcomflash_path: String,
}

#[async_trait]
impl Action for FlashQDLAction {
    action_identity!(
        "flash-qdl",
        "FlashQDLAction",
        "use qdl to flash flat build to the board",
        "use qdl to flash flat build to the board"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        self.command = device
            .boot_method_params("qdl")
            .and_then(|p| p.get("command"))
            .and_then(Value::as_str)
            .map(str::to_string);
        self.board_qdl_id = device
            .lookup(&["board_qdl_id"])
            .and_then(lava_pipeline::value::scalar_string);
        self.qcomflash_path = pipeline
            .param("path")
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_else(|| ".".into());
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let Some(command) = &self.command else {
            ctx.error("Invalid parameters for flash-qdl: 'command'");
            return Ok(());
        };
        let binary = crate::common::power::which(command).ok_or_else(|| {
            LavaError::configuration(format!("qdl not installed: {command} not found"))
        })?;
        let params = ctx.meta.params();
        for key in ["firehose_program", "rawprogram", "patch"] {
            if !params.contains_key(key) {
                ctx.error(format!("Invalid parameters for flash-qdl: '{key}'"));
                return Ok(());
            }
        }
        let output = std::process::Command::new(&binary)
            .arg("--version")
            .output()
            .map_err(|e| {
                LavaError::configuration(format!(
                    "Unable to run {} --version: {e}",
                    binary.display()
                ))
            })?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        let version = qdl_version(&text).ok_or_else(|| {
            LavaError::configuration(format!(
                "Unable to parse the version of qdl at {}",
                binary.display()
            ))
        })?;
        if version < (2, 0) {
            return Err(LavaError::configuration(format!(
                "qdl version {}.{} is too low, 2.0 or higher is required",
                version.0, version.1
            )));
        }
        if self.board_qdl_id.as_deref() == Some("00000000") {
            ctx.error("[FLASH_QDL] board_qdl_id unset");
        }
        for key in [
            "usb_vendor_id",
            "usb_product_id",
            "board_qdl_id",
            "board_id",
        ] {
            if !ctx.job.device.has(key) {
                ctx.error(format!("Invalid parameters for flash-qdl: '{key}'"));
            }
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
    fn versions() {
        assert_eq!(qdl_version("qdl version v2.7"), Some((2, 7)));
        assert_eq!(qdl_version("qdl version 1:2.1-3"), Some((2, 1)));
        assert_eq!(qdl_version("qdl 2.1"), None);
    }

    #[test]
    fn options_depend_on_version() {
        assert_eq!(qdl_base_options((2, 6), false, None), Vec::<String>::new());
        assert_eq!(
            qdl_base_options((2, 7), true, Some("ufs")),
            ["--skipblock=sha256", "--debug", "--storage", "ufs"]
        );
    }
}
