//! The `qemu-iso` boot method: run the installer from the ISO deployed by
//! `iso-installer`, watch it to the end, reboot into the installed system and log in.
//!
//! The run-time behaviour (the installer started with the preseed URL, watched to its
//! end message, the installed disk booted) is in [`crate::runtime::iso`];
//! `docs/qemu-iso.md` describes the whole flow.

use crate::common::env::ExportDeviceEnvironment;
use crate::common::login::{AutoLoginAction, ExpectShellSession};
use lava_pipeline::{
    Action, BlockLookups, Declared, LavaResult, Pipeline, PipelineBuilder, RunContext,
    StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::Value;

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    registry.register(
        Declared::boot("qemu-iso", |_| Box::new(BootIsoInstallerAction)).check(|_, params| {
            let media = params.get("media").and_then(Value::as_str);
            if media == Some("img") && params.method() == Some("qemu-iso") {
                Ok(())
            } else {
                Err("\"media\" was not in parameters or \"media\" was not \"img\"".into())
            }
        }),
    );
}

/// `boot-installer-iso`: run and watch the installer, reboot, then log in (the login
/// does nothing without `auto_login`).
#[derive(Debug, Default)]
pub struct BootIsoInstallerAction;

#[async_trait]
impl Action for BootIsoInstallerAction {
    action_identity!(
        "boot-installer-iso",
        "BootIsoInstallerAction",
        "boot installer with preseed",
        "boot installer iso image"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(IsoCommandLine)?;
        pipeline.add(MonitorInstallerSession)?;
        pipeline.add(IsoRebootAction)?;
        pipeline.add(AutoLoginAction::new())?;
        pipeline.add(ExpectShellSession::new())?;
        pipeline.add(ExportDeviceEnvironment::new())
    }
}

/// `execute-installer-command`: start QEMU on the ISO with the preseed location.
#[derive(Debug, Default)]
pub struct IsoCommandLine;

#[async_trait]
impl Action for IsoCommandLine {
    action_identity!(
        "execute-installer-command",
        "IsoCommandLine",
        "add dynamic data values to command line and execute",
        "include downloaded locations and call qemu"
    );
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::iso::start_installer(ctx).await
    }
}

/// `monitor-installer-connection`: watch the installer until it ends or fails.
#[derive(Debug, Default)]
pub struct MonitorInstallerSession;

#[async_trait]
impl Action for MonitorInstallerSession {
    action_identity!(
        "monitor-installer-connection",
        "MonitorInstallerSession",
        "Monitor installer operation",
        "Watch for error strings or end of install"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if ctx.meta.param("prompts").is_none() {
            ctx.error("Unable to identify test image prompts from parameters.");
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::iso::monitor_installer(ctx).await
    }
}

/// `reboot-into-installed`: boot the installed disk and wait for its prompt.
#[derive(Debug, Default)]
pub struct IsoRebootAction;

#[async_trait]
impl Action for IsoRebootAction {
    action_identity!(
        "reboot-into-installed",
        "IsoRebootAction",
        "reboot and login to the new system",
        "reboot into installed image"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if ctx.meta.param("prompts").is_none() {
            ctx.error("Unable to identify boot prompts from job definition.");
        }
        let command = ctx
            .job
            .device
            .boot_method_params("qemu")
            .and_then(|v| v.get("command"));
        if command.is_none() {
            ctx.error("Invalid parameters for reboot-into-installed");
        }
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::iso::reboot_into_installed(ctx).await
    }
}
