//! The `depthcharge` boot method (Chromebooks): write the kernel command line to a file
//! served over TFTP, wait for the depthcharge prompt and send the TFTP boot commands.

use crate::common::bootloader::{
    BOOTLOADER_DEFAULT_CMD_TIMEOUT, BootloaderCommandOverlay, BootloaderCommandsAction,
    add_login_tail,
};
use crate::common::power::{ResetConnection, ResetDevice};
use lava_pipeline::value::scalar_string;
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, ErrorKind, LavaResult, PipelineBuilder, Runnable,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("depthcharge", |_| Box::new(DepthchargeAction))
            .method("depthcharge")
            .param("commands", "commands not specified in boot parameters")
            .device_method("depthcharge"),
    );
}

/// `depthcharge-action`: the command overlay, then the retried boot.
#[derive(Debug, Default)]
pub struct DepthchargeAction;

#[async_trait]
impl Action for DepthchargeAction {
    action_identity!(
        "depthcharge-action",
        "DepthchargeAction",
        "interactive Depthcharge action",
        "sets up boot with Depthcharge"
    );
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(DepthchargeCommandOverlay::default())?;
        pipeline.add(DepthchargeRetry)
    }
}

/// `depthcharge-overlay`: the bootloader overlay, plus the `cmdline` file and the
/// `{CMDLINE}`, `{DEPTHCHARGE_KERNEL}` and `{DEPTHCHARGE_RAMDISK}` substitutions.
#[derive(Debug, Default)]
pub struct DepthchargeCommandOverlay {
    overlay: BootloaderCommandOverlay,
}

impl DepthchargeCommandOverlay {
    /// The kernel command line of the named device commands, or LAVA's error.
    pub fn cmdline(
        device: &Device,
        params: &Mapping,
        method: &str,
    ) -> Option<Result<String, String>> {
        let name = params.get("commands").and_then(Value::as_str)?;
        let entry = device.boot_method(method).and_then(|m| m.get(name));
        Some(
            entry
                .and_then(|e| e.get("cmdline"))
                .and_then(scalar_string)
                .ok_or_else(|| format!("No cmdline found in {name}")),
        )
    }
}

#[async_trait]
impl Action for DepthchargeCommandOverlay {
    action_identity!(
        "depthcharge-overlay",
        "DepthchargeCommandOverlay",
        "substitute job data into bootloader command list",
        "replace placeholders with job data"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let params = &ctx.meta.params();
        let mut errors = Vec::new();
        self.overlay.check(&ctx.job.device, params, &mut errors);
        let method = self.overlay.method_for(params).to_string();
        if let Some(Err(message)) = Self::cmdline(&ctx.job.device, params, &method) {
            errors.push(message);
        }
        ctx.add_errors(errors);
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        Runnable::NOT_YET
    }
}

/// `depthcharge-retry`: reconnect, reset, wait for depthcharge, command, log in.
#[derive(Debug, Default)]
pub struct DepthchargeRetry;

#[async_trait]
impl Action for DepthchargeRetry {
    action_identity!(
        "depthcharge-retry",
        "DepthchargeRetry",
        "interactive depthcharge retry action",
        "depthcharge commands with retry"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(ResetConnection::new())?;
        pipeline.add(ResetDevice::new())?;
        pipeline.add(DepthchargeStart)?;
        pipeline.add(BootloaderCommandsAction::new())?;
        add_login_tail(pipeline)
    }
}

/// `depthcharge-start`: wait for the depthcharge command line start message.
#[derive(Debug, Default)]
pub struct DepthchargeStart;

#[async_trait]
impl Action for DepthchargeStart {
    action_identity!(
        "depthcharge-start",
        "DepthchargeStart",
        "wait for Depthcharge to start",
        "Depthcharge start"
    );
    fn default_timeout(&self) -> u64 {
        BOOTLOADER_DEFAULT_CMD_TIMEOUT
    }
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let device = &ctx.job.device;
        if device.connect_command()?.is_empty() {
            ctx.error("Unable to connect to device");
        }
        let start = device
            .boot_method_params("depthcharge")
            .and_then(|p| p.get("start_message"));
        if start.is_none_or(Value::is_null) {
            ctx.error("Missing Depthcharge start message for device");
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
    fn cmdline_comes_from_the_named_commands() {
        let device = Device::from_yaml(
            "actions:\n  boot:\n    methods:\n      depthcharge:\n        nfs: {cmdline: console=ttyS2, commands: [tftpboot]}\n        ramdisk: {commands: [tftpboot]}\n",
            None,
        )
        .unwrap();
        let p = |y: &str| -> Mapping { serde_yaml::from_str(y).unwrap() };
        assert_eq!(
            DepthchargeCommandOverlay::cmdline(&device, &p("{commands: nfs}"), "depthcharge"),
            Some(Ok("console=ttyS2".into()))
        );
        assert_eq!(
            DepthchargeCommandOverlay::cmdline(&device, &p("{commands: ramdisk}"), "depthcharge"),
            Some(Err("No cmdline found in ramdisk".into()))
        );
        assert_eq!(
            DepthchargeCommandOverlay::cmdline(&device, &p("{commands: [a]}"), "depthcharge"),
            None
        );
    }
}
