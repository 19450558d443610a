//! The `pyocd` boot: flash the image with pyOCD.

use crate::common::fastboot::{WaitDeviceBoardID, has_hard_reset};
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaResult, PipelineBuilder, Runnable, StrategyRegistry,
    ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("pyocd", |_| Box::new(BootPyOCD))
            .device_method("pyocd")
            .method("pyocd")
            .device_key("board_id"),
    );
}

/// `boot-pyocd-image` (the outer retry).
#[derive(Debug, Default)]
pub struct BootPyOCD;

#[async_trait]
impl Action for BootPyOCD {
    action_identity!(
        "boot-pyocd-image",
        "BootPyOCD",
        "boot pyocd image with retry",
        "boot pyocd image with retry"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(BootPyOCDRetry)
    }
}

/// `boot-pyocd-image` (the inner retry).
#[derive(Debug, Default)]
pub struct BootPyOCDRetry;

#[async_trait]
impl Action for BootPyOCDRetry {
    action_identity!(
        "boot-pyocd-image",
        "BootPyOCDRetry",
        "boot pyocd image using the command line interface",
        "boot pyocd image"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let connect_first = truthy(
            device
                .boot_method_params("pyocd")
                .and_then(|v| v.get("connect_before_flash")),
        );
        if has_hard_reset(device) {
            pipeline.add(ResetDevice::new())?;
            pipeline.add(WaitDeviceBoardID::with_board_id(
                device.lookup(&["board_id"]).cloned(),
            ))?;
        }
        if connect_first {
            pipeline.add(ConnectDevice::new())?;
        }
        pipeline.add(FlashPyOCDAction::default())?;
        if !connect_first {
            pipeline.add(ConnectDevice::new())?;
        }
        Ok(())
    }
}

/// The pyOCD command before the image: `pyocd-flashtool <options> --board <id>` or
/// `pyocd flash <options> --uid <id>`.
pub fn pyocd_base_command(binary: &str, options: &[String], board_id: &str) -> Vec<String> {
    let mut cmd = vec![binary.to_string()];
    if binary.starts_with("pyocd-flashtool") {
        cmd.extend(options.iter().cloned());
        cmd.extend(["--board".to_string(), board_id.to_string()]);
    } else {
        cmd.push("flash".into());
        cmd.extend(options.iter().cloned());
        cmd.extend(["--uid".to_string(), board_id.to_string()]);
    }
    cmd
}

/// `flash-pyocd`.
#[derive(Debug, Default)]
pub struct FlashPyOCDAction {
    /// The device's pyOCD command; `None` finds `pyocd-flashtool` or `pyocd` in `$PATH`.
    pub command: Option<String>,
    /// Extra pyOCD options (the device's pyocd `options`).
    pub options: Vec<String>,
    /// The probe's board id (the device's `board_id`).
    pub board_id: String,
    /// The device's `commands.pre_os_command`, run after flashing.
    pub pre_os_command: Option<String>,
}

#[async_trait]
impl Action for FlashPyOCDAction {
    action_identity!(
        "flash-pyocd",
        "FlashPyOCDAction",
        "flash pyocd to boot the image",
        "flash pyocd to boot the image"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let params = device.boot_method_params("pyocd");
        self.command = params
            .and_then(|p| p.get("command"))
            .and_then(lava_pipeline::value::scalar_string);
        self.options = params
            .and_then(|p| p.get("options"))
            .and_then(Value::as_sequence)
            .map(|s| {
                s.iter()
                    .filter_map(lava_pipeline::value::scalar_string)
                    .collect()
            })
            .unwrap_or_default();
        self.board_id = device
            .lookup(&["board_id"])
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_default();
        // LAVA runs `pre_os_command` as one command line.
        self.pre_os_command = match device.command("pre_os_command") {
            Some(lava_pipeline::device::CommandList::One(command)) => Some(command.clone()),
            _ => None,
        };
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        use crate::common::power::{require_tool, which};
        match &self.command {
            Some(command) => {
                require_tool(command)?;
            }
            None => {
                if which("pyocd-flashtool").is_none() {
                    require_tool("pyocd")?;
                }
            }
        }
        if self.board_id == crate::common::fastboot::UNSET_SERIAL {
            ctx.error("[PYOCD] board_id unset");
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
    fn flashtool_and_pyocd_commands_differ() {
        let options = vec!["-t".to_string(), "k64f".to_string()];
        assert_eq!(
            pyocd_base_command("pyocd-flashtool", &options, "123"),
            ["pyocd-flashtool", "-t", "k64f", "--board", "123"]
        );
        assert_eq!(
            pyocd_base_command("pyocd", &options, "123"),
            ["pyocd", "flash", "-t", "k64f", "--uid", "123"]
        );
    }
}
