//! The `jlink` boot: flash the image with SEGGER J-Link Commander.

use crate::common::fastboot::{WaitDeviceBoardID, has_hard_reset};
use crate::common::power::{ConnectDevice, ResetDevice};
use lava_pipeline::{
    Action, ActionMeta, Declared, LavaError, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("jlink", |_| Box::new(BootJLinkRetry))
            .device_method("jlink")
            .method("jlink")
            .device_key("board_id"),
    );
}

/// `boot-jlink-image`.
#[derive(Debug, Default)]
pub struct BootJLinkRetry;

#[async_trait]
impl Action for BootJLinkRetry {
    action_identity!(
        "boot-jlink-image",
        "BootJLinkRetry",
        "boot jlink image using the command line interface",
        "boot jlink image"
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
        pipeline.add(FlashJLinkAction::default())
    }
}

/// The `-device` argument: the processor, with the job's (or first supported) core type.
pub fn jlink_device_name(
    processor: Option<&str>,
    supported_core_types: Option<&Value>,
    coretype: Option<&str>,
) -> Result<String, String> {
    let Some(processor) = processor else {
        return Err("Invalid device-type definition, missing processor parameter".into());
    };
    let Some(supported) = supported_core_types.filter(|v| lava_pipeline::value::truthy(Some(v)))
    else {
        return Ok(processor.to_string());
    };
    let Some(list) = supported.as_sequence() else {
        return Err(
            "Invalid device-type definition, supported_core_types parameter needs to be a list."
                .into(),
        );
    };
    let names: Vec<String> = list
        .iter()
        .filter_map(lava_pipeline::value::scalar_string)
        .collect();
    let chosen = coretype
        .map(str::to_string)
        .or_else(|| names.first().cloned())
        .unwrap_or_default();
    if !names.contains(&chosen) {
        return Err(format!(
            "[coretype = {chosen}] Not supported by current device (supported_core_types = {}).",
            lava_pipeline::value::python_repr(supported)
        ));
    }
    Ok(format!("{processor}_{chosen}"))
}

/// `flash-jlink`: write a J-Link command script and run JLinkExe with it.
#[derive(Debug, Default)]
pub struct FlashJLinkAction {
    /// The JLinkExe command line without the script.
    pub base_command: Vec<String>,
}

#[async_trait]
impl Action for FlashJLinkAction {
    action_identity!(
        "flash-jlink",
        "FlashJLinkAction",
        "flash jlink to boot the image",
        "flash jlink to boot the image"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        let device = pipeline.device();
        let params = device.boot_method_params("jlink");
        let text = |k: &str| {
            params
                .and_then(|p| p.get(k))
                .and_then(lava_pipeline::value::scalar_string)
        };
        let mut cmd = vec![text("command").unwrap_or_default()];
        let coretype = pipeline
            .param("coretype")
            .and_then(lava_pipeline::value::scalar_string);
        if let Ok(name) = jlink_device_name(
            text("processor").as_deref(),
            params.and_then(|p| p.get("supported_core_types")),
            coretype.as_deref(),
        ) {
            cmd.extend(["-device".to_string(), name]);
        }
        for option in params
            .and_then(|p| p.get("options"))
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            cmd.extend(lava_python::shlex_split(option)?);
        }
        cmd.extend(["-autoconnect", "1", "-NoGui", "1"].map(String::from));
        let board = device
            .lookup(&["board_id"])
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_default();
        cmd.extend(["-SelectEmuBySN".to_string(), board]);
        self.base_command = cmd;
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let device = &ctx.job.device;
        let params = device.boot_method_params("jlink");
        let binary = params
            .and_then(|p| p.get("command"))
            .and_then(lava_pipeline::value::scalar_string)
            .unwrap_or_default();
        if crate::common::power::which(&binary).is_none() {
            return Err(LavaError::job("JLink is not installed"));
        }
        let coretype = ctx
            .meta
            .parameters
            .get("coretype")
            .and_then(lava_pipeline::value::scalar_string);
        if let Err(e) = jlink_device_name(
            params
                .and_then(|p| p.get("processor"))
                .and_then(Value::as_str),
            params.and_then(|p| p.get("supported_core_types")),
            coretype.as_deref(),
        ) {
            ctx.error(e);
        }
        let board = device
            .lookup(&["board_id"])
            .and_then(lava_pipeline::value::scalar_string);
        if board.as_deref() == Some(crate::common::fastboot::UNSET_SERIAL) {
            ctx.error("[JLink] board_id unset");
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
    fn core_types() {
        let supported: Value = serde_yaml::from_str("[M33, M7]").unwrap();
        assert_eq!(
            jlink_device_name(Some("MIMXRT1189xxx8"), Some(&supported), None).unwrap(),
            "MIMXRT1189xxx8_M33"
        );
        assert_eq!(
            jlink_device_name(Some("MIMXRT1189xxx8"), Some(&supported), Some("M7")).unwrap(),
            "MIMXRT1189xxx8_M7"
        );
        let error = jlink_device_name(Some("X"), Some(&supported), Some("M4")).unwrap_err();
        assert_eq!(
            error,
            "[coretype = M4] Not supported by current device (supported_core_types = ['M33', 'M7'])."
        );
        assert_eq!(jlink_device_name(Some("X"), None, Some("M4")).unwrap(), "X");
        assert!(jlink_device_name(None, None, None).is_err());
        let scalar = Value::String("M33".into());
        assert!(jlink_device_name(Some("X"), Some(&scalar), None).is_err());
    }
}
