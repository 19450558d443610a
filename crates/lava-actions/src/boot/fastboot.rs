//! The `fastboot` boot: make sure the device is in fastboot mode, then follow the
//! device's fastboot boot sequence (`actions.boot.methods.fastboot`).

use crate::common::env::ExportDeviceEnvironment;
use crate::common::fastboot::{
    AdbOverlayUnpack, ConnectAdb, EnterFastbootAction, FastbootTool, UBootEnterFastbootAction,
    WaitDeviceBoardID, add_detect_fastboot_if_needed, check_fastboot_options,
    check_fastboot_serial_unless_detected, check_optional_container, has_hard_reset,
    test_has_shell,
};
use crate::common::login::{AutoLoginAction, ExpectShellSession, OverlayUnpack};
use crate::common::power::{ConnectDevice, PreOs, ResetDevice};
use lava_pipeline::value::truthy;
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, ErrorKind, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("fastboot", |_| Box::new(BootFastbootAction::default()))
            .method_with("fastboot", "boot \"method\" was not \"fastboot\""),
    );
}

/// One step of the device's fastboot boot sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SequenceStep {
    /// `boot` (or `no-flash-boot`): `boot-fastboot`, boot the image with `fastboot boot`.
    Boot,
    /// `reboot`: `fastboot-reboot`, reboot into the system.
    Reboot,
    /// `auto-login`: `auto-login-action` on the console.
    AutoLogin,
    /// `overlay-unpack`: unpack the test overlay on the device.
    OverlayUnpack,
    /// `shell-session`: wait for the shell prompt.
    ShellSession,
    /// `export-env`: export the device environment in the shell.
    ExportEnv,
}

impl SequenceStep {
    /// LAVA's sequence names; unknown names add only the board ID wait.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "boot" | "no-flash-boot" => SequenceStep::Boot,
            "reboot" => SequenceStep::Reboot,
            "auto-login" => SequenceStep::AutoLogin,
            "overlay-unpack" => SequenceStep::OverlayUnpack,
            "shell-session" => SequenceStep::ShellSession,
            "export-env" => SequenceStep::ExportEnv,
            _ => return None,
        })
    }
}

/// The device's fastboot sequence; `None` when the method has no list.
fn device_sequence(device: &Device) -> Option<Vec<String>> {
    match device.boot_method("fastboot") {
        Some(Value::Sequence(items)) => Some(
            items
                .iter()
                .filter_map(lava_pipeline::value::scalar_string)
                .collect(),
        ),
        Some(Value::Null) => None,
        // A missing method reads as an empty sequence in LAVA.
        None => Some(Vec::new()),
        Some(_) => None,
    }
}

/// `fastboot-boot`.
#[derive(Debug, Default)]
pub struct BootFastbootAction {
    /// Set when the device is reset with its power command (wait for a prompt).
    pub force_prompt: bool,
}

#[async_trait]
impl Action for BootFastbootAction {
    action_identity!(
        "fastboot-boot",
        "BootFastbootAction",
        "fastboot boot into the system",
        "fastboot boot"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        if truthy(pipeline.param("commands")) {
            pipeline.add(BootFastbootCommands::new(FastbootTool::from_builder(
                pipeline,
            )))?;
        }
        let device = pipeline.device();
        let board_id = device.lookup(&["fastboot_serial_number"]).cloned();
        let hard_reset = has_hard_reset(device);
        if truthy(device.lookup(&["fastboot_via_uboot"])) {
            pipeline.add(ConnectDevice::new())?;
            pipeline.add(UBootEnterFastbootAction::new())?;
            add_detect_fastboot_if_needed(pipeline)?;
        } else if hard_reset {
            self.force_prompt = true;
            pipeline.add(ConnectDevice::new())?;
            pipeline.add(ResetDevice::new())?;
            add_detect_fastboot_if_needed(pipeline)?;
        } else {
            pipeline.add(WaitDeviceBoardID::with_board_id(board_id.clone()))?;
            pipeline.add(EnterFastbootAction::new())?;
        }

        for name in device_sequence(device).unwrap_or_default() {
            pipeline.add(WaitDeviceBoardID::with_board_id(board_id.clone()))?;
            match SequenceStep::parse(&name) {
                Some(SequenceStep::Boot) => pipeline.add(FastbootBootAction::new(
                    FastbootTool::from_builder(pipeline),
                ))?,
                Some(SequenceStep::Reboot) => pipeline.add(FastbootRebootAction::new(
                    FastbootTool::from_builder(pipeline),
                ))?,
                Some(SequenceStep::AutoLogin) => pipeline.add(AutoLoginAction::new())?,
                Some(SequenceStep::OverlayUnpack) => pipeline.add(OverlayUnpack::new())?,
                Some(SequenceStep::ShellSession) => pipeline.add(ExpectShellSession::new())?,
                Some(SequenceStep::ExportEnv) => pipeline.add(ExportDeviceEnvironment::new())?,
                None => {}
            }
        }

        if hard_reset {
            pipeline.add(PreOs)?;
            if pipeline.param("prompts").is_some() {
                pipeline.add(AutoLoginAction::new())?;
                if test_has_shell(pipeline) {
                    pipeline.add(ExpectShellSession::new())?;
                    if pipeline.param("transfer_overlay").is_some() {
                        pipeline.add(OverlayUnpack::new())?;
                    }
                    pipeline.add(ExportDeviceEnvironment::new())?;
                }
            }
        } else if pipeline.param("docker").is_none() {
            pipeline.add(ConnectAdb::default())?;
            pipeline.add(AdbOverlayUnpack::default())?;
        }
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_optional_container(&ctx.meta.parameters, ctx);
        // LAVA maps unknown sequence names to "nothing", so only a missing list is reported.
        if device_sequence(&ctx.job.device).is_none() {
            ctx.error("fastboot_sequence undefined");
        }
        Ok(())
    }
}

/// `fastboot-boot-commands`: the block's `commands`, each run as `fastboot <command>`.
#[derive(Debug, Default)]
pub struct BootFastbootCommands {
    /// How `fastboot` is called (serial number, options, docker).
    pub tool: FastbootTool,
    /// The block's `commands`, each run as `fastboot <command>`.
    pub commands: Vec<String>,
}

impl BootFastbootCommands {
    /// The action calling fastboot through `tool`; `commands` are read from the block.
    pub fn new(tool: FastbootTool) -> Self {
        BootFastbootCommands {
            tool,
            commands: Vec::new(),
        }
    }
}

#[async_trait]
impl Action for BootFastbootCommands {
    action_identity!(
        "fastboot-boot-commands",
        "BootFastbootCommands",
        "Run custom fastboot commands before boot",
        "Run fastboot boot commands"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        self.commands = crate::common::command_list(pipeline.param("commands"));
        Ok(())
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_optional_container(&ctx.meta.parameters, ctx);
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `boot-fastboot`: `fastboot boot <boot image>`.
#[derive(Debug, Default)]
pub struct FastbootBootAction {
    /// How `fastboot` is called (serial number, options, docker).
    pub tool: FastbootTool,
}

impl FastbootBootAction {
    /// The action calling fastboot through `tool`.
    pub fn new(tool: FastbootTool) -> Self {
        FastbootBootAction { tool }
    }
}

#[async_trait]
impl Action for FastbootBootAction {
    action_identity!(
        "boot-fastboot",
        "FastbootBootAction",
        "fastboot boot into system",
        "attempt to fastboot boot"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_optional_container(&ctx.meta.parameters, ctx);
        check_fastboot_serial_unless_detected(&ctx.job.device, ctx);
        check_fastboot_options(&ctx.job.device, ctx);
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `fastboot-reboot`: `fastboot reboot` into the system.
#[derive(Debug, Default)]
pub struct FastbootRebootAction {
    /// How `fastboot` is called (serial number, options, docker).
    pub tool: FastbootTool,
}

impl FastbootRebootAction {
    /// The action calling fastboot through `tool`.
    pub fn new(tool: FastbootTool) -> Self {
        FastbootRebootAction { tool }
    }
}

#[async_trait]
impl Action for FastbootRebootAction {
    action_identity!(
        "fastboot-reboot",
        "FastbootRebootAction",
        "fastboot reboot into system",
        "attempt to fastboot reboot"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        check_optional_container(&ctx.meta.parameters, ctx);
        check_fastboot_serial_unless_detected(&ctx.job.device, ctx);
        check_fastboot_options(&ctx.job.device, ctx);
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
    fn sequence_names_map_like_lava() {
        assert_eq!(
            SequenceStep::parse("no-flash-boot"),
            Some(SequenceStep::Boot)
        );
        assert_eq!(SequenceStep::parse("reboot"), Some(SequenceStep::Reboot));
        assert_eq!(SequenceStep::parse("bogus"), None);
    }

    #[test]
    fn null_sequence_is_undefined_and_missing_is_empty() {
        let device =
            Device::from_yaml("actions: {boot: {methods: {fastboot: null}}}", None).unwrap();
        assert_eq!(device_sequence(&device), None);
        let device = Device::from_yaml("actions: {boot: {methods: {}}}", None).unwrap();
        assert_eq!(device_sequence(&device), Some(Vec::new()));
        let device = Device::from_yaml(
            "actions: {boot: {methods: {fastboot: [reboot, boot]}}}",
            None,
        )
        .unwrap();
        assert_eq!(
            device_sequence(&device),
            Some(vec!["reboot".to_string(), "boot".to_string()])
        );
    }
}
