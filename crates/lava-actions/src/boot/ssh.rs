//! The `ssh` boot family: log in over ssh without booting a kernel (`login-ssh`), and
//! `schroot` (enter a schroot over the existing connection). When the namespace's
//! `to: ssh` deployment names a `chroot`, `login-ssh` enters a session of it right after
//! logging in (`schroot-login`), so the shell prompt, the overlay and the test shell are
//! the chroot's.

use crate::common::env::ExportDeviceEnvironment;
use crate::common::lava_overlay::ssh_identity_file;
use crate::common::login::{AutoLoginAction, ExpectShellSession};
use crate::deploy::ssh::deployed_chroot;
use lava_pipeline::BlockLookups;
use lava_pipeline::{
    Action, ActionMeta, Declared, Device, ErrorKind, LavaResult, Pipeline, PipelineBuilder,
    RunContext, Runnable, StrategyRegistry, ValidateContext, action_identity, async_trait,
};
use serde_yaml::{Mapping, Value};

/// `login-ssh`: copy the overlay, connect, log in and prepare the shell (retried).
#[derive(Debug, Default)]
pub struct SshAction;

#[async_trait]
impl Action for SshAction {
    action_identity!(
        "login-ssh",
        "SshAction",
        "connect over ssh and ensure a shell is found",
        "login over ssh"
    );
    fn is_retry(&self) -> bool {
        true
    }
    fn populate(&mut self, pipeline: &mut PipelineBuilder<'_>) -> LavaResult<()> {
        pipeline.add(Scp)?;
        pipeline.add(PrepareSsh)?;
        pipeline.add(ConnectSsh)?;
        pipeline.add(AutoLoginAction::without_boot())?;
        if let Some(chroot) = deployed_chroot(pipeline.job(), pipeline.namespace()) {
            pipeline.add(SchrootAction::entering(chroot))?;
        }
        pipeline.add(ExpectShellSession::new())?;
        pipeline.add(ExportDeviceEnvironment::new())?;
        pipeline.add(ScpOverlayUnpack)
    }
}

/// The checks of the device's ssh parameters shared by `ssh-connection` and
/// `scp-deploy`.
fn check_ssh_params(device: &Device, errors: &mut Vec<String>) {
    let serial = device.actions.boot.connections.contains_key("serial");
    if !serial {
        errors.push("Device not configured to support serial connection.".into());
    }
    let Some(ssh) = device.deploy_method("ssh") else {
        errors.push("Missing ssh parameters in the device configuration".into());
        return;
    };
    if ssh.get("identity_file").is_some()
        && let Err(e) = ssh_identity_file(device.deploy_methods())
    {
        errors.push(e);
    }
    if let Some(options) = ssh.get("options") {
        let valid = options
            .as_sequence()
            .is_some_and(|o| o.iter().all(Value::is_string));
        if !valid {
            errors.push(format!(
                "[{}] Invalid ssh options: {}",
                "ssh",
                lava_pipeline::value::python_repr(options)
            ));
        }
    }
}

/// `ssh-connection`: open the ssh session to the device.
#[derive(Debug, Default)]
pub struct ConnectSsh;

#[async_trait]
impl Action for ConnectSsh {
    action_identity!(
        "ssh-connection",
        "ConnectSsh",
        "login to a known device using ssh",
        "make an ssh connection to a device"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        check_ssh_params(&ctx.job.device, &mut errors);
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::ssh::connect_ssh(ctx).await
    }
}

/// `scp-deploy`: copy the overlay to the device with scp.
#[derive(Debug, Default)]
pub struct Scp;

#[async_trait]
impl Action for Scp {
    action_identity!(
        "scp-deploy",
        "Scp",
        "copy a file to a known device using scp",
        "scp over the ssh connection"
    );
    fn timeout_kind(&self) -> ErrorKind {
        ErrorKind::Infrastructure
    }
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        let mut errors = Vec::new();
        let device = &ctx.job.device;
        check_ssh_params(device, &mut errors);
        crate::common::power::require_tool("scp")?;
        if !device.has_deploy_method("ssh") {
            errors.push("Unable to use scp-deploy without ssh deployment".into());
        }
        if !device.has_boot_method("ssh") {
            errors.push("Unable to use scp-deploy without ssh boot".into());
        }
        ctx.add_errors(errors);
        Ok(())
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::ssh::scp_deploy(ctx).await
    }
}

/// `prepare-ssh`: choose the address (device `host`, or a MultiNode `hostID` message).
#[derive(Debug, Default)]
pub struct PrepareSsh;

#[async_trait]
impl Action for PrepareSsh {
    action_identity!(
        "prepare-ssh",
        "PrepareSsh",
        "determine which address to use for primary or secondary connections",
        "set the host address of the ssh connection"
    );
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::ssh::prepare_ssh(ctx).await
    }
}

/// `scp-overlay-unpack`: unpack the copied overlay on the device.
#[derive(Debug, Default)]
pub struct ScpOverlayUnpack;

#[async_trait]
impl Action for ScpOverlayUnpack {
    action_identity!(
        "scp-overlay-unpack",
        "ScpOverlayUnpack",
        "unpack the overlay over an existing ssh connection",
        "unpack the overlay on the remote device"
    );
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        crate::runtime::ssh::unpack_overlay(ctx).await
    }
}

/// `schroot-login`: enter the named schroot over the existing connection.
#[derive(Debug, Default)]
pub struct SchrootAction {
    /// The chroot whose session to enter (a `to: ssh` deployment's `chroot`); `None` for
    /// the `schroot` boot method, whose run is not written yet.
    chroot: Option<String>,
}

impl SchrootAction {
    /// Enter a new session of `chroot` (see `runtime::schroot`).
    pub fn entering(chroot: String) -> Self {
        SchrootAction {
            chroot: Some(chroot),
        }
    }
}

#[async_trait]
impl Action for SchrootAction {
    action_identity!(
        "schroot-login",
        "SchrootAction",
        "enter schroot using existing connection",
        "enter specified schroot"
    );
    fn validate(&self, ctx: &mut ValidateContext<'_>) -> LavaResult<()> {
        if !ctx.meta.parameters.contains_key("schroot") {
            return Ok(());
        }
        let Some(methods) = ctx.job.device.boot_methods() else {
            return Ok(());
        };
        let Some(schroot) = methods.get("schroot") else {
            ctx.error("No schroot support in device boot methods");
            return Ok(());
        };
        let params = schroot.get("parameters").or(Some(schroot));
        if params
            .and_then(|p| p.get("schroot"))
            .is_none_or(|s| s.get("command").is_none())
        {
            ctx.error("Missing schroot command in device configuration");
        }
        if params
            .and_then(|p| p.get("schroot"))
            .is_none_or(|s| s.get("name").is_none())
        {
            ctx.error("Missing schroot name in device configuration");
        }
        Ok(())
    }
    fn runnable(&self, _meta: &ActionMeta) -> Runnable {
        if self.chroot.is_some() {
            Runnable::Yes
        } else {
            Runnable::NOT_YET
        }
    }
    async fn run(&mut self, ctx: &mut RunContext, _children: &mut Pipeline) -> LavaResult<()> {
        match &self.chroot {
            Some(chroot) => crate::runtime::schroot::enter_session(ctx, chroot).await,
            None => Err(lava_pipeline::LavaError::bug(
                "schroot-login without a chroot is not runnable",
            )),
        }
    }
}

/// Register this family's strategies.
pub fn register(registry: &mut StrategyRegistry) {
    let method_contains = |wanted: &'static str, reason: &'static str| {
        move |_: &lava_pipeline::Device, params: &Mapping| {
            let method = params.method().unwrap_or("");
            if method.contains(wanted) {
                Ok(())
            } else {
                Err(reason.to_string())
            }
        }
    };
    registry.register(
        Declared::boot("ssh", |_| Box::new(SshAction))
            .device_method_with("ssh", "\"ssh\" not in device configuration boot methods")
            .check(method_contains("ssh", "\"ssh\" not in \"method\"")),
    );
    registry.register(
        Declared::boot("schroot", |_| Box::new(SchrootAction::default()))
            .device_method("schroot")
            .check(method_contains("schroot", "\"method\" was not \"schroot\"")),
    );
}
